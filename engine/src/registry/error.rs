//! Why a registry operation failed, and the classes of failure callers map to HTTP statuses and
//! exit codes.

use crate::error::{Error, RuleLoadError, SchemaError};
use crate::store::StoreError;

/// Any failure of a registry operation. Whatever the variant, a failed write stored nothing.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// A rule name that cannot be used.
    #[error("invalid rule name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// Why it is refused.
        reason: String,
    },
    /// The uploaded bytes are not a usable rule: not wasm, too large, another world, foreign
    /// imports, or they do not compile. Nothing was stored.
    #[error("rule `{name}` refused: {error}")]
    InvalidRule {
        /// The rule name the upload was for.
        name: String,
        /// The precise reason.
        error: RuleLoadError,
    },
    /// No rule has this name.
    #[error("unknown rule `{name}`")]
    UnknownRule {
        /// The name given.
        name: String,
    },
    /// The rule has no version with this number (never had, or it was deleted).
    #[error("rule `{name}` has no version {version}")]
    UnknownVersion {
        /// The rule.
        name: String,
        /// The version asked for.
        version: u64,
    },
    /// The version to delete is the rule's active one.
    #[error("version {version} of rule `{name}` is active: activate another version first, or delete the whole rule")]
    VersionActive {
        /// The rule.
        name: String,
        /// Its active version.
        version: u64,
    },
    /// No model schema has this name.
    #[error("unknown model type `{name}`")]
    UnknownModelType {
        /// The name given.
        name: String,
    },
    /// A model schema was refused.
    #[error("invalid model schema: {0}")]
    InvalidSchema(#[from] SchemaError),
    /// The rule kept changing while a whole-rule operation ran; running it again may succeed.
    #[error("rule `{name}` changed during the operation; try again")]
    Busy {
        /// The rule.
        name: String,
    },
    /// Registry data that cannot be read back (written by something else, or a rule whose
    /// bytes are missing).
    #[error("registry data is corrupt: {0}")]
    Corrupt(String),
    /// The registry's storage failed.
    #[error(transparent)]
    Store(StoreError),
    /// A failure inside this process (a compile task that panicked, for instance).
    #[error("internal error: {0}")]
    Internal(String),
}

impl RegistryError {
    /// Whether running the same operation again may succeed: storage outages and concurrent
    /// changes are, refusals and unknown names are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Store(e) => e.is_retryable(),
            Self::Busy { .. } => true,
            _ => false,
        }
    }

    /// A short stable name for the failure (for logs, exit messages and JSON error bodies).
    /// A refused rule is named by its precise reason: `not_wasm`, `rule_too_large`,
    /// `malformed_wasm`, `not_a_rule`, `forbidden_import`, `wrong_world`, `compile_failed`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidName { .. } => "invalid_rule_name",
            Self::InvalidRule { error, .. } => rule_load_kind(error),
            Self::UnknownRule { .. } => "unknown_rule",
            Self::UnknownVersion { .. } => "unknown_version",
            Self::VersionActive { .. } => "version_active",
            Self::UnknownModelType { .. } => "unknown_model_type",
            Self::InvalidSchema(_) => "invalid_schema",
            Self::Busy { .. } => "busy",
            Self::Corrupt(_) => "registry_corrupt",
            Self::Store(StoreError::Unavailable(_)) => "store_unavailable",
            Self::Store(_) => "store",
            Self::Internal(_) => "internal",
        }
    }

    /// The class of the failure.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::InvalidName { .. } | Self::InvalidSchema(_) => ErrorClass::BadInput,
            Self::InvalidRule { error: RuleLoadError::TooLarge { .. }, .. } => ErrorClass::TooLarge,
            Self::InvalidRule { .. } => ErrorClass::Refused,
            Self::UnknownRule { .. } | Self::UnknownVersion { .. } | Self::UnknownModelType { .. } => {
                ErrorClass::NotFound
            }
            Self::VersionActive { .. } | Self::Busy { .. } => ErrorClass::Conflict,
            Self::Store(StoreError::Unavailable(_)) => ErrorClass::Unavailable,
            Self::Corrupt(_) | Self::Store(_) | Self::Internal(_) => ErrorClass::Internal,
        }
    }

    /// Translates an error of [`Engine::compile_rule`](crate::Engine::compile_rule).
    pub(crate) fn from_compile(name: &str, error: Error) -> Self {
        match error {
            Error::InvalidRule(error) => Self::InvalidRule { name: name.to_owned(), error },
            Error::InvalidRuleName { name, reason } => Self::InvalidName { name, reason },
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<StoreError> for RegistryError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// The short name of a rule refusal's reason.
fn rule_load_kind(error: &RuleLoadError) -> &'static str {
    match error {
        RuleLoadError::NotWasm => "not_wasm",
        RuleLoadError::TooLarge { .. } => "rule_too_large",
        RuleLoadError::Malformed(_) => "malformed_wasm",
        RuleLoadError::NotARule(_) => "not_a_rule",
        RuleLoadError::ForbiddenImport { .. } => "forbidden_import",
        RuleLoadError::WrongWorld(_) => "wrong_world",
        RuleLoadError::Compile(_) => "compile_failed",
    }
}

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
    /// rejected or failed (trap, deadline, memory cap): HTTP 422.
    Refused,
    /// The store is unreachable; retrying later may succeed: HTTP 503.
    Unavailable,
    /// A fault of the server or its data: HTTP 500.
    Internal,
}

impl ErrorClass {
    /// The class of an engine error from an invocation: model access failures the rule
    /// propagated count as refusals.
    pub fn of_invocation(error: &Error) -> Self {
        match error {
            Error::Access { .. } => Self::Refused,
            other => Self::of_engine(other),
        }
    }

    /// The class of an engine error from a direct call (reading or writing a model field):
    /// model access failures are bad input.
    pub fn of_engine(error: &Error) -> Self {
        match error {
            Error::UnknownModelType { .. } => Self::NotFound,
            Error::InvalidKey { .. }
            | Error::InvalidAction { .. }
            | Error::InvalidRuleName { .. }
            | Error::DuplicateModel { .. }
            | Error::InvalidInput { .. }
            | Error::Access { .. }
            | Error::Schema(_) => Self::BadInput,
            Error::InvalidRule(RuleLoadError::TooLarge { .. }) => Self::TooLarge,
            Error::InvalidRule(_)
            | Error::Rejected { .. }
            | Error::Trapped { .. }
            | Error::DeadlineExceeded { .. }
            | Error::MemoryLimitExceeded { .. }
            | Error::InvalidOutput { .. } => Self::Refused,
            Error::LockTimeout { .. } | Error::LockLost { .. } | Error::Conflict { .. } | Error::CannotApply { .. } => {
                Self::Conflict
            }
            Error::Store(StoreError::Unavailable(_)) => Self::Unavailable,
            _ => Self::Internal,
        }
    }

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
