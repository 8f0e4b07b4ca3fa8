//! Typed values: what a model field holds, and how each scalar is written as text in Redis.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::AccessError;

/// The kind of a scalar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScalarKind {
    /// `true` or `false`.
    Bool,
    /// A signed 64-bit integer.
    Int,
    /// A finite 64-bit float.
    Float,
    /// A UTF-8 string.
    Str,
    /// Raw bytes.
    Bytes,
}

impl ScalarKind {
    /// The name used in schema files (`int`, `str`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Bool => "bool",
            Self::Int => "int",
            Self::Float => "float",
            Self::Str => "str",
            Self::Bytes => "bytes",
        }
    }

    /// Parses a schema-file name.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "bool" => Self::Bool,
            "int" => Self::Int,
            "float" => Self::Float,
            "str" => Self::Str,
            "bytes" => Self::Bytes,
            _ => return None,
        })
    }

    /// The zero value of this kind: the default of a field whose schema gives none.
    pub fn zero(self) -> Scalar {
        match self {
            Self::Bool => Scalar::Bool(false),
            Self::Int => Scalar::Int(0),
            Self::Float => Scalar::Float(0.0),
            Self::Str => Scalar::Str(String::new()),
            Self::Bytes => Scalar::Bytes(Vec::new()),
        }
    }
}

impl fmt::Display for ScalarKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One typed scalar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum Scalar {
    /// A boolean.
    Bool(bool),
    /// A signed 64-bit integer.
    Int(i64),
    /// A finite 64-bit float.
    Float(f64),
    /// A UTF-8 string.
    Str(String),
    /// Raw bytes.
    Bytes(Vec<u8>),
}

impl Scalar {
    /// The kind of this scalar.
    pub fn kind(&self) -> ScalarKind {
        match self {
            Self::Bool(_) => ScalarKind::Bool,
            Self::Int(_) => ScalarKind::Int,
            Self::Float(_) => ScalarKind::Float,
            Self::Str(_) => ScalarKind::Str,
            Self::Bytes(_) => ScalarKind::Bytes,
        }
    }

    /// Refuses a NaN or infinite float as the `type-mismatch` on `field` it is wherever it is
    /// written, in a rule or by a direct field operation, so one mistake has one kind: stores keep
    /// floats as text that must parse back, and NaN and infinities do not fit JSON.
    pub(crate) fn check_finite(&self, field: &str) -> Result<(), AccessError> {
        match self {
            Self::Float(f) if !f.is_finite() => Err(AccessError::TypeMismatch {
                field: field.to_owned(),
                expected: "finite float".to_owned(),
                found: f.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// The integer, if this is an `Int`.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Self::Int(v) => Some(*v),
            _ => None,
        }
    }

    /// The string, if this is a `Str`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(v) => Some(v),
            _ => None,
        }
    }

    /// The size this scalar takes once stored, in bytes (used for value-size limits).
    pub fn stored_len(&self) -> usize {
        match self {
            Self::Bool(_) => 5,
            Self::Int(_) | Self::Float(_) => 24,
            Self::Str(s) => s.len(),
            Self::Bytes(b) => b.len(),
        }
    }

