//! Client-side tracking (`CLIENT TRACKING`, Redis 6+): the server tells this store which keys
//! it read have been changed by another client, and the store tells its watchers
//! ([`Store::watch_changes`](crate::store::Store::watch_changes), the engine's snapshot cache)
//! which models those keys belong to.
//!
//! The invalidations go to a connection of their own (a RESP3 listener, `REDIRECT`ed to), so
//! the store's data connection stays RESP2. The data connection tracks every key it reads,
//! functions included (`NOLOOP`: its own writes are not reported back to it). A write ends the
//! tracking of a key for every client, the writer's included, so the store's lock-and-load and
//! commit read what they wrote again when tracking is on (see `library.lua`).
//!
//! What is lost is never replayed, so every gap moves the store's generation (the cache drops
//! everything): the listener reconnecting (it tells the data connection its new id at the next
//! call), a flush of the server (an invalidation naming no key). The data connection's own
//! reconnect moves the generation already (a failed request does), and the next call switches
//! tracking on again before it goes.
//!
//! # Notes
//! Not on a Redis Cluster: each node would need a listener of its own, and a slot's move a new
//! round of reads; the builder refuses it there. Not opt-in tracking (`OPTIN`) or broadcast
//! (`BCAST`): the first would add a `CLIENT CACHING yes` per call for nothing (every call reads
//! what its caller caches), and Redis 7.0 does not spare a broadcast client the reports of its
//! own writes made inside functions (`NOLOOP` misses them), which would drop every entry the
//! engine just committed. Redis 7.0 tracks every key a function declares once the function
//! reads any, so each commit's idempotency record is tracked too: its reports (another
//! engine's write of it, its expiry) name no model's state and are dropped here. The server's
//! tracking table thus holds about one record per invocation for the record retention, up to
//! `tracking-table-max-keys` (default 1,000,000); beyond it Redis evicts tracked keys with a
//! report each, which costs an evicted model one extra load.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::codec::redis_error;
use super::keys::KeyLayout;
use crate::model::ids::ModelId;
use crate::store::{ChangeSink, StoreError};

/// How often the idle listener checks that its connection still answers.
const LISTENER_PING: Duration = Duration::from_secs(5);
/// The longest wait before reconnecting a lost listener.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// One store's tracking state, shared by its calls and its listener task.
#[derive(Debug)]
pub(crate) struct Tracker {
    keys: KeyLayout,
    generation: Arc<AtomicU64>,
    /// The listener's client id (the `REDIRECT` target); 0 while there is none.
    redirect: AtomicI64,
    /// The store generation the data connection's tracking was last switched on in, plus
    /// one (0: never).
    enabled_in: AtomicU64,
    sinks: Mutex<Vec<Weak<dyn ChangeSink>>>,
}

impl Tracker {
    /// Adds a watcher.
    pub(crate) fn watch(&self, sink: Weak<dyn ChangeSink>) {
        let mut sinks = self.sinks.lock().unwrap_or_else(PoisonError::into_inner);
        sinks.retain(|s| s.strong_count() > 0);
        sinks.push(sink);
    }

    /// Switches tracking on for the data connection `conn` if it is not on in the store's
    /// current generation (at the first call, after a reconnect of either connection).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the connection fails (the call would fail the same
    /// way); a refusal by the server is logged, and calls go on untracked in this generation.
    pub(crate) async fn ensure_on(&self, conn: &mut (impl ConnectionLike + Send)) -> Result<(), StoreError> {
        if self.enabled_in.load(Ordering::Acquire) == self.generation.load(Ordering::Acquire) + 1 {
            return Ok(());
        }
        match self.switch_on(conn).await {
            Ok(()) => Ok(()),
            Err(e) => match redis_error(e) {
                unavailable @ StoreError::Unavailable(_) => Err(unavailable),
                other => {
                    // Once per generation, not at every call: calls go on untracked until the
                    // next reconnect tries again.
                    self.enabled_in.store(self.generation.load(Ordering::Acquire) + 1, Ordering::Release);
                    warn!(error = %other, "CLIENT TRACKING was refused; calls go on untracked");
                    Ok(())
                }
            },
        }
    }

    /// Sends `CLIENT TRACKING ON REDIRECT <listener> NOLOOP` on `conn` (nothing while no
    /// listener is connected: its return moves the generation, which drops what was cached
    /// meanwhile).
    ///
    /// # Errors
    /// The server's refusal or the connection's failure.
    pub(crate) async fn switch_on(&self, conn: &mut (impl ConnectionLike + Send)) -> redis::RedisResult<()> {
        let generation = self.generation.load(Ordering::Acquire);
        let redirect = self.redirect.load(Ordering::Acquire);
        if redirect == 0 {
            return Ok(());
        }
        redis::cmd("CLIENT")
            .arg("TRACKING")
            .arg("ON")
            .arg("REDIRECT")
            .arg(redirect)
            .arg("NOLOOP")
            .query_async::<()>(conn)
            .await?;
        self.enabled_in.store(generation + 1, Ordering::Release);
        Ok(())
    }

