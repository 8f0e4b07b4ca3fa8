//! The HTTP API of `wasmtx serve`: a small JSON API over a [`Registry`] and its engine.
//!
//! | route | what |
//! |---|---|
//! | `GET /healthz` | `{"status": "ok", "epoch": n}` |
//! | `GET /metrics` | Prometheus text format (see [`metrics`]) |
//! | `GET /v1/rules` | every rule with its versions |
//! | `POST /v1/rules/{name}[?activate=true]` | upload a rule (body: the `.wasm` bytes): 201, or 200 if it has these bytes already |
//! | `GET /v1/rules/{name}` | one rule |
//! | `PUT /v1/rules/{name}/active` | activate a version: `{"version": n}` |
//! | `DELETE /v1/rules/{name}/versions/{version}` | delete an inactive version |
//! | `DELETE /v1/rules/{name}` | delete a rule with every version |
//! | `POST /v1/rules/{name}/invoke` | run the active version: `{"models": ["Account:alice", ...], "action" (default `run`), "mode", "input", "max_attempts"}`, optional `Idempotency-Key` header |
//! | `GET /v1/models` | every model schema |
//! | `PUT /v1/models/{type}` | define a schema (JSON body; TOML with a toml `Content-Type`) |
//! | `GET /v1/models/{type}` | one schema |
//! | `DELETE /v1/models/{type}` | delete a schema (the models' data stays) |
//! | `GET /v1/models/{type}/{key}` | a model's state |
//! | `PUT /v1/models/{type}/{key}/fields/{field}` | set one field (body: its JSON value) |
//! | `DELETE /v1/models/{type}/{key}` | delete a model's data |
//!
//! Writes (every method but `GET`/`HEAD`) need `Authorization: Bearer <token>` when a token is
//! configured; [`ServerConfig::check_bind`] refuses a non-loopback address without one.
//! Errors are `{"error": {"kind", "message", "retryable"}}` with 400 (bad input), 401 (token),
//! 404 (unknown rule, version, model type or route), 409 (conflict, lock timeout, active
//! version), 413 (body or rule too large), 422 (rule refused: an upload that is not a valid
//! rule, or an invocation the rule rejected or failed), 503 (store unreachable) and 500 (server
//! faults only). Every request runs in a `tracing` span, every invocation in its own.

mod auth;
mod error;
mod invoke;
pub mod metrics;
mod models;
mod rules;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::de::DeserializeOwned;
use serde_json::json;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::{Level, info, warn};

pub use self::error::ApiError;
use self::metrics::Metrics;
use crate::error::kind::ErrorKind;
use crate::registry::Registry;

/// Server settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The bearer token writes need (`None`: no authentication, loopback only).
    pub token: Option<String>,
    /// Whether reads need the token too (`/healthz` and `/metrics` never do).
    pub protect_reads: bool,
    /// The largest request body accepted, in bytes (default 8 MiB + 64 KiB: the engine's
    /// largest rule and some room). Larger bodies get a 413.
    pub body_limit: usize,
    /// How long a shutdown waits for in-flight requests before giving up on them (default 30 s).
    pub drain_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            token: None,
            protect_reads: false,
            body_limit: (8 << 20) + (64 << 10),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

impl ServerConfig {
    /// Checks that the server may listen on `addr`: a non-loopback address needs a token.
    ///
    /// # Errors
    /// A message saying why not.
    pub fn check_bind(&self, addr: SocketAddr) -> Result<(), String> {
        if self.token.as_deref().is_some_and(str::is_empty) {
            return Err("the token is empty".into());
        }
        if !addr.ip().is_loopback() && self.token.is_none() {
            return Err(format!(
                "refusing to listen on {addr} without a token: set --token or WASMTX_TOKEN, or bind to 127.0.0.1"
            ));
        }
        Ok(())
    }
}

/// What every handler shares.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    registry: Registry,
    metrics: Arc<Metrics>,
    config: Arc<ServerConfig>,
}

