//! The embedded registry storage: the Redis registry's semantics in this process's memory, with
//! a serialisable dump so that a command-line tool can keep it in a file between runs.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::error::RegistryError;
use super::record::{AddedVersion, RuleInfo, RuleVersion, SchemaRecord, Snapshot};
use super::storage::RegistryStore;
use crate::model::schema::ModelSchema;

/// A [`RegistryStore`] held in memory. Cheap to clone: clones share one state.
///
/// ```
/// use wasmtx::registry::{MemoryRegistryStore, RegistryStore};
/// let store = MemoryRegistryStore::new();
/// let dump = store.dump(); // serialisable; `MemoryRegistryStore::from_dump` restores it
/// # let _: &dyn RegistryStore = &store;
/// # let _ = dump;
/// ```
#[derive(Clone)]
pub struct MemoryRegistryStore {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<RegistryDump>,
    changes: watch::Sender<u64>,
}

/// Everything a [`MemoryRegistryStore`] holds, as plain serialisable data (rule bytes as hex).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RegistryDump {
    epoch: u64,
    rules: BTreeMap<String, StoredRule>,
    #[serde(with = "hex_blobs")]
    blobs: BTreeMap<String, Vec<u8>>,
    schemas: BTreeMap<String, StoredSchema>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct StoredRule {
    /// The highest version number ever given.
    next: u64,
    active: Option<u64>,
    versions: BTreeMap<u64, RuleVersion>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSchema {
    revision: u64,
    defined_at_ms: i64,
    schema: String,
}

impl StoredSchema {
    /// The record of the schema stored under `name`.
    fn record(&self, name: &str) -> Result<SchemaRecord, RegistryError> {
        let schema = ModelSchema::from_json(&self.schema)
            .map_err(|e| RegistryError::Corrupt(format!("stored schema of {name}: {e}")))?;
        Ok(SchemaRecord { schema, revision: self.revision, defined_at_ms: self.defined_at_ms })
    }
}

impl StoredRule {
    fn info(&self, name: &str) -> Option<RuleInfo> {
        let active = self.active?;
        Some(RuleInfo { name: name.to_owned(), active, versions: self.versions.values().cloned().collect() })
    }
}

impl RegistryDump {
    fn bump(&mut self) -> u64 {
        self.epoch += 1;
        self.epoch
    }

    fn is_referenced(&self, digest: &str) -> bool {
        self.rules.values().any(|r| r.versions.values().any(|v| v.digest == digest))
    }

    fn drop_unreferenced(&mut self, digest: &str) {
        if !self.is_referenced(digest) {
            self.blobs.remove(digest);
        }
    }

    fn known_rule(&mut self, name: &str) -> Result<&mut StoredRule, RegistryError> {
        self.rules
            .get_mut(name)
            .filter(|r| r.active.is_some())
            .ok_or_else(|| RegistryError::UnknownRule { name: name.to_owned() })
    }
}

impl MemoryRegistryStore {
    /// An empty registry.
    pub fn new() -> Self {
        Self::from_dump(RegistryDump::default())
    }

    /// A registry holding what [`MemoryRegistryStore::dump`] returned.
    pub fn from_dump(dump: RegistryDump) -> Self {
        let (changes, _) = watch::channel(dump.epoch);
        Self { inner: Arc::new(Inner { state: Mutex::new(dump), changes }) }
    }

    /// Replaces everything this registry holds with what [`MemoryRegistryStore::dump`]
    /// returned, and announces the dump's epoch: loads a persisted state into a registry that
    /// was just opened.
    pub fn restore(&self, dump: RegistryDump) {
        let epoch = dump.epoch;
        *self.state() = dump;
        self.announce(epoch);
    }

    /// A copy of everything stored, to persist it.
    pub fn dump(&self) -> RegistryDump {
        self.state().clone()
    }

    fn state(&self) -> MutexGuard<'_, RegistryDump> {
        // Every method checks before it writes, so a panic cannot leave a half-done change.
        self.inner.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn announce(&self, epoch: u64) {
        self.inner.changes.send_replace(epoch);
    }
}

impl Default for MemoryRegistryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryRegistryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryRegistryStore").finish_non_exhaustive()
    }
}

#[async_trait]
impl RegistryStore for MemoryRegistryStore {
    async fn add_version(
        &self,
        name: &str,
        bytes: &[u8],
        version: &RuleVersion,
        activate: bool,
    ) -> Result<AddedVersion, RegistryError> {
        let mut state = self.state();
        let rule = state.rules.entry(name.to_owned()).or_default();
        let existing = rule.versions.values().find(|v| v.digest == version.digest).cloned();
        let created = existing.is_none();
        let stored = match existing {
            Some(v) => v,
            None => {
                rule.next += 1;
                let stored = RuleVersion { version: rule.next, ..version.clone() };
                rule.versions.insert(stored.version, stored.clone());
                stored
            }
        };
        let becomes_active = (activate || rule.active.is_none()) && rule.active != Some(stored.version);
        if becomes_active {
            rule.active = Some(stored.version);
        }
        let active = rule.active == Some(stored.version);
        if created {
            state.blobs.entry(version.digest.clone()).or_insert_with(|| bytes.to_vec());
        }
        if becomes_active {
            let epoch = state.bump();
            drop(state);
            self.announce(epoch);
        }
        Ok(AddedVersion { version: stored, created, active })
    }

