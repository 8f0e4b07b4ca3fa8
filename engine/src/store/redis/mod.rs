//! The Redis store: models as native Redis types, locks and commits as Lua scripts.
//!
//! Every protocol step is one script, so one round trip: lock-and-load, load, commit (guard,
//! checks, writes, version bumps and release together), release, delete. The layout of the
//! keys is documented in [`keys`]. Waiters are woken through one Pub/Sub subscription per store
//! (see [`ReleaseBus`]); a lock whose holder vanished is freed by its lease (TTL).
//!
//! # Notes
//! The store talks to one Redis server by URL (it does not follow a Sentinel failover by itself);
//! there is no Redis Cluster client yet. The key layout is ready for one (each model's keys share a slot),
//! but a multi-model invocation runs one script over the keys of several models, which a cluster
//! would allow only for models in one slot.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{Script, Value};

use self::codec::{Reply, collections, decode_model, encode_changes, wrong_type};
pub use self::keys::{DEFAULT_PREFIX, KeyLayout};
use super::{
    CommitGuard, CommitReceipt, CommitRequest, LockAttempt, LockLease, LockRequest, ReleaseBus, ReleaseWatch, Store,
    StoreError,
};
use crate::model::change::{ModelSnapshot, ModelTarget};
use crate::model::ids::LockId;

mod codec;
pub mod keys;
mod scripts;
mod subscription;

pub(crate) use self::codec::redis_error;
pub(crate) use self::subscription::{Delivery, spawn_subscription};

/// The scripts, hashed once per process.
#[derive(Debug)]
struct Scripts {
    lock_and_load: Script,
    load: Script,
    commit: Script,
    release: Script,
    delete: Script,
}

fn scripts() -> &'static Scripts {
    static SCRIPTS: std::sync::OnceLock<Scripts> = std::sync::OnceLock::new();
    SCRIPTS.get_or_init(|| Scripts {
        lock_and_load: Script::new(scripts::LOCK_AND_LOAD),
        load: Script::new(scripts::LOAD),
        commit: Script::new(scripts::COMMIT),
        release: Script::new(scripts::RELEASE),
        delete: Script::new(scripts::DELETE),
    })
}

/// Configures and connects a [`RedisStore`].
#[derive(Debug, Clone)]
pub struct RedisStoreBuilder {
    url: String,
    prefix: String,
}

impl RedisStoreBuilder {
    /// Puts every key under `prefix` instead of `wasmtx` (to share a Redis between
    /// applications or test runs).
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Connects, and subscribes to release announcements before returning.
    ///
    /// # Errors
    /// [`StoreError::InvalidPrefix`] for a prefix the layout cannot use,
    /// [`StoreError::InvalidUrl`] for a malformed URL, [`StoreError::Unavailable`] if Redis
    /// cannot be reached.
    pub async fn connect(self) -> Result<RedisStore, StoreError> {
        keys::validate_prefix(&self.prefix)?;
        let client = redis::Client::open(self.url.as_str())
            .map_err(|e| StoreError::InvalidUrl { url: crate::backend::redact(&self.url), reason: e.to_string() })?;
        let conn = ConnectionManager::new(client.clone()).await.map_err(redis_error)?;
        let keys = KeyLayout::new(self.prefix);
        let bus = ReleaseBus::new();
        let listener = {
            let bus = bus.clone();
            spawn_subscription(client, keys.released_channel(), move |delivery| match delivery {
                Delivery::Message(lock_key) => bus.announce(&String::from_utf8_lossy(lock_key)),
                Delivery::MaybeMissed => bus.announce_all(),
            })
            .await?
        };
        Ok(RedisStore { inner: Arc::new(Inner { conn, keys, bus, listener }) })
    }
}

/// The Redis backend. Cheap to clone; clones share one multiplexed connection (reconnecting by
/// itself) and one Pub/Sub listener.
#[derive(Debug, Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    conn: ConnectionManager,
    keys: KeyLayout,
    bus: ReleaseBus,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl RedisStore {
    /// Starts configuring a store for the Redis at `url` (`redis://host:port/db`).
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder { url: url.into(), prefix: DEFAULT_PREFIX.to_owned() }
    }

    /// Connects with the default prefix.
    ///
    /// # Errors
    /// As [`RedisStoreBuilder::connect`].
    pub async fn connect(url: impl Into<String>) -> Result<Self, StoreError> {
        Self::builder(url).connect().await
    }

    /// Where this store puts each model's keys.
    pub fn keys(&self) -> &KeyLayout {
        &self.inner.keys
    }

    fn conn(&self) -> ConnectionManager {
        self.inner.conn.clone()
    }

    fn lock_value(lease: &LockLease) -> String {
        format!("{}:{}", lease.token, lease.owner)
    }
}

