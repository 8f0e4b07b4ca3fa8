//! Translating between the engine's types and the library functions' keys, arguments and replies.

use redis::Value;

use super::keys::KeyLayout;
use crate::model::change::{FieldChange, ModelSnapshot, ModelTarget};
use crate::model::ids::ModelId;
use crate::model::schema::ModelSchema;
use crate::model::value::{FieldType, FieldValue, Scalar};
use crate::store::{StoreError, StoredRecord};

/// The collection (list and dict) fields of a schema with their keys, in schema order, and
/// the `kinds` string the loading functions expect.
pub(super) struct Collections {
    pub keys: Vec<String>,
    pub kinds: String,
    /// Schema index of each collection, in the same order as `keys`.
    pub field_indices: Vec<usize>,
}

pub(super) fn collections(layout: &KeyLayout, target: &ModelTarget) -> Collections {
    let mut out = Collections { keys: Vec::new(), kinds: String::new(), field_indices: Vec::new() };
    for (index, (name, def)) in target.schema.fields().enumerate() {
        if let Some(key) = layout.collection(&target.id, name, def.ty) {
            out.keys.push(key);
            out.kinds.push(if matches!(def.ty, FieldType::List(_)) { 'l' } else { 'd' });
            out.field_indices.push(index);
        }
    }
    out
}

/// The arguments of one model's part of the commit function.
pub(super) struct CommitPart {
    /// Collection keys the changes touch (slot j = `keys[j - 1]`).
    pub keys: Vec<String>,
    /// `op_count` followed by the encoded ops.
    pub op_count: usize,
    pub ops: Vec<Vec<u8>>,
}

/// Encodes a model's changes as the commit function's ops. A run of scalar assignments goes as
/// one `HSET` op (the common commit, which the function then writes from its arguments as they
/// are): fewer arguments and less work in Redis.
pub(super) fn encode_changes(layout: &KeyLayout, target: &ModelTarget, changes: &[FieldChange]) -> CommitPart {
    let mut part = CommitPart { keys: Vec::new(), op_count: 0, ops: Vec::new() };
    // When the last op is a data hash `HSET`: where its `argc` sits in `ops`, and its value.
    let mut open_hset: Option<(usize, usize)> = None;
    for change in changes {
        let field = change.field();
        let ty = target.schema.field(field).map(|f| f.ty);
        let slot = match ty.and_then(|ty| layout.collection(&target.id, field, ty)) {
            None => 0,
            Some(key) => match part.keys.iter().position(|k| *k == key) {
                Some(p) => p + 1,
                None => {
                    part.keys.push(key);
                    part.keys.len()
                }
            },
        };
        if let (0, FieldChange::Set { field, value }) = (slot, change) {
            if let Some((at, argc)) = open_hset {
                part.ops[at] = (argc + 2).to_string().into_bytes();
                part.ops.push(field.clone().into_bytes());
                part.ops.push(value.encode());
                open_hset = Some((at, argc + 2));
                continue;
            }
            open_hset = Some((part.ops.len() + 3, 2));
        } else {
            open_hset = None;
        }
        part.op_count += 1;
        let (name, args): (&str, Vec<Vec<u8>>) = match change {
            FieldChange::Set { field, value } => ("HSET", vec![field.clone().into_bytes(), value.encode()]),
            FieldChange::Increment { field, delta } => {
                // A field never written starts from its schema default, not from 0.
                let default = match target.schema.field(field).map(|f| &f.default) {
                    Some(FieldValue::Scalar(Scalar::Int(d))) => *d,
                    _ => 0,
                };
                (
                    "HINCRBY",
                    vec![field.clone().into_bytes(), delta.to_string().into_bytes(), default.to_string().into_bytes()],
                )
            }
            FieldChange::ListAppend { items, .. } => ("RPUSH", items.iter().map(Scalar::encode).collect()),
            FieldChange::ListTruncate { len, .. } => ("LTRIM", vec![len.to_string().into_bytes()]),
            FieldChange::ListReplace { items, .. } => ("LREPLACE", items.iter().map(Scalar::encode).collect()),
            FieldChange::ListInsert { index, item, .. } => {
                ("LINSERT", vec![index.to_string().into_bytes(), item.encode()])
            }
            FieldChange::ListPop { index, .. } => {
                ("LPOPAT", vec![index.map(|i| i.to_string().into_bytes()).unwrap_or_default()])
            }
            FieldChange::ListRemove { item, .. } => ("LREMOVE", vec![item.encode()]),
            FieldChange::DictSet { entries, .. } => {
                ("HSET", entries.iter().flat_map(|(k, v)| [k.clone().into_bytes(), v.encode()]).collect())
            }
            FieldChange::DictRemove { keys, .. } => ("HDEL", keys.iter().map(|k| k.clone().into_bytes()).collect()),
            FieldChange::Clear { .. } => ("DEL", Vec::new()),
        };
        part.ops.push(name.as_bytes().to_vec());
        part.ops.push(slot.to_string().into_bytes());
        part.ops.push(field.as_bytes().to_vec());
        part.ops.push(args.len().to_string().into_bytes());
        part.ops.extend(args);
    }
    part
}

