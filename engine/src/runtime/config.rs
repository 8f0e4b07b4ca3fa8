//! Runtime configuration: the sandbox's limits and the instance pool's size.

use std::time::Duration;

use crate::error::Error;

/// One WebAssembly page: the smallest memory a rule can have.
const WASM_PAGE: usize = 64 << 10;

/// Limits on what a rule may do through its host calls, per run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RuleLimits {
    /// The most items a list field may hold after a write (default 100 000).
    pub max_list_len: usize,
    /// The most entries a dict field may hold after a write (default 100 000).
    pub max_dict_len: usize,
    /// The most bytes one field value may take once stored (default 1 MiB).
    pub max_value_bytes: usize,
    /// The most log records one run may emit (default 100); later ones are dropped, counted and
    /// reported by one warning at the end of the run.
    pub max_log_records: usize,
    /// The most bytes of one log record, message and fields together (default 4096); longer
    /// records are truncated.
    pub max_log_bytes: usize,
}

impl Default for RuleLimits {
    fn default() -> Self {
        Self {
            max_list_len: 100_000,
            max_dict_len: 100_000,
            max_value_bytes: 1 << 20,
            max_log_records: 100,
            max_log_bytes: 4096,
        }
    }
}

/// How rules are compiled and sandboxed.
///
/// ```
/// use std::time::Duration;
/// use wasmtx::runtime::RuntimeConfig;
/// let mut config = RuntimeConfig::default();
/// config.deadline = Duration::from_millis(50);
/// assert_eq!(config.memory_limit, 16 << 20);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RuntimeConfig {
    /// Wall-clock time one run (instantiation included) may take (default 100 ms), counted
    /// from its start: time it spends yielding to other tasks counts too.
    pub deadline: Duration,
    /// The most bytes each linear memory of a rule may grow to (default 16 MiB, at least one
    /// 64 KiB page).
    pub memory_limit: usize,
    /// The largest rule `compile` accepts, in bytes (default 8 MiB).
    pub max_rule_bytes: usize,
    /// The most rule instances alive at once: the size of the instance pool (default 256).
    /// Runs beyond it wait (asynchronously) for a free slot; a lock-mode run waits at most
    /// what is left of its lease budget, then fails with [`Error::Overloaded`].
    pub max_instances: u32,
    /// How often a running rule yields to the host's executor (default 250 µs): the longest
    /// a rule keeps a host thread from other tasks, timers and I/O, and the granularity of
    /// the deadline. Between 100 µs and 100 ms.
    pub yield_interval: Duration,
    /// Threads of their own for rules that run past one tick (default: the machine's cores
    /// minus one, at least 1). A rule starts on the caller's task; if it is still running at
    /// its first yield, it moves to these threads, where such rules take turns at every tick:
    /// however many rules spin, they keep no more threads busy than this.
    pub rule_threads: u32,
    /// Limits on the rule's host calls.
    pub limits: RuleLimits,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            deadline: Duration::from_millis(100),
            memory_limit: 16 << 20,
            max_rule_bytes: 8 << 20,
            max_instances: 256,
            yield_interval: Duration::from_micros(250),
            rule_threads: default_rule_threads(),
            limits: RuleLimits::default(),
        }
    }
}

/// The machine's cores minus one (one left to the host's I/O and the store), at least 1.
fn default_rule_threads() -> u32 {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    u32::try_from(cores.saturating_sub(1).max(1)).unwrap_or(1)
}

impl RuntimeConfig {
    /// Checks that the configuration can be used.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the first unusable setting.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |reason: &str| Err(Error::InvalidInput { reason: format!("invalid runtime config: {reason}") });
        if self.deadline.is_zero() {
            return bad("`deadline` must be longer than zero");
        }
        // An epoch deadline is counted in ticks of a u64: anything near an hour is already a
        // configuration mistake for a rule that runs inside a lock.
        if self.deadline > Duration::from_secs(3600) {
            return bad("`deadline` must be at most one hour");
        }
        if self.memory_limit < WASM_PAGE {
            return bad("`memory_limit` must be at least one 64 KiB WebAssembly page");
        }
        // Rules are 32-bit WebAssembly: their memories cannot grow past 4 GiB anyway.
        if self.memory_limit as u64 > 4 << 30 {
            return bad("`memory_limit` must be at most 4 GiB");
        }
        if self.max_rule_bytes == 0 {
            return bad("`max_rule_bytes` must be at least 1");
        }
        if self.yield_interval < Duration::from_micros(100) || self.yield_interval > Duration::from_millis(100) {
            return bad("`yield_interval` must be between 100 µs and 100 ms");
        }
        if self.rule_threads == 0 || self.rule_threads > 1024 {
            return bad("`rule_threads` must be between 1 and 1024");
        }
        if self.max_instances == 0 || self.max_instances > 100_000 {
            return bad("`max_instances` must be between 1 and 100 000");
        }
        let l = &self.limits;
        if l.max_list_len == 0 || l.max_dict_len == 0 || l.max_value_bytes == 0 {
            return bad("`limits.max_list_len`, `max_dict_len` and `max_value_bytes` must be at least 1");
        }
        Ok(())
    }

    /// The pool's per-memory size: the cap rounded up to whole pages, so that the memory
    /// limiter (which knows it hit the cap) refuses a growth before the pool would.
    pub(crate) fn pool_memory_size(&self) -> usize {
        self.memory_limit.div_ceil(WASM_PAGE) * WASM_PAGE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(RuntimeConfig::default().validate().is_ok());
    }

    #[test]
    fn unusable_settings_are_named() {
        type Tweak = fn(&mut RuntimeConfig);
        let cases: [(Tweak, &str); 5] = [
            (|c| c.deadline = Duration::ZERO, "deadline"),
            (|c| c.memory_limit = 1000, "memory_limit"),
            (|c| c.max_rule_bytes = 0, "max_rule_bytes"),
            (|c| c.max_instances = 0, "max_instances"),
            (|c| c.limits.max_value_bytes = 0, "max_value_bytes"),
        ];
        for (tweak, needle) in cases {
            let mut config = RuntimeConfig::default();
            tweak(&mut config);
            let err = config.validate().expect_err(needle).to_string();
            assert!(err.contains(needle), "{err} should name {needle}");
        }
    }

    #[test]
    fn pool_memory_is_whole_pages() {
        let config = RuntimeConfig { memory_limit: (64 << 10) + 1, ..RuntimeConfig::default() };
        assert_eq!(config.pool_memory_size(), 128 << 10);
    }
}
