//! The bad-input table of `ERRORS.md` (its second part, `# Bad input`), proved: every bad input
//! the engine refuses, through the library, the registry, the HTTP API and the `wasmtx`
//! command, gets its typed error (kind, HTTP status, exit code), and a comparison of what the
//! store holds before and after shows that the refusal wrote nothing. The last test checks that
//! every test the table cites exists, so the table cannot rot.
//!
//! Two comparisons: [`What::Everything`] is all the backend holds (on Redis every key under the
//! test's prefix with its content, lock and fencing fields included; on the embedded store the
//! dumps of the model store, fencing counters included, and of the registry), for refusals that
//! must not reach the store at all. [`What::Data`] leaves out what taking and releasing a lock
//! writes by design (lock fields, fencing counters, models only ever locked), for inputs the
//! rule itself refuses once the engine has locked and loaded its models.

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use reqwest::header::HeaderValue;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wasmtx::backend::{Backend as Opened, BackendOptions};
use wasmtx::registry::{MemoryRegistryStore, Registry, RegistryConfig, RegistryError, RegistryStore};
use wasmtx::{
    AccessError, Engine, EngineBuilder, EngineConfig, Error, ErrorKind, FieldValue, Invocation, MemoryStore, Mode,
    ModelSchema, Origin, Rule, Scalar, Store,
};
use wasmtx_examples::workspace_root;

use crate::process::{Run, Server, TempDir, run_in};
use crate::{Backend, RedisFixture, engine_builder, load_rule, on_both_stores, probe_ops, redis_url, rules};

on_both_stores!(
    invocations_refused_before_they_start_touch_no_store,
    inputs_the_rule_refuses_and_output_it_cannot_return_write_nothing,
    direct_field_operations_on_bad_input_write_nothing,
    rule_writes_over_a_limit_are_refused_and_write_nothing,
    settings_that_cannot_work_are_refused_before_the_store_is_used,
    bad_uploads_leave_a_registry_in_use_as_it_was,
    registry_operations_on_what_does_not_exist_change_nothing,
    bad_http_requests_get_their_status_and_kind_and_write_nothing,
    bad_command_lines_get_their_exit_code_and_kind_and_write_nothing,
);

/// What a refusal must be: its kind, its HTTP status and the `wasmtx` command's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Expect {
    kind: &'static str,
    status: u16,
    exit: u8,
}

const fn expect(kind: &'static str, status: u16, exit: u8) -> Expect {
    Expect { kind, status, exit }
}

const UNKNOWN_MODEL_TYPE: Expect = expect("unknown_model_type", 404, 4);
const INVALID_KEY: Expect = expect("invalid_key", 400, 3);
const INVALID_ACTION: Expect = expect("invalid_action", 400, 3);
const DUPLICATE_MODEL: Expect = expect("duplicate_model", 400, 3);
const INVALID_INPUT: Expect = expect("invalid_input", 400, 3);
const INVALID_IDEMPOTENCY_KEY: Expect = expect("invalid_idempotency_key", 400, 3);
const REJECTED: Expect = expect("rejected", 422, 6);
const INVALID_OUTPUT: Expect = expect("invalid_output", 422, 6);
/// A model operation the rule propagated: a refusal of the rule.
const ACCESS_BY_RULE: Expect = expect("access", 422, 6);
/// A direct field operation's model error: the caller's bad input.
const ACCESS_DIRECT: Expect = expect("access", 400, 3);
const CANNOT_APPLY: Expect = expect("cannot_apply", 409, 5);

/// Checks an engine error against what the table says.
fn check_engine(label: &str, error: &Error, origin: Origin, want: Expect) -> Result<()> {
    let class = error.class(origin);
    let got = expect(error.kind(), class.http_status(), class.exit_code());
    ensure!(got == want, "{label}: expected {want:?}, got {got:?}: {error}");
    ensure!(!error.is_retryable(), "{label}: bad input is not retryable");
    Ok(())
}

/// Checks a registry error against what the table says.
fn check_registry(label: &str, error: &RegistryError, want: Expect) -> Result<()> {
    let class = error.class();
    let got = expect(error.kind(), class.http_status(), class.exit_code());
    ensure!(got == want, "{label}: expected {want:?}, got {got:?}: {error}");
    ensure!(!error.is_retryable(), "{label}: bad input is not retryable");
    Ok(())
}

/// How much of the backend a comparison takes in (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum What {
    /// Everything, protocol counters included.
    Everything,
    /// Everything but lock fields, fencing counters and models only ever locked.
    Data,
}

/// A JSON value with the keys of every object sorted (the dumps hold hash maps).
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(keys.into_iter().map(|k| (k.clone(), sorted(&map[k]))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// The embedded stores' dumps (a [`MemoryStore`]'s and a [`MemoryRegistryStore`]'s, as the
/// data directory's `state.json` holds them) as one comparable text. Record expiry times are
/// left out: a dump computes them from the clock.
fn embedded_text(mut models: Value, registry: &Value, what: What) -> String {
    if let Some(records) = models.get_mut("records").and_then(Value::as_array_mut) {
        for record in records.iter_mut().filter_map(Value::as_object_mut) {
            record.remove("expires_at_ms");
        }
    }
    if what == What::Data
        && let Some(list) = models.get_mut("models").and_then(Value::as_array_mut)
    {
        // A model only ever locked has version 0: every commit that changes it bumps it.
        list.retain(|m| m["version"] != 0);
        for model in list.iter_mut().filter_map(Value::as_object_mut) {
            model.remove("fence");
        }
    }
    format!("models: {}\nregistry: {}\n", sorted(&models), sorted(registry))
}

/// Bytes as text: as they are when they are UTF-8, else their length and a hash (the
/// registry keeps rule bytes in strings).
fn show_bytes(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| {
        use std::hash::{Hash as _, Hasher as _};
        let bytes = e.into_bytes();
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        bytes.hash(&mut hasher);
        format!("<{} bytes, hash {:016x}>", bytes.len(), hasher.finish())
    })
}

/// Every key under a Redis fixture's prefix with its type and content, sorted (hash fields
/// sorted too); with [`What::Data`], data hashes without their lock and fencing fields (and
/// left out when nothing else is in them).
async fn redis_text(redis: &RedisFixture, what: What) -> Result<String> {
    let mut conn = redis.client().await?;
    let mut keys: Vec<String> = redis::cmd("KEYS").arg(format!("{}:*", redis.prefix)).query_async(&mut conn).await?;
    keys.sort();
    let mut out = String::new();
    for key in keys {
        let ty: String = redis::cmd("TYPE").arg(&key).query_async(&mut conn).await?;
        let content = match ty.as_str() {
            "hash" => {
                let pairs: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL").arg(&key).query_async(&mut conn).await?;
                let mut pairs: Vec<(String, String)> = pairs.into_iter().map(|(f, v)| (f, show_bytes(v))).collect();
                if what == What::Data && !key.contains(":dict:") {
                    pairs.retain(|(field, _)| !field.starts_with("~l:") && field != "~f");
                    if pairs.is_empty() {
                        continue;
                    }
                }
                pairs.sort();
                format!("{pairs:?}")
            }
            "list" => {
                let items: Vec<Vec<u8>> = redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).query_async(&mut conn).await?;
                format!("{:?}", items.into_iter().map(show_bytes).collect::<Vec<_>>())
            }
            "string" => show_bytes(redis::cmd("GET").arg(&key).query_async(&mut conn).await?),
            other => other.to_owned(),
        };
        writeln!(out, "{key} {ty} {content}")?;
    }
    Ok(out)
}

/// The locks held under a Redis fixture's prefix: set `~l:<action>` fields of data hashes
/// whose deadline (by the server's clock) has not passed.
async fn redis_held_locks(redis: &RedisFixture) -> Result<Vec<String>> {
    let mut conn = redis.client().await?;
    let now_ms = crate::redis_now_ms(&mut conn).await?;
    let mut held = Vec::new();
    for line in redis_text(redis, What::Everything).await?.lines() {
        let mut parts = line.splitn(3, ' ');
        let (Some(key), Some("hash")) = (parts.next(), parts.next()) else { continue };
        if key.contains(":dict:") || key.contains("{registry}") {
            continue;
        }
        let pairs: Vec<(String, String)> = redis::cmd("HGETALL").arg(key).query_async(&mut conn).await?;
        for (field, value) in pairs {
            let deadline = value.split(':').nth(1).and_then(|d| d.parse::<u64>().ok());
            if field.starts_with("~l:") && deadline.is_some_and(|d| d > now_ms) {
                held.push(format!("{key} {field}"));
            }
        }
    }
    Ok(held)
}

