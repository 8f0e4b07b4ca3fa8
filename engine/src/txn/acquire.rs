//! Taking an invocation's locks: the local line first, then the store, waiting for releases
//! with a bound.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Protocol;
use super::local_queue::LocalTurn;
use super::release::{HeldLeases, PendingLock};
use crate::error::Error;
use crate::model::change::ModelSnapshot;
use crate::model::ids::LockId;
use crate::store::{LockAttempt, LockRequest, StoredRecord};

/// The longest a waiter sleeps without re-trying, in case a release announcement was lost
/// (a dropped Pub/Sub connection, say). Releases normally wake waiters at once.
const MAX_QUIET_WAIT: Duration = Duration::from_millis(250);

/// Locks held and models loaded.
#[derive(Debug)]
pub(super) struct Acquired {
    /// One lease per model, request order: released by the releaser if dropped before a
    /// commit or a release settles them (a cancelled invocation).
    pub leases: HeldLeases,
    /// One snapshot per model, request order.
    pub snapshots: Vec<ModelSnapshot>,
    /// Time spent before the attempt that succeeded.
    pub waited: Duration,
    /// Duration of the attempt that succeeded (lock + load round trip).
    pub load: Duration,
    /// The local line turn: keep it until the locks are released so local followers wait.
    pub turn: LocalTurn,
}

/// What waiting for an invocation's locks gave.
#[derive(Debug)]
pub(super) enum Acquisition {
    /// The locks are held and the models loaded.
    Held(Acquired),
    /// The request's idempotency key is recorded as committed: nothing was taken.
    Recorded {
        /// The record.
        record: StoredRecord,
        /// Time spent before the attempt that found it.
        waited: Duration,
        /// That attempt's round trip.
        load: Duration,
    },
}

impl Protocol {
    /// Takes every lock of `request` within the acquire timeout, waking on releases.
    ///
    /// # Errors
    /// [`Error::LockTimeout`] when a lock stays held for the whole timeout, or the store's
    /// error.
    pub(super) async fn acquire(&self, request: &LockRequest) -> Result<Acquisition, Error> {
        let start = Instant::now();
        self.acquire_until(request, start, start + self.settings.acquire_timeout).await
    }

    /// As [`Protocol::acquire`], for an invocation that started waiting at `start` (in a
    /// group line, say) and must hold its locks by `deadline`.
    ///
    /// # Errors
    /// As [`Protocol::acquire`].
    pub(super) async fn acquire_until(
        &self,
        request: &LockRequest,
        start: Instant,
        deadline: Instant,
    ) -> Result<Acquisition, Error> {
        let locks: Vec<LockId> =
            request.models.iter().map(|m| LockId { model: m.id.clone(), action: request.action.clone() }).collect();
        let timed_out = |index: usize| Error::LockTimeout {
            lock: locks.get(index).cloned().unwrap_or_else(|| locks[0].clone()),
            waited: start.elapsed(),
        };
        let turn = tokio::time::timeout_at(deadline, self.queue.enter(&locks)).await.map_err(|_| timed_out(0))?;
        // Watch before the first attempt: a release between a refused attempt and the wait
        // below must still wake us.
        let mut releases = self.store.watch(&locks);
        // Each attempt owns its request, so that one cancelled in flight can be finished (and
        // what it took released) by the releaser.
        let request = Arc::new(request.clone());
        let sender = self.releaser.sender();
        loop {
            let attempt_start = Instant::now();
            match PendingLock::new(&self.store, &request, sender.clone()).await? {
                LockAttempt::Acquired { leases, snapshots } => {
                    return Ok(Acquisition::Held(Acquired {
                        leases: HeldLeases::new(leases, sender),
                        snapshots,
                        waited: attempt_start - start,
                        load: attempt_start.elapsed(),
                        turn,
                    }));
                }
                LockAttempt::Recorded(record) => {
                    return Ok(Acquisition::Recorded {
                        record,
                        waited: attempt_start - start,
                        load: attempt_start.elapsed(),
                    });
                }
                LockAttempt::Busy { model_index, expires_in } => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(timed_out(model_index));
                    }
                    let mut wait = (deadline - now).min(MAX_QUIET_WAIT);
                    if let Some(expiry) = expires_in {
                        // A holder that vanished never announces: retry when its lease runs out.
                        wait = wait.min(expiry + Duration::from_millis(1));
                    }
                    let _ = tokio::time::timeout(wait, releases.released()).await;
                }
            }
        }
    }
}
