//! # Probe: a scriptable rule for the engine's tests
//!
//! Runs a script of model operations given as input and returns each operation's result, so
//! one build of one rule can drive every host function, error path and resource limit of the
//! engine. Not an example of good rule design.
//!
//! Input: `{"ops": [op, ...]}`, run in order. Output: a JSON array with one result per op.
//! An op that fails stops the script: a model error propagates as `rule-error::access`, and
//! nothing is written.
//!
//! `model` is an index into the invocation's models (default 0); models are opened once and
//! kept open for the rest of the script. Results are `null` unless said otherwise.
//!
//! | op | fields | result |
//! |---|---|---|
//! | `get` | `model`, `field` | the field's whole value |
//! | `set` | `model`, `field`, `value` | (a JSON array sets a list, an object a dict) |
//! | `reset` | `model`, `field` | |
//! | `increment` | `model`, `field`, `delta` | the new value |
//! | `append` | `model`, `field`, `item` | |
//! | `list_extend` | `model`, `field`, `items` | |
//! | `list_insert` | `model`, `field`, `index`, `item` | |
//! | `list_pop` | `model`, `field`, `index` (or `null`) | the popped item |
//! | `list_remove` | `model`, `field`, `item` | |
//! | `list_clear` | `model`, `field` | |
//! | `list_len` | `model`, `field` | the length |
//! | `list_get` | `model`, `field`, `index` | the item |
//! | `list_items` | `model`, `field` | all items |
//! | `dict_get` | `model`, `field`, `key` | the value or `null` |
//! | `dict_set` | `model`, `field`, `key`, `value` | |
//! | `dict_update` | `model`, `field`, `entries` (an object) | |
//! | `dict_pop` | `model`, `field`, `key` | the removed value or `null` |
//! | `dict_clear` | `model`, `field` | |
//! | `dict_keys` | `model`, `field` | the sorted keys |
//! | `dict_len` | `model`, `field` | the number of entries |
//! | `dict_entries` | `model`, `field` | all entries as an object |
//! | `fields` | `model` | `[["name", "type"], ...]` in schema order (`"list<int>"`) |
//! | `open` | `model_type`, `key` | `{"model_type", "key"}` of the opened model (`open-by-key`) |
//! | `open_index` | `index` | `{"model_type", "key"}` of the opened model (`open`) |
//! | `context` | | the invocation context as JSON |
//! | `transfer` | `from`, `to`, `amount` | `{"from", "to"}`: the new balances of two `Account`s |
//! | `reject` | `message` | fails with `rule-error::rejected(message)` |
//! | `invalid_input` | `message` | fails with `rule-error::invalid-input(message)` |
//! | `log` | `message`, `level` (default `info`) | emits a log record |
//! | `trap` | | panics: the instance traps |
//! | `loop` | | loops forever |
//! | `alloc` | `bytes` | allocates and writes `bytes` bytes; the number of bytes |
//! | `recurse` | `depth`, `shadow` (default `false`) | recurses `depth` calls deep; with `shadow`, each call also holds 1 KiB on the guest's own stack in linear memory; `depth` |
//!
//! Scalars map to JSON as integers, floats, booleans and strings; a `bytes` scalar is
//! `{"$bytes": [1, 2, 3]}` both ways. A float written with a decimal point (`5.0`) stays a
//! float; the floats JSON cannot carry are written `{"$float": "NaN"}` (or `"inf"`, `"-inf"`),
//! in input only, to check that writing them is refused.
//!
//! Build: `cargo build --release --target wasm32-unknown-unknown -p rule-probe`, or
//! `wasmtx_examples::rules::build_rules()`.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use serde::Deserialize;
use wasmtx_guest::prelude::*;
use wasmtx_guest::serde_json::{self, Map, Value as Json, json};

