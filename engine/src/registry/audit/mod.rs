//! The audit trail: who changed the registry, when, and how. Every upload, activation,
//! rollback, deletion and schema change made through [`Audited`] (by `wasmtx serve` and by the
//! `wasmtx rule` and `wasmtx model` commands) is recorded as an [`AuditEntry`] (time, actor,
//! action, rule or model type, version, digest), in the store the registry lives in, with
//! bounded retention:
//!
//! - [`RedisAuditLog`]: a Redis stream, `<prefix>:{registry}:audit` (the registry's hash tag,
//!   so it sits in the registry's Cluster slot), capped with `XADD ... MAXLEN ~ n`; each entry
//!   one field `e` holding its JSON;
//! - [`FileAuditLog`]: the embedded store's, in memory and, with a path, as JSON lines in a
//!   file of the data directory (`audit.jsonl`), rewritten to the newest `n` entries when it
//!   holds twice as many.
//!
//! Recording is best effort: a change that was made stays made when its entry cannot be
//! written (the failure is logged at error level).

mod audited;
mod file;
mod redis;

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use self::audited::Audited;
pub use self::file::FileAuditLog;
pub use self::redis::RedisAuditLog;
use crate::store::StoreError;

/// How many entries an audit log keeps by default (the newest).
pub const DEFAULT_RETENTION: usize = 10_000;

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditAction {
    /// A new version was uploaded.
    Upload,
    /// A version was made active (a newer one than the active version, or the first).
    Activate,
    /// An older version than the active one was made active.
    Rollback,
    /// An inactive version was deleted.
    DeleteVersion,
    /// A rule was deleted with every version.
    DeleteRule,
    /// A model schema was defined or redefined.
    DefineSchema,
    /// A model schema was deleted.
    DeleteSchema,
}

impl AuditAction {
    /// The action's name, as entries spell it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Upload => "upload",
            Self::Activate => "activate",
            Self::Rollback => "rollback",
            Self::DeleteVersion => "delete_version",
            Self::DeleteRule => "delete_rule",
            Self::DefineSchema => "define_schema",
            Self::DeleteSchema => "delete_schema",
        }
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One change of the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AuditEntry {
    /// The entry's id in its log (a stream id on Redis, a sequence number in a file); empty
    /// until recorded.
    #[serde(default)]
    pub id: String,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// Who: the name of the token the change was made with over HTTP (`anonymous` without
    /// tokens), or `cli:<user>` for a command.
    pub actor: String,
    /// What.
    pub action: AuditAction,
    /// The rule's name, or the model type's.
    pub target: String,
    /// The rule's version, for the actions on versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// The version's SHA-256 (hex), for the actions on versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The schema's revision, for schema changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// The active version before an activation or rollback; the versions a rule deletion
    /// removed, and so on: a short free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl AuditEntry {
    /// An entry made now.
    pub fn new(actor: &str, action: AuditAction, target: &str) -> Self {
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Self {
            id: String::new(),
            at_ms,
            actor: actor.to_owned(),
            action,
            target: target.to_owned(),
            version: None,
            digest: None,
            revision: None,
            detail: None,
        }
    }

    /// With the rule version and its digest.
    #[must_use]
    pub fn version(mut self, version: u64, digest: &str) -> Self {
        self.version = Some(version);
        self.digest = Some(digest.to_owned());
        self
    }

    /// With the schema revision.
    #[must_use]
    pub fn revision(mut self, revision: u64) -> Self {
        self.revision = Some(revision);
        self
    }

    /// With a detail.
    #[must_use]
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// One line for people: time, actor, action, target and what else it has.
    pub fn to_line(&self) -> String {
        let mut line = format!("{} {} {} {} {}", self.id, self.at_ms, self.actor, self.action, self.target);
        if let Some(v) = self.version {
            line.push_str(&format!(" v{v}"));
        }
        if let Some(d) = &self.digest {
            line.push_str(&format!(" sha256:{d}"));
        }
        if let Some(r) = self.revision {
            line.push_str(&format!(" revision {r}"));
        }
        if let Some(d) = &self.detail {
            line.push_str(&format!(" ({d})"));
        }
        line
    }
}

/// Why the audit trail cannot be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The store failed (Redis unreachable, say).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The audit file cannot be read or written.
    #[error("audit file {path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// A stored entry is not an entry.
    #[error("corrupt audit entry: {0}")]
    Corrupt(String),
}

/// Where the audit trail lives: one backend per store.
#[async_trait]
pub trait AuditLog: Send + Sync + fmt::Debug + 'static {
    /// Appends an entry (dropping the oldest past the retention); returns it with its id.
    ///
    /// # Errors
    /// An [`AuditError`] when it cannot be written.
    async fn record(&self, entry: AuditEntry) -> Result<AuditEntry, AuditError>;

    /// The newest `limit` entries, newest first.
    ///
    /// # Errors
    /// An [`AuditError`] when they cannot be read.
    async fn list(&self, limit: usize) -> Result<Vec<AuditEntry>, AuditError>;
}
