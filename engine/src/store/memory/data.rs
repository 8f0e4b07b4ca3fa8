//! One model's stored fields, and how each [`FieldChange`] applies to them.
//!
//! Values are kept exactly as the Redis store keeps them: every scalar as its stored text
//! ([`Scalar::encode`]), decoded with the schema on every load; scalar fields, list fields and
//! dict fields in three separate namespaces (Redis keeps them in the model's hash, in
//! `:list:<field>` keys and in `:dict:<field>` keys); an empty list or dict is not stored at
//! all. So a model written under one schema reads back under a changed schema the way it
//! would from Redis, and list items compare as Redis compares them (by stored text).

use std::collections::{BTreeMap, HashMap};

use crate::model::change::FieldChange;
use crate::model::schema::ModelSchema;
use crate::model::value::{FieldType, FieldValue, Scalar, ScalarKind};

/// Stored text of one scalar.
type Raw = Vec<u8>;

/// The fields of one model as stored.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct ModelData {
    scalars: HashMap<String, Raw>,
    lists: HashMap<String, Vec<Raw>>,
    dicts: HashMap<String, BTreeMap<String, Raw>>,
}

/// Why stored data does not decode under a schema: the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Undecodable {
    pub field: String,
    pub reason: String,
}

impl ModelData {
    /// Every schema field, in schema order: the stored value, else the schema default.
    pub fn read(&self, schema: &ModelSchema) -> Result<Vec<FieldValue>, Undecodable> {
        schema
            .fields()
            .map(|(name, def)| {
                let decoded = match def.ty {
                    FieldType::Scalar(kind) => {
                        self.scalars.get(name).map(|raw| decode(kind, raw).map(FieldValue::Scalar))
                    }
                    FieldType::List(kind) => self.lists.get(name).map(|items| {
                        items.iter().map(|raw| decode(kind, raw)).collect::<Result<_, _>>().map(FieldValue::List)
                    }),
                    FieldType::Dict(kind) => self.dicts.get(name).map(|entries| {
                        entries
                            .iter()
                            .map(|(key, raw)| decode(kind, raw).map(|v| (key.clone(), v)))
                            .collect::<Result<_, _>>()
                            .map(FieldValue::Dict)
                    }),
                };
                decoded
                    .unwrap_or_else(|| Ok(def.default.clone()))
                    .map_err(|reason| Undecodable { field: name.to_owned(), reason })
            })
            .collect()
    }

    /// Applies one change, or says why it cannot apply (to the data as it is now, after the
    /// changes applied before it). On error the data may be half-changed: callers apply to a
    /// copy and drop it.
    pub fn apply(&mut self, schema: &ModelSchema, change: &FieldChange) -> Result<(), String> {
        change.check(schema)?;
        let field = change.field();
        match change {
            FieldChange::Set { value, .. } => {
                self.scalars.insert(field.to_owned(), value.encode());
            }
            FieldChange::Increment { delta, .. } => self.increment(schema, field, *delta)?,
            FieldChange::ListAppend { items, .. } => {
                self.list(field).extend(items.iter().map(Scalar::encode));
            }
            FieldChange::ListTruncate { len, .. } => {
                self.list(field).truncate(usize::try_from(*len).unwrap_or(usize::MAX));
            }
            FieldChange::ListReplace { items, .. } => {
                *self.list(field) = items.iter().map(Scalar::encode).collect();
            }
            FieldChange::ListInsert { index, item, .. } => {
                let list = self.list(field);
                let at = insert_position(*index, list.len());
                list.insert(at, item.encode());
            }
            FieldChange::ListPop { index, .. } => {
                let list = self.list(field);
                let at = pop_position(*index, list.len())?;
                list.remove(at);
            }
            FieldChange::ListRemove { item, .. } => {
                let raw = item.encode();
                let list = self.list(field);
                let at = list.iter().position(|stored| *stored == raw).ok_or("item to remove is not in the list")?;
                list.remove(at);
            }
            FieldChange::DictSet { entries, .. } => {
                let dict = self.dicts.entry(field.to_owned()).or_default();
                dict.extend(entries.iter().map(|(key, value)| (key.clone(), value.encode())));
            }
            FieldChange::DictRemove { keys, .. } => {
                if let Some(dict) = self.dicts.get_mut(field) {
                    for key in keys {
                        dict.remove(key);
                    }
                }
            }
            FieldChange::Clear { .. } => {
                self.lists.remove(field);
                self.dicts.remove(field);
            }
        }
        self.forget_if_empty(field);
        Ok(())
    }

