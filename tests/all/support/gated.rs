//! A real store with a gate before commits: lets a test stop an invocation between its load
//! (or rule run) and its commit, act meanwhile (let a lease run out, write from another
//! client), then let the commit go. It also loses commit replies on request (the commit
//! applied but its caller hears `Unavailable`, or it never arrived), and can fail the
//! resolves that follow; and loses lock-and-load replies (the locks were taken, the caller
//! hears `Unavailable`). It also tells when a lock-and-load took its locks (and can hold its
//! reply at a gate of its own), and counts releases. Every other call goes straight to the wrapped store.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use tokio::sync::oneshot;
use wasmtx::store::{
    CommitReceipt, CommitRequest, Loaded, LockAttempt, LockLease, LockRequest, ReleaseWatch, StoredRecord,
};
use wasmtx::{LockId, ModelSnapshot, ModelTarget, Store, StoreError};

/// What happens to the reply of a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostReply {
    /// The commit applies, then its reply is lost (as when the connection drops right after
    /// the request was sent).
    AfterApplying,
    /// The request never reaches the store, and no reply comes.
    BeforeArriving,
}

/// A store whose next commit(s) wait at a gate the test opens.
#[derive(Debug)]
pub struct GatedStore {
    inner: Arc<dyn Store>,
    gates: Mutex<Vec<Gate>>,
    lock_gates: Mutex<Vec<Gate>>,
    lost_replies: Mutex<VecDeque<LostReply>>,
    failing_resolves: AtomicU32,
    resolves: AtomicU32,
    lost_lock_replies: AtomicU32,
    lock_watchers: Mutex<Vec<oneshot::Sender<Vec<LockLease>>>>,
    releases: AtomicU32,
}

#[derive(Debug)]
struct Gate {
    reached: oneshot::Sender<()>,
    open: oneshot::Receiver<()>,
}

/// The test's side of one armed gate.
#[derive(Debug)]
pub struct GateHandle {
    /// Resolves when a commit reaches the gate.
    pub reached: oneshot::Receiver<()>,
    /// Send to let that commit go on.
    pub open: oneshot::Sender<()>,
}

impl GateHandle {
    /// Waits until a commit reaches the gate.
    ///
    /// # Errors
    /// If the store was dropped first.
    pub async fn wait_reached(&mut self) -> anyhow::Result<()> {
        (&mut self.reached).await.map_err(|_| anyhow::anyhow!("the gated commit never came"))
    }

    /// Lets the waiting commit go on.
    pub fn open(self) {
        let _ = self.open.send(());
    }
}

impl GatedStore {
    /// Wraps a store with no gate armed.
    pub fn new(inner: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            gates: Mutex::new(Vec::new()),
            lock_gates: Mutex::new(Vec::new()),
            lost_replies: Mutex::new(VecDeque::new()),
            failing_resolves: AtomicU32::new(0),
            resolves: AtomicU32::new(0),
            lost_lock_replies: AtomicU32::new(0),
            lock_watchers: Mutex::new(Vec::new()),
            releases: AtomicU32::new(0),
        })
    }

    /// Loses the reply of the next commit that has no lost reply planned yet.
    pub fn lose_reply(&self, how: LostReply) {
        self.lost_replies.lock().unwrap_or_else(PoisonError::into_inner).push_back(how);
    }

    /// Loses the replies of the next `n` lock-and-loads: each runs (and may take its locks),
    /// then its caller hears `Unavailable`.
    pub fn lose_lock_replies(&self, n: u32) {
        self.lost_lock_replies.store(n, Ordering::SeqCst);
    }

    /// Makes the next `n` resolves fail as if the store were unreachable.
    pub fn fail_resolves(&self, n: u32) {
        self.failing_resolves.store(n, Ordering::SeqCst);
    }

    /// How many resolves were asked for.
    pub fn resolves(&self) -> u32 {
        self.resolves.load(Ordering::SeqCst)
    }

    /// Resolves with the leases of the next lock-and-load that takes its locks, once the store
    /// has taken them (before its caller sees them).
    pub fn on_next_lock(&self) -> oneshot::Receiver<Vec<LockLease>> {
        let (tx, rx) = oneshot::channel();
        self.lock_watchers.lock().unwrap_or_else(PoisonError::into_inner).push(tx);
        rx
    }

    /// How many releases were asked for (whatever they released).
    pub fn releases(&self) -> u32 {
        self.releases.load(Ordering::SeqCst)
    }

    /// Arms a gate for the next commit that has none yet (gates are used in arming order).
    pub fn arm(&self) -> GateHandle {
        arm_gate(&self.gates)
    }

    /// Arms a gate for the next lock-and-load that takes its locks: it waits there with the
    /// locks held and the state loaded, before its caller sees them (gates are used in arming
    /// order).
    pub fn arm_lock(&self) -> GateHandle {
        arm_gate(&self.lock_gates)
    }
}

