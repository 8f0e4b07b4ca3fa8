//! The registry's storage, behind one small trait, separate from the model [`Store`]: rules,
//! their versions and bytes, model schemas, and the epoch that tells engine instances to look
//! again.
//!
//! [`Store`]: crate::store::Store

use std::fmt;

use async_trait::async_trait;
use tokio::sync::watch;

use super::error::RegistryError;
use super::record::{AddedVersion, RuleInfo, RuleVersion, SchemaRecord, Snapshot};
use crate::model::schema::ModelSchema;

/// Where the registry keeps rules and model schemas. Two implementations with the same
/// semantics: [`RedisRegistryStore`](super::RedisRegistryStore), shared by every engine
/// connected to one Redis, and [`MemoryRegistryStore`](super::MemoryRegistryStore), embedded.
///
/// Every method is atomic: it does all of its writes or none.
///
/// # Notes
/// The *epoch* is a counter bumped by every write that changes what engines run (an
/// activation, a whole rule deleted, a schema defined or changed); each bump is announced to
/// [`RegistryStore::changes`] receivers of every process sharing the storage.
#[async_trait]
pub trait RegistryStore: Send + Sync + fmt::Debug + 'static {
    /// Stores `bytes` as a new version of rule `name`, numbered one past the name's highest
    /// number ever, unless the name already has a version with this digest (that version is
    /// returned, `created: false`). The version becomes active when `activate` is set or when
    /// the name has no active version.
    ///
    /// # Errors
    /// [`RegistryError::Store`] if the storage fails.
    async fn add_version(
        &self,
        name: &str,
        bytes: &[u8],
        version: &RuleVersion,
        activate: bool,
    ) -> Result<AddedVersion, RegistryError>;

    /// Every rule with at least one version, sorted by name.
    ///
    /// # Errors
    /// [`RegistryError::Store`] or [`RegistryError::Corrupt`].
    async fn rules(&self) -> Result<Vec<RuleInfo>, RegistryError>;

    /// One rule, if it has any version.
    ///
    /// # Errors
    /// [`RegistryError::Store`] or [`RegistryError::Corrupt`].
    async fn rule(&self, name: &str) -> Result<Option<RuleInfo>, RegistryError>;

    /// Makes `version` the active version of `name` (rolling forward or back).
    ///
    /// # Errors
    /// [`RegistryError::UnknownRule`], [`RegistryError::UnknownVersion`], or a storage error.
    async fn activate(&self, name: &str, version: u64) -> Result<RuleVersion, RegistryError>;

    /// Deletes one version that is not the active one (and its bytes, when no other version
    /// of any rule has them).
    ///
    /// # Errors
    /// [`RegistryError::UnknownRule`], [`RegistryError::UnknownVersion`],
    /// [`RegistryError::VersionActive`], or a storage error.
    async fn delete_version(&self, name: &str, version: u64) -> Result<RuleVersion, RegistryError>;

    /// Deletes every version of a rule; its numbers are still never reused.
    ///
    /// # Errors
    /// [`RegistryError::UnknownRule`], [`RegistryError::Busy`] if versions kept being added
    /// meanwhile, or a storage error.
    async fn delete_rule(&self, name: &str) -> Result<Vec<RuleVersion>, RegistryError>;

    /// The bytes of a stored version, by digest.
    ///
    /// # Errors
    /// [`RegistryError::Store`].
    async fn rule_bytes(&self, digest: &str) -> Result<Option<Vec<u8>>, RegistryError>;

    /// Defines a model schema, or redefines it (a new revision, only if it changed). Returns
    /// the record and whether anything changed.
    ///
    /// # Errors
    /// [`RegistryError::Store`] or [`RegistryError::Corrupt`].
    async fn define_schema(&self, schema: &ModelSchema, now_ms: i64) -> Result<(SchemaRecord, bool), RegistryError>;

    /// Deletes a model schema (not the models' data) and returns its last record.
    ///
    /// # Errors
    /// [`RegistryError::UnknownModelType`] if no schema has this name; [`RegistryError::Store`]
    /// or [`RegistryError::Corrupt`].
    async fn delete_schema(&self, name: &str) -> Result<SchemaRecord, RegistryError>;

    /// The current epoch, active versions and schemas, read at one instant.
    ///
    /// # Errors
    /// [`RegistryError::Store`] or [`RegistryError::Corrupt`].
    async fn snapshot(&self) -> Result<Snapshot, RegistryError>;

    /// The current epoch only (cheap: the periodic check of every engine instance).
    ///
    /// # Errors
    /// [`RegistryError::Store`].
    async fn epoch(&self) -> Result<u64, RegistryError>;

    /// A receiver that changes whenever a change of the epoch is announced (by this process or
    /// another). Announcements can be lost (a dropped connection): callers also poll
    /// [`RegistryStore::epoch`].
    fn changes(&self) -> watch::Receiver<u64>;
}