    /// `HINCRBY` semantics, except that a field never written starts from its schema default
    /// (as the Redis commit script does), not from 0.
    fn increment(&mut self, schema: &ModelSchema, field: &str, delta: i64) -> Result<(), String> {
        let current = match self.scalars.get(field) {
            Some(raw) => parse_int(raw)
                .ok_or_else(|| format!("stored value `{}` is not an int", String::from_utf8_lossy(raw)))?,
            None => match schema.field(field).map(|f| &f.default) {
                Some(FieldValue::Scalar(Scalar::Int(default))) => *default,
                _ => 0,
            },
        };
        let sum = current.checked_add(delta).ok_or("increment would overflow a 64-bit int")?;
        self.scalars.insert(field.to_owned(), Scalar::Int(sum).encode());
        Ok(())
    }

    fn list(&mut self, field: &str) -> &mut Vec<Raw> {
        self.lists.entry(field.to_owned()).or_default()
    }

    /// Drops an emptied list or dict: like Redis, an empty collection is a missing one.
    fn forget_if_empty(&mut self, field: &str) {
        if self.lists.get(field).is_some_and(Vec::is_empty) {
            self.lists.remove(field);
        }
        if self.dicts.get(field).is_some_and(BTreeMap::is_empty) {
            self.dicts.remove(field);
        }
    }
}

fn decode(kind: ScalarKind, raw: &[u8]) -> Result<Scalar, String> {
    Scalar::decode(kind, raw)
}

/// An int as the Redis commit script accepts it: `-?[0-9]+` within 64 bits.
fn parse_int(raw: &[u8]) -> Option<i64> {
    let digits = raw.strip_prefix(b"-").unwrap_or(raw);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(raw).ok()?.parse().ok()
}

/// Where `insert(index, item)` puts the item in a list of `len` items: Python-style (negative
/// from the end) and clamped to the ends.
fn insert_position(index: i64, len: usize) -> usize {
    let len_i = i64::try_from(len).unwrap_or(i64::MAX);
    let from_start = if index < 0 { index.saturating_add(len_i) } else { index };
    usize::try_from(from_start.clamp(0, len_i)).unwrap_or(len)
}

