//! Key names of the collections and reply parsing shared by the baselines and the checks, and
//! the one-pipeline-per-slot batches that seed and check models (a cluster refuses a pipeline
//! across slots). Every call takes any [`ConnectionLike`], a single server's or a cluster's.

use anyhow::{Result, anyhow, bail};
use redis::aio::ConnectionLike;
use redis::{FromRedisValue, Value};
use wasmtx::store::redis::KeyLayout;
use wasmtx::{FieldType, ModelId, ScalarKind};

pub(super) fn skills_key(keys: &KeyLayout, id: &ModelId) -> String {
    keys.collection(id, "skills", FieldType::Dict(ScalarKind::Int)).unwrap_or_default()
}

pub(super) fn inventory_key(keys: &KeyLayout, id: &ModelId) -> String {
    keys.collection(id, "inventory", FieldType::List(ScalarKind::Str)).unwrap_or_default()
}

pub(super) fn events_key(keys: &KeyLayout, id: &ModelId) -> String {
    keys.collection(id, "events", FieldType::List(ScalarKind::Str)).unwrap_or_default()
}

/// `ids` grouped by hash slot, in slot order (the order of `ids` within a slot).
pub fn by_slot(ids: &[ModelId], slot: impl Fn(&ModelId) -> u16) -> Vec<Vec<&ModelId>> {
    let mut groups: std::collections::BTreeMap<u16, Vec<&ModelId>> = std::collections::BTreeMap::new();
    for id in ids {
        groups.entry(slot(id)).or_default().push(id);
    }
    groups.into_values().collect()
}

/// One pipeline per hash slot of `ids` (a cluster refuses a pipeline across slots), `add`
/// putting each model's commands in; the replies not ignored, slot after slot.
pub(super) async fn per_slot<T: FromRedisValue>(
    conn: &mut impl ConnectionLike,
    keys: &KeyLayout,
    ids: &[ModelId],
    add: impl Fn(&mut redis::Pipeline, &ModelId),
) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(ids.len());
    for group in by_slot(ids, |id| keys.slot(id)) {
        let mut pipe = redis::pipe();
        for id in group {
            add(&mut pipe, id);
        }
        out.extend(pipe.query_async::<Vec<T>>(conn).await?);
    }
    Ok(out)
}

pub(super) async fn hget_int(conn: &mut impl ConnectionLike, key: &str, field: &str) -> Result<i64> {
    let v: Option<i64> = redis::cmd("HGET").arg(key).arg(field).query_async(conn).await?;
    Ok(v.unwrap_or(0))
}

pub(super) fn int_or(value: &Value, default: i64) -> Result<i64> {
    match value {
        Value::Nil => Ok(default),
        Value::Int(i) => Ok(*i),
        Value::BulkString(b) => std::str::from_utf8(b)?.parse().map_err(|e| anyhow!("not an int: {e}")),
        other => bail!("unexpected reply {other:?}"),
    }
}

pub(super) fn text(value: &Value) -> Result<String> {
    match value {
        Value::BulkString(b) => Ok(String::from_utf8(b.clone())?),
        other => bail!("unexpected reply {other:?}"),
    }
}

pub(super) fn list(value: &Value) -> Result<&[Value]> {
    match value {
        Value::Array(items) => Ok(items),
        other => bail!("unexpected reply {other:?}"),
    }
}
