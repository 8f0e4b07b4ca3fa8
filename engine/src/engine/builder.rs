//! Building an [`Engine`]: its store, settings and first model types.

use std::sync::Arc;
use std::time::Duration;

use super::{Engine, EngineConfig};
use crate::error::Result;
use crate::invocation::RetryPolicy;
use crate::model::schema::{ModelSchema, ModelTypes};
use crate::runtime::RuleRuntime;
use crate::store::Store;
use crate::store::memory::MemoryStore;
use crate::txn::{AdaptiveConfig, Protocol, Settings, SnapshotCacheConfig};

/// Builds an [`Engine`].
#[derive(Debug, Default)]
pub struct EngineBuilder {
    store: Option<Arc<dyn Store>>,
    config: EngineConfig,
    models: Vec<ModelSchema>,
}

impl EngineBuilder {
    /// Uses this store (default: a fresh [`MemoryStore`]).
    #[must_use]
    pub fn store(mut self, store: impl Store) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Uses a store shared with other engines or code (see [`crate::backend`] to open one
    /// from a URL).
    #[must_use]
    pub fn shared_store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Replaces the whole configuration.
    #[must_use]
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets the lock lease (see [`EngineConfig::lease`]: default 3 s).
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.config.lease = lease;
        self
    }

    /// Sets the acquire timeout.
    #[must_use]
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.config.acquire_timeout = timeout;
        self
    }

    /// Sets the default retry policy.
    #[must_use]
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.config.retry = policy;
        self
    }

    /// Sets the largest lock-mode group (see [`EngineConfig::max_group`]; `1` turns group
    /// commit off).
    #[must_use]
    pub fn max_group(mut self, max_group: usize) -> Self {
        self.config.max_group = max_group;
        self
    }

    /// Sets the snapshot cache's bounds, or turns it off ([`EngineConfig::snapshot_cache`]).
    #[must_use]
    pub fn snapshot_cache(mut self, cache: SnapshotCacheConfig) -> Self {
        self.config.snapshot_cache = cache;
        self
    }

    /// Sets when adaptive mode sends a model to lock mode ([`EngineConfig::adaptive`]).
    #[must_use]
    pub fn adaptive(mut self, adaptive: AdaptiveConfig) -> Self {
        self.config.adaptive = adaptive;
        self
    }

    /// Sets how long idempotency records stay ([`EngineConfig::idempotency_retention`]).
    #[must_use]
    pub fn idempotency_retention(mut self, retention: Duration) -> Self {
        self.config.idempotency_retention = retention;
        self
    }

    /// Sets the rule deadline.
    #[must_use]
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.config.runtime.deadline = deadline;
        self
    }

    /// Sets the rule memory cap, in bytes.
    #[must_use]
    pub fn memory_limit(mut self, bytes: usize) -> Self {
        self.config.runtime.memory_limit = bytes;
        self
    }

    /// Sets the largest rule accepted, in bytes.
    #[must_use]
    pub fn max_rule_bytes(mut self, bytes: usize) -> Self {
        self.config.runtime.max_rule_bytes = bytes;
        self
    }

    /// Registers a model type.
    #[must_use]
    pub fn model(mut self, schema: ModelSchema) -> Self {
        self.models.push(schema);
        self
    }

    /// Creates the engine: the wasmtime engine and its instance pool.
    ///
    /// # Errors
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) for inconsistent settings (see
    /// [`EngineConfig::validate`]), or the runtime's own error.
    pub fn build(self) -> Result<Engine> {
        self.config.validate()?;
        let runtime = RuleRuntime::new(self.config.runtime.clone())?;
        let models = ModelTypes::default();
        for schema in self.models {
            models.register(schema);
        }
        let store = self.store.unwrap_or_else(|| Arc::new(MemoryStore::new()));
        let protocol = Protocol::new(store, runtime, Settings::of(&self.config), self.config.snapshot_cache);
        Ok(Engine::new(protocol, models, self.config))
    }
}
