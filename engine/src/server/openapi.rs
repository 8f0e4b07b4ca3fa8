//! `GET /openapi.json`: the OpenAPI 3.1 document of the HTTP API, built in code from one table
//! of operations ([`OPERATIONS`]), with the error `kind` enum taken from [`ErrorKind::ALL`] so
//! it cannot drift from the kinds the server can answer with. The table must name exactly the
//! routes the router registers ([`super::routes`]); `tests/all/openapi.rs` holds both to that
//! and fuzzes a live server from the document.

use serde_json::{Map, Value, json};

use crate::error::kind::ErrorKind;
use crate::invocation::Mode;

/// The scope an operation needs when the server has tokens (`x-wasmtx-scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Open to anyone (`/healthz`, `/openapi.json`).
    Open,
    /// `read`; `/metrics` may be opened with `--metrics open`, `GET /v1` routes with public reads.
    Read,
    /// `invoke`.
    Invoke,
    /// `admin`.
    Admin,
}

/// What an operation's request body is.
#[derive(Debug, Clone, Copy)]
enum Body {
    /// None.
    Empty,
    /// The rule's `.wasm` bytes.
    Wasm,
    /// A model schema, JSON or TOML.
    Schema,
    /// JSON of the named component schema.
    Json(&'static str),
}

/// One operation of the API.
#[derive(Debug, Clone, Copy)]
struct Operation {
    method: &'static str,
    path: &'static str,
    id: &'static str,
    summary: &'static str,
    access: Access,
    body: Body,
    /// Its query parameters (name, schema type).
    query: &'static [(&'static str, &'static str)],
    /// Its success statuses with the component schema of each (`None`: not JSON).
    ok: &'static [(u16, Option<&'static str>)],
    /// The error statuses of its own (the common ones are added to every operation).
    errors: &'static [u16],
}

const fn op(method: &'static str, path: &'static str, id: &'static str, summary: &'static str) -> Operation {
    Operation { method, path, id, summary, access: Access::Read, body: Body::Empty, query: &[], ok: &[], errors: &[] }
}

