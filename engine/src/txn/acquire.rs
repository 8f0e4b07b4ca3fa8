//! Taking an invocation's locks: the local line first, then the store, waiting for releases
//! with a bound. In the store, a refused attempt leaves the invocation a place in the lock's
//! line, so that waiters of every engine are served in about arrival order
//! ([`crate::Store::try_lock_and_load`]); a wait that ends without the locks withdraws it.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Protocol;
use super::local_queue::LocalTurn;
use super::release::{HeldLeases, PendingLock, WaitingPlace};
use crate::error::Error;
use crate::model::change::ModelSnapshot;
use crate::model::ids::LockId;
use crate::store::{LockAttempt, LockRequest, StoreError, StoredRecord};

/// The longest a waiter sleeps without re-trying, in case a release announcement was lost
/// (a dropped Pub/Sub connection, say). Releases normally wake waiters at once.
/// It is also how often a waiter renews its place in the store's line: well within its life.
const MAX_QUIET_WAIT: Duration = Duration::from_millis(250);
const _: () = assert!(MAX_QUIET_WAIT.as_millis() * 2 < crate::store::WAITER_TTL.as_millis());

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
        // Withdrawn if the wait ends without the locks (or handed to the releaser if dropped).
        let mut place = WaitingPlace::new(locks.clone(), request.owner.clone(), sender.clone());
        loop {
            let attempt_start = Instant::now();
            let attempt = match PendingLock::new(&self.store, &request, sender.clone()).await {
                Ok(attempt) => attempt,
                Err(error) => {
                    // A lost reply may hide a refusal that left a place in line: the dropped
                    // place has the releaser withdraw it. It may also hide locks taken: a retry
                    // takes them again, and they are reclaimed when the invocation ends.
                    place.arm();
                    if matches!(error, StoreError::Unavailable(_)) {
                        self.unsure.note(&request);
                    }
                    return Err(error.into());
                }
            };
            match attempt {
                LockAttempt::Acquired { leases, snapshots } => {
                    // Taking the locks removed the place.
                    place.disarm();
                    return Ok(Acquisition::Held(Acquired {
                        leases: HeldLeases::new(leases, sender),
                        snapshots,
                        waited: attempt_start - start,
                        load: attempt_start.elapsed(),
                        turn,
                    }));
                }
                LockAttempt::Recorded(record) => {
                    place.withdraw(&*self.store).await;
                    return Ok(Acquisition::Recorded {
                        record,
                        waited: attempt_start - start,
                        load: attempt_start.elapsed(),
                    });
                }
                LockAttempt::Busy { model_index, expires_in } => {
                    place.arm();
                    let now = Instant::now();
                    if now >= deadline {
                        let error = timed_out(model_index);
                        place.withdraw(&*self.store).await;
                        return Err(error);
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
