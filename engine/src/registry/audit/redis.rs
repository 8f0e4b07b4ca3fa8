//! [`RedisAuditLog`]: the audit trail as a capped Redis stream beside the registry.

use async_trait::async_trait;

use super::{AuditEntry, AuditError, AuditLog};
use crate::registry::redis::RegistryKeys;
use crate::store::redis::connection::RedisConnection;
use crate::store::redis::{Timeouts, redis_error};

/// The audit trail in the stream `<prefix>:{registry}:audit` (see the
/// [module documentation](super)).
#[derive(Debug, Clone)]
pub struct RedisAuditLog {
    conn: RedisConnection,
    key: String,
    retention: usize,
}

impl RedisAuditLog {
    /// Connects to the Redis at `url`, for the registry under `prefix`, keeping about the newest
    /// `retention` entries (the stream is trimmed with `MAXLEN ~`, so a little more).
    ///
    /// # Errors
    /// [`AuditError::Store`]: [`StoreError::InvalidUrl`](crate::store::StoreError::InvalidUrl) for a malformed URL (one server, or
    /// several nodes of a cluster, comma-separated),
    /// [`StoreError::Unavailable`](crate::store::StoreError::Unavailable) if Redis cannot be reached.
    pub async fn connect(url: &str, prefix: &str, retention: usize) -> Result<Self, AuditError> {
        // The same connection as the store's: one server or a cluster (the stream carries the
        // registry's hash tag, so it lives in the registry's slot).
        let connected = crate::store::redis::connection::connect(url, Timeouts::default()).await?;
        Ok(Self { conn: connected.conn, key: RegistryKeys::new(prefix).audit(), retention: retention.max(1) })
    }

    /// The stream's key.
    pub fn key(&self) -> &str {
        &self.key
    }
}

#[async_trait]
impl AuditLog for RedisAuditLog {
    async fn record(&self, mut entry: AuditEntry) -> Result<AuditEntry, AuditError> {
        let json = serde_json::to_string(&entry).map_err(|e| AuditError::Corrupt(e.to_string()))?;
        let id: String = redis::cmd("XADD")
            .arg(&self.key)
            .arg("MAXLEN")
            .arg("~")
            .arg(self.retention)
            .arg("*")
            .arg("e")
            .arg(json)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(redis_error)?;
        entry.id = id;
        Ok(entry)
    }

    async fn list(&self, limit: usize) -> Result<Vec<AuditEntry>, AuditError> {
        type Reply = Vec<(String, Vec<(String, String)>)>;
        let reply: Reply = redis::cmd("XREVRANGE")
            .arg(&self.key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(limit.max(1))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(redis_error)?;
        reply
            .into_iter()
            .map(|(id, fields)| {
                let json = fields.into_iter().find(|(f, _)| f == "e").map(|(_, v)| v).unwrap_or_default();
                let mut entry: AuditEntry =
                    serde_json::from_str(&json).map_err(|e| AuditError::Corrupt(format!("{id}: {e}")))?;
                entry.id = id;
                Ok(entry)
            })
            .collect()
    }
}