/// The data directory's `state.json` (what `wasmtx` keeps the embedded store in) as one
/// comparable text.
fn state_file_text(data_dir: &Path, what: What) -> Result<String> {
    let path = data_dir.join("state.json");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let state: Value = serde_json::from_str(&text)?;
    Ok(embedded_text(state["models"].clone(), &state["registry"], what))
}

/// A backend as a test holds it: the embedded stores, or a Redis prefix with a plain client.
enum Held {
    Memory { store: MemoryStore, registry: MemoryRegistryStore },
    Redis(Box<RedisFixture>),
}

impl Held {
    /// Opens the backend as every host does (`wasmtx::backend`), Redis under a fresh prefix.
    async fn open(backend: Backend, name: &str) -> Result<(Self, Arc<dyn Store>, Arc<dyn RegistryStore>)> {
        match backend {
            Backend::Memory => match wasmtx::backend::open("memory", &BackendOptions::default()).await? {
                Opened::Memory { store, registry } => {
                    let held = Self::Memory { store: store.clone(), registry: registry.clone() };
                    Ok((held, Arc::new(store), Arc::new(registry)))
                }
                other => bail!("`memory` opened a {} backend", other.kind()),
            },
            Backend::Redis => {
                let fixture = RedisFixture::new(name).await?;
                let options = BackendOptions::with_prefix(fixture.prefix.clone());
                let opened = wasmtx::backend::open(&redis_url(), &options).await?;
                Ok((Self::Redis(Box::new(fixture)), opened.store(), opened.registry_store()))
            }
        }
    }

    /// What the backend holds, as one comparable text.
    async fn text(&self, what: What) -> Result<String> {
        match self {
            Self::Memory { store, registry } => {
                Ok(embedded_text(serde_json::to_value(store.dump())?, &serde_json::to_value(registry.dump())?, what))
            }
            Self::Redis(redis) => redis_text(redis, what).await,
        }
    }

    /// Locks held now (Redis: read from the data hashes; the embedded store's show in its
    /// fencing counters only, which [`What::Everything`] compares).
    async fn held_locks(&self) -> Result<Vec<String>> {
        match self {
            Self::Memory { .. } => Ok(Vec::new()),
            Self::Redis(redis) => redis_held_locks(redis).await,
        }
    }
}

/// An engine with the example models and `Counter`, and a registry, on one backend.
struct Env {
    engine: Engine,
    registry: Registry,
    held: Held,
}

impl Env {
    async fn new(backend: Backend, name: &str, configure: impl FnOnce(EngineBuilder) -> EngineBuilder) -> Result<Self> {
        let (held, store, registry_store) = Held::open(backend, name).await?;
        let engine = configure(engine_builder()?.shared_store(store)).build()?;
        let registry = Registry::open(engine.clone(), registry_store, RegistryConfig::default()).await?;
        Ok(Self { engine, registry, held })
    }

    async fn everything(&self) -> Result<String> {
        self.held.text(What::Everything).await
    }

    async fn data(&self) -> Result<String> {
        self.held.text(What::Data).await
    }

    /// The probe and the bank transfer, compiled on this engine.
    fn rules(&self) -> Result<(Rule, Rule)> {
        let built = rules()?;
        Ok((
            load_rule(&self.engine, "probe", &built.probe)?,
            load_rule(&self.engine, "bank-transfer", &built.bank_transfer)?,
        ))
    }

    /// Something in every part of the store, so that "nothing changed" compares real data:
    /// scalars, a list, two models, a committed invocation with its idempotency record.
    async fn seed(&self, probe: &Rule) -> Result<()> {
        self.engine.set_field("Counter", "k", "count", int(5)).await?;
        self.engine.list_append("Counter", "k", "items", vec![Scalar::Str("kept".into())]).await?;
        self.engine.set_field("Account", "a", "balance", int(10)).await?;
        self.engine.invoke(probe, &writes_both().idempotency_key("seed")).await?;
        Ok(())
    }
}

fn int(n: i64) -> FieldValue {
    FieldValue::Scalar(Scalar::Int(n))
}

/// Writes to `Counter:k` (model 0): what every refused invocation would have written.
fn writes() -> Vec<Value> {
    vec![
        json!({"op": "increment", "model": 0, "field": "count", "delta": 1}),
        json!({"op": "append", "model": 0, "field": "items", "item": "written"}),
    ]
}

/// An invocation of the probe on `Counter:k` and `Account:a` that writes.
fn writes_both() -> Invocation {
    Invocation::new("probe").model("Counter", "k").model("Account", "a").input(probe_ops(&writes()))
}

/// Bad action names, model keys, model lists, inputs and idempotency keys are refused before
/// the invocation starts, in every mode: it has no invocation id, and the store, fencing
/// counters and locks included, is exactly as it was.
async fn invocations_refused_before_they_start_touch_no_store(backend: Backend) -> Result<()> {
    let env = Env::new(backend, "bad-invocations", |b| b).await?;
    let (probe, _) = env.rules()?;
    env.seed(&probe).await?;
    let before = env.everything().await?;
    let long = "x".repeat(257);
    let key = |key: &str| Invocation::new("probe").model("Counter", key).input(probe_ops(&writes()));
    let action = |action: &str| {
        let mut invocation = writes_both();
        action.clone_into(&mut invocation.action);
        invocation
    };
    let input = |text: &str| writes_both().input(text);
    let idempotency_key = |key: &str| writes_both().idempotency_key(key);
    let cases: Vec<(&str, Invocation, Expect)> = vec![
        ("an unknown model type", writes_both().model("Nope", "k"), UNKNOWN_MODEL_TYPE),
        ("a model type spelled in another case", key("k").model("counter", "k"), UNKNOWN_MODEL_TYPE),
        ("an empty key", key(""), INVALID_KEY),
        ("a key over 256 bytes", key(&long), INVALID_KEY),
        ("a key with `{`", key("a{b"), INVALID_KEY),
        ("a key with `}`", key("a}b"), INVALID_KEY),
        ("a key with a newline", key("a\nb"), INVALID_KEY),
        ("a key with a NUL", key("a\0b"), INVALID_KEY),
        ("a key with DEL", key("a\u{7f}b"), INVALID_KEY),
        ("an empty action", action(""), INVALID_ACTION),
        ("an action starting with a digit", action("1abc"), INVALID_ACTION),
        ("an action with a space", action("a b"), INVALID_ACTION),
        ("an action with `/`", action("a/b"), INVALID_ACTION),
        ("an action with braces", action("a{b}"), INVALID_ACTION),
        ("an action with a non-ASCII letter", action("é"), INVALID_ACTION),
        ("an action starting with `~`", action("~l"), INVALID_ACTION),
        ("an action over 256 bytes", action(&long), INVALID_ACTION),
        ("the same model twice", writes_both().model("Counter", "k"), DUPLICATE_MODEL),
        ("input that is not JSON", input("{not json"), INVALID_INPUT),
        ("an empty input", input(""), INVALID_INPUT),
        ("input with text after the JSON", input("{} x"), INVALID_INPUT),
        ("unfinished JSON input", input("[1, 2"), INVALID_INPUT),
        ("NaN as input", input("NaN"), INVALID_INPUT),
        ("an empty idempotency key", idempotency_key(""), INVALID_IDEMPOTENCY_KEY),
        ("an idempotency key over 256 bytes", idempotency_key(&long), INVALID_IDEMPOTENCY_KEY),
        ("an idempotency key with a space", idempotency_key("a b"), INVALID_IDEMPOTENCY_KEY),
        ("an idempotency key with a tab", idempotency_key("a\tb"), INVALID_IDEMPOTENCY_KEY),
        ("an idempotency key with a newline", idempotency_key("a\nb"), INVALID_IDEMPOTENCY_KEY),
        ("an idempotency key with a control character", idempotency_key("a\u{1}b"), INVALID_IDEMPOTENCY_KEY),
        ("an idempotency key with a no-break space", idempotency_key("a\u{a0}b"), INVALID_IDEMPOTENCY_KEY),
    ];
    for mode in Mode::ALL {
        for (label, invocation, want) in &cases {
            let label = format!("{label} ({mode})");
            let error = match env.engine.invoke(&probe, &invocation.clone().mode(mode)).await {
                Ok(outcome) => bail!("{label}: accepted: {outcome:?}"),
                Err(e) => e,
            };
            check_engine(&label, &error, Origin::Invocation, *want)?;
            ensure!(
                error.invocation_id.is_none() && error.idempotency_key.is_none(),
                "{label}: refused before it started, yet it names an invocation"
            );
            ensure!(env.everything().await? == before, "{label}: the store changed");
        }
    }
    // The same invocation without the mistakes is accepted: the cases were refused for them.
    env.engine.invoke(&probe, &writes_both()).await?;
    ensure!(env.everything().await? != before, "a good invocation writes");
    Ok(())
}

