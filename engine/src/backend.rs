//! The one place a URL becomes a store and a registry storage.
//!
//! | URL | [`Store`] | [`RegistryStore`] |
//! |---|---|---|
//! | `memory` (also `memory:`, `memory://`) | a fresh [`MemoryStore`] | a fresh [`MemoryRegistryStore`] |
//! | `redis://host:port/db`, `rediss://...`, `redis+unix:///path`, `unix:///path` | [`RedisStore`] | [`RedisRegistryStore`], under the same key prefix |
//! | `redis://host:port` of any Redis Cluster node, or several nodes comma-separated (`redis://h:7000,h:7001`) | [`RedisStore`] on the cluster (detected at connect) | [`RedisRegistryStore`] on the cluster, in one slot |
//!
//! The `wasmtx` command, `wasmtx serve`, the demo, the benchmark and the tests all open their
//! backends here, so a new backend is one more [`BackendUrl`] variant and one more factory
//! function in this file. Both Redis stores share one connection type, which detects a
//! cluster itself ([`connection`](crate::store::redis::connection)).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use wasmtx::backend::{self, BackendOptions};
//! let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "memory".into());
//! let store = backend::open_store(&url, &BackendOptions::default()).await?;
//! let engine = wasmtx::Engine::builder().shared_store(store).build()?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::registry::{MemoryRegistryStore, RedisRegistryStore, RegistryError, RegistryStore};
use crate::store::memory::MemoryStore;
use crate::store::redis::{DEFAULT_PREFIX, RedisStore};
use crate::store::{Store, StoreError};

/// A backend named by a URL: which kind, and where.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendUrl {
    /// The embedded in-memory store (nothing survives the process).
    Memory,
    /// Redis: one server (standalone, or a replicated primary), or a Redis Cluster (detected
    /// at connect; the URL may name several nodes, comma-separated).
    Redis {
        /// The URL as given (it may hold a password: [`BackendUrl`]'s `Display` hides it).
        url: String,
    },
}

impl BackendUrl {
    /// Parses a backend URL (see the [module documentation](self)).
    ///
    /// # Errors
    /// [`StoreError::InvalidUrl`] for a URL of no known scheme.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let trimmed = url.trim();
        if matches!(trimmed, "memory" | "memory:" | "memory://") {
            return Ok(Self::Memory);
        }
        let scheme = trimmed.split_once("://").map(|(scheme, _)| scheme);
        match scheme {
            Some("redis" | "rediss" | "redis+unix" | "unix") => Ok(Self::Redis { url: trimmed.to_owned() }),
            _ => Err(StoreError::InvalidUrl {
                url: redact(trimmed),
                reason: "expected `memory` or a `redis://host:port/db` URL".into(),
            }),
        }
    }

    /// The backend's kind: `memory` or `redis`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Redis { .. } => "redis",
        }
    }
}

impl FromStr for BackendUrl {
    type Err = StoreError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        Self::parse(url)
    }
}

impl fmt::Display for BackendUrl {
    /// The URL with any password replaced by `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory => f.write_str("memory"),
            Self::Redis { url } => f.write_str(&redact(url)),
        }
    }
}

impl fmt::Debug for BackendUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BackendUrl({self})")
    }
}

/// Settings shared by every backend.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackendOptions {
    /// The prefix of every Redis key, models and registry alike (default `wasmtx`); ignored
    /// by the memory backend.
    pub prefix: String,
    /// How long connecting to Redis may take (default
    /// [`DEFAULT_CONNECT_TIMEOUT`](crate::store::redis::DEFAULT_CONNECT_TIMEOUT)).
    pub connect_timeout: std::time::Duration,
    /// How long a Redis reply may take (default
    /// [`DEFAULT_RESPONSE_TIMEOUT`](crate::store::redis::DEFAULT_RESPONSE_TIMEOUT)); a commit
    /// whose reply is later is resolved before its caller hears about it.
    pub response_timeout: std::time::Duration,
    /// Whether Redis tells the store which models other clients changed
    /// ([`RedisStoreBuilder::client_tracking`](crate::store::redis::RedisStoreBuilder::client_tracking);
    /// default off); ignored by the memory backend.
    pub client_tracking: bool,
}

impl Default for BackendOptions {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
            connect_timeout: crate::store::redis::DEFAULT_CONNECT_TIMEOUT,
            response_timeout: crate::store::redis::DEFAULT_RESPONSE_TIMEOUT,
            client_tracking: false,
        }
    }
}

impl BackendOptions {
    /// Options with this key prefix.
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into(), ..Self::default() }
    }

    /// Sets the Redis reply timeout.
    #[must_use]
    pub fn response_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Switches Redis client tracking on or off.
    #[must_use]
    pub fn client_tracking(mut self, on: bool) -> Self {
        self.client_tracking = on;
        self
    }
}