    /// The text stored in Redis for this scalar. Integers are decimal (so `HINCRBY` works),
    /// floats use Rust's shortest round-trip form (so `HINCRBYFLOAT` works), booleans are
    /// `true`/`false`, strings and bytes are stored as they are.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Bool(v) => {
                if *v {
                    b"true".to_vec()
                } else {
                    b"false".to_vec()
                }
            }
            Self::Int(v) => v.to_string().into_bytes(),
            Self::Float(v) => encode_float(*v).into_bytes(),
            Self::Str(v) => v.as_bytes().to_vec(),
            Self::Bytes(v) => v.clone(),
        }
    }

    /// Parses stored text as a scalar of `kind`. Accepts what [`Scalar::encode`] writes, plus
    /// `1`/`0` for booleans, as other Redis clients commonly write them.
    ///
    /// # Errors
    /// A description of why the text is not a valid `kind` (the caller adds the location).
    pub fn decode(kind: ScalarKind, raw: &[u8]) -> Result<Self, String> {
        let text = || std::str::from_utf8(raw).map_err(|_| format!("{kind} field holds non-UTF-8 bytes"));
        Ok(match kind {
            ScalarKind::Bool => match raw {
                b"true" | b"1" => Self::Bool(true),
                b"false" | b"0" => Self::Bool(false),
                _ => return Err(format!("`{}` is not a bool", String::from_utf8_lossy(raw))),
            },
            ScalarKind::Int => {
                let t = text()?;
                Self::Int(t.parse().map_err(|_| format!("`{t}` is not an int"))?)
            }
            ScalarKind::Float => {
                let t = text()?;
                let v: f64 = t.parse().map_err(|_| format!("`{t}` is not a float"))?;
                if !v.is_finite() {
                    return Err(format!("`{t}` is not a finite float"));
                }
                Self::Float(v)
            }
            ScalarKind::Str => Self::Str(text()?.to_owned()),
            ScalarKind::Bytes => Self::Bytes(raw.to_vec()),
        })
    }

    /// Converts JSON into a scalar of `kind`, for direct field operations and schema defaults.
    ///
    /// # Errors
    /// A description of the mismatch.
    pub fn from_json(kind: ScalarKind, json: &serde_json::Value) -> Result<Self, String> {
        use serde_json::Value as J;
        Ok(match (kind, json) {
            (ScalarKind::Bool, J::Bool(b)) => Self::Bool(*b),
            (ScalarKind::Int, J::Number(n)) if n.is_i64() => Self::Int(n.as_i64().unwrap_or_default()),
            (ScalarKind::Float, J::Number(n)) => Self::Float(n.as_f64().unwrap_or_default()),
            (ScalarKind::Str, J::String(s)) => Self::Str(s.clone()),
            (ScalarKind::Bytes, J::String(s)) => Self::Bytes(s.as_bytes().to_vec()),
            (ScalarKind::Bytes, J::Array(items)) => Self::Bytes(
                items
                    .iter()
                    .map(|i| i.as_u64().and_then(|b| u8::try_from(b).ok()))
                    .collect::<Option<Vec<u8>>>()
                    .ok_or_else(|| "bytes must be a string or an array of 0..=255".to_owned())?,
            ),
            (kind, other) => return Err(format!("expected {kind}, found JSON `{other}`")),
        })
    }

    /// This scalar as JSON (bytes become an array of numbers).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Self::Bool(v) => (*v).into(),
            Self::Int(v) => (*v).into(),
            Self::Float(v) => serde_json::Number::from_f64(*v).map_or(serde_json::Value::Null, Into::into),
            Self::Str(v) => v.clone().into(),
            Self::Bytes(v) => v.iter().map(|b| serde_json::Value::from(*b)).collect(),
        }
    }
}

fn encode_float(v: f64) -> String {
    // `{}` prints the shortest text that parses back to the same f64; Redis' HINCRBYFLOAT and
    // any client's float parser read it.
    format!("{v}")
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bool(v) => write!(f, "{v}"),
            Self::Int(v) => write!(f, "{v}"),
            Self::Float(v) => write!(f, "{v}"),
            Self::Str(v) => write!(f, "{v:?}"),
            Self::Bytes(v) => write!(f, "<{} bytes>", v.len()),
        }
    }
}

impl From<i64> for Scalar {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}
impl From<f64> for Scalar {
    fn from(v: f64) -> Self {
        Self::Float(v)
    }
}
impl From<bool> for Scalar {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}
impl From<&str> for Scalar {
    fn from(v: &str) -> Self {
        Self::Str(v.to_owned())
    }
}
impl From<String> for Scalar {
    fn from(v: String) -> Self {
        Self::Str(v)
    }
}
impl From<Vec<u8>> for Scalar {
    fn from(v: Vec<u8>) -> Self {
        Self::Bytes(v)
    }
}

/// The shape of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    /// One scalar.
    Scalar(ScalarKind),
    /// A list of scalars of one kind.
    List(ScalarKind),
    /// A string-keyed dict of scalars of one kind.
    Dict(ScalarKind),
}

impl FieldType {
    /// The kind of the scalars this field is made of.
    pub fn item_kind(self) -> ScalarKind {
        match self {
            Self::Scalar(k) | Self::List(k) | Self::Dict(k) => k,
        }
    }

    /// Parses a schema-file type: `int`, `list<str>`, `dict<int>`, ...
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let inner = |prefix: &str| {
            text.strip_prefix(prefix)
                .and_then(|rest| rest.strip_suffix('>'))
                .and_then(|k| ScalarKind::from_name(k.trim()))
        };
        if let Some(k) = inner("list<") {
            Some(Self::List(k))
        } else if let Some(k) = inner("dict<") {
            Some(Self::Dict(k))
        } else {
            ScalarKind::from_name(text).map(Self::Scalar)
        }
    }

    /// The empty or zero value of this type.
    pub fn zero(self) -> FieldValue {
        match self {
            Self::Scalar(k) => FieldValue::Scalar(k.zero()),
            Self::List(_) => FieldValue::List(Vec::new()),
            Self::Dict(_) => FieldValue::Dict(BTreeMap::new()),
        }
    }

    /// Whether `value` has this type.
    pub fn admits(self, value: &FieldValue) -> bool {
        match (self, value) {
            (Self::Scalar(k), FieldValue::Scalar(s)) => s.kind() == k,
            (Self::List(k), FieldValue::List(items)) => items.iter().all(|s| s.kind() == k),
            (Self::Dict(k), FieldValue::Dict(map)) => map.values().all(|s| s.kind() == k),
            _ => false,
        }
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Scalar(k) => write!(f, "{k}"),
            Self::List(k) => write!(f, "list<{k}>"),
            Self::Dict(k) => write!(f, "dict<{k}>"),
        }
    }
}

