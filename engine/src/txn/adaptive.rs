//! Adaptive mode: optimistic on the snapshot cache (one round trip on uniform keys), lock mode
//! with group commit for models that keep conflicting (a hot key's queue, instead of a storm of
//! refused commits), and back to optimistic after a while.
//!
//! The choice is per attempt and per engine: an attempt runs in lock mode when one of its models
//! is marked hot, or when its invocation was refused as often as it takes to mark a model; else
//! optimistic. An optimistic attempt refused on fresh state (another writer committed in
//! between, or a lock of the action is held) counts a conflict on that model. A model whose
//! conflicts follow each other closely enough is marked hot: every attempt on it runs in lock
//! mode until the mark runs out, then optimistic is tried again (a model still hot is marked
//! again by its first conflicts). A refused attempt that goes to lock mode next does not back
//! off: the lock queue orders it.
//!
//! Both flows are serializable and may be mixed on one model (an optimistic commit is refused
//! while a lock of its action is held), so a switch never needs coordination between
//! engines: each engine decides for its own callers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use std::time::Instant;

use crate::error::{Error, Result};
use crate::model::ids::ModelId;

/// Adaptive mode's settings ([`EngineConfig::adaptive`](crate::EngineConfig::adaptive)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdaptiveConfig {
    /// How many conflicts on one model, each within [`window`](Self::window) of the one
    /// before, mark it hot; an invocation refused this many times runs its next attempts in
    /// lock mode too. Default 3.
    pub conflicts_to_lock: u32,
    /// How close conflicts must follow each other to add up. Default 100 ms.
    pub window: Duration,
    /// How long a hot model runs in lock mode before optimistic is tried again. Default 1 s.
    pub lock_for: Duration,
    /// The most models tracked at once (conflicting or hot); beyond it, conflicts on new
    /// models are not counted until marks run out. Default 10,000.
    pub max_tracked: usize,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        Self {
            conflicts_to_lock: 3,
            window: Duration::from_millis(100),
            lock_for: Duration::from_secs(1),
            max_tracked: 10_000,
        }
    }
}

impl AdaptiveConfig {
    /// Marks a model hot after `conflicts` conflicts, each within `window` of the one before,
    /// for `lock_for`.
    pub fn new(conflicts: u32, window: Duration, lock_for: Duration) -> Self {
        Self { conflicts_to_lock: conflicts, window, lock_for, ..Self::default() }
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for zero conflicts, a zero window or mark, or no room to track.
    pub(crate) fn validate(&self) -> Result<()> {
        let problem = if self.conflicts_to_lock == 0 {
            Some("adaptive conflicts_to_lock must be at least 1")
        } else if self.window.is_zero() {
            Some("adaptive window must be positive")
        } else if self.lock_for.is_zero() {
            Some("adaptive lock_for must be positive")
        } else if self.max_tracked == 0 {
            Some("adaptive max_tracked must be at least 1")
        } else {
            None
        };
        problem.map_or(Ok(()), |reason| Err(Error::InvalidInput { reason: reason.into() }))
    }
}

/// What adaptive mode did since the engine started
/// ([`Engine::adaptive_stats`](crate::Engine::adaptive_stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdaptiveStats {
    /// Attempts of adaptive invocations run optimistic.
    pub optimistic_attempts: u64,
    /// Attempts of adaptive invocations run in lock mode.
    pub lock_attempts: u64,
    /// Optimistic attempts refused on fresh state.
    pub conflicts: u64,
    /// Times a model was marked hot.
    pub marked_hot: u64,
    /// Models marked hot now.
    pub hot_now: u64,
}

/// How a model has conflicted lately.
#[derive(Debug, Clone, Copy)]
struct Heat {
    /// Conflicts in a row, each within the window of the one before.
    conflicts: u32,
    last_conflict: Instant,
    /// Set while the model is hot: lock mode until then.
    hot_until: Option<Instant>,
}

/// One engine's conflict tracker.
#[derive(Debug)]
pub(super) struct Contention {
    config: AdaptiveConfig,
    models: Mutex<HashMap<ModelId, Heat>>,
    optimistic_attempts: AtomicU64,
    lock_attempts: AtomicU64,
    conflicts: AtomicU64,
    marked_hot: AtomicU64,
}

impl Contention {
    pub(super) fn new(config: AdaptiveConfig) -> Self {
        Self {
            config,
            models: Mutex::new(HashMap::new()),
            optimistic_attempts: AtomicU64::new(0),
            lock_attempts: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            marked_hot: AtomicU64::new(0),
        }
    }

