//! Typed errors. Every failure an engine user can meet is a variant: callers match on them,
//! never on message text, and ask [`Error::is_retryable`] whether running the same invocation
//! again may succeed. How each variant is named, classed and retried lives in one place,
//! [`class`].

pub mod class;
pub mod kind;

use std::time::Duration;

use serde::Serialize;

use crate::model::ids::{LockId, ModelId};
use crate::store::StoreError;

/// Result alias for engine operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Any failure of an invocation or of an engine call. Whatever the variant but
/// [`Error::OutcomeUnknown`], an invocation that failed wrote nothing and released its locks
/// (or they run out).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The invocation named a model type the engine does not know.
    #[error("unknown model type `{model_type}`")]
    UnknownModelType {
        /// The name given.
        model_type: String,
    },
    /// A model key that cannot be used.
    #[error("invalid model key {key:?}: {reason}")]
    InvalidKey {
        /// The key given.
        key: String,
        /// Why it is refused.
        reason: String,
    },
    /// An action name that cannot be used.
    #[error("invalid action name {action:?}: {reason}")]
    InvalidAction {
        /// The name given.
        action: String,
        /// Why it is refused.
        reason: String,
    },
    /// A rule name that cannot be used.
    #[error("invalid rule name {name:?}: {reason}")]
    InvalidRuleName {
        /// The name given.
        name: String,
        /// Why it is refused.
        reason: String,
    },
    /// The same model appears twice in one invocation.
    #[error("model {model} is declared twice in one invocation")]
    DuplicateModel {
        /// The model.
        model: ModelId,
    },
    /// The invocation's input is not valid JSON, or the rule said it cannot use it.
    #[error("invalid input: {reason}")]
    InvalidInput {
        /// Why.
        reason: String,
    },
    /// A model operation failed: an unknown field, a wrong type, a bad index, a denied model
    /// or a limit. From a rule that propagated it, or from a direct field operation.
    #[error("{}{error}", model.as_ref().map(|m| format!("model {m}: ")).unwrap_or_default())]
    Access {
        /// The model the failed operation addressed, when known.
        model: Option<ModelId>,
        /// What went wrong.
        error: AccessError,
    },
    /// The rule bytes were refused; nothing was registered.
    #[error("invalid rule: {0}")]
    InvalidRule(#[from] RuleLoadError),
    /// A model schema was refused.
    #[error("invalid model schema: {0}")]
    Schema(#[from] SchemaError),
    /// The rule rejected the invocation (its `err`), with its message.
    #[error("rule rejected the invocation: {message}")]
    Rejected {
        /// The rule's message.
        message: String,
    },
    /// The rule trapped (panicked, hit `unreachable`, recursed past its call stack: the message
    /// then starts with `stack overflow`, ...).
    #[error("rule trapped: {message}")]
    Trapped {
        /// The trap, with the guest backtrace when available.
        message: String,
    },
    /// The rule ran past its deadline and was stopped.
    #[error("rule exceeded its deadline of {limit:?}")]
    DeadlineExceeded {
        /// The configured deadline.
        limit: Duration,
    },
    /// The rule tried to grow its memory past the cap and was stopped.
    #[error("rule exceeded its memory limit of {limit_bytes} bytes")]
    MemoryLimitExceeded {
        /// The configured cap.
        limit_bytes: usize,
    },
    /// The rule's output was not valid UTF-8 JSON text.
    #[error("rule returned invalid output: {reason}")]
    InvalidOutput {
        /// Why.
        reason: String,
    },
    /// A lock stayed held by others for the whole acquire timeout.
    #[error("timed out after {waited:?} waiting for lock {lock}")]
    LockTimeout {
        /// A lock that was still held.
        lock: LockId,
        /// How long the invocation waited.
        waited: Duration,
    },
    /// A lock's lease ran out before the commit (and maybe another holder took it): the commit
    /// was refused and nothing was written.
    #[error("lock {lock} was lost before the commit; nothing was written")]
    LockLost {
        /// The lock.
        lock: LockId,
    },
    /// Optimistic mode gave up: the model kept changing under the invocation.
    #[error("model {model} kept changing: gave up after {attempts} attempts")]
    Conflict {
        /// A model that changed.
        model: ModelId,
        /// How many times the rule ran.
        attempts: u32,
    },
    /// A change could not apply to the stored data; nothing was written.
    #[error("cannot apply the change to {model}.{field}: {reason}; nothing was written")]
    CannotApply {
        /// The model.
        model: ModelId,
        /// The field.
        field: String,
        /// Why.
        reason: String,
    },
    /// Every instance slot of the sandbox (`RuntimeConfig::max_instances`) stayed busy with
    /// other rules for as long as the invocation could wait (in lock mode, what was left of its
    /// lease budget): the rule did not run and nothing was written. Retrying later may succeed.
    #[error("no rule instance slot became free within {waited:?} (all were busy); nothing was written")]
    Overloaded {
        /// How long the invocation waited for a slot.
        waited: Duration,
    },
    /// An idempotency key that cannot be used.
    #[error("invalid idempotency key {key:?}: {reason}")]
    InvalidIdempotencyKey {
        /// The key given.
        key: String,
        /// Why it is refused.
        reason: String,
    },
    /// The idempotency key was used before by an invocation of another rule, action, model list
    /// or input (kept for the retention time). Nothing was written.
    #[error(
        "idempotency key {key:?} was used before for a different invocation (rule, action, models or input); nothing was written"
    )]
    IdempotencyKeyReused {
        /// The key.
        key: String,
    },
    /// An invocation with the same idempotency key was still running in this engine for the
    /// whole acquire timeout. Nothing was written; retrying later gets its outcome.
    #[error("an invocation with idempotency key {key:?} is still in progress (waited {waited:?}); nothing was written")]
    InProgress {
        /// The key.
        key: String,
        /// How long this call waited for it.
        waited: Duration,
    },
    /// A commit was sent but its reply was lost, and the store could not be asked afterwards
    /// whether it applied: the invocation may or may not have been written. Invoking again with
    /// the same idempotency key is safe: it applies at most once, and returns the outcome.
    #[error(
        "outcome unknown: the commit of idempotency key {key:?} was sent but its reply was lost ({reason}); invoke again with this key to learn the outcome: it cannot apply twice"
    )]
    OutcomeUnknown {
        /// The invocation's idempotency key.
        key: String,
        /// What went wrong, last.
        reason: String,
    },
    /// The invocation's models live in different Redis Cluster hash slots (see
    /// [`StoreError::CrossSlot`]): refused before anything was locked or written.
    #[error(transparent)]
    CrossSlot(StoreError),
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