/// The API's router over `registry`, with authentication, body limit, JSON errors, metrics and
/// tracing.
pub fn router(registry: Registry, config: ServerConfig) -> Router {
    let state = AppState { registry, metrics: Arc::new(Metrics::default()), config: Arc::new(config) };
    let body_limit = state.config.body_limit;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/rules", get(rules::list))
        .route("/v1/rules/{name}", get(rules::show).post(rules::upload).delete(rules::delete_rule))
        .route("/v1/rules/{name}/active", put(rules::activate))
        .route("/v1/rules/{name}/versions/{version}", axum::routing::delete(rules::delete_version))
        .route("/v1/rules/{name}/invoke", post(invoke::invoke))
        .route("/v1/models", get(models::list))
        .route("/v1/models/{model_type}", get(models::show).put(models::define).delete(models::delete_schema))
        .route("/v1/models/{model_type}/{key}", get(models::read).delete(models::delete))
        .route("/v1/models/{model_type}/{key}/fields/{field}", put(models::set_field))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), auth::require_token))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), refuse_oversized))
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn_with_state(state.clone(), record_request))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    tracing::info_span!("request", method = %request.method(), path = %request.uri().path())
                })
                .on_response(DefaultOnResponse::new().level(Level::DEBUG)),
        )
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting connections
/// and lets in-flight requests finish, for at most `drain_timeout`.
///
/// # Errors
/// An I/O error of the listener.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain_timeout: Duration,
) -> std::io::Result<()> {
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        shutdown.await;
        info!("shutting down: no new connections, finishing in-flight requests");
        let _ = stopping_tx.send(());
    });
    let drained = async move {
        if stopping_rx.await.is_ok() {
            tokio::time::sleep(drain_timeout).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = server.into_future() => result,
        () = drained => {
            warn!(?drain_timeout, "in-flight requests still running after the drain timeout; stopping anyway");
            Ok(())
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// Parses a JSON request body.
fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

async fn healthz(State(state): State<AppState>) -> axum::Json<serde_json::Value> {
    axum::Json(json!({ "status": "ok", "epoch": state.registry.snapshot().epoch }))
}

async fn metrics(State(state): State<AppState>) -> Response {
    let text = state.metrics.render(state.registry.stats());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, ErrorKind::NoRoute, "no such route")
}

/// Turns the error answers axum and tower-http make themselves (405, 413, ...) into the API's
/// JSON errors.
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !status.is_client_error() && !status.is_server_error() || is_json {
        return response;
    }
    let kind = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ErrorKind::BodyTooLarge,
        StatusCode::METHOD_NOT_ALLOWED => ErrorKind::MethodNotAllowed,
        StatusCode::NOT_FOUND => ErrorKind::NoRoute,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorKind::UnsupportedMediaType,
        s if s.is_server_error() => ErrorKind::Internal,
        _ => ErrorKind::BadRequest,
    };
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is over the server's size limit".to_owned(),
        other => other.canonical_reason().unwrap_or("error").to_owned(),
    };
    ApiError::new(status, kind, message).into_response()
}

/// Answers 413 to a request whose declared length is over the limit. Up to twice the limit,
/// the body is read and dropped first: a client still sending it would otherwise see its
/// connection reset instead of the answer.
async fn refuse_oversized(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit = state.config.body_limit;
    let declared =
        request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let Some(declared) = declared.filter(|&n| n > u64::try_from(limit).unwrap_or(u64::MAX)) else {
        return next.run(request).await;
    };
    if declared <= u64::try_from(limit.saturating_mul(2)).unwrap_or(u64::MAX) {
        let mut stream = request.into_body().into_data_stream();
        while let Some(Ok(_)) = futures_util::StreamExt::next(&mut stream).await {}
    }
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::BodyTooLarge,
        "the request body is over the server's size limit",
    )
    .into_response()
}

/// Counts every request by route and status, and the requests in flight.
async fn record_request(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route =
        request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    state.metrics.in_flight(1);
    let response = next.run(request).await;
    state.metrics.in_flight(-1);
    state.metrics.record_request(&method, &route, response.status().as_u16(), started.elapsed());
    response
}
