//! How every failure is presented to a caller, in one place: its stable name
//! ([`Error::kind`]), its [`ErrorClass`] (the HTTP status and the exit code) and its
//! [`RetryClass`] (whether, and why, running the same request again may succeed), for the
//! engine's [`Error`], the store's [`StoreError`], the registry's [`RegistryError`] and the
//! fixture runner's [`FixtureError`](crate::testing::fixtures::FixtureError); and the one JSON
//! body the HTTP API and the `wasmtx` command print ([`ErrorBody`]).
//!
//! Every match here names every variant (no catch-all arm): a new variant does not compile
//! until it is classified.

use serde::Serialize;

use super::kind::ErrorKind;
use super::{Error, RuleLoadError};
use crate::registry::RegistryError;
use crate::store::StoreError;

/// What kind of failure an error is, for callers that answer with a status: the HTTP server
/// maps classes to status codes, the `wasmtx` command to exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// The request itself is wrong (a bad name, key, JSON or schema): HTTP 400.
    BadInput,
    /// It names a rule, version or model type that does not exist: HTTP 404.
    NotFound,
    /// It conflicts with the current state or with other writers (lock timeout, conflict,
    /// active version): HTTP 409.
    Conflict,
    /// It is over a size limit: HTTP 413.
    TooLarge,
    /// A rule refused: uploaded bytes that are not a usable rule, or an invocation the rule
    /// rejected or failed (trap, deadline, memory cap); or an idempotency key reused for a
    /// different invocation; or an invocation over models in several Redis Cluster slots
    /// (`cross_slot`): HTTP 422.
    Refused,
    /// The store is unreachable; retrying later may succeed: HTTP 503.
    Unavailable,
    /// A fault of the server or its data: HTTP 500.
    Internal,
}

impl ErrorClass {
    /// The HTTP status code of the class.
    pub fn http_status(self) -> u16 {
        match self {
            Self::BadInput => 400,
            Self::NotFound => 404,
            Self::Conflict => 409,
            Self::TooLarge => 413,
            Self::Refused => 422,
            Self::Unavailable => 503,
            Self::Internal => 500,
        }
    }

    /// The exit code the `wasmtx` command ends with for the class (2 is left to usage errors).
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Internal => 1,
            Self::BadInput => 3,
            Self::NotFound => 4,
            Self::Conflict => 5,
            Self::TooLarge | Self::Refused => 6,
            Self::Unavailable => 7,
        }
    }
}

/// Why running the same request again may succeed; what a
/// [`RetryPolicy`](crate::RetryPolicy) chooses among.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RetryClass {
    /// A lock stayed held by others for the whole acquire timeout.
    LockTimeout,
    /// A lock's lease ran out before the commit.
    LockLost,
    /// A model changed between the load and the commit (optimistic mode), or the stored state
    /// changed during a whole-rule registry operation.
    Conflict,
    /// The store could not be reached, or the sandbox had no free instance slot.
    Unavailable,
}

/// Where an engine error came from: the same model-access failure is the rule's doing in an
/// invocation and the caller's in a direct field operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Origin {
    /// [`Engine::invoke`](crate::Engine::invoke): a model-access error the rule propagated is
    /// a refusal of the rule ([`ErrorClass::Refused`]).
    Invocation,
    /// A direct call (reading or writing a model field, compiling a rule): a model-access
    /// error is bad input ([`ErrorClass::BadInput`]).
    Direct,
}

