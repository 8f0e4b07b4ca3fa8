//! Locks an invocation may hold without knowing it.
//!
//! When the reply to a lock-and-load is lost (the connection dropped, the response timed out),
//! the store may have taken the locks. A retry of the same invocation takes them again at once
//! (a live lock of the same owner is the owner's: [`crate::store::LockRequest::owner`]), and
//! commits or releases them as usual. But an invocation that ends without such a retry (retries
//! off, its last attempt, a caller that gave up) would leave them to run out with their lease,
//! and every other invocation of those models would wait that long.
//!
//! So the acquire step notes each request whose reply was lost ([`UnsureLocks::note`]), and the
//! invocation holds an [`UnsureGuard`] for its whole life. When the invocation ends (whatever
//! its outcome, or dropped by its caller), the guard hands each noted request to the releaser
//! as a fresh lock-and-load of the same owner, without an idempotency key: it takes any lock the
//! invocation still owns (and any that is free), and the releaser releases what it took or
//! withdraws the place in line it left ([`super::release`]). Nothing awaits in `Drop`: the guard
//! builds the future and sends it on the releaser's channel.
//!
//! Reclaiming is safe whatever happened: the invocation is over, so no lock of its owner is in
//! use, and a release only frees a lock still held with the token the reclaim drew.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tracing::{debug, warn};

use super::release::{Handover, HandoverSender};
use crate::store::{LockRequest, Store};

/// The lock requests whose replies were lost, by owner (one invocation each).
#[derive(Debug, Default)]
pub(super) struct UnsureLocks {
    requests: Mutex<HashMap<String, Vec<Arc<LockRequest>>>>,
}

impl UnsureLocks {
    /// Notes that `request`'s reply was lost: it may hold locks of its owner.
    pub(super) fn note(&self, request: &Arc<LockRequest>) {
        let mut requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        let noted = requests.entry(request.owner.clone()).or_default();
        let same = |r: &Arc<LockRequest>| {
            r.action == request.action
                && r.models.len() == request.models.len()
                && r.models.iter().zip(&request.models).all(|(a, b)| a.id == b.id)
        };
        if !noted.iter().any(same) {
            noted.push(Arc::clone(request));
        }
    }

    /// Takes what was noted for `owner`.
    fn take(&self, owner: &str) -> Vec<Arc<LockRequest>> {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner).remove(owner).unwrap_or_default()
    }

    /// How many owners have requests noted.
    #[cfg(test)]
    fn owners(&self) -> usize {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// Held by an invocation for its whole life: when dropped, it reclaims the locks its lost
/// lock-and-load replies may have taken (see the [module](self) docs).
pub(super) struct UnsureGuard<'a> {
    unsure: &'a UnsureLocks,
    owner: String,
    store: Arc<dyn Store>,
    sender: Option<HandoverSender>,
}

impl std::fmt::Debug for UnsureGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnsureGuard").field("owner", &self.owner).finish_non_exhaustive()
    }
}

impl<'a> UnsureGuard<'a> {
    /// The guard of the invocation whose locks `owner` names.
    pub(super) fn new(
        unsure: &'a UnsureLocks,
        owner: String,
        store: Arc<dyn Store>,
        sender: Option<HandoverSender>,
    ) -> Self {
        Self { unsure, owner, store, sender }
    }
}

impl Drop for UnsureGuard<'_> {
    fn drop(&mut self) {
        for noted in self.unsure.take(&self.owner) {
            let request = Arc::new(LockRequest { record: None, ..(*noted).clone() });
            let Some(sender) = &self.sender else {
                debug!(
                    "no Tokio runtime: locks a lost lock-and-load reply may have taken will run out with their lease"
                );
                return;
            };
            let (store, sent) = (Arc::clone(&self.store), Arc::clone(&request));
            let attempt = Box::pin(async move { store.try_lock_and_load(&sent).await });
            if sender.send(Handover::Pending(attempt, request)).is_err() {
                warn!(
                    "the releaser stopped: locks a lost lock-and-load reply may have taken will run out with their lease"
                );
                return;
            }
            debug!(owner = %self.owner, "reclaiming the locks a lost lock-and-load reply may have taken");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::change::ModelTarget;
    use crate::model::ids::{LockId, ModelId};
    use crate::model::schema::ModelSchema;
    use crate::model::value::{FieldType, ScalarKind};
    use crate::store::LockAttempt;
    use crate::store::memory::MemoryStore;
    use crate::txn::release::Releaser;

    fn request(owner: &str) -> Arc<LockRequest> {
        let schema = ModelSchema::builder("T").field("n", FieldType::Scalar(ScalarKind::Int)).build().expect("schema");
        Arc::new(LockRequest {
            models: vec![ModelTarget { id: ModelId::new("T", "k"), schema: Arc::new(schema) }],
            action: "a".into(),
            owner: owner.into(),
            lease: Duration::from_secs(60),
            record: Some("key".into()),
        })
    }

    /// A lock taken by a request whose reply was lost is released once the invocation's guard
    /// is dropped, so another owner takes it at once; nothing stays noted.
    #[tokio::test]
    async fn a_dropped_guard_releases_the_locks_of_a_lost_reply() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let releaser = Releaser::new(Arc::clone(&store));
        let unsure = UnsureLocks::default();
        let lost = request("inv-1");
        // The store took the lock; the caller never heard.
        assert!(matches!(
            store.try_lock_and_load(&lost).await.expect("the memory store answers"),
            LockAttempt::Acquired { .. }
        ));
        let mut released = store.watch(&[LockId { model: ModelId::new("T", "k"), action: "a".into() }]);
        unsure.note(&lost);
        unsure.note(&lost);
        drop(UnsureGuard::new(&unsure, "inv-1".into(), Arc::clone(&store), releaser.sender()));
        assert_eq!(unsure.owners(), 0, "the guard took what was noted");
        tokio::time::timeout(Duration::from_secs(10), released.released()).await.expect("released");
        let other = request("inv-2");
        assert!(
            matches!(
                store.try_lock_and_load(&other).await.expect("the memory store answers"),
                LockAttempt::Acquired { .. }
            ),
            "the lost reply's lock was not reclaimed"
        );
    }
}
