//! The rule routes: upload, list, show, activate, delete.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::tokens::Caller;
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
    let uploaded = state.audited(&caller).upload(&name, &bytes, query.activate).await?;
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
    Ok(Json(state.audited(&caller).activate(&name, body.version).await?))
}

/// `DELETE /v1/rules/{name}/versions/{version}`.
pub(super) async fn delete_version(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((name, version)): Path<(String, u64)>,
) -> Result<Json<RuleVersion>, ApiError> {
    Ok(Json(state.audited(&caller).delete_version(&name, version).await?))
}

/// `DELETE /v1/rules/{name}`: every version.
pub(super) async fn delete_rule(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let removed = state.audited(&caller).delete_rule(&name).await?;
    Ok(Json(json!({ "name": name, "deleted": removed })))
}