impl Error {
    /// A short stable name for the variant (for metrics, logs and JSON error bodies): one of
    /// [`ErrorKind::ALL`], as [`ErrorKind::as_str`] spells it.
    pub fn kind(&self) -> &'static str {
        self.error_kind().as_str()
    }

    /// The variant's [`ErrorKind`].
    pub fn error_kind(&self) -> ErrorKind {
        match self {
            Self::UnknownModelType { .. } => ErrorKind::UnknownModelType,
            Self::InvalidKey { .. } => ErrorKind::InvalidKey,
            Self::InvalidAction { .. } => ErrorKind::InvalidAction,
            Self::InvalidRuleName { .. } => ErrorKind::InvalidRuleName,
            Self::DuplicateModel { .. } => ErrorKind::DuplicateModel,
            Self::InvalidInput { .. } => ErrorKind::InvalidInput,
            Self::Access { .. } => ErrorKind::Access,
            Self::InvalidRule(_) => ErrorKind::InvalidRule,
            Self::Schema(_) => ErrorKind::InvalidSchema,
            Self::Rejected { .. } => ErrorKind::Rejected,
            Self::Trapped { .. } => ErrorKind::Trapped,
            Self::DeadlineExceeded { .. } => ErrorKind::DeadlineExceeded,
            Self::MemoryLimitExceeded { .. } => ErrorKind::MemoryLimitExceeded,
            Self::InvalidOutput { .. } => ErrorKind::InvalidOutput,
            Self::LockTimeout { .. } => ErrorKind::LockTimeout,
            Self::LockLost { .. } => ErrorKind::LockLost,
            Self::Conflict { .. } => ErrorKind::Conflict,
            Self::CannotApply { .. } => ErrorKind::CannotApply,
            Self::Overloaded { .. } => ErrorKind::Overloaded,
            Self::InvalidIdempotencyKey { .. } => ErrorKind::InvalidIdempotencyKey,
            Self::IdempotencyKeyReused { .. } => ErrorKind::IdempotencyKeyReused,
            Self::InProgress { .. } => ErrorKind::InProgress,
            Self::OutcomeUnknown { .. } => ErrorKind::OutcomeUnknown,
            Self::CrossSlot(_) => ErrorKind::CrossSlot,
            Self::Store(_) => ErrorKind::Store,
        }
    }

    /// The class of the error, from an invocation or a direct call (see [`Origin`]).
    pub fn class(&self, origin: Origin) -> ErrorClass {
        match self {
            Self::UnknownModelType { .. } => ErrorClass::NotFound,
            Self::Access { .. } => match origin {
                Origin::Invocation => ErrorClass::Refused,
                Origin::Direct => ErrorClass::BadInput,
            },
            Self::InvalidKey { .. }
            | Self::InvalidAction { .. }
            | Self::InvalidRuleName { .. }
            | Self::DuplicateModel { .. }
            | Self::InvalidInput { .. }
            | Self::InvalidIdempotencyKey { .. }
            | Self::Schema(_) => ErrorClass::BadInput,
            Self::IdempotencyKeyReused { .. } => ErrorClass::Refused,
            Self::InProgress { .. } => ErrorClass::Conflict,
            Self::OutcomeUnknown { .. } => ErrorClass::Unavailable,
            Self::InvalidRule(error) => rule_load_class(error),
            Self::Rejected { .. }
            | Self::Trapped { .. }
            | Self::DeadlineExceeded { .. }
            | Self::MemoryLimitExceeded { .. }
            | Self::InvalidOutput { .. } => ErrorClass::Refused,
            Self::LockTimeout { .. } | Self::LockLost { .. } | Self::Conflict { .. } | Self::CannotApply { .. } => {
                ErrorClass::Conflict
            }
            Self::Overloaded { .. } => ErrorClass::Unavailable,
            Self::CrossSlot(error) | Self::Store(error) => error.class(),
        }
    }

    /// Why running the same invocation again may succeed (`None`: it would fail the same way:
    /// a rejection, a trap, a limit, bad input).
    pub fn retry_class(&self) -> Option<RetryClass> {
        match self {
            Self::LockTimeout { .. } => Some(RetryClass::LockTimeout),
            Self::LockLost { .. } => Some(RetryClass::LockLost),
            Self::Conflict { .. } => Some(RetryClass::Conflict),
            Self::Overloaded { .. } => Some(RetryClass::Unavailable),
            // The earlier call with the key held it for the whole acquire timeout, as a lock.
            Self::InProgress { .. } => Some(RetryClass::LockTimeout),
            Self::CrossSlot(error) | Self::Store(error) => error.retry_class(),
            // Not retried blindly: the caller decides, with the key the error carries.
            Self::OutcomeUnknown { .. } => None,
            Self::UnknownModelType { .. }
            | Self::InvalidKey { .. }
            | Self::InvalidAction { .. }
            | Self::InvalidRuleName { .. }
            | Self::DuplicateModel { .. }
            | Self::InvalidInput { .. }
            | Self::Access { .. }
            | Self::InvalidRule(_)
            | Self::Schema(_)
            | Self::Rejected { .. }
            | Self::Trapped { .. }
            | Self::DeadlineExceeded { .. }
            | Self::MemoryLimitExceeded { .. }
            | Self::InvalidOutput { .. }
            | Self::InvalidIdempotencyKey { .. }
            | Self::IdempotencyKeyReused { .. }
            | Self::CannotApply { .. } => None,
        }
    }

    /// Whether running the same invocation again may succeed: lock timeouts, lost locks,
    /// conflicts and store outages are; a rejection, a trap, a limit and bad input are not.
    pub fn is_retryable(&self) -> bool {
        self.retry_class().is_some()
    }

    /// The JSON error body of this error.
    pub fn body(&self) -> ErrorBody {
        ErrorBody::new(self.error_kind(), self.to_string()).retryable(self.is_retryable())
    }
}