#[derive(Debug, Deserialize)]
struct Script {
    ops: Vec<Op>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Op {
    Get {
        #[serde(default)]
        model: u32,
        field: String,
    },
    Set {
        #[serde(default)]
        model: u32,
        field: String,
        value: Json,
    },
    Reset {
        #[serde(default)]
        model: u32,
        field: String,
    },
    Increment {
        #[serde(default)]
        model: u32,
        field: String,
        delta: i64,
    },
    Append {
        #[serde(default)]
        model: u32,
        field: String,
        item: Json,
    },
    ListExtend {
        #[serde(default)]
        model: u32,
        field: String,
        items: Vec<Json>,
    },
    ListInsert {
        #[serde(default)]
        model: u32,
        field: String,
        index: i64,
        item: Json,
    },
    ListPop {
        #[serde(default)]
        model: u32,
        field: String,
        #[serde(default)]
        index: Option<i64>,
    },
    ListRemove {
        #[serde(default)]
        model: u32,
        field: String,
        item: Json,
    },
    ListClear {
        #[serde(default)]
        model: u32,
        field: String,
    },
    ListLen {
        #[serde(default)]
        model: u32,
        field: String,
    },
    ListGet {
        #[serde(default)]
        model: u32,
        field: String,
        index: i64,
    },
    ListItems {
        #[serde(default)]
        model: u32,
        field: String,
    },
    DictGet {
        #[serde(default)]
        model: u32,
        field: String,
        key: String,
    },
    DictSet {
        #[serde(default)]
        model: u32,
        field: String,
        key: String,
        value: Json,
    },
    DictUpdate {
        #[serde(default)]
        model: u32,
        field: String,
        entries: Map<String, Json>,
    },
    DictPop {
        #[serde(default)]
        model: u32,
        field: String,
        key: String,
    },
    DictClear {
        #[serde(default)]
        model: u32,
        field: String,
    },
    DictKeys {
        #[serde(default)]
        model: u32,
        field: String,
    },
    DictLen {
        #[serde(default)]
        model: u32,
        field: String,
    },
    DictEntries {
        #[serde(default)]
        model: u32,
        field: String,
    },
    Fields {
        #[serde(default)]
        model: u32,
    },
    Open {
        model_type: String,
        key: String,
    },
    OpenIndex {
        index: u32,
    },
    Context,
    Transfer {
        from: u32,
        to: u32,
        amount: i64,
    },
    Reject {
        message: String,
    },
    InvalidInput {
        message: String,
    },
    Log {
        message: String,
        #[serde(default)]
        level: Option<String>,
    },
    Trap,
    Loop,
    Alloc {
        bytes: usize,
    },
    Recurse {
        depth: u64,
        #[serde(default)]
        shadow: bool,
    },
}

/// The models opened so far, by index.
struct Models<'c> {
    ctx: &'c Context,
    open: BTreeMap<u32, Model>,
}

impl Models<'_> {
    fn get(&mut self, index: u32) -> RuleResult<&Model> {
        Ok(match self.open.entry(index) {
            Entry::Occupied(open) => open.into_mut(),
            Entry::Vacant(slot) => slot.insert(self.ctx.model(index)?),
        })
    }
}

fn probe(ctx: &Context, script: Script) -> RuleResult<Vec<Json>> {
    let mut models = Models { ctx, open: BTreeMap::new() };
    script.ops.into_iter().map(|op| run_op(ctx, &mut models, op)).collect()
}