/// A rule that increments `balance` of its first model, then returns `not json`: hand-lowered
/// to the canonical ABI (as `engine/src/runtime/tests` does), with the WIT metadata embedded.
const HAND_RULE: &str = r#"(module
  (import "wasmtx:rule/models@0.1.0" "open" (func $open (param i32 i32)))
  (import "wasmtx:rule/models@0.1.0" "[method]model.increment" (func $increment (param i32 i32 i32 i64 i32)))
  (import "wasmtx:rule/models@0.1.0" "[resource-drop]model" (func $drop (param i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 16) "balance")
  (data (i32.const 32) "{\"ok\":true}")
  (data (i32.const 64) "not json")
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $ptr i32)
    (local.set $ptr (i32.and (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
                             (i32.sub (i32.const 0) (local.get 2))))
    (global.set $heap (i32.add (local.get $ptr) (local.get 3)))
    (block $fits
      (br_if $fits (i32.le_u (global.get $heap) (i32.shl (memory.size) (i32.const 16))))
      (drop (memory.grow (i32.add (i32.shr_u (i32.sub (global.get $heap) (i32.shl (memory.size) (i32.const 16)))
                                             (i32.const 16))
                                  (i32.const 1)))))
    (local.get $ptr))
  (func (export "run") (param i32 i32 i64 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
    (call $open (i32.const 0) (i32.const 512))
    (if (i32.load8_u (i32.const 512)) (then unreachable))
    (call $increment (i32.load (i32.const 520)) (i32.const 16) (i32.const 7) (i64.const 5) (i32.const 576))
    (if (i32.load8_u (i32.const 576)) (then unreachable))
    (call $drop (i32.load (i32.const 520)))
    (i32.store8 (i32.const 256) (i32.const 0))
    (i32.store (i32.const 264) (i32.const OUTPUT))
    (i32.store (i32.const 268) (i32.const OUTPUT_LEN))
    (i32.const 256))
)"#;

/// A core module of the `rule` world from [`HAND_RULE`]: returning `not json`, or with
/// `json` the valid `{"ok":true}`; `extra_import` goes after the contract's imports.
fn hand_rule(json: bool, extra_import: &str) -> Result<Vec<u8>> {
    let (output, len) = if json { ("32", "11") } else { ("64", "8") };
    let wat = HAND_RULE
        .replace("(i32.const OUTPUT)", &format!("(i32.const {output})"))
        .replace("(i32.const OUTPUT_LEN)", &format!("(i32.const {len})"))
        .replacen("  (memory (export", &format!("{extra_import}\n  (memory (export"), 1);
    with_rule_metadata(wat::parse_str(wat)?)
}

/// Embeds the `wasmtx:rule` world's metadata, as wit-bindgen does for `wasm32-unknown-unknown`.
fn with_rule_metadata(mut module: Vec<u8>) -> Result<Vec<u8>> {
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve.push_path(workspace_root().join("wit"))?;
    let world = resolve.select_world(&[package], Some("rule"))?;
    wit_component::embed_component_metadata(&mut module, &resolve, world, wit_component::StringEncoding::UTF8, false)?;
    Ok(module)
}