/// Every operation, in the order of the module documentation's route table.
const OPERATIONS: &[Operation] = &[
    Operation {
        access: Access::Open,
        ok: &[(200, Some("Health"))],
        ..op("get", "/healthz", "healthz", "Liveness and the registry's epoch")
    },
    Operation { access: Access::Open, ok: &[(200, None)], ..op("get", "/openapi.json", "openapi", "This document") },
    Operation { ok: &[(200, None)], ..op("get", "/metrics", "metrics", "Prometheus text format") },
    Operation {
        ok: &[(200, Some("RuleList"))],
        errors: &[503],
        ..op("get", "/v1/rules", "listRules", "Every rule with its versions")
    },
    Operation {
        ok: &[(200, Some("RuleInfo"))],
        errors: &[404, 503],
        ..op("get", "/v1/rules/{name}", "showRule", "One rule")
    },
    Operation {
        access: Access::Admin,
        body: Body::Wasm,
        query: &[("activate", "boolean")],
        ok: &[(201, Some("Uploaded")), (200, Some("Uploaded"))],
        errors: &[409, 422, 503],
        ..op(
            "post",
            "/v1/rules/{name}",
            "uploadRule",
            "Upload a rule version (201, or 200 if it has these bytes already)",
        )
    },
    Operation {
        access: Access::Admin,
        ok: &[(200, Some("DeletedRule"))],
        errors: &[404, 409, 503],
        ..op("delete", "/v1/rules/{name}", "deleteRule", "Delete a rule with every version")
    },
    Operation {
        access: Access::Admin,
        body: Body::Json("Activate"),
        ok: &[(200, Some("RuleVersion"))],
        errors: &[404, 409, 503],
        ..op("put", "/v1/rules/{name}/active", "activateRule", "Activate a version")
    },
    Operation {
        access: Access::Admin,
        ok: &[(200, Some("RuleVersion"))],
        errors: &[404, 409, 503],
        ..op("delete", "/v1/rules/{name}/versions/{version}", "deleteVersion", "Delete an inactive version")
    },
    Operation {
        access: Access::Invoke,
        body: Body::Json("InvokeRequest"),
        ok: &[(200, Some("Invocation"))],
        errors: &[404, 409, 413, 422, 503],
        ..op("post", "/v1/rules/{name}/invoke", "invoke", "Run the rule's active version")
    },
    Operation {
        ok: &[(200, Some("SchemaList"))],
        errors: &[503],
        ..op("get", "/v1/models", "listModels", "Every model schema")
    },
    Operation {
        ok: &[(200, Some("SchemaRecord"))],
        errors: &[404, 503],
        ..op("get", "/v1/models/{model_type}", "showModel", "One schema")
    },
    Operation {
        access: Access::Admin,
        body: Body::Schema,
        ok: &[(200, Some("SchemaRecord"))],
        errors: &[409, 422, 503],
        ..op("put", "/v1/models/{model_type}", "defineModel", "Define a schema (its name must be the path's)")
    },
    Operation {
        access: Access::Admin,
        ok: &[(200, Some("SchemaRecord"))],
        errors: &[404, 409, 503],
        ..op("delete", "/v1/models/{model_type}", "deleteModel", "Delete a schema (the models' data stays)")
    },
    Operation {
        ok: &[(200, Some("ModelState"))],
        errors: &[404, 409, 503],
        ..op("get", "/v1/models/{model_type}/{key}", "readModel", "A model's state (its defaults if never written)")
    },
    Operation {
        access: Access::Admin,
        ok: &[(200, Some("ModelVersion"))],
        errors: &[404, 409, 503],
        ..op("delete", "/v1/models/{model_type}/{key}", "deleteModelData", "Delete a model's data")
    },
    Operation {
        access: Access::Admin,
        body: Body::Json("FieldValue"),
        ok: &[(200, Some("ModelVersion"))],
        errors: &[404, 409, 503],
        ..op("put", "/v1/models/{model_type}/{key}/fields/{field}", "setField", "Set one field")
    },
    Operation {
        access: Access::Admin,
        query: &[("limit", "integer")],
        ok: &[(200, Some("AuditList"))],
        errors: &[503],
        ..op("get", "/v1/audit", "listAudit", "The audit trail, newest first (default 100, at most 10,000)")
    },
];

/// The routes the document describes: (method in upper case, path template), as the router
/// spells them.
pub fn routes() -> Vec<(String, &'static str)> {
    OPERATIONS.iter().map(|o| (o.method.to_ascii_uppercase(), o.path)).collect()
}

/// The OpenAPI 3.1 document of the API.
pub fn document() -> Value {
    let mut paths = Map::new();
    for operation in OPERATIONS {
        let item = paths.entry(operation.path).or_insert_with(|| json!({}));
        item[operation.method] = operation_json(operation);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "wasmtx",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The HTTP API of `wasmtx serve`. Every error answer is `{\"error\": {\"kind\", \"message\", \"retryable\"}}` \
                (see the `Error` schema); 500 means a server fault and is never documented as an answer. A request head over the \
                server's header limit gets a bare 431 before routing. With tokens configured, every operation but the open ones \
                needs `Authorization: Bearer <token>` of the scope in its `x-wasmtx-scope`.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": schemas(),
        },
    })
}

