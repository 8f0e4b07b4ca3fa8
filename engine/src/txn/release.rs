//! Prompt release of an invocation's locks when its caller gives up.
//!
//! A caller may drop an invocation's future at any await (a timeout, a dropped HTTP request).
//! While it waits, it has a place in the store's line of a busy lock ([`Store::withdraw`]): a
//! dropped [`WaitingPlace`] hands that over too, and the releaser withdraws it, so the next
//! waiter's turn comes at once rather than when the place runs out.
//! The locks it held would then stay taken for the rest of their lease, longer than anyone else
//! waits for them. So from the moment the store returns leases until a commit or a release
//! settles them, they belong to a [`HeldLeases`] guard; one dropped unsettled hands them over a
//! channel to the engine's releaser task, which releases them in the store. A lock-and-load
//! already sent but not answered yet is handed over the same way ([`PendingLock`]): the
//! releaser waits for its reply and releases whatever it took. `Drop` only sends on an
//! unbounded channel: it never blocks and never awaits.
//!
//! Releasing is safe whatever the invocation had reached, because the store releases a lock
//! only while it is still held with the lease's fencing token (both stores check it). A commit
//! whose reply had not come either landed (and released the locks itself: the release is a
//! no-op), or is refused when it arrives (a fenced commit cannot land once its lock is free),
//! and a lock someone else took since keeps its new holder.
//!
//! One releaser task runs per engine, started on the Tokio runtime of the first invocation that
//! takes locks (and again on the current one if that runtime shut down). It holds the store,
//! never the engine: it stops once the engine and every guard are gone and the releases handed
//! over are done. Without a Tokio runtime there is nothing to run it on: a dropped guard then
//! leaves its locks to run out with their lease, as a crashed process's do.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tracing::{debug, warn};

use crate::model::ids::LockId;
use crate::store::{LockAttempt, LockLease, LockRequest, Store, StoreError};

/// A lock-and-load on its way to the store, owning what it needs.
type LockFuture = Pin<Box<dyn Future<Output = Result<LockAttempt, StoreError>> + Send>>;

/// What a dropped guard hands over to the releaser.
pub(super) enum Handover {
    /// Leases to release.
    Leases(Vec<LockLease>),
    /// A lock-and-load sent but not answered: release what it takes (or withdraw the place in
    /// line it leaves).
    Pending(LockFuture, Arc<LockRequest>),
    /// A waiter's place in the lines of these locks, to withdraw.
    Withdraw(Vec<LockId>, String),
}

/// The channel to the releaser task: unbounded, because `Drop` can neither wait for room nor
/// drop a release (the locks would stay taken). What it holds is bounded by the locks the
/// engine's invocations held when their callers gave up, and the task drains it as fast as the
/// store answers.
pub(super) type HandoverSender = UnboundedSender<Handover>;

/// The engine's releaser: starts the task that releases what dropped guards hand over.
pub(super) struct Releaser {
    store: Arc<dyn Store>,
    /// The sender to the running task, if one was started.
    sender: Mutex<Option<HandoverSender>>,
}

impl fmt::Debug for Releaser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let running =
            self.sender.lock().unwrap_or_else(PoisonError::into_inner).as_ref().is_some_and(|s| !s.is_closed());
        f.debug_struct("Releaser").field("running", &running).finish_non_exhaustive()
    }
}

impl Releaser {
    /// A releaser for `store`; its task starts with the first [`Releaser::sender`].
    pub(super) fn new(store: Arc<dyn Store>) -> Self {
        Self { store, sender: Mutex::new(None) }
    }

    /// The channel to the releaser task, starting it on the current Tokio runtime if none runs
    /// (never started, or its runtime shut down); `None` without a Tokio runtime.
    pub(super) fn sender(&self) -> Option<HandoverSender> {
        let mut current = self.sender.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(running) = current.as_ref().filter(|s| !s.is_closed()) {
            return Some(running.clone());
        }
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let (sender, receiver) = unbounded_channel();
        runtime.spawn(serve(Arc::clone(&self.store), receiver));
        *current = Some(sender.clone());
        Some(sender)
    }
}

/// The releaser task: settles every handover, each as soon as it comes (a slow release does
/// not hold up the others), until every sender is gone and nothing is left to settle.
async fn serve(store: Arc<dyn Store>, mut handovers: UnboundedReceiver<Handover>) {
    let mut settling = FuturesUnordered::new();
    loop {
        tokio::select! {
            handover = handovers.recv() => match handover {
                Some(handover) => settling.push(settle(Arc::clone(&store), handover)),
                None => break,
            },
            Some(()) = settling.next(), if !settling.is_empty() => {}
        }
    }
    while settling.next().await.is_some() {}
    debug!("the engine is gone: the releaser stops");
}