fn run_op(ctx: &Context, models: &mut Models<'_>, op: Op) -> RuleResult<Json> {
    Ok(match op {
        Op::Get { model, field } => value_to_json(&models.get(model)?.get(&field)?),
        Op::Set { model, field, value } => {
            models.get(model)?.set(&field, json_to_value(&value)?)?;
            Json::Null
        }
        Op::Reset { model, field } => {
            models.get(model)?.reset(&field)?;
            Json::Null
        }
        Op::Increment { model, field, delta } => json!(models.get(model)?.increment(&field, delta)?),
        Op::Append { model, field, item } => {
            models.get(model)?.list(&field).append(json_to_scalar(&item)?)?;
            Json::Null
        }
        Op::ListExtend { model, field, items } => {
            let items = items.iter().map(json_to_scalar).collect::<RuleResult<Vec<_>>>()?;
            models.get(model)?.list(&field).extend(items)?;
            Json::Null
        }
        Op::ListInsert { model, field, index, item } => {
            models.get(model)?.list(&field).insert(index, json_to_scalar(&item)?)?;
            Json::Null
        }
        Op::ListPop { model, field, index } => {
            let m = models.get(model)?;
            let list = m.list(&field);
            let item = match index {
                None => list.pop()?,
                Some(i) => list.pop_at(i)?,
            };
            scalar_to_json(&item)
        }
        Op::ListRemove { model, field, item } => {
            models.get(model)?.list(&field).remove(json_to_scalar(&item)?)?;
            Json::Null
        }
        Op::ListClear { model, field } => {
            models.get(model)?.list(&field).clear()?;
            Json::Null
        }
        Op::ListLen { model, field } => json!(models.get(model)?.list(&field).len()?),
        Op::ListGet { model, field, index } => scalar_to_json(&models.get(model)?.list(&field).get(index)?),
        Op::ListItems { model, field } => {
            Json::Array(models.get(model)?.list(&field).items()?.iter().map(scalar_to_json).collect())
        }
        Op::DictGet { model, field, key } => option_to_json(models.get(model)?.dict(&field).get(&key)?),
        Op::DictSet { model, field, key, value } => {
            models.get(model)?.dict(&field).set(&key, json_to_scalar(&value)?)?;
            Json::Null
        }
        Op::DictUpdate { model, field, entries } => {
            let entries =
                entries.iter().map(|(k, v)| Ok((k.clone(), json_to_scalar(v)?))).collect::<RuleResult<Vec<_>>>()?;
            models.get(model)?.dict(&field).update(entries)?;
            Json::Null
        }
        Op::DictPop { model, field, key } => option_to_json(models.get(model)?.dict(&field).pop(&key)?),
        Op::DictClear { model, field } => {
            models.get(model)?.dict(&field).clear()?;
            Json::Null
        }
        Op::DictKeys { model, field } => json!(models.get(model)?.dict(&field).keys()?),
        Op::DictLen { model, field } => json!(models.get(model)?.dict(&field).len()?),
        Op::DictEntries { model, field } => entries_to_json(&models.get(model)?.dict(&field).entries()?),
        Op::Fields { model } => Json::Array(
            models.get(model)?.fields().into_iter().map(|(name, ty)| json!([name, ty.to_string()])).collect(),
        ),
        Op::Open { model_type, key } => describe(&ctx.open(&model_type, &key)?),
        Op::OpenIndex { index } => describe(&ctx.model(index)?),
        Op::Context => json!({
            "invocation_id": ctx.invocation_id(),
            "now_ms": ctx.now_ms(),
            "action": ctx.action(),
            "mode": ctx.mode().to_string(),
            "attempt": ctx.attempt(),
            "models": ctx
                .models()
                .iter()
                .map(|m| json!({"model_type": m.model_type, "key": m.key}))
                .collect::<Vec<_>>(),
        }),
        Op::Transfer { from, to, amount } => {
            if models.get(from)?.get_int("balance")? < amount {
                return Err(reject("Insufficient funds"));
            }
            let from_balance = models.get(from)?.increment("balance", -amount)?;
            let to_balance = models.get(to)?.increment("balance", amount)?;
            json!({"from": from_balance, "to": to_balance})
        }
        Op::Reject { message } => return Err(reject(message)),
        Op::InvalidInput { message } => return Err(invalid_input(message)),
        Op::Log { message, level } => {
            let level = match level.as_deref().unwrap_or("info") {
                "trace" => log::Level::Trace,
                "debug" => log::Level::Debug,
                "info" => log::Level::Info,
                "warn" => log::Level::Warn,
                "error" => log::Level::Error,
                other => return Err(invalid_input(format!("unknown log level `{other}`"))),
            };
            log::emit(level, &message, &[("source", "probe")]);
            Json::Null
        }
        Op::Trap => panic!("probe: trap requested"),
        Op::Loop => {
            let mut spins: u64 = 0;
            loop {
                spins = std::hint::black_box(spins.wrapping_add(1));
            }
        }
        Op::Alloc { bytes } => {
            let buffer = vec![0xa5_u8; bytes];
            std::hint::black_box(&buffer);
            json!(buffer.len())
        }
        Op::Recurse { depth, shadow } => {
            std::hint::black_box(if shadow { recurse_shadow(depth) } else { recurse(depth) });
            json!(depth)
        }
    })
}