impl Serialize for FieldType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FieldType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown field type `{text}` (expected bool, int, float, str, bytes, list<T> or dict<T>)"
            ))
        })
    }
}

/// The whole value of one field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldValue {
    /// A scalar field's value.
    Scalar(Scalar),
    /// A list field's items.
    List(Vec<Scalar>),
    /// A dict field's entries, sorted by key.
    Dict(BTreeMap<String, Scalar>),
}

impl FieldValue {
    /// Converts JSON into a value of `ty`: a JSON scalar for scalar fields, an array for lists,
    /// an object for dicts.
    ///
    /// # Errors
    /// A description of the mismatch.
    pub fn from_json(ty: FieldType, json: &serde_json::Value) -> Result<Self, String> {
        match (ty, json) {
            (FieldType::Scalar(k), j) => Scalar::from_json(k, j).map(Self::Scalar),
            (FieldType::List(k), serde_json::Value::Array(items)) => {
                items.iter().map(|i| Scalar::from_json(k, i)).collect::<Result<_, _>>().map(Self::List)
            }
            (FieldType::Dict(k), serde_json::Value::Object(map)) => map
                .iter()
                .map(|(key, v)| Scalar::from_json(k, v).map(|s| (key.clone(), s)))
                .collect::<Result<_, _>>()
                .map(Self::Dict),
            (ty, other) => Err(format!("expected {ty}, found JSON `{other}`")),
        }
    }

    /// This value as plain JSON (no type tags), the inverse of [`FieldValue::from_json`].
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Self::Scalar(s) => s.to_json(),
            Self::List(items) => items.iter().map(Scalar::to_json).collect(),
            Self::Dict(map) => map.iter().map(|(k, v)| (k.clone(), v.to_json())).collect(),
        }
    }

    /// The size this value takes once stored, in bytes (used for value-size limits).
    pub fn stored_len(&self) -> usize {
        match self {
            Self::Scalar(s) => s.stored_len(),
            Self::List(items) => items.iter().map(Scalar::stored_len).sum(),
            Self::Dict(map) => map.iter().map(|(k, v)| k.len() + v.stored_len()).sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_round_trip_through_their_stored_text() {
        let cases = [
            Scalar::Bool(true),
            Scalar::Bool(false),
            Scalar::Int(i64::MIN),
            Scalar::Int(42),
            Scalar::Float(0.1),
            Scalar::Float(-1.5e300),
            Scalar::Str("héllo".into()),
            Scalar::Bytes(vec![0, 255, 10]),
        ];
        for s in cases {
            assert_eq!(Scalar::decode(s.kind(), &s.encode()), Ok(s.clone()), "{s:?}");
        }
    }

    #[test]
    fn decode_rejects_text_of_another_kind() {
        assert!(Scalar::decode(ScalarKind::Int, b"1.5").is_err());
        assert!(Scalar::decode(ScalarKind::Float, b"inf").is_err());
        assert!(Scalar::decode(ScalarKind::Bool, b"yes").is_err());
        assert!(Scalar::decode(ScalarKind::Str, &[0xff]).is_err());
    }

    #[test]
    fn field_types_parse_and_print() {
        for text in ["int", "list<str>", "dict<float>", "bytes", "bool"] {
            let ty = FieldType::parse(text).expect(text);
            assert_eq!(ty.to_string(), text);
        }
        assert_eq!(FieldType::parse("list<list<int>>"), None);
        assert_eq!(FieldType::parse("integer"), None);
    }

    #[test]
    fn json_conversion_is_type_checked() {
        let ty = FieldType::List(ScalarKind::Int);
        assert!(FieldValue::from_json(ty, &serde_json::json!([1, 2])).is_ok());
        assert!(FieldValue::from_json(ty, &serde_json::json!([1, "2"])).is_err());
        assert!(FieldValue::from_json(FieldType::Scalar(ScalarKind::Int), &serde_json::json!(1.5)).is_err());
    }
}
