//! The bad-input table of `ERRORS.md` (its second part, `# Bad input`), proved: every bad input
//! the engine refuses, through the library, the registry, the HTTP API and the `wasmtx`
//! command, gets its typed error (kind, HTTP status, exit code), and a comparison of what the
//! store holds before and after shows that the refusal wrote nothing.
//!
//! Two comparisons: [`What::Everything`] is all the backend holds (on Redis every key under the
//! test's prefix with its content, lock and fencing fields included; on the embedded store the
//! dumps of the model store, fencing counters included, and of the registry), for refusals that
//! must not reach the store at all. [`What::Data`] leaves out what taking and releasing a lock
//! writes by design (lock fields, fencing counters, models only ever locked), for inputs the
//! rule itself refuses once the engine has locked and loaded its models.
//!
//! One submodule per area, each registering its tests on both stores: [`engine`] (invocations
//! refused before they start, inputs and outputs the rule refuses, direct field operations,
//! limits, engine settings), [`registry`] (uploads, registry operations), [`http`] (bad requests
//! to `wasmtx serve`), [`cli`] (bad command lines); [`fixtures`] is what they set up, and
//! [`table`] checks that every test the table cites exists, so the table cannot rot.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::Value;
use wasmtx::backend::{Backend as Opened, BackendOptions};
use wasmtx::registry::{MemoryRegistryStore, RegistryError, RegistryStore};
use wasmtx::{Error, MemoryStore, Origin, Store};

use crate::{Backend, RedisFixture, redis_url};

mod cli;
mod engine;
mod fixtures;
mod http;
mod registry;
mod table;

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
