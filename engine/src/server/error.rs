//! JSON error responses: `{"error": {"kind", "message", "retryable"}}` with the status of the
//! error's [`ErrorClass`].

use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::Error;
use crate::registry::{ErrorClass, RegistryError};

/// An error answer of the HTTP API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A short stable name ([`Error::kind`], [`RegistryError::kind`] or the server's own).
    pub kind: String,
    /// What went wrong, in words.
    pub message: String,
    /// Whether the same request may succeed later.
    pub retryable: bool,
}

impl ApiError {
    /// An error of the server's own (bad request shape, authentication, ...).
    pub fn new(status: StatusCode, kind: &str, message: impl Into<String>) -> Self {
        Self { status, kind: kind.to_owned(), message: message.into(), retryable: false }
    }

    /// A 400 with kind `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// The answer to an engine error of an invocation.
    pub fn invocation(error: &Error) -> Self {
        Self::of(ErrorClass::of_invocation(error), error.kind(), error.to_string(), error.is_retryable())
    }

    /// The answer to an engine error of a direct model read or write.
    pub fn engine(error: &Error) -> Self {
        Self::of(ErrorClass::of_engine(error), error.kind(), error.to_string(), error.is_retryable())
    }

    /// The answer to a body that could not be read (413 when over the limit).
    pub fn body(rejection: &BytesRejection) -> Self {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            Self::new(status, "body_too_large", "the request body is over the server's size limit")
        } else {
            Self::new(status, "bad_body", rejection.body_text())
        }
    }

    fn of(class: ErrorClass, kind: &str, message: String, retryable: bool) -> Self {
        let status = StatusCode::from_u16(class.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self { status, kind: kind.to_owned(), message, retryable }
    }

    /// The JSON body.
    pub fn body_json(&self) -> serde_json::Value {
        json!({ "error": { "kind": self.kind, "message": self.message, "retryable": self.retryable } })
    }
}

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> Self {
        Self::of(error.class(), error.kind(), error.to_string(), error.is_retryable())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body_json())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(kind = %self.kind, message = %self.message, "server fault");
        }
        response
    }
}