/// A failed invocation: the error, with the ids a caller needs to find out about it later
/// (and to retry it safely with the same idempotency key).
///
/// It dereferences to its [`Error`], so `err.kind()`, `err.is_retryable()` and matching on
/// `*err` work as on the error itself.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{error}")]
#[non_exhaustive]
pub struct InvocationError {
    /// What went wrong.
    pub error: Error,
    /// The invocation id (what the rule saw as `context.invocation-id`); `None` when the
    /// invocation was refused before it started (bad input).
    pub invocation_id: Option<String>,
    /// The idempotency key it ran under (the caller's, or else its invocation id); `None` when
    /// it was refused before it started.
    pub idempotency_key: Option<String>,
}

impl InvocationError {
    /// An error of an invocation that never started (bad input): no id, no key.
    pub fn before_start(error: Error) -> Self {
        Self { error, invocation_id: None, idempotency_key: None }
    }
}

impl std::ops::Deref for InvocationError {
    type Target = Error;

    fn deref(&self) -> &Error {
        &self.error
    }
}

impl From<InvocationError> for Error {
    fn from(e: InvocationError) -> Self {
        e.error
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::LockLost { lock } => Self::LockLost { lock },
            StoreError::CannotApply { model, field, reason } => Self::CannotApply { model, field, reason },
            e @ StoreError::CrossSlot { .. } => Self::CrossSlot(e),
            // The flows handle a stale commit themselves; one that escaped is a conflict.
            StoreError::Stale { models } => match models.into_iter().next() {
                Some(first) => Self::Conflict { model: first.model, attempts: 1 },
                None => Self::Store(StoreError::Backend("a stale commit named no model".into())),
            },
            other => Self::Store(other),
        }
    }
}

