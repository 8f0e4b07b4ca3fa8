//! Model handles and views on list and dict fields.

use crate::AccessError;
use crate::bindings::wasmtx::rule::models;
use crate::bindings::wasmtx::rule::types::{FieldType, Scalar, ScalarKind, Value};

/// A handle to one model the invocation declared, from [`Context::model`](crate::Context::model)
/// or [`Context::open`](crate::Context::open).
///
/// Reads see the rule's own earlier writes in the same invocation. Writes are buffered by the
/// engine and reach the store only if the rule returns `Ok` and the commit succeeds. Dropping
/// the handle releases it; it does not undo anything.
///
/// Every operation names a field of the model's schema and fails with
/// [`AccessError::UnknownField`] if there is no such field, or [`AccessError::TypeMismatch`]
/// if the operation does not fit the field's type.
#[derive(Debug)]
pub struct Model {
    inner: models::Model,
}

impl Model {
    pub(crate) fn from_wit(inner: models::Model) -> Self {
        Self { inner }
    }

    /// The model's key, for example `alice`.
    pub fn key(&self) -> String {
        self.inner.key()
    }

    /// The model's type (schema) name, for example `Account`.
    pub fn model_type(&self) -> String {
        self.inner.model_type()
    }

    /// The names and types of the fields of this model's schema, in schema order.
    pub fn fields(&self) -> Vec<(String, FieldType)> {
        self.inner.fields()
    }

    /// The whole value of a field of any type.
    pub fn get(&self, field: &str) -> Result<Value, AccessError> {
        self.inner.get(field)
    }

    /// Replaces the whole value of a field of any type: a [`Scalar`] for a scalar field, a
    /// `Vec<Scalar>` for a list field, a `BTreeMap<String, Scalar>` (or a [`Value::Dict`]) for
    /// a dict field.
    pub fn set(&self, field: &str, value: impl Into<Value>) -> Result<(), AccessError> {
        self.inner.set(field, &value.into())
    }

    /// Resets a field to its schema default.
    pub fn reset(&self, field: &str) -> Result<(), AccessError> {
        self.inner.reset(field)
    }

    /// The value of a scalar field.
    pub fn get_scalar(&self, field: &str) -> Result<Scalar, AccessError> {
        self.inner.get_scalar(field)
    }

    /// Assigns a scalar field: `model.set_scalar("name", "Ada")`.
    pub fn set_scalar(&self, field: &str, value: impl Into<Scalar>) -> Result<(), AccessError> {
        self.inner.set_scalar(field, &value.into())
    }

    /// The value of an `int` field.
    pub fn get_int(&self, field: &str) -> Result<i64, AccessError> {
        let value = self.get_scalar(field)?;
        value.as_int().ok_or_else(|| mismatch(field, ScalarKind::Int, &value))
    }

    /// The value of a `float` field.
    pub fn get_float(&self, field: &str) -> Result<f64, AccessError> {
        let value = self.get_scalar(field)?;
        value.as_float().ok_or_else(|| mismatch(field, ScalarKind::Float, &value))
    }

    /// The value of a `bool` field.
    pub fn get_bool(&self, field: &str) -> Result<bool, AccessError> {
        let value = self.get_scalar(field)?;
        value.as_bool().ok_or_else(|| mismatch(field, ScalarKind::Boolean, &value))
    }

    /// The value of a `str` field.
    pub fn get_str(&self, field: &str) -> Result<String, AccessError> {
        match self.get_scalar(field)? {
            Scalar::Str(s) => Ok(s),
            other => Err(mismatch(field, ScalarKind::Str, &other)),
        }
    }

    /// The value of a `bytes` field.
    pub fn get_bytes(&self, field: &str) -> Result<Vec<u8>, AccessError> {
        match self.get_scalar(field)? {
            Scalar::Bytes(b) => Ok(b),
            other => Err(mismatch(field, ScalarKind::Bytes, &other)),
        }
    }

