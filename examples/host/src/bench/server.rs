//! The Redis the benchmark measures against: its own `redis-server` on a free loopback port
//! (stopped by PID at the end), or one the user names. Its command statistics and CPU time
//! give the per-operation Redis figures.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use redis::aio::MultiplexedConnection;

/// A Redis server under test.
#[derive(Debug)]
pub struct RedisUnderTest {
    /// `redis://127.0.0.1:<port>`.
    pub url: String,
    /// The server's version.
    pub version: String,
    /// The server we started, if we did.
    child: Option<Child>,
}

impl RedisUnderTest {
    /// Uses the Redis at `url`, or starts a private `redis-server` on a free loopback port
    /// (no persistence) and waits until it answers.
    ///
    /// # Errors
    /// If `redis-server` cannot be started or the server does not answer.
    pub async fn start_or_use(url: Option<String>) -> Result<Self> {
        let (url, child) = match url {
            Some(url) => (url, None),
            None => {
                let port = free_port()?;
                let child = Command::new("redis-server")
                    .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                    .args(["--daemonize", "no", "--loglevel", "warning"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .context("starting `redis-server` (install Redis, or pass --redis-url)")?;
                (format!("redis://127.0.0.1:{port}"), Some(child))
            }
        };
        let mut server = Self { url, version: String::new(), child };
        let mut conn = server.wait_until_ready().await?;
        let info: String = redis::cmd("INFO").arg("server").query_async(&mut conn).await?;
        server.version = info_field(&info, "redis_version").unwrap_or_else(|| "?".into());
        Ok(server)
    }

    /// Whether the benchmark started this server (and may flush it between rows).
    pub fn is_private(&self) -> bool {
        self.child.is_some()
    }

    /// The PID of the private server.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    async fn wait_until_ready(&self) -> Result<MultiplexedConnection> {
        let client = redis::Client::open(self.url.as_str())?;
        let mut last = None;
        for _ in 0..100 {
            match client.get_multiplexed_async_connection().await {
                Ok(mut conn) => match redis::cmd("PING").query_async::<String>(&mut conn).await {
                    Ok(_) => return Ok(conn),
                    Err(e) => last = Some(e),
                },
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("Redis at {} did not answer: {last:?}", self.url)
    }

    /// A new multiplexed connection.
    ///
    /// # Errors
    /// If Redis cannot be reached.
    pub async fn connect(&self) -> Result<MultiplexedConnection> {
        Ok(redis::Client::open(self.url.as_str())?.get_multiplexed_async_connection().await?)
    }

    /// Stops the private server (by its PID) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisUnderTest {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The value of `name:` in an `INFO` reply.
pub fn info_field(info: &str, name: &str) -> Option<String> {
    info.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')).map(|v| v.trim().to_owned()))
}

/// What the server did in a window: calls per command (scripts' inner calls included) and the
/// CPU time it used; on a cluster, summed over its primaries.
#[derive(Debug, Clone, Default)]
pub struct ServerStats {
    /// `cmdstat_<name>` calls, by command name.
    pub calls: BTreeMap<String, u64>,
    /// `used_cpu_user + used_cpu_sys` of the server.
    pub cpu: Duration,
    /// Each node's workload commands and CPU time, in node order: one entry for a single
    /// server, one per primary for a cluster (how evenly the work spread).
    pub nodes: Vec<(u64, Duration)>,
}

impl ServerStats {
    /// Calls of one command.
    pub fn calls(&self, name: &str) -> u64 {
        self.calls.get(name).copied().unwrap_or(0)
    }

    /// Every command the workload caused: all calls but the benchmark's own bookkeeping (and,
    /// on a cluster, the client's topology refreshes).
    pub fn workload_commands(&self) -> u64 {
        self.calls
            .iter()
            .filter(|(name, _)| {
                !matches!(
                    name.as_str(),
                    "info"
                        | "config|resetstat"
                        | "ping"
                        | "flushall"
                        | "cluster|slots"
                        | "cluster|shards"
                        | "cluster|nodes"
                )
            })
            .map(|(_, n)| n)
            .sum()
    }

    /// Script and function calls (`EVALSHA`, `EVAL`, `FCALL`): one round trip each.
    pub fn script_calls(&self) -> u64 {
        self.calls("evalsha") + self.calls("eval") + self.calls("fcall")
    }

    /// The statistics of several nodes (a cluster's primaries) as one server's: calls and CPU
    /// summed, each node's share kept in `nodes`.
    pub fn sum(per_node: Vec<Self>) -> Self {
        let mut total = Self::default();
        for node in per_node {
            total.nodes.push((node.workload_commands(), node.cpu));
            total.cpu += node.cpu;
            for (name, n) in node.calls {
                *total.calls.entry(name).or_default() += n;
            }
        }
        total
    }

    /// The busiest node's share of the workload commands, in percent (100 for one server).
    pub fn busiest_share(&self) -> f64 {
        let all: u64 = self.nodes.iter().map(|(n, _)| n).sum();
        let most = self.nodes.iter().map(|(n, _)| *n).max().unwrap_or(0);
        if all == 0 { 0.0 } else { most as f64 * 100.0 / all as f64 }
    }
}

/// `cmdstat_<name>:calls=<n>,...` lines of `INFO commandstats`: calls by command name.
pub fn parse_commandstats(info: &str) -> BTreeMap<String, u64> {
    let mut calls = BTreeMap::new();
    for line in info.lines() {
        let Some(rest) = line.strip_prefix("cmdstat_") else { continue };
        let Some((name, stats)) = rest.split_once(':') else { continue };
        let n =
            stats.split(',').find_map(|kv| kv.strip_prefix("calls=")).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        calls.insert(name.to_owned(), n);
    }
    calls
}

/// Zeroes the command statistics and reads the server's CPU time (which `CONFIG RESETSTAT`
/// does not reset): the start of a window.
///
/// # Errors
/// If Redis fails.
pub async fn start_window(conn: &mut MultiplexedConnection) -> Result<Duration> {
    let cpu = server_cpu(conn).await?;
    redis::cmd("CONFIG").arg("RESETSTAT").query_async::<()>(conn).await?;
    Ok(cpu)
}

/// The window's statistics, given the CPU time read at its start.
///
/// # Errors
/// If Redis fails.
pub async fn end_window(conn: &mut MultiplexedConnection, cpu_at_start: Duration) -> Result<ServerStats> {
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(conn).await?;
    let cpu = server_cpu(conn).await?.saturating_sub(cpu_at_start);
    let mut stats = ServerStats { calls: parse_commandstats(&info), cpu, nodes: Vec::new() };
    stats.nodes.push((stats.workload_commands(), cpu));
    Ok(stats)
}

async fn server_cpu(conn: &mut MultiplexedConnection) -> Result<Duration> {
    let info: String = redis::cmd("INFO").arg("cpu").query_async(conn).await?;
    let secs = |name| info_field(&info, name).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    Ok(Duration::from_secs_f64(secs("used_cpu_user") + secs("used_cpu_sys")))
}

/// Deletes every key under `prefix` (`SCAN` + `UNLINK`), or the whole database of a private
/// server.
///
/// # Errors
/// If Redis fails.
pub async fn clear(conn: &mut MultiplexedConnection, private: bool, prefix: &str) -> Result<()> {
    if private {
        // In the background: a long run leaves millions of idempotency records, whose freeing
        // would outlast the connection's reply timeout.
        redis::cmd("FLUSHALL").arg("ASYNC").query_async::<()>(conn).await?;
        return Ok(());
    }
    // Batches, so a large keyspace is never one command's arguments.
    for batch in wasmtx_example_host::scan::keys_under(conn, prefix).await?.chunks(1000) {
        redis::cmd("UNLINK").arg(batch).query_async::<()>(conn).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "# Commandstats\r\n\
        cmdstat_fcall:calls=120,usec=900,usec_per_call=7.50,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_publish:calls=30,usec=30,usec_per_call=1.00,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_cluster|slots:calls=2,usec=40,usec_per_call=20.00,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_info:calls=1,usec=10,usec_per_call=10.00,rejected_calls=0,failed_calls=0\r\n";

    #[test]
    fn commandstats_give_calls_by_command() {
        let calls = parse_commandstats(INFO);
        assert_eq!(calls.get("fcall"), Some(&120));
        assert_eq!(calls.get("cluster|slots"), Some(&2));
        assert_eq!(calls.len(), 4);
        let stats = ServerStats { calls, cpu: Duration::ZERO, nodes: Vec::new() };
        assert_eq!(stats.workload_commands(), 150, "bookkeeping and topology refreshes left out");
    }

    #[test]
    fn nodes_sum_into_one_servers_figures_and_keep_their_spread() {
        let node = |fcall: u64, ms: u64| ServerStats {
            calls: [("fcall".to_owned(), fcall), ("info".to_owned(), 3)].into_iter().collect(),
            cpu: Duration::from_millis(ms),
            nodes: Vec::new(),
        };
        let total = ServerStats::sum(vec![node(600, 30), node(300, 20), node(100, 10)]);
        assert_eq!(total.calls("fcall"), 1000);
        assert_eq!(total.calls("info"), 9);
        assert_eq!(total.cpu, Duration::from_millis(60));
        assert_eq!(
            total.nodes,
            vec![(600, Duration::from_millis(30)), (300, Duration::from_millis(20)), (100, Duration::from_millis(10))]
        );
        assert!((total.busiest_share() - 60.0).abs() < 1e-9);
        assert_eq!(ServerStats::default().busiest_share(), 0.0);
    }
}
