//! Engine settings.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::invocation::RetryPolicy;
use crate::runtime::RuntimeConfig;
use crate::txn::{AdaptiveConfig, SnapshotCacheConfig};

/// Engine settings: the sandbox's, the lock protocol's and the default retry policy.
///
/// Start from [`EngineConfig::default`] and change fields, or use the
/// [`EngineBuilder`](crate::EngineBuilder)'s setters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EngineConfig {
    /// Sandbox settings: deadline, memory cap, limits.
    pub runtime: RuntimeConfig,
    /// How long a lock lives if its holder never commits or releases it (a crash, a
    /// partition). Must be longer than the rule deadline ([`EngineConfig::validate`]), and
    /// should exceed the rule deadline plus two store round trips by a wide margin: half of it
    /// bounds what one lock hold may spend waiting for a sandbox slot, re-running the rule on
    /// fresh state and growing a group, and the commit must land before it runs out. Default
    /// 3 s.
    ///
    /// # Notes
    /// The lease is what a holder that never comes back costs everyone else: a process killed
    /// while it holds locks runs no code, so they stay taken until the lease runs out. The
    /// default, 3 s, is below the default acquire timeout (5 s), so that an invocation that
    /// starts waiting after a holder crashed still gets the lock instead of timing out, and 30
    /// times the default rule deadline (100 ms), which leaves 1.5 s per hold to the flows
    /// above. Raise it with the rule deadline (to well over twice the deadline: a rule that
    /// runs 1 s wants a lease of 3 s or more), and keep it below the acquire timeout if waiters
    /// should outlast a crashed holder.
    ///
    /// A caller that gives up (drops the future of [`Engine::invoke`](crate::Engine::invoke):
    /// a timeout, a dropped HTTP request) does not cost a lease: its locks are released by a
    /// background task of the engine, handed over by the invocation's `Drop`, within one
    /// store round trip. The release is checked against the lease's fencing token, so it frees
    /// only what the invocation still holds (a commit that landed released them already; one
    /// still on its way cannot land on a free lock). That task runs on the Tokio runtime of the
    /// invocations; an engine driven without a Tokio runtime has none, and there a cancelled
    /// invocation's locks run out with their lease, as a crashed process's do.
    pub lease: Duration,
    /// How long an invocation waits for its locks before failing with
    /// [`Error::LockTimeout`].
    pub acquire_timeout: Duration,
    /// The retry policy of invocations that do not set their own.
    pub retry: RetryPolicy,
    /// Group commit in lock mode: at most this many invocations of the same models and action,
    /// queued in this engine, run back to back under one lock hold and commit together in one
    /// round trip (each still sees the previous one's writes and gets its own result). `1`
    /// turns grouping off.
    pub max_group: usize,
    /// How long the idempotency record of a committed invocation stays in the store (beside
    /// its first model): a repeat with the same key within this time applies nothing and gets
    /// the first outcome; after it, the key is forgotten. Each record costs its key, the
    /// models' versions and the rule's output (a few hundred bytes for a typical transfer), so
    /// the store holds about `invocations per second × retention` of them: 1 hour at 1,000
    /// invocations/s is 3.6 million records, around 1 GB in Redis. Default 1 hour.
    pub idempotency_retention: Duration,
    /// The snapshot cache of optimistic mode: with the last state and version of a model kept,
    /// an optimistic invocation runs its rule at once and commits in one round trip (the commit
    /// checks every version, and brings back the state of models that moved). Default on,
    /// 10,000 models, 64 MiB; [`SnapshotCacheConfig::disabled`] turns it off.
    pub snapshot_cache: SnapshotCacheConfig,
    /// When adaptive mode ([`Mode::Adaptive`](crate::Mode::Adaptive)) sends a model to lock
    /// mode: after 3 conflicts within 100 ms of each other, for 1 s.
    pub adaptive: AdaptiveConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            runtime: RuntimeConfig::default(),
            lease: Duration::from_secs(3),
            acquire_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            max_group: 32,
            idempotency_retention: Duration::from_secs(3600),
            snapshot_cache: SnapshotCacheConfig::default(),
            adaptive: AdaptiveConfig::default(),
        }
    }
}

impl EngineConfig {
    /// Checks that the settings fit together (the sandbox's own are checked when its runtime
    /// starts).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a lease not longer than the rule deadline, a zero acquire
    /// timeout, a group size outside 1..=10 000, an idempotency retention under one second, or
    /// adaptive settings of zero.
    pub fn validate(&self) -> Result<()> {
        self.adaptive.validate()?;
        if self.lease <= self.runtime.deadline {
            return Err(Error::InvalidInput {
                reason: format!(
                    "lease {:?} must be longer than the rule deadline {:?}",
                    self.lease, self.runtime.deadline
                ),
            });
        }
        if self.acquire_timeout.is_zero() {
            return Err(Error::InvalidInput { reason: "acquire timeout must be positive".into() });
        }
        if self.idempotency_retention < Duration::from_secs(1) {
            return Err(Error::InvalidInput {
                reason: format!(
                    "idempotency retention {:?} must be at least 1 s (a retry must still find the record)",
                    self.idempotency_retention
                ),
            });
        }
        if self.max_group == 0 || self.max_group > 10_000 {
            return Err(Error::InvalidInput {
                reason: format!("max_group {} must be between 1 and 10 000", self.max_group),
            });
        }
        Ok(())
    }
}
