//! Limits and load shedding: the cap on requests in flight, the cap on invocations in flight
//! per rule, and the deadline for reading a request's body. What is over a cap is answered at
//! once with 503 `server_busy` and `Retry-After` rather than queued; `/healthz` is never
//! counted or refused, so a saturated server still says it is alive.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::AppState;
use super::error::ApiError;
use crate::error::kind::ErrorKind;

/// The server's limits; every one has a default ([`Limits::default`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// How long a client has to send a request's line and headers, from the first byte (or
    /// from the end of the previous request on a kept-alive connection); the connection is
    /// closed when it runs out (default 10 s).
    pub header_timeout: Duration,
    /// The most bytes of request line and headers (default 64 KiB, at least 8 KiB); larger
    /// heads get a 431 and the connection is closed.
    pub header_bytes: usize,
    /// How long a client has to send a request's whole body, from the end of its headers
    /// (default 30 s); then the request gets a 408.
    pub body_timeout: Duration,
    /// The most requests handled at once, `/healthz` aside (default 512); more get a 503.
    pub max_in_flight: usize,
    /// The most invocations of one rule at once (default 128); more get a 503.
    pub max_invocations_per_rule: usize,
    /// The `Retry-After` of a 503, in seconds (default 1).
    pub retry_after_secs: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            header_bytes: 64 << 10,
            body_timeout: Duration::from_secs(30),
            max_in_flight: 512,
            max_invocations_per_rule: 128,
            retry_after_secs: 1,
        }
    }
}

impl Limits {
    /// Sets the `header_timeout` field.
    #[must_use]
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = timeout;
        self
    }

    /// Sets the `header_bytes` field.
    #[must_use]
    pub fn header_bytes(mut self, bytes: usize) -> Self {
        self.header_bytes = bytes;
        self
    }

    /// Sets the `body_timeout` field.
    #[must_use]
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// Sets the `max_in_flight` field.
    #[must_use]
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self
    }

    /// Sets the `max_invocations_per_rule` field.
    #[must_use]
    pub fn max_invocations_per_rule(mut self, n: usize) -> Self {
        self.max_invocations_per_rule = n;
        self
    }
}

/// The counters behind the caps.
#[derive(Debug)]
pub(super) struct Gates {
    requests: Arc<Semaphore>,
    per_rule: Arc<Mutex<HashMap<String, usize>>>,
    max_per_rule: usize,
    retry_after: u32,
}

impl Gates {
    pub(super) fn new(limits: &Limits) -> Self {
        Self {
            requests: Arc::new(Semaphore::new(limits.max_in_flight.max(1))),
            per_rule: Arc::default(),
            max_per_rule: limits.max_invocations_per_rule.max(1),
            retry_after: limits.retry_after_secs,
        }
    }

    /// A place for one invocation of `rule`, held until the guard is dropped.
    ///
    /// # Errors
    /// A 503 `server_busy` when the rule has as many invocations in flight as it may.
    pub(super) fn invocation(&self, rule: &str) -> Result<RuleSlot, ApiError> {
        let mut counts = self.per_rule.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(rule.to_owned()).or_default();
        if *count >= self.max_per_rule {
            return Err(busy(
                format!("the rule `{rule}` has {} invocations in flight, as many as it may", self.max_per_rule),
                self.retry_after,
            ));
        }
        *count += 1;
        Ok(RuleSlot { counts: self.per_rule.clone(), rule: rule.to_owned() })
    }

    fn request(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.requests
            .clone()
            .try_acquire_owned()
            .map_err(|_| busy("the server has as many requests in flight as it takes".to_owned(), self.retry_after))
    }
}

/// One invocation's place under its rule's cap.
#[derive(Debug)]
pub(super) struct RuleSlot {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    rule: String,
}

impl Drop for RuleSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.rule) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.rule);
            }
        }
    }
}

fn busy(message: String, retry_after: u32) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorKind::ServerBusy, message).retry_after(retry_after)
}

/// Refuses a request over the in-flight cap with a 503 (`/healthz` passes uncounted).
pub(super) async fn cap_in_flight(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.uri().path() == "/healthz" {
        return next.run(request).await;
    }
    match state.gates.request() {
        Ok(permit) => {
            let response = next.run(request).await;
            drop(permit);
            response
        }
        Err(refusal) => refusal.into_response(),
    }
}

/// Reads the whole body, within the body limit and before the body timeout runs out, so that
/// no handler waits on a slow client: 408 `request_timeout` when it runs out, 413 over the
/// limit, 400 `bad_body` when the body cannot be read.
pub(super) async fn read_body(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let limit = state.config.body_limit;
    let read = async move {
        let mut stream = body.into_data_stream();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::new(StatusCode::BAD_REQUEST, ErrorKind::BadBody, format!("cannot read the body: {e}"))
            })?;
            if bytes.len() + chunk.len() > limit {
                // Read (and drop) up to twice the limit: a client still sending would
                // otherwise see its connection reset instead of the answer.
                let mut read = bytes.len() + chunk.len();
                drop(bytes);
                while read <= limit.saturating_mul(2) {
                    match stream.next().await {
                        Some(Ok(more)) => read += more.len(),
                        _ => break,
                    }
                }
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorKind::BodyTooLarge,
                    "the request body is over the server's size limit",
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(bytes))
    };
    let timeout = state.config.limits.body_timeout;
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(bytes)) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        Ok(Err(refusal)) => refusal.into_response(),
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            ErrorKind::RequestTimeout,
            format!("the request body took longer than {} ms to arrive", timeout.as_millis()),
        )
        .into_response(),
    }
}