/// Inputs the rule refuses (it cannot use them, or rejects them) and an output that is not
/// JSON: the engine locked and loaded the models, the rule ran and wrote, and nothing of it is
/// stored; the locks are released.
async fn inputs_the_rule_refuses_and_output_it_cannot_return_write_nothing(backend: Backend) -> Result<()> {
    let env = Env::new(backend, "rule-refusals", |b| b).await?;
    let (probe, bank_transfer) = env.rules()?;
    env.seed(&probe).await?;
    let not_json = env.engine.compile_rule("not-json", &hand_rule(false, "")?)?;
    let before = env.data().await?;
    let script = |text: &str| writes_both().input(text);
    let transfer = |text: &str| Invocation::new("transfer").model("Account", "a").model("Account", "b").input(text);
    let mut invalid_after_writes = writes();
    invalid_after_writes.push(json!({"op": "invalid_input", "message": "cannot use it"}));
    let cases: Vec<(&str, &Rule, Invocation, Expect)> = vec![
        ("a script whose ops are not a list", &probe, script(r#"{"ops": 7}"#), INVALID_INPUT),
        ("a script without ops", &probe, script("{}"), INVALID_INPUT),
        ("null for a rule that needs an object", &probe, script("null"), INVALID_INPUT),
        (
            "an input the rule calls invalid after it wrote",
            &probe,
            script(&probe_ops(&invalid_after_writes)),
            INVALID_INPUT,
        ),
        ("a negative amount", &bank_transfer, transfer(r#"{"amount": -5}"#), INVALID_INPUT),
        ("an amount that is text", &bank_transfer, transfer(r#"{"amount": "ten"}"#), INVALID_INPUT),
        ("an amount that is not an integer", &bank_transfer, transfer(r#"{"amount": 1.5}"#), INVALID_INPUT),
        ("an amount over the balance", &bank_transfer, transfer(r#"{"amount": 1000}"#), REJECTED),
        (
            "output that is not JSON, after a write",
            &not_json,
            Invocation::new("deposit").model("Account", "a"),
            INVALID_OUTPUT,
        ),
    ];
    for mode in Mode::ALL {
        for (label, rule, invocation, want) in &cases {
            let label = format!("{label} ({mode})");
            let error = match env.engine.invoke(rule, &invocation.clone().mode(mode)).await {
                Ok(outcome) => bail!("{label}: accepted: {outcome:?}"),
                Err(e) => e,
            };
            check_engine(&label, &error, Origin::Invocation, *want)?;
            ensure!(env.data().await? == before, "{label}: something was written");
            ensure!(env.held.held_locks().await?.is_empty(), "{label}: a lock is still held");
        }
    }
    // The rule that returns JSON instead writes: the output alone was the reason.
    let json_rule = env.engine.compile_rule("json", &hand_rule(true, "")?)?;
    env.engine.invoke(&json_rule, &Invocation::new("deposit").model("Account", "a")).await?;
    ensure!(env.data().await? != before, "the same rule with JSON output writes");
    Ok(())
}

/// Direct field operations (no rule) check the schema and the key before the store sees
/// anything; an increment the stored value cannot take is refused by the store, whole.
async fn direct_field_operations_on_bad_input_write_nothing(backend: Backend) -> Result<()> {
    let env = Env::new(backend, "bad-direct", |b| b).await?;
    let (probe, _) = env.rules()?;
    env.seed(&probe).await?;
    let before = env.everything().await?;
    let e = &env.engine;
    let text = |s: &str| Scalar::Str(s.into());
    let float = |f: f64| FieldValue::Scalar(Scalar::Float(f));
    let results: Vec<(&str, wasmtx::Result<()>, Expect)> = vec![
        ("set: an unknown field", e.set_field("Counter", "k", "nope", int(1)).await.map(drop), ACCESS_DIRECT),
        (
            "set: a value of another type",
            e.set_field("Counter", "k", "count", FieldValue::Scalar(text("x"))).await.map(drop),
            ACCESS_DIRECT,
        ),
        (
            "set: a list for a scalar",
            e.set_field("Counter", "k", "count", FieldValue::List(vec![])).await.map(drop),
            ACCESS_DIRECT,
        ),
        ("set: NaN", e.set_field("Counter", "k", "ratio", float(f64::NAN)).await.map(drop), ACCESS_DIRECT),
        ("set: infinity", e.set_field("Counter", "k", "ratio", float(f64::INFINITY)).await.map(drop), ACCESS_DIRECT),
        (
            "set: a list item of another type",
            e.set_field("Counter", "k", "items", FieldValue::List(vec![Scalar::Int(1)])).await.map(drop),
            ACCESS_DIRECT,
        ),
        (
            "set: a dict value of another type",
            e.set_field("Counter", "k", "tags", FieldValue::Dict([("a".to_owned(), text("x"))].into())).await.map(drop),
            ACCESS_DIRECT,
        ),
        (
            "append: an item of another type",
            e.list_append("Counter", "k", "items", vec![Scalar::Int(1)]).await.map(drop),
            ACCESS_DIRECT,
        ),
        (
            "append: to a field that is not a list",
            e.list_append("Counter", "k", "count", vec![text("x")]).await.map(drop),
            ACCESS_DIRECT,
        ),
        (
            "dict set: a value of another type",
            e.dict_set("Counter", "k", "tags", vec![("a".into(), text("x"))]).await.map(drop),
            ACCESS_DIRECT,
        ),
        (
            "dict set: on a field that is not a dict",
            e.dict_set("Counter", "k", "label", vec![("a".into(), Scalar::Int(1))]).await.map(drop),
            ACCESS_DIRECT,
        ),
        (
            "increment: a field that is not an int",
            e.increment("Counter", "k", "label", 1).await.map(drop),
            ACCESS_DIRECT,
        ),
        ("increment: an unknown field", e.increment("Counter", "k", "nope", 1).await.map(drop), ACCESS_DIRECT),
        ("increment: past i64::MAX", e.increment("Counter", "k", "count", i64::MAX).await.map(drop), CANNOT_APPLY),
        ("set: an invalid key", e.set_field("Counter", "a{b", "count", int(1)).await.map(drop), INVALID_KEY),
        ("set: an unknown model type", e.set_field("Nope", "k", "count", int(1)).await.map(drop), UNKNOWN_MODEL_TYPE),
        ("read: an empty key", e.read_model("Counter", "").await.map(drop), INVALID_KEY),
        ("read: an unknown model type", e.read_model("Nope", "k").await.map(drop), UNKNOWN_MODEL_TYPE),
        ("delete: an invalid key", e.delete_model("Counter", "a}b").await.map(drop), INVALID_KEY),
        ("delete: an unknown model type", e.delete_model("Nope", "k").await.map(drop), UNKNOWN_MODEL_TYPE),
    ];
    for (label, result, want) in &results {
        match result {
            Ok(()) => bail!("{label}: accepted"),
            Err(error) => check_engine(label, error, Origin::Direct, *want)?,
        }
    }
    ensure!(env.everything().await? == before, "a refused direct operation changed the store");
    e.increment("Counter", "k", "count", 1).await?;
    ensure!(env.everything().await? != before, "a good increment writes");
    Ok(())
}

/// A rule's writes over the list, dict and value-size limits, and an increment that would
/// overflow, fail the run with a typed access error: nothing of the run is stored.
async fn rule_writes_over_a_limit_are_refused_and_write_nothing(backend: Backend) -> Result<()> {
    let env = Env::new(backend, "limits", |b| {
        let mut config = EngineConfig::default();
        config.runtime.limits.max_list_len = 3;
        config.runtime.limits.max_dict_len = 2;
        config.runtime.limits.max_value_bytes = 64;
        b.config(config)
    })
    .await?;
    let (probe, _) = env.rules()?;
    env.seed(&probe).await?; // `items` holds 2 items now
    let before = env.data().await?;
    let cases = [
        ("a list over max_list_len", json!({"op": "list_extend", "field": "items", "items": ["a", "b"]})),
        (
            "a dict over max_dict_len",
            json!({"op": "dict_update", "field": "tags", "entries": {"a": 1, "b": 2, "c": 3}}),
        ),
        ("a value over max_value_bytes", json!({"op": "set", "field": "label", "value": "x".repeat(65)})),
        ("an increment past i64::MAX", json!({"op": "increment", "field": "count", "delta": i64::MAX})),
    ];
    for mode in Mode::ALL {
        for (label, op) in &cases {
            let label = format!("{label} ({mode})");
            let mut ops = writes();
            ops.push(op.clone());
            let error = match env.engine.invoke(&probe, &writes_both().input(probe_ops(&ops)).mode(mode)).await {
                Ok(outcome) => bail!("{label}: accepted: {outcome:?}"),
                Err(e) => e,
            };
            check_engine(&label, &error, Origin::Invocation, ACCESS_BY_RULE)?;
            ensure!(
                matches!(&*error, Error::Access { error: AccessError::LimitExceeded { .. }, .. }),
                "{label}: {error:?}"
            );
            ensure!(env.data().await? == before, "{label}: something was written");
        }
    }
    Ok(())
}

/// Settings that cannot work are refused when the engine is built, before it uses the store,
/// naming the setting.
async fn settings_that_cannot_work_are_refused_before_the_store_is_used(backend: Backend) -> Result<()> {
    let (held, store, _) = Held::open(backend, "bad-settings").await?;
    let seeded = engine_builder()?.shared_store(store.clone()).build()?;
    seeded.set_field("Counter", "k", "count", int(5)).await?;
    let before = held.text(What::Everything).await?;
    let with = |tweak: fn(&mut EngineConfig)| {
        let mut config = EngineConfig::default();
        tweak(&mut config);
        config
    };
    let cases: Vec<(&str, EngineBuilder, &str)> = vec![
        ("a lease no longer than the rule deadline", engine_builder()?.lease(Duration::from_millis(100)), "lease"),
        ("a zero acquire timeout", engine_builder()?.acquire_timeout(Duration::ZERO), "acquire timeout"),
        ("a group size of 0", engine_builder()?.max_group(0), "max_group"),
        ("a group size over 10 000", engine_builder()?.max_group(10_001), "max_group"),
        (
            "an idempotency retention under 1 s",
            engine_builder()?.idempotency_retention(Duration::from_millis(999)),
            "retention",
        ),
        ("a zero rule deadline", engine_builder()?.deadline(Duration::ZERO), "deadline"),
        (
            "a rule deadline over an hour",
            engine_builder()?.deadline(Duration::from_secs(7200)).lease(Duration::from_secs(10_800)),
            "deadline",
        ),
        ("a memory cap under one page", engine_builder()?.memory_limit(1000), "memory_limit"),
        ("a memory cap over 4 GiB", engine_builder()?.memory_limit(5 << 30), "memory_limit"),
        ("a rule size limit of 0", engine_builder()?.max_rule_bytes(0), "max_rule_bytes"),
        (
            "a yield interval under 100 µs",
            engine_builder()?.config(with(|c| c.runtime.yield_interval = Duration::from_micros(50))),
            "yield_interval",
        ),
        ("no rule thread", engine_builder()?.config(with(|c| c.runtime.rule_threads = 0)), "rule_threads"),
        ("no instance slot", engine_builder()?.config(with(|c| c.runtime.max_instances = 0)), "max_instances"),
        (
            "a yield interval over 100 ms",
            engine_builder()?.config(with(|c| c.runtime.yield_interval = Duration::from_millis(101))),
            "yield_interval",
        ),
        ("a list limit of 0", engine_builder()?.config(with(|c| c.runtime.limits.max_list_len = 0)), "max_list_len"),
        ("a dict limit of 0", engine_builder()?.config(with(|c| c.runtime.limits.max_dict_len = 0)), "max_dict_len"),
        (
            "a value-size limit of 0",
            engine_builder()?.config(with(|c| c.runtime.limits.max_value_bytes = 0)),
            "max_value_bytes",
        ),
    ];
    for (label, builder, needle) in cases {
        match builder.shared_store(store.clone()).build() {
            Ok(_) => bail!("{label}: accepted"),
            Err(error) => {
                check_engine(label, &error, Origin::Direct, INVALID_INPUT)?;
                ensure!(error.to_string().contains(needle), "{label}: the message does not name {needle:?}: {error}");
            }
        }
    }
    ensure!(held.text(What::Everything).await? == before, "building refused engines changed the store");
    Ok(())
}

const WASI_COMPONENT: &str = r#"(component
  (import "wasi:cli/environment@0.2.0" (instance (export "get-arguments" (func (result (list string)))))))"#;

const MISTYPED_RUN: &str = r#"(component
  (core module $m (func (export "run") (result i32) i32.const 0))
  (core instance $i (instantiate $m))
  (func (export "run") (result u32) (canon lift (core func $i "run"))))"#;

/// A valid component whose linear memory is larger than the engine's instance pool allows:
/// wasmtime refuses to compile it for this configuration.
const OVERSIZED_MEMORY: &str = "(component (core module (memory 1000)))";

/// Bad uploads, to a name in use and to a new one, are refused with their precise reason and
/// store nothing: the registry's storage is byte for byte what it was (no epoch bump, no
/// version number used up, no bytes kept), and the next good upload is version 2.
async fn bad_uploads_leave_a_registry_in_use_as_it_was(backend: Backend) -> Result<()> {
    let env = Env::new(backend, "bad-uploads", |b| b.max_rule_bytes(64 << 10)).await?;
    let good = hand_rule(true, "")?;
    ensure!(env.registry.upload("transfer", &good, false).await?.version.version == 1);
    env.registry
        .define_model(ModelSchema::from_toml("name = \"Wallet\"\n[fields]\ncoins = { type = \"int\" }\n")?)
        .await?;
    env.engine.set_field("Account", "a", "balance", int(10)).await?;
    let before = env.everything().await?;
    let epoch = env.registry.snapshot().epoch;

    let wasi_core = hand_rule(
        true,
        "  (import \"wasi_snapshot_preview1\" \"fd_write\" (func (param i32 i32 i32 i32) (result i32)))",
    )?;
    let without_run = with_rule_metadata(wat::parse_str("(module (memory (export \"memory\") 1))")?)?;
    let uploads: Vec<(&str, Vec<u8>, Expect)> = vec![
        ("bytes that are not WebAssembly", b"hello, world".to_vec(), expect("not_wasm", 422, 6)),
        ("no bytes at all", Vec::new(), expect("not_wasm", 422, 6)),
        ("garbage after the magic number", b"\0asm\x01\0\0\0\xff\xff".to_vec(), expect("malformed_wasm", 422, 6)),
        ("an invalid component", b"\0asm\x0d\0\x01\0garbage".to_vec(), expect("malformed_wasm", 422, 6)),
        (
            "a core module without WIT metadata",
            wat::parse_str("(module (func (export \"run\")))")?,
            expect("not_a_rule", 422, 6),
        ),
        ("a core module whose exports do not match its metadata", without_run, expect("not_a_rule", 422, 6)),
        ("a core module importing WASI", wasi_core, expect("forbidden_import", 422, 6)),
        ("a component importing WASI", wat::parse_str(WASI_COMPONENT)?, expect("forbidden_import", 422, 6)),
        ("a component without `run`", wat::parse_str("(component)")?, expect("wrong_world", 422, 6)),
        ("a component whose `run` has another type", wat::parse_str(MISTYPED_RUN)?, expect("wrong_world", 422, 6)),
        ("a component this engine cannot compile", wat::parse_str(OVERSIZED_MEMORY)?, expect("compile_failed", 422, 6)),
        ("bytes over the rule size limit", vec![0; 70_000], expect("rule_too_large", 413, 6)),
    ];
    for (label, bytes, want) in &uploads {
        // The library's own compile: the same refusal, as `invalid_rule` with the reason.
        match env.engine.compile_rule("fresh", bytes) {
            Ok(_) => bail!("{label}: compiled"),
            Err(error) => {
                check_engine(label, &error, Origin::Direct, expect("invalid_rule", want.status, want.exit))?;
                ensure!(matches!(&error, Error::InvalidRule(_)), "{label}: {error:?}");
            }
        }
        for name in ["transfer", "fresh"] {
            let label = format!("{label} (to `{name}`)");
            match env.registry.upload(name, bytes, true).await {
                Ok(up) => bail!("{label}: accepted: {up:?}"),
                Err(error) => check_registry(&label, &error, *want)?,
            }
            ensure!(env.everything().await? == before, "{label}: the storage changed");
        }
    }
    let long = "x".repeat(257);
    let names = ["", "bad name!", "1rule", "a/b", "é", long.as_str()];
    for name in names {
        let label = format!("the rule name {name:?}");
        match env.engine.compile_rule(name, &good) {
            Ok(_) => bail!("{label}: compiled"),
            Err(error) => check_engine(&label, &error, Origin::Direct, expect("invalid_rule_name", 400, 3))?,
        }
        match env.registry.upload(name, &good, true).await {
            Ok(up) => bail!("{label}: accepted: {up:?}"),
            Err(error) => check_registry(&label, &error, expect("invalid_rule_name", 400, 3))?,
        }
        ensure!(env.everything().await? == before, "{label}: the storage changed");
    }
    ensure!(env.registry.snapshot().epoch == epoch, "a refused upload bumped the epoch");
    match env.registry.rule("fresh").await {
        Err(RegistryError::UnknownRule { .. }) => {}
        other => bail!("a refused first upload created the rule: {other:?}"),
    }
    let component = wit_component::ComponentEncoder::default().module(&good)?.validate(true).encode()?;
    let next = env.registry.upload("transfer", &component, false).await?;
    ensure!(next.created && next.version.version == 2 && !next.active, "no version number was used up: {next:?}");
    Ok(())
}

/// Activating, deleting and reading rules, versions and schemas that do not exist (or a
/// version that is active) is refused and changes nothing.
async fn registry_operations_on_what_does_not_exist_change_nothing(backend: Backend) -> Result<()> {
    let env = Env::new(backend, "bad-registry-ops", |b| b).await?;
    let good = hand_rule(true, "")?;
    env.registry.upload("transfer", &good, false).await?;
    let component = wit_component::ComponentEncoder::default().module(&good)?.validate(true).encode()?;
    env.registry.upload("transfer", &component, false).await?;
    env.registry
        .define_model(ModelSchema::from_toml("name = \"Wallet\"\n[fields]\ncoins = { type = \"int\" }\n")?)
        .await?;
    let before = env.everything().await?;
    let epoch = env.registry.snapshot().epoch;
    let r = &env.registry;
    let unknown_rule = expect("unknown_rule", 404, 4);
    let unknown_version = expect("unknown_version", 404, 4);
    let results: Vec<(&str, Result<(), RegistryError>, Expect)> = vec![
        ("activate an unknown rule", r.activate("nope", 1).await.map(drop), unknown_rule),
        ("activate version 0", r.activate("transfer", 0).await.map(drop), unknown_version),
        ("activate a version never uploaded", r.activate("transfer", 99).await.map(drop), unknown_version),
        (
            "delete the active version",
            r.delete_version("transfer", 1).await.map(drop),
            expect("version_active", 409, 5),
        ),
        ("delete a version never uploaded", r.delete_version("transfer", 99).await.map(drop), unknown_version),
        ("delete a version of an unknown rule", r.delete_version("nope", 1).await.map(drop), unknown_rule),
        ("delete an unknown rule", r.delete_rule("nope").await.map(drop), unknown_rule),
        ("run an unknown rule", r.resolve("nope").await.map(drop), unknown_rule),
        ("show an unknown rule", r.rule("nope").await.map(drop), unknown_rule),
        ("delete an unknown schema", r.delete_model("Nope").await.map(drop), UNKNOWN_MODEL_TYPE),
        ("show an unknown schema", r.model("Nope").await.map(drop), UNKNOWN_MODEL_TYPE),
    ];
    for (label, result, want) in &results {
        match result {
            Ok(()) => bail!("{label}: accepted"),
            Err(error) => check_registry(label, error, *want)?,
        }
    }
    ensure!(env.everything().await? == before, "a refused registry operation changed the storage");
    ensure!(env.registry.snapshot().epoch == epoch, "a refused registry operation bumped the epoch");
    Ok(())
}

const TOKEN: &str = "bad-input-token";

/// How a request authenticates.
#[derive(Debug, Clone, Copy)]
enum Auth {
    /// `Authorization: Bearer <the server's token>`.
    Token,
    /// No `Authorization` header.
    None,
    /// This `Authorization` header.
    Header(&'static str),
}

/// One bad request and the answer it must get.
struct Request {
    label: String,
    method: Method,
    path: String,
    headers: Vec<(&'static str, HeaderValue)>,
    body: Vec<u8>,
    auth: Auth,
    status: u16,
    kind: &'static str,
}

fn request(
    label: &str,
    method: Method,
    path: &str,
    body: impl Into<Vec<u8>>,
    status: u16,
    kind: &'static str,
) -> Request {
    Request {
        label: label.to_owned(),
        method,
        path: path.to_owned(),
        headers: Vec::new(),
        body: body.into(),
        auth: Auth::Token,
        status,
        kind,
    }
}

impl Request {
    /// Adds a header; its value may be any bytes HTTP allows (not only visible ASCII).
    fn header(mut self, name: &'static str, value: impl AsRef<[u8]>) -> Self {
        let value = HeaderValue::from_bytes(value.as_ref()).expect("bytes HTTP allows in a header value");
        self.headers.push((name, value));
        self
    }

    fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }
}

/// A raw HTTP/1.1 request over a fresh connection (for bodies a client library will not send:
/// cut short, or chunked without a length); returns the status and the JSON body.
fn raw_http(server: &Server, head: &str, body: &[u8], close_write: bool) -> Result<(u16, Value)> {
    let address = server.url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let head = head.replace('\n', "\r\n");
    let host = format!("Host: {address}\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(host.as_bytes())?;
    stream.write_all(body)?;
    if close_write {
        stream.shutdown(std::net::Shutdown::Write)?;
    }
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").with_context(|| format!("no HTTP answer: {answer:?}"))?;
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).with_context(|| head.to_owned())?;
    let json = serde_json::from_str(body.trim()).with_context(|| format!("{head}: body is not JSON: {body}"))?;
    Ok((status, json))
}

/// A model schema in the JSON form, with these fields.
fn schema_json(name: &str, fields: &str) -> String {
    format!(r#"{{"name": {name:?}, "fields": {fields}}}"#)
}

/// Bad requests to `wasmtx serve` (routes, methods, tokens, sizes, bodies, queries, paths,
/// headers, schemas, invocations, model reads and writes) get their status and JSON error; the
/// server's store holds what it held (on Redis compared after every request; on the embedded
/// store through the data directory the server saves when it stops).
async fn bad_http_requests_get_their_status_and_kind_and_write_nothing(backend: Backend) -> Result<()> {
    let redis = match backend {
        Backend::Memory => None,
        Backend::Redis => Some(RedisFixture::new("bad-http").await?),
    };
    let dir = TempDir::new("bad-http")?;
    let bank_transfer = std::fs::read(&rules()?.bank_transfer)?;
    // The rule limit just above the bank transfer, the body limit above that.
    let rule_limit = bank_transfer.len() + 10_000;
    let body_limit = rule_limit + 100_000;
    let (rule_limit_arg, body_limit_arg) = (rule_limit.to_string(), body_limit.to_string());
    let url = redis_url();
    let mut global = vec!["--max-rule-bytes", rule_limit_arg.as_str()];
    if let Some(redis) = &redis {
        global.extend(["--store", url.as_str(), "--prefix", redis.prefix.as_str()]);
    }
    let serve = ["--token", TOKEN, "--body-limit", body_limit_arg.as_str()];
    let http = reqwest::Client::new();
    let send = |server: &Server, request: &Request| {
        let mut builder = http.request(request.method.clone(), server.at(&request.path)).body(request.body.clone());
        for (name, value) in &request.headers {
            builder = builder.header(*name, value.clone());
        }
        builder = match request.auth {
            Auth::Token => builder.bearer_auth(TOKEN),
            Auth::None => builder,
            Auth::Header(value) => builder.header("authorization", value),
        };
        async move {
            let response = builder.send().await?;
            let status = response.status();
            let text = response.text().await?;
            let body: Value =
                serde_json::from_str(&text).with_context(|| format!("{status}: body is not JSON: {text}"))?;
            anyhow::Ok((status, body))
        }
    };
    let data_dir = dir.path().join(".wasmtx");
    let snapshot = async |redis: &Option<RedisFixture>| -> Result<String> {
        match redis {
            Some(redis) => redis_text(redis, What::Data).await,
            None => state_file_text(&data_dir, What::Data),
        }
    };

    // Seed: a schema, a rule, a balance and a committed invocation with an idempotency key; then
    // stop the server, so that the embedded store's state is on disk.
    let mut server = Server::start(dir.path(), &global, &serve)?;
    let account = std::fs::read_to_string(wasmtx_examples::models_dir().join("account.toml"))?;
    let transfer = |amount: i64| {
        json!({"models": ["Account:alice", "Account:bob"], "action": "transfer", "input": {"amount": amount}})
            .to_string()
    };
    for seed in [
        request("define Account", Method::PUT, "/v1/models/Account", account.clone(), 200, "")
            .header("content-type", "application/toml"),
        request("upload bank-transfer", Method::POST, "/v1/rules/bank-transfer", bank_transfer.clone(), 201, ""),
        request("set a balance", Method::PUT, "/v1/models/Account/alice/fields/balance", "100", 200, ""),
        request("transfer", Method::POST, "/v1/rules/bank-transfer/invoke", transfer(10), 200, "")
            .header("idempotency-key", "seed-key"),
    ] {
        let (got, body) = send(&server, &seed).await?;
        ensure!(got.as_u16() == seed.status, "seeding: {}: {got} {body}", seed.label);
    }
    server.terminate()?;
    ensure!(server.wait_exit(Duration::from_secs(20))? == Some(0), "the seeding server stopped cleanly");
    let before = snapshot(&redis).await?;
    let mut server = Server::start(dir.path(), &global, &serve)?;

    let invoke = "/v1/rules/bank-transfer/invoke";
    let field = "/v1/models/Account/alice/fields/balance";
    let mut rule_between_limits = b"\0asm\x01\0\0\0".to_vec();
    rule_between_limits.resize(rule_limit + 50_000, 0);
    let toml_account = account.clone();
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
    for request in &requests {
        let (status, body) = send(&server, request).await.with_context(|| request.label.clone())?;
        let label = &request.label;
        ensure!(
            status.as_u16() == request.status && body["error"]["kind"] == request.kind,
            "{label}: expected {} {}, got {status} {body}",
            request.status,
            request.kind
        );
        ensure!(
            body["error"]["retryable"] == false && body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{label}: {body}"
        );
        if redis.is_some() {
            ensure!(snapshot(&redis).await? == before, "{label}: the store changed");
        }
    }
    // Bodies a client library will not send: cut short, or chunked past the limit.
    let over_limit = {
        let mut body = Vec::new();
        for _ in 0..body_limit.div_ceil(60_000) + 1 {
            body.extend_from_slice(format!("{:x}\r\n", 60_000).as_bytes());
            body.resize(body.len() + 60_000, 0);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"0\r\n\r\n");
        body
    };
    // (label, request line and headers, body, whether the client stops sending, status, kind)
    let raw_requests = [
        (
            "a chunked body over the limit",
            "POST /v1/rules/chunked HTTP/1.1\nTransfer-Encoding: chunked\n",
            over_limit,
            false,
            (413, "body_too_large"),
        ),
        (
            "a body shorter than its Content-Length",
            "PUT /v1/models/A HTTP/1.1\nContent-Length: 100\n",
            br#"{"name": "A""#.to_vec(),
            true,
            (400, "bad_body"),
        ),
        (
            "a chunked body with a bad chunk size",
            "PUT /v1/models/A HTTP/1.1\nTransfer-Encoding: chunked\n",
            b"zz\r\nabc\r\n0\r\n\r\n".to_vec(),
            false,
            (400, "bad_body"),
        ),
    ];
    for (label, head, body, close_write, (status, kind)) in raw_requests {
        let (got, answer) = raw_http(&server, head, &body, close_write).with_context(|| label.to_owned())?;
        ensure!(
            got == status && answer["error"]["kind"] == kind,
            "{label}: expected {status} {kind}, got {got} {answer}"
        );
        if redis.is_some() {
            ensure!(snapshot(&redis).await? == before, "{label}: the store changed");
        }
    }
    server.terminate()?;
    ensure!(server.wait_exit(Duration::from_secs(20))? == Some(0), "the server stopped cleanly");
    ensure!(snapshot(&redis).await? == before, "the bad requests changed the store");
    // The same server takes a good request, and the comparison sees what it writes.
    let mut server = Server::start(dir.path(), &global, &serve)?;
    let (status, body) = send(&server, &request("", Method::POST, invoke, transfer(1), 200, "")).await?;
    ensure!(status == StatusCode::OK, "{status} {body}");
    server.terminate()?;
    ensure!(server.wait_exit(Duration::from_secs(20))? == Some(0), "the last server stopped cleanly");
    ensure!(snapshot(&redis).await? != before, "a good invocation writes");
    Ok(())
}

/// Bad command lines get their exit code and (with `--json`) their kind, and leave the store
/// as it was: the embedded store's data directory, or the Redis prefix.
async fn bad_command_lines_get_their_exit_code_and_kind_and_write_nothing(backend: Backend) -> Result<()> {
    let redis = match backend {
        Backend::Memory => None,
        Backend::Redis => Some(RedisFixture::new("bad-cli").await?),
    };
    let dir = TempDir::new("bad-cli")?;
    let d = dir.path();
    let url = redis_url();
    let mut global: Vec<String> = vec!["--json".into()];
    if let Some(redis) = &redis {
        global.extend(["--store".into(), url.clone(), "--prefix".into(), redis.prefix.clone()]);
    }
    let run = |args: &[&str]| -> Result<Run> {
        let mut all: Vec<&str> = global.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        run_in(d, &all)
    };
    let data_dir = d.join(".wasmtx");
    let snapshot = async |redis: &Option<RedisFixture>| -> Result<String> {
        match redis {
            Some(redis) => redis_text(redis, What::Data).await,
            None => state_file_text(&data_dir, What::Data),
        }
    };
    let account = wasmtx_examples::models_dir().join("account.toml").display().to_string();
    let bank_transfer = rules()?.bank_transfer.display().to_string();
    run(&["model", "define", &account])?.expect(0)?;
    run(&["rule", "upload", "bank-transfer", &bank_transfer])?.expect(0)?;
    run(&["model", "set", "Account", "alice", "balance", "100"])?.expect(0)?;
    let transfer = |amount: &str| -> Vec<String> {
        ["invoke", "bank-transfer", "-m", "Account:alice", "-m", "Account:bob", "--action", "transfer", "--input"]
            .iter()
            .map(|s| (*s).to_owned())
            .chain([format!("{{\"amount\": {amount}}}")])
            .collect()
    };
    let seed: Vec<String> = transfer("10").into_iter().chain(["--idempotency-key".into(), "seed-key".into()]).collect();
    run(&seed.iter().map(String::as_str).collect::<Vec<_>>())?.expect(0)?;
    let before = snapshot(&redis).await?;

    let not_wasm = d.join("notes.txt");
    std::fs::write(&not_wasm, "not wasm")?;
    let bad_schema = d.join("bad.toml");
    std::fs::write(&bad_schema, "name = \"A\"\n[fields]\nx = { type = \"integer\" }\n")?;
    let bad_fixture = d.join("fixtures.toml");
    std::fs::write(&bad_fixture, "[[case]]\nname = \"a\"\nwhen = {}\nthen = { error = \"invalid-input\" }\n")?;
    let busy = std::net::TcpListener::bind("127.0.0.1:0")?;
    let busy_addr = busy.local_addr()?.to_string();
    let (not_wasm, bad_schema, bad_fixture) =
        (not_wasm.display().to_string(), bad_schema.display().to_string(), bad_fixture.display().to_string());
    let reused: Vec<String> =
        transfer("20").into_iter().chain(["--idempotency-key".into(), "seed-key".into()]).collect();
    let negative = transfer("-5");
    let with =
        |base: &[&str], extra: &[&str]| -> Vec<String> { base.iter().chain(extra).map(|s| (*s).to_owned()).collect() };
    let alice = ["invoke", "bank-transfer", "-m", "Account:alice"];
    // (label, arguments, exit code, kind; `None` for a usage error, which clap reports itself)
    let cases: Vec<(&str, Vec<String>, i32, Option<&str>)> = vec![
        ("an unknown subcommand", with(&["rule", "frobnicate"], &[]), 2, None),
        ("a missing argument", with(&["invoke"], &[]), 2, None),
        ("an unknown mode", with(&alice, &["--mode", "fast"]), 2, None),
        ("max attempts of 0", with(&alice, &["--max-attempts", "0"]), 2, None),
        ("a version that is not a number", with(&["rule", "activate", "bank-transfer", "one"], &[]), 2, None),
        ("an address that is not one", with(&["serve", "--addr", "nowhere"], &[]), 2, None),
        ("invoke an unknown rule", with(&["invoke", "nope"], &[]), 4, Some("unknown_rule")),
        ("a model without `:`", with(&["invoke", "bank-transfer", "-m", "Account"], &[]), 3, Some("bad_input")),
        (
            "a model of an unknown type",
            with(&["invoke", "bank-transfer", "-m", "Nope:x"], &[]),
            4,
            Some("unknown_model_type"),
        ),
        ("a key with a brace", with(&["invoke", "bank-transfer", "-m", "Account:a{b"], &[]), 3, Some("invalid_key")),
        ("the same model twice", with(&alice, &["-m", "Account:alice"]), 3, Some("duplicate_model")),
        ("an action with a space", with(&alice, &["--action", "a b"]), 3, Some("invalid_action")),
        ("input that is not JSON", with(&alice, &["--input", "{oops"]), 3, Some("invalid_input")),
        (
            "an input file that cannot be read",
            with(&alice, &["--input-file", "/no/such/input.json"]),
            3,
            Some("bad_input"),
        ),
        (
            "an idempotency key with a space",
            with(&alice, &["--idempotency-key", "a b"]),
            3,
            Some("invalid_idempotency_key"),
        ),
        ("an idempotency key used for another input", reused, 6, Some("idempotency_key_reused")),
        ("an input the rule cannot use", negative, 3, Some("invalid_input")),
        (
            "an upload under a bad name",
            with(&["rule", "upload", "bad name!", &bank_transfer], &[]),
            3,
            Some("invalid_rule_name"),
        ),
        ("an upload that is not wasm", with(&["rule", "upload", "notes", &not_wasm], &[]), 6, Some("not_wasm")),
        (
            "an upload file that cannot be read",
            with(&["rule", "upload", "x", "/no/such/file.wasm"], &[]),
            3,
            Some("bad_input"),
        ),
        (
            "an upload over --max-rule-bytes",
            with(&["--max-rule-bytes", "1000", "rule", "upload", "bank-transfer", &bank_transfer], &[]),
            6,
            Some("rule_too_large"),
        ),
        (
            "activate a version never uploaded",
            with(&["rule", "activate", "bank-transfer", "9"], &[]),
            4,
            Some("unknown_version"),
        ),
        ("activate an unknown rule", with(&["rule", "activate", "nope", "1"], &[]), 4, Some("unknown_rule")),
        ("delete the active version", with(&["rule", "delete", "bank-transfer", "1"], &[]), 5, Some("version_active")),
        (
            "a schema file that cannot be read",
            with(&["model", "define", "/no/such/schema.toml"], &[]),
            3,
            Some("bad_input"),
        ),
        ("a schema file that is invalid", with(&["model", "define", &bad_schema], &[]), 3, Some("bad_input")),
        (
            "a field value of another type",
            with(&["model", "set", "Account", "alice", "balance", "lots"], &[]),
            3,
            Some("bad_input"),
        ),
        ("an unknown field", with(&["model", "set", "Account", "alice", "nope", "1"], &[]), 3, Some("bad_input")),
        (
            "set a field under a bad key",
            with(&["model", "set", "Account", "a{b", "balance", "1"], &[]),
            3,
            Some("invalid_key"),
        ),
        (
            "set a field of an unknown type",
            with(&["model", "set", "Nope", "x", "n", "1"], &[]),
            4,
            Some("unknown_model_type"),
        ),
        ("read a model under an empty key", with(&["model", "get", "Account", ""], &[]), 3, Some("invalid_key")),
        ("delete a model under a bad key", with(&["model", "delete", "Account", "a}b"], &[]), 3, Some("invalid_key")),
        ("undefine an unknown type", with(&["model", "undefine", "Nope"], &[]), 4, Some("unknown_model_type")),
        ("a rule size limit of 0", with(&["--max-rule-bytes", "0", "model", "list"], &[]), 3, Some("invalid_input")),
        (
            "serve on a public address without a token",
            with(&["serve", "--addr", "0.0.0.0:0"], &[]),
            3,
            Some("insecure_bind"),
        ),
        (
            "serve with an empty token",
            with(&["serve", "--addr", "127.0.0.1:0", "--token", ""], &[]),
            3,
            Some("insecure_bind"),
        ),
        ("serve on an address in use", with(&["serve", "--addr", &busy_addr], &[]), 3, Some("cannot_listen")),
        ("a fixture file that cannot be read", with(&["test", "/no/such/fixtures.toml"], &[]), 3, Some("bad_input")),
        (
            "a fixture file that expects an unknown kind",
            with(&["test", &bad_fixture, "--rule", &bank_transfer], &[]),
            3,
            Some("bad_input"),
        ),
    ];
    for (label, args, code, kind) in &cases {
        let result = run(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
        ensure!(
            result.code == Some(*code),
            "{label}: expected exit code {code}, got {:?}: {}",
            result.code,
            result.stderr
        );
        if let Some(kind) = kind {
            let body: Value = serde_json::from_str(result.stderr.trim())
                .with_context(|| format!("{label}: stderr is not one JSON error: {}", result.stderr))?;
            ensure!(body["error"]["kind"] == *kind, "{label}: expected {kind}, got {body}");
            ensure!(result.stdout.is_empty(), "{label}: printed {}", result.stdout);
        }
        ensure!(snapshot(&redis).await? == before, "{label}: the store changed");
    }
    drop(busy);

    // Store URLs and prefixes that cannot be used (their own `--store`/`--prefix`).
    let store_cases: [(&str, [&str; 4]); 3] = [
        ("a store URL of no known scheme", ["--store", "postgres://h/db", "--prefix", "p"]),
        ("a prefix with a brace", ["--store", url.as_str(), "--prefix", "a{b"]),
        ("an empty prefix", ["--store", url.as_str(), "--prefix", ""]),
    ];
    for (label, store) in store_cases {
        let result = run_in(d, &[&["--json"][..], &store[..], &["model", "list"][..]].concat())?;
        ensure!(result.code == Some(3), "{label}: expected exit code 3, got {:?}: {}", result.code, result.stderr);
        let body: Value =
            serde_json::from_str(result.stderr.trim()).with_context(|| format!("{label}: {}", result.stderr))?;
        ensure!(body["error"]["kind"] == "store", "{label}: {body}");
        ensure!(snapshot(&redis).await? == before, "{label}: the store changed");
    }

    if redis.is_none() {
        // Data directories the command cannot use: refused before anything is loaded or saved.
        let not_a_dir = d.join("file");
        std::fs::write(&not_a_dir, "a file")?;
        let corrupt = d.join("corrupt");
        std::fs::create_dir_all(&corrupt)?;
        std::fs::write(corrupt.join("state.json"), "{ not json")?;
        let newer = d.join("newer");
        std::fs::create_dir_all(&newer)?;
        std::fs::write(newer.join("state.json"), r#"{"format": 99, "registry": {}, "models": {}}"#)?;
        for (label, path) in [
            ("a data directory that is a file", &not_a_dir),
            ("a corrupt state file", &corrupt),
            ("a state file of a newer format", &newer),
        ] {
            let path = path.display().to_string();
            let contents = |p: &str| std::fs::read(Path::new(p).join("state.json")).ok();
            let had = contents(&path);
            let result = run_in(d, &["--json", "--data-dir", &path, "model", "list"])?;
            ensure!(result.code == Some(1), "{label}: expected exit code 1, got {:?}: {}", result.code, result.stderr);
            let body: Value =
                serde_json::from_str(result.stderr.trim()).with_context(|| format!("{label}: {}", result.stderr))?;
            ensure!(body["error"]["kind"] == "data_dir", "{label}: {body}");
            ensure!(contents(&path) == had, "{label}: the state file was rewritten");
        }
        ensure!(std::fs::read_to_string(&not_a_dir)? == "a file", "the file is untouched");
    }
    // A good command writes, and the comparison sees it.
    run(&["model", "set", "Account", "alice", "balance", "5"])?.expect(0)?;
    ensure!(snapshot(&redis).await? != before, "a good command writes");
    Ok(())
}

/// The bad-input table cites tests as `module::name` (a function of `tests/all/<module>.rs`) or
/// `engine/src/<path>.rs::name` (a unit test): every one must exist, every row must cite one,
/// every kind it names must be an error kind, and every test of this module must be cited.
#[test]
fn every_test_the_bad_input_table_cites_exists() -> Result<()> {
    let root = workspace_root();
    let text = std::fs::read_to_string(root.join("ERRORS.md"))?;
    let start = text.find("\n# Bad input").context("ERRORS.md has no `# Bad input` part")?;
    let part = &text[start..];
    let mut rows = 0;
    let mut cited = std::collections::BTreeSet::new();
    for line in part.lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if cells.len() < 5 || cells[0] == "bad input" || cells[0].starts_with("---") {
            continue;
        }
        rows += 1;
        for kind in backticked(cells[1]) {
            kind.parse::<ErrorKind>().with_context(|| format!("row {line:?}: `{kind}` is not an error kind"))?;
        }
        let tests = backticked(cells[4]);
        ensure!(!tests.is_empty(), "row {line:?} cites no test");
        for test in tests {
            let (file, name) = match test.rsplit_once("::") {
                Some((path, name)) if path.starts_with("engine/src/") && path.ends_with(".rs") => {
                    (root.join(path), name)
                }
                Some((module, name)) if !module.contains(['/', ':']) => {
                    (root.join("tests").join("all").join(format!("{module}.rs")), name)
                }
                _ => bail!("row {line:?}: `{test}` is not `module::name` or `engine/src/<file>.rs::name`"),
            };
            let source = std::fs::read_to_string(&file).with_context(|| format!("`{test}`: no {}", file.display()))?;
            ensure!(source.contains(&format!("fn {name}(")), "`{test}`: {} has no `fn {name}(`", file.display());
            cited.insert(test.to_owned());
        }
    }
    ensure!(rows >= 100, "the bad-input table has only {rows} rows");
    // Every test of this module that proves rows (the ones run on both stores) is cited.
    let this = std::fs::read_to_string(root.join("tests").join("all").join("bad_input.rs"))?;
    let list = this.split("on_both_stores!(").nth(1).and_then(|rest| rest.split(");").next()).unwrap_or_default();
    let names: Vec<&str> = list.split(',').map(str::trim).filter(|n| !n.is_empty()).collect();
    ensure!(names.len() >= 9, "the test list of bad_input.rs was not found: {names:?}");
    for name in names {
        ensure!(
            cited.contains(&format!("bad_input::{name}")),
            "ERRORS.md's bad-input table does not cite bad_input::{name}"
        );
    }
    Ok(())
}

/// The `backticked` spans of a table cell.
fn backticked(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).filter(|s| !s.is_empty()).collect()
}
