//! `GET /openapi.json`: the document is OpenAPI 3.1 shaped (every `$ref` resolves, every error
//! answer is the `Error` schema), it names exactly the routes the router registers, every
//! documented operation is routed and every other method of its path is a 405, and a seeded
//! fuzz of a live server from the document gets only the statuses and bodies it documents
//! (`WASMTX_FUZZ_SEED=<n>` replays a run).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use wasmtx::ErrorKind;

use crate::process::{Server, TempDir};
use crate::rules;

const ADMIN: &str = "openapi-admin-secret";
const READER: &str = "openapi-reader-secret";
const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

/// A server with an admin and a reader token, on the embedded store.
fn start(dir: &TempDir) -> Result<Server> {
    let tokens = format!("deployer:admin:{ADMIN},viewer:read:{READER}");
    Server::start(dir.path(), &[], &["--tokens", &tokens])
}

async fn fetch_document(http: &Client, server: &Server) -> Result<Value> {
    // Open like /healthz: no token.
    let response = http.get(server.at("/openapi.json")).send().await?;
    ensure!(response.status() == StatusCode::OK, "GET /openapi.json: {}", response.status());
    Ok(response.json().await?)
}

/// The value a local `$ref` (`#/a/b`) points at.
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

/// Every `$ref` under `value`.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r);
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// The documented operations: (method, path template, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, operation) in item.as_object().into_iter().flatten() {
            out.push((method.clone(), path.clone(), operation.clone()));
        }
    }
    out
}

/// Checks the document's shape; its problems, if any.
fn shape_problems(doc: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    if !doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1.")) {
        problems.push(format!("openapi is {}", doc["openapi"]));
    }
    let mut all = Vec::new();
    refs(doc, &mut all);
    problems.extend(all.iter().filter(|r| resolve(doc, r).is_none()).map(|r| format!("$ref {r} does not resolve")));
    let kinds: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
    if doc.pointer("/components/schemas/Error/properties/error/properties/kind/enum") != Some(&json!(kinds)) {
        problems.push("the Error schema's kind enum is not ErrorKind::ALL".into());
    }
    for (method, path, operation) in operations(doc) {
        let Some(responses) = operation["responses"].as_object().filter(|r| !r.is_empty()) else {
            problems.push(format!("{method} {path} has no responses"));
            continue;
        };
        for (status, response) in responses {
            let code: u16 = status.parse().unwrap_or(0);
            if code >= 400
                && code != 431
                && response["content"]["application/json"]["schema"]["$ref"] != "#/components/schemas/Error"
            {
                problems.push(format!("{method} {path}: its {status} is not the Error schema"));
            }
            if code == 500 {
                problems.push(format!("{method} {path} documents a 500"));
            }
        }
        if operation["x-wasmtx-scope"].as_str().is_none_or(|s| !["open", "read", "invoke", "admin"].contains(&s)) {
            problems.push(format!("{method} {path} has no x-wasmtx-scope"));
        }
    }
    problems
}

