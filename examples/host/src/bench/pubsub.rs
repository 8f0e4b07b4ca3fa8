//! What a lock release's announcement costs on the private cluster (issue 12): the engine
//! publishes releases with a classic `PUBLISH` from inside its Functions library, which a
//! cluster broadcasts over its bus to every node; a sharded `SPUBLISH` would reach only the
//! slot's node. Measured from a client: `MESSAGES` messages of the engine's size, pipelined to
//! the primary that serves the hot counter (where the engine's function would publish), with
//! one subscriber, classic `SUBSCRIBE` on another node or `SSUBSCRIBE` on the slot's node,
//! and every node's Redis CPU time over the run. Client-sent messages carry a command's
//! parsing and dispatch on top of what a `redis.call('PUBLISH', ...)` costs; the difference
//! between the two kinds is the broadcast.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use redis::{PushInfo, PushKind};
use tokio::sync::mpsc;

use super::cluster::Cluster;
use super::deploy;

/// Messages per kind.
pub const MESSAGES: usize = 50_000;
/// Messages per pipeline.
const BATCH: usize = 100;
/// How long the subscriber may take to see every message after the last one was sent.
const DRAIN_WITHIN: Duration = Duration::from_secs(10);

/// Classic or sharded Pub/Sub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `PUBLISH` / `SUBSCRIBE`: broadcast to every node.
    Classic,
    /// `SPUBLISH` / `SSUBSCRIBE`: the channel's slot's node only.
    Sharded,
}

impl Kind {
    /// How the tables name it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Classic => "classic `PUBLISH`, `SUBSCRIBE` on another node",
            Self::Sharded => "sharded `SPUBLISH`, `SSUBSCRIBE` on the slot's node",
        }
    }
}

/// One kind's run.
#[derive(Debug, Clone)]
pub struct Run {
    /// The kind.
    pub kind: Kind,
    /// Messages sent.
    pub sent: usize,
    /// Messages the subscriber received.
    pub received: usize,
    /// From the first message sent to the last received.
    pub elapsed: Duration,
    /// Each node's Redis CPU per message sent, microseconds (node order: the cluster's ports).
    pub node_us: Vec<f64>,
}

impl Run {
    /// Redis CPU per message, summed over the nodes, microseconds.
    pub fn total_us(&self) -> f64 {
        self.node_us.iter().sum()
    }
}

/// Both kinds, and where they ran.
#[derive(Debug, Clone)]
pub struct Measure {
    /// The node publishing (index in the cluster's ports).
    pub publisher: usize,
    /// The node of the classic subscriber.
    pub classic_subscriber: usize,
    /// The payload's size, bytes.
    pub payload_bytes: usize,
    /// Classic, then sharded.
    pub runs: [Run; 2],
}

impl Measure {
    /// The broadcast's cost per message: classic minus sharded Redis CPU, summed over the
    /// nodes, microseconds.
    pub fn broadcast_us(&self) -> f64 {
        self.runs[0].total_us() - self.runs[1].total_us()
    }
}

/// What the broadcast costs the cluster per operation at `publishes_per_op` announcements per
/// operation, as a share (percent) of `redis_cpu_us_per_op` (the operation's whole Redis CPU,
/// summed over the nodes), given the broadcast's cost per message.
pub fn broadcast_share(publishes_per_op: f64, redis_cpu_us_per_op: f64, broadcast_us: f64) -> f64 {
    if redis_cpu_us_per_op <= 0.0 {
        0.0
    } else {
        publishes_per_op * broadcast_us.max(0.0) * 100.0 / redis_cpu_us_per_op
    }
}

/// The conclusion, for the printout and the section.
pub fn conclusion(share_percent: f64) -> &'static str {
    if share_percent < 5.0 {
        "sharded Pub/Sub would not pay now: the broadcast is a small part of the cluster's Redis CPU per operation, \
         and switching means one channel per slot, subscriptions that follow slot moves, and a library change"
    } else {
        "sharded Pub/Sub would pay: the broadcast is a noticeable part of the cluster's Redis CPU per operation"
    }
}

/// Runs both kinds. `slot_key` names the slot the engine's function would publish from (the
/// hot counter's data key), `payload` a message as the engine sends it.
///
/// # Errors
/// If a node fails, or the subscriber misses messages.
pub async fn measure(cluster: &Cluster, slot_key: &str, payload: &str) -> Result<Measure> {
    let slot = wasmtx::store::redis::keys::hash_slot(slot_key);
    let publisher = cluster.owner_of(slot).await?;
    let classic_subscriber = (publisher + 1) % cluster.ports.len();
    // The sharded channel takes the key's hash tag, so it lives in the key's slot.
    let tag = slot_key.find('{').and_then(|s| slot_key[s..].find('}').map(|e| &slot_key[s..=s + e])).unwrap_or("");
    let channels = ["wasmtx-bench-pubsub:released".to_owned(), format!("wasmtx-bench-pubsub:{tag}:released")];
    ensure!(
        wasmtx::store::redis::keys::hash_slot(&channels[1]) == slot,
        "the sharded channel is not in the key's slot"
    );
    let mut runs = Vec::with_capacity(2);
    for (kind, channel) in [Kind::Classic, Kind::Sharded].into_iter().zip(&channels) {
        runs.push(run(cluster, kind, channel, payload, publisher, classic_subscriber).await?);
    }
    let [classic, sharded]: [Run; 2] = runs.try_into().map_err(|_| anyhow::anyhow!("two runs"))?;
    Ok(Measure { publisher, classic_subscriber, payload_bytes: payload.len(), runs: [classic, sharded] })
}

