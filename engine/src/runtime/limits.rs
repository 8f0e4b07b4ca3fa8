//! Sandbox limits enforced while a rule runs: the memory cap and the instance-pool gate.

use wasmtime::ResourceLimiter;

/// Caps each linear memory of a rule and remembers whether the cap was hit.
///
/// Wasmtime reports a refused growth as a generic error (not a `Trap`), so the flag is how a run
/// tells "out of memory" from any other failure.
#[derive(Debug)]
pub(crate) struct MemoryCap {
    limit: usize,
    hit: bool,
}

impl MemoryCap {
    pub(crate) fn new(limit: usize) -> Self {
        Self { limit, hit: false }
    }

    /// Whether the rule tried to grow a memory past the cap.
    pub(crate) fn was_hit(&self) -> bool {
        self.hit
    }
}

/// Most tables a rule needs are tiny; this only stops a rule from growing one without bound
/// (the pool caps it too, but without saying why).
const MAX_TABLE_ELEMENTS: usize = 20_000;

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            // An error (not `Ok(false)`) stops the rule now: a guest allocator that sees
            // `memory.grow` fail would only trap later with a less useful message.
            wasmtime::bail!("rule memory would grow from {current} to {desired} bytes, over the cap of {}", self.limit);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// A counting semaphore over the instance pool's slots.
///
/// The pool fails an instantiation outright when it is full; making the run wait for a slot
/// instead turns a burst of invocations into a short queue rather than spurious errors. The wait
/// is asynchronous (it never blocks a host thread) and may be bounded: a run holding locks
/// waits at most what is left of its lease budget.
#[derive(Debug)]
pub(crate) struct InstanceGate {
    slots: std::sync::Arc<tokio::sync::Semaphore>,
}

/// A held slot of an [`InstanceGate`]: drop it only after the run's `Store`, since that is
/// when the pool gets the slot back.
pub(crate) type GatePermit = tokio::sync::OwnedSemaphorePermit;

impl InstanceGate {
    pub(crate) fn new(slots: u32) -> Self {
        let slots = usize::try_from(slots).unwrap_or(usize::MAX);
        Self { slots: std::sync::Arc::new(tokio::sync::Semaphore::new(slots)) }
    }

    /// Waits for a free slot, until `until` if given, and holds it until the permit drops.
    /// `None` if `until` came first.
    pub(crate) async fn acquire(&self, until: Option<tokio::time::Instant>) -> Option<GatePermit> {
        let acquire = std::sync::Arc::clone(&self.slots).acquire_owned();
        match until {
            None => acquire.await.ok(),
            Some(until) => tokio::time::timeout_at(until, acquire).await.ok().and_then(Result::ok),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_flags_what_it_refuses() {
        let mut cap = MemoryCap::new(1 << 20);
        assert!(cap.memory_growing(0, 1 << 20, None).expect("at the cap"));
        assert!(!cap.was_hit());
        assert!(cap.memory_growing(1 << 20, (1 << 20) + 1, None).is_err());
        assert!(cap.was_hit());
    }

    #[tokio::test]
    async fn the_gate_hands_out_its_slots_then_waits_within_its_bound() {
        use futures_util::FutureExt as _;
        let gate = InstanceGate::new(1);
        let permit = gate.acquire(None).await.expect("a free slot");
        let mut waiting = Box::pin(gate.acquire(None));
        assert!((&mut waiting).now_or_never().is_none(), "the second acquire waits");
        let soon = tokio::time::Instant::now() + std::time::Duration::from_millis(5);
        assert!(gate.acquire(Some(soon)).await.is_none(), "a bounded wait gives up");
        drop(permit);
        assert!(waiting.await.is_some(), "the waiter gets the slot");
    }
}