/// An opened backend: a model store and a registry storage on the same data.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Backend {
    /// The embedded stores.
    Memory {
        /// The model store.
        store: MemoryStore,
        /// The registry storage.
        registry: MemoryRegistryStore,
    },
    /// Redis, models and registry under one prefix.
    Redis {
        /// The model store.
        store: RedisStore,
        /// The registry storage.
        registry: RedisRegistryStore,
    },
}

impl Backend {
    /// The model store.
    pub fn store(&self) -> Arc<dyn Store> {
        match self {
            Self::Memory { store, .. } => Arc::new(store.clone()),
            Self::Redis { store, .. } => Arc::new(store.clone()),
        }
    }

    /// The registry storage.
    pub fn registry_store(&self) -> Arc<dyn RegistryStore> {
        match self {
            Self::Memory { registry, .. } => Arc::new(registry.clone()),
            Self::Redis { registry, .. } => Arc::new(registry.clone()),
        }
    }

    /// The backend's kind: `memory` or `redis`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Memory { .. } => "memory",
            Self::Redis { .. } => "redis",
        }
    }
}

/// Opens the model store and the registry storage `url` names.
///
/// # Errors
/// [`StoreError::InvalidUrl`] for a URL of no known scheme or a malformed one,
/// [`StoreError::Unavailable`] when the server cannot be reached.
pub async fn open(url: &str, options: &BackendOptions) -> Result<Backend, StoreError> {
    match BackendUrl::parse(url)? {
        BackendUrl::Memory => Ok(Backend::Memory { store: MemoryStore::new(), registry: MemoryRegistryStore::new() }),
        BackendUrl::Redis { url } => {
            let store = open_redis_store(&url, options).await?;
            let registry = RedisRegistryStore::builder(url)
                .prefix(options.prefix.clone())
                .connect()
                .await
                .map_err(registry_connect_error)?;
            Ok(Backend::Redis { store, registry })
        }
    }
}

/// Opens only the model store `url` names (for hosts that run rules without a registry).
///
/// # Errors
/// As [`open`].
pub async fn open_store(url: &str, options: &BackendOptions) -> Result<Arc<dyn Store>, StoreError> {
    match BackendUrl::parse(url)? {
        BackendUrl::Memory => Ok(Arc::new(MemoryStore::new())),
        BackendUrl::Redis { url } => Ok(Arc::new(open_redis_store(&url, options).await?)),
    }
}

/// The Redis factory: a store under the options' prefix.
async fn open_redis_store(url: &str, options: &BackendOptions) -> Result<RedisStore, StoreError> {
    RedisStore::builder(url)
        .prefix(options.prefix.clone())
        .connect_timeout(options.connect_timeout)
        .response_timeout(options.response_timeout)
        .client_tracking(options.client_tracking)
        .connect()
        .await
}

/// Connecting a registry storage fails only in its storage.
fn registry_connect_error(error: RegistryError) -> StoreError {
    match error {
        RegistryError::Store(error) => error,
        other => StoreError::Backend(other.to_string()),
    }
}

/// `scheme://user:password@host` → `scheme://user:***@host`, for each comma-separated node.
pub(crate) fn redact(url: &str) -> String {
    url.split(',').map(redact_one).collect::<Vec<_>>().join(",")
}

fn redact_one(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            let hidden = if userinfo.contains(':') { format!("{user}:***") } else { "***".to_owned() };
            format!("{scheme}://{hidden}@{host}{path}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_backend() {
        for memory in ["memory", "memory:", "memory://", " memory "] {
            assert_eq!(BackendUrl::parse(memory).ok(), Some(BackendUrl::Memory), "{memory}");
        }
        for redis in ["redis://127.0.0.1:6379", "rediss://h:1/2", "redis+unix:///tmp/r.sock", "unix:///tmp/r.sock"] {
            assert!(matches!(BackendUrl::parse(redis), Ok(BackendUrl::Redis { .. })), "{redis}");
        }
        for bad in ["", "127.0.0.1:6379", "postgres://h/db", "mem"] {
            assert!(matches!(BackendUrl::parse(bad), Err(StoreError::InvalidUrl { .. })), "{bad}");
        }
    }

    #[test]
    fn passwords_never_show() {
        assert_eq!(redact("redis://:s3cret@h:6379/0"), "redis://:***@h:6379/0");
        assert_eq!(redact("redis://me:s3cret@h"), "redis://me:***@h");
        assert_eq!(redact("redis://token@h"), "redis://***@h");
        assert_eq!(redact("redis://h:6379"), "redis://h:6379");
        assert_eq!(redact("redis://:pw@h:1,h:2,redis://:pw@h:3"), "redis://:***@h:1,h:2,redis://:***@h:3");
        let url = BackendUrl::parse("redis://u:pw@h:1").expect("a redis URL");
        assert_eq!(url.to_string(), "redis://u:***@h:1");
        assert!(!format!("{url:?}").contains("pw"));
        let Err(StoreError::InvalidUrl { url, .. }) = BackendUrl::parse("pg://u:pw@h") else { panic!("refused") };
        assert!(!url.contains("pw"), "{url}");
    }
}