/// Which item `pop(index)` removes from a list of `len` items (`None`: the last one).
fn pop_position(index: Option<i64>, len: usize) -> Result<usize, String> {
    if len == 0 {
        return Err("pop from an empty list".into());
    }
    let Some(index) = index else { return Ok(len - 1) };
    let len_i = i64::try_from(len).unwrap_or(i64::MAX);
    let from_start = if index < 0 { index.saturating_add(len_i) } else { index };
    usize::try_from(from_start)
        .ok()
        .filter(|&at| at < len)
        .ok_or_else(|| format!("pop index {index} out of range for length {len}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> ModelSchema {
        ModelSchema::builder("T")
            .field("n", FieldType::Scalar(ScalarKind::Int))
            .field("s", FieldType::Scalar(ScalarKind::Str))
            .field("l", FieldType::List(ScalarKind::Int))
            .field("d", FieldType::Dict(ScalarKind::Str))
            .build()
            .expect("valid schema")
    }

    fn list(values: &[i64]) -> FieldChange {
        FieldChange::ListReplace { field: "l".into(), items: values.iter().copied().map(Scalar::Int).collect() }
    }

    fn read_list(data: &ModelData, schema: &ModelSchema) -> Vec<Scalar> {
        match data.read(schema).expect("decodes").swap_remove(2) {
            FieldValue::List(items) => items,
            other => panic!("not a list: {other:?}"),
        }
    }

    #[test]
    fn insert_positions_are_python_style_and_clamped() {
        assert_eq!(insert_position(0, 3), 0);
        assert_eq!(insert_position(2, 3), 2);
        assert_eq!(insert_position(99, 3), 3);
        assert_eq!(insert_position(-1, 3), 2);
        assert_eq!(insert_position(-3, 3), 0);
        assert_eq!(insert_position(-99, 3), 0);
        assert_eq!(insert_position(i64::MIN, 3), 0);
        assert_eq!(insert_position(-1, 0), 0);
    }

    #[test]
    fn pop_positions_are_python_style_and_checked() {
        assert_eq!(pop_position(None, 3), Ok(2));
        assert_eq!(pop_position(Some(0), 3), Ok(0));
        assert_eq!(pop_position(Some(-1), 3), Ok(2));
        assert_eq!(pop_position(Some(-3), 3), Ok(0));
        assert!(pop_position(Some(3), 3).is_err());
        assert!(pop_position(Some(-4), 3).is_err());
        assert!(pop_position(Some(i64::MIN), 3).is_err());
        assert_eq!(pop_position(None, 0), Err("pop from an empty list".to_owned()));
    }

    #[test]
    fn list_changes_apply_in_order() -> Result<(), String> {
        let schema = schema();
        let mut data = ModelData::default();
        data.apply(&schema, &list(&[1, 2, 3]))?;
        data.apply(&schema, &FieldChange::ListInsert { field: "l".into(), index: -1, item: Scalar::Int(9) })?;
        data.apply(&schema, &FieldChange::ListPop { field: "l".into(), index: Some(0) })?;
        data.apply(&schema, &FieldChange::ListRemove { field: "l".into(), item: Scalar::Int(3) })?;
        assert_eq!(read_list(&data, &schema), [Scalar::Int(2), Scalar::Int(9)]);
        Ok(())
    }

    #[test]
    fn an_emptied_list_is_not_stored() -> Result<(), String> {
        let schema = schema();
        let mut data = ModelData::default();
        data.apply(&schema, &list(&[1]))?;
        data.apply(&schema, &FieldChange::ListPop { field: "l".into(), index: None })?;
        assert!(data.lists.is_empty());
        data.apply(&schema, &FieldChange::DictSet { field: "d".into(), entries: vec![("k".into(), "v".into())] })?;
        data.apply(&schema, &FieldChange::DictRemove { field: "d".into(), keys: vec!["k".into()] })?;
        assert!(data.dicts.is_empty());
        Ok(())
    }

    #[test]
    fn increments_check_the_stored_text_and_overflow() -> Result<(), String> {
        let schema = schema();
        let mut data = ModelData::default();
        let inc = |delta| FieldChange::Increment { field: "n".into(), delta };
        data.apply(&schema, &inc(5))?;
        data.apply(&schema, &inc(-7))?;
        assert_eq!(data.scalars.get("n").map(Vec::as_slice), Some(&b"-2"[..]));
        data.scalars.insert("n".into(), b"12x".to_vec());
        assert_eq!(data.apply(&schema, &inc(1)), Err("stored value `12x` is not an int".to_owned()));
        data.scalars.insert("n".into(), i64::MAX.to_string().into_bytes());
        assert!(data.apply(&schema, &inc(1)).is_err_and(|e| e.contains("overflow")));
        Ok(())
    }

    #[test]
    fn changes_that_do_not_fit_the_schema_are_refused() {
        let schema = schema();
        let mut data = ModelData::default();
        let refused = [
            FieldChange::Set { field: "n".into(), value: "text".into() },
            FieldChange::Set { field: "l".into(), value: Scalar::Int(1) },
            FieldChange::Increment { field: "s".into(), delta: 1 },
            FieldChange::ListAppend { field: "l".into(), items: vec![Scalar::Int(1), "x".into()] },
            FieldChange::ListAppend { field: "d".into(), items: vec![] },
            FieldChange::DictSet { field: "d".into(), entries: vec![("k".into(), Scalar::Int(1))] },
            FieldChange::Clear { field: "n".into() },
            FieldChange::Set { field: "nope".into(), value: Scalar::Int(1) },
        ];
        for change in refused {
            assert!(data.apply(&schema, &change).is_err(), "{change:?} should be refused");
        }
        assert!(data.scalars.is_empty() && data.lists.is_empty() && data.dicts.is_empty());
    }

    #[test]
    fn stored_text_reads_back_under_a_changed_schema_as_redis_would() -> Result<(), String> {
        let before = schema();
        let mut data = ModelData::default();
        data.apply(&before, &FieldChange::Set { field: "n".into(), value: Scalar::Int(7) })?;
        data.apply(&before, &FieldChange::Set { field: "s".into(), value: "seven".into() })?;
        let after = ModelSchema::builder("T")
            .field("n", FieldType::Scalar(ScalarKind::Float))
            .field("s", FieldType::Scalar(ScalarKind::Int))
            .build()
            .map_err(|e| e.to_string())?;
        let err = data.read(&after).expect_err("`seven` is not an int");
        assert_eq!(err.field, "s");
        let floats_only = ModelSchema::builder("T").field("n", FieldType::Scalar(ScalarKind::Float)).build();
        let values = data.read(&floats_only.map_err(|e| e.to_string())?).map_err(|e| e.reason)?;
        assert_eq!(values, [FieldValue::Scalar(Scalar::Float(7.0))]);
        Ok(())
    }
}
