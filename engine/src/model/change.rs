//! Loaded model state and the field-level changes written back: the data both stores speak.

use std::sync::Arc;

use serde::Serialize;

use super::ids::ModelId;
use super::schema::ModelSchema;
use super::value::{FieldType, FieldValue, Scalar, ScalarKind};

/// A model's state as loaded from a store: every schema field (defaults for what the store
/// does not hold) and the model's version.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSnapshot {
    /// Field values in schema order.
    pub values: Vec<FieldValue>,
    /// The model's version: bumped by every commit that wrote to it, 0 if never written.
    pub version: u64,
}

impl ModelSnapshot {
    /// A model that does not exist yet: every field at its default, version 0.
    pub fn defaults(schema: &ModelSchema) -> Self {
        Self { values: schema.fields().map(|(_, f)| f.default.clone()).collect(), version: 0 }
    }

    /// The snapshot as a JSON object `{field: value}` in schema order.
    pub fn to_json(&self, schema: &ModelSchema) -> serde_json::Value {
        schema
            .fields()
            .zip(&self.values)
            .map(|((name, _), v)| (name.to_owned(), v.to_json()))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}

/// A model addressed with its resolved schema: what a store needs to read or write it.
#[derive(Debug, Clone)]
pub struct ModelTarget {
    /// The model's id.
    pub id: ModelId,
    /// Its schema (the store needs it to know list and dict fields and to decode values).
    pub schema: Arc<ModelSchema>,
}

/// One change to one field, keeping the intent of the operation so that a store can apply it
/// without overwriting concurrent changes to other fields or other items.
///
/// It has two renderings, one for people ([`Display`](std::fmt::Display): `balance = 70`,
/// `log += ["a"]`) and one for programs (`Serialize`: `{"op": "set", "field": "balance",
/// "value": 70}`, values as plain JSON).
#[derive(Debug, Clone, PartialEq)]
pub enum FieldChange {
    /// Assign a scalar field (`HSET`).
    Set {
        /// The field.
        field: String,
        /// Its new value.
        value: Scalar,
    },
    /// Add to an int field (`HINCRBY`); the stored value need not be known.
    Increment {
        /// The field.
        field: String,
        /// The amount to add.
        delta: i64,
    },
    /// Append items to a list (`RPUSH`).
    ListAppend {
        /// The field.
        field: String,
        /// The items, in order.
        items: Vec<Scalar>,
    },
    /// Keep only the first `len` items of a list (`LTRIM`): items were popped from its end.
    ListTruncate {
        /// The field.
        field: String,
        /// The number of items kept.
        len: u32,
    },
    /// Replace a whole list (`DEL` + `RPUSH`).
    ListReplace {
        /// The field.
        field: String,
        /// The new items.
        items: Vec<Scalar>,
    },
    /// Insert an item before `index` of the list as it is when the change applies.
    ListInsert {
        /// The field.
        field: String,
        /// Python-style index (negative from the end, clamped to the ends).
        index: i64,
        /// The item.
        item: Scalar,
    },
    /// Remove the item at `index` (or the last one) of the list as it is when the change applies.
    ListPop {
        /// The field.
        field: String,
        /// Python-style index, `None` for the last item.
        index: Option<i64>,
    },
    /// Remove the first item equal to `item` (`LREM key 1 item`).
    ListRemove {
        /// The field.
        field: String,
        /// The item.
        item: Scalar,
    },
    /// Set dict entries (`HSET`).
    DictSet {
        /// The field.
        field: String,
        /// The entries.
        entries: Vec<(String, Scalar)>,
    },
    /// Remove dict entries (`HDEL`).
    DictRemove {
        /// The field.
        field: String,
        /// The keys.
        keys: Vec<String>,
    },
    /// Empty a list or dict field (`DEL`).
    Clear {
        /// The field.
        field: String,
    },
}

impl FieldChange {
    /// Checks that this change fits `schema`: the field exists, the operation fits its type,
    /// every value is of the field's kind and floats are finite. Both stores call it before
    /// writing anything, so a change that does not fit is refused by either, whole batch
    /// included.
    ///
    /// # Errors
    /// Why the change does not fit, in words.
    pub fn check(&self, schema: &ModelSchema) -> Result<(), String> {
        let field = self.field();
        let ty =
            schema.field(field).map(|def| def.ty).ok_or_else(|| format!("the model type has no field `{field}`"))?;
        let fits = |value: &Scalar, kind: ScalarKind| -> Result<(), String> {
            if value.kind() != kind {
                return Err(format!("a {} value does not fit a field of {kind}", value.kind()));
            }
            match value {
                Scalar::Float(v) if !v.is_finite() => Err(format!("float {v} is not finite")),
                _ => Ok(()),
            }
        };
        let wrong = |op: &str, only: &str| Err(format!("cannot {op} a {ty} field: only {only}"));
        match (self, ty) {
            (Self::Set { value, .. }, FieldType::Scalar(kind)) => fits(value, kind),
            (Self::Set { .. }, _) => wrong("set", "scalar fields"),
            (Self::Increment { .. }, FieldType::Scalar(ScalarKind::Int)) => Ok(()),
            (Self::Increment { .. }, _) => wrong("increment", "int fields"),
            (Self::ListAppend { items, .. } | Self::ListReplace { items, .. }, FieldType::List(kind)) => {
                items.iter().try_for_each(|i| fits(i, kind))
            }
            (Self::ListInsert { item, .. } | Self::ListRemove { item, .. }, FieldType::List(kind)) => fits(item, kind),
            (Self::ListTruncate { .. } | Self::ListPop { .. }, FieldType::List(_)) => Ok(()),
            (
                Self::ListAppend { .. }
                | Self::ListReplace { .. }
                | Self::ListInsert { .. }
                | Self::ListRemove { .. }
                | Self::ListTruncate { .. }
                | Self::ListPop { .. },
                _,
            ) => wrong("change items of", "lists"),
            (Self::DictSet { entries, .. }, FieldType::Dict(kind)) => {
                entries.iter().try_for_each(|(_, v)| fits(v, kind))
            }
            (Self::DictRemove { .. }, FieldType::Dict(_)) => Ok(()),
            (Self::DictSet { .. } | Self::DictRemove { .. }, _) => wrong("change entries of", "dicts"),
            (Self::Clear { .. }, FieldType::List(_) | FieldType::Dict(_)) => Ok(()),
            (Self::Clear { .. }, FieldType::Scalar(_)) => wrong("clear", "lists and dicts"),
        }
    }

