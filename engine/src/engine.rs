//! The engine: the entry point tying rules, model types and a store together.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;
use tracing::{Instrument, debug, debug_span};

use crate::error::{Error, Result};
use crate::invocation::{Invocation, Mode, Outcome, RunContext};
use crate::model::change::{ModelSnapshot, ModelTarget};
use crate::model::ids::{ModelId, validate_action};
use crate::model::schema::{ModelSchema, ModelTypes};
use crate::rule::Rule;
use crate::runtime::{RuleRuntime, RuntimeConfig};
use crate::store::Store;
use crate::store::memory::MemoryStore;
use crate::txn::group::GroupLines;
use crate::txn::local_queue::LocalLockQueue;
use crate::txn::retry::RetryPolicy;
use crate::txn::{Plan, lock_mode, optimistic, pipeline};

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Sandbox settings: deadline, memory cap, limits.
    pub runtime: RuntimeConfig,
    /// How long a lock lives if its holder never commits (crash, partition). Must exceed the
    /// rule deadline plus two store round trips.
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
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            runtime: RuntimeConfig::default(),
            lease: Duration::from_secs(10),
            acquire_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            max_group: 32,
        }
    }
}

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

    /// Uses a store shared with other engines or code.
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

    /// Sets the lock lease.
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

    /// Registers a model type.
    #[must_use]
    pub fn model(mut self, schema: ModelSchema) -> Self {
        self.models.push(schema);
        self
    }

    /// Creates the engine: the wasmtime engine and its instance pool.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for inconsistent settings (a lease not longer than the rule
    /// deadline, zero timeouts), or the runtime's own error.
    pub fn build(self) -> Result<Engine> {
        let cfg = &self.config;
        if cfg.lease <= cfg.runtime.deadline {
            return Err(Error::InvalidInput {
                reason: format!(
                    "lease {:?} must be longer than the rule deadline {:?}",
                    cfg.lease, cfg.runtime.deadline
                ),
            });
        }
        if cfg.acquire_timeout.is_zero() {
            return Err(Error::InvalidInput { reason: "acquire timeout must be positive".into() });
        }
        if cfg.max_group == 0 || cfg.max_group > 10_000 {
            return Err(Error::InvalidInput {
                reason: format!("max_group {} must be between 1 and 10 000", cfg.max_group),
            });
        }
        let runtime = RuleRuntime::new(self.config.runtime.clone())?;
        let models = ModelTypes::default();
        for schema in self.models {
            models.register(schema);
        }
        let store = self.store.unwrap_or_else(|| Arc::new(MemoryStore::new()));
        Ok(Engine {
            inner: Arc::new(Inner {
                store,
                runtime,
                models,
                config: self.config,
                queue: LocalLockQueue::default(),
                groups: GroupLines::default(),
                instance: format!("{:016x}", rand::random::<u64>()),
                sequence: AtomicU64::new(0),
            }),
        })
    }
}

/// Runs rules on models. Cheap to clone; clones share everything.
///
/// ```no_run
/// # async fn demo(rule_bytes: &[u8]) -> wasmtx::Result<()> {
/// use wasmtx::{Engine, Invocation, ModelSchema};
/// let engine = Engine::builder()
///     .model(ModelSchema::from_toml(r#"
///         name = "Account"
///         [fields]
///         balance = { type = "int" }
///         transaction_count = { type = "int" }
///     "#)?)
///     .build()?;
/// let rule = engine.compile_rule("bank-transfer", rule_bytes)?;
/// let outcome = engine
///     .invoke(&rule, &Invocation::new("transfer").model("Account", "alice").model("Account", "bob").input(r#"{"amount": 10}"#))
///     .await?;
/// println!("{} wrote {:?}", outcome.output, outcome.changes);
/// # Ok(()) }
/// ```
///
/// # Notes
/// Every method takes `&self` and may be called from many tasks at once. A rule runs on the
/// calling task's thread, bounded by the configured deadline.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// What every invocation of an engine shares; the mode flows in [`crate::txn`] borrow it.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) runtime: RuleRuntime,
    pub(crate) models: ModelTypes,
    pub(crate) config: EngineConfig,
    pub(crate) queue: LocalLockQueue,
    pub(crate) groups: GroupLines,
    instance: String,
    sequence: AtomicU64,
}

