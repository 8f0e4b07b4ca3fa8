//! Opening what a command works on: the backend its `--store` URL names
//! ([`wasmtx::backend`]), with the embedded store's state kept in the data directory.

use std::time::Duration;

use wasmtx::backend::{self, Backend, BackendOptions};
use wasmtx::registry::{Registry, RegistryConfig};
use wasmtx::{Engine, EngineConfig, ErrorClass};

use crate::args::Global;
use crate::datadir::DataDir;
use crate::failure::Failure;
use wasmtx::ErrorKind;

/// An engine and its registry, and the data directory when the store is embedded.
#[derive(Debug)]
pub struct Workspace {
    pub registry: Registry,
    pub data_dir: Option<DataDir>,
    /// `memory` or `redis`.
    #[cfg_attr(not(feature = "server"), expect(dead_code, reason = "only `wasmtx serve` prints it"))]
    pub kind: &'static str,
}

/// What the workspace is opened for.
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

impl Workspace {
    pub async fn open(global: &Global, purpose: Purpose) -> Result<Self, Failure> {
        let url = global.store.as_deref().unwrap_or("memory");
        let opened = backend::open(url, &BackendOptions::with_prefix(global.prefix.clone())).await?;
        let mut config = RegistryConfig::default().refresh_interval(purpose.refresh).warm(purpose.warm);
        config.cache_dir = global.cache_dir.clone();
        let data_dir = match &opened {
            Backend::Memory { store, registry } => {
                let dir = DataDir::open(&global.data_dir, store.clone(), registry.clone())?;
                config.cache_dir = config.cache_dir.or_else(|| Some(dir.path().join("cache")));
                Some(dir)
            }
            Backend::Redis { .. } => None,
            other => {
                return Err(Failure::new(
                    ErrorClass::BadInput,
                    ErrorKind::UnsupportedStore,
                    format!("this wasmtx does not support the {} store", other.kind()),
                ));
            }
        };
        if global.no_cache {
            config.cache_dir = None;
        }
        let mut engine_config = EngineConfig::default();
        engine_config.runtime.max_rule_bytes = global.max_rule_bytes;
        let engine = Engine::builder()
            .shared_store(opened.store())
            .config(engine_config)
            .build()
            .map_err(|e| Failure::engine(&e))?;
        let registry = Registry::open(engine, opened.registry_store(), config).await?;
        Ok(Self { registry, data_dir, kind: opened.kind() })
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
