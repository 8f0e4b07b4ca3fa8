//! The Redis store: models as native Redis types, the protocol as one Redis Functions library.
//!
//! Every protocol step is one function call, so one round trip: lock-and-load, load, commit
//! (guard, checks, records, writes, version bumps and release together), release, resolve,
//! delete (`functions.rs`, `library.lua`). The layout of the keys is documented in [`keys`].
//! Waiters are woken through one Pub/Sub subscription per store (see [`ReleaseBus`]); a lock
//! whose holder vanished is free once its deadline passed.
//!
//! The same URL reaches a standalone server or a Redis Cluster (any node, or several
//! comma-separated): the store detects which at connect ([`connection`]). On a cluster each
//! function call goes to the primary of its models' slot; a multi-model call is possible only
//! for models in one slot, which [`Store::ensure_co_located`] checks before anything is
//! locked (models share a slot through a [placement](crate::Placement) in their schemas).
//!
//! # Notes
//! The store talks to Redis 7.0 or later by URL; it does not follow a Sentinel failover by
//! itself. A model type's placement comes with its schema in every call that names models
//! (lock-and-load, load, commit, resolve, delete, [`Store::ensure_co_located`]); the calls that
//! name locks only (release, withdraw, watch) use what the store learned from those (see
//! [`KeyLayout`]), so a caller names a placed type's models once before it watches their locks
//! (the engine's first step, the co-location check, does).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::Value;

use self::codec::{Reply, collections, corrupt_field, decode_model, encode_changes, wrong_type};
pub use self::connection::{CLUSTER_MAX_RETRY_WAIT_MS, CLUSTER_MIN_RETRY_WAIT_MS, CLUSTER_RETRIES};
pub(crate) use self::connection::{Connected, Timeouts};
pub use self::functions::LIBRARY_VERSION;
use self::functions::{FunctionCall, step};
pub use self::keys::{DEFAULT_PREFIX, KeyLayout};
use super::record::retention_ms;
use super::{
    CommitGuard, CommitReceipt, CommitRequest, Loaded, LockAttempt, LockLease, LockRequest, ReleaseBus, ReleaseWatch,
    StaleModel, Store, StoreError, StoredRecord, VersionCheck,
};
use crate::model::change::{ModelSnapshot, ModelTarget};
use crate::model::ids::{LockId, ModelId};

mod codec;
pub mod connection;
pub(crate) mod functions;
pub mod keys;
mod subscription;
mod tracking;

pub(crate) use self::codec::redis_error;
pub(crate) use self::subscription::{Delivery, Subscription, spawn_subscription};

/// How long connecting to Redis may take, by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a reply may take, by default: far above any healthy script call (a commit of the
/// largest change set runs in milliseconds), well below the default lock lease.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Configures and connects a [`RedisStore`].
#[derive(Debug, Clone)]
pub struct RedisStoreBuilder {
    url: String,
    prefix: String,
    connect_timeout: Duration,
    response_timeout: Duration,
    client_tracking: bool,
}

impl RedisStoreBuilder {
    /// Asks Redis to say which models this store read were changed by another client
    /// (client-side tracking, `CLIENT TRACKING ... NOLOOP` into a listener connection of the
    /// store's own; default off), so that the engine's snapshot cache drops them before it
    /// runs a rule on a stale state. Pays where several engines or other clients write the
    /// same models (see the README's figures); a standalone server only. Correctness never
    /// depends on it: commits check versions either way.
    #[must_use]
    pub fn client_tracking(mut self, on: bool) -> Self {
        self.client_tracking = on;
        self
    }

