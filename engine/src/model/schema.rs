//! Model schemas: named types with typed fields and defaults, defined in Rust or loaded from
//! TOML or JSON.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock};

use indexmap::IndexMap;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::ids::validate_name;
use super::placement::{Placement, PlacementFile};
use super::value::{FieldType, FieldValue, Scalar};
use crate::error::SchemaError;

/// One field of a model schema.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldDef {
    /// The field's type.
    #[serde(rename = "type")]
    pub ty: FieldType,
    /// The value a model has in this field until something writes it.
    pub default: FieldValue,
}

/// A model type: a name and its ordered, typed fields.
///
/// ```
/// use wasmtx::{ModelSchema, FieldType, ScalarKind};
/// let account = ModelSchema::builder("Account")
///     .field("balance", FieldType::Scalar(ScalarKind::Int))
///     .field("account_holder", FieldType::Scalar(ScalarKind::Str))
///     .build()
///     .unwrap();
/// assert_eq!(account.field("balance").unwrap().ty, FieldType::Scalar(ScalarKind::Int));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelSchema {
    name: String,
    fields: IndexMap<String, FieldDef>,
    /// Where its models live in a sharded store (`None`: each model in a slot of its own).
    #[serde(skip_serializing_if = "Option::is_none")]
    placement: Option<Placement>,
}

/// The file form of a schema, shared by TOML and JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaFile {
    name: String,
    #[serde(default)]
    placement: Option<PlacementFile>,
    fields: FieldFiles,
}

/// The `fields` table, in file order. A field named twice is refused as the TOML parser refuses
/// a duplicate key: `IndexMap`'s own `Deserialize` (and serde_json's object) would silently
/// keep the last definition, so a JSON schema could lose a field without a word.
#[derive(Debug)]
struct FieldFiles(IndexMap<String, FieldFile>);

impl<'de> Deserialize<'de> for FieldFiles {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = FieldFiles;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of field definitions")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FieldFiles, A::Error> {
                let mut fields = IndexMap::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(name) = map.next_key::<String>()? {
                    if fields.contains_key(&name) {
                        // TOML's wording for the same mistake, so both forms read alike.
                        return Err(de::Error::custom(format!("duplicate key `{name}`")));
                    }
                    fields.insert(name, map.next_value::<FieldFile>()?);
                }
                Ok(FieldFiles(fields))
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldFile {
    #[serde(rename = "type")]
    ty: FieldType,
    #[serde(default)]
    default: Option<serde_json::Value>,
}

impl ModelSchema {
    /// Starts a schema in Rust.
    pub fn builder(name: impl Into<String>) -> ModelSchemaBuilder {
        ModelSchemaBuilder { name: name.into(), fields: Vec::new(), placement: None }
    }

    /// Builds a schema from fields, checking names, types and defaults.
    ///
    /// # Errors
    /// [`SchemaError`] for an invalid model or field name, a duplicate field, a default of the
    /// wrong type, a NaN or infinite float default, or a schema without fields.
    pub fn new(
        name: impl Into<String>,
        fields: impl IntoIterator<Item = (String, FieldDef)>,
    ) -> Result<Self, SchemaError> {
        let name = name.into();
        validate_name(&name).map_err(|reason| SchemaError::InvalidName { name: name.clone(), reason })?;
        let mut map = IndexMap::new();
        for (field, def) in fields {
            validate_name(&field).map_err(|reason| SchemaError::InvalidField {
                model_type: name.clone(),
                field: field.clone(),
                reason,
            })?;
            if !def.ty.admits(&def.default) {
                return Err(SchemaError::InvalidField {
                    model_type: name.clone(),
                    reason: format!("default {:?} is not a {}", def.default, def.ty),
                    field,
                });
            }
            if let FieldValue::Scalar(Scalar::Float(f)) = &def.default
                && !f.is_finite()
            {
                // A `float` is a finite f64 (the README): NaN and infinities have no JSON form, so
                // the registry's JSON copy would read back as no default at all, and the stores
                // keep floats as text that must parse back.
                return Err(SchemaError::InvalidField {
                    model_type: name.clone(),
                    reason: format!("default {f} is not a finite float"),
                    field,
                });
            }
            let empty_collection = match &def.default {
                FieldValue::List(items) => items.is_empty(),
                FieldValue::Dict(map) => map.is_empty(),
                FieldValue::Scalar(_) => true,
            };
            if !empty_collection {
                // Redis has no empty LIST or HASH: a cleared collection is a missing key, which
                // must read back as the default. So collection defaults are empty.
                return Err(SchemaError::InvalidField {
                    model_type: name.clone(),
                    reason: "a list or dict field's default must be empty".into(),
                    field,
                });
            }
            if map.insert(field.clone(), def).is_some() {
                return Err(SchemaError::InvalidField {
                    model_type: name.clone(),
                    field,
                    reason: "defined twice".into(),
                });
            }
        }
        if map.is_empty() {
            return Err(SchemaError::InvalidName { name, reason: "a model type needs at least one field".into() });
        }
        Ok(Self { name, fields: map, placement: None })
    }

