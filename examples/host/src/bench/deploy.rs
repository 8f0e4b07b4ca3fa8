//! What a row runs against: the single Redis under test or the private cluster. Both give the
//! engine a URL, the baselines one connection type ([`Conn`]: a plain multiplexed connection,
//! or a cluster connection routing each command to its slot's primary), and per-node
//! statistics, summed over a cluster's primaries, so one row loop serves both.

use std::time::Duration;

use anyhow::Result;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use super::cluster::Cluster;
use super::server::{self, RedisUnderTest, ServerStats};

/// The Redis a row runs against.
#[derive(Debug, Clone, Copy)]
pub enum Deployment<'a> {
    /// One server.
    Single(&'a RedisUnderTest),
    /// A cluster of primaries.
    Cluster(&'a Cluster),
}

/// A connection to either deployment. A pipeline on [`Conn::Cluster`] must stay in one slot.
#[derive(Clone)]
pub enum Conn {
    /// To the single server.
    Single(MultiplexedConnection),
    /// To the cluster.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

impl Deployment<'_> {
    /// The URL the engine's store opens (`wasmtx::backend` detects a cluster from it).
    pub fn url(&self) -> String {
        match self {
            Self::Single(s) => s.url.clone(),
            Self::Cluster(c) => c.url(),
        }
    }

    /// `single server` or `cluster`: the column a row belongs to.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Single(_) => "single server",
            Self::Cluster(_) => "cluster",
        }
    }

    /// Whether the benchmark started it (and may flush it between rows).
    pub fn is_private(&self) -> bool {
        match self {
            Self::Single(s) => s.is_private(),
            Self::Cluster(_) => true,
        }
    }

    /// A new connection for a baseline or the bookkeeping.
    ///
    /// # Errors
    /// If Redis cannot be reached.
    pub async fn connect(&self) -> Result<Conn> {
        Ok(match self {
            Self::Single(s) => Conn::Single(s.connect().await?),
            Self::Cluster(c) => Conn::Cluster(c.connect().await?),
        })
    }

    /// A plain connection to each node (each primary of a cluster).
    ///
    /// # Errors
    /// If a node does not answer.
    pub async fn nodes(&self) -> Result<Vec<MultiplexedConnection>> {
        match self {
            Self::Single(s) => Ok(vec![s.connect().await?]),
            Self::Cluster(c) => c.nodes().await,
        }
    }
}

/// Deletes what a row left on every node (see [`server::clear`]).
///
/// # Errors
/// If a node fails.
pub async fn clear(nodes: &mut [MultiplexedConnection], private: bool, prefix: &str) -> Result<()> {
    for node in nodes {
        server::clear(node, private, prefix).await?;
    }
    Ok(())
}

/// The start of a window on every node: each one's CPU time so far.
///
/// # Errors
/// If a node fails.
pub async fn start_window(nodes: &mut [MultiplexedConnection]) -> Result<Vec<Duration>> {
    let mut at_start = Vec::with_capacity(nodes.len());
    for node in nodes {
        at_start.push(server::start_window(node).await?);
    }
    Ok(at_start)
}

/// The window's statistics, summed over the nodes.
///
/// # Errors
/// If a node fails.
pub async fn end_window(nodes: &mut [MultiplexedConnection], cpu_at_start: &[Duration]) -> Result<ServerStats> {
    let mut per_node = Vec::with_capacity(nodes.len());
    for (node, &cpu) in nodes.iter_mut().zip(cpu_at_start) {
        per_node.push(server::end_window(node, cpu).await?);
    }
    Ok(ServerStats::sum(per_node))
}