impl super::InvocationError {
    /// The JSON error body of this error, with the invocation id and idempotency key.
    pub fn body(&self) -> ErrorBody {
        let mut body = self.error.body();
        body.invocation_id.clone_from(&self.invocation_id);
        body.idempotency_key.clone_from(&self.idempotency_key);
        body
    }
}

impl StoreError {
    /// The class of the failure.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::LockLost { .. }
            | Self::Conflict { .. }
            | Self::Stale { .. }
            | Self::CannotApply { .. }
            | Self::Recorded { .. } => ErrorClass::Conflict,
            // The store refused an attempt its caller had already given up on.
            Self::CommitAborted { .. } => ErrorClass::Internal,
            // Well-formed, but this deployment cannot run it as one atomic step.
            Self::CrossSlot { .. } => ErrorClass::Refused,
            Self::Unavailable(_) => ErrorClass::Unavailable,
            Self::InvalidUrl { .. } | Self::InvalidPrefix { .. } => ErrorClass::BadInput,
            Self::Corrupt { .. } | Self::Incompatible { .. } | Self::Backend(_) => ErrorClass::Internal,
        }
    }

    /// Why retrying the whole invocation may succeed (`None`: it would fail the same way).
    pub fn retry_class(&self) -> Option<RetryClass> {
        match self {
            Self::LockLost { .. } => Some(RetryClass::LockLost),
            Self::Conflict { .. } | Self::Stale { .. } => Some(RetryClass::Conflict),
            Self::Unavailable(_) => Some(RetryClass::Unavailable),
            Self::CannotApply { .. }
            | Self::Recorded { .. }
            | Self::CommitAborted { .. }
            | Self::CrossSlot { .. }
            | Self::Corrupt { .. }
            | Self::InvalidUrl { .. }
            | Self::InvalidPrefix { .. }
            | Self::Incompatible { .. }
            | Self::Backend(_) => None,
        }
    }

    /// Whether retrying the whole invocation may succeed.
    pub fn is_retryable(&self) -> bool {
        self.retry_class().is_some()
    }
}

