//! The binary's Redis Clusters, each started on first use and shared by every test of the
//! binary: [`cluster`], 3 primaries, and [`replicated_cluster`], 3 primaries each with a
//! replica (for failover and slot migration tests, which change its topology: they take
//! [`TestCluster::exclusive`] first). Both come from one builder ([`TestCluster::start`],
//! parameterised by the replicas per primary): `redis-server --cluster-enabled yes` on free
//! loopback ports (each with its cluster bus port, the port + 10000, free too), in a temporary
//! directory, joined with `redis-cli --cluster create [--cluster-replicas N]`, and ready once
//! every node's `CLUSTER INFO` says `cluster_state:ok` and every replica's `INFO replication`
//! says `master_link_status:up` (polled, with a bound). Replicas sync diskless without delay
//! (`--repl-diskless-sync-delay 0`), so 3+3 comes up in ~2-3 s like 3 primaries.
//!
//! How it stops: the servers are children of a small guardian shell whose standard input is a
//! pipe from this process, held in a static that is never closed. When the test binary exits
//! (however it exits, a panic included), the kernel closes the pipe, the guardian's `read`
//! returns and it stops the servers by PID and removes the directory. Rust runs no destructor
//! for statics, so a `Drop` guard could not do this; a pid file reaped by the next run would
//! leave the servers running between runs.

use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

/// How long the cluster may take to come up (it takes ~2-3 s).
const READY_WITHIN: Duration = Duration::from_secs(30);

/// How many primaries a test cluster has.
const PRIMARIES: usize = 3;

/// One of the binary's clusters.
#[derive(Debug)]
pub struct TestCluster {
    /// Every node's port, primaries first as `redis-cli --cluster create` was given them (it
    /// makes the first [`PRIMARIES`] the primaries); roles change with a failover.
    ports: Vec<u16>,
    /// Held by a test that changes the topology (see [`TestCluster::exclusive`]).
    topology: tokio::sync::Mutex<()>,
    /// Kept open for the life of the binary: its end stops the cluster.
    _guardian: Mutex<(Child, ChildStdin)>,
}

type Shared = OnceLock<std::result::Result<TestCluster, String>>;

/// The cluster in `cell`, started with `replicas` per primary on first call.
fn shared(cell: &'static Shared, replicas: usize) -> Result<&'static TestCluster> {
    cell.get_or_init(|| TestCluster::start(replicas).map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// The cluster of 3 primaries, started on first call (the first caller waits ~2-3 s).
///
/// # Errors
/// If `redis-server` or `redis-cli` is missing, or the cluster does not come up in time (the
/// message says how far it got).
pub fn cluster() -> Result<&'static TestCluster> {
    static CLUSTER: Shared = OnceLock::new();
    shared(&CLUSTER, 0)
}

/// The cluster of 3 primaries each with one replica, started on first call (~2-3 s).
///
/// # Errors
/// As [`cluster`].
pub fn replicated_cluster() -> Result<&'static TestCluster> {
    static CLUSTER: Shared = OnceLock::new();
    shared(&CLUSTER, 1)
}

/// A loopback port free now, whose cluster bus port (+10000) is free too.
fn free_port(taken: &[u16]) -> Result<u16> {
    for _ in 0..200 {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        if port > 55535 || taken.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return Ok(port);
        }
    }
    bail!("found no free loopback port pair for a cluster node")
}