    /// How long connecting (and each reconnect attempt) may take (default
    /// [`DEFAULT_CONNECT_TIMEOUT`]).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long the store waits for any reply (default [`DEFAULT_RESPONSE_TIMEOUT`]). A commit
    /// whose reply does not come in time has an unknown outcome: the engine then asks the
    /// store what happened ([`Store::resolve`]) before it answers its caller.
    #[must_use]
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Puts every key under `prefix` instead of `wasmtx` (to share a Redis between
    /// applications or test runs).
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Connects, makes sure the server runs this engine's version of the store library
    /// (loading or replacing it if needed), and subscribes to release announcements before
    /// returning.
    ///
    /// # Errors
    /// [`StoreError::InvalidPrefix`] for a prefix the layout cannot use,
    /// [`StoreError::InvalidUrl`] for a malformed URL, [`StoreError::Unavailable`] if Redis
    /// cannot be reached, [`StoreError::Incompatible`] for a server before Redis 7.0 or one
    /// that runs a newer library version.
    pub async fn connect(self) -> Result<RedisStore, StoreError> {
        keys::validate_prefix(&self.prefix)?;
        let timeouts = Timeouts { connect: Some(self.connect_timeout), response: Some(self.response_timeout) };
        let mut link = connection::connect(&self.url, timeouts).await?;
        link.ensure_library().await?;
        let keys = KeyLayout::new(self.prefix);
        let tracking = if self.client_tracking {
            if link.nodes.cluster {
                return Err(StoreError::Incompatible {
                    reason: "client tracking needs a standalone Redis server, and this is a Redis Cluster".into(),
                });
            }
            let (tracker, listener) =
                tracking::start(&self.url, keys.clone(), Arc::clone(&link.generation), self.connect_timeout).await?;
            if let connection::RedisConnection::Single(manager) = &link.conn {
                tracker.switch_on(&mut manager.clone()).await.map_err(|e| match redis_error(e) {
                    unavailable @ StoreError::Unavailable(_) => unavailable,
                    refused => StoreError::Incompatible { reason: format!("CLIENT TRACKING was refused: {refused}") },
                })?;
            }
            link.tracker = Some(tracker);
            Some(listener)
        } else {
            None
        };
        let bus = ReleaseBus::new();
        let listener = {
            let bus = bus.clone();
            let generation = Arc::clone(&link.generation);
            spawn_subscription(link.nodes.clients()?, keys.released_channel(), move |delivery| match delivery {
                Delivery::Message(lock_key) => bus.announce(&String::from_utf8_lossy(lock_key)),
                Delivery::MaybeMissed => {
                    // The listener lost its connection: so may the store's have.
                    generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                    bus.announce_all();
                }
            })
            .await?
        };
        let response_timeout = self.response_timeout;
        Ok(RedisStore {
            inner: Arc::new(Inner { link, keys, bus, _listener: listener, _tracking: tracking, response_timeout }),
        })
    }
}

/// The Redis backend, on a standalone server or a Redis Cluster. Cheap to clone; clones share
/// one multiplexed connection (per node, on a cluster; reconnecting by itself) and one Pub/Sub
/// listener.
#[derive(Debug, Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    link: Connected,
    keys: KeyLayout,
    bus: ReleaseBus,
    /// Stopped when the last clone goes.
    _listener: Subscription,
    /// The client-tracking listener, when on; stopped with the store.
    _tracking: Option<tracking::Listener>,
    response_timeout: Duration,
}

impl RedisStore {
    /// Starts configuring a store for the Redis at `url` (`redis://host:port/db`).
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.into(),
            prefix: DEFAULT_PREFIX.to_owned(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            client_tracking: false,
        }
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

    /// Whether the store is connected to a Redis Cluster (rather than one server).
    pub fn is_cluster(&self) -> bool {
        self.inner.link.nodes.cluster
    }

    fn link(&self) -> &Connected {
        &self.inner.link
    }

    /// Whether Redis tells this store which models it read other clients changed
    /// ([`RedisStoreBuilder::client_tracking`]).
    pub fn is_tracking(&self) -> bool {
        self.inner.link.tracker.is_some()
    }

    /// The flags argument of lock-and-load and commit: `base` (has a record, check the clock)
    /// plus 2 when the function must read what it wrote again, to keep it tracked.
    fn flags(&self, base: bool) -> &'static str {
        match (base, self.is_tracking()) {
            (false, false) => "0",
            (true, false) => "1",
            (false, true) => "2",
            (true, true) => "3",
        }
    }

    /// The load function, with the record check when `key` is given (and there is a model).
    async fn load_with(&self, models: &[ModelTarget], key: Option<&str>) -> Result<Loaded, StoreError> {
        let keys = &self.inner.keys;
        keys.learn(models);
        let record = key.zip(models.first());
        let mut call = FunctionCall::new(step::LOAD);
        call.arg(models.len()).arg(if record.is_some() { "1" } else { "0" });
        let layouts = push_models(&mut call, keys, models);
        if let Some((key, anchor)) = record {
            call.key(keys.record(&anchor.id, key));
        }
        let value: Value = call.invoke(self.link()).await?;
        let mut reply = Reply::new(value)?;
        match reply.text()?.as_str() {
            "OK" => Ok(Loaded::Snapshots(
                models.iter().zip(&layouts).map(|(t, c)| decode_model(&mut reply, t, c)).collect::<Result<_, _>>()?,
            )),
            "RECORDED" => Ok(Loaded::Recorded(reply.record()?)),
            "WRONGTYPE" => Err(wrong_type(&mut reply, models)),
            "CORRUPT" => Err(corrupt_field(&mut reply, models)),
            other => Err(StoreError::Backend(format!("unexpected load reply {other}"))),
        }
    }
}