/// Releases one handover's leases (waiting first for a pending lock-and-load's reply).
async fn settle(store: Arc<dyn Store>, handover: Handover) {
    let leases = match handover {
        Handover::Leases(leases) => leases,
        Handover::Withdraw(locks, owner) => return withdraw(&*store, &locks, &owner).await,
        Handover::Pending(attempt, request) => match attempt.await {
            Ok(LockAttempt::Acquired { leases, .. }) => leases,
            // Nothing was taken, but the attempt left a place in line.
            Ok(LockAttempt::Busy { .. }) => {
                let locks: Vec<LockId> = request
                    .models
                    .iter()
                    .map(|m| LockId { model: m.id.clone(), action: request.action.clone() })
                    .collect();
                return withdraw(&*store, &locks, &request.owner).await;
            }
            // Nothing was taken.
            Ok(LockAttempt::Recorded(_)) => return,
            Err(error) => {
                warn!(%error, "the lock-and-load of a cancelled invocation failed; any lock it took will run out with its lease");
                return;
            }
        },
    };
    match store.release(&leases).await {
        Ok(()) => debug!(locks = leases.len(), "released the locks of a cancelled invocation"),
        Err(error) => {
            warn!(%error, locks = leases.len(), "could not release the locks of a cancelled invocation; their leases will run out");
        }
    }
}

async fn withdraw(store: &dyn Store, locks: &[LockId], owner: &str) {
    match store.withdraw(locks, owner).await {
        Ok(()) => debug!(locks = locks.len(), "withdrew the place in line of a cancelled invocation"),
        Err(error) => {
            warn!(%error, "could not withdraw the place in line of a cancelled invocation; it will run out by itself");
        }
    }
}

/// A waiter's place in the store's lines of its locks, from its first refused attempt until it
/// takes them or gives up: dropped while armed (a cancelled wait), it hands the place to the
/// releaser, which withdraws it.
pub(super) struct WaitingPlace {
    locks: Vec<LockId>,
    owner: String,
    armed: bool,
    sender: Option<HandoverSender>,
}

impl fmt::Debug for WaitingPlace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitingPlace").field("owner", &self.owner).field("armed", &self.armed).finish_non_exhaustive()
    }
}

impl WaitingPlace {
    /// No place yet, for `owner` in the lines of `locks`.
    pub(super) fn new(locks: Vec<LockId>, owner: String, sender: Option<HandoverSender>) -> Self {
        Self { locks, owner, armed: false, sender }
    }

    /// A refused attempt left a place in line.
    pub(super) fn arm(&mut self) {
        self.armed = true;
    }

    /// The locks were taken (which removes the place), or the place was withdrawn.
    pub(super) fn disarm(&mut self) {
        self.armed = false;
    }

    /// Withdraws the place now, if there is one (a wait that ends without the locks).
    pub(super) async fn withdraw(&mut self, store: &dyn Store) {
        if std::mem::take(&mut self.armed) {
            withdraw(store, &self.locks, &self.owner).await;
        }
    }
}

impl Drop for WaitingPlace {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(sender) = &self.sender {
            let handover = Handover::Withdraw(std::mem::take(&mut self.locks), std::mem::take(&mut self.owner));
            if sender.send(handover).is_err() {
                debug!("the releaser stopped: a cancelled waiter's place in line will run out by itself");
            }
        }
    }
}

/// Leases an invocation holds. Until [`HeldLeases::settle`] says the store released them (an
/// applied commit, or an explicit release), dropping the guard hands them to the releaser.
pub(super) struct HeldLeases {
    leases: Vec<LockLease>,
    sender: Option<HandoverSender>,
}

impl fmt::Debug for HeldLeases {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeldLeases").field("leases", &self.leases).finish_non_exhaustive()
    }
}

impl HeldLeases {
    /// Guards `leases`, handing them over `sender` if dropped unsettled.
    pub(super) fn new(leases: Vec<LockLease>, sender: Option<HandoverSender>) -> Self {
        Self { leases, sender }
    }

    /// The leases, one per model in lock order.
    pub(super) fn leases(&self) -> &[LockLease] {
        &self.leases
    }

    /// The store released the leases, or was asked to: nothing is left to hand over.
    pub(super) fn settle(mut self) {
        self.leases.clear();
    }
}

impl Drop for HeldLeases {
    fn drop(&mut self) {
        if self.leases.is_empty() {
            return;
        }
        let leases = std::mem::take(&mut self.leases);
        match &self.sender {
            Some(sender) => {
                if sender.send(Handover::Leases(leases)).is_err() {
                    warn!(
                        "the releaser stopped with its runtime: a cancelled invocation's locks will run out with their lease"
                    );
                }
            }
            None => {
                debug!("no Tokio runtime to release on: a cancelled invocation's locks will run out with their lease")
            }
        }
    }
}

/// A lock-and-load in flight: a future that, dropped before its reply came, hands the attempt
/// to the releaser, which waits for the reply and releases what it took.
pub(super) struct PendingLock {
    attempt: Option<LockFuture>,
    request: Arc<LockRequest>,
    /// Whether it was polled: an attempt never polled was never sent.
    sent: bool,
    sender: Option<HandoverSender>,
}

