//! A real store with a gate before commits: lets a test stop an invocation between its load
//! (or rule run) and its commit, act meanwhile (let a lease run out, write from another
//! client), then let the commit go. Every other call goes straight to the wrapped store.

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use tokio::sync::oneshot;
use wasmtx::store::{CommitReceipt, CommitRequest, LockAttempt, LockLease, LockRequest, ReleaseWatch};
use wasmtx::{LockId, ModelSnapshot, ModelTarget, Store, StoreError};

/// A store whose next commit(s) wait at a gate the test opens.
#[derive(Debug)]
pub struct GatedStore {
    inner: Arc<dyn Store>,
    gates: Mutex<Vec<Gate>>,
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
        Arc::new(Self { inner, gates: Mutex::new(Vec::new()) })
    }

    /// Arms a gate for the next commit that has none yet (gates are used in arming order).
    pub fn arm(&self) -> GateHandle {
        let (reached_tx, reached_rx) = oneshot::channel();
        let (open_tx, open_rx) = oneshot::channel();
        self.gates.lock().unwrap_or_else(PoisonError::into_inner).push(Gate { reached: reached_tx, open: open_rx });
        GateHandle { reached: reached_rx, open: open_tx }
    }
}

#[async_trait]
impl Store for GatedStore {
    async fn try_lock_and_load(&self, request: &LockRequest) -> Result<LockAttempt, StoreError> {
        self.inner.try_lock_and_load(request).await
    }
    async fn load(&self, models: &[ModelTarget]) -> Result<Vec<ModelSnapshot>, StoreError> {
        self.inner.load(models).await
    }
    async fn commit(&self, request: CommitRequest<'_>) -> Result<CommitReceipt, StoreError> {
        let gate = {
            let mut gates = self.gates.lock().unwrap_or_else(PoisonError::into_inner);
            if gates.is_empty() { None } else { Some(gates.remove(0)) }
        };
        if let Some(gate) = gate {
            let _ = gate.reached.send(());
            let _ = gate.open.await;
        }
        self.inner.commit(request).await
    }
    async fn release(&self, leases: &[LockLease]) -> Result<(), StoreError> {
        self.inner.release(leases).await
    }
    async fn delete(&self, model: &ModelTarget) -> Result<u64, StoreError> {
        self.inner.delete(model).await
    }
    fn watch(&self, locks: &[LockId]) -> ReleaseWatch {
        self.inner.watch(locks)
    }
}