    /// Assigns an `int` field.
    pub fn set_int(&self, field: &str, value: i64) -> Result<(), AccessError> {
        self.set_scalar(field, value)
    }

    /// Assigns a `float` field.
    pub fn set_float(&self, field: &str, value: f64) -> Result<(), AccessError> {
        self.set_scalar(field, value)
    }

    /// Assigns a `bool` field.
    pub fn set_bool(&self, field: &str, value: bool) -> Result<(), AccessError> {
        self.set_scalar(field, value)
    }

    /// Assigns a `str` field.
    pub fn set_str(&self, field: &str, value: impl Into<String>) -> Result<(), AccessError> {
        self.set_scalar(field, Scalar::Str(value.into()))
    }

    /// Assigns a `bytes` field.
    pub fn set_bytes(&self, field: &str, value: impl Into<Vec<u8>>) -> Result<(), AccessError> {
        self.set_scalar(field, Scalar::Bytes(value.into()))
    }

    /// Adds `delta` (negative to subtract) to an `int` field and returns the new value.
    ///
    /// Prefer it to a read-modify-write: the engine checks it for overflow
    /// ([`AccessError::LimitExceeded`]), and in pipeline mode it commutes with concurrent
    /// invocations.
    pub fn increment(&self, field: &str, delta: i64) -> Result<i64, AccessError> {
        self.inner.increment(field, delta)
    }

    /// A view on the list field `field`; each of its methods is one host call.
    pub fn list<'a>(&'a self, field: &'a str) -> ListField<'a> {
        ListField { model: self, field }
    }

    /// A view on the dict field `field`; each of its methods is one host call.
    pub fn dict<'a>(&'a self, field: &'a str) -> DictField<'a> {
        DictField { model: self, field }
    }
}

fn mismatch(field: &str, expected: ScalarKind, found: &Scalar) -> AccessError {
    AccessError::type_mismatch(field, expected.name(), found.kind().name())
}

/// A list field of a [`Model`], from [`Model::list`]. Indices are `i64` with Python semantics:
/// negative indices count from the end.
#[derive(Debug, Clone, Copy)]
pub struct ListField<'a> {
    model: &'a Model,
    field: &'a str,
}

impl ListField<'_> {
    /// Appends one item.
    pub fn append(&self, item: impl Into<Scalar>) -> Result<(), AccessError> {
        self.model.inner.list_append(self.field, &item.into())
    }

    /// Appends several items, in order, in one host call.
    pub fn extend<I>(&self, items: I) -> Result<(), AccessError>
    where
        I: IntoIterator,
        I::Item: Into<Scalar>,
    {
        let items: Vec<Scalar> = items.into_iter().map(Into::into).collect();
        self.model.inner.list_extend(self.field, &items)
    }

    /// Inserts an item before `index`; out-of-range indices clamp to the ends, as in Python.
    pub fn insert(&self, index: i64, item: impl Into<Scalar>) -> Result<(), AccessError> {
        self.model.inner.list_insert(self.field, index, &item.into())
    }

    /// Removes and returns the last item. [`AccessError::IndexOutOfRange`] if the list is
    /// empty.
    pub fn pop(&self) -> Result<Scalar, AccessError> {
        self.model.inner.list_pop(self.field, None)
    }

    /// Removes and returns the item at `index`. [`AccessError::IndexOutOfRange`] if there is
    /// none.
    pub fn pop_at(&self, index: i64) -> Result<Scalar, AccessError> {
        self.model.inner.list_pop(self.field, Some(index))
    }

    /// Removes the first item equal to `item`. [`AccessError::NotFound`] if there is none.
    pub fn remove(&self, item: impl Into<Scalar>) -> Result<(), AccessError> {
        self.model.inner.list_remove(self.field, &item.into())
    }

    /// Removes every item.
    pub fn clear(&self) -> Result<(), AccessError> {
        self.model.inner.list_clear(self.field)
    }

    /// The number of items.
    pub fn len(&self) -> Result<u32, AccessError> {
        self.model.inner.list_len(self.field)
    }

    /// Whether the list has no items.
    pub fn is_empty(&self) -> Result<bool, AccessError> {
        Ok(self.len()? == 0)
    }

    /// The item at `index`. [`AccessError::IndexOutOfRange`] if there is none.
    pub fn get(&self, index: i64) -> Result<Scalar, AccessError> {
        self.model.inner.list_get(self.field, index)
    }

    /// All items, in order.
    pub fn items(&self) -> Result<Vec<Scalar>, AccessError> {
        match self.model.get(self.field)? {
            Value::List(items) => Ok(items),
            other => Err(AccessError::type_mismatch(self.field, "list", other.shape())),
        }
    }
}

