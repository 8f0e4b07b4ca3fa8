//! Conversions and helpers on the WIT value types, and the SDK's error types.

use std::collections::BTreeMap;
use std::fmt;

use crate::bindings::wasmtx::rule::types::{FieldType, IndexOutOfRange, Mode, Scalar, ScalarKind, TypeMismatch, Value};

/// Why a model operation failed. Every variant is a normal, recoverable result: the rule may
/// handle it, or propagate it with `?` as [`RuleError::Access`], which rejects the invocation.
///
/// This is the WIT `access-error` variant; its shape is fixed by the contract.
#[derive(Debug, Clone, PartialEq)]
pub enum AccessError {
    /// The model type has no field with this name.
    UnknownField(String),
    /// The operation does not fit the field's type (for example `increment` on a string, or
    /// appending a `str` to a list of `int`).
    TypeMismatch(TypeMismatch),
    /// A list index outside the list.
    IndexOutOfRange(IndexOutOfRange),
    /// A list value that is not there ([`ListField::remove`](crate::ListField::remove)).
    NotFound(String),
    /// The model was not declared by the invocation, or the operation is not allowed in this
    /// invocation (for example a write through a read-only model).
    Denied(String),
    /// A resource limit would be exceeded: list or dict length, value size, or an integer
    /// overflow. The message names the limit.
    LimitExceeded(String),
}

impl AccessError {
    /// A [`AccessError::TypeMismatch`] for `field`.
    pub fn type_mismatch(field: impl Into<String>, expected: impl Into<String>, found: impl Into<String>) -> Self {
        Self::TypeMismatch(TypeMismatch { field: field.into(), expected: expected.into(), found: found.into() })
    }
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownField(field) => write!(f, "unknown field `{field}`"),
            Self::TypeMismatch(m) => {
                write!(f, "type mismatch on field `{}`: expected {}, found {}", m.field, m.expected, m.found)
            }
            Self::IndexOutOfRange(i) => {
                write!(f, "index {} out of range for list `{}` of length {}", i.index, i.field, i.len)
            }
            Self::NotFound(what) => write!(f, "not found: {what}"),
            Self::Denied(why) => write!(f, "denied: {why}"),
            Self::LimitExceeded(limit) => write!(f, "limit exceeded: {limit}"),
        }
    }
}

impl std::error::Error for AccessError {}

/// Why a rule refused to complete. Any error means: write nothing.
///
/// This is the WIT `rule-error` variant; its shape is fixed by the contract. The invocation
/// fails with the error kind each variant names (the workspace's `ERRORS.md` lists every kind).
#[derive(Debug, Clone, PartialEq)]
pub enum RuleError {
    /// A business refusal, with a message for the caller (for example "Insufficient funds"):
    /// error kind `rejected`. Build it with [`reject`].
    Rejected(String),
    /// The input could not be understood by the rule (wrong JSON shape or values): error kind
    /// `invalid_input`. Build it with [`invalid_input`]; [`export_rule!`](crate::export_rule)
    /// returns it by itself when the input does not parse.
    InvalidInput(String),
    /// A model operation failed and the rule propagated it, usually with `?`: error kind
    /// `access`.
    Access(AccessError),
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rejected(message) => write!(f, "rejected: {message}"),
            Self::InvalidInput(message) => write!(f, "invalid input: {message}"),
            Self::Access(e) => write!(f, "model access failed: {e}"),
        }
    }
}

impl std::error::Error for RuleError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Access(e) => Some(e),
            Self::Rejected(_) | Self::InvalidInput(_) => None,
        }
    }
}

impl From<AccessError> for RuleError {
    fn from(e: AccessError) -> Self {
        Self::Access(e)
    }
}

/// The result type of a rule function.
pub type RuleResult<T> = Result<T, RuleError>;

/// A business refusal: `return Err(reject("Insufficient funds"))`.
pub fn reject(message: impl Into<String>) -> RuleError {
    RuleError::Rejected(message.into())
}

/// An input the rule cannot work with: `return Err(invalid_input("amount must be positive"))`.
pub fn invalid_input(message: impl Into<String>) -> RuleError {
    RuleError::InvalidInput(message.into())
}

impl Scalar {
    /// The kind of this scalar.
    pub fn kind(&self) -> ScalarKind {
        match self {
            Self::Boolean(_) => ScalarKind::Boolean,
            Self::Int(_) => ScalarKind::Int,
            Self::Float(_) => ScalarKind::Float,
            Self::Str(_) => ScalarKind::Str,
            Self::Bytes(_) => ScalarKind::Bytes,
        }
    }

    /// The integer, if this is an `int`.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Self::Int(v) => Some(*v),
            _ => None,
        }
    }

    /// The float, if this is a `float`.
    pub fn as_float(&self) -> Option<f64> {
        match self {
            Self::Float(v) => Some(*v),
            _ => None,
        }
    }

    /// The boolean, if this is a `bool`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Self::Boolean(v) => Some(*v),
            _ => None,
        }
    }

    /// The string, if this is a `str`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(v) => Some(v),
            _ => None,
        }
    }

    /// The bytes, if this is a `bytes`.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Self::Bytes(v) => Some(v),
            _ => None,
        }
    }

    /// The string, if this is a `str`, without copying it.
    pub fn into_string(self) -> Option<String> {
        match self {
            Self::Str(v) => Some(v),
            _ => None,
        }
    }

    /// The bytes, if this is a `bytes`, without copying them.
    pub fn into_bytes(self) -> Option<Vec<u8>> {
        match self {
            Self::Bytes(v) => Some(v),
            _ => None,
        }
    }
}

