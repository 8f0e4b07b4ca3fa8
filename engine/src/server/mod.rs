//! The HTTP API of `wasmtx serve`: a small JSON API over a [`Registry`] and its engine.
//!
//! | route | what |
//! |---|---|
//! | `GET /healthz` | `{"status": "ok", "epoch": n}` |
//! | `GET /openapi.json` | the OpenAPI 3.1 document of every route (see [`openapi`]) |
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
//! | `GET /v1/audit[?limit=n]` | the audit trail, newest first (see [`crate::registry::audit`]) |
//!
//! **Authentication** ([`tokens`], `auth`): with tokens configured every `/v1` route needs
//! `Authorization: Bearer <token>` of a scope that covers it (`read`: every `GET` but the audit
//! trail; `invoke`: that and invocations; `admin`: everything), reads included unless
//! `ServerConfig::public_reads`; `/healthz` and `/openapi.json` (it holds no data) are open,
//! `/metrics` as [`MetricsAccess`] says. Without tokens everything is open and
//! [`ServerConfig::check_bind`] refuses a non-loopback address. **Limits** ([`Limits`]): header and body read timeouts, a header size cap, caps on
//! requests and per-rule invocations in flight (503 `server_busy` with `Retry-After` past them).
//! Errors are `{"error": {"kind", "message", "retryable"}}` with 400 (bad input), 401 (no or
//! unknown token), 403 (scope too weak), 404 (unknown rule, version, model type or route), 408
//! (body too slow), 409 (conflict, lock timeout, active version), 413 (body or rule too large),
//! 422 (rule refused: an upload that is not a valid rule, or an invocation the rule rejected or
//! failed), 503 (store unreachable, or saturated) and 500 (server faults only). Every request
//! runs in a `tracing` span (with the token's name), every invocation in its own.

mod audit;
mod auth;
mod config;
mod error;
mod invoke;
mod limits;
mod listen;
pub mod metrics;
mod models;
pub mod openapi;
mod rules;
pub mod tokens;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post, put};
use serde::de::DeserializeOwned;
use serde_json::json;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

pub use self::config::{MetricsAccess, ServerConfig};
pub use self::error::ApiError;
pub use self::limits::Limits;
pub use self::listen::serve_with_limits;
use self::metrics::Metrics;
pub use self::tokens::{Caller, NamedToken, Scope, TokenError, TokenSet, Tokens};
use crate::error::kind::ErrorKind;
use crate::registry::Registry;
use crate::registry::audit::{AuditLog, Audited, DEFAULT_RETENTION, FileAuditLog};

/// What every handler shares.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    registry: Registry,
    metrics: Arc<Metrics>,
    config: Arc<ServerConfig>,
    tokens: Tokens,
    gates: Arc<limits::Gates>,
    audit: Arc<dyn AuditLog>,
}

impl AppState {
    /// The registry, its changes recorded in the audit trail as made by `caller`.
    pub(crate) fn audited<'a>(&'a self, caller: &'a Caller) -> Audited<'a> {
        Audited::new(&self.registry, &*self.audit, &caller.name)
    }
}

/// The API's router over `registry`, with authentication, limits, JSON errors, metrics and
/// tracing, its tokens fixed and its audit trail in memory: see [`Api`] for the others.
pub fn router(registry: Registry, config: ServerConfig) -> Router {
    Api::new(registry, config).router()
}

/// The API, to build its [`Router`] with an audit log of the store's and tokens that can be
/// replaced while it serves.
#[derive(Debug)]
pub struct Api {
    state: AppState,
}

impl Api {
    /// The API over `registry` (tokens from `config`, audit trail in memory).
    pub fn new(registry: Registry, config: ServerConfig) -> Self {
        let tokens = Tokens::new(config.tokens.clone());
        let gates = Arc::new(limits::Gates::new(&config.limits));
        let state = AppState {
            registry,
            metrics: Arc::new(Metrics::default()),
            config: Arc::new(config),
            tokens,
            gates,
            audit: Arc::new(FileAuditLog::in_memory(DEFAULT_RETENTION)),
        };
        Self { state }
    }

    /// Records registry changes in `log`.
    #[must_use]
    pub fn audit_log(mut self, log: Arc<dyn AuditLog>) -> Self {
        self.state.audit = log;
        self
    }

    /// The handle to replace the tokens while the router serves.
    pub fn tokens(&self) -> Tokens {
        self.state.tokens.clone()
    }

    /// The router.
    pub fn router(self) -> Router {
        build(self.state)
    }
}

