//! Sandbox limits enforced while a rule runs: the memory cap and the instance-pool gate.

use std::sync::{Condvar, Mutex, PoisonError};

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
/// instead turns a burst of invocations into a short queue rather than spurious errors. Runs are
/// bounded by their deadline, so a wait is too.
#[derive(Debug)]
pub(crate) struct InstanceGate {
    free: Mutex<u32>,
    freed: Condvar,
}

impl InstanceGate {
    pub(crate) fn new(slots: u32) -> Self {
        Self { free: Mutex::new(slots), freed: Condvar::new() }
    }

    /// Waits for a free slot and holds it until the permit drops.
    pub(crate) fn acquire(&self) -> GatePermit<'_> {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(PoisonError::into_inner);
        }
        *free -= 1;
        GatePermit { gate: self }
    }
}

/// A held slot of an [`InstanceGate`]; drop it only after the run's `Store` is dropped, since
/// that is when the pool gets the slot back.
#[derive(Debug)]
pub(crate) struct GatePermit<'a> {
    gate: &'a InstanceGate,
}

impl Drop for GatePermit<'_> {
    fn drop(&mut self) {
        *self.gate.free.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.gate.freed.notify_one();
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

    #[test]
    fn the_gate_hands_out_its_slots_then_waits() {
        let gate = std::sync::Arc::new(InstanceGate::new(1));
        let permit = gate.acquire();
        let waiter = {
            let gate = std::sync::Arc::clone(&gate);
            std::thread::spawn(move || drop(gate.acquire()))
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!waiter.is_finished(), "the second acquire waits");
        drop(permit);
        waiter.join().expect("the waiter gets the slot");
    }
}
