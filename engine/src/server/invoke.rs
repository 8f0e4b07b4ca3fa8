//! `POST /v1/rules/{name}/invoke`: run a rule's active version on models.

use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;
use tracing::{Instrument, info_span};

use super::AppState;
use super::error::ApiError;
use crate::invocation::{DEFAULT_ACTION, Invocation, Mode};
use crate::views::{ModelRef, invocation_json};

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InvokeRequest {
    /// The models, in the order the rule sees them.
    #[serde(default)]
    models: Vec<ModelRef>,
    /// The action (lock name); default [`DEFAULT_ACTION`] (`run`).
    action: Option<String>,
    /// `lock` (default), `pipeline`, `optimistic` or `adaptive`.
    #[serde(default)]
    mode: Mode,
    /// The rule's input, any JSON (default `null`).
    #[serde(default)]
    input: Value,
    /// Total attempts for retryable failures (default: the engine's policy).
    max_attempts: Option<u32>,
}

/// The request header that carries the caller's idempotency key.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

pub(super) async fn invoke(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let request: InvokeRequest = super::parse_json(&body.map_err(|e| ApiError::body(&e))?)?;
    let idempotency_key = match headers.get(IDEMPOTENCY_KEY) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| ApiError::bad_request("the Idempotency-Key header must be visible ASCII"))?
                .to_owned(),
        ),
    };
    let engine = state.registry.engine();
    let known = |t: &str| engine.model_type(t).is_ok();
    let mut invocation = Invocation::new(request.action.as_deref().unwrap_or(DEFAULT_ACTION))
        .mode(request.mode)
        .input(request.input.to_string());
    invocation.idempotency_key = idempotency_key;
    for model in &request.models {
        invocation.models.push(model.resolve(known).map_err(ApiError::bad_request)?);
    }
    if let Some(max_attempts) = request.max_attempts {
        if max_attempts == 0 {
            return Err(ApiError::bad_request("max_attempts must be at least 1"));
        }
        invocation = invocation.retry(engine.config().retry.attempts(max_attempts));
    }
    let active = state.registry.resolve(&name).await?;
    let _slot = state.gates.invocation(&name)?;
    let span = info_span!(
        "invocation",
        rule = %name,
        version = active.version.version,
        action = %invocation.action,
        mode = %invocation.mode,
    );
    let started = Instant::now();
    let result = engine.invoke(&active.rule, &invocation).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    state.metrics.record_invocation(&name, invocation.mode, elapsed, result.as_ref().map_err(|e| &e.error));
    let _entered = span.enter();
    match result {
        Ok(outcome) => {
            tracing::info!(
                elapsed_ms = elapsed.as_secs_f64() * 1000.0,
                attempts = outcome.attempts,
                replayed = outcome.replayed,
                "invocation committed"
            );
            Ok(Json(invocation_json(&active, &outcome)))
        }
        Err(e) => {
            tracing::info!(error = %e, kind = e.kind(), invocation_id = e.invocation_id.as_deref(), "invocation failed");
            Err(ApiError::invocation(&e))
        }
    }
}
