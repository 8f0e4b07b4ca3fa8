//! [`Registry`]: the registry as one engine instance sees it. Writes go to the shared
//! [`RegistryStore`]; reads of what to run come from a local snapshot that a background task
//! keeps current (change announcements, plus a periodic epoch check in case one is lost).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tracing::{debug, info, warn};

use super::cache::CompiledCache;
use super::disk::DiskCache;
use super::error::RegistryError;
use super::record::{RuleInfo, RuleVersion, SchemaRecord, Snapshot, Uploaded};
use super::refresh;
use super::storage::RegistryStore;
use crate::engine::Engine;
use crate::model::schema::ModelSchema;
use crate::rule::Rule;
use crate::runtime::CompiledRule;

/// How a [`Registry`] keeps up with the shared storage.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegistryConfig {
    /// How often the instance checks the epoch even without an announcement (default 1 s):
    /// the bound on how long a newly activated version can go unseen when an announcement is
    /// lost. Announcements usually make it a few milliseconds.
    pub refresh_interval: Duration,
    /// Where to keep precompiled rules between runs (`None`: nowhere, compile after each
    /// start). The directory must belong to the operator: its files are loaded as code.
    pub cache_dir: Option<PathBuf>,
    /// How many compiled rules that are no longer active to keep in memory (default 32), for
    /// quick roll-backs.
    pub cache_capacity: usize,
    /// Whether to compile newly activated versions in the background as soon as they are seen
    /// (default true), so that the first invocation after an activation does not wait.
    pub warm: bool,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self { refresh_interval: Duration::from_secs(1), cache_dir: None, cache_capacity: 32, warm: true }
    }
}

impl RegistryConfig {
    /// Sets [`RegistryConfig::refresh_interval`].
    #[must_use]
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = interval;
        self
    }

    /// Keeps precompiled rules in `dir` ([`RegistryConfig::cache_dir`]).
    #[must_use]
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Sets [`RegistryConfig::warm`].
    #[must_use]
    pub fn warm(mut self, warm: bool) -> Self {
        self.warm = warm;
        self
    }
}

/// The active version of a rule, compiled: what an invocation runs. An invocation that holds
/// it finishes on this version even if another one is activated meanwhile.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ActiveRule {
    /// The compiled rule, named.
    pub rule: Rule,
    /// Its version record.
    pub version: RuleVersion,
}

/// Counters of one registry instance (exported as metrics by the server).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RegistryStats {
    /// The epoch of the local snapshot.
    pub epoch: u64,
    /// Rules compiled from their bytes.
    pub compiled: u64,
    /// Rules loaded from the on-disk precompiled cache.
    pub loaded_precompiled: u64,
    /// Snapshots read from the storage.
    pub refreshes: u64,
    /// Compiled rules held in memory.
    pub cached: u64,
}

/// Rules and model schemas shared through a [`RegistryStore`], as seen by one engine. Cheap to
/// clone; clones share everything. Dropping the last clone stops its background task.
///
/// ```no_run
/// # async fn demo(bytes: &[u8]) -> Result<(), wasmtx::registry::RegistryError> {
/// use std::sync::Arc;
/// use wasmtx::registry::{MemoryRegistryStore, Registry, RegistryConfig};
/// use wasmtx::{Engine, Invocation};
///
/// let engine = Engine::builder().build().expect("engine");
/// let registry = Registry::open(engine.clone(), Arc::new(MemoryRegistryStore::new()), RegistryConfig::default()).await?;
/// registry.upload("bank-transfer", bytes, false).await?;
/// let active = registry.resolve("bank-transfer").await?;
/// let outcome = engine.invoke(&active.rule, &Invocation::new("transfer")).await;
/// # let _ = outcome; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(super) struct Inner {
    engine: Engine,
    store: Arc<dyn RegistryStore>,
    config: RegistryConfig,
    view: RwLock<Arc<Snapshot>>,
    compiled: CompiledCache,
    disk: Option<DiskCache>,
    refresher: Mutex<Option<tokio::task::JoinHandle<()>>>,
    compiles: AtomicU64,
    precompiled_loads: AtomicU64,
    refreshes: AtomicU64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.refresher.get_mut().unwrap_or_else(PoisonError::into_inner).take() {
            task.abort();
        }
    }
}

