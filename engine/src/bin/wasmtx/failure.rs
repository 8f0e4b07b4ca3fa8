//! What a command failed with: a class (for the exit code) and the error body (kind, one-line
//! message, retryable) `--json` prints.

use std::fmt;

use wasmtx::ErrorKind;
use wasmtx::registry::RegistryError;
use wasmtx::{Error, ErrorBody, ErrorClass, InvocationError, Origin, StoreError};

/// A command's failure.
#[derive(Debug)]
pub struct Failure {
    pub class: ErrorClass,
    pub body: ErrorBody,
}

impl Failure {
    pub fn new(class: ErrorClass, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { class, body: ErrorBody::new(kind, message) }
    }

    /// Bad input given on the command line or in a file.
    pub fn input(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::BadInput, ErrorKind::BadInput, message)
    }

    /// An engine error of an invocation.
    pub fn invocation(error: &InvocationError) -> Self {
        Self { class: error.class(Origin::Invocation), body: error.body() }
    }

    /// An engine error of a direct model read or write.
    pub fn engine(error: &Error) -> Self {
        Self { class: error.class(Origin::Direct), body: error.body() }
    }

    /// The exit code.
    pub fn exit_code(&self) -> u8 {
        self.class.exit_code()
    }

    /// The JSON form (what `--json` prints on stderr).
    pub fn to_json(&self) -> serde_json::Value {
        self.body.to_json()
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line, whatever the underlying message holds.
        write!(f, "{}", self.body.message.replace('\n', " "))
    }
}

impl From<RegistryError> for Failure {
    fn from(error: RegistryError) -> Self {
        Self { class: error.class(), body: error.body() }
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Failure::engine(&Error::Store(error))
    }
}
