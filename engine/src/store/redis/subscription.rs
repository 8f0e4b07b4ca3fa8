//! One Redis Pub/Sub subscription kept alive for the life of a store: subscribe, deliver each
//! message, and after any reconnect say that messages may have been missed, since Pub/Sub
//! does not replay them. Shared by the release announcements of the model store and the
//! change announcements of the registry.
//!
//! On a Redis Cluster the subscription is a classic `SUBSCRIBE` on one node: a `PUBLISH` (also
//! one inside a function) reaches every node of the cluster, so any node serves. The task
//! subscribes on the first node that answers, in the order given (the URL's nodes, then those
//! the cluster named at connect); when the subscription is lost it moves on to the next node,
//! round the list, and says that messages may have been missed (waiters then look at their
//! locks again). Sharded Pub/Sub (`SSUBSCRIBE`, one channel per slot) would spare the cluster
//! bus the broadcast; it is not measured yet.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::codec::redis_error;
use crate::store::StoreError;

/// What a subscription hands its consumer.
#[derive(Debug)]
pub(crate) enum Delivery<'a> {
    /// A message's payload.
    Message(&'a [u8]),
    /// The subscription was lost and is back: messages sent meanwhile are gone.
    MaybeMissed,
}

/// The task keeping a subscription alive. Dropping it stops the task, quietly: a subscription
/// that ends because its owner went away (a command exiting, a store dropped) is not "lost".
#[derive(Debug)]
pub(crate) struct Subscription {
    task: JoinHandle<()>,
    stopped: Arc<AtomicBool>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // The flag first: `abort` takes effect at the task's next poll, and the connection may
        // close before that (a runtime shutting down drops the connection's own task).
        self.stopped.store(true, Ordering::Release);
        self.task.abort();
    }
}

/// Subscribes to `channel` on the first of `nodes` that answers and spawns the task that keeps
/// the subscription alive (moving to the next node when one is lost), calling `deliver` for
/// each message (and after each reconnect). Returns once the first subscription is
/// confirmed, so nothing published after this returns is missed.
///
/// # Errors
/// The last node's error when none answers at first ([`StoreError::Unavailable`] if Redis
/// cannot be reached).
pub(crate) async fn spawn_subscription<F>(
    nodes: Vec<redis::Client>,
    channel: String,
    mut deliver: F,
) -> Result<Subscription, StoreError>
where
    F: FnMut(Delivery<'_>) + Send + 'static,
{
    let (ready_tx, ready_rx) = oneshot::channel::<Result<(), StoreError>>();
    let name = channel.clone();
    if nodes.is_empty() {
        return Err(StoreError::Backend(format!("no node to subscribe to {name} on")));
    }
    let stopped = Arc::new(AtomicBool::new(false));
    let task_stopped = stopped.clone();
    let task = tokio::spawn(async move {
        let stopped = task_stopped;
        let mut ready = Some(ready_tx);
        let mut backoff = Duration::from_millis(50);
        // Which node to try next, and how many failed in a row.
        let (mut next, mut failed) = (0usize, 0usize);
        loop {
            let client = &nodes[next % nodes.len()];
            next = next.wrapping_add(1);
            let subscribed = async {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(pubsub)
            }
            .await;
            match subscribed {
                Ok(pubsub) => {
                    backoff = Duration::from_millis(50);
                    failed = 0;
                    match ready.take() {
                        Some(tx) => {
                            let _ = tx.send(Ok(()));
                        }
                        None => deliver(Delivery::MaybeMissed),
                    }
                    let mut messages = pubsub.into_on_message();
                    while let Some(msg) = messages.next().await {
                        deliver(Delivery::Message(msg.get_payload_bytes()));
                    }
                    if stopped.load(Ordering::Acquire) {
                        return;
                    }
                    warn!(%channel, "Pub/Sub subscription lost; reconnecting");
                    deliver(Delivery::MaybeMissed);
                }
                Err(_) if stopped.load(Ordering::Acquire) => return,
                Err(e) => {
                    failed += 1;
                    if failed < nodes.len() {
                        // Another node may answer at once.
                        debug!(%channel, error = %e, "Pub/Sub subscription failed; trying the next node");
                        continue;
                    }
                    failed = 0;
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(Err(redis_error(e)));
                        return;
                    }
                    debug!(%channel, error = %e, "Pub/Sub subscription failed on every node; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    });
    match ready_rx.await {
        Ok(Ok(())) => Ok(Subscription { task, stopped }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(StoreError::Backend(format!("the subscription to {name} stopped"))),
    }
}
