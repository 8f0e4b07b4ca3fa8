//! The rule routes: upload, list, show, activate, delete.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::audit::record;
use super::error::ApiError;
use super::tokens::Caller;
use crate::registry::audit::{AuditAction, AuditEntry};
use crate::registry::{RuleInfo, RuleVersion, Uploaded};

/// `?activate=true` on an upload.
#[derive(Debug, Deserialize)]
pub(super) struct UploadQuery {
    #[serde(default)]
    activate: bool,
}

/// `GET /v1/rules`.
pub(super) async fn list(State(state): State<AppState>) -> Result<Json<Vec<RuleInfo>>, ApiError> {
    Ok(Json(state.registry.rules().await?))
}

/// `GET /v1/rules/{name}`.
pub(super) async fn show(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<RuleInfo>, ApiError> {
    Ok(Json(state.registry.rule(&name).await?))
}

/// `POST /v1/rules/{name}[?activate=true]` with the rule's bytes as the body: 201 with the
/// new version, or 200 with the existing one when the rule already has these bytes.
pub(super) async fn upload(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(query): Query<UploadQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Uploaded>), ApiError> {
    let bytes = body.map_err(|e| ApiError::body(&e))?;
    let before = if query.activate { active_of(&state, &name).await } else { None };
    let uploaded = state.registry.upload(&name, &bytes, query.activate).await?;
    let version = &uploaded.version;
    if uploaded.created {
        let entry = AuditEntry::new("", AuditAction::Upload, &name).version(version.version, &version.digest);
        record(&state, &caller, entry).await;
    }
    if query.activate && before != Some(version.version) {
        record(&state, &caller, activation(&name, version, before)).await;
    }
    let status = if uploaded.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(uploaded)))
}

/// `PUT /v1/rules/{name}/active` with `{"version": n}`.
pub(super) async fn activate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RuleVersion>, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Activate {
        version: u64,
    }
    let body: Activate = super::parse_json(&body.map_err(|e| ApiError::body(&e))?)?;
    let before = active_of(&state, &name).await;
    let active = state.registry.activate(&name, body.version).await?;
    record(&state, &caller, activation(&name, &active, before)).await;
    Ok(Json(active))
}

/// `DELETE /v1/rules/{name}/versions/{version}`.
pub(super) async fn delete_version(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((name, version)): Path<(String, u64)>,
) -> Result<Json<RuleVersion>, ApiError> {
    let deleted = state.registry.delete_version(&name, version).await?;
    let entry = AuditEntry::new("", AuditAction::DeleteVersion, &name).version(deleted.version, &deleted.digest);
    record(&state, &caller, entry).await;
    Ok(Json(deleted))
}

/// `DELETE /v1/rules/{name}`: every version.
pub(super) async fn delete_rule(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let removed = state.registry.delete_rule(&name).await?;
    let versions: Vec<String> = removed.iter().map(|v| format!("v{} sha256:{}", v.version, v.digest)).collect();
    let entry = AuditEntry::new("", AuditAction::DeleteRule, &name).detail(format!("deleted {}", versions.join(", ")));
    record(&state, &caller, entry).await;
    Ok(Json(json!({ "name": name, "deleted": removed })))
}

/// The rule's active version now, if it has one.
async fn active_of(state: &AppState, name: &str) -> Option<u64> {
    state.registry.rule(name).await.ok().map(|info| info.active).filter(|&v| v > 0)
}

/// The entry of making `active` the active version, `before` it was: a rollback when older.
fn activation(name: &str, active: &RuleVersion, before: Option<u64>) -> AuditEntry {
    let action = match before {
        Some(before) if active.version < before => AuditAction::Rollback,
        _ => AuditAction::Activate,
    };
    let entry = AuditEntry::new("", action, name).version(active.version, &active.digest);
    match before {
        Some(before) => entry.detail(format!("was v{before}")),
        None => entry,
    }
}