impl fmt::Display for Scalar {
    /// Booleans, numbers and strings as themselves; bytes as lowercase hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Boolean(v) => write!(f, "{v}"),
            Self::Int(v) => write!(f, "{v}"),
            Self::Float(v) => write!(f, "{v}"),
            Self::Str(v) => f.write_str(v),
            Self::Bytes(v) => v.iter().try_for_each(|b| write!(f, "{b:02x}")),
        }
    }
}

macro_rules! scalar_from {
    ($($ty:ty => |$v:ident| $e:expr),* $(,)?) => {
        $(
            impl From<$ty> for Scalar {
                fn from($v: $ty) -> Self {
                    $e
                }
            }
        )*
    };
}

scalar_from! {
    i64 => |v| Scalar::Int(v),
    i32 => |v| Scalar::Int(v.into()),
    u32 => |v| Scalar::Int(v.into()),
    f64 => |v| Scalar::Float(v),
    bool => |v| Scalar::Boolean(v),
    &str => |v| Scalar::Str(v.to_owned()),
    String => |v| Scalar::Str(v),
    &String => |v| Scalar::Str(v.clone()),
    Vec<u8> => |v| Scalar::Bytes(v),
    &[u8] => |v| Scalar::Bytes(v.to_vec()),
}

impl Value {
    /// The scalar, if this is the value of a scalar field.
    pub fn as_scalar(&self) -> Option<&Scalar> {
        match self {
            Self::Scalar(v) => Some(v),
            _ => None,
        }
    }

    /// The items, if this is the value of a list field.
    pub fn as_list(&self) -> Option<&[Scalar]> {
        match self {
            Self::List(v) => Some(v),
            _ => None,
        }
    }

    /// The entries sorted by key, if this is the value of a dict field.
    pub fn as_dict(&self) -> Option<&[(String, Scalar)]> {
        match self {
            Self::Dict(v) => Some(v),
            _ => None,
        }
    }

    /// What kind of field this value belongs to, in words (`"scalar"`, `"list"`, `"dict"`).
    pub fn shape(&self) -> &'static str {
        match self {
            Self::Scalar(_) => "scalar",
            Self::List(_) => "list",
            Self::Dict(_) => "dict",
        }
    }
}

impl From<Scalar> for Value {
    fn from(v: Scalar) -> Self {
        Self::Scalar(v)
    }
}

/// The whole value of a list field.
impl From<Vec<Scalar>> for Value {
    fn from(items: Vec<Scalar>) -> Self {
        Self::List(items)
    }
}

/// The whole value of a dict field.
impl From<BTreeMap<String, Scalar>> for Value {
    fn from(entries: BTreeMap<String, Scalar>) -> Self {
        Self::Dict(entries.into_iter().collect())
    }
}

impl ScalarKind {
    /// The kind's name as schemas spell it: `bool`, `int`, `float`, `str` or `bytes`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Boolean => "bool",
            Self::Int => "int",
            Self::Float => "float",
            Self::Str => "str",
            Self::Bytes => "bytes",
        }
    }
}

impl fmt::Display for ScalarKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for FieldType {
    /// As schemas spell it: `int`, `list<str>`, `dict<int>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Scalar(k) => write!(f, "{k}"),
            Self::List(k) => write!(f, "list<{k}>"),
            Self::Dict(k) => write!(f, "dict<{k}>"),
        }
    }
}

impl fmt::Display for Mode {
    /// `lock`, `pipeline` or `optimistic`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Lock => "lock",
            Self::Pipeline => "pipeline",
            Self::Optimistic => "optimistic",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_conversions_and_accessors() {
        assert_eq!(Scalar::from(5), Scalar::Int(5));
        assert_eq!(Scalar::from(5_i64).as_int(), Some(5));
        assert_eq!(Scalar::from(1.5).as_float(), Some(1.5));
        assert_eq!(Scalar::from(true).as_bool(), Some(true));
        assert_eq!(Scalar::from("a").as_str(), Some("a"));
        assert_eq!(Scalar::from(String::from("b")).into_string().as_deref(), Some("b"));
        assert_eq!(Scalar::from(vec![1_u8, 2]).as_bytes(), Some(&[1_u8, 2][..]));
        assert_eq!(Scalar::from("a").as_int(), None);
        assert_eq!(Scalar::from(7).kind(), ScalarKind::Int);
        assert_eq!(Scalar::from(vec![0xab_u8, 1]).to_string(), "ab01");
    }

    #[test]
    fn display() {
        assert_eq!(FieldType::List(ScalarKind::Str).to_string(), "list<str>");
        assert_eq!(FieldType::Scalar(ScalarKind::Boolean).to_string(), "bool");
        assert_eq!(
            AccessError::type_mismatch("balance", "int", "str").to_string(),
            "type mismatch on field `balance`: expected int, found str"
        );
        let e = RuleError::from(AccessError::UnknownField("x".into()));
        assert_eq!(e.to_string(), "model access failed: unknown field `x`");
        assert!(std::error::Error::source(&e).is_some());
        assert_eq!(reject("no").to_string(), "rejected: no");
    }

    #[test]
    fn dict_value_from_map_is_sorted() {
        let map: BTreeMap<String, Scalar> = [("b".to_owned(), 2.into()), ("a".to_owned(), 1.into())].into();
        let value = Value::from(map);
        let keys: Vec<&str> = value.as_dict().into_iter().flatten().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "b"]);
    }
}
