//! Changing a test cluster's topology as an operator would, with `redis-cli`: who owns a slot,
//! a manual `CLUSTER FAILOVER` on a replica, and a slot moved from one primary to another
//! (`CLUSTER SETSLOT ... IMPORTING/MIGRATING`, `MIGRATE` of the keys `CLUSTER GETKEYSINSLOT`
//! lists, then `CLUSTER SETSLOT ... NODE` on every primary: what `redis-cli --cluster reshard`
//! does, with the window's length in the test's hands). Every wait is a bounded poll of what
//! the nodes say. These block the calling thread: call them from `spawn_blocking`.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};

use super::test_cluster::{TestCluster, cli, wait_until};

/// How long a failover may take until every node agrees on the new roles (node timeout 2 s).
const FAILOVER_WITHIN: Duration = Duration::from_secs(15);

/// One node as it describes itself (the `myself` line of its `CLUSTER NODES`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// The node id.
    pub id: String,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its primary's id, for a replica.
    pub primary_of: Option<String>,
    /// The slot ranges it serves (a primary's), inclusive.
    pub slots: Vec<(u16, u16)>,
}

impl NodeView {
    /// Whether it serves `slot` (as a stable slot, not one being imported).
    pub fn serves(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(a, b)| (a..=b).contains(&slot))
    }
}

/// The `myself` line of a `CLUSTER NODES` reply (`<id> <ip:port@cport> <flags> <primary> <ping>
/// <pong> <epoch> <link> <slot>...`).
fn myself(port: u16, nodes: &str) -> Result<NodeView> {
    let line = nodes
        .lines()
        .find(|l| l.split_whitespace().nth(2).is_some_and(|f| f.split(',').any(|f| f == "myself")))
        .with_context(|| format!("node {port}: no myself line in {nodes:?}"))?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    ensure!(fields.len() >= 8, "node {port}: short CLUSTER NODES line {line:?}");
    let replica = fields[2].split(',').any(|f| f == "slave");
    let mut slots = Vec::new();
    // Migrating and importing entries (`[slot->-id]`, `[slot-<-id]`) are not served slots.
    for range in fields[8..].iter().filter(|r| !r.starts_with('[')) {
        let (a, b) = range.split_once('-').unwrap_or((range, range));
        slots.push((a.parse()?, b.parse()?));
    }
    Ok(NodeView { id: fields[0].to_owned(), port, primary_of: replica.then(|| fields[3].to_owned()), slots })
}

/// Fails unless `redis-cli` printed `OK`.
fn ok(port: u16, args: &[&str]) -> Result<()> {
    let reply = cli(port, args)?;
    ensure!(reply.trim() == "OK", "node {port}: {args:?} answered {reply:?}");
    Ok(())
}

impl TestCluster {
    /// Every node as it describes itself.
    ///
    /// # Errors
    /// If a node does not answer.
    pub fn nodes(&self) -> Result<Vec<NodeView>> {
        self.ports().iter().map(|&port| myself(port, &cli(port, &["CLUSTER", "NODES"])?)).collect()
    }