/// A dict field of a [`Model`], from [`Model::dict`]: string keys, scalar values.
#[derive(Debug, Clone, Copy)]
pub struct DictField<'a> {
    model: &'a Model,
    field: &'a str,
}

impl DictField<'_> {
    /// The value under `key`, if any.
    pub fn get(&self, key: &str) -> Result<Option<Scalar>, AccessError> {
        self.model.inner.dict_get(self.field, key)
    }

    /// The value under `key` of a `dict<int>`, if any.
    pub fn get_int(&self, key: &str) -> Result<Option<i64>, AccessError> {
        match self.get(key)? {
            None => Ok(None),
            Some(Scalar::Int(v)) => Ok(Some(v)),
            Some(other) => Err(mismatch(self.field, ScalarKind::Int, &other)),
        }
    }

    /// The value under `key` of a `dict<str>`, if any.
    pub fn get_str(&self, key: &str) -> Result<Option<String>, AccessError> {
        match self.get(key)? {
            None => Ok(None),
            Some(Scalar::Str(v)) => Ok(Some(v)),
            Some(other) => Err(mismatch(self.field, ScalarKind::Str, &other)),
        }
    }

    /// Whether `key` has a value.
    pub fn contains_key(&self, key: &str) -> Result<bool, AccessError> {
        Ok(self.get(key)?.is_some())
    }

    /// Sets `key` to `value`.
    pub fn set(&self, key: &str, value: impl Into<Scalar>) -> Result<(), AccessError> {
        self.model.inner.dict_set(self.field, key, &value.into())
    }

    /// Sets several keys at once, in one host call (Python's `dict.update`).
    pub fn update<I, K, V>(&self, entries: I) -> Result<(), AccessError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<Scalar>,
    {
        let entries: Vec<(String, Scalar)> = entries.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        self.model.inner.dict_update(self.field, &entries)
    }

    /// Removes `key` and returns its value, or `None` if it was not there.
    pub fn pop(&self, key: &str) -> Result<Option<Scalar>, AccessError> {
        self.model.inner.dict_pop(self.field, key)
    }

    /// Removes every entry.
    pub fn clear(&self) -> Result<(), AccessError> {
        self.model.inner.dict_clear(self.field)
    }

    /// The keys, sorted.
    pub fn keys(&self) -> Result<Vec<String>, AccessError> {
        self.model.inner.dict_keys(self.field)
    }

    /// The number of entries.
    pub fn len(&self) -> Result<u32, AccessError> {
        self.model.inner.dict_len(self.field)
    }

    /// Whether the dict has no entries.
    pub fn is_empty(&self) -> Result<bool, AccessError> {
        Ok(self.len()? == 0)
    }

    /// All entries, sorted by key.
    pub fn entries(&self) -> Result<Vec<(String, Scalar)>, AccessError> {
        match self.model.get(self.field)? {
            Value::Dict(entries) => Ok(entries),
            other => Err(AccessError::type_mismatch(self.field, "dict", other.shape())),
        }
    }
}