/// Adds a gate at the end of `gates`.
fn arm_gate(gates: &Mutex<Vec<Gate>>) -> GateHandle {
    let (reached_tx, reached_rx) = oneshot::channel();
    let (open_tx, open_rx) = oneshot::channel();
    gates.lock().unwrap_or_else(PoisonError::into_inner).push(Gate { reached: reached_tx, open: open_rx });
    GateHandle { reached: reached_rx, open: open_tx }
}

/// Waits at the first gate of `gates`, if one is armed, until the test opens it.
async fn pass_gate(gates: &Mutex<Vec<Gate>>) {
    let gate = {
        let mut gates = gates.lock().unwrap_or_else(PoisonError::into_inner);
        if gates.is_empty() { None } else { Some(gates.remove(0)) }
    };
    if let Some(gate) = gate {
        let _ = gate.reached.send(());
        let _ = gate.open.await;
    }
}

#[async_trait]
impl Store for GatedStore {
    async fn try_lock_and_load(&self, request: &LockRequest) -> Result<LockAttempt, StoreError> {
        let lose =
            self.lost_lock_replies.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        let attempt = self.inner.try_lock_and_load(request).await?;
        if let LockAttempt::Acquired { leases, .. } = &attempt {
            let watchers = std::mem::take(&mut *self.lock_watchers.lock().unwrap_or_else(PoisonError::into_inner));
            for watcher in watchers {
                let _ = watcher.send(leases.clone());
            }
            pass_gate(&self.lock_gates).await;
        }
        if lose {
            let took = matches!(attempt, LockAttempt::Acquired { .. });
            return Err(StoreError::Unavailable(format!(
                "the test lost the lock-and-load reply (locks taken: {took})"
            )));
        }
        Ok(attempt)
    }
    async fn load(&self, models: &[ModelTarget]) -> Result<Vec<ModelSnapshot>, StoreError> {
        self.inner.load(models).await
    }
    async fn load_unless_recorded(&self, models: &[ModelTarget], key: &str) -> Result<Loaded, StoreError> {
        self.inner.load_unless_recorded(models, key).await
    }
    async fn resolve(
        &self,
        anchor: &ModelTarget,
        keys: &[&str],
        commit_id: &str,
        retention: std::time::Duration,
    ) -> Result<Vec<Option<StoredRecord>>, StoreError> {
        self.resolves.fetch_add(1, Ordering::SeqCst);
        let failing = self.failing_resolves.load(Ordering::SeqCst);
        if failing > 0 {
            self.failing_resolves.store(failing - 1, Ordering::SeqCst);
            return Err(StoreError::Unavailable("the test cut the connection".into()));
        }
        self.inner.resolve(anchor, keys, commit_id, retention).await
    }
    async fn commit(&self, request: CommitRequest<'_>) -> Result<CommitReceipt, StoreError> {
        pass_gate(&self.gates).await;
        let lost = self.lost_replies.lock().unwrap_or_else(PoisonError::into_inner).pop_front();
        match lost {
            None => self.inner.commit(request).await,
            Some(LostReply::AfterApplying) => {
                let applied = self.inner.commit(request).await;
                Err(StoreError::Unavailable(format!("the test lost the reply ({})", applied.is_ok())))
            }
            Some(LostReply::BeforeArriving) => Err(StoreError::Unavailable("the test lost the request".into())),
        }
    }
    async fn release(&self, leases: &[LockLease]) -> Result<(), StoreError> {
        let released = self.inner.release(leases).await;
        self.releases.fetch_add(1, Ordering::SeqCst);
        released
    }
    async fn delete(&self, model: &ModelTarget) -> Result<u64, StoreError> {
        self.inner.delete(model).await
    }
    async fn withdraw(&self, locks: &[LockId], owner: &str) -> Result<(), StoreError> {
        self.inner.withdraw(locks, owner).await
    }
    fn watch(&self, locks: &[LockId]) -> ReleaseWatch {
        self.inner.watch(locks)
    }

    fn ensure_co_located(&self, models: &[ModelTarget]) -> Result<(), StoreError> {
        self.inner.ensure_co_located(models)
    }

    fn generation(&self) -> u64 {
        self.inner.generation()
    }

    fn watch_changes(&self, sink: std::sync::Weak<dyn wasmtx::store::ChangeSink>) -> bool {
        self.inner.watch_changes(sink)
    }
}
