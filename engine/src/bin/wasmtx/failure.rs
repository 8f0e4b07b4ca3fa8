//! What a command failed with: a class (for the exit code), a kind and a one-line message.

use std::fmt;

use wasmtx::registry::{ErrorClass, RegistryError};
use wasmtx::{Error, StoreError};

/// A command's failure.
#[derive(Debug)]
pub struct Failure {
    pub class: ErrorClass,
    pub kind: String,
    pub message: String,
    pub retryable: bool,
}

impl Failure {
    pub fn new(class: ErrorClass, kind: &str, message: impl Into<String>) -> Self {
        Self { class, kind: kind.to_owned(), message: message.into(), retryable: false }
    }

    /// Bad input given on the command line or in a file.
    pub fn input(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::BadInput, "bad_input", message)
    }

    /// An engine error of an invocation.
    pub fn invocation(error: &Error) -> Self {
        Self::of_engine(ErrorClass::of_invocation(error), error)
    }

    /// An engine error of a direct model read or write.
    pub fn engine(error: &Error) -> Self {
        Self::of_engine(ErrorClass::of_engine(error), error)
    }

    fn of_engine(class: ErrorClass, error: &Error) -> Self {
        Self { class, kind: error.kind().to_owned(), message: error.to_string(), retryable: error.is_retryable() }
    }

    /// The exit code.
    pub fn exit_code(&self) -> u8 {
        self.class.exit_code()
    }

    /// The JSON form (what `--json` prints on stderr).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "error": { "kind": self.kind, "message": self.message, "retryable": self.retryable } })
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line, whatever the underlying message holds.
        write!(f, "{}", self.message.replace('\n', " "))
    }
}

impl From<RegistryError> for Failure {
    fn from(error: RegistryError) -> Self {
        Self {
            class: error.class(),
            kind: error.kind().to_owned(),
            message: error.to_string(),
            retryable: error.is_retryable(),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Failure::engine(&Error::Store(error))
    }
}