/// Adds each model's keys (data, then collections) and its `c, kinds` layout to a loading
/// function's call; returns the layouts for decoding the reply.
fn push_models(call: &mut FunctionCall, keys: &KeyLayout, models: &[ModelTarget]) -> Vec<codec::Collections> {
    models
        .iter()
        .map(|target| {
            call.key(keys.data(&target.id));
            push_collections(call, keys, target)
        })
        .collect()
}

/// Adds a model's collection keys and its `c, kinds` layout to a call; returns the layout.
fn push_collections(call: &mut FunctionCall, keys: &KeyLayout, target: &ModelTarget) -> codec::Collections {
    let colls = collections(keys, target);
    for k in &colls.keys {
        call.key(k);
    }
    call.arg(colls.keys.len()).arg(&colls.kinds);
    colls
}

#[async_trait]
impl Store for RedisStore {
    #[tracing::instrument(level = "debug", skip_all, fields(action = %request.action, models = request.models.len()))]
    async fn try_lock_and_load(&self, request: &LockRequest) -> Result<LockAttempt, StoreError> {
        let keys = &self.inner.keys;
        keys.learn(&request.models);
        let lease_ms = u64::try_from(request.lease.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut call = FunctionCall::new(step::LOCK_AND_LOAD);
        let record = request.record.as_deref().zip(request.models.first());
        call.arg(&request.owner).arg(lease_ms).arg(keys::lock_field(&request.action)).arg(request.models.len());
        call.arg(self.flags(record.is_some()));
        let layouts = push_models(&mut call, keys, &request.models);
        if let Some((key, anchor)) = record {
            call.key(keys.record(&anchor.id, key));
        }
        let sent = std::time::Instant::now();
        let value: Value = call.invoke(self.link()).await?;
        let mut reply = Reply::new(value)?;
        match reply.text()?.as_str() {
            "RECORDED" => Ok(LockAttempt::Recorded(reply.record()?)),
            "OK" => {
                let mut leases = Vec::with_capacity(layouts.len());
                let mut snapshots = Vec::with_capacity(layouts.len());
                for (target, colls) in request.models.iter().zip(&layouts) {
                    let token = u64::try_from(reply.int()?).unwrap_or_default();
                    leases.push(LockLease {
                        lock: LockId { model: target.id.clone(), action: request.action.clone() },
                        token,
                        owner: request.owner.clone(),
                        held_until: sent + Duration::from_millis(lease_ms),
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
            "CORRUPT" => Err(corrupt_field(&mut reply, &request.models)),
            other => Err(StoreError::Backend(format!("unexpected lock reply {other}"))),
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(models = models.len()))]
    async fn load(&self, models: &[ModelTarget]) -> Result<Vec<ModelSnapshot>, StoreError> {
        match self.load_with(models, None).await? {
            Loaded::Snapshots(snapshots) => Ok(snapshots),
            Loaded::Recorded(_) => Err(StoreError::Backend("a load without a record key found a record".into())),
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(models = models.len()))]
    async fn load_unless_recorded(&self, models: &[ModelTarget], key: &str) -> Result<Loaded, StoreError> {
        self.load_with(models, Some(key)).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(models = request.models.len()))]
    async fn commit(&self, request: CommitRequest<'_>) -> Result<CommitReceipt, StoreError> {
        let keys = &self.inner.keys;
        keys.learn(request.models);
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
            // 'K': leases, with the versions checked even when nothing is written.
            CommitGuard::Leases { leases, check, .. } => {
                let guard = if check == VersionCheck::Always { "K" } else { "L" };
                (guard, leases.first().map(|l| l.lock.action.clone()).unwrap_or_default())
            }
            CommitGuard::Versions { action, refresh: false, .. } => ("V", action.to_owned()),
            CommitGuard::Versions { action, refresh: true, .. } => ("R", action.to_owned()),
            CommitGuard::Unguarded => ("U", String::new()),
        };
        // The lease certainly lasts while the commit is on its way (a reply later than the
        // response timeout is resolved, which stops a late commit): no need for the server's
        // clock then.
        let check_clock = match request.guard {
            CommitGuard::Leases { leases, .. } => {
                let latest = std::time::Instant::now() + self.inner.response_timeout;
                leases.iter().any(|l| latest >= l.held_until)
            }
            CommitGuard::Versions { .. } | CommitGuard::Unguarded => false,
        };
        let mut call = FunctionCall::new(step::COMMIT);
        call.arg(guard).arg(request.models.len()).arg(keys.released_channel());
        call.arg(keys::lock_field(&action)).arg(keys::lock_suffix(&action));
        call.arg(self.flags(check_clock));
        let records = request.records;
        let anchor = request.models.first().filter(|_| !records.entries.is_empty());
        let record_count = if anchor.is_some() { records.entries.len() } else { 0 };
        call.arg(record_count).arg(records.commit_id).arg(retention_ms(records.retention));
        if let Some(anchor) = anchor {
            for entry in records.entries {
                call.key(keys.record(&anchor.id, entry.key)).arg(entry.payload.unwrap_or_default());
            }
        }
        for (i, target) in request.models.iter().enumerate() {
            let changes = request.changes.get(i).map_or(&[][..], Vec::as_slice);
            let part = encode_changes(keys, target, changes);
            // The token a lease must still hold (lock mode), and the version the model must
            // still be at (lock and optimistic modes).
            let (token, version) = match request.guard {
                CommitGuard::Leases { leases, versions, .. } => {
                    (leases.get(i).map(|l| l.token.to_string()).unwrap_or_default(), versions.get(i).copied())
                }
                CommitGuard::Versions { versions, .. } => (String::new(), versions.get(i).copied()),
                CommitGuard::Unguarded => (String::new(), None),
            };
            call.key(keys.data(&target.id));
            for k in &part.keys {
                call.key(k);
            }
            // The version the model gets, when a checked version makes it certain: it is written
            // as sent, and Redis formats no number.
            let checked = match request.guard {
                CommitGuard::Leases { .. } | CommitGuard::Versions { .. } => part.op_count > 0,
                CommitGuard::Unguarded => false,
            };
            let next = version.filter(|_| checked).map(|v| (v + 1).to_string()).unwrap_or_default();
            call.arg(token).arg(version.map(|v| v.to_string()).unwrap_or_default()).arg(next);
            call.arg(part.keys.len()).arg(part.op_count);
            for op in &part.ops {
                call.arg(op.as_slice());
            }
        }
        // Under a refresh, every collection of every model, for the state of those that moved.
        let refresh_layouts = match request.guard {
            CommitGuard::Versions { refresh: true, .. } => {
                request.models.iter().map(|target| push_collections(&mut call, keys, target)).collect()
            }
            CommitGuard::Leases { .. } | CommitGuard::Versions { refresh: false, .. } | CommitGuard::Unguarded => {
                Vec::new()
            }
        };
        let value: Value = call.invoke(self.link()).await?;
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
            "RECORDED" => {
                let index = usize::try_from(reply.int()? - 1).unwrap_or(usize::MAX);
                Err(StoreError::Recorded { index, record: reply.record()? })
            }
            "ABORTED" => Err(StoreError::CommitAborted { commit_id: records.commit_id.to_owned() }),
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
                let model = request.models.get(i).map(|t| t.id.clone()).unwrap_or_else(|| ModelId::new("?", "?"));
                Err(StoreError::Conflict { model, expected, found: u64::try_from(found).unwrap_or_default() })
            }
            "STALE" => {
                let count = usize::try_from(reply.int()?).unwrap_or_default();
                let mut models = Vec::with_capacity(count);
                for _ in 0..count {
                    let index = usize::try_from(reply.int()? - 1).unwrap_or(usize::MAX);
                    let (Some(target), Some(colls)) = (request.models.get(index), refresh_layouts.get(index)) else {
                        return Err(StoreError::Backend("stale commit reply names no model".into()));
                    };
                    models.push(StaleModel::new(index, target.id.clone(), decode_model(&mut reply, target, colls)?));
                }
                Err(StoreError::Stale { models })
            }
            "CANNOT" => {
                let target = model_at(&mut reply)?;
                let field = reply.text()?;
                let reason = reply.text()?;
                Err(StoreError::CannotApply { model: target.id.clone(), field, reason })
            }
            "WRONGTYPE" => Err(wrong_type(&mut reply, request.models)),
            "CORRUPT" => Err(corrupt_field(&mut reply, request.models)),
            other => Err(StoreError::Backend(format!("unexpected commit reply {other}"))),
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(anchor = %anchor.id, records = keys.len()))]
    async fn resolve(
        &self,
        anchor: &ModelTarget,
        keys: &[&str],
        commit_id: &str,
        retention: Duration,
    ) -> Result<Vec<Option<StoredRecord>>, StoreError> {
        self.inner.keys.learn(std::slice::from_ref(anchor));
        let mut call = FunctionCall::new(step::RESOLVE);
        for key in keys {
            call.key(self.inner.keys.record(&anchor.id, key));
        }
        call.arg(commit_id).arg(retention_ms(retention));
        let values: Vec<Option<String>> = call.invoke(self.link()).await?;
        values.iter().map(|v| v.as_deref().map(codec::decode_record).transpose()).collect()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(locks = leases.len()))]
    async fn release(&self, leases: &[LockLease]) -> Result<(), StoreError> {
        if leases.is_empty() {
            return Ok(());
        }
        let keys = &self.inner.keys;
        // One call per action (an invocation's leases share one).
        let mut actions: Vec<&str> = leases.iter().map(|l| l.lock.action.as_str()).collect();
        actions.sort_unstable();
        actions.dedup();
        for action in actions {
            let mut call = FunctionCall::new(step::RELEASE);
            call.arg(keys.released_channel()).arg(keys::lock_field(action)).arg(keys::lock_suffix(action));
            for lease in leases.iter().filter(|l| l.lock.action == action) {
                call.key(keys.data(&lease.lock.model)).arg(lease.token);
            }
            let _: Value = call.invoke(self.link()).await?;
        }
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(locks = locks.len()))]
    async fn withdraw(&self, locks: &[LockId], owner: &str) -> Result<(), StoreError> {
        let keys = &self.inner.keys;
        let mut actions: Vec<&str> = locks.iter().map(|l| l.action.as_str()).collect();
        actions.sort_unstable();
        actions.dedup();
        for action in actions {
            let mut call = FunctionCall::new(step::WITHDRAW);
            call.arg(keys.released_channel()).arg(keys::lock_field(action)).arg(keys::lock_suffix(action)).arg(owner);
            for lock in locks.iter().filter(|l| l.action == action) {
                call.key(keys.data(&lock.model));
            }
            let _: Value = call.invoke(self.link()).await?;
        }
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(model = %model.id))]
    async fn delete(&self, model: &ModelTarget) -> Result<u64, StoreError> {
        let keys = &self.inner.keys;
        keys.learn(std::slice::from_ref(model));
        let colls = collections(keys, model);
        let mut call = FunctionCall::new(step::DELETE);
        call.key(keys.data(&model.id));
        for k in &colls.keys {
            call.key(k);
        }
        let version: i64 = call.invoke(self.link()).await?;
        Ok(u64::try_from(version).unwrap_or_default())
    }

    fn ensure_co_located(&self, models: &[ModelTarget]) -> Result<(), StoreError> {
        let keys = &self.inner.keys;
        keys.learn(models);
        if !self.is_cluster() || models.len() < 2 {
            return Ok(());
        }
        let slots: Vec<u16> = models.iter().map(|m| keys.slot(&m.id)).collect();
        if slots.iter().all(|&slot| slot == slots[0]) {
            return Ok(());
        }
        Err(StoreError::CrossSlot { models: models.iter().map(|m| m.id.clone()).collect(), slots })
    }

    fn generation(&self) -> u64 {
        self.link().generation()
    }

    fn watch_changes(&self, sink: std::sync::Weak<dyn super::ChangeSink>) -> bool {
        match &self.link().tracker {
            Some(tracker) => {
                tracker.watch(sink);
                true
            }
            None => false,
        }
    }

    fn watch(&self, locks: &[LockId]) -> ReleaseWatch {
        let keys = &self.inner.keys;
        self.inner.bus.watch(locks.iter().map(|l| keys.lock(&l.model, &l.action)))
    }
}