/// Every route: its method, path template and handler. [`build`] registers exactly these, and
/// [`openapi::document`] must describe exactly these ([`routes`] lists them for the test).
fn endpoints() -> Vec<(Method, &'static str, MethodRouter<AppState>)> {
    use axum::routing::delete;
    vec![
        (Method::GET, "/healthz", get(healthz)),
        (Method::GET, "/openapi.json", get(openapi_json)),
        (Method::GET, "/metrics", get(metrics)),
        (Method::GET, "/v1/rules", get(rules::list)),
        (Method::GET, "/v1/rules/{name}", get(rules::show)),
        (Method::POST, "/v1/rules/{name}", post(rules::upload)),
        (Method::DELETE, "/v1/rules/{name}", delete(rules::delete_rule)),
        (Method::PUT, "/v1/rules/{name}/active", put(rules::activate)),
        (Method::DELETE, "/v1/rules/{name}/versions/{version}", delete(rules::delete_version)),
        (Method::POST, "/v1/rules/{name}/invoke", post(invoke::invoke)),
        (Method::GET, "/v1/models", get(models::list)),
        (Method::GET, "/v1/models/{model_type}", get(models::show)),
        (Method::PUT, "/v1/models/{model_type}", put(models::define)),
        (Method::DELETE, "/v1/models/{model_type}", delete(models::delete_schema)),
        (Method::GET, "/v1/models/{model_type}/{key}", get(models::read)),
        (Method::DELETE, "/v1/models/{model_type}/{key}", delete(models::delete)),
        (Method::PUT, "/v1/models/{model_type}/{key}/fields/{field}", put(models::set_field)),
        (Method::GET, "/v1/audit", get(audit::list)),
    ]
}

/// Every route the router registers: (method, path template). `GET` routes answer `HEAD` too.
pub fn routes() -> Vec<(Method, &'static str)> {
    endpoints().into_iter().map(|(method, path, _)| (method, path)).collect()
}

fn build(state: AppState) -> Router {
    endpoints()
        .into_iter()
        .fold(Router::new(), |router, (_, path, handler)| router.route(path, handler))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), limits::read_body))
        .layer(middleware::from_fn_with_state(state.clone(), auth::require_token))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(state.clone(), refuse_oversized))
        .layer(middleware::from_fn_with_state(state.clone(), limits::cap_in_flight))
        .layer(middleware::from_fn(json_errors))
        .layer(CatchPanicLayer::custom(panic_answer))
        .layer(middleware::from_fn_with_state(state.clone(), record_request))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        path = %request.uri().path(),
                        token = tracing::field::Empty,
                    )
                })
                .on_response(DefaultOnResponse::new().level(Level::DEBUG)),
        )
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting connections
/// and lets in-flight requests finish, for at most `drain_timeout`; with the default
/// [`Limits`] on request heads (see [`serve_with_limits`]).
///
/// # Errors
/// An I/O error of the listener.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain_timeout: Duration,
) -> std::io::Result<()> {
    serve_with_limits(listener, router, shutdown, drain_timeout, &Limits::default()).await
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

async fn openapi_json() -> axum::Json<serde_json::Value> {
    axum::Json(openapi::document())
}

async fn metrics(State(state): State<AppState>) -> Response {
    let engine = state.registry.engine();
    let gauges = metrics::EngineGauges::new(state.registry.stats(), engine.cache_stats(), engine.adaptive_stats());
    let text = state.metrics.render(gauges);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

/// The answer to a request whose handler panicked (a bug): a typed 500 instead of a connection
/// closed without an answer, and the server goes on serving. The panic hook has printed the
/// message and site to stderr already.
fn panic_answer(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorKind::Internal,
        "the server failed while handling this request (a fault of the server; its log has the details); whether the request wrote anything is unknown",
    )
    .into_response()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A handler that panics gets the typed 500 of [`panic_answer`], not a connection closed
    /// without an answer, and the server goes on serving.
    #[tokio::test]
    async fn a_panicking_handler_gets_a_typed_500_and_the_server_serves_on() {
        async fn boom() -> &'static str {
            panic!("a deliberate panic of the test")
        }
        let router = Router::new()
            .route("/boom", get(boom))
            .route("/ok", get(|| async { "ok" }))
            .layer(CatchPanicLayer::custom(panic_answer));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let server = tokio::spawn(async move { axum::serve(listener, router).await });
        let client = reqwest::Client::new();
        let answer = client.get(format!("{url}/boom")).send().await.expect("an answer, not a dropped connection");
        assert_eq!(answer.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body: serde_json::Value = answer.json().await.expect("a JSON body");
        assert_eq!(body["error"]["kind"], "internal", "{body}");
        assert_eq!(body["error"]["retryable"], false, "{body}");
        let ok = client.get(format!("{url}/ok")).send().await.expect("still serving");
        assert_eq!(ok.text().await.expect("a body"), "ok");
        server.abort();
    }
}