    /// Whether the next attempt of an invocation on `models`, refused `refusals` times so far,
    /// should take locks: it was refused as often as it takes to mark a model, or one of its
    /// models is hot. A mark that ran out is removed here (the model is tried optimistic again).
    pub(super) fn prefers_lock<'a>(
        &self,
        models: impl IntoIterator<Item = &'a ModelId>,
        refusals: u32,
        now: Instant,
    ) -> bool {
        if refusals >= self.config.conflicts_to_lock {
            return true;
        }
        let mut map = self.models.lock().unwrap_or_else(PoisonError::into_inner);
        if map.is_empty() {
            return false;
        }
        let mut hot = false;
        for id in models {
            if let Some(heat) = map.get(id) {
                match heat.hot_until {
                    Some(until) if until > now => hot = true,
                    Some(_) => {
                        map.remove(id);
                    }
                    None => {}
                }
            }
        }
        hot
    }

    /// Counts an attempt of an adaptive invocation in the mode it ran.
    pub(super) fn count_attempt(&self, locked: bool) {
        let counter = if locked { &self.lock_attempts } else { &self.optimistic_attempts };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an optimistic attempt refused on fresh state because of `model`; marks the
    /// model hot when its conflicts come close enough together.
    pub(super) fn conflicted(&self, model: &ModelId, now: Instant) {
        self.conflicts.fetch_add(1, Ordering::Relaxed);
        let mut map = self.models.lock().unwrap_or_else(PoisonError::into_inner);
        if !map.contains_key(model) && map.len() >= self.config.max_tracked {
            let window = self.config.window;
            map.retain(|_, heat| match heat.hot_until {
                Some(until) => until > now,
                None => now.duration_since(heat.last_conflict) <= window,
            });
            if map.len() >= self.config.max_tracked {
                return;
            }
        }
        let heat = map.entry(model.clone()).or_insert(Heat { conflicts: 0, last_conflict: now, hot_until: None });
        if heat.hot_until.is_some() {
            // Already hot (a conflict with a lock holder while the mark was being set).
            return;
        }
        heat.conflicts =
            if now.duration_since(heat.last_conflict) <= self.config.window { heat.conflicts + 1 } else { 1 };
        heat.last_conflict = now;
        if heat.conflicts >= self.config.conflicts_to_lock {
            heat.hot_until = Some(now + self.config.lock_for);
            self.marked_hot.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%model, lock_for = ?self.config.lock_for, "model keeps conflicting: lock mode for a while");
        }
    }

    /// What adaptive mode did so far.
    pub(super) fn stats(&self) -> AdaptiveStats {
        let now = Instant::now();
        let map = self.models.lock().unwrap_or_else(PoisonError::into_inner);
        let hot_now = map.values().filter(|heat| heat.hot_until.is_some_and(|until| until > now)).count();
        AdaptiveStats {
            optimistic_attempts: self.optimistic_attempts.load(Ordering::Relaxed),
            lock_attempts: self.lock_attempts.load(Ordering::Relaxed),
            conflicts: self.conflicts.load(Ordering::Relaxed),
            marked_hot: self.marked_hot.load(Ordering::Relaxed),
            hot_now: hot_now as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(key: &str) -> ModelId {
        ModelId::new("Counter", key)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn close_conflicts_mark_a_model_hot_until_the_mark_runs_out() {
        let c = Contention::new(AdaptiveConfig::new(2, ms(100), ms(1000)));
        let (hot, other) = (id("hot"), id("other"));
        let t0 = Instant::now();
        assert!(!c.prefers_lock([&hot], 0, t0));
        c.conflicted(&hot, t0);
        assert!(!c.prefers_lock([&hot], 0, t0), "one conflict is not a pattern");
        c.conflicted(&hot, t0 + ms(50));
        assert!(c.prefers_lock([&hot], 0, t0 + ms(60)));
        assert!(c.prefers_lock([&other, &hot], 0, t0 + ms(60)), "one hot model sends the whole attempt to locks");
        assert!(!c.prefers_lock([&other], 0, t0 + ms(60)));
        let stats = c.stats();
        assert_eq!((stats.marked_hot, stats.conflicts), (1, 2));
        assert!(!c.prefers_lock([&hot], 0, t0 + ms(1051)), "the mark ran out: optimistic again");
        assert!(c.models.lock().expect("not poisoned").is_empty());
    }

    #[test]
    fn conflicts_far_apart_do_not_add_up() {
        let c = Contention::new(AdaptiveConfig::new(2, ms(100), ms(1000)));
        let model = id("warm");
        let t0 = Instant::now();
        for step in 0..5 {
            c.conflicted(&model, t0 + ms(150 * step));
        }
        assert!(!c.prefers_lock([&model], 0, t0 + ms(700)));
        assert_eq!(c.stats().marked_hot, 0);
    }

    #[test]
    fn the_tracker_is_bounded() {
        let mut config = AdaptiveConfig::new(1, ms(100), ms(1000));
        config.max_tracked = 3;
        let c = Contention::new(config);
        let t0 = Instant::now();
        for key in ["a", "b", "c", "d"] {
            c.conflicted(&id(key), t0);
        }
        assert_eq!(c.stats().marked_hot, 3, "the fourth model is not tracked while three marks hold");
        assert!(!c.prefers_lock([&id("d")], 0, t0));
        c.conflicted(&id("d"), t0 + ms(1001));
        assert!(c.prefers_lock([&id("d")], 0, t0 + ms(1002)), "marks that ran out make room");
        assert_eq!(c.models.lock().expect("not poisoned").len(), 1);
    }

    #[test]
    fn an_invocation_refused_often_enough_takes_locks_itself() {
        let c = Contention::new(AdaptiveConfig::new(3, ms(100), ms(1000)));
        let t0 = Instant::now();
        assert!(!c.prefers_lock([&id("cold")], 2, t0));
        assert!(c.prefers_lock([&id("cold")], 3, t0));
    }

    #[test]
    fn bad_settings_are_refused() {
        for config in [
            AdaptiveConfig::new(0, ms(1), ms(1000)),
            AdaptiveConfig::new(1, Duration::ZERO, ms(1000)),
            AdaptiveConfig::new(1, ms(1), Duration::ZERO),
        ] {
            assert!(matches!(config.validate(), Err(Error::InvalidInput { .. })), "{config:?}");
        }
        assert!(AdaptiveConfig::default().validate().is_ok());
    }
}