    /// Whether every node sees every node in the role that node says it has (gossip has
    /// settled after a start or a failover).
    ///
    /// # Errors
    /// If a node does not answer.
    pub fn roles_agree(&self) -> Result<bool> {
        let own = self.nodes()?;
        for &port in self.ports() {
            for line in cli(port, &["CLUSTER", "NODES"])?.lines() {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let Some(node) = fields.first().and_then(|id| own.iter().find(|n| n.id == *id)) else {
                    return Ok(false);
                };
                let replica = fields.get(2).is_some_and(|f| f.split(',').any(|f| f == "slave"));
                if replica != node.primary_of.is_some() {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// The primary serving `slot`, as it says itself.
    ///
    /// # Errors
    /// If no node serves it.
    pub fn owner_of(&self, slot: u16) -> Result<NodeView> {
        let nodes = self.nodes()?;
        nodes.into_iter().find(|n| n.primary_of.is_none() && n.serves(slot)).with_context(|| format!("slot {slot}"))
    }

    /// A replica of `primary`.
    ///
    /// # Errors
    /// If it has none.
    pub fn replica_of(&self, primary: &NodeView) -> Result<NodeView> {
        let nodes = self.nodes()?;
        nodes.into_iter().find(|n| n.primary_of.as_ref() == Some(&primary.id)).context("the primary has no replica")
    }

    /// A manual failover: `CLUSTER FAILOVER` on `replica` (coordinated: its primary stops
    /// taking writes until the replica has caught up, then they swap roles). Returns when the
    /// replica first said it is a primary; before that it waits until every node agrees on
    /// the swap and the cluster is ready again (the old primary's replication link is up).
    ///
    /// # Errors
    /// If the command is refused or the swap does not complete in time.
    pub fn fail_over_to(&self, replica: &NodeView) -> Result<Instant> {
        let old = replica.primary_of.clone().context("not a replica")?;
        let started = Instant::now();
        ok(replica.port, &["CLUSTER", "FAILOVER"])?;
        let mut flipped = None;
        wait_until(started, FAILOVER_WITHIN, "the replica did not become a primary", || {
            let me = myself(replica.port, &cli(replica.port, &["CLUSTER", "NODES"])?)?;
            if me.primary_of.is_none() && flipped.is_none() {
                flipped = Some(Instant::now());
            }
            Ok(flipped.is_some())
        })?;
        wait_until(started, FAILOVER_WITHIN, "the old primary did not become a replica", || {
            Ok(self.nodes()?.iter().all(|n| n.id != old || n.primary_of.as_ref() == Some(&replica.id)))
        })?;
        self.wait_ready(started, FAILOVER_WITHIN)?;
        flipped.context("no flip seen")
    }

    /// Moves `slot` from primary `from` to primary `to` while clients keep using it: opens the
    /// migration window (`IMPORTING` on `to`, `MIGRATING` on `from`), moves the slot's keys
    /// with `MIGRATE` in `batches` batches (of the keys there when it opens: no key is created
    /// on the source while it is migrating), sleeping `pause` after each but the last (so the
    /// window stays open for a known time, ~`batches - 1` pauses, with keys on both sides:
    /// what a large slot's move looks like), then assigns the slot to `to` on every primary.
    /// Returns how long the window was open and how many keys moved.
    ///
    /// # Errors
    /// If a step is refused.
    pub fn move_slot(
        &self,
        slot: u16,
        from: &NodeView,
        to: &NodeView,
        batches: usize,
        pause: Duration,
    ) -> Result<(Duration, usize)> {
        let s = slot.to_string();
        let opened = Instant::now();
        ok(to.port, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &from.id])?;
        ok(from.port, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &to.id])?;
        let count: usize = cli(from.port, &["CLUSTER", "COUNTKEYSINSLOT", &s])?.trim().parse()?;
        let batch = count.div_ceil(batches.max(1)).max(1).to_string();
        let mut moved = 0;
        loop {
            let keys = cli(from.port, &["CLUSTER", "GETKEYSINSLOT", &s, &batch])?;
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            if moved > 0 {
                std::thread::sleep(pause);
            }
            let port = to.port.to_string();
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            args.extend(&keys);
            ok(from.port, &args)?;
            moved += keys.len();
        }
        // The target first, then the source (it stops redirecting with ASK), then the others.
        let mut primaries: Vec<NodeView> = self.nodes()?.into_iter().filter(|n| n.primary_of.is_none()).collect();
        primaries.sort_by_key(|n| (n.id != to.id, n.id != from.id));
        for node in &primaries {
            ok(node.port, &["CLUSTER", "SETSLOT", &s, "NODE", &to.id])?;
        }
        let window = opened.elapsed();
        wait_until(opened, FAILOVER_WITHIN, "the nodes did not agree on the slot's new owner", || {
            Ok(self.owner_of(slot).is_ok_and(|o| o.id == to.id))
        })?;
        if cli(from.port, &["CLUSTER", "COUNTKEYSINSLOT", &s])?.trim() != "0" {
            bail!("keys of slot {slot} are left on the source");
        }
        Ok((window, moved))
    }
}