async fn run(
    cluster: &Cluster,
    kind: Kind,
    channel: &str,
    payload: &str,
    publisher: usize,
    classic_subscriber: usize,
) -> Result<Run> {
    let (tx, mut rx) = mpsc::unbounded_channel::<PushInfo>();
    // Kept alive until the end: dropping it unsubscribes.
    let _subscriber: Box<dyn std::any::Any + Send> = match kind {
        Kind::Classic => {
            let url = format!("redis://127.0.0.1:{}/?protocol=resp3", cluster.ports[classic_subscriber]);
            let config = redis::AsyncConnectionConfig::new().set_push_sender(tx);
            let mut conn = redis::Client::open(url)?.get_multiplexed_async_connection_with_config(&config).await?;
            conn.subscribe(channel).await?;
            Box::new(conn)
        }
        Kind::Sharded => {
            let nodes: Vec<String> = cluster.ports.iter().map(|p| format!("redis://127.0.0.1:{p}")).collect();
            let client = redis::cluster::ClusterClientBuilder::new(nodes)
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(tx)
                .build()?;
            let mut conn = client.get_async_connection().await?;
            conn.ssubscribe(channel).await?;
            Box::new(conn)
        }
    };
    let message_kind = if kind == Kind::Classic { PushKind::Message } else { PushKind::SMessage };
    let mut nodes = cluster.nodes().await?;
    let mut publish = redis::Client::open(format!("redis://127.0.0.1:{}", cluster.ports[publisher]))?
        .get_multiplexed_async_connection()
        .await?;
    let command = if kind == Kind::Classic { "PUBLISH" } else { "SPUBLISH" };

    let cpu_at_start = deploy::start_window(&mut nodes).await?;
    let started = Instant::now();
    let mut received = 0;
    for _ in 0..MESSAGES / BATCH {
        let mut pipe = redis::pipe();
        for _ in 0..BATCH {
            pipe.cmd(command).arg(channel).arg(payload).ignore();
        }
        pipe.query_async::<()>(&mut publish).await.with_context(|| format!("{command} to {channel}"))?;
        while let Ok(push) = rx.try_recv() {
            received += usize::from(push.kind == message_kind);
        }
    }
    let sent = MESSAGES / BATCH * BATCH;
    while received < sent {
        match tokio::time::timeout(DRAIN_WITHIN, rx.recv()).await {
            Ok(Some(push)) => received += usize::from(push.kind == message_kind),
            Ok(None) => bail!("the {command} subscriber's connection closed after {received} of {sent} messages"),
            Err(_) => bail!("the {command} subscriber received {received} of {sent} messages"),
        }
    }
    let elapsed = started.elapsed();
    let stats = deploy::end_window(&mut nodes, &cpu_at_start).await?;
    let node_us = stats.nodes.iter().map(|(_, cpu)| cpu.as_secs_f64() * 1e6 / sent as f64).collect();
    Ok(Run { kind, sent, received, elapsed, node_us })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broadcast_share_is_announcements_times_cost_over_the_operation() {
        // 0.5 announcements per operation, 2 µs of broadcast each, 20 µs per operation: 5 %.
        assert!((broadcast_share(0.5, 20.0, 2.0) - 5.0).abs() < 1e-9);
        assert_eq!(broadcast_share(1.0, 0.0, 2.0), 0.0);
        // Sharded dearer than classic (noise): no saving to claim.
        assert_eq!(broadcast_share(1.0, 10.0, -0.3), 0.0);
        assert!(conclusion(4.9).starts_with("sharded Pub/Sub would not pay"));
        assert!(conclusion(5.0).starts_with("sharded Pub/Sub would pay"));
    }

    #[test]
    fn the_broadcast_is_classic_minus_sharded_over_every_node() {
        let run = |kind, node_us: Vec<f64>| Run { kind, sent: 1, received: 1, elapsed: Duration::ZERO, node_us };
        let m = Measure {
            publisher: 0,
            classic_subscriber: 1,
            payload_bytes: 40,
            runs: [run(Kind::Classic, vec![1.5, 1.0, 0.5]), run(Kind::Sharded, vec![1.25, 0.0, 0.0])],
        };
        assert!((m.runs[0].total_us() - 3.0).abs() < 1e-9);
        assert!((m.broadcast_us() - 1.75).abs() < 1e-9);
    }
}
