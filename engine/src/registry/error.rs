//! Why a registry operation failed. How each failure is named and classed lives with the
//! engine's errors, in [`crate::error::class`].

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