impl Registry {
    /// Opens the registry for `engine`: reads the active versions and model schemas (and
    /// registers the schemas with the engine), then keeps them current in a background task.
    /// Must be called inside a Tokio runtime.
    ///
    /// # Errors
    /// A storage error, or [`RegistryError::Internal`] if the cache directory cannot be
    /// created.
    pub async fn open(
        engine: Engine,
        store: Arc<dyn RegistryStore>,
        config: RegistryConfig,
    ) -> Result<Self, RegistryError> {
        let disk = match &config.cache_dir {
            Some(dir) => {
                let disk = DiskCache::open(dir, engine.runtime()).map_err(|e| {
                    RegistryError::Internal(format!("cannot create the rule cache directory {}: {e}", dir.display()))
                })?;
                debug!(dir = %disk.dir().display(), "precompiled rule cache");
                Some(disk)
            }
            None => None,
        };
        let changes = store.changes();
        let registry = Self {
            inner: Arc::new(Inner {
                compiled: CompiledCache::new(config.cache_capacity),
                engine,
                store,
                view: RwLock::new(Arc::new(Snapshot::default())),
                disk,
                refresher: Mutex::new(None),
                compiles: AtomicU64::new(0),
                precompiled_loads: AtomicU64::new(0),
                refreshes: AtomicU64::new(0),
                config,
            }),
        };
        registry.refresh().await?;
        let task = tokio::spawn(refresh::run(
            Arc::downgrade(&registry.inner),
            changes,
            registry.inner.config.refresh_interval,
        ));
        *registry.inner.refresher.lock().unwrap_or_else(PoisonError::into_inner) = Some(task);
        Ok(registry)
    }

