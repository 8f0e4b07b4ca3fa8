//! The engine: the entry point tying rules, model types and a store together.
//!
//! Files, one job each: this one (the [`Engine`] and its invocation entry point), `config`
//! ([`EngineConfig`]), `builder` ([`EngineBuilder`]) and `direct` (field operations without a
//! rule).

mod builder;
mod config;
mod direct;

use std::sync::Arc;

use tracing::{Instrument, debug_span};

pub use self::builder::EngineBuilder;
pub use self::config::EngineConfig;
use crate::error::{Error, InvocationError, Result};
use crate::invocation::{Invocation, Outcome};
use crate::model::change::{ModelSnapshot, ModelTarget};
use crate::model::ids::{ModelId, validate_action};
use crate::model::schema::{ModelSchema, ModelTypes};
use crate::rule::Rule;
use crate::runtime::RuleRuntime;
use crate::store::Store;
use crate::txn::{Plan, Protocol};

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
/// Every method takes `&self` and may be called from many tasks at once. A rule starts as part
/// of the calling task's future and yields at every epoch tick
/// ([`RuntimeConfig::yield_interval`](crate::RuntimeConfig::yield_interval)); one still running
/// at its first yield moves to the engine's own rule threads
/// ([`RuntimeConfig::rule_threads`](crate::RuntimeConfig::rule_threads)). However a rule
/// behaves, the host's other tasks, timers and I/O keep running. At most `max_instances` rules
/// run at once per engine; others wait (without blocking a thread) for a slot. An engine owns
/// an epoch-ticker thread and its rule threads; they stop when its last clone is dropped.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// What every clone of an engine shares.
#[derive(Debug)]
struct Inner {
    /// The transaction protocol: store, sandbox, lock lines, group lines.
    protocol: Arc<Protocol>,
    models: ModelTypes,
    config: EngineConfig,
}

impl Engine {
    fn new(protocol: Protocol, models: ModelTypes, config: EngineConfig) -> Self {
        Self { inner: Arc::new(Inner { protocol: Arc::new(protocol), models, config }) }
    }