    /// This schema with its models placed by `placement` (see [`Placement`]): models of every
    /// type placed in the same group and part share one hash slot of a Redis Cluster.
    #[must_use]
    pub fn with_placement(mut self, placement: Option<Placement>) -> Self {
        self.placement = placement;
        self
    }

    /// Where this type's models live in a sharded store (`None`: each model in a slot of its
    /// own).
    pub fn placement(&self) -> Option<&Placement> {
        self.placement.as_ref()
    }

    /// Parses a schema from TOML text (see the README for the format).
    ///
    /// # Errors
    /// [`SchemaError::Parse`] for malformed text, or any error of [`ModelSchema::new`].
    pub fn from_toml(text: &str) -> Result<Self, SchemaError> {
        let file: SchemaFile = toml::from_str(text).map_err(|e| SchemaError::Parse(e.to_string()))?;
        Self::from_file(file)
    }

    /// Parses a schema from JSON text of the same shape as the TOML form.
    ///
    /// # Errors
    /// [`SchemaError::Parse`] for malformed text, or any error of [`ModelSchema::new`].
    pub fn from_json(text: &str) -> Result<Self, SchemaError> {
        let file: SchemaFile = serde_json::from_str(text).map_err(|e| SchemaError::Parse(e.to_string()))?;
        Self::from_file(file)
    }

    /// Reads a schema file, TOML or JSON by its extension.
    ///
    /// # Errors
    /// [`SchemaError::Io`] if the file cannot be read, otherwise as [`ModelSchema::from_toml`].
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, SchemaError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| SchemaError::Io(format!("{}: {e}", path.display())))?;
        if path.extension().is_some_and(|e| e == "json") { Self::from_json(&text) } else { Self::from_toml(&text) }
    }

    fn from_file(file: SchemaFile) -> Result<Self, SchemaError> {
        let name = file.name;
        let placement = file.placement.map(PlacementFile::placement).transpose()?;
        let mut fields = Vec::with_capacity(file.fields.0.len());
        for (field, spec) in file.fields.0 {
            let default = match &spec.default {
                None => spec.ty.zero(),
                Some(json) => FieldValue::from_json(spec.ty, json).map_err(|reason| SchemaError::InvalidField {
                    model_type: name.clone(),
                    field: field.clone(),
                    reason: format!("bad default: {reason}"),
                })?,
            };
            fields.push((field, FieldDef { ty: spec.ty, default }));
        }
        Ok(Self::new(name, fields)?.with_placement(placement))
    }

    /// The model type's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The field definition, if the schema has this field.
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.get(name)
    }

    /// The field's position in schema order, if any.
    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.fields.get_index_of(name)
    }

    /// All fields, in schema order.
    pub fn fields(&self) -> impl ExactSizeIterator<Item = (&str, &FieldDef)> {
        self.fields.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The field at `index` in schema order.
    pub fn field_at(&self, index: usize) -> Option<(&str, &FieldDef)> {
        self.fields.get_index(index).map(|(k, v)| (k.as_str(), v))
    }

    /// The number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Always false: a schema has at least one field.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// This schema in the JSON file form (the inverse of [`ModelSchema::from_json`]).
    pub fn to_json(&self) -> serde_json::Value {
        let fields: serde_json::Map<_, _> = self
            .fields
            .iter()
            .map(|(k, d)| (k.clone(), serde_json::json!({ "type": d.ty.to_string(), "default": d.default.to_json() })))
            .collect();
        match &self.placement {
            None => serde_json::json!({ "name": self.name, "fields": fields }),
            Some(placement) => {
                serde_json::json!({ "name": self.name, "placement": placement.to_json(), "fields": fields })
            }
        }
    }
}

