//! Opening what a command works on: the backend its `--store` URL names
//! ([`wasmtx::backend`]), with the embedded store's state kept in the data directory, and the
//! audit trail beside it.

use std::sync::Arc;
use std::time::Duration;

use wasmtx::backend::{self, Backend, BackendOptions};
use wasmtx::registry::audit::{AuditError, AuditLog, Audited, FileAuditLog, RedisAuditLog};
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
    /// The store's URL and key prefix, and how many audit entries it keeps.
    store_url: String,
    prefix: String,
    audit_retention: usize,
    /// Who the audit trail names for this command's changes: `cli:<user>`.
    actor: String,
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
        // Settings first: a bad one is refused before anything is opened or connected.
        let mut engine_config = EngineConfig::default();
        engine_config.runtime.max_rule_bytes = global.max_rule_bytes;
        engine_config.validate().and_then(|()| engine_config.runtime.validate()).map_err(|e| Failure::engine(&e))?;
        let options = BackendOptions::with_prefix(global.prefix.clone()).client_tracking(global.client_tracking);
        let opened = backend::open(url, &options).await?;
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
        let engine = Engine::builder()
            .shared_store(opened.store())
            .config(engine_config)
            .build()
            .map_err(|e| Failure::engine(&e))?;
        let registry = Registry::open(engine, opened.registry_store(), config).await?;
        Ok(Self {
            registry,
            data_dir,
            kind: opened.kind(),
            store_url: url.to_owned(),
            prefix: global.prefix.clone(),
            audit_retention: global.audit_retention,
            actor: cli_actor(),
        })
    }

    /// The audit trail of the workspace's store: a stream beside the registry in Redis, a file
    /// in the data directory for the embedded store. Opened when asked: only the commands that
    /// change the registry, `wasmtx audit` and `wasmtx serve` need it.
    ///
    /// # Errors
    /// A store failure (Redis unreachable), or a data-directory failure for an audit file that
    /// cannot be read.
    pub async fn audit_log(&self) -> Result<Arc<dyn AuditLog>, Failure> {
        let failure = |e: AuditError| match e {
            AuditError::Store(e) => Failure::from(e),
            other => Failure::new(ErrorClass::BadInput, ErrorKind::DataDir, other.to_string()),
        };
        if let Some(dir) = &self.data_dir {
            let log = FileAuditLog::open(&dir.path().join("audit.jsonl"), self.audit_retention).map_err(failure)?;
            return Ok(Arc::new(log));
        }
        Ok(Arc::new(
            RedisAuditLog::connect(&self.store_url, &self.prefix, self.audit_retention).await.map_err(failure)?,
        ))
    }

    /// The registry, its changes recorded in `log` as this command's (`cli:<user>`).
    pub fn audited<'a>(&'a self, log: &'a dyn AuditLog) -> Audited<'a> {
        Audited::new(&self.registry, log, &self.actor)
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

/// `cli:<user>`: the user from `USER` or `LOGNAME` (`cli:unknown` without either).
fn cli_actor() -> String {
    let user = ["USER", "LOGNAME"].iter().find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()));
    format!("cli:{}", user.as_deref().unwrap_or("unknown"))
}
