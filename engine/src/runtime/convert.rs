//! Conversions between the generated WIT types and the engine's model and error types.

use super::bindings::wasmtx::rule::types as wit;
use crate::error::AccessError;
use crate::invocation::Mode;
use crate::model::value::{FieldType, FieldValue, Scalar, ScalarKind};

pub(crate) fn scalar_from_wit(s: wit::Scalar) -> Scalar {
    match s {
        wit::Scalar::Boolean(v) => Scalar::Bool(v),
        wit::Scalar::Int(v) => Scalar::Int(v),
        wit::Scalar::Float(v) => Scalar::Float(v),
        wit::Scalar::Str(v) => Scalar::Str(v),
        wit::Scalar::Bytes(v) => Scalar::Bytes(v),
    }
}

pub(crate) fn scalar_to_wit(s: Scalar) -> wit::Scalar {
    match s {
        Scalar::Bool(v) => wit::Scalar::Boolean(v),
        Scalar::Int(v) => wit::Scalar::Int(v),
        Scalar::Float(v) => wit::Scalar::Float(v),
        Scalar::Str(v) => wit::Scalar::Str(v),
        Scalar::Bytes(v) => wit::Scalar::Bytes(v),
    }
}

pub(crate) fn scalars_from_wit(items: Vec<wit::Scalar>) -> Vec<Scalar> {
    items.into_iter().map(scalar_from_wit).collect()
}

pub(crate) fn entries_from_wit(entries: Vec<(String, wit::Scalar)>) -> Vec<(String, Scalar)> {
    entries.into_iter().map(|(k, v)| (k, scalar_from_wit(v))).collect()
}

/// A guest value; a dict given with a key twice keeps the last value, as Python's `dict()`.
pub(crate) fn value_from_wit(v: wit::Value) -> FieldValue {
    match v {
        wit::Value::Scalar(s) => FieldValue::Scalar(scalar_from_wit(s)),
        wit::Value::List(items) => FieldValue::List(scalars_from_wit(items)),
        wit::Value::Dict(entries) => FieldValue::Dict(entries_from_wit(entries).into_iter().collect()),
    }
}

pub(crate) fn value_to_wit(v: &FieldValue) -> wit::Value {
    match v {
        FieldValue::Scalar(s) => wit::Value::Scalar(scalar_to_wit(s.clone())),
        FieldValue::List(items) => wit::Value::List(items.iter().cloned().map(scalar_to_wit).collect()),
        // A BTreeMap iterates in key order: the WIT promises sorted entries.
        FieldValue::Dict(map) => {
            wit::Value::Dict(map.iter().map(|(k, v)| (k.clone(), scalar_to_wit(v.clone()))).collect())
        }
    }
}

fn kind_to_wit(k: ScalarKind) -> wit::ScalarKind {
    match k {
        ScalarKind::Bool => wit::ScalarKind::Boolean,
        ScalarKind::Int => wit::ScalarKind::Int,
        ScalarKind::Float => wit::ScalarKind::Float,
        ScalarKind::Str => wit::ScalarKind::Str,
        ScalarKind::Bytes => wit::ScalarKind::Bytes,
    }
}

pub(crate) fn field_type_to_wit(t: FieldType) -> wit::FieldType {
    match t {
        FieldType::Scalar(k) => wit::FieldType::Scalar(kind_to_wit(k)),
        FieldType::List(k) => wit::FieldType::List(kind_to_wit(k)),
        FieldType::Dict(k) => wit::FieldType::Dict(kind_to_wit(k)),
    }
}

pub(crate) fn mode_to_wit(m: Mode) -> wit::Mode {
    match m {
        Mode::Lock => wit::Mode::Lock,
        Mode::Pipeline => wit::Mode::Pipeline,
        Mode::Optimistic => wit::Mode::Optimistic,
        // The protocol shows a rule the mode its attempt runs in, never `Adaptive`; a context
        // built by hand with it runs like optimistic (no lock is held).
        Mode::Adaptive => wit::Mode::Optimistic,
    }
}

pub(crate) fn access_error_to_wit(e: &AccessError) -> wit::AccessError {
    match e.clone() {
        AccessError::UnknownField { field } => wit::AccessError::UnknownField(field),
        AccessError::TypeMismatch { field, expected, found } => {
            wit::AccessError::TypeMismatch(wit::TypeMismatch { field, expected, found })
        }
        AccessError::IndexOutOfRange { field, index, len } => {
            wit::AccessError::IndexOutOfRange(wit::IndexOutOfRange { field, index, len })
        }
        AccessError::NotFound { what } => wit::AccessError::NotFound(what),
        AccessError::Denied { reason } => wit::AccessError::Denied(reason),
        AccessError::LimitExceeded { limit } => wit::AccessError::LimitExceeded(limit),
    }
}

pub(crate) fn access_error_from_wit(e: wit::AccessError) -> AccessError {
    match e {
        wit::AccessError::UnknownField(field) => AccessError::UnknownField { field },
        wit::AccessError::TypeMismatch(wit::TypeMismatch { field, expected, found }) => {
            AccessError::TypeMismatch { field, expected, found }
        }
        wit::AccessError::IndexOutOfRange(wit::IndexOutOfRange { field, index, len }) => {
            AccessError::IndexOutOfRange { field, index, len }
        }
        wit::AccessError::NotFound(what) => AccessError::NotFound { what },
        wit::AccessError::Denied(reason) => AccessError::Denied { reason },
        wit::AccessError::LimitExceeded(limit) => AccessError::LimitExceeded { limit },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_errors_round_trip() {
        let errors = [
            AccessError::UnknownField { field: "a".into() },
            AccessError::TypeMismatch { field: "a".into(), expected: "int".into(), found: "str".into() },
            AccessError::IndexOutOfRange { field: "a".into(), index: -3, len: 2 },
            AccessError::NotFound { what: "x".into() },
            AccessError::Denied { reason: "no".into() },
            AccessError::LimitExceeded { limit: "big".into() },
        ];
        for e in errors {
            assert_eq!(access_error_from_wit(access_error_to_wit(&e)), e);
        }
    }

    #[test]
    fn values_round_trip_and_dicts_keep_the_last_duplicate() {
        let v = FieldValue::Dict([("a".to_owned(), Scalar::Int(1)), ("b".to_owned(), Scalar::Int(2))].into());
        assert_eq!(value_from_wit(value_to_wit(&v)), v);
        let dup = wit::Value::Dict(vec![("a".into(), wit::Scalar::Int(1)), ("a".into(), wit::Scalar::Int(2))]);
        assert_eq!(value_from_wit(dup), FieldValue::Dict([("a".to_owned(), Scalar::Int(2))].into()));
    }
}