/// Builds a [`ModelSchema`] in Rust.
#[derive(Debug)]
pub struct ModelSchemaBuilder {
    name: String,
    fields: Vec<(String, FieldDef)>,
    placement: Option<Placement>,
}

impl ModelSchemaBuilder {
    /// Adds a field whose default is the zero value of its type.
    pub fn field(mut self, name: impl Into<String>, ty: FieldType) -> Self {
        self.fields.push((name.into(), FieldDef { ty, default: ty.zero() }));
        self
    }

    /// Adds a field with an explicit default.
    pub fn field_with_default(mut self, name: impl Into<String>, ty: FieldType, default: FieldValue) -> Self {
        self.fields.push((name.into(), FieldDef { ty, default }));
        self
    }

    /// Places the type's models (see [`Placement`]).
    #[must_use]
    pub fn placement(mut self, placement: Placement) -> Self {
        self.placement = Some(placement);
        self
    }

    /// Checks and builds the schema.
    ///
    /// # Errors
    /// As [`ModelSchema::new`].
    pub fn build(self) -> Result<ModelSchema, SchemaError> {
        Ok(ModelSchema::new(self.name, self.fields)?.with_placement(self.placement))
    }
}

/// The model types an engine knows, by name.
///
/// # Notes
/// Shared by every invocation of an engine; registering replaces a type for invocations that
/// start afterwards, while running ones keep the `Arc` they resolved.
#[derive(Debug, Default)]
pub struct ModelTypes {
    by_name: RwLock<HashMap<String, Arc<ModelSchema>>>,
}

impl ModelTypes {
    /// Registers (or replaces) a model type and returns the shared schema.
    pub fn register(&self, schema: ModelSchema) -> Arc<ModelSchema> {
        let schema = Arc::new(schema);
        self.by_name
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(schema.name().to_owned(), Arc::clone(&schema));
        schema
    }

    /// Forgets a model type; returns its schema if it was registered. Invocations already
    /// planned keep the schema they resolved.
    pub fn unregister(&self, name: &str) -> Option<Arc<ModelSchema>> {
        self.by_name.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(name)
    }

    /// Looks a model type up by name.
    pub fn get(&self, name: &str) -> Option<Arc<ModelSchema>> {
        self.by_name.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(name).cloned()
    }

    /// The registered type names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<_> =
            self.by_name.read().unwrap_or_else(std::sync::PoisonError::into_inner).keys().cloned().collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::value::ScalarKind;

    const CHARACTER: &str = r#"
        name = "GameCharacter"
        [fields]
        name = { type = "str" }
        level = { type = "int", default = 1 }
        health = { type = "int", default = 100 }
        inventory = { type = "list<str>" }
        skills = { type = "dict<int>" }
    "#;

    #[test]
    fn toml_schema_keeps_order_and_defaults() {
        let s = ModelSchema::from_toml(CHARACTER).expect("valid schema");
        let names: Vec<_> = s.fields().map(|(n, _)| n).collect();
        assert_eq!(names, ["name", "level", "health", "inventory", "skills"]);
        assert_eq!(s.field("level").map(|f| &f.default), Some(&FieldValue::Scalar(Scalar::Int(1))));
        assert_eq!(s.field("inventory").map(|f| f.ty), Some(FieldType::List(ScalarKind::Str)));
    }