    /// The field this change writes.
    pub fn field(&self) -> &str {
        match self {
            Self::Set { field, .. }
            | Self::Increment { field, .. }
            | Self::ListAppend { field, .. }
            | Self::ListTruncate { field, .. }
            | Self::ListReplace { field, .. }
            | Self::ListInsert { field, .. }
            | Self::ListPop { field, .. }
            | Self::ListRemove { field, .. }
            | Self::DictSet { field, .. }
            | Self::DictRemove { field, .. }
            | Self::Clear { field } => field,
        }
    }
}

impl FieldChange {
    /// The operation's name in the JSON rendering: `set`, `increment`, `list_append`, ...
    pub fn op(&self) -> &'static str {
        match self {
            Self::Set { .. } => "set",
            Self::Increment { .. } => "increment",
            Self::ListAppend { .. } => "list_append",
            Self::ListTruncate { .. } => "list_truncate",
            Self::ListReplace { .. } => "list_replace",
            Self::ListInsert { .. } => "list_insert",
            Self::ListPop { .. } => "list_pop",
            Self::ListRemove { .. } => "list_remove",
            Self::DictSet { .. } => "dict_set",
            Self::DictRemove { .. } => "dict_remove",
            Self::Clear { .. } => "clear",
        }
    }
}

impl Serialize for FieldChange {
    /// `{"op", "field", ...}` with the operation's arguments; values as plain JSON (bytes as
    /// an array of numbers), dict entries as an object.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        use serde_json::Value;
        let items = |items: &[Scalar]| Value::Array(items.iter().map(Scalar::to_json).collect());
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("op", self.op())?;
        map.serialize_entry("field", self.field())?;
        match self {
            Self::Set { value, .. } => map.serialize_entry("value", &value.to_json())?,
            Self::Increment { delta, .. } => map.serialize_entry("delta", delta)?,
            Self::ListAppend { items: list, .. } | Self::ListReplace { items: list, .. } => {
                map.serialize_entry("items", &items(list))?;
            }
            Self::ListTruncate { len, .. } => map.serialize_entry("len", len)?,
            Self::ListInsert { index, item, .. } => {
                map.serialize_entry("index", index)?;
                map.serialize_entry("item", &item.to_json())?;
            }
            Self::ListPop { index, .. } => map.serialize_entry("index", index)?,
            Self::ListRemove { item, .. } => map.serialize_entry("item", &item.to_json())?,
            Self::DictSet { entries, .. } => {
                let entries: serde_json::Map<String, Value> =
                    entries.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
                map.serialize_entry("entries", &entries)?;
            }
            Self::DictRemove { keys, .. } => map.serialize_entry("keys", keys)?,
            Self::Clear { .. } => {}
        }
        map.end()
    }
}

impl std::fmt::Display for FieldChange {
    /// A short human form: `balance = 70`, `items += ["a"]`, `tags[k] = 1`, `del tags[k]`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |items: &[Scalar]| items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        match self {
            Self::Set { field, value } => write!(f, "{field} = {value}"),
            Self::Increment { field, delta } => write!(f, "{field} += {delta}"),
            Self::ListAppend { field, items } => write!(f, "{field} += [{}]", list(items)),
            Self::ListTruncate { field, len } => write!(f, "{field} = {field}[..{len}]"),
            Self::ListReplace { field, items } => write!(f, "{field} = [{}]", list(items)),
            Self::ListInsert { field, index, item } => write!(f, "{field}.insert({index}, {item})"),
            Self::ListPop { field, index: Some(i) } => write!(f, "{field}.pop({i})"),
            Self::ListPop { field, index: None } => write!(f, "{field}.pop()"),
            Self::ListRemove { field, item } => write!(f, "{field}.remove({item})"),
            Self::DictSet { field, entries } => {
                let entries: Vec<_> = entries.iter().map(|(k, v)| format!("{field}[{k:?}] = {v}")).collect();
                f.write_str(&entries.join(", "))
            }
            Self::DictRemove { field, keys } => {
                let keys: Vec<_> = keys.iter().map(|k| format!("del {field}[{k:?}]")).collect();
                f.write_str(&keys.join(", "))
            }
            Self::Clear { field } => write!(f, "{field}.clear()"),
        }
    }
}

/// The changes an invocation wrote to one model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelChanges {
    /// The model.
    pub model: ModelId,
    /// Its field changes, in the order they apply; empty if the rule did not change it.
    pub changes: Vec<FieldChange>,
}