fn operation_json(operation: &Operation) -> Value {
    let mut parameters: Vec<Value> = path_parameters(operation.path)
        .map(|name| {
            let schema =
                if name == "version" { json!({"type": "integer", "minimum": 0}) } else { json!({"type": "string"}) };
            json!({ "name": name, "in": "path", "required": true, "schema": schema })
        })
        .collect();
    parameters.extend(
        operation
            .query
            .iter()
            .map(|(name, ty)| json!({ "name": name, "in": "query", "required": false, "schema": {"type": ty} })),
    );
    if operation.id == "invoke" {
        parameters.push(json!({
            "name": "Idempotency-Key", "in": "header", "required": false,
            "description": "Runs the invocation at most once per key (visible ASCII, at most 256 bytes).",
            "schema": {"type": "string"},
        }));
    }
    let mut responses = Map::new();
    for (status, schema) in operation.ok {
        let content = match schema {
            Some(name) => json!({ "application/json": { "schema": reference(name) } }),
            None if operation.id == "metrics" => json!({ "text/plain": { "schema": {"type": "string"} } }),
            None => json!({ "application/json": { "schema": {"type": "object"} } }),
        };
        responses.insert(status.to_string(), json!({ "description": "Success", "content": content }));
    }
    for status in error_statuses(operation) {
        let mut response = json!({
            "description": error_description(status),
            "content": { "application/json": { "schema": reference("Error") } },
        });
        if status == 503 {
            response["headers"] = json!({ "Retry-After": { "description": "Seconds, when the server is saturated", "schema": {"type": "integer"} } });
        }
        if status == 401 {
            response["headers"] = json!({ "WWW-Authenticate": { "schema": {"type": "string"} } });
        }
        responses.insert(status.to_string(), response);
    }
    responses
        .insert("431".into(), json!({ "description": "The request head is over the server's header limit (no body)" }));
    let scope = match operation.access {
        Access::Open => "open",
        Access::Read => "read",
        Access::Invoke => "invoke",
        Access::Admin => "admin",
    };
    let mut json = json!({
        "operationId": operation.id,
        "summary": operation.summary,
        "parameters": parameters,
        "responses": responses,
        "x-wasmtx-scope": scope,
        "security": if operation.access == Access::Open { json!([]) } else { json!([{ "bearer": [] }]) },
    });
    if let Some(body) = request_body(operation.body) {
        json["requestBody"] = body;
    }
    json
}

/// The error statuses of `operation`: its own, and those any request can get (a body that
/// cannot be read or is too large or slow, a token refused, the server saturated).
fn error_statuses(operation: &Operation) -> Vec<u16> {
    let mut statuses = vec![400, 408, 413];
    if operation.access != Access::Open {
        statuses.extend([401, 403, 503]);
    } else if operation.path != "/healthz" {
        statuses.push(503);
    }
    statuses.extend(operation.errors);
    statuses.sort_unstable();
    statuses.dedup();
    statuses
}

fn error_description(status: u16) -> &'static str {
    match status {
        400 => "Bad input (bad_request, bad_body, invalid_key, ...)",
        401 => "No token, or one the server does not know",
        403 => "The token's scope is too weak",
        404 => "Unknown rule, version or model type",
        408 => "The body came too slowly",
        409 => "A conflict: lock timeout, an active version, a concurrent change",
        413 => "The body (or rule) is too large",
        422 => "Refused: not a valid rule, or an invocation the rule rejected or failed",
        503 => "The store is unreachable, or the server is saturated (with Retry-After)",
        _ => "Error",
    }
}

fn request_body(body: Body) -> Option<Value> {
    let content = match body {
        Body::Empty => return None,
        Body::Wasm => {
            json!({ "application/octet-stream": { "schema": {"type": "string", "contentMediaType": "application/wasm"} } })
        }
        Body::Schema => json!({
            "application/json": { "schema": reference("ModelSchema") },
            "application/toml": { "schema": {"type": "string"} },
        }),
        Body::Json(name) => json!({ "application/json": { "schema": reference(name) } }),
    };
    Some(json!({ "required": true, "content": content }))
}

