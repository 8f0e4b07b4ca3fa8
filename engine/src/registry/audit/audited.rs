//! [`Audited`]: the registry's changes, each recorded in an audit log under the name of who made
//! it. `wasmtx serve` makes its changes through it (the actor is the token's name) and so do the
//! `wasmtx rule` and `wasmtx model` commands (the actor is `cli:<user>`): one place decides
//! which change gets which entry.

use tracing::{error, info};

use super::{AuditAction, AuditEntry, AuditLog};
use crate::model::schema::ModelSchema;
use crate::registry::{Registry, RegistryError, RuleVersion, SchemaRecord, Uploaded};

/// A registry whose changes are recorded in `log` as made by `actor`.
///
/// Recording is best effort: a change that was made stays made when its entry cannot be
/// written; the failure is logged at error level.
#[derive(Debug, Clone, Copy)]
pub struct Audited<'a> {
    registry: &'a Registry,
    log: &'a dyn AuditLog,
    actor: &'a str,
}

impl<'a> Audited<'a> {
    /// `registry`'s changes, recorded in `log` as made by `actor`.
    pub fn new(registry: &'a Registry, log: &'a dyn AuditLog, actor: &'a str) -> Self {
        Self { registry, log, actor }
    }

    /// [`Registry::upload`]; records an `upload` when a version was created, and an
    /// `activate` (or `rollback`) when `activate` changed the active version. A rule's first
    /// version becoming active by itself has no entry of its own: its `upload` says it.
    ///
    /// # Errors
    /// As [`Registry::upload`]; nothing is recorded then.
    pub async fn upload(&self, name: &str, bytes: &[u8], activate: bool) -> Result<Uploaded, RegistryError> {
        let before = if activate { self.active_of(name).await } else { None };
        let uploaded = self.registry.upload(name, bytes, activate).await?;
        let version = &uploaded.version;
        if uploaded.created {
            self.record(
                AuditEntry::new(self.actor, AuditAction::Upload, name).version(version.version, &version.digest),
            )
            .await;
        }
        if activate && before != Some(version.version) {
            self.record(self.activation(name, version, before)).await;
        }
        Ok(uploaded)
    }

    /// [`Registry::activate`]; records an `activate`, or a `rollback` when the version is older
    /// than the one it replaces.
    ///
    /// # Errors
    /// As [`Registry::activate`]; nothing is recorded then.
    pub async fn activate(&self, name: &str, version: u64) -> Result<RuleVersion, RegistryError> {
        let before = self.active_of(name).await;
        let active = self.registry.activate(name, version).await?;
        self.record(self.activation(name, &active, before)).await;
        Ok(active)
    }

    /// [`Registry::delete_version`]; records a `delete_version`.
    ///
    /// # Errors
    /// As [`Registry::delete_version`]; nothing is recorded then.
    pub async fn delete_version(&self, name: &str, version: u64) -> Result<RuleVersion, RegistryError> {
        let deleted = self.registry.delete_version(name, version).await?;
        self.record(
            AuditEntry::new(self.actor, AuditAction::DeleteVersion, name).version(deleted.version, &deleted.digest),
        )
        .await;
        Ok(deleted)
    }

    /// [`Registry::delete_rule`]; records a `delete_rule` naming every version removed.
    ///
    /// # Errors
    /// As [`Registry::delete_rule`]; nothing is recorded then.
    pub async fn delete_rule(&self, name: &str) -> Result<Vec<RuleVersion>, RegistryError> {
        let removed = self.registry.delete_rule(name).await?;
        let versions: Vec<String> = removed.iter().map(|v| format!("v{} sha256:{}", v.version, v.digest)).collect();
        self.record(
            AuditEntry::new(self.actor, AuditAction::DeleteRule, name)
                .detail(format!("deleted {}", versions.join(", "))),
        )
        .await;
        Ok(removed)
    }

    /// [`Registry::define_model`]; records a `define_schema` when the schema changed (defining
    /// the schema a type already has changes nothing and records nothing).
    ///
    /// # Errors
    /// As [`Registry::define_model`]; nothing is recorded then.
    pub async fn define_model(&self, schema: ModelSchema) -> Result<SchemaRecord, RegistryError> {
        let name = schema.name().to_owned();
        let (defined, changed) = self.registry.define_model_reporting(schema).await?;
        if changed {
            self.record(AuditEntry::new(self.actor, AuditAction::DefineSchema, &name).revision(defined.revision)).await;
        }
        Ok(defined)
    }

    /// [`Registry::delete_model`]; records a `delete_schema`.
    ///
    /// # Errors
    /// As [`Registry::delete_model`]; nothing is recorded then.
    pub async fn delete_model(&self, name: &str) -> Result<SchemaRecord, RegistryError> {
        let deleted = self.registry.delete_model(name).await?;
        self.record(AuditEntry::new(self.actor, AuditAction::DeleteSchema, name).revision(deleted.revision)).await;
        Ok(deleted)
    }

    /// The rule's active version now, if it has one.
    async fn active_of(&self, name: &str) -> Option<u64> {
        self.registry.rule(name).await.ok().map(|info| info.active).filter(|&v| v > 0)
    }

    /// The entry of making `active` the active version, `before` it was: a rollback when older.
    fn activation(&self, name: &str, active: &RuleVersion, before: Option<u64>) -> AuditEntry {
        let action = match before {
            Some(before) if active.version < before => AuditAction::Rollback,
            _ => AuditAction::Activate,
        };
        let entry = AuditEntry::new(self.actor, action, name).version(active.version, &active.digest);
        match before {
            Some(before) => entry.detail(format!("was v{before}")),
            None => entry,
        }
    }

    async fn record(&self, entry: AuditEntry) {
        let (action, target) = (entry.action, entry.target.clone());
        match self.log.record(entry).await {
            Ok(entry) => info!(actor = %self.actor, %action, %target, id = %entry.id, "registry changed"),
            Err(e) => error!(actor = %self.actor, %action, %target, error = %e, "cannot record an audit entry"),
        }
    }
}
