//! The private Redis Cluster of `--cluster-only` (issue 12): three primaries, no replicas (the
//! figures are the primaries' work; replication would add its own), each a `redis-server
//! --cluster-enabled yes` child of this process on a free loopback port whose cluster bus port
//! (+10000) is free too, without persistence, in a temporary directory. Joined with `redis-cli
//! --cluster create`, and ready once every node's `CLUSTER INFO` says `cluster_state:ok`
//! (polled, with a bound). The nodes are stopped by PID when the value is dropped, so an error
//! on the way out of the run stops them too.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use wasmtx::store::redis::{CLUSTER_MAX_RETRY_WAIT_MS, CLUSTER_MIN_RETRY_WAIT_MS, CLUSTER_RETRIES};

/// Primaries of the private cluster.
pub const PRIMARIES: usize = 3;

/// How long the cluster may take to come up (about 2-3 s on a quiet machine).
const READY_WITHIN: Duration = Duration::from_secs(30);

/// A running private cluster.
#[derive(Debug)]
pub struct Cluster {
    /// Each primary's port, in the order `--cluster create` was given them.
    pub ports: Vec<u16>,
    /// The servers' version.
    pub version: String,
    children: Vec<Child>,
    dir: PathBuf,
}

/// A loopback port free now whose cluster bus port is free too, and not in `taken`.
fn free_node_port(taken: &[u16]) -> Result<u16> {
    for _ in 0..200 {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let bus_free = port <= u16::MAX - 10_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok();
        if bus_free && !taken.contains(&port) {
            return Ok(port);
        }
    }
    bail!("no free loopback port with a free cluster bus port")
}

/// Whether a `CLUSTER INFO` reply says the cluster serves every slot.
pub fn cluster_ok(info: &str) -> bool {
    info.lines().any(|l| l.trim() == "cluster_state:ok")
}