    async fn rules(&self) -> Result<Vec<RuleInfo>, RegistryError> {
        Ok(self.state().rules.iter().filter_map(|(name, r)| r.info(name)).collect())
    }

    async fn rule(&self, name: &str) -> Result<Option<RuleInfo>, RegistryError> {
        Ok(self.state().rules.get(name).and_then(|r| r.info(name)))
    }

    async fn activate(&self, name: &str, version: u64) -> Result<RuleVersion, RegistryError> {
        let mut state = self.state();
        let rule = state.known_rule(name)?;
        let record = rule
            .versions
            .get(&version)
            .cloned()
            .ok_or_else(|| RegistryError::UnknownVersion { name: name.to_owned(), version })?;
        if rule.active != Some(version) {
            rule.active = Some(version);
            let epoch = state.bump();
            drop(state);
            self.announce(epoch);
        }
        Ok(record)
    }

    async fn delete_version(&self, name: &str, version: u64) -> Result<RuleVersion, RegistryError> {
        let mut state = self.state();
        let rule = state.known_rule(name)?;
        if rule.active == Some(version) {
            return Err(RegistryError::VersionActive { name: name.to_owned(), version });
        }
        let removed = rule
            .versions
            .remove(&version)
            .ok_or_else(|| RegistryError::UnknownVersion { name: name.to_owned(), version })?;
        state.drop_unreferenced(&removed.digest);
        Ok(removed)
    }

    async fn delete_rule(&self, name: &str) -> Result<Vec<RuleVersion>, RegistryError> {
        let mut state = self.state();
        let rule = state.known_rule(name)?;
        rule.active = None;
        let removed: Vec<RuleVersion> = std::mem::take(&mut rule.versions).into_values().collect();
        for version in &removed {
            state.drop_unreferenced(&version.digest);
        }
        let epoch = state.bump();
        drop(state);
        self.announce(epoch);
        Ok(removed)
    }

    async fn rule_bytes(&self, digest: &str) -> Result<Option<Vec<u8>>, RegistryError> {
        Ok(self.state().blobs.get(digest).cloned())
    }

    async fn define_schema(&self, schema: &ModelSchema, now_ms: i64) -> Result<(SchemaRecord, bool), RegistryError> {
        let json = SchemaRecord::schema_json(schema);
        let mut state = self.state();
        let (stored, changed) = match state.schemas.get(schema.name()) {
            Some(old) if old.schema == json => (old.clone(), false),
            old => {
                let revision = old.map_or(1, |o| o.revision + 1);
                let stored = StoredSchema { revision, defined_at_ms: now_ms, schema: json };
                state.schemas.insert(schema.name().to_owned(), stored.clone());
                (stored, true)
            }
        };
        if changed {
            let epoch = state.bump();
            drop(state);
            self.announce(epoch);
        }
        let record =
            SchemaRecord { schema: schema.clone(), revision: stored.revision, defined_at_ms: stored.defined_at_ms };
        Ok((record, changed))
    }

    async fn delete_schema(&self, name: &str) -> Result<SchemaRecord, RegistryError> {
        let mut state = self.state();
        let stored =
            state.schemas.remove(name).ok_or_else(|| RegistryError::UnknownModelType { name: name.to_owned() })?;
        let epoch = state.bump();
        drop(state);
        self.announce(epoch);
        stored.record(name)
    }

    async fn snapshot(&self) -> Result<Snapshot, RegistryError> {
        let state = self.state();
        let active = state
            .rules
            .iter()
            .filter_map(|(name, r)| Some((name.clone(), r.versions.get(&r.active?)?.clone())))
            .collect();
        let schemas = state
            .schemas
            .iter()
            .map(|(name, s)| Ok((name.clone(), s.record(name)?)))
            .collect::<Result<_, RegistryError>>()?;
        Ok(Snapshot { epoch: state.epoch, active, schemas })
    }

    async fn epoch(&self) -> Result<u64, RegistryError> {
        Ok(self.state().epoch)
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }
}

/// Rule bytes as hex strings in the dump.
mod hex_blobs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(blobs: &BTreeMap<String, Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        blobs.iter().map(|(k, v)| (k, hex::encode(v))).collect::<BTreeMap<_, _>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Vec<u8>>, D::Error> {
        BTreeMap::<String, String>::deserialize(d)?
            .into_iter()
            .map(|(k, v)| hex::decode(v).map(|bytes| (k, bytes)).map_err(serde::de::Error::custom))
            .collect()
    }
}
