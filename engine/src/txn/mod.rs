//! The transaction protocol: one [`Protocol`] object per engine, with one entry point
//! ([`Protocol::invoke`]) that holds the mode dispatch and the retry loop, so a new mode
//! touches this module only.
//!
//! Every flow is load → run → commit, two store round trips in the common case:
//! - [`lock_mode`]: lock-and-load, run, fenced commit-and-release (state diff); invocations of
//!   one lock set queued in one engine run back to back under one lock hold and commit together
//!   ([`group`]);
//! - [`pipeline`]: load, run, unguarded commit of the operations' intent;
//! - [`optimistic`]: load with versions, run, commit only if the versions still hold (one
//!   round trip when the snapshot cache holds every model);
//! - [`adaptive`]: optimistic, or lock mode for models that keep conflicting, chosen per
//!   attempt.
//!
//! Files, one job each: `plan` (an invocation resolved into lock order), `flow` (the steps the
//! flows share: running the rule, assembling the outcome), `idempotency` (keys, records,
//! replays, lost commit replies), `acquire` and `local_queue` (taking locks), `release`
//! (releasing the locks of invocations whose callers gave up), one file per mode, `group`
//! (group commit) and `cache` (the snapshot cache).

mod acquire;
mod adaptive;
mod cache;
mod flow;
mod group;
mod idempotency;
mod local_queue;
mod lock_mode;
mod optimistic;
mod pipeline;
mod plan;
mod release;
mod unsure;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;
use tracing::{debug, warn};

use self::adaptive::Contention;
pub use self::adaptive::{AdaptiveConfig, AdaptiveStats};
use self::cache::SnapshotCache;
pub use self::cache::{CacheStats, SnapshotCacheConfig};
use self::idempotency::Idempotency;
pub(crate) use self::plan::Plan;
use self::release::{HeldLeases, Releaser};
use crate::engine::EngineConfig;
use crate::error::class::RetryClass;
use crate::error::{Error, InvocationError, Result};
use crate::invocation::{Invocation, Mode, Outcome, RetryPolicy, RunContext};
use crate::rule::Rule;
use crate::runtime::RuleRuntime;
use crate::store::Store;

/// The protocol settings of an engine: the timeouts and sizes the flows read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// How long a lock lives if its holder never commits.
    pub lease: Duration,
    /// How long an invocation waits for its locks.
    pub acquire_timeout: Duration,
    /// The largest lock-mode group (1: no grouping).
    pub max_group: usize,
    /// The rule deadline (a group stops growing before one more run could outlast its lease).
    pub rule_deadline: Duration,
    /// How long idempotency records stay.
    pub record_retention: Duration,
    /// When adaptive mode takes locks.
    pub adaptive: AdaptiveConfig,
}

impl Settings {
    /// The protocol's part of an engine's configuration.
    pub(crate) fn of(config: &EngineConfig) -> Self {
        Self {
            lease: config.lease,
            acquire_timeout: config.acquire_timeout,
            max_group: config.max_group,
            rule_deadline: config.runtime.deadline,
            record_retention: config.idempotency_retention,
            adaptive: config.adaptive,
        }
    }
}

/// The protocol state of one engine: the store, the sandbox, the local lock lines, the group
/// lines and the settings; shared by every invocation of the engine (and its clones).
pub(crate) struct Protocol {
    store: Arc<dyn Store>,
    runtime: RuleRuntime,
    settings: Settings,
    queue: local_queue::LocalLockQueue,
    groups: group::GroupLines,
    inflight: idempotency::InFlight,
    /// The last state of models this engine loaded or committed (optimistic mode's one round
    /// trip).
    cache: Arc<SnapshotCache>,
    /// Whether the store tells the cache which models other clients changed.
    watched: bool,
    /// Which models keep conflicting (adaptive mode's choice of flow).
    contention: Contention,
    /// Releases the locks of invocations dropped while they held them.
    releaser: Releaser,
    /// Lock requests whose replies were lost, reclaimed when their invocation ends.
    unsure: unsure::UnsureLocks,
    /// This engine instance's id: the first half of every invocation id (and lock owner).
    instance: String,
    sequence: AtomicU64,
}

impl fmt::Debug for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Protocol")
            .field("store", &self.store)
            .field("settings", &self.settings)
            .field("instance", &self.instance)
            .field("watched", &self.watched)
            .field("groups", &self.groups)
            .field("releaser", &self.releaser)
            .finish_non_exhaustive()
    }
}