/// Adds each model's keys (its lock first when `lock_action` is given, then meta, data and
/// collections) and its `c, kinds` layout to a loading script's call; returns the layouts
/// for decoding the reply.
fn push_models(
    inv: &mut redis::ScriptInvocation<'_>,
    keys: &KeyLayout,
    models: &[ModelTarget],
    lock_action: Option<&str>,
) -> Vec<codec::Collections> {
    models
        .iter()
        .map(|target| {
            let colls = collections(keys, target);
            if let Some(action) = lock_action {
                inv.key(keys.lock(&target.id, action));
            }
            inv.key(keys.meta(&target.id)).key(keys.data(&target.id));
            for k in &colls.keys {
                inv.key(k);
            }
            inv.arg(colls.keys.len()).arg(&colls.kinds);
            colls
        })
        .collect()
}

#[async_trait]
impl Store for RedisStore {
    #[tracing::instrument(level = "debug", skip_all, fields(action = %request.action, models = request.models.len()))]
    async fn try_lock_and_load(&self, request: &LockRequest) -> Result<LockAttempt, StoreError> {
        let keys = &self.inner.keys;
        let lease_ms = u64::try_from(request.lease.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut inv = scripts().lock_and_load.prepare_invoke();
        inv.arg(&request.owner).arg(lease_ms).arg(&request.action).arg(request.models.len());
        let layouts = push_models(&mut inv, keys, &request.models, Some(&request.action));
        let value: Value = inv.invoke_async(&mut self.conn()).await.map_err(redis_error)?;
        let mut reply = Reply::new(value)?;
        match reply.text()?.as_str() {
            "OK" => {
                let mut leases = Vec::with_capacity(layouts.len());
                let mut snapshots = Vec::with_capacity(layouts.len());
                for (target, colls) in request.models.iter().zip(&layouts) {
                    let token = u64::try_from(reply.int()?).unwrap_or_default();
                    leases.push(LockLease {
                        lock: LockId { model: target.id.clone(), action: request.action.clone() },
                        token,
                        owner: request.owner.clone(),
                    });
                    snapshots.push(decode_model(&mut reply, target, colls)?);
                }
                Ok(LockAttempt::Acquired { leases, snapshots })
            }
            "BUSY" => {
                let model_index = usize::try_from(reply.int()? - 1).unwrap_or_default();
                let pttl = reply.int()?;
                let expires_in = u64::try_from(pttl).ok().map(Duration::from_millis);
                Ok(LockAttempt::Busy { model_index, expires_in })
            }
            "WRONGTYPE" => Err(wrong_type(&mut reply, &request.models)),
            other => Err(StoreError::Backend(format!("unexpected lock reply {other}"))),
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(models = models.len()))]
    async fn load(&self, models: &[ModelTarget]) -> Result<Vec<ModelSnapshot>, StoreError> {
        let keys = &self.inner.keys;
        let mut inv = scripts().load.prepare_invoke();
        inv.arg(models.len());
        let layouts = push_models(&mut inv, keys, models, None);
        let value: Value = inv.invoke_async(&mut self.conn()).await.map_err(redis_error)?;
        let mut reply = Reply::new(value)?;
        match reply.text()?.as_str() {
            "OK" => models.iter().zip(&layouts).map(|(t, c)| decode_model(&mut reply, t, c)).collect(),
            "WRONGTYPE" => Err(wrong_type(&mut reply, models)),
            other => Err(StoreError::Backend(format!("unexpected load reply {other}"))),
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(models = request.models.len()))]
    async fn commit(&self, request: CommitRequest<'_>) -> Result<CommitReceipt, StoreError> {
        let keys = &self.inner.keys;
        for (target, changes) in request.models.iter().zip(request.changes) {
            for change in changes {
                change.check(&target.schema).map_err(|reason| StoreError::CannotApply {
                    model: target.id.clone(),
                    field: change.field().to_owned(),
                    reason,
                })?;
            }
        }
        let (guard, action) = match request.guard {
            CommitGuard::Leases { leases, .. } => {
                ("L", leases.first().map(|l| l.lock.action.clone()).unwrap_or_default())
            }
            CommitGuard::Versions { action, .. } => ("V", action.to_owned()),
            CommitGuard::Unguarded => ("U", String::new()),
        };
        let mut inv = scripts().commit.prepare_invoke();
        inv.arg(guard).arg(request.models.len()).arg(keys.released_channel());
        for (i, target) in request.models.iter().enumerate() {
            let changes = request.changes.get(i).map_or(&[][..], Vec::as_slice);
            let part = encode_changes(keys, target, changes);
            // The lock value a lease must still hold (lock mode), and the version the model
            // must still be at (lock and optimistic modes).
            let (lock_value, version) = match request.guard {
                CommitGuard::Leases { leases, versions } => {
                    (leases.get(i).map(Self::lock_value).unwrap_or_default(), versions.get(i).copied())
                }
                CommitGuard::Versions { versions, .. } => (String::new(), versions.get(i).copied()),
                CommitGuard::Unguarded => (String::new(), None),
            };
            inv.key(keys.lock(&target.id, &action)).key(keys.meta(&target.id)).key(keys.data(&target.id));
            for k in &part.keys {
                inv.key(k);
            }
            inv.arg(lock_value).arg(version.map(|v| v.to_string()).unwrap_or_default());
            inv.arg(part.keys.len()).arg(part.op_count);
            for op in &part.ops {
                inv.arg(op.as_slice());
            }
        }
        let value: Value = inv.invoke_async(&mut self.conn()).await.map_err(redis_error)?;
        let mut reply = Reply::new(value)?;
        let model_at = |reply: &mut Reply| -> Result<&ModelTarget, StoreError> {
            let i = usize::try_from(reply.int()? - 1).unwrap_or(usize::MAX);
            request.models.get(i).ok_or_else(|| StoreError::Backend("commit reply names no model".into()))
        };
        match reply.text()?.as_str() {
            "OK" => {
                let versions = request
                    .models
                    .iter()
                    .map(|_| reply.int().map(|v| u64::try_from(v).unwrap_or_default()))
                    .collect::<Result<_, _>>()?;
                Ok(CommitReceipt { versions })
            }
            "LOST" => {
                let target = model_at(&mut reply)?;
                Err(StoreError::LockLost { lock: LockId { model: target.id.clone(), action } })
            }
            "CONFLICT" => {
                let i = usize::try_from(reply.int()? - 1).unwrap_or(usize::MAX);
                let found = reply.int()?;
                let expected = match request.guard {
                    CommitGuard::Leases { versions, .. } | CommitGuard::Versions { versions, .. } => {
                        versions.get(i).copied().unwrap_or_default()
                    }
                    CommitGuard::Unguarded => 0,
                };
                let model =
                    request.models.get(i).map(|t| t.id.clone()).unwrap_or_else(|| crate::ModelId::new("?", "?"));
                Err(StoreError::Conflict { model, expected, found: u64::try_from(found).unwrap_or_default() })
            }
            "CANNOT" => {
                let target = model_at(&mut reply)?;
                let field = reply.text()?;
                let reason = reply.text()?;
                Err(StoreError::CannotApply { model: target.id.clone(), field, reason })
            }
            "WRONGTYPE" => Err(wrong_type(&mut reply, request.models)),
            other => Err(StoreError::Backend(format!("unexpected commit reply {other}"))),
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(locks = leases.len()))]
    async fn release(&self, leases: &[LockLease]) -> Result<(), StoreError> {
        if leases.is_empty() {
            return Ok(());
        }
        let keys = &self.inner.keys;
        let mut inv = scripts().release.prepare_invoke();
        inv.arg(keys.released_channel());
        for lease in leases {
            inv.key(keys.lock(&lease.lock.model, &lease.lock.action));
            inv.arg(Self::lock_value(lease));
        }
        let _: Value = inv.invoke_async(&mut self.conn()).await.map_err(redis_error)?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(model = %model.id))]
    async fn delete(&self, model: &ModelTarget) -> Result<u64, StoreError> {
        let keys = &self.inner.keys;
        let colls = collections(keys, model);
        let mut inv = scripts().delete.prepare_invoke();
        inv.key(keys.meta(&model.id)).key(keys.data(&model.id));
        for k in &colls.keys {
            inv.key(k);
        }
        let version: i64 = inv.invoke_async(&mut self.conn()).await.map_err(redis_error)?;
        Ok(u64::try_from(version).unwrap_or_default())
    }

    fn watch(&self, locks: &[LockId]) -> ReleaseWatch {
        let keys = &self.inner.keys;
        self.inner.bus.watch(locks.iter().map(|l| keys.lock(&l.model, &l.action)))
    }
}