impl Engine {
    /// Starts building an engine.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// The store this engine writes to.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The model types this engine knows.
    pub fn model_types(&self) -> &ModelTypes {
        &self.inner.models
    }

    /// Registers (or replaces) a model type.
    pub fn register_model(&self, schema: ModelSchema) -> Arc<ModelSchema> {
        self.inner.models.register(schema)
    }

    /// Forgets a model type: later invocations and direct operations naming it fail with an
    /// unknown model type. The models' stored data stays where it is (registering the type again
    /// makes it readable again). Returns the schema if the type was registered.
    ///
    /// # Notes
    /// Invocations that already resolved their models keep the schema they resolved.
    pub fn unregister_model(&self, name: &str) -> Option<Arc<ModelSchema>> {
        self.inner.models.unregister(name)
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The rule runtime (the registry's precompiled cache uses its wasmtime engine).
    pub(crate) fn runtime(&self) -> &RuleRuntime {
        &self.inner.runtime
    }

    /// Checks and compiles rule bytes under a name: a component, or a core module built with
    /// wit-bindgen for `wasm32-unknown-unknown` (wrapped into a component here).
    ///
    /// # Errors
    /// [`Error::InvalidRule`] with the precise reason (not wasm, too large, WASI or other
    /// foreign imports, wrong world, compile failure); [`Error::InvalidRuleName`] for a name
    /// that is not an identifier.
    pub fn compile_rule(&self, name: &str, bytes: &[u8]) -> Result<Rule> {
        crate::model::ids::validate_name(name)
            .map_err(|reason| Error::InvalidRuleName { name: name.to_owned(), reason })?;
        Ok(Rule::new(name, self.inner.runtime.compile(bytes)?))
    }

    /// Resolves a model type name.
    ///
    /// # Errors
    /// [`Error::UnknownModelType`].
    pub fn model_type(&self, name: &str) -> Result<Arc<ModelSchema>> {
        self.inner.models.get(name).ok_or_else(|| Error::UnknownModelType { model_type: name.to_owned() })
    }

    /// Reads a model's current state (defaults if it was never written).
    ///
    /// # Errors
    /// [`Error::UnknownModelType`], [`Error::InvalidKey`], or a store error.
    pub async fn read_model(&self, model_type: &str, key: &str) -> Result<ModelSnapshot> {
        let target = self.target(&ModelId::new(model_type, key))?;
        let mut snapshots = self.inner.store.load(std::slice::from_ref(&target)).await?;
        snapshots.pop().ok_or_else(|| Error::Store(crate::store::StoreError::Backend("empty load reply".into())))
    }

    fn target(&self, id: &ModelId) -> Result<ModelTarget> {
        id.validate()?;
        Ok(ModelTarget { id: id.clone(), schema: self.model_type(&id.model_type)? })
    }

    fn resolve(&self, invocation: &Invocation) -> Result<Plan> {
        validate_action(&invocation.action)?;
        serde_json::from_str::<serde::de::IgnoredAny>(&invocation.input)
            .map_err(|e| Error::InvalidInput { reason: format!("input is not valid JSON: {e}") })?;
        let targets = invocation.models.iter().map(|id| self.target(id)).collect::<Result<Vec<_>>>()?;
        let mut order: Vec<usize> = (0..targets.len()).collect();
        order.sort_by(|&a, &b| targets[a].id.cmp(&targets[b].id));
        if let Some(w) = order.windows(2).find(|w| targets[w[0]].id == targets[w[1]].id) {
            return Err(Error::DuplicateModel { model: targets[w[0]].id.clone() });
        }
        Ok(Plan::new(targets, order))
    }

    pub(crate) fn context(&self, invocation: &Invocation, attempt: u32) -> RunContext {
        let seq = self.inner.sequence.fetch_add(1, Ordering::Relaxed);
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        RunContext {
            invocation_id: format!("{}-{seq}", self.inner.instance),
            now_ms,
            action: invocation.action.clone(),
            mode: invocation.mode,
            attempt,
        }
    }

    /// Runs `rule` on the invocation's models and commits what it changed, in the
    /// invocation's [`Mode`], retrying retryable failures per its [`RetryPolicy`] (or the
    /// engine's).
    ///
    /// - [`Mode::Lock`]: takes one lock per (model, action) and loads every model in one store
    ///   round trip (waiting up to the acquire timeout, woken by releases), runs the rule in a
    ///   fresh instance, then in one more round trip checks every lock is still held with its
    ///   fencing token, writes only the fields that changed (appends as appends, dict entries
    ///   one by one), bumps versions and releases the locks.
    /// - [`Mode::Pipeline`]: loads without locks, runs the rule, and applies the intent of each
    ///   operation (increments as `HINCRBY`, appends as `RPUSH`, ...) in one atomic round trip.
    /// - [`Mode::Optimistic`]: loads with versions, runs the rule, and commits only if no model
    ///   changed in between; otherwise runs the rule again (per the retry policy) and finally
    ///   fails with [`Error::Conflict`].
    ///
    /// # Errors
    /// Bad input ([`Error::UnknownModelType`], [`Error::InvalidKey`], [`Error::InvalidAction`],
    /// [`Error::DuplicateModel`], [`Error::InvalidInput`]); the rule's refusal or failure
    /// ([`Error::Rejected`], [`Error::Access`], [`Error::Trapped`], [`Error::DeadlineExceeded`],
    /// [`Error::MemoryLimitExceeded`], [`Error::InvalidOutput`]); concurrency
    /// ([`Error::LockTimeout`], [`Error::LockLost`], [`Error::Conflict`],
    /// [`Error::CannotApply`]); or a store failure. In every case nothing was written and the
    /// invocation's locks were released (or will run out).
    ///
    /// # Notes
    /// Safe to call concurrently. Invocations of the same (model, action) in this engine
    /// queue in arrival order before contending in the store. In lock mode, those that queue
    /// behind a running invocation of the same models and action run as a group: back to back
    /// under one lock hold, each on the state the previous one left, committed together in one
    /// round trip (at most [`EngineConfig::max_group`] per group); each still gets its own
    /// outcome or error, and only once the shared commit is durable.
    pub async fn invoke(&self, rule: &Rule, invocation: &Invocation) -> Result<Outcome> {
        let plan = self.resolve(invocation)?;
        let policy = invocation.retry.unwrap_or(self.inner.config.retry);
        let span = debug_span!("invoke", rule = rule.name(), action = %invocation.action, mode = ?invocation.mode);
        async {
            let started = Instant::now();
            let mut attempt = 1;
            loop {
                let before = started.elapsed();
                let context = self.context(invocation, attempt);
                let result = match invocation.mode {
                    Mode::Lock => lock_mode::run(&self.inner, rule, invocation, &plan, context).await,
                    Mode::Pipeline => pipeline::run(&self.inner, rule, invocation, &plan, context).await,
                    Mode::Optimistic => optimistic::run(&self.inner, rule, invocation, &plan, context).await,
                };
                match result {
                    Ok(mut outcome) => {
                        outcome.attempts = attempt;
                        outcome.timings.wait += before;
                        return Ok(outcome);
                    }
                    Err(e) if attempt < policy.max_attempts && policy.retries(&e) => {
                        debug!(attempt, error = %e, "retrying");
                        tokio::time::sleep(policy.backoff(attempt)).await;
                        attempt += 1;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        .instrument(span)
        .await
    }
}
