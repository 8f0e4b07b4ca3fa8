//! The Rust types a typed model's fields may have, and the writes that save their changes.

use std::collections::BTreeMap;

use crate::bindings::wasmtx::rule::types::{FieldType, Scalar, ScalarKind, Value};
use crate::{AccessError, Model};

/// One host operation that saves (part of) a field's change, as [`ModelField::writes`] plans
/// it. [`Tracked::save`](crate::Tracked::save) sends them in order.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldWrite {
    /// Replace the whole value (`set`, or `set-scalar` for a scalar).
    Set(Value),
    /// Add to an `int` field (`increment`): commutes with concurrent invocations in pipeline
    /// mode.
    Increment(i64),
    /// Append items to a list (`list-extend`).
    ListExtend(Vec<Scalar>),
    /// Remove the last item of a list (`list-pop`).
    ListPop,
    /// Remove every item of a list (`list-clear`).
    ListClear,
    /// Set dict entries (`dict-update`).
    DictUpdate(Vec<(String, Scalar)>),
    /// Remove one dict entry (`dict-pop`).
    DictPop(String),
    /// Remove every entry of a dict (`dict-clear`).
    DictClear,
    /// Fail the save with this error, writing nothing more (a change that cannot be expressed,
    /// such as a [`Counter`](crate::Counter) that overflowed).
    Fail(AccessError),
}

impl FieldWrite {
    /// Sends this write for `field` through `model` (one host call).
    ///
    /// # Errors
    ///
    /// The host's [`AccessError`] (a limit, a type mismatch), or the error of a
    /// [`FieldWrite::Fail`].
    pub fn apply(&self, model: &Model, field: &str) -> Result<(), AccessError> {
        match self {
            Self::Set(Value::Scalar(value)) => model.set_scalar(field, value.clone()),
            Self::Set(value) => model.set(field, value.clone()),
            Self::Increment(delta) => model.increment(field, *delta).map(drop),
            Self::ListExtend(items) => model.list(field).extend(items.iter().cloned()),
            Self::ListPop => model.list(field).pop().map(drop),
            Self::ListClear => model.list(field).clear(),
            Self::DictUpdate(entries) => model.dict(field).update(entries.iter().cloned()),
            Self::DictPop(key) => model.dict(field).pop(key).map(drop),
            Self::DictClear => model.dict(field).clear(),
            Self::Fail(error) => Err(error.clone()),
        }
    }
}

/// A Rust type that can hold one model field: it names the schema type it needs, converts the
/// field's value, and plans the writes that turn an old value into a new one.
///
/// Implemented for `i64` (`int`), `f64` (`float`), `bool` (`bool`), `String` (`str`),
/// `Vec<u8>` (`bytes`), [`Counter`](crate::Counter) (`int`, saved as increments), `Vec<T>`
/// (`list<T>`) and `BTreeMap<String, T>` (`dict<T>`) for any [`ScalarItem`] `T`. Implement it
/// for your own types (an enum stored as a `str`, say) to use them in a
/// [`#[derive(Model)]`](derive@crate::Model) struct.
pub trait ModelField: Clone + PartialEq {
    /// The schema type of a field this type can hold.
    const FIELD_TYPE: FieldType;

    /// Converts the field's whole value; `None` if it does not have this type's shape.
    fn from_value(value: Value) -> Option<Self>;

    /// Plans the writes that turn the stored `old` value into `new`, calling `emit` for each,
    /// in order. Nothing if they are equal.
    fn writes(old: &Self, new: &Self, emit: &mut dyn FnMut(FieldWrite));
}

/// A Rust type that holds one scalar: the items of list fields and the values of dict fields.
///
/// Implemented for `i64` (`int`), `f64` (`float`), `bool` (`bool`), `String` (`str`) and
/// `Vec<u8>` (`bytes`).
pub trait ScalarItem: Clone + PartialEq {
    /// The scalar kind.
    const KIND: ScalarKind;

    /// Converts a scalar; `None` if it is of another kind.
    fn from_scalar(scalar: Scalar) -> Option<Self>;

    /// The scalar this value stands for.
    fn to_scalar(&self) -> Scalar;
}

macro_rules! scalar_items {
    ($($ty:ty => $kind:ident, $variant:ident);* $(;)?) => {
        $(
            impl ScalarItem for $ty {
                const KIND: ScalarKind = ScalarKind::$kind;

                fn from_scalar(scalar: Scalar) -> Option<Self> {
                    match scalar {
                        Scalar::$variant(v) => Some(v),
                        _ => None,
                    }
                }

                fn to_scalar(&self) -> Scalar {
                    Scalar::$variant(self.clone())
                }
            }

            /// A scalar field: saved as an assignment when it changed.
            impl ModelField for $ty {
                const FIELD_TYPE: FieldType = FieldType::Scalar(ScalarKind::$kind);

                fn from_value(value: Value) -> Option<Self> {
                    match value {
                        Value::Scalar(scalar) => Self::from_scalar(scalar),
                        _ => None,
                    }
                }

                fn writes(old: &Self, new: &Self, emit: &mut dyn FnMut(FieldWrite)) {
                    if old != new {
                        emit(FieldWrite::Set(Value::Scalar(new.to_scalar())));
                    }
                }
            }
        )*
    };
}

scalar_items! {
    i64 => Int, Int;
    f64 => Float, Float;
    bool => Boolean, Boolean;
    String => Str, Str;
    Vec<u8> => Bytes, Bytes;
}

/// A list field, saved keeping the intent of what changed: items appended at the end become one
/// `list-extend` of the new tail, items removed from the end become `list-pop`s, an emptied
/// list a `list-clear`; any other change replaces the whole list.
impl<T: ScalarItem> ModelField for Vec<T> {
    const FIELD_TYPE: FieldType = FieldType::List(T::KIND);

    fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::List(items) => items.into_iter().map(T::from_scalar).collect(),
            _ => None,
        }
    }

    fn writes(old: &Self, new: &Self, emit: &mut dyn FnMut(FieldWrite)) {
        if old == new {
            return;
        }
        if new.is_empty() {
            emit(FieldWrite::ListClear);
        } else if new.starts_with(old) {
            emit(FieldWrite::ListExtend(new[old.len()..].iter().map(T::to_scalar).collect()));
        } else if old.starts_with(new) {
            for _ in new.len()..old.len() {
                emit(FieldWrite::ListPop);
            }
        } else {
            emit(FieldWrite::Set(Value::List(new.iter().map(T::to_scalar).collect())));
        }
    }
}

/// A dict field, saved entry by entry: removed keys become `dict-pop`s, new and changed entries
/// one `dict-update`, an emptied dict a `dict-clear`. Unchanged entries are not written.
impl<T: ScalarItem> ModelField for BTreeMap<String, T> {
    const FIELD_TYPE: FieldType = FieldType::Dict(T::KIND);

    fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::Dict(entries) => entries.into_iter().map(|(k, v)| T::from_scalar(v).map(|v| (k, v))).collect(),
            _ => None,
        }
    }

    fn writes(old: &Self, new: &Self, emit: &mut dyn FnMut(FieldWrite)) {
        if old == new {
            return;
        }
        if new.is_empty() {
            emit(FieldWrite::DictClear);
            return;
        }
        for key in old.keys().filter(|k| !new.contains_key(*k)) {
            emit(FieldWrite::DictPop(key.clone()));
        }
        let changed: Vec<(String, Scalar)> =
            new.iter().filter(|(k, v)| old.get(*k) != Some(*v)).map(|(k, v)| (k.clone(), v.to_scalar())).collect();
        if !changed.is_empty() {
            emit(FieldWrite::DictUpdate(changed));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan<F: ModelField>(old: &F, new: &F) -> Vec<FieldWrite> {
        let mut out = Vec::new();
        F::writes(old, new, &mut |w| out.push(w));
        out
    }

    fn strs(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn scalars_are_assigned_only_when_changed() {
        assert_eq!(plan(&5_i64, &5), []);
        assert_eq!(plan(&5_i64, &6), [FieldWrite::Set(Value::Scalar(Scalar::Int(6)))]);
        assert_eq!(plan(&"a".to_owned(), &"b".to_owned()), [FieldWrite::Set(Value::Scalar(Scalar::Str("b".into())))]);
        assert_eq!(plan(&vec![1_u8], &vec![2_u8]), [FieldWrite::Set(Value::Scalar(Scalar::Bytes(vec![2])))]);
        assert_eq!(plan(&true, &true), []);
    }

    #[test]
    fn lists_keep_append_and_pop_intent() {
        let old = strs(&["a", "b"]);
        assert_eq!(plan(&old, &old), []);
        assert_eq!(plan(&old, &strs(&["a", "b", "c", "d"])), [FieldWrite::ListExtend(vec!["c".into(), "d".into()])]);
        assert_eq!(plan(&Vec::new(), &strs(&["x"])), [FieldWrite::ListExtend(vec!["x".into()])]);
        assert_eq!(plan(&old, &strs(&[])), [FieldWrite::ListClear]);
        assert_eq!(plan(&strs(&["a", "b", "c"]), &strs(&["a"])), [FieldWrite::ListPop, FieldWrite::ListPop]);
        assert_eq!(
            plan(&old, &strs(&["b", "a"])),
            [FieldWrite::Set(Value::List(vec!["b".into(), "a".into()]))],
            "a reorder replaces the list"
        );
    }

    #[test]
    fn dicts_write_changed_keys_only() {
        let old: BTreeMap<String, i64> = [("a".to_owned(), 1), ("b".to_owned(), 2), ("c".to_owned(), 3)].into();
        let mut new = old.clone();
        assert_eq!(plan(&old, &new), []);
        new.remove("a");
        *new.entry("b".into()).or_insert(0) += 10;
        new.insert("d".into(), 4);
        assert_eq!(
            plan(&old, &new),
            [
                FieldWrite::DictPop("a".into()),
                FieldWrite::DictUpdate(vec![("b".into(), Scalar::Int(12)), ("d".into(), Scalar::Int(4))]),
            ]
        );
        assert_eq!(plan(&old, &BTreeMap::new()), [FieldWrite::DictClear]);
    }

    #[test]
    fn values_convert_only_from_their_own_shape() {
        assert_eq!(i64::from_value(Value::Scalar(Scalar::Int(3))), Some(3));
        assert_eq!(i64::from_value(Value::Scalar(Scalar::Str("3".into()))), None);
        assert_eq!(i64::from_value(Value::List(vec![])), None);
        assert_eq!(Vec::<String>::from_value(Value::List(vec!["a".into()])), Some(strs(&["a"])));
        assert_eq!(Vec::<i64>::from_value(Value::List(vec!["a".into()])), None);
        assert_eq!(
            BTreeMap::<String, bool>::from_value(Value::Dict(vec![("k".into(), Scalar::Boolean(true))])),
            Some([("k".to_owned(), true)].into())
        );
        assert_eq!(<Vec<u8>>::FIELD_TYPE, FieldType::Scalar(ScalarKind::Bytes));
        assert_eq!(<Vec<Vec<u8>>>::FIELD_TYPE, FieldType::List(ScalarKind::Bytes));
        assert_eq!(<BTreeMap<String, f64>>::FIELD_TYPE, FieldType::Dict(ScalarKind::Float));
    }
}
