//! The model routes: schemas (define, list, show, delete) and model state (read, set a field,
//! delete).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, header};
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::tokens::Caller;
use crate::model::ids::ModelId;
use crate::model::schema::ModelSchema;
use crate::model::value::FieldValue;
use crate::registry::{RegistryError, SchemaRecord};
use crate::views::model_json;

/// `GET /v1/models`: every schema.
pub(super) async fn list(State(state): State<AppState>) -> Result<Json<Vec<SchemaRecord>>, ApiError> {
    Ok(Json(state.registry.models().await?))
}

/// `GET /v1/models/{type}`: one schema.
pub(super) async fn show(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<SchemaRecord>, ApiError> {
    Ok(Json(state.registry.model(&name).await?))
}

/// `DELETE /v1/models/{type}`: deletes the schema (the models' data stays); answers with its
/// last record.
pub(super) async fn delete_schema(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<SchemaRecord>, ApiError> {
    Ok(Json(state.audited(&caller).delete_model(&name).await?))
}

/// `PUT /v1/models/{type}` with the schema as JSON (or TOML, with a `Content-Type` naming
/// toml); its `name` must be the path's.
pub(super) async fn define(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SchemaRecord>, ApiError> {
    let body = body.map_err(|e| ApiError::body(&e))?;
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("the schema is not UTF-8 text"))?;
    let is_toml = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("toml"));
    let schema = if is_toml { ModelSchema::from_toml(text) } else { ModelSchema::from_json(text) }
        .map_err(RegistryError::InvalidSchema)?;
    if schema.name() != name {
        return Err(ApiError::bad_request(format!(
            "the schema is named `{}` but the path names `{name}`",
            schema.name()
        )));
    }
    Ok(Json(state.audited(&caller).define_model(schema).await?))
}

/// `GET /v1/models/{type}/{key}`: the model's state (defaults if never written).
pub(super) async fn read(
    State(state): State<AppState>,
    Path((model_type, key)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let engine = state.registry.engine();
    let snapshot = engine.read_model(&model_type, &key).await.map_err(|e| ApiError::engine(&e))?;
    let schema = engine.model_type(&model_type).map_err(|e| ApiError::engine(&e))?;
    Ok(Json(model_json(&schema, &ModelId::new(model_type, key), &snapshot)))
}

/// `PUT /v1/models/{type}/{key}/fields/{field}` with the field's new value as JSON.
pub(super) async fn set_field(
    State(state): State<AppState>,
    Path((model_type, key, field)): Path<(String, String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let json: Value = super::parse_json(&body.map_err(|e| ApiError::body(&e))?)?;
    let engine = state.registry.engine();
    let schema = engine.model_type(&model_type).map_err(|e| ApiError::engine(&e))?;
    let def = schema.field(&field).ok_or_else(|| {
        ApiError::engine(&crate::Error::Access {
            model: Some(ModelId::new(model_type.clone(), key.clone())),
            error: crate::AccessError::UnknownField { field: field.clone() },
        })
    })?;
    let value = FieldValue::from_json(def.ty, &json)
        .map_err(|reason| ApiError::bad_request(format!("bad value for `{field}`: {reason}")))?;
    let version = engine.set_field(&model_type, &key, &field, value).await.map_err(|e| ApiError::engine(&e))?;
    Ok(Json(json!({ "model_type": model_type, "key": key, "version": version })))
}

/// `DELETE /v1/models/{type}/{key}`: the model reads as its defaults again.
pub(super) async fn delete(
    State(state): State<AppState>,
    Path((model_type, key)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let version = state.registry.engine().delete_model(&model_type, &key).await.map_err(|e| ApiError::engine(&e))?;
    Ok(Json(json!({ "model_type": model_type, "key": key, "version": version })))
}