/// Walks a function reply array.
pub(super) struct Reply {
    items: std::vec::IntoIter<Value>,
}

impl Reply {
    pub fn new(value: Value) -> Result<Self, StoreError> {
        match value {
            Value::Array(items) => Ok(Self { items: items.into_iter() }),
            other => Err(unexpected(&other)),
        }
    }

    pub fn next(&mut self) -> Result<Value, StoreError> {
        self.items.next().ok_or_else(|| StoreError::Backend("function reply too short".into()))
    }

    pub fn text(&mut self) -> Result<String, StoreError> {
        match self.next()? {
            Value::BulkString(b) => String::from_utf8(b).map_err(|e| StoreError::Backend(e.to_string())),
            Value::SimpleString(s) => Ok(s),
            Value::Int(i) => Ok(i.to_string()),
            other => Err(unexpected(&other)),
        }
    }

    pub fn int(&mut self) -> Result<i64, StoreError> {
        match self.next()? {
            Value::Int(i) => Ok(i),
            Value::BulkString(b) => std::str::from_utf8(&b)
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| StoreError::Backend(format!("not an integer: {}", String::from_utf8_lossy(&b)))),
            other => Err(unexpected(&other)),
        }
    }

    /// A committed record (`'RECORDED'` replies).
    pub fn record(&mut self) -> Result<StoredRecord, StoreError> {
        decode_record(&self.text()?)
    }

    pub fn bytes_list(&mut self) -> Result<Vec<Vec<u8>>, StoreError> {
        match self.next()? {
            Value::Array(items) => items
                .into_iter()
                .map(|v| match v {
                    Value::BulkString(b) => Ok(b),
                    other => Err(unexpected(&other)),
                })
                .collect(),
            Value::Nil => Ok(Vec::new()),
            other => Err(unexpected(&other)),
        }
    }
}

fn unexpected(value: &Value) -> StoreError {
    StoreError::Backend(format!("unexpected reply from Redis: {value:?}"))
}

fn corrupt(id: &ModelId, field: &str, reason: String) -> StoreError {
    StoreError::Corrupt { model: id.clone(), field: field.to_owned(), reason }
}

/// The data hash field that holds the version (see [`super::keys`]).
const VERSION_FIELD: &[u8] = b"~v";

/// Reads one model's `data hash, collections...` from a loading function's reply.
pub(super) fn decode_model(
    reply: &mut Reply,
    target: &ModelTarget,
    colls: &Collections,
) -> Result<ModelSnapshot, StoreError> {
    let schema: &ModelSchema = &target.schema;
    let mut snapshot = ModelSnapshot::defaults(schema);
    let scalars = reply.bytes_list()?;
    for pair in scalars.chunks_exact(2) {
        if pair[0] == VERSION_FIELD {
            snapshot.version = std::str::from_utf8(&pair[1])
                .ok()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| corrupt(&target.id, "~v", "the version is not a number".into()))?;
            continue;
        }
        let name = String::from_utf8_lossy(&pair[0]);
        // Hash fields the schema does not know (removed from it, or written by someone else)
        // are left alone.
        let Some(index) = schema.field_index(&name) else { continue };
        let Some((_, def)) = schema.field_at(index) else { continue };
        let FieldType::Scalar(kind) = def.ty else { continue };
        let value = Scalar::decode(kind, &pair[1]).map_err(|r| corrupt(&target.id, &name, r))?;
        snapshot.values[index] = FieldValue::Scalar(value);
    }
    for &index in &colls.field_indices {
        let Some((name, def)) = schema.field_at(index) else { continue };
        let raw = reply.bytes_list()?;
        snapshot.values[index] = match def.ty {
            FieldType::List(kind) => FieldValue::List(
                raw.iter()
                    .map(|b| Scalar::decode(kind, b))
                    .collect::<Result<_, _>>()
                    .map_err(|r| corrupt(&target.id, name, r))?,
            ),
            FieldType::Dict(kind) => FieldValue::Dict(
                raw.chunks_exact(2)
                    .map(|p| Ok((String::from_utf8_lossy(&p[0]).into_owned(), Scalar::decode(kind, &p[1])?)))
                    .collect::<Result<_, String>>()
                    .map_err(|r| corrupt(&target.id, name, r))?,
            ),
            FieldType::Scalar(_) => continue,
        };
    }
    Ok(snapshot)
}

/// Maps a `{'WRONGTYPE', model, key, found}` reply to an error.
pub(super) fn wrong_type(reply: &mut Reply, targets: &[ModelTarget]) -> StoreError {
    let model = model_named(reply, targets);
    let key = reply.text().unwrap_or_default();
    let found = reply.text().unwrap_or_default();
    StoreError::Corrupt {
        model,
        field: key.rsplit(':').next().unwrap_or_default().to_owned(),
        reason: format!("key `{key}` holds a Redis {found}, not the type the schema needs"),
    }
}