    pub(super) fn from_inner(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// The engine rules are compiled for and schemas registered with.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The shared storage.
    pub fn store(&self) -> &Arc<dyn RegistryStore> {
        &self.inner.store
    }

    /// The configuration.
    pub fn config(&self) -> &RegistryConfig {
        &self.inner.config
    }

    /// The local snapshot: what this instance runs now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.view.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// This instance's counters.
    pub fn stats(&self) -> RegistryStats {
        RegistryStats {
            epoch: self.snapshot().epoch,
            compiled: self.inner.compiles.load(Ordering::Relaxed),
            loaded_precompiled: self.inner.precompiled_loads.load(Ordering::Relaxed),
            refreshes: self.inner.refreshes.load(Ordering::Relaxed),
            cached: u64::try_from(self.inner.compiled.len()).unwrap_or(u64::MAX),
        }
    }

    /// Validates and stores rule bytes as a new version of `name`: a component of the
    /// `wasmtx:rule` world, or a core module built for it (wrapped by the engine). The first
    /// version of a name becomes active; later ones only when `activate` is set. Uploading
    /// bytes the rule already has returns that version (`created: false`).
    ///
    /// # Errors
    /// [`RegistryError::InvalidName`]; [`RegistryError::InvalidRule`] with the precise reason
    /// (not wasm, too large, malformed, not a rule, WASI or other foreign imports, wrong world,
    /// compile failure), in which case nothing is stored; or a storage error.
    pub async fn upload(&self, name: &str, bytes: &[u8], activate: bool) -> Result<Uploaded, RegistryError> {
        let compiled = self.compile(name, bytes.to_vec()).await?;
        let version = RuleVersion {
            version: 0,
            digest: compiled.digest().to_owned(),
            size: u64::try_from(compiled.size()).unwrap_or(u64::MAX),
            wit_version: compiled.wit_version().to_owned(),
            from_core_module: compiled.from_core_module(),
            exports: exports(&compiled),
            uploaded_at_ms: now_ms(),
        };
        let added = self.inner.store.add_version(name, bytes, &version, activate).await?;
        self.inner.compiled.insert(compiled.clone());
        self.store_precompiled(compiled).await;
        if added.created || added.active {
            info!(rule = name, version = added.version.version, active = added.active, "rule uploaded");
        }
        if added.active {
            self.refresh().await?;
        }
        Ok(Uploaded { name: name.to_owned(), version: added.version, created: added.created, active: added.active })
    }

    /// Every rule, sorted by name.
    ///
    /// # Errors
    /// A storage error.
    pub async fn rules(&self) -> Result<Vec<RuleInfo>, RegistryError> {
        self.inner.store.rules().await
    }

    /// One rule with all its versions.
    ///
    /// # Errors
    /// [`RegistryError::UnknownRule`], or a storage error.
    pub async fn rule(&self, name: &str) -> Result<RuleInfo, RegistryError> {
        self.inner.store.rule(name).await?.ok_or_else(|| RegistryError::UnknownRule { name: name.to_owned() })
    }

    /// Makes `version` the active version of `name` for every engine sharing the storage (this
    /// one at once, the others within their refresh interval, usually milliseconds).
    ///
    /// # Errors
    /// [`RegistryError::UnknownRule`], [`RegistryError::UnknownVersion`], or a storage error.
    pub async fn activate(&self, name: &str, version: u64) -> Result<RuleVersion, RegistryError> {
        let record = self.inner.store.activate(name, version).await?;
        info!(rule = name, version, "rule version activated");
        self.refresh().await?;
        Ok(record)
    }

    /// Deletes a version that is not active.
    ///
    /// # Errors
    /// [`RegistryError::UnknownRule`], [`RegistryError::UnknownVersion`],
    /// [`RegistryError::VersionActive`], or a storage error.
    pub async fn delete_version(&self, name: &str, version: u64) -> Result<RuleVersion, RegistryError> {
        self.inner.store.delete_version(name, version).await
    }

    /// Deletes a rule with all its versions; invocations running it finish.
    ///
    /// # Errors
    /// [`RegistryError::UnknownRule`], [`RegistryError::Busy`], or a storage error.
    pub async fn delete_rule(&self, name: &str) -> Result<Vec<RuleVersion>, RegistryError> {
        let removed = self.inner.store.delete_rule(name).await?;
        info!(rule = name, versions = removed.len(), "rule deleted");
        self.refresh().await?;
        Ok(removed)
    }

    /// The active version of `name`, compiled (from this instance's cache, the on-disk cache,
    /// or the stored bytes). A name this instance does not know yet is looked up in the
    /// storage once more before it is refused.
    ///
    /// # Errors
    /// [`RegistryError::UnknownRule`], [`RegistryError::Corrupt`] if the stored bytes are
    /// missing or no longer compile, or a storage error.
    pub async fn resolve(&self, name: &str) -> Result<ActiveRule, RegistryError> {
        let version = match self.snapshot().active.get(name) {
            Some(version) => version.clone(),
            None => {
                if self.inner.store.epoch().await? != self.snapshot().epoch {
                    self.refresh().await?;
                }
                self.snapshot()
                    .active
                    .get(name)
                    .cloned()
                    .ok_or_else(|| RegistryError::UnknownRule { name: name.to_owned() })?
            }
        };
        let compiled = self.compiled(name, &version).await?;
        Ok(ActiveRule { rule: Rule::new(name, compiled), version })
    }

    /// Defines (or redefines) a model schema for every engine sharing the storage, and
    /// registers it with this one.
    ///
    /// # Errors
    /// A storage error.
    pub async fn define_model(&self, schema: ModelSchema) -> Result<SchemaRecord, RegistryError> {
        Ok(self.define_model_reporting(schema).await?.0)
    }

    /// [`Registry::define_model`], and whether the stored schema changed.
    pub(crate) async fn define_model_reporting(
        &self,
        schema: ModelSchema,
    ) -> Result<(SchemaRecord, bool), RegistryError> {
        let (record, changed) = self.inner.store.define_schema(&schema, now_ms()).await?;
        self.inner.engine.register_model(schema);
        if changed {
            info!(model_type = record.schema.name(), revision = record.revision, "model schema defined");
            self.refresh().await?;
        }
        Ok((record, changed))
    }

    /// Deletes a model schema for every engine sharing the storage, and unregisters it from this
    /// one. The models' stored data stays: defining the type again makes it readable again.
    /// Returns the deleted schema's last record.
    ///
    /// # Errors
    /// [`RegistryError::UnknownModelType`], or a storage error.
    ///
    /// # Notes
    /// Other engine instances forget the type when they see the change (announced at once,
    /// polled within [`RegistryConfig::refresh_interval`] if the announcement is lost); invocations
    /// already running keep the schema they resolved.
    pub async fn delete_model(&self, name: &str) -> Result<SchemaRecord, RegistryError> {
        let record = self.inner.store.delete_schema(name).await?;
        self.inner.engine.unregister_model(name);
        info!(model_type = name, revision = record.revision, "model schema deleted");
        self.refresh().await?;
        Ok(record)
    }

    /// Every model schema, sorted by name (read from the storage).
    ///
    /// # Errors
    /// A storage error.
    pub async fn models(&self) -> Result<Vec<SchemaRecord>, RegistryError> {
        Ok(self.inner.store.snapshot().await?.schemas.into_values().collect())
    }

    /// One model schema.
    ///
    /// # Errors
    /// [`RegistryError::UnknownModelType`], or a storage error.
    pub async fn model(&self, name: &str) -> Result<SchemaRecord, RegistryError> {
        let mut schemas = self.inner.store.snapshot().await?.schemas;
        schemas.remove(name).ok_or_else(|| RegistryError::UnknownModelType { name: name.to_owned() })
    }

    /// Reads the storage's snapshot now and makes it this instance's (registering changed
    /// schemas with the engine). Returns the epoch.
    ///
    /// # Errors
    /// A storage error.
    pub async fn refresh(&self) -> Result<u64, RegistryError> {
        let snapshot = self.inner.store.snapshot().await?;
        self.inner.refreshes.fetch_add(1, Ordering::Relaxed);
        let epoch = snapshot.epoch;
        let (previous, fresh) = {
            let mut view = self.inner.view.write().unwrap_or_else(PoisonError::into_inner);
            if snapshot.epoch < view.epoch {
                return Ok(view.epoch);
            }
            let fresh = Arc::new(snapshot);
            (std::mem::replace(&mut *view, fresh.clone()), fresh)
        };
        for (name, record) in &fresh.schemas {
            if previous.schemas.get(name).is_none_or(|old| old != record) {
                self.inner.engine.register_model(record.schema.clone());
            }
        }
        for name in previous.schemas.keys().filter(|name| !fresh.schemas.contains_key(*name)) {
            self.inner.engine.unregister_model(name);
        }
        let active: HashSet<&str> = fresh.active.values().map(|v| v.digest.as_str()).collect();
        self.inner.compiled.trim(&active);
        if epoch != previous.epoch {
            debug!(epoch, "registry snapshot refreshed");
            if self.inner.config.warm {
                self.warm(&fresh);
            }
        }
        Ok(epoch)
    }

    /// Compiles, in the background, the active versions this instance has not compiled yet.
    fn warm(&self, snapshot: &Snapshot) {
        for (name, version) in &snapshot.active {
            if self.inner.compiled.contains(&version.digest) {
                continue;
            }
            let (registry, name, version) = (self.clone(), name.clone(), version.clone());
            tokio::spawn(async move {
                if let Err(e) = registry.compiled(&name, &version).await {
                    warn!(rule = %name, version = version.version, error = %e, "cannot prepare the active version");
                }
            });
        }
    }

    /// The compiled rule of a version: cached, precompiled on disk, or compiled from its bytes.
    async fn compiled(&self, name: &str, version: &RuleVersion) -> Result<CompiledRule, RegistryError> {
        self.inner
            .compiled
            .get_or_try_init(&version.digest, || async {
                if let Some(disk) = self.inner.disk.clone() {
                    let (engine, v) = (self.inner.engine.clone(), version.clone());
                    let loaded = tokio::task::spawn_blocking(move || disk.load(engine.runtime(), &v))
                        .await
                        .map_err(|e| RegistryError::Internal(format!("precompiled load task failed: {e}")))?;
                    if let Some(compiled) = loaded {
                        self.inner.precompiled_loads.fetch_add(1, Ordering::Relaxed);
                        return Ok(compiled);
                    }
                }
                let bytes = self.inner.store.rule_bytes(&version.digest).await?.ok_or_else(|| {
                    RegistryError::Corrupt(format!("the bytes of rule {name} version {} are missing", version.version))
                })?;
                let compiled = self.compile(name, bytes).await.map_err(|e| {
                    RegistryError::Corrupt(format!(
                        "stored rule {name} version {} does not compile: {e}",
                        version.version
                    ))
                })?;
                if compiled.digest() != version.digest {
                    return Err(RegistryError::Corrupt(format!(
                        "stored bytes of rule {name} version {} do not match their digest",
                        version.version
                    )));
                }
                self.store_precompiled(compiled.clone()).await;
                Ok(compiled)
            })
            .await
    }

    /// Compiles bytes on a blocking thread (it takes milliseconds of CPU).
    async fn compile(&self, name: &str, bytes: Vec<u8>) -> Result<CompiledRule, RegistryError> {
        let (engine, owned_name) = (self.inner.engine.clone(), name.to_owned());
        let rule = tokio::task::spawn_blocking(move || engine.compile_rule(&owned_name, &bytes))
            .await
            .map_err(|e| RegistryError::Internal(format!("compile task failed: {e}")))?
            .map_err(|e| RegistryError::from_compile(name, e))?;
        self.inner.compiles.fetch_add(1, Ordering::Relaxed);
        Ok(rule.compiled().clone())
    }

    async fn store_precompiled(&self, compiled: CompiledRule) {
        if let Some(disk) = self.inner.disk.clone() {
            let _ = tokio::task::spawn_blocking(move || disk.store(&compiled)).await;
        }
    }

    /// Checks the epoch and refreshes if it moved (the periodic check).
    pub(super) async fn check_epoch(&self) -> Result<(), RegistryError> {
        if self.inner.store.epoch().await? != self.snapshot().epoch {
            self.refresh().await?;
        }
        Ok(())
    }
}

/// The names of a compiled rule's component exports.
fn exports(compiled: &CompiledRule) -> Vec<String> {
    let component = compiled.pre().instance_pre().component();
    component.component_type().exports(component.engine()).map(|(name, _)| name.to_owned()).collect()
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