/// A concrete path for a template, every parameter `value`.
fn concrete(path: &str, value: &str) -> String {
    path.split('/').map(|s| if s.starts_with('{') { value } else { s }).collect::<Vec<_>>().join("/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_openapi_and_names_exactly_the_routes() -> Result<()> {
    let dir = TempDir::new("openapi-doc")?;
    let server = start(&dir)?;
    let http = Client::new();
    let doc = fetch_document(&http, &server).await?;
    let problems = shape_problems(&doc);
    ensure!(problems.is_empty(), "the document's problems:\n{}", problems.join("\n"));
    // The same document as the library's.
    ensure!(doc == wasmtx::server::openapi::document(), "the served document is not openapi::document()");
    // Exactly the router's routes.
    let documented: BTreeSet<(String, String)> =
        operations(&doc).into_iter().map(|(m, p, _)| (m.to_uppercase(), p)).collect();
    let routed: BTreeSet<(String, String)> =
        wasmtx::server::routes().into_iter().map(|(m, p)| (m.as_str().to_owned(), p.to_owned())).collect();
    let lib: BTreeSet<(String, String)> =
        wasmtx::server::openapi::routes().into_iter().map(|(m, p)| (m, p.to_owned())).collect();
    ensure!(lib == documented, "openapi::routes() is not the document's");
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    ensure!(undocumented.is_empty() && unrouted.is_empty(), "undocumented: {undocumented:?}; not routed: {unrouted:?}");
    // And the live router agrees: every documented operation is routed, every other method of
    // its path is a 405.
    let paths: BTreeSet<&str> = documented.iter().map(|(_, p)| p.as_str()).collect();
    for path in paths {
        let url = server.at(&concrete(path, "probe"));
        for method in METHODS {
            let response = http
                .request(Method::from_bytes(method.to_uppercase().as_bytes())?, &url)
                .bearer_auth(ADMIN)
                .send()
                .await?;
            let status = response.status();
            let kind = response.json::<Value>().await.ok().map(|v| v["error"]["kind"].clone()).unwrap_or_default();
            if documented.contains(&(method.to_uppercase(), path.to_owned())) {
                ensure!(
                    status != StatusCode::METHOD_NOT_ALLOWED && kind != "no_route",
                    "{method} {path} is documented but answers {status} {kind}"
                );
            } else {
                ensure!(
                    status == StatusCode::METHOD_NOT_ALLOWED && kind == "method_not_allowed",
                    "{method} {path} is not documented but answers {status} {kind}"
                );
            }
        }
    }
    Ok(())
}

#[test]
fn the_shape_check_finds_broken_documents() -> Result<()> {
    let good = wasmtx::server::openapi::document();
    ensure!(shape_problems(&good).is_empty(), "{:?}", shape_problems(&good));
    let mut dangling = good.clone();
    dangling["components"]["schemas"].as_object_mut().context("schemas")?.remove("RuleVersion");
    ensure!(!shape_problems(&dangling).is_empty(), "a dangling $ref passes");
    let mut no_error = good.clone();
    no_error["paths"]["/v1/rules"]["get"]["responses"]["404"] = json!({"description": "x"});
    ensure!(!shape_problems(&no_error).is_empty(), "an error answer without the Error schema passes");
    let mut kinds = good.clone();
    kinds["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["kind"]["enum"] = json!(["store"]);
    ensure!(!shape_problems(&kinds).is_empty(), "a short kind enum passes");
    let mut old = good;
    old["openapi"] = json!("3.0.3");
    ensure!(!shape_problems(&old).is_empty(), "OpenAPI 3.0 passes");
    Ok(())
}

/// Checks `value` against `schema` (the subset the document uses): its mismatch, if any.
fn mismatch(doc: &Value, schema: &Value, value: &Value, at: &str) -> Option<String> {
    if let Some(r) = schema["$ref"].as_str() {
        return mismatch(doc, resolve(doc, r)?, value, at);
    }
    if let Some(options) = schema["enum"].as_array().filter(|_| !options_contain(schema, value)) {
        return Some(format!("{at}: {value} is not one of {}", options.len()));
    }
    if let Some(c) = schema.get("const").filter(|c| *c != value) {
        return Some(format!("{at}: {value} is not {c}"));
    }
    if let Some(options) = schema["oneOf"].as_array() {
        return options
            .iter()
            .all(|o| mismatch(doc, o, value, at).is_some())
            .then(|| format!("{at}: {value} fits no oneOf"));
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return None,
    };
    let fits = |t: &str| match t {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => true,
    };
    if !types.iter().copied().any(fits) {
        return Some(format!("{at}: {value} is not {types:?}"));
    }
    if let Value::Object(map) = value {
        for name in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if !map.contains_key(name) {
                return Some(format!("{at}: no `{name}`"));
            }
        }
        for (name, field) in map {
            if let Some(s) = schema["properties"].get(name) {
                if let Some(m) = mismatch(doc, s, field, &format!("{at}.{name}")) {
                    return Some(m);
                }
            } else if schema["additionalProperties"] == false {
                return Some(format!("{at}: unexpected `{name}`"));
            }
        }
    }
    if let (Value::Array(items), Some(s)) = (value, schema.get("items")) {
        return items.iter().enumerate().find_map(|(i, item)| mismatch(doc, s, item, &format!("{at}[{i}]")));
    }
    None
}

fn options_contain(schema: &Value, value: &Value) -> bool {
    schema["enum"].as_array().is_some_and(|o| o.contains(value))
}

/// Strings the fuzz draws from: names the seeded server knows, and odd ones.
const STRINGS: &[&str] = &[
    "Account",
    "Account:alice",
    "Account:bob",
    "alice",
    "bank-transfer",
    "transfer",
    "run",
    "balance",
    "lock",
    "pipeline",
    "optimistic",
    "adaptive",
    "",
    " ",
    "{name}",
    "a b",
    "ü名🦀",
    "..",
    "%",
    "\0",
    "null",
    "-1",
    "1e400",
];

fn odd_string(rng: &mut StdRng) -> String {
    match rng.random_range(0..4) {
        0 => "x".repeat(rng.random_range(256..5000)),
        1 => {
            (0..rng.random_range(1..12)).map(|_| char::from_u32(rng.random_range(1..0x2_0000)).unwrap_or('?')).collect()
        }
        _ => STRINGS[rng.random_range(0..STRINGS.len())].to_owned(),
    }
}

/// A value of `schema` (or, with `wild`, now and then of any shape).
fn generate(doc: &Value, schema: &Value, rng: &mut StdRng, depth: u32) -> Value {
    if let Some(target) = schema["$ref"].as_str().and_then(|r| resolve(doc, r)) {
        return generate(doc, target, rng, depth);
    }
    if let Some(options) = schema["enum"].as_array() {
        return options[rng.random_range(0..options.len())].clone();
    }
    if let Some(c) = schema.get("const") {
        return c.clone();
    }
    if let Some(options) = schema["oneOf"].as_array() {
        return generate(doc, &options[rng.random_range(0..options.len())], rng, depth);
    }
    match schema["type"].as_str() {
        Some("object") => {
            let required: Vec<&str> =
                schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            let mut map = serde_json::Map::new();
            for (name, s) in schema["properties"].as_object().into_iter().flatten() {
                if required.contains(&name.as_str()) || rng.random_bool(0.6) {
                    map.insert(name.clone(), generate(doc, s, rng, depth + 1));
                }
            }
            Value::Object(map)
        }
        Some("array") => {
            let items = schema.get("items").cloned().unwrap_or(json!({}));
            Value::Array((0..rng.random_range(0..4)).map(|_| generate(doc, &items, rng, depth + 1)).collect())
        }
        Some("string") => json!(STRINGS[rng.random_range(0..STRINGS.len())]),
        Some("integer") => json!(rng.random_range(0..4)),
        Some("boolean") => json!(rng.random_bool(0.5)),
        _ => any_value(rng, depth),
    }
}

fn any_value(rng: &mut StdRng, depth: u32) -> Value {
    match rng.random_range(0..if depth > 2 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => json!(rng.random_bool(0.5)),
        2 => json!(rng.random_range(-5_i64..1000)),
        3 => [json!(1e300), json!(-1), json!(u64::MAX), json!(i64::MIN), json!(0.5)][rng.random_range(0..5)].clone(),
        4 => json!(STRINGS[rng.random_range(0..STRINGS.len())]),
        5 => Value::Array((0..rng.random_range(0..3)).map(|_| any_value(rng, depth + 1)).collect()),
        _ => json!({ "amount": any_value(rng, depth + 1), (STRINGS[rng.random_range(0..STRINGS.len())]): 1 }),
    }
}

/// `value` with one part broken: a field dropped or of the wrong type, a huge number.
fn mutate(value: &mut Value, rng: &mut StdRng) {
    match value {
        Value::Object(map) if !map.is_empty() && rng.random_bool(0.7) => {
            let key = map.keys().nth(rng.random_range(0..map.len())).cloned().unwrap_or_default();
            if rng.random_bool(0.3) {
                map.remove(&key);
            } else if let Some(v) = map.get_mut(&key) {
                mutate(v, rng);
            }
        }
        Value::Array(items) if !items.is_empty() && rng.random_bool(0.5) => {
            let i = rng.random_range(0..items.len());
            mutate(&mut items[i], rng);
        }
        _ => {
            *value = [
                json!(18_446_744_073_709_551_615_u64),
                json!(-1),
                json!(1e308),
                json!("1"),
                json!([]),
                json!({}),
                Value::Null,
            ][rng.random_range(0..7)]
            .clone()
        }
    }
}

/// Percent-encodes a path segment.
fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// What one generated request is.
#[derive(Debug)]
struct Generated {
    method: Method,
    path: String,
    body: Vec<u8>,
    content_type: Option<String>,
    token: Option<&'static str>,
    idempotency_key: Option<Vec<u8>>,
}

fn generate_request(doc: &Value, method: &str, template: &str, operation: &Value, rng: &mut StdRng) -> Generated {
    let path: Vec<String> = template
        .split('/')
        .map(|segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            None => segment.to_owned(),
            Some(name) => {
                let valid = match name {
                    "name" => "bank-transfer",
                    "model_type" => "Account",
                    "key" => "alice",
                    "field" => "balance",
                    _ => "1",
                };
                let value = if rng.random_bool(0.6) { valid.to_owned() } else { odd_string(rng) };
                // An empty or dot segment is a request to another path, not to this operation.
                if value.chars().all(|c| c == '.') { format!("{value}x") } else { encode(&value) }
            }
        })
        .collect();
    let mut path = path.join("/");
    let queries: Vec<&str> = operation["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["in"] == "query")
        .filter_map(|p| p["name"].as_str())
        .collect();
    if !queries.is_empty() && rng.random_bool(0.7) {
        let value = ["true", "false", "5", "-1", "99999999999999999999999", "maybe", ""][rng.random_range(0..7)];
        path.push_str(&format!("?{}={value}", queries[rng.random_range(0..queries.len())]));
    }
    let content = operation["requestBody"]["content"].as_object();
    let chosen = content.and_then(|c| c.iter().nth(rng.random_range(0..c.len().max(1))));
    let (mut content_type, mut body) = match chosen {
        None => (None, Vec::new()),
        Some((ty, media)) => {
            let body = if ty == "application/octet-stream" {
                (0..rng.random_range(0..64)).map(|_| rng.random()).collect()
            } else if ty == "application/toml" {
                b"name = \"Account\"\n[fields]\nbalance = { type = \"int\", default = 0 }\n".to_vec()
            } else {
                let mut value = generate(doc, &media["schema"], rng, 0);
                if rng.random_bool(0.5) {
                    mutate(&mut value, rng);
                }
                value.to_string().into_bytes()
            };
            (Some(ty.clone()), body)
        }
    };
    match rng.random_range(0..10) {
        0 => body.truncate(body.len() / 2),
        1 => body = (0..rng.random_range(0..200)).map(|_| rng.random()).collect(),
        2 => {
            content_type =
                Some(["text/plain", "application/json", "application/toml; x", "a/b"][rng.random_range(0..4)].into())
        }
        _ => {}
    }
    let token = [Some(ADMIN), Some(ADMIN), Some(ADMIN), Some(READER), Some("stranger"), None][rng.random_range(0..6)];
    let idempotency_key =
        (operation["operationId"] == "invoke" && rng.random_bool(0.5)).then(|| match rng.random_range(0..4) {
            0 => b"".to_vec(),
            1 => vec![b'k'; 300],
            2 => vec![0xC3, 0xBC, b' ', b'x'],
            _ => format!("key-{}", rng.random_range(0..8)).into_bytes(),
        });
    let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
    Generated { method, path, body, content_type, token, idempotency_key }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzing_from_the_document_gets_only_documented_answers() -> Result<()> {
    let seed: u64 = match std::env::var("WASMTX_FUZZ_SEED") {
        Ok(seed) => seed.parse().context("WASMTX_FUZZ_SEED")?,
        Err(_) => rand::random(),
    };
    fuzz(seed).await.with_context(|| format!("fuzz seed {seed} (replay with WASMTX_FUZZ_SEED={seed})"))
}

async fn fuzz(seed: u64) -> Result<()> {
    let dir = TempDir::new("openapi-fuzz")?;
    let server = start(&dir)?;
    let http = Client::builder().timeout(Duration::from_secs(10)).build()?;
    let doc = fetch_document(&http, &server).await?;
    let bank_transfer = std::fs::read(&rules()?.bank_transfer)?;
    let account = std::fs::read(wasmtx_examples::models_dir().join("account.toml"))?;
    let seed_server = async || -> Result<()> {
        for (path, body, ty) in [
            ("/v1/models/Account", account.clone(), "application/toml"),
            ("/v1/rules/bank-transfer", bank_transfer.clone(), "application/octet-stream"),
        ] {
            let method = if path.contains("models") { Method::PUT } else { Method::POST };
            let response = http
                .request(method, server.at(path))
                .bearer_auth(ADMIN)
                .header("content-type", ty)
                .body(body)
                .send()
                .await?;
            ensure!(response.status().is_success(), "seeding {path}: {}", response.status());
        }
        Ok(())
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let operations = operations(&doc);
    let started = Instant::now();
    let mut sent = 0;
    for round in 0..40 {
        // Deletions take the seeded data away: put it back now and then.
        if round % 8 == 0 {
            seed_server().await?;
        }
        for (method, template, operation) in &operations {
            let request = generate_request(&doc, method, template, operation, &mut rng);
            let mut builder = http.request(request.method.clone(), server.at(&request.path)).body(request.body.clone());
            if let Some(ty) = &request.content_type {
                builder = builder.header("content-type", ty);
            }
            if let Some(token) = request.token {
                builder = builder.bearer_auth(token);
            }
            if let Some(key) = &request.idempotency_key {
                builder = builder.header("idempotency-key", reqwest::header::HeaderValue::from_bytes(key)?);
            }
            let what =
                format!("{} {} (body {:?})", request.method, request.path, String::from_utf8_lossy(&request.body));
            let response = builder
                .send()
                .await
                .with_context(|| format!("{what}; the server's stderr ends with:\n{}", server.stderr_tail()))?;
            sent += 1;
            let status = response.status();
            let text = response.text().await?;
            check_answer(&doc, operation, status, &text).with_context(|| format!("{what}: {status} {text}"))?;
        }
        if started.elapsed() > Duration::from_secs(15) {
            break;
        }
    }
    ensure!(sent >= operations.len() * 8, "only {sent} requests in time");
    Ok(())
}

/// The answer is one the operation documents, its body of the documented schema.
fn check_answer(doc: &Value, operation: &Value, status: StatusCode, text: &str) -> Result<()> {
    let Some(response) = operation["responses"].get(status.as_str()) else {
        bail!("status {status} is not documented for {}", operation["operationId"]);
    };
    let Some(schema) = response["content"]["application/json"].get("schema") else {
        return Ok(());
    };
    let body: Value = serde_json::from_str(text).context("the body is not JSON")?;
    if let Some(m) = mismatch(doc, schema, &body, "body") {
        bail!("the body does not fit its schema: {m}");
    }
    Ok(())
}