    /// Starts building an engine.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// The store this engine writes to.
    pub fn store(&self) -> &Arc<dyn Store> {
        self.inner.protocol.store()
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

    /// What the snapshot cache ([`EngineConfig::snapshot_cache`]) did so far: hits, misses,
    /// stale hits, evictions, drops, and its size now.
    pub fn cache_stats(&self) -> crate::txn::CacheStats {
        self.inner.protocol.cache_stats()
    }

    /// What adaptive mode ([`Mode::Adaptive`](crate::Mode::Adaptive)) did so far: attempts
    /// run optimistic and in lock mode, conflicts, models marked hot.
    pub fn adaptive_stats(&self) -> crate::txn::AdaptiveStats {
        self.inner.protocol.adaptive_stats()
    }

    /// The rule runtime (the registry's precompiled cache uses its wasmtime engine).
    pub(crate) fn runtime(&self) -> &RuleRuntime {
        self.inner.protocol.runtime()
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
        Ok(Rule::new(name, self.runtime().compile(bytes)?))
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
        let mut snapshots = self.store().load(std::slice::from_ref(&target)).await?;
        snapshots.pop().ok_or_else(|| Error::Store(crate::store::StoreError::Backend("empty load reply".into())))
    }

    fn target(&self, id: &ModelId) -> Result<ModelTarget> {
        id.validate()?;
        Ok(ModelTarget { id: id.clone(), schema: self.model_type(&id.model_type)? })
    }

    fn resolve(&self, invocation: &Invocation) -> Result<Plan> {
        validate_action(&invocation.action)?;
        if let Some(key) = &invocation.idempotency_key {
            crate::store::record::validate_key(key)
                .map_err(|reason| Error::InvalidIdempotencyKey { key: key.clone(), reason })?;
        }
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

    /// Runs `rule` on the invocation's models and commits what it changed, in the
    /// invocation's [`Mode`](crate::Mode), retrying retryable failures per its
    /// [`RetryPolicy`](crate::RetryPolicy) (or the engine's).
    ///
    /// - Lock mode: takes one lock per (model, action) and loads every model in one store round
    ///   trip (waiting up to the acquire timeout, woken by releases), runs the rule in a fresh
    ///   instance, then in one more round trip checks every lock is still held with its fencing
    ///   token, writes only the fields that changed (appends as appends, dict entries one by
    ///   one), bumps versions and releases the locks.
    /// - Pipeline mode: loads without locks, runs the rule, and applies the intent of each
    ///   operation (increments as `HINCRBY`, appends as `RPUSH`, ...) in one atomic round trip.
    /// - Optimistic mode: loads with versions (or takes them from the snapshot cache: then the
    ///   commit is the only round trip), runs the rule, and commits only if no model changed
    ///   in between; otherwise runs the rule again (per the retry policy) and finally fails
    ///   with [`Error::Conflict`].
    /// - Adaptive mode: optimistic, except for models that keep conflicting, which run in lock
    ///   mode for a while ([`EngineConfig::adaptive`](crate::EngineConfig::adaptive)), and so
    ///   do the later attempts of an invocation refused as often.
    ///
    /// # Errors
    /// Bad input ([`Error::UnknownModelType`], [`Error::InvalidKey`], [`Error::InvalidAction`],
    /// [`Error::DuplicateModel`], [`Error::InvalidInput`]); the rule's refusal or failure
    /// ([`Error::Rejected`], [`Error::Access`], [`Error::Trapped`], [`Error::DeadlineExceeded`],
    /// [`Error::MemoryLimitExceeded`], [`Error::InvalidOutput`]); concurrency
    /// ([`Error::LockTimeout`], [`Error::LockLost`], [`Error::Conflict`],
    /// [`Error::CannotApply`]); idempotency ([`Error::InvalidIdempotencyKey`],
    /// [`Error::IdempotencyKeyReused`], [`Error::InProgress`]); or a store failure. In every
    /// case but [`Error::OutcomeUnknown`] nothing was written and the invocation's locks were
    /// released (or will run out); that one says the commit was sent, its reply was lost, and
    /// the store could not be asked afterwards. The error carries the invocation id and the
    /// idempotency key: invoking again with that key is always safe.
    ///
    /// # Notes
    /// Safe to call concurrently. Invocations of the same (model, action) in this engine
    /// queue in arrival order before contending in the store. In lock mode, those that queue
    /// behind a running invocation of the same models and action run as a group: back to back
    /// under one lock hold, each on the state the previous one left, committed together in one
    /// round trip (at most [`EngineConfig::max_group`] per group); each still gets its own
    /// outcome or error, and only once the shared commit is durable.
    ///
    /// Exactly once: every invocation runs under an idempotency key (the caller's,
    /// [`Invocation::idempotency_key`], or else its invocation id, kept across the engine's
    /// retries), recorded atomically with its commit for
    /// [`EngineConfig::idempotency_retention`]. A repeat of a committed key writes nothing and
    /// returns the first outcome with [`Outcome::replayed`] set; a commit whose reply was lost
    /// is looked up before anything else is decided, so the engine's own retries never apply an
    /// invocation twice.
    ///
    /// Cancellation: dropping the future (a timeout, a dropped HTTP request) stops the rule and
    /// writes nothing, except that a commit already sent may still land (whole, under the
    /// invocation's key). The locks the invocation held, or was taking, are released within a
    /// store round trip by a background task of the engine, not left to run out with their
    /// lease (see [`EngineConfig::lease`]; without a Tokio runtime they do run out).
    pub async fn invoke(&self, rule: &Rule, invocation: &Invocation) -> Result<Outcome, InvocationError> {
        let plan = self.resolve(invocation).map_err(InvocationError::before_start)?;
        let policy = invocation.retry.unwrap_or(self.inner.config.retry);
        let span = debug_span!("invoke", rule = rule.name(), action = %invocation.action, mode = %invocation.mode);
        self.inner.protocol.invoke(rule, invocation, &plan, policy).instrument(span).await
    }
}