    #[test]
    fn json_round_trips() {
        let s = ModelSchema::from_toml(CHARACTER).expect("valid schema");
        let again = ModelSchema::from_json(&s.to_json().to_string()).expect("round trip");
        assert_eq!(s, again);
    }

    #[test]
    fn a_field_defined_twice_is_refused_in_both_forms_naming_it() {
        // Not adjacent, and of different types: neither may silently win.
        let toml = r#"
            name = "A"
            [fields]
            x = { type = "int" }
            y = { type = "int" }
            x = { type = "str" }
        "#;
        let json = r#"{"name": "A", "fields": {"x": {"type": "int"}, "y": {"type": "int"}, "x": {"type": "str"}}}"#;
        // TOML's parser names the key by quoting its line; the JSON form names it outright.
        let cases = [
            ("toml", ModelSchema::from_toml(toml), r#"x = { type = "str" }"#),
            ("json", ModelSchema::from_json(json), "duplicate key `x`"),
        ];
        for (form, result, names_it) in cases {
            match result {
                Err(SchemaError::Parse(message)) => {
                    assert!(message.contains("duplicate key"), "{form}: {message}");
                    assert!(message.contains(names_it), "{form}: {message} should name the field");
                }
                other => panic!("{form}: expected a parse error, got {other:?}"),
            }
        }
        // The same keys once each are fine.
        let unique = r#"{"name": "A", "fields": {"x": {"type": "int"}, "y": {"type": "int"}}}"#;
        assert_eq!(ModelSchema::from_json(unique).expect("valid").len(), 2);
    }

    #[test]
    fn bad_schemas_are_refused_with_a_reason() {
        let cases = [
            (
                r#"name = "A"
                [fields]
                x = { type = "int", default = "zero" }"#,
                "bad default",
            ),
            (
                r#"name = "A"
                [fields]
                x = { type = "integer" }"#,
                "unknown field type",
            ),
            (
                r#"name = "A b"
                [fields]
                x = { type = "int" }"#,
                "A b",
            ),
            (
                r#"name = "A"
                [fields]"#,
                "at least one field",
            ),
            (
                r#"name = "A"
                [fields]
                x = { type = "list<int>", default = [1] }"#,
                "must be empty",
            ),
            (
                r#"name = "A"
                [fields]
                x = { type = "int", extra = 1 }"#,
                "unknown field",
            ),
        ];
        for (text, needle) in cases {
            let err = ModelSchema::from_toml(text).expect_err(text).to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
    }

    #[test]
    fn a_non_finite_float_default_is_refused_naming_the_field() {
        let float = FieldType::Scalar(ScalarKind::Float);
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let default = FieldValue::Scalar(Scalar::Float(bad));
            let built = ModelSchema::builder("A").field("n", FieldType::Scalar(ScalarKind::Int)).field_with_default(
                "ratio",
                float,
                default.clone(),
            );
            let direct = ModelSchema::new("A", [("ratio".to_owned(), FieldDef { ty: float, default })]);
            for (how, result) in [("builder", built.build()), ("new", direct)] {
                match result {
                    Err(SchemaError::InvalidField { model_type, field, reason }) => {
                        assert_eq!((model_type.as_str(), field.as_str()), ("A", "ratio"), "{how} {bad}");
                        assert!(reason.contains("finite"), "{how} {bad}: {reason} should say why");
                    }
                    other => panic!("{how} {bad}: expected an invalid field, got {other:?}"),
                }
            }
        }
        // A finite float default is kept, and survives the JSON form the registry stores.
        let schema = ModelSchema::builder("A")
            .field_with_default("ratio", float, FieldValue::Scalar(Scalar::Float(-0.5)))
            .build()
            .expect("a finite default");
        assert_eq!(ModelSchema::from_json(&schema.to_json().to_string()).expect("round trip"), schema);
    }
}
