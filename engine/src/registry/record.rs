//! What the registry stores and returns: rule versions, rules, model schema records and the
//! snapshot every engine instance keeps of what is active.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error::RegistryError;
use crate::model::schema::ModelSchema;

/// One immutable version of a rule: what was uploaded and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleVersion {
    /// The version number: 1 for a name's first upload, then increasing; never reused.
    pub version: u64,
    /// The SHA-256 of the uploaded bytes, lowercase hex.
    pub digest: String,
    /// The size of the uploaded bytes.
    pub size: u64,
    /// The version of the `wasmtx:rule` WIT package the rule imports.
    pub wit_version: String,
    /// Whether the upload was a core module the engine wraps into a component.
    pub from_core_module: bool,
    /// The component's exports (`run` for every rule).
    pub exports: Vec<String>,
    /// When it was uploaded, in milliseconds since the Unix epoch.
    pub uploaded_at_ms: i64,
}

/// The fields of a [`RuleVersion`] but its number, in the order stored.
#[derive(Serialize)]
struct VersionMeta<'a> {
    digest: &'a str,
    size: u64,
    wit_version: &'a str,
    from_core_module: bool,
    exports: &'a [String],
    uploaded_at_ms: i64,
}

impl RuleVersion {
    /// The JSON object of every field but `version` (a store that numbers versions itself
    /// prepends it).
    pub(crate) fn meta_json(&self) -> String {
        let meta = VersionMeta {
            digest: &self.digest,
            size: self.size,
            wit_version: &self.wit_version,
            from_core_module: self.from_core_module,
            exports: &self.exports,
            uploaded_at_ms: self.uploaded_at_ms,
        };
        serde_json::to_string(&meta).unwrap_or_else(|_| "{}".to_owned())
    }

    /// Parses a stored version record.
    pub(crate) fn parse(json: &str) -> Result<Self, RegistryError> {
        serde_json::from_str(json).map_err(|e| RegistryError::Corrupt(format!("bad rule version record {json:?}: {e}")))
    }
}

/// A rule: its name, active version and every version it has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleInfo {
    /// The rule's name.
    pub name: String,
    /// The number of the version engines run.
    pub active: u64,
    /// Every version, oldest first.
    pub versions: Vec<RuleVersion>,
}

impl RuleInfo {
    /// The active version's record.
    pub fn active_version(&self) -> Option<&RuleVersion> {
        self.versions.iter().find(|v| v.version == self.active)
    }

    /// The record of a version.
    pub fn version(&self, version: u64) -> Option<&RuleVersion> {
        self.versions.iter().find(|v| v.version == version)
    }
}

/// What an upload did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Uploaded {
    /// The rule's name.
    pub name: String,
    /// The version the bytes are stored as.
    pub version: RuleVersion,
    /// False when the rule already had a version with these exact bytes (that version is
    /// returned and nothing new was stored).
    pub created: bool,
    /// Whether this version is now the active one.
    pub active: bool,
}

/// What storing a rule version did (the storage's part of an upload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedVersion {
    /// The stored (or already present) version.
    pub version: RuleVersion,
    /// Whether it was stored now.
    pub created: bool,
    /// Whether it is the active version now.
    pub active: bool,
}

/// A model schema as the registry keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaRecord {
    /// The schema.
    pub schema: ModelSchema,
    /// 1 when first defined, bumped by each definition that changed it.
    pub revision: u64,
    /// When this revision was defined, in milliseconds since the Unix epoch.
    pub defined_at_ms: i64,
}

impl Serialize for SchemaRecord {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("SchemaRecord", 3)?;
        s.serialize_field("revision", &self.revision)?;
        s.serialize_field("defined_at_ms", &self.defined_at_ms)?;
        s.serialize_field("schema", &self.schema.to_json())?;
        s.end()
    }
}

impl SchemaRecord {
    /// Parses a stored record: `{"revision": n, "defined_at_ms": t, "schema": {...}}`.
    pub(crate) fn parse(json: &str) -> Result<Self, RegistryError> {
        let bad = |why: String| RegistryError::Corrupt(format!("bad model schema record: {why}"));
        let value: serde_json::Value = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
        let revision =
            value.get("revision").and_then(serde_json::Value::as_u64).ok_or_else(|| bad("no revision".into()))?;
        let defined_at_ms = value.get("defined_at_ms").and_then(serde_json::Value::as_i64).unwrap_or_default();
        let schema = value.get("schema").ok_or_else(|| bad("no schema".into()))?;
        let schema = ModelSchema::from_json(&schema.to_string()).map_err(|e| bad(e.to_string()))?;
        Ok(Self { schema, revision, defined_at_ms })
    }

    /// The schema's JSON text as stored (the file form of [`ModelSchema::to_json`]).
    pub(crate) fn schema_json(schema: &ModelSchema) -> String {
        schema.to_json().to_string()
    }
}

/// Everything an engine instance needs to run rules: the active version of every rule and
/// every model schema, as of one epoch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Bumped by every change of what engines run: an activation, a deleted rule, a schema
    /// definition.
    pub epoch: u64,
    /// The active version of each rule, by name.
    pub active: BTreeMap<String, RuleVersion>,
    /// Every model schema, by model type.
    pub schemas: BTreeMap<String, SchemaRecord>,
}
