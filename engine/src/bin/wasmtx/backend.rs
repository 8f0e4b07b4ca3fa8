//! Opening what a command works on: Redis (models and registry under one prefix), or the
//! embedded stores kept in the data directory.

use std::sync::Arc;
use std::time::Duration;

use wasmtx::registry::{RedisRegistryStore, Registry, RegistryConfig, RegistryStore};
use wasmtx::{Engine, RedisStore, RuntimeConfig, Store};

use crate::args::Global;
use crate::datadir::DataDir;
use crate::failure::Failure;

/// An engine and its registry, and the data directory when the store is embedded.
#[derive(Debug)]
pub struct Backend {
    pub registry: Registry,
    pub data_dir: Option<DataDir>,
}

/// What the backend is opened for.
#[derive(Debug, Clone, Copy)]
pub struct Purpose {
    /// Compile newly active rules in the background (a server), or only when asked (a command).
    pub warm: bool,
    /// How often to check the registry's epoch.
    pub refresh: Duration,
}

impl Purpose {
    pub const COMMAND: Self = Self { warm: false, refresh: Duration::from_secs(1) };
}

impl Backend {
    pub async fn open(global: &Global, purpose: Purpose) -> Result<Self, Failure> {
        let runtime = RuntimeConfig { max_rule_bytes: global.max_rule_bytes, ..RuntimeConfig::default() };
        let mut config =
            RegistryConfig { refresh_interval: purpose.refresh, warm: purpose.warm, ..RegistryConfig::default() };
        let (store, registry_store, data_dir): (Arc<dyn Store>, Arc<dyn RegistryStore>, _) = match &global.redis {
            Some(url) => {
                let store = RedisStore::builder(url.clone()).prefix(global.prefix.clone()).connect().await?;
                let registry = RedisRegistryStore::builder(url.clone()).prefix(store.keys().prefix()).connect().await?;
                config.cache_dir = global.cache_dir.clone();
                (Arc::new(store), Arc::new(registry), None)
            }
            None => {
                let dir = DataDir::open(&global.data_dir)?;
                config.cache_dir = global.cache_dir.clone().or_else(|| Some(dir.path().join("cache")));
                (Arc::new(dir.models.clone()), Arc::new(dir.registry.clone()), Some(dir))
            }
        };
        if global.no_cache {
            config.cache_dir = None;
        }
        let engine = Engine::builder()
            .shared_store(store)
            .config(wasmtx::EngineConfig { runtime, ..wasmtx::EngineConfig::default() })
            .build()
            .map_err(|e| Failure::engine(&e))?;
        let registry = Registry::open(engine, registry_store, config).await?;
        Ok(Self { registry, data_dir })
    }

    pub fn engine(&self) -> &Engine {
        self.registry.engine()
    }

    /// Persists the embedded stores (nothing to do on Redis).
    pub fn save(&mut self) -> Result<(), Failure> {
        match &mut self.data_dir {
            Some(dir) => dir.save(),
            None => Ok(()),
        }
    }
}