/// The `{name}` parameters of a path template, in order.
fn path_parameters(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn schemas() -> Value {
    let kinds: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
    let modes: Vec<&str> = Mode::ALL.iter().map(|m| m.as_str()).collect();
    let int = json!({"type": "integer"});
    let string = json!({"type": "string"});
    json!({
        "Error": {
            "type": "object", "required": ["error"], "additionalProperties": false,
            "properties": { "error": {
                "type": "object", "required": ["kind", "message", "retryable"],
                "properties": {
                    "kind": { "type": "string", "enum": kinds },
                    "message": string,
                    "retryable": {"type": "boolean"},
                    "invocation_id": string,
                    "idempotency_key": string,
                },
            } },
        },
        "Health": { "type": "object", "required": ["status", "epoch"], "properties": { "status": {"const": "ok"}, "epoch": int } },
        "RuleVersion": {
            "type": "object",
            "required": ["version", "digest", "size", "wit_version", "from_core_module", "exports", "uploaded_at_ms"],
            "properties": {
                "version": int, "digest": string, "size": int, "wit_version": string,
                "from_core_module": {"type": "boolean"}, "exports": {"type": "array", "items": string}, "uploaded_at_ms": int,
            },
        },
        "RuleInfo": {
            "type": "object", "required": ["name", "active", "versions"],
            "properties": { "name": string, "active": int, "versions": {"type": "array", "items": reference("RuleVersion")} },
        },
        "RuleList": { "type": "array", "items": reference("RuleInfo") },
        "Uploaded": {
            "type": "object", "required": ["name", "version", "created", "active"],
            "properties": { "name": string, "version": reference("RuleVersion"), "created": {"type": "boolean"}, "active": {"type": "boolean"} },
        },
        "DeletedRule": {
            "type": "object", "required": ["name", "deleted"],
            "properties": { "name": string, "deleted": {"type": "array", "items": reference("RuleVersion")} },
        },
        "Activate": {
            "type": "object", "required": ["version"], "additionalProperties": false,
            "properties": { "version": {"type": "integer", "minimum": 0} },
        },
        "ModelSchema": {
            "type": "object", "required": ["name", "fields"],
            "properties": {
                "name": string,
                "fields": { "type": "object", "additionalProperties": {
                    "type": "object", "required": ["type"],
                    "properties": { "type": string, "default": {} },
                } },
                "placement": {"type": "object"},
            },
        },
        "SchemaRecord": {
            "type": "object", "required": ["revision", "defined_at_ms", "schema"],
            "properties": { "revision": int, "defined_at_ms": int, "schema": reference("ModelSchema") },
        },
        "SchemaList": { "type": "array", "items": reference("SchemaRecord") },
        "ModelState": {
            "type": "object", "required": ["model_type", "key", "version", "fields"],
            "properties": { "model_type": string, "key": string, "version": int, "fields": {"type": "object"} },
        },
        "ModelVersion": {
            "type": "object", "required": ["model_type", "key", "version"],
            "properties": { "model_type": string, "key": string, "version": int },
        },
        "FieldValue": { "description": "The field's new value, as JSON of the field's type" },
        "ModelRef": {
            "oneOf": [
                { "type": "string", "description": "`Type:key`" },
                { "type": "object", "required": ["model_type", "key"], "properties": { "model_type": string, "key": string } },
            ],
        },
        "InvokeRequest": {
            "type": "object", "additionalProperties": false,
            "properties": {
                "models": {"type": "array", "items": reference("ModelRef")},
                "action": {"type": "string", "default": "run"},
                "mode": {"enum": modes, "default": Mode::default().as_str()},
                "input": {"description": "The rule's input, any JSON (default null)"},
                "max_attempts": {"type": "integer", "minimum": 1},
            },
        },
        "Invocation": {
            "type": "object",
            "required": ["rule", "version", "digest", "invocation_id", "replayed", "output", "changes", "attempts", "timings_ms"],
            "properties": {
                "rule": string, "version": int, "digest": string, "invocation_id": string,
                "idempotency_key": {"type": ["string", "null"]}, "replayed": {"type": "boolean"}, "output": {},
                "changes": {"type": "array", "items": {"type": "object"}}, "fencing_tokens": {}, "versions": {},
                "attempts": int, "timings_ms": {"type": "object"},
            },
        },
        "AuditEntry": {
            "type": "object", "required": ["id", "at_ms", "actor", "action", "target"],
            "properties": {
                "id": string, "at_ms": int, "actor": string,
                "action": {"enum": ["upload", "activate", "rollback", "delete_version", "delete_rule", "define_schema", "delete_schema"]},
                "target": string, "version": int, "digest": string, "revision": int, "detail": string,
            },
        },
        "AuditList": { "type": "array", "items": reference("AuditEntry") },
    })
}
