//! The bad requests of [`super::bad_http_requests_get_their_status_and_kind_and_write_nothing`],
//! each with the status and kind it must get.

use anyhow::Result;
use reqwest::Method;

use super::{Auth, INVOKE, Request, request, transfer};
use crate::bad_input::fixtures::WASI_COMPONENT;

/// A model schema in the JSON form, with these fields.
fn schema_json(name: &str, fields: &str) -> String {
    format!(r#"{{"name": {name:?}, "fields": {fields}}}"#)
}

/// The bad requests, in groups: routes and methods, tokens, sizes, uploads, activation and
/// deletion, invocations, models, schemas. `bank_transfer` is the rule the server holds (its
/// bytes), `account` the `Account` schema (TOML), `rule_limit` and `body_limit` the server's.
pub(super) fn requests(
    bank_transfer: &[u8],
    account: &str,
    rule_limit: usize,
    body_limit: usize,
) -> Result<Vec<Request>> {
    let bank_transfer = bank_transfer.to_vec();
    let invoke = INVOKE;
    let field = "/v1/models/Account/alice/fields/balance";
    let mut rule_between_limits = b"\0asm\x01\0\0\0".to_vec();
    rule_between_limits.resize(rule_limit + 50_000, 0);
    let toml_account = account.to_owned();
    let long_type = format!("A{}", "x".repeat(256));
    let requests = vec![
        // Routes and methods.
        request("no such route", Method::GET, "/v1/nothing-here", "", 404, "no_route"),
        request("a method the route does not take", Method::PATCH, "/v1/rules", "", 405, "method_not_allowed"),
        request("POST to the schema list", Method::POST, "/v1/models", "{}", 405, "method_not_allowed"),
        // Tokens.
        request(
            "an upload without a token",
            Method::POST,
            "/v1/rules/probe",
            bank_transfer.clone(),
            401,
            "missing_token",
        )
        .auth(Auth::None),
        request("a field write without a token", Method::PUT, field, "1", 401, "missing_token").auth(Auth::None),
        request("a wrong token", Method::POST, "/v1/rules/probe", bank_transfer.clone(), 401, "invalid_token")
            .auth(Auth::Header("Bearer wrong")),
        request("another scheme", Method::DELETE, "/v1/rules/bank-transfer", "", 401, "invalid_token")
            .auth(Auth::Header("Basic dXNlcjpwdw==")),
        request("an empty bearer token", Method::DELETE, "/v1/models/Account", "", 401, "invalid_token")
            .auth(Auth::Header("Bearer ")),
        request("a read without a token", Method::GET, "/v1/models/Account/alice", "", 401, "missing_token")
            .auth(Auth::None),
        request(
            "an upload with a read token",
            Method::POST,
            "/v1/rules/probe",
            bank_transfer.clone(),
            403,
            "insufficient_scope",
        )
        .auth(Auth::Header("Bearer bad-input-reader")),
        request(
            "an invocation with a read token",
            Method::POST,
            "/v1/rules/bank-transfer/invoke",
            "{}",
            403,
            "insufficient_scope",
        )
        .auth(Auth::Header("Bearer bad-input-reader")),
        // Sizes.
        request(
            "a body over the body limit",
            Method::POST,
            "/v1/rules/huge",
            vec![0; body_limit + 1],
            413,
            "body_too_large",
        ),
        request(
            "a rule over the rule limit",
            Method::POST,
            "/v1/rules/big",
            rule_between_limits,
            413,
            "rule_too_large",
        ),
        // Uploads.
        request("an upload that is not wasm", Method::POST, "/v1/rules/text", "this is not wasm", 422, "not_wasm"),
        request(
            "an upload of another world",
            Method::POST,
            "/v1/rules/empty",
            wat::parse_str("(component)")?,
            422,
            "wrong_world",
        ),
        request(
            "an upload importing WASI",
            Method::POST,
            "/v1/rules/wasi",
            wat::parse_str(WASI_COMPONENT)?,
            422,
            "forbidden_import",
        ),
        request(
            "an upload under a bad name",
            Method::POST,
            "/v1/rules/bad%20name!",
            bank_transfer.clone(),
            400,
            "invalid_rule_name",
        ),
        request(
            "`?activate=` that is not a boolean",
            Method::POST,
            "/v1/rules/fresh?activate=maybe",
            bank_transfer.clone(),
            400,
            "bad_request",
        ),
        // Activation and deletion.
        request(
            "a version that is text",
            Method::PUT,
            "/v1/rules/bank-transfer/active",
            r#"{"version": "one"}"#,
            400,
            "bad_request",
        ),
        request(
            "an activation with an unknown field",
            Method::PUT,
            "/v1/rules/bank-transfer/active",
            r#"{"version": 1, "now": true}"#,
            400,
            "bad_request",
        ),
        request(
            "an activation that is not JSON",
            Method::PUT,
            "/v1/rules/bank-transfer/active",
            "{one",
            400,
            "bad_request",
        ),
        request(
            "activate a version never uploaded",
            Method::PUT,
            "/v1/rules/bank-transfer/active",
            r#"{"version": 9}"#,
            404,
            "unknown_version",
        ),
        request(
            "activate an unknown rule",
            Method::PUT,
            "/v1/rules/nope/active",
            r#"{"version": 1}"#,
            404,
            "unknown_rule",
        ),
        request(
            "a version in the path that is not a number",
            Method::DELETE,
            "/v1/rules/bank-transfer/versions/abc",
            "",
            400,
            "bad_request",
        ),
        request(
            "delete the active version",
            Method::DELETE,
            "/v1/rules/bank-transfer/versions/1",
            "",
            409,
            "version_active",
        ),
        request("delete an unknown rule", Method::DELETE, "/v1/rules/nope", "", 404, "unknown_rule"),
        request(
            "delete a version of an unknown rule",
            Method::DELETE,
            "/v1/rules/nope/versions/1",
            "",
            404,
            "unknown_rule",
        ),
        request("show an unknown rule", Method::GET, "/v1/rules/nope", "", 404, "unknown_rule"),
        // Invocations.
        request("invoke an unknown rule", Method::POST, "/v1/rules/nope/invoke", "{}", 404, "unknown_rule"),
        request("an invocation that is not JSON", Method::POST, invoke, "{not json", 400, "bad_request"),
        request("an empty invocation body", Method::POST, invoke, "", 400, "bad_request"),
        request(
            "an invocation with an unknown field",
            Method::POST,
            invoke,
            r#"{"models": [], "modle": "lock"}"#,
            400,
            "bad_request",
        ),
        request(
            "models that are not a list",
            Method::POST,
            invoke,
            r#"{"models": "Account:alice"}"#,
            400,
            "bad_request",
        ),
        request("a model without `:`", Method::POST, invoke, r#"{"models": ["Account"]}"#, 400, "bad_request"),
        request(
            "a model object without a key",
            Method::POST,
            invoke,
            r#"{"models": [{"model_type": "Account"}]}"#,
            400,
            "bad_request",
        ),
        request("an unknown mode", Method::POST, invoke, r#"{"mode": "fast"}"#, 400, "bad_request"),
        request("max_attempts of 0", Method::POST, invoke, r#"{"max_attempts": 0}"#, 400, "bad_request"),
        request("a negative max_attempts", Method::POST, invoke, r#"{"max_attempts": -1}"#, 400, "bad_request"),
        request(
            "an empty action",
            Method::POST,
            invoke,
            r#"{"models": ["Account:alice"], "action": ""}"#,
            400,
            "invalid_action",
        ),
        request(
            "an action with a space",
            Method::POST,
            invoke,
            r#"{"models": ["Account:alice"], "action": "a b"}"#,
            400,
            "invalid_action",
        ),
        request("an unknown model type", Method::POST, invoke, r#"{"models": ["Nope:x"]}"#, 404, "unknown_model_type"),
        request("a key with a brace", Method::POST, invoke, r#"{"models": ["Account:a{b"]}"#, 400, "invalid_key"),
        request("an empty key", Method::POST, invoke, r#"{"models": ["Account:"]}"#, 400, "invalid_key"),
        request(
            "the same model twice",
            Method::POST,
            invoke,
            r#"{"models": ["Account:alice", {"type": "Account", "key": "alice"}]}"#,
            400,
            "duplicate_model",
        ),
        request("an idempotency key with a space", Method::POST, invoke, transfer(1), 400, "invalid_idempotency_key")
            .header("idempotency-key", "has space"),
        request("an empty idempotency key", Method::POST, invoke, transfer(1), 400, "invalid_idempotency_key")
            .header("idempotency-key", ""),
        request("an idempotency key that is not ASCII", Method::POST, invoke, transfer(1), 400, "bad_request")
            .header("idempotency-key", "\u{e9}t\u{e9}".as_bytes()),
        request(
            "an idempotency key used for another input",
            Method::POST,
            invoke,
            transfer(20),
            422,
            "idempotency_key_reused",
        )
        .header("idempotency-key", "seed-key"),
        request("an input the rule cannot use", Method::POST, invoke, transfer(-5), 400, "invalid_input"),
        request("an input the rule rejects", Method::POST, invoke, transfer(1000), 422, "rejected"),
        // Models.
        request("read a model of an unknown type", Method::GET, "/v1/models/Nope/x", "", 404, "unknown_model_type"),
        request("read a model under a bad key", Method::GET, "/v1/models/Account/a%7Bb", "", 400, "invalid_key"),
        request(
            "read a model under a key with a newline",
            Method::GET,
            "/v1/models/Account/a%0Ab",
            "",
            400,
            "invalid_key",
        ),
        request("a field value of another type", Method::PUT, field, r#""seventy""#, 400, "bad_request"),
        request("a field value that is not JSON", Method::PUT, field, "{seventy", 400, "bad_request"),
        request("a float for an int field", Method::PUT, field, "1.5", 400, "bad_request"),
        request("null for an int field", Method::PUT, field, "null", 400, "bad_request"),
        request("an unknown field", Method::PUT, "/v1/models/Account/alice/fields/nope", "1", 400, "access"),
        request(
            "a field of an unknown type",
            Method::PUT,
            "/v1/models/Nope/alice/fields/balance",
            "1",
            404,
            "unknown_model_type",
        ),
        request(
            "a field under a bad key",
            Method::PUT,
            "/v1/models/Account/a%7Bb/fields/balance",
            "1",
            400,
            "invalid_key",
        ),
        request("delete a model under a bad key", Method::DELETE, "/v1/models/Account/a%7Db", "", 400, "invalid_key"),
        request(
            "delete a model of an unknown type",
            Method::DELETE,
            "/v1/models/Nope/x",
            "",
            404,
            "unknown_model_type",
        ),
        request("delete an unknown schema", Method::DELETE, "/v1/models/Nope", "", 404, "unknown_model_type"),
        request("show an unknown schema", Method::GET, "/v1/models/Nope", "", 404, "unknown_model_type"),
        // Schemas.
        request("a schema that is not JSON", Method::PUT, "/v1/models/A", "{not json", 400, "invalid_schema"),
        request(
            "a TOML schema without a toml Content-Type",
            Method::PUT,
            "/v1/models/Account",
            toml_account.clone(),
            400,
            "invalid_schema",
        ),
        request("a schema of another content type", Method::PUT, "/v1/models/A", "<schema/>", 400, "invalid_schema")
            .header("content-type", "application/xml"),
        request("a schema that is not UTF-8", Method::PUT, "/v1/models/A", b"\xff\xfe".to_vec(), 400, "bad_request"),
        request("a schema named unlike its path", Method::PUT, "/v1/models/Other", toml_account, 400, "bad_request")
            .header("content-type", "application/toml"),
        request(
            "a field defined twice (JSON)",
            Method::PUT,
            "/v1/models/A",
            schema_json("A", r#"{"n": {"type": "int"}, "n": {"type": "str"}}"#),
            400,
            "invalid_schema",
        ),
        request(
            "a field defined twice (TOML)",
            Method::PUT,
            "/v1/models/A",
            "name = \"A\"\n[fields]\nn = { type = \"int\" }\nn = { type = \"str\" }\n",
            400,
            "invalid_schema",
        )
        .header("content-type", "application/toml"),
        request(
            "an unknown field type",
            Method::PUT,
            "/v1/models/A",
            schema_json("A", r#"{"n": {"type": "integer"}}"#),
            400,
            "invalid_schema",
        ),
        request(
            "a nested collection type",
            Method::PUT,
            "/v1/models/A",
            schema_json("A", r#"{"n": {"type": "list<list<int>>"}}"#),
            400,
            "invalid_schema",
        ),
        request(
            "a default of another type",
            Method::PUT,
            "/v1/models/A",
            schema_json("A", r#"{"n": {"type": "int", "default": "zero"}}"#),
            400,
            "invalid_schema",
        ),
        request(
            "a list default that is not empty",
            Method::PUT,
            "/v1/models/A",
            schema_json("A", r#"{"n": {"type": "list<int>", "default": [1]}}"#),
            400,
            "invalid_schema",
        ),
        request(
            "a dict default that is not empty",
            Method::PUT,
            "/v1/models/A",
            schema_json("A", r#"{"n": {"type": "dict<int>", "default": {"a": 1}}}"#),
            400,
            "invalid_schema",
        ),
        request(
            "a NaN default (TOML)",
            Method::PUT,
            "/v1/models/A",
            "name = \"A\"\n[fields]\nx = { type = \"float\", default = nan }\n",
            400,
            "invalid_schema",
        )
        .header("content-type", "application/toml"),
        request(
            "an infinite default (TOML)",
            Method::PUT,
            "/v1/models/A",
            "name = \"A\"\n[fields]\nx = { type = \"float\", default = -inf }\n",
            400,
            "invalid_schema",
        )
        .header("content-type", "application/toml"),
        request(
            "an unknown key in a field",
            Method::PUT,
            "/v1/models/A",
            schema_json("A", r#"{"n": {"type": "int", "max": 3}}"#),
            400,
            "invalid_schema",
        ),
        request(
            "an unknown top-level key",
            Method::PUT,
            "/v1/models/A",
            r#"{"name": "A", "fields": {"n": {"type": "int"}}, "version": 2}"#,
            400,
            "invalid_schema",
        ),
        request("a schema without fields", Method::PUT, "/v1/models/A", schema_json("A", "{}"), 400, "invalid_schema"),
        request(
            "a type name with a space",
            Method::PUT,
            "/v1/models/A%20b",
            schema_json("A b", r#"{"n": {"type": "int"}}"#),
            400,
            "invalid_schema",
        ),
        request(
            "a type name starting with a digit",
            Method::PUT,
            "/v1/models/1A",
            schema_json("1A", r#"{"n": {"type": "int"}}"#),
            400,
            "invalid_schema",
        ),
        request(
            "a type name with braces",
            Method::PUT,
            "/v1/models/A%7Bb%7D",
            schema_json("A{b}", r#"{"n": {"type": "int"}}"#),
            400,
            "invalid_schema",
        ),
        request(
            "a type name over 256 bytes",
            Method::PUT,
            &format!("/v1/models/{long_type}"),
            schema_json(&long_type, r#"{"n": {"type": "int"}}"#),
            400,
            "invalid_schema",
        ),
        request(
            "a field name starting with `~`",
            Method::PUT,
            "/v1/models/A",
            schema_json("A", r#"{"~v": {"type": "int"}}"#),
            400,
            "invalid_schema",
        ),
        request(
            "a field name starting with a digit",
            Method::PUT,
            "/v1/models/A",
            schema_json("A", r#"{"1x": {"type": "int"}}"#),
            400,
            "invalid_schema",
        ),
        request(
            "a bad schema for a type in use",
            Method::PUT,
            "/v1/models/Account",
            schema_json("Account", r#"{"balance": {"type": "money"}}"#),
            400,
            "invalid_schema",
        ),
    ];
    Ok(requests)
}
