//! `GET /v1/audit[?limit=n]`: the newest entries of the audit trail (default 100, at most
//! 10,000), newest first; and [`record`], which the registry routes call after each change.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::AppState;
use super::error::ApiError;
use super::tokens::Caller;
use crate::error::kind::ErrorKind;
use crate::registry::RegistryError;
use crate::registry::audit::{AuditEntry, AuditError};

/// `?limit=n`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    limit: Option<usize>,
}

/// `GET /v1/audit`.
pub(super) async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let limit = query.limit.unwrap_or(100).clamp(1, 10_000);
    Ok(Json(state.audit.list(limit).await.map_err(api_error)?))
}

/// Records `entry`, made by `caller`; a failure is logged, not answered: the change it
/// records was made.
pub(super) async fn record(state: &AppState, caller: &Caller, mut entry: AuditEntry) {
    entry.actor = caller.name.to_string();
    let (action, target) = (entry.action, entry.target.clone());
    match state.audit.record(entry).await {
        Ok(entry) => tracing::info!(token = %caller.name, %action, %target, id = %entry.id, "registry changed"),
        Err(e) => tracing::error!(token = %caller.name, %action, %target, error = %e, "cannot record an audit entry"),
    }
}

fn api_error(error: AuditError) -> ApiError {
    match error {
        AuditError::Store(e) => RegistryError::Store(e).into(),
        other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorKind::Internal, other.to_string()),
    }
}