impl RegistryError {
    /// A short stable name for the failure (for logs, exit messages and JSON error bodies).
    /// A refused rule is named by its precise reason: `not_wasm`, `rule_too_large`,
    /// `malformed_wasm`, `not_a_rule`, `forbidden_import`, `wrong_world`, `compile_failed`.
    pub fn kind(&self) -> &'static str {
        self.error_kind().as_str()
    }

    /// The failure's [`ErrorKind`].
    pub fn error_kind(&self) -> ErrorKind {
        match self {
            Self::InvalidName { .. } => ErrorKind::InvalidRuleName,
            Self::InvalidRule { error, .. } => rule_load_kind(error),
            Self::UnknownRule { .. } => ErrorKind::UnknownRule,
            Self::UnknownVersion { .. } => ErrorKind::UnknownVersion,
            Self::VersionActive { .. } => ErrorKind::VersionActive,
            Self::UnknownModelType { .. } => ErrorKind::UnknownModelType,
            Self::InvalidSchema(_) => ErrorKind::InvalidSchema,
            Self::Busy { .. } => ErrorKind::Busy,
            Self::Corrupt(_) => ErrorKind::RegistryCorrupt,
            Self::Store(StoreError::Unavailable(_)) => ErrorKind::StoreUnavailable,
            Self::Store(
                StoreError::LockLost { .. }
                | StoreError::Conflict { .. }
                | StoreError::Stale { .. }
                | StoreError::CannotApply { .. }
                | StoreError::Recorded { .. }
                | StoreError::CommitAborted { .. }
                | StoreError::CrossSlot { .. }
                | StoreError::Corrupt { .. }
                | StoreError::InvalidUrl { .. }
                | StoreError::InvalidPrefix { .. }
                | StoreError::Incompatible { .. }
                | StoreError::Backend(_),
            ) => ErrorKind::Store,
            Self::Internal(_) => ErrorKind::Internal,
        }
    }

    /// The class of the failure.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::InvalidName { .. } | Self::InvalidSchema(_) => ErrorClass::BadInput,
            Self::InvalidRule { error, .. } => rule_load_class(error),
            Self::UnknownRule { .. } | Self::UnknownVersion { .. } | Self::UnknownModelType { .. } => {
                ErrorClass::NotFound
            }
            Self::VersionActive { .. } | Self::Busy { .. } => ErrorClass::Conflict,
            Self::Store(StoreError::Unavailable(_)) => ErrorClass::Unavailable,
            Self::Store(StoreError::InvalidUrl { .. } | StoreError::InvalidPrefix { .. }) => ErrorClass::BadInput,
            Self::Store(
                StoreError::LockLost { .. }
                | StoreError::Conflict { .. }
                | StoreError::Stale { .. }
                | StoreError::CannotApply { .. }
                | StoreError::Recorded { .. }
                | StoreError::CommitAborted { .. }
                | StoreError::CrossSlot { .. }
                | StoreError::Corrupt { .. }
                | StoreError::Incompatible { .. }
                | StoreError::Backend(_),
            )
            | Self::Corrupt(_)
            | Self::Internal(_) => ErrorClass::Internal,
        }
    }

    /// Why running the same operation again may succeed: storage outages and concurrent
    /// changes; refusals and unknown names would fail the same way.
    pub fn retry_class(&self) -> Option<RetryClass> {
        match self {
            Self::Store(error) => error.retry_class(),
            Self::Busy { .. } => Some(RetryClass::Conflict),
            Self::InvalidName { .. }
            | Self::InvalidRule { .. }
            | Self::UnknownRule { .. }
            | Self::UnknownVersion { .. }
            | Self::VersionActive { .. }
            | Self::UnknownModelType { .. }
            | Self::InvalidSchema(_)
            | Self::Corrupt(_)
            | Self::Internal(_) => None,
        }
    }

    /// Whether running the same operation again may succeed.
    pub fn is_retryable(&self) -> bool {
        self.retry_class().is_some()
    }

    /// The JSON error body of this error.
    pub fn body(&self) -> ErrorBody {
        ErrorBody::new(self.error_kind(), self.to_string()).retryable(self.is_retryable())
    }
}

