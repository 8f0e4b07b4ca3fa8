//! The implementations a row can measure: the engine configurations, one line each in
//! [`ENGINES`], and the two baselines (a Lua script, the hand-written lock protocol).
//!
//! To measure a new engine configuration: add its line to [`ENGINES`] (a `--impls` key, a
//! label, the mode and settings), then its key to the lists of the workloads it applies to
//! ([`Workload::impl_keys`](super::workloads::Workload::impl_keys)). Rows, tables, charts and
//! `--impls` follow from these two lists.

use wasmtx::{Mode, SnapshotCacheConfig};

/// One engine configuration the benchmark measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EngineSpec {
    /// The name `--impls` uses (and the charts' colour key).
    pub key: &'static str,
    /// How tables and progress lines name it.
    pub label: &'static str,
    /// The mode of every invocation.
    pub mode: Mode,
    /// `EngineConfig::max_group`.
    pub max_group: usize,
    /// Whether the snapshot cache is on (`EngineConfig::snapshot_cache`, default on).
    pub cache: bool,
    /// Engine instances the row's callers are split across (round robin), each with its own
    /// store connection, release listener and snapshot cache, as separate host processes
    /// would have: 1 for every row but the multi-engine ones.
    pub engines: usize,
    /// Whether each engine's store has Redis client tracking on (`BackendOptions::client_tracking`).
    pub tracking: bool,
}

impl EngineSpec {
    /// The snapshot cache settings of its engines.
    pub fn cache_config(&self) -> SnapshotCacheConfig {
        if self.cache { SnapshotCacheConfig::default() } else { SnapshotCacheConfig::disabled() }
    }
}

/// Lock mode, groups of up to 32 (the default).
pub const LOCK: EngineSpec = EngineSpec {
    key: "lock",
    label: "engine, lock",
    mode: Mode::Lock,
    max_group: 32,
    cache: true,
    engines: 1,
    tracking: false,
};
/// Lock mode without grouping.
pub const LOCK1: EngineSpec = EngineSpec { key: "lock1", label: "engine, lock (no grouping)", max_group: 1, ..LOCK };
/// Optimistic mode on a warm snapshot cache (the default).
pub const OPTIMISTIC: EngineSpec =
    EngineSpec { key: "optimistic", label: "engine, optimistic", mode: Mode::Optimistic, ..LOCK };

/// Adaptive mode: optimistic on the cache, lock mode with grouping for models that keep
/// conflicting.
pub const ADAPTIVE: EngineSpec =
    EngineSpec { key: "adaptive", label: "engine, adaptive", mode: Mode::Adaptive, ..LOCK };

/// Every engine configuration, in table order (each workload measures those of its
/// [`Workload::impl_keys`](super::workloads::Workload::impl_keys)).
pub const ENGINES: &[EngineSpec] = &[
    LOCK,
    LOCK1,
    OPTIMISTIC,
    EngineSpec { key: "optimistic-cold", label: "engine, optimistic, cache off", cache: false, ..OPTIMISTIC },
    EngineSpec { key: "optimistic-2e", label: "engine, optimistic, 2 engines", engines: 2, ..OPTIMISTIC },
    EngineSpec {
        key: "optimistic-2e-tracking",
        label: "engine, optimistic, 2 engines, tracking",
        engines: 2,
        tracking: true,
        ..OPTIMISTIC
    },
    ADAPTIVE,
    EngineSpec { key: "adaptive-2e", label: "engine, adaptive, 2 engines", engines: 2, ..ADAPTIVE },
    EngineSpec {
        key: "adaptive-2e-tracking",
        label: "engine, adaptive, 2 engines, tracking",
        engines: 2,
        tracking: true,
        ..ADAPTIVE
    },
    EngineSpec { key: "pipeline", label: "engine, pipeline", mode: Mode::Pipeline, ..LOCK },
];

/// How an operation is carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Impl {
    /// Through the engine, configured by one line of [`ENGINES`].
    Engine(EngineSpec),
    /// One Lua script per operation.
    Lua,
    /// The hand-written lock protocol.
    Hand,
}

impl Impl {
    /// The engine in lock mode with the default group bound.
    pub const LOCK: Self = Self::Engine(LOCK);
    /// The engine in lock mode without grouping.
    pub const LOCK1: Self = Self::Engine(LOCK1);
    /// The engine in optimistic mode, cache on.
    pub const OPTIMISTIC: Self = Self::Engine(OPTIMISTIC);
    /// The engine in adaptive mode, cache on.
    pub const ADAPTIVE: Self = Self::Engine(ADAPTIVE);

    /// The implementation `--impls` names `key`.
    pub fn parse(key: &str) -> Option<Self> {
        match key {
            "lua" => Some(Self::Lua),
            "hand" => Some(Self::Hand),
            _ => ENGINES.iter().find(|e| e.key == key).map(|&e| Self::Engine(e)),
        }
    }

    /// Every `--impls` key, for the help and error messages.
    pub fn keys() -> Vec<&'static str> {
        ENGINES.iter().map(|e| e.key).chain(["lua", "hand"]).collect()
    }

    /// A short label for tables.
    pub fn label(self) -> String {
        match self {
            Self::Engine(e) => e.label.into(),
            Self::Lua => "Lua script".into(),
            Self::Hand => "hand-written lock".into(),
        }
    }

    /// The name `--impls` uses.
    pub fn key(self) -> &'static str {
        match self {
            Self::Engine(e) => e.key,
            Self::Lua => "lua",
            Self::Hand => "hand",
        }
    }

    /// Whether this is one of the engine's rows.
    pub fn is_engine(self) -> bool {
        matches!(self, Self::Engine { .. })
    }

    /// The engine configuration, for an engine row.
    pub fn engine(self) -> Option<EngineSpec> {
        match self {
            Self::Engine(e) => Some(e),
            Self::Lua | Self::Hand => None,
        }
    }

    /// Whether a row of `callers` callers can run it: a multi-engine row needs a caller per
    /// engine at least.
    pub fn runs_with(self, callers: usize) -> bool {
        self.engine().is_none_or(|e| e.engines <= callers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_parses_back_and_keys_are_unique() {
        let keys = Impl::keys();
        for key in &keys {
            assert_eq!(Impl::parse(key).map(Impl::key), Some(*key));
        }
        let unique: std::collections::HashSet<_> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len());
        assert_eq!(Impl::parse("lock"), Some(Impl::LOCK));
        assert_eq!(Impl::parse("nope"), None);
        assert!(!Impl::parse("optimistic-2e").is_some_and(|i| i.runs_with(1)));
        assert!(Impl::LOCK.runs_with(1));
    }
}