/// Recurses `depth` calls deep on the wasm call stack alone (nothing on the guest's own stack in
/// linear memory), so a deep enough recursion exhausts the call stack the engine gives a rule.
/// Returns a checksum of the calls.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if depth == 0 {
        return 0;
    }
    // Mixing the result after the call keeps it a real recursion: the optimiser can turn
    // neither into a loop nor into a closed form.
    recurse(depth - 1).wrapping_mul(31) ^ depth
}

/// Recurses `depth` calls deep, each call holding a 1 KiB buffer on the guest's own stack in
/// linear memory (the shadow stack, 64 KiB for these rules), so it runs out of that stack long
/// before the wasm call stack. Returns `depth`.
#[inline(never)]
fn recurse_shadow(depth: u64) -> u64 {
    if depth == 0 {
        return 0;
    }
    let buffer = [depth as u8; 1024];
    let below = recurse_shadow(depth - 1);
    // Handed by reference to an opaque function after the call: the buffer must stay in linear
    // memory for the whole call, one per frame.
    std::hint::black_box(&buffer);
    below + 1
}

fn describe(model: &Model) -> Json {
    json!({"model_type": model.model_type(), "key": model.key()})
}

fn scalar_to_json(scalar: &Scalar) -> Json {
    match scalar {
        Scalar::Boolean(v) => json!(v),
        Scalar::Int(v) => json!(v),
        Scalar::Float(v) => json!(v),
        Scalar::Str(v) => json!(v),
        Scalar::Bytes(v) => json!({ "$bytes": v }),
    }
}

fn option_to_json(scalar: Option<Scalar>) -> Json {
    scalar.as_ref().map_or(Json::Null, scalar_to_json)
}

fn entries_to_json(entries: &[(String, Scalar)]) -> Json {
    Json::Object(entries.iter().map(|(k, v)| (k.clone(), scalar_to_json(v))).collect())
}

fn value_to_json(value: &Value) -> Json {
    match value {
        Value::Scalar(s) => scalar_to_json(s),
        Value::List(items) => Json::Array(items.iter().map(scalar_to_json).collect()),
        Value::Dict(entries) => entries_to_json(entries),
    }
}

fn json_to_scalar(json: &Json) -> RuleResult<Scalar> {
    match json {
        Json::Bool(v) => Ok(Scalar::Boolean(*v)),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(Scalar::Int(i))
            } else if n.is_u64() {
                Err(invalid_input(format!("{n} does not fit an int")))
            } else {
                n.as_f64().map(Scalar::Float).ok_or_else(|| invalid_input(format!("{n} is not a number")))
            }
        }
        Json::String(v) => Ok(Scalar::Str(v.clone())),
        Json::Object(map) if map.len() == 1 && map.contains_key("$bytes") => {
            serde_json::from_value::<Vec<u8>>(map["$bytes"].clone())
                .map(Scalar::Bytes)
                .map_err(|e| invalid_input(format!("bad $bytes: {e}")))
        }
        Json::Object(map) if map.len() == 1 && map.contains_key("$float") => map["$float"]
            .as_str()
            .and_then(|text| text.parse::<f64>().ok())
            .map(Scalar::Float)
            .ok_or_else(|| invalid_input(format!("bad $float: {}", map["$float"]))),
        other => Err(invalid_input(format!("expected a scalar, got {other}"))),
    }
}

/// Whether an object is one scalar in its tagged form (`{"$bytes": ...}`, `{"$float": ...}`)
/// rather than a dict.
fn is_tagged_scalar(map: &Map<String, Json>) -> bool {
    map.len() == 1 && (map.contains_key("$bytes") || map.contains_key("$float"))
}

fn json_to_value(json: &Json) -> RuleResult<Value> {
    match json {
        Json::Array(items) => Ok(Value::List(items.iter().map(json_to_scalar).collect::<RuleResult<_>>()?)),
        Json::Object(map) if !is_tagged_scalar(map) => {
            let mut entries =
                map.iter().map(|(k, v)| Ok((k.clone(), json_to_scalar(v)?))).collect::<RuleResult<Vec<_>>>()?;
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(Value::Dict(entries))
        }
        other => json_to_scalar(other).map(Value::Scalar),
    }
}

export_rule!(probe);