pub(super) fn cli(port: u16, args: &[&str]) -> Result<String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running redis-cli (is it installed? see the README)")?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Polls `check` every 20 ms until it holds or `within` passed since `since`.
pub(super) fn wait_until(
    since: Instant,
    within: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<bool>,
) -> Result<()> {
    while since.elapsed() < within {
        if check()? {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("the test cluster: {what} within {within:?}")
}

impl TestCluster {
    /// Starts 3 primaries with `replicas` replicas each and waits until they are ready.
    fn start(replicas: usize) -> Result<Self> {
        let started = Instant::now();
        let dir = std::env::temp_dir().join(format!("wasmtx-test-cluster-{}-{replicas}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut ports = Vec::new();
        for _ in 0..PRIMARIES * (1 + replicas) {
            ports.push(free_port(&ports)?);
        }
        // The guardian: starts the servers in the foreground of its own jobs, prints their
        // PIDs, waits for its stdin to end, stops them by PID, removes the directory.
        let mut script = String::from("set -u\npids=''\n");
        for &port in &ports {
            let node_dir = dir.join(port.to_string());
            std::fs::create_dir_all(&node_dir)?;
            let d = node_dir.display();
            script.push_str(&format!(
                "redis-server --port {port} --bind 127.0.0.1 --cluster-enabled yes --cluster-config-file {d}/nodes.conf \
                 --cluster-node-timeout 2000 --save '' --appendonly no --dir {d} --logfile {d}/log.txt \
                 --repl-diskless-sync-delay 0 >/dev/null 2>&1 &\npids=\"$pids $!\"\n"
            ));
        }
        script.push_str(&format!(
            "echo $pids\nread _ || true\nkill $pids 2>/dev/null\nwait\nrm -rf '{}'\n",
            dir.display()
        ));
        let mut child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the cluster's guardian shell")?;
        let stdin = child.stdin.take().context("the guardian's stdin")?;
        let stdout = child.stdout.take().context("the guardian's stdout")?;
        // The guardian prints the servers' PIDs once it started them all.
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        if line.split_whitespace().count() != ports.len() {
            bail!("the cluster's guardian did not start {} servers: {line:?}", ports.len());
        }
        let cluster = Self { ports, topology: tokio::sync::Mutex::new(()), _guardian: Mutex::new((child, stdin)) };
        for &port in &cluster.ports {
            wait_until(started, READY_WITHIN, &format!("node {port} did not answer PING"), || {
                Ok(cli(port, &["PING"])?.trim() == "PONG")
            })?;
        }
        let nodes: Vec<String> = cluster.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .context("running redis-cli --cluster create")?;
        if !out.status.success() {
            bail!("redis-cli --cluster create failed: {}", String::from_utf8_lossy(&out.stdout));
        }
        cluster.wait_ready(started, READY_WITHIN)?;
        eprintln!("test cluster on ports {:?} ready in {:?}", cluster.ports, started.elapsed());
        Ok(cluster)
    }

    /// Waits (polling, until `within` since `since`) until every node says `cluster_state:ok`,
    /// every replica's link to its primary is up, and every node sees the others in the roles
    /// they say they have.
    ///
    /// # Errors
    /// If that does not happen in time.
    pub fn wait_ready(&self, since: Instant, within: Duration) -> Result<()> {
        for &port in &self.ports {
            wait_until(since, within, &format!("node {port} did not reach cluster_state:ok"), || {
                Ok(cli(port, &["CLUSTER", "INFO"])?.lines().any(|l| l.trim() == "cluster_state:ok"))
            })?;
            wait_until(since, within, &format!("replica {port} did not reach master_link_status:up"), || {
                let info = cli(port, &["INFO", "replication"])?;
                Ok(info.lines().any(|l| l.trim() == "role:master")
                    || info.lines().any(|l| l.trim() == "master_link_status:up"))
            })?;
        }
        wait_until(since, within, "the nodes did not agree on their roles", || self.roles_agree())
    }

    /// The right to change this cluster's topology (fail over, move slots) while holding the
    /// guard: tests that do take it, so that two such changes never overlap.
    pub async fn exclusive(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.topology.lock().await
    }

    /// The URL of one node (the first), as a user names a cluster.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.ports[0])
    }

    /// The URL naming every node (replicas included), comma-separated.
    pub fn seeds_url(&self) -> String {
        let nodes: Vec<String> = self.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        format!("redis://{}", nodes.join(","))
    }

    /// The nodes' ports (replicas included).
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// A plain connection to each node, as another client would have (`READONLY`, so that a
    /// replica shows its copy).
    ///
    /// # Errors
    /// If a node does not answer.
    pub async fn node_clients(&self) -> Result<Vec<redis::aio::MultiplexedConnection>> {
        let mut out = Vec::with_capacity(self.ports.len());
        for &port in &self.ports {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
            let mut conn = client.get_multiplexed_async_connection().await?;
            // A replica answers reads of its primary's keys instead of redirecting them.
            redis::cmd("READONLY").query_async::<()>(&mut conn).await?;
            out.push(conn);
        }
        Ok(out)
    }

    /// Every key under `prefix` on every node, with its node, type and content, sorted: the
    /// full picture to compare before and after an invocation that must write nothing.
    ///
    /// # Errors
    /// If a node fails.
    pub async fn dump(&self, prefix: &str) -> Result<Vec<(String, String, String)>> {
        let mut out = Vec::new();
        for mut conn in self.node_clients().await? {
            let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}:*")).query_async(&mut conn).await?;
            for key in keys {
                let (ty, content) = super::key_content(&mut conn, &key).await?;
                out.push((key, ty, content));
            }
        }
        out.sort();
        Ok(out)
    }

    /// The locks held under `prefix` on any node: set `~l:<action>` fields of data hashes
    /// whose deadline is ahead of the node's clock.
    ///
    /// # Errors
    /// If a node fails.
    pub async fn held_locks(&self, prefix: &str) -> Result<Vec<String>> {
        let mut held = Vec::new();
        for mut conn in self.node_clients().await? {
            let now_ms = crate::redis_now_ms(&mut conn).await?;
            let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}:*")).query_async(&mut conn).await?;
            for key in keys {
                let ty: String = redis::cmd("TYPE").arg(&key).query_async(&mut conn).await?;
                if ty != "hash" || key.contains(":dict:") {
                    continue;
                }
                let pairs: Vec<(String, String)> = redis::cmd("HGETALL").arg(&key).query_async(&mut conn).await?;
                for (field, value) in pairs {
                    let deadline = value.split(':').nth(1).and_then(|d| d.parse::<u64>().ok());
                    if field.starts_with("~l:") && deadline.is_some_and(|d| d > now_ms) {
                        held.push(format!("{key} {field}"));
                    }
                }
            }
        }
        Ok(held)
    }
}
