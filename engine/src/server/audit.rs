//! `GET /v1/audit[?limit=n]`: the newest entries of the audit trail (default 100, at most
//! 10,000), newest first. The registry routes record their changes through
//! [`AppState::audited`](super::AppState).

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::AppState;
use super::error::ApiError;
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

fn api_error(error: AuditError) -> ApiError {
    match error {
        AuditError::Store(e) => RegistryError::Store(e).into(),
        other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorKind::Internal, other.to_string()),
    }
}
