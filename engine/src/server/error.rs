//! JSON error responses: the [`ErrorBody`] (`{"error": {"kind", "message", "retryable"}}`) with
//! the HTTP status of the error's [`ErrorClass`].

use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::class::{ErrorBody, ErrorClass, Origin};
use crate::error::kind::ErrorKind;
use crate::error::{Error, InvocationError};
use crate::registry::RegistryError;

/// An error answer of the HTTP API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body.
    pub body: ErrorBody,
    /// The `Retry-After` header's seconds, if any.
    pub retry_after: Option<u32>,
}

impl ApiError {
    /// An error of the server's own (bad request shape, authentication, ...).
    pub fn new(status: StatusCode, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { status, body: ErrorBody::new(kind, message), retry_after: None }
    }

    /// The same error, retryable, with a `Retry-After: <secs>` header.
    #[must_use]
    pub fn retry_after(mut self, secs: u32) -> Self {
        self.retry_after = Some(secs);
        self.body.retryable = true;
        self
    }

    /// A 400 with kind `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorKind::BadRequest, message)
    }

    /// The answer to a failed invocation (its body names the invocation id and idempotency
    /// key once it started).
    pub fn invocation(error: &InvocationError) -> Self {
        Self::of(error.class(Origin::Invocation), error.body())
    }

    /// The answer to an engine error of a direct model read or write.
    pub fn engine(error: &Error) -> Self {
        Self::of(error.class(Origin::Direct), error.body())
    }

    /// The answer to a body that could not be read (413 when over the limit).
    pub fn body(rejection: &BytesRejection) -> Self {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            Self::new(status, ErrorKind::BodyTooLarge, "the request body is over the server's size limit")
        } else {
            Self::new(status, ErrorKind::BadBody, rejection.body_text())
        }
    }

    fn of(class: ErrorClass, body: ErrorBody) -> Self {
        let status = StatusCode::from_u16(class.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self { status, body, retry_after: None }
    }
}

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> Self {
        Self::of(error.class(), error.body())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(kind = %self.body.kind, message = %self.body.message, "server fault");
        }
        let mut response = (self.status, axum::Json(self.body.to_json())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