/// The model an error reply names by its 1-based index in `targets`.
fn model_named(reply: &mut Reply, targets: &[ModelTarget]) -> ModelId {
    let model = reply.int().ok().and_then(|i| usize::try_from(i - 1).ok()).and_then(|i| targets.get(i));
    model.map(|t| t.id.clone()).unwrap_or_else(|| ModelId::new("?", "?"))
}

/// Maps a `{'CORRUPT', model, field, reason}` reply (an engine field of the data hash that does
/// not hold what it must) to an error.
pub(super) fn corrupt_field(reply: &mut Reply, targets: &[ModelTarget]) -> StoreError {
    let model = model_named(reply, targets);
    let field = reply.text().unwrap_or_default();
    let reason = reply.text().unwrap_or_default();
    StoreError::Corrupt { model, field, reason }
}

/// Decodes a committed record's text, `C<version>,...` + newline + payload.
pub(super) fn decode_record(text: &str) -> Result<StoredRecord, StoreError> {
    let bad =
        || StoreError::Backend(format!("malformed idempotency record {:?}", text.chars().take(80).collect::<String>()));
    let body = text.strip_prefix('C').ok_or_else(bad)?;
    let (versions, payload) = body.split_once('\n').ok_or_else(bad)?;
    let versions = if versions.is_empty() {
        Vec::new()
    } else {
        versions.split(',').map(|v| v.parse::<u64>().map_err(|_| bad())).collect::<Result<_, _>>()?
    };
    Ok(StoredRecord { versions, payload: payload.to_owned() })
}

/// Converts a Redis error into a store error, keeping connection trouble and the server's
/// "not now" replies retryable.
pub(crate) fn redis_error(e: redis::RedisError) -> StoreError {
    if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() || says_not_now(&e) {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Backend(e.to_string())
    }
}

/// Whether the server refused the command for now, before running it: still loading its data
/// after a restart (`LOADING`, which the chaos suite met after every Redis restart), a slot in
/// migration (`TRYAGAIN`), a cluster or primary not reachable (`CLUSTERDOWN`, `MASTERDOWN`), or
/// a redirection the cluster client was still following when its retries ran out (`ASK`,
/// `MOVED`: during a slot migration, a multi-key call goes `ASK` on the source, `TRYAGAIN` on
/// the target and back while its keys are split; `tests/all/cluster_faults.rs` met both as
/// internal errors before). A node that redirects did not run the command, so it is retried.
fn says_not_now(e: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    matches!(
        e.kind(),
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::MasterDown
                | ServerErrorKind::Ask
                | ServerErrorKind::Moved
        )
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_server_that_is_loading_or_moving_a_slot_is_unavailable_not_broken() {
        use redis::{ErrorKind, RedisError, ServerErrorKind};
        for kind in [
            ServerErrorKind::BusyLoading,
            ServerErrorKind::TryAgain,
            ServerErrorKind::ClusterDown,
            ServerErrorKind::MasterDown,
            ServerErrorKind::Ask,
            ServerErrorKind::Moved,
        ] {
            let error = redis_error(RedisError::from((ErrorKind::Server(kind), "not now")));
            assert!(matches!(error, StoreError::Unavailable(_)), "{kind:?}: {error:?}");
        }
        let error = redis_error(RedisError::from((ErrorKind::Server(ServerErrorKind::ResponseError), "bad")));
        assert!(matches!(error, StoreError::Backend(_)), "{error:?}");
    }

    fn text(ops: &[Vec<u8>]) -> Vec<String> {
        ops.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect()
    }

    #[test]
    fn a_run_of_scalar_sets_is_one_op_and_order_is_kept_around_other_ops() {
        let schema = ModelSchema::from_toml(
            "name = \"Account\"\n[fields]\nbalance = { type = \"int\", default = 0 }\n\
             count = { type = \"int\", default = 7 }\nholder = { type = \"str\", default = \"\" }\n\
             log = { type = \"list<str>\" }\n",
        )
        .map(Arc::new)
        .unwrap_or_else(|e| panic!("schema: {e}"));
        let target = ModelTarget { id: ModelId::new("Account", "a"), schema };
        let set = |field: &str, value: Scalar| FieldChange::Set { field: field.into(), value };
        let changes = [
            set("balance", Scalar::Int(5)),
            set("holder", Scalar::Str("ada".into())),
            FieldChange::Increment { field: "count".into(), delta: 2 },
            set("balance", Scalar::Int(6)),
            FieldChange::ListAppend { field: "log".into(), items: vec![Scalar::Str("x".into())] },
            set("holder", Scalar::Str("bo".into())),
        ];
        let part = encode_changes(&KeyLayout::new("p"), &target, &changes);
        assert_eq!(part.op_count, 5);
        assert_eq!(part.keys, vec!["p:{Account:a}:list:log".to_owned()]);
        assert_eq!(
            text(&part.ops),
            [
                "HSET", "0", "balance", "4", "balance", "5", "holder", "ada", // one op for the run
                "HINCRBY", "0", "count", "3", "count", "2", "7", // with the schema default
                "HSET", "0", "balance", "2", "balance", "6", // a new run after the increment
                "RPUSH", "1", "log", "1", "x", //
                "HSET", "0", "holder", "2", "holder", "bo",
            ]
        );
    }
}