    /// Tells every watcher about the models whose state `keys` hold: not a record's (its
    /// expiry is reported too).
    fn deliver(&self, keys: &[Value]) {
        let mut models: Vec<ModelId> = keys
            .iter()
            .filter_map(|key| match key {
                Value::BulkString(bytes) => std::str::from_utf8(bytes).ok().and_then(|k| self.keys.model_state_of(k)),
                Value::SimpleString(text) => self.keys.model_state_of(text),
                _ => None,
            })
            .collect();
        models.sort_unstable();
        models.dedup();
        if models.is_empty() {
            return;
        }
        let sinks: Vec<Arc<dyn ChangeSink>> =
            self.sinks.lock().unwrap_or_else(PoisonError::into_inner).iter().filter_map(Weak::upgrade).collect();
        for sink in sinks {
            sink.changed(&models);
        }
    }

    /// Everything may have changed unseen: a new generation.
    fn lost_track(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// The listener task; dropping it stops the task.
#[derive(Debug)]
pub(crate) struct Listener {
    task: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Opens the invalidation listener on the server at `url` and spawns the task that keeps it
/// (reconnecting when it is lost); returns once the first listener has its id, so the first
/// call is tracked.
///
/// # Errors
/// [`StoreError::Unavailable`] if the listener cannot connect at first,
/// [`StoreError::InvalidUrl`] for a URL the client refuses.
pub(crate) async fn start(
    url: &str,
    keys: KeyLayout,
    generation: Arc<AtomicU64>,
    connect_timeout: Duration,
) -> Result<(Arc<Tracker>, Listener), StoreError> {
    let client = resp3_client(url)?;
    let tracker = Arc::new(Tracker {
        keys,
        generation,
        redirect: AtomicI64::new(0),
        enabled_in: AtomicU64::new(0),
        sinks: Mutex::new(Vec::new()),
    });
    let (ready_tx, ready_rx) = oneshot::channel();
    let task = tokio::spawn(listen(client, Arc::downgrade(&tracker), connect_timeout, ready_tx));
    let listener = Listener { task };
    match ready_rx.await {
        Ok(Ok(())) => Ok((tracker, listener)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(StoreError::Unavailable("the tracking listener stopped before it started".into())),
    }
}

fn resp3_client(url: &str) -> Result<redis::Client, StoreError> {
    let invalid =
        |e: redis::RedisError| StoreError::InvalidUrl { url: crate::backend::redact(url), reason: e.to_string() };
    let info = url.into_connection_info().map_err(invalid)?;
    let settings = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
    redis::Client::open(info.set_redis_settings(settings)).map_err(invalid)
}

/// A listener connection, its id and its pushes.
async fn open_listener(
    client: &redis::Client,
    connect_timeout: Duration,
) -> redis::RedisResult<(MultiplexedConnection, i64, mpsc::UnboundedReceiver<PushInfo>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(connect_timeout))
        .set_response_timeout(Some(connect_timeout))
        .set_push_sender(tx);
    let mut conn = client.get_multiplexed_async_connection_with_config(&config).await?;
    let id: i64 = redis::cmd("CLIENT").arg("ID").query_async(&mut conn).await?;
    Ok((conn, id, rx))
}

async fn listen(
    client: redis::Client,
    tracker: Weak<Tracker>,
    connect_timeout: Duration,
    ready: oneshot::Sender<Result<(), StoreError>>,
) {
    let mut ready = Some(ready);
    let mut backoff = Duration::from_millis(50);
    loop {
        let (mut conn, id, mut pushes) = match open_listener(&client, connect_timeout).await {
            Ok(opened) => opened,
            Err(e) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(redis_error(e)));
                    return;
                }
                debug!(error = %e, "the tracking listener cannot reconnect yet");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        {
            let Some(tracker) = tracker.upgrade() else { return };
            tracker.redirect.store(id, Ordering::Release);
            // The data connection tracks into the new listener from its next call on; what was
            // cached while nobody listened goes.
            tracker.lost_track();
        }
        if let Some(ready) = ready.take() {
            let _ = ready.send(Ok(()));
        }
        let mut ping = tokio::time::interval(LISTENER_PING);
        ping.tick().await;
        loop {
            tokio::select! {
                push = pushes.recv() => {
                    let Some(push) = push else { break };
                    let Some(tracker) = tracker.upgrade() else { return };
                    match push.kind {
                        PushKind::Invalidate => match push.data.first() {
                            Some(Value::Array(keys)) => tracker.deliver(keys),
                            // No key: the server was flushed.
                            _ => tracker.lost_track(),
                        },
                        PushKind::Disconnection => break,
                        _ => {}
                    }
                }
                _ = ping.tick() => {
                    if redis::cmd("PING").query_async::<()>(&mut conn).await.is_err() {
                        break;
                    }
                }
            }
        }
        let Some(tracker) = tracker.upgrade() else { return };
        warn!("the client-tracking listener lost its connection; reconnecting");
        tracker.redirect.store(0, Ordering::Release);
        tracker.lost_track();
    }
}
