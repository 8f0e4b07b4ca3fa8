//! One Redis Pub/Sub subscription kept alive for the life of a store: subscribe, deliver each
//! message, and after any reconnect say that messages may have been missed, since Pub/Sub
//! does not replay them. Shared by the release announcements of the model store and the
//! change announcements of the registry.

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

/// Subscribes to `channel` and spawns the task that keeps the subscription alive, calling
/// `deliver` for each message (and after each reconnect). Returns once the first subscription
/// is confirmed, so nothing published after this returns is missed.
///
/// # Errors
/// The first connection's error ([`StoreError::Unavailable`] if Redis cannot be reached).
pub(crate) async fn spawn_subscription<F>(
    client: redis::Client,
    channel: String,
    mut deliver: F,
) -> Result<JoinHandle<()>, StoreError>
where
    F: FnMut(Delivery<'_>) + Send + 'static,
{
    let (ready_tx, ready_rx) = oneshot::channel::<Result<(), StoreError>>();
    let name = channel.clone();
    let task = tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        let mut backoff = Duration::from_millis(50);
        loop {
            let subscribed = async {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                Ok::<_, redis::RedisError>(pubsub)
            }
            .await;
            match subscribed {
                Ok(pubsub) => {
                    backoff = Duration::from_millis(50);
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
                    warn!(%channel, "Pub/Sub subscription lost; reconnecting");
                    deliver(Delivery::MaybeMissed);
                }
                Err(e) => {
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(Err(redis_error(e)));
                        return;
                    }
                    debug!(%channel, error = %e, "Pub/Sub subscription failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    });
    match ready_rx.await {
        Ok(Ok(())) => Ok(task),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(StoreError::Backend(format!("the subscription to {name} stopped"))),
    }
}