impl fmt::Debug for PendingLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingLock").field("done", &self.attempt.is_none()).field("sent", &self.sent).finish()
    }
}

impl PendingLock {
    /// Starts `request` on `store` (sent at the first poll).
    pub(super) fn new(store: &Arc<dyn Store>, request: &Arc<LockRequest>, sender: Option<HandoverSender>) -> Self {
        let (store, sent_request) = (Arc::clone(store), Arc::clone(request));
        let attempt: LockFuture = Box::pin(async move { store.try_lock_and_load(&sent_request).await });
        Self { attempt: Some(attempt), request: Arc::clone(request), sent: false, sender }
    }
}

impl Future for PendingLock {
    type Output = Result<LockAttempt, StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.sent = true;
        let Some(attempt) = self.attempt.as_mut() else {
            return Poll::Ready(Err(StoreError::Backend("a lock-and-load was polled after it finished".into())));
        };
        let result = ready!(attempt.as_mut().poll(cx));
        self.attempt = None;
        Poll::Ready(result)
    }
}

impl Drop for PendingLock {
    fn drop(&mut self) {
        let Some(attempt) = self.attempt.take().filter(|_| self.sent) else { return };
        match &self.sender {
            Some(sender) => {
                if sender.send(Handover::Pending(attempt, Arc::clone(&self.request))).is_err() {
                    warn!(
                        "the releaser stopped with its runtime: the locks a cancelled lock-and-load takes will run out with their lease"
                    );
                }
            }
            None => debug!("no Tokio runtime: the locks a cancelled lock-and-load takes will run out with their lease"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::change::ModelTarget;
    use crate::model::ids::ModelId;
    use crate::model::schema::ModelSchema;
    use crate::model::value::{FieldType, ScalarKind};
    use crate::store::memory::MemoryStore;

    fn request(owner: &str) -> LockRequest {
        let schema = ModelSchema::builder("T").field("n", FieldType::Scalar(ScalarKind::Int)).build().expect("schema");
        LockRequest {
            models: vec![ModelTarget { id: ModelId::new("T", "k"), schema: Arc::new(schema) }],
            action: "a".into(),
            owner: owner.into(),
            lease: Duration::from_secs(60),
            record: None,
        }
    }

    async fn take(store: &Arc<dyn Store>, owner: &str) -> Option<Vec<LockLease>> {
        match store.try_lock_and_load(&request(owner)).await.expect("the memory store answers") {
            LockAttempt::Acquired { leases, .. } => Some(leases),
            _ => None,
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime")
    }

    /// Dropped unsettled, the guard's leases are released by the releaser task; settled, they
    /// are not touched.
    #[test]
    fn a_dropped_guard_hands_its_leases_to_the_releaser_and_a_settled_one_does_not() {
        runtime().block_on(async {
            let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
            let releaser = Releaser::new(Arc::clone(&store));
            let leases = take(&store, "cancelled").await.expect("the lock is free");
            let mut released = store.watch(&[leases[0].lock.clone()]);
            drop(HeldLeases::new(leases, releaser.sender()));
            tokio::time::timeout(Duration::from_secs(10), released.released()).await.expect("released");
            let leases = take(&store, "settled").await.expect("the releaser freed the lock");
            HeldLeases::new(leases, releaser.sender()).settle();
            // Nothing was handed over, so the lock stays held: the next attempt is refused.
            tokio::task::yield_now().await;
            assert!(take(&store, "third").await.is_none(), "a settled guard released its lock");
        });
    }

    /// Without a Tokio runtime there is no releaser: a dropped guard leaves its locks to run
    /// out with their lease (and dropping it neither panics nor blocks).
    #[test]
    fn without_a_runtime_a_dropped_guard_leaves_its_locks_to_their_lease() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let releaser = Releaser::new(Arc::clone(&store));
        let leases = runtime().block_on(take(&store, "holder")).expect("the lock is free");
        let sender = releaser.sender();
        assert!(sender.is_none(), "no runtime, no releaser");
        drop(HeldLeases::new(leases, sender));
        assert!(runtime().block_on(take(&store, "next")).is_none(), "the lock is still held");
    }

    /// The releaser task stops once the releaser and every guard are gone, letting go of the
    /// store.
    #[test]
    fn the_releaser_stops_with_its_engine() {
        runtime().block_on(async {
            let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
            let releaser = Releaser::new(Arc::clone(&store));
            let sender = releaser.sender().expect("inside a runtime");
            assert_eq!(Arc::strong_count(&store), 3, "the test, the releaser and its task");
            drop((sender, releaser));
            for _ in 0..1_000 {
                if Arc::strong_count(&store) == 1 {
                    return;
                }
                tokio::task::yield_now().await;
            }
            panic!("the releaser task still holds the store");
        });
    }
}