impl Cluster {
    /// Starts the nodes, joins them and waits until every node sees the cluster as ok.
    ///
    /// # Errors
    /// If `redis-server` or `redis-cli` is missing, or the cluster is not ready in time (the
    /// nodes started so far are stopped).
    pub async fn start() -> Result<Self> {
        let started = Instant::now();
        let dir = std::env::temp_dir().join(format!("wasmtx-bench-cluster-{}", std::process::id()));
        let mut cluster = Self { ports: Vec::new(), version: String::new(), children: Vec::new(), dir };
        for _ in 0..PRIMARIES {
            let port = free_node_port(&cluster.ports)?;
            let node_dir = cluster.dir.join(port.to_string());
            std::fs::create_dir_all(&node_dir).with_context(|| node_dir.display().to_string())?;
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--cluster-enabled", "yes"])
                .arg("--cluster-config-file")
                .arg(node_dir.join("nodes.conf"))
                .arg("--dir")
                .arg(&node_dir)
                .args(["--cluster-node-timeout", "2000", "--save", "", "--appendonly", "no"])
                .args(["--daemonize", "no", "--loglevel", "warning"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .context("starting `redis-server` for the cluster (install Redis)")?;
            cluster.children.push(child);
            cluster.ports.push(port);
        }
        // Every node answers before they are joined.
        let mut conns = Vec::with_capacity(PRIMARIES);
        for &port in &cluster.ports {
            conns.push(loop {
                match node(port).await {
                    Ok(conn) => break conn,
                    Err(e) => waited(started, &format!("node {port} answering"), &e).await?,
                }
            });
        }
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(cluster.ports.iter().map(|p| format!("127.0.0.1:{p}")))
            .arg("--cluster-yes")
            .stdin(Stdio::null())
            .output()
            .context("running `redis-cli --cluster create`")?;
        if !out.status.success() {
            bail!("`redis-cli --cluster create` failed: {}", String::from_utf8_lossy(&out.stdout));
        }
        for (conn, port) in conns.iter_mut().zip(cluster.ports.clone()) {
            loop {
                let info: String = redis::cmd("CLUSTER").arg("INFO").query_async(conn).await?;
                if cluster_ok(&info) {
                    break;
                }
                let state = anyhow::anyhow!("{}", info.lines().next().unwrap_or_default().trim());
                waited(started, &format!("node {port} at cluster_state:ok"), &state).await?;
            }
        }
        let info: String = redis::cmd("INFO").arg("server").query_async(&mut conns[0]).await?;
        cluster.version = super::server::info_field(&info, "redis_version").unwrap_or_else(|| "?".into());
        eprintln!(
            "bench: cluster of {PRIMARIES} primaries on ports {:?} ready in {:?}",
            cluster.ports,
            started.elapsed()
        );
        Ok(cluster)
    }

    /// The URL a user would give: every node, comma-separated (`wasmtx::backend`'s form).
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        format!("redis://{}", nodes.join(","))
    }

    /// The servers' PIDs.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    /// A cluster connection, routing each command to its slot's primary, with the store's
    /// retry bounds (redis-rs's default waits at least 1.28 s before a retry).
    ///
    /// # Errors
    /// If the cluster cannot be reached.
    pub async fn connect(&self) -> Result<ClusterConnection> {
        let nodes: Vec<String> = self.ports.iter().map(|p| format!("redis://127.0.0.1:{p}")).collect();
        let client = redis::cluster::ClusterClientBuilder::new(nodes)
            .retries(CLUSTER_RETRIES)
            .min_retry_wait(CLUSTER_MIN_RETRY_WAIT_MS)
            .max_retry_wait(CLUSTER_MAX_RETRY_WAIT_MS)
            .build()?;
        Ok(client.get_async_connection().await?)
    }

    /// A plain connection to each primary, in port order: per-node statistics and flushes.
    ///
    /// # Errors
    /// If a node does not answer.
    pub async fn nodes(&self) -> Result<Vec<MultiplexedConnection>> {
        let mut out = Vec::with_capacity(self.ports.len());
        for &port in &self.ports {
            out.push(node(port).await?);
        }
        Ok(out)
    }

    /// The index (in port order) of the primary serving `slot`, from `CLUSTER NODES`.
    ///
    /// # Errors
    /// If the node fails or no node of ours serves the slot.
    pub async fn owner_of(&self, slot: u16) -> Result<usize> {
        let mut conn = node(self.ports[0]).await?;
        let nodes: String = redis::cmd("CLUSTER").arg("NODES").query_async(&mut conn).await?;
        let port = slot_owner(&nodes, slot).with_context(|| format!("no node serves slot {slot}"))?;
        self.ports.iter().position(|p| *p == port).with_context(|| format!("slot {slot} is on port {port}, not ours"))
    }

    /// Stops every node by its PID and removes the directory.
    pub fn stop(&mut self) {
        for mut child in self.children.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A plain multiplexed connection to one node, after a `PING`.
async fn node(port: u16) -> Result<MultiplexedConnection> {
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}"))?.get_multiplexed_async_connection().await?;
    redis::cmd("PING").query_async::<()>(&mut conn).await?;
    Ok(conn)
}

/// The port of the primary serving `slot`, from a `CLUSTER NODES` reply (one line per node:
/// `id ip:port@bus flags master ping pong epoch state slot-ranges...`).
pub fn slot_owner(nodes: &str, slot: u16) -> Option<u16> {
    nodes.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let serves = fields.iter().skip(8).any(|range| {
            let (from, to) = range.split_once('-').unwrap_or((range, range));
            matches!((from.parse::<u16>(), to.parse::<u16>()), (Ok(a), Ok(b)) if (a..=b).contains(&slot))
        });
        if !serves || !fields.get(2)?.contains("master") {
            return None;
        }
        let address = fields.get(1)?.split('@').next()?;
        address.rsplit_once(':')?.1.parse().ok()
    })
}

/// Sleeps 20 ms before the next poll, or fails with `what` and the last `error` once
/// `READY_WITHIN` has passed since `since`.
async fn waited(since: Instant, what: &str, error: &anyhow::Error) -> Result<()> {
    if since.elapsed() >= READY_WITHIN {
        bail!("the bench cluster: no {what} within {READY_WITHIN:?}: {error:#}");
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_info_is_ok_only_when_it_says_so() {
        assert!(cluster_ok("cluster_state:ok\r\ncluster_slots_assigned:16384\r\n"));
        assert!(!cluster_ok("cluster_state:fail\r\ncluster_slots_assigned:0\r\n"));
        assert!(!cluster_ok(""));
    }

    #[test]
    fn the_owner_of_a_slot_is_the_primary_whose_ranges_hold_it() {
        let nodes = "a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460\n\
                     b2 127.0.0.1:7001@17001 master - 0 1 2 connected 5461-10922 16000\n\
                     c3 127.0.0.1:7002@17002 slave b2 0 1 2 connected\n\
                     d4 127.0.0.1:7003@17003 master - 0 1 3 connected 10923-15999 16001-16383\n";
        assert_eq!(slot_owner(nodes, 0), Some(7000));
        assert_eq!(slot_owner(nodes, 5461), Some(7001));
        assert_eq!(slot_owner(nodes, 16000), Some(7001));
        assert_eq!(slot_owner(nodes, 16383), Some(7003));
        assert_eq!(slot_owner("", 1), None);
    }
}