impl Protocol {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        runtime: RuleRuntime,
        settings: Settings,
        cache: SnapshotCacheConfig,
    ) -> Self {
        let cache = Arc::new(SnapshotCache::new(cache));
        let watched = cache.enabled() && {
            let sink: Arc<dyn crate::store::ChangeSink> = cache.clone();
            store.watch_changes(Arc::downgrade(&sink))
        };
        Self {
            cache,
            watched,
            contention: Contention::new(settings.adaptive),
            releaser: Releaser::new(Arc::clone(&store)),
            unsure: unsure::UnsureLocks::default(),
            store,
            runtime,
            settings,
            queue: local_queue::LocalLockQueue::default(),
            groups: group::GroupLines::default(),
            inflight: idempotency::InFlight::default(),
            instance: format!("{:016x}", rand::random::<u64>()),
            sequence: AtomicU64::new(0),
        }
    }

    /// The store every flow reads and writes.
    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The sandbox rules run in.
    pub(crate) fn runtime(&self) -> &RuleRuntime {
        &self.runtime
    }

    /// The epoch to take before a store call whose snapshots the cache may keep.
    pub(crate) fn cache_epoch(&self) -> cache::CacheEpoch {
        self.cache.epoch(self.store.generation())
    }

    /// What the snapshot cache did so far.
    pub(crate) fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// What adaptive mode did so far.
    pub(crate) fn adaptive_stats(&self) -> AdaptiveStats {
        self.contention.stats()
    }

    /// Forgets the cached state of models written where the engine does not know the exact
    /// result (pipeline and group commits, direct writes).
    pub(crate) fn forget_cached(&self, models: &[crate::model::change::ModelTarget]) {
        self.cache.forget(models);
    }

    /// Runs `rule` on the planned models in the invocation's mode, retrying retryable
    /// failures per `policy`, under one invocation id and idempotency key for every attempt.
    ///
    /// # Errors
    /// As [`Engine::invoke`](crate::Engine::invoke): the last attempt's error, with the
    /// invocation id and key.
    pub(crate) async fn invoke(
        self: &Arc<Self>,
        rule: &Rule,
        invocation: &Invocation,
        plan: &Plan,
        policy: RetryPolicy,
    ) -> Result<Outcome, InvocationError> {
        let invocation_id = self.next_invocation_id();
        let idem = Idempotency::of(rule, invocation, &invocation_id);
        let fail = |error: Error| InvocationError {
            error,
            invocation_id: Some(invocation_id.clone()),
            idempotency_key: Some(idem.key.clone()),
        };
        // Models the store cannot commit together (several Redis Cluster slots) are refused
        // before anything is locked, loaded or written, in every mode.
        self.store.ensure_co_located(&plan.sorted).map_err(|e| fail(e.into()))?;
        let started = Instant::now();
        // Declared first, dropped last: once the invocation is over (or dropped), the locks a
        // lost lock-and-load reply may have left it are reclaimed.
        let _unsure = unsure::UnsureGuard::new(
            &self.unsure,
            invocation_id.clone(),
            Arc::clone(&self.store),
            self.releaser.sender(),
        );
        // Another call with this key running in this engine goes first; this one then finds
        // its record (or runs, if it failed).
        let _hold = match plan.sorted.first() {
            Some(anchor) => Some(
                self.hold_key(&anchor.id, &idem.key, started + self.settings.acquire_timeout).await.map_err(fail)?,
            ),
            None => None,
        };
        let mut attempt = 1;
        // Adaptive mode: how often this invocation's optimistic attempts were refused.
        let mut refusals = 0;
        loop {
            let before = started.elapsed();
            let flow = self.flow(invocation.mode, plan, refusals);
            let context = self.context(invocation, &invocation_id, attempt, flow.mode());
            let result = match flow {
                Flow::Lock => lock_mode::run(self, rule, invocation, plan, &idem, context).await,
                Flow::Pipeline => pipeline::run(self, rule, invocation, plan, &idem, context).await,
                Flow::Optimistic => {
                    // Re-runs on the fresh state a refused commit brings back count as attempts
                    // of the caller's policy.
                    // (By class: an invocation may name no models, and then no conflict either.)
                    let max_attempts =
                        if policy.retries_class(RetryClass::Conflict) { policy.max_attempts } else { attempt };
                    optimistic::run(self, rule, invocation, plan, &idem, context, max_attempts).await
                }
            };
            match result {
                Ok(mut outcome) => {
                    // The flow counted its own re-runs (a rule run again on fresh state) from
                    // `attempt` on.
                    if !outcome.replayed {
                        outcome.attempts = outcome.attempts.max(attempt);
                    }
                    outcome.timings.wait += before;
                    return Ok(outcome);
                }
                Err(e) if attempt < policy.max_attempts && policy.retries(&e) => {
                    debug!(attempt, error = %e, "retrying");
                    let mut queued = false;
                    if let (Flow::Optimistic, Error::Conflict { model, attempts }) = (flow, &e) {
                        // The optimistic flow may have run the rule again itself.
                        attempt = attempt.max(*attempts);
                        if invocation.mode == Mode::Adaptive {
                            let now = std::time::Instant::now();
                            self.contention.conflicted(model, now);
                            refusals += 1;
                            queued = self.contention.prefers_lock(plan.sorted.iter().map(|t| &t.id), refusals, now);
                        }
                    }
                    if attempt >= policy.max_attempts {
                        return Err(fail(e));
                    }
                    // An adaptive invocation headed for the lock queue waits there, not in a
                    // backoff.
                    if !queued {
                        tokio::time::sleep(policy.backoff(attempt)).await;
                    }
                    attempt += 1;
                }
                Err(e) => return Err(fail(e)),
            }
        }
    }

    /// Which flow an attempt runs: the invocation's mode, or in adaptive mode lock mode when
    /// the invocation was refused often enough (`refusals`) or one of its models is marked
    /// hot, else optimistic.
    fn flow(&self, mode: Mode, plan: &Plan, refusals: u32) -> Flow {
        match mode {
            Mode::Lock => Flow::Lock,
            Mode::Pipeline => Flow::Pipeline,
            Mode::Optimistic => Flow::Optimistic,
            Mode::Adaptive => {
                let now = std::time::Instant::now();
                let locked = self.contention.prefers_lock(plan.sorted.iter().map(|t| &t.id), refusals, now);
                self.contention.count_attempt(locked);
                if locked { Flow::Lock } else { Flow::Optimistic }
            }
        }
    }

    /// A fresh invocation id: this engine's instance id and a sequence number.
    fn next_invocation_id(&self) -> String {
        let seq = self.sequence.fetch_add(1, Ordering::Relaxed);
        format!("{}-{seq}", self.instance)
    }

    /// What the rule's attempt number `attempt` sees: the invocation id, the time.
    fn context(&self, invocation: &Invocation, invocation_id: &str, attempt: u32, mode: Mode) -> RunContext {
        let now_ms = invocation.context.now_ms.unwrap_or_else(|| {
            SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        });
        let mut context = RunContext::new(invocation_id, invocation.action.clone(), mode);
        context.now_ms = now_ms;
        context.attempt = attempt;
        context.shown = invocation.context.clone();
        context
    }

    /// Frees the locks of an attempt that failed after taking them (a rule failure, a refused
    /// commit; for a commit of unknown outcome too, as the release is token-checked: a commit
    /// that landed released them already, one still on its way cannot land once they are
    /// free). A release that fails only logs: the leases run out by themselves. Cancelled
    /// before the release was answered, the leases go to the releaser.
    async fn release_after_failure(&self, leases: HeldLeases, failure: &'static str) {
        if let Err(error) = self.store.release(leases.leases()).await {
            warn!(%error, failure, "could not release the locks after a failure; their leases will run out");
        }
        if self.watched {
            // The release wrote the models' lock fields, which ends their tracking: nobody
            // would say when another client changes them.
            self.cache.forget_ids(leases.leases().iter().map(|l| &l.lock.model));
        }
        leases.settle();
    }
}

/// The flow an attempt runs: what a [`Mode`] resolves to (adaptive mode picks one of the
/// others per attempt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Lock,
    Pipeline,
    Optimistic,
}

impl Flow {
    /// The mode the rule is shown (its `context`): the one its attempt runs in.
    fn mode(self) -> Mode {
        match self {
            Self::Lock => Mode::Lock,
            Self::Pipeline => Mode::Pipeline,
            Self::Optimistic => Mode::Optimistic,
        }
    }
}