/// Why a model operation failed: the host-side twin of the WIT `access-error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AccessError {
    /// The model type has no such field.
    #[error("unknown field `{field}`")]
    UnknownField {
        /// The field name given.
        field: String,
    },
    /// The operation does not fit the field's type.
    #[error("type mismatch on `{field}`: expected {expected}, found {found}")]
    TypeMismatch {
        /// The field.
        field: String,
        /// What the field's type needs.
        expected: String,
        /// What was given or tried.
        found: String,
    },
    /// A list index outside the list.
    #[error("index {index} out of range for `{field}` of length {len}")]
    IndexOutOfRange {
        /// The field.
        field: String,
        /// The index given.
        index: i64,
        /// The list's length.
        len: u32,
    },
    /// A list value that is not there.
    #[error("not found: {what}")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// The model is not declared, or the operation is not allowed.
    #[error("denied: {reason}")]
    Denied {
        /// Why.
        reason: String,
    },
    /// A resource limit would be exceeded.
    #[error("limit exceeded: {limit}")]
    LimitExceeded {
        /// Which limit, in words.
        limit: String,
    },
}

/// Why rule bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleLoadError {
    /// The bytes are not WebAssembly at all.
    #[error("not a WebAssembly module or component (bad magic number)")]
    NotWasm,
    /// The bytes are larger than the configured limit.
    #[error("rule is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// The size given.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The bytes are WebAssembly but invalid.
    #[error("malformed WebAssembly: {0}")]
    Malformed(String),
    /// A core module that cannot be turned into a rule component (no wit-bindgen metadata
    /// for this project's world, or imports from the contract's interfaces that the world does
    /// not have; an import from anywhere else is [`RuleLoadError::ForbiddenImport`]).
    #[error("core module is not a wasmtx rule: {0}")]
    NotARule(String),
    /// The rule imports something outside this project's WIT (WASI, for instance): a
    /// component import by its name, a core module's as `module::name`.
    #[error(
        "rule imports `{name}`, which is not part of the wasmtx:rule contract (only wasmtx:rule/* 0.1.x is provided; rules get no WASI)"
    )]
    ForbiddenImport {
        /// The import's name.
        name: String,
    },
    /// The component does not export `run` with the contract's signature.
    #[error("rule does not target the wasmtx:rule world: {0}")]
    WrongWorld(String),
    /// Wasmtime could not compile the component.
    #[error("rule failed to compile: {0}")]
    Compile(String),
}

/// Why a model schema was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The schema text is malformed.
    #[error("cannot parse schema: {0}")]
    Parse(String),
    /// The schema file cannot be read.
    #[error("cannot read schema: {0}")]
    Io(String),
    /// The model type name is not allowed.
    #[error("invalid model type name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// Why.
        reason: String,
    },
    /// A placement (see [`Placement`](crate::Placement)) is not allowed.
    #[error("invalid placement in group {group:?}: {reason}")]
    InvalidPlacement {
        /// The group named.
        group: String,
        /// Why.
        reason: String,
    },
    /// A field definition is not allowed.
    #[error("invalid field `{field}` of {model_type}: {reason}")]
    InvalidField {
        /// The model type.
        model_type: String,
        /// The field.
        field: String,
        /// Why.
        reason: String,
    },
}