impl crate::testing::fixtures::FixtureError {
    /// The class of the failure: a fixture file that cannot be read or parsed is bad input; a
    /// rule or schema it names that cannot be loaded or built is a refusal.
    pub fn class(&self) -> ErrorClass {
        use crate::testing::fixtures::FixtureError;
        match self {
            FixtureError::Read { .. } | FixtureError::Invalid { .. } | FixtureError::UnknownErrorKind { .. } => {
                ErrorClass::BadInput
            }
            FixtureError::Setup { .. } => ErrorClass::Refused,
        }
    }

    /// A short stable name: `bad_input` for the file, `stale_rule` for a `.wasm` older than its
    /// project's sources, `fixture_setup` for anything else it names that cannot be loaded.
    pub fn kind(&self) -> &'static str {
        self.error_kind().as_str()
    }

    /// The failure's [`ErrorKind`] (see [`FixtureError::kind`](Self::kind)).
    pub fn error_kind(&self) -> ErrorKind {
        use crate::testing::HarnessError;
        use crate::testing::fixtures::FixtureError;
        match self {
            FixtureError::Read { .. } | FixtureError::Invalid { .. } | FixtureError::UnknownErrorKind { .. } => {
                ErrorKind::BadInput
            }
            FixtureError::Setup { source, .. } if matches!(**source, HarnessError::StaleRule { .. }) => {
                ErrorKind::StaleRule
            }
            FixtureError::Setup { .. } => ErrorKind::FixtureSetup,
        }
    }
}

/// A refused rule upload is over a limit or not a usable rule.
fn rule_load_class(error: &RuleLoadError) -> ErrorClass {
    match error {
        RuleLoadError::TooLarge { .. } => ErrorClass::TooLarge,
        RuleLoadError::NotWasm
        | RuleLoadError::Malformed(_)
        | RuleLoadError::NotARule(_)
        | RuleLoadError::ForbiddenImport { .. }
        | RuleLoadError::WrongWorld(_)
        | RuleLoadError::Compile(_) => ErrorClass::Refused,
    }
}

/// The short name of a rule refusal's reason.
fn rule_load_kind(error: &RuleLoadError) -> ErrorKind {
    match error {
        RuleLoadError::NotWasm => ErrorKind::NotWasm,
        RuleLoadError::TooLarge { .. } => ErrorKind::RuleTooLarge,
        RuleLoadError::Malformed(_) => ErrorKind::MalformedWasm,
        RuleLoadError::NotARule(_) => ErrorKind::NotARule,
        RuleLoadError::ForbiddenImport { .. } => ErrorKind::ForbiddenImport,
        RuleLoadError::WrongWorld(_) => ErrorKind::WrongWorld,
        RuleLoadError::Compile(_) => ErrorKind::CompileFailed,
    }
}

/// The error body the HTTP API answers with and `wasmtx --json` prints on stderr:
/// `{"error": {"kind", "message", "retryable"}}`, and for a failed invocation that started also
/// `"invocation_id"` and `"idempotency_key"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ErrorBody {
    /// A short stable name: one of [`ErrorKind::ALL`].
    pub kind: ErrorKind,
    /// What went wrong, in words.
    pub message: String,
    /// Whether the same request may succeed later.
    pub retryable: bool,
    /// The failed invocation's id, once it started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invocation_id: Option<String>,
    /// The failed invocation's idempotency key, once it started: invoking again with it is
    /// safe (it applies at most once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

impl ErrorBody {
    /// A body of the caller's own (a bad request shape, a missing token, ...): not retryable.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), retryable: false, invocation_id: None, idempotency_key: None }
    }

    /// Says whether the same request may succeed later.
    #[must_use]
    pub fn retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// The JSON document: `{"error": {"kind", "message", "retryable"}}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "error": self })
    }
}
