//! The one connection type the Redis store and the Redis registry share: a standalone server
//! through redis-rs's [`ConnectionManager`], or a Redis Cluster through its cluster client,
//! detected from the URL's first reachable node.
//!
//! A URL names one node or several, comma-separated (`redis://127.0.0.1:7000,127.0.0.1:7001`;
//! a node without a scheme takes the first one's scheme and credentials). At connect, the
//! nodes are asked in order (`INFO cluster`) until one answers: `cluster_enabled:1` makes the
//! connection a cluster connection seeded with every node given; otherwise the node is a
//! standalone server, which must then be the only node named. The standalone path is what it
//! was before clusters: one multiplexed connection, reconnecting by itself.
//!
//! The cluster client is tuned for this engine: a failed request is retried at most
//! [`CLUSTER_RETRIES`] times, waiting [`CLUSTER_MIN_RETRY_WAIT_MS`] to
//! [`CLUSTER_MAX_RETRY_WAIT_MS`] between tries (the client's default waits at least 1.28 s),
//! and the whole request, retries and redirections included, ends within the store's response
//! timeout. It re-sends a request whose reply was lost, which the protocol's idempotent
//! commits allow.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisFuture, Value};

use super::codec::redis_error;
use crate::store::StoreError;

/// How many times the cluster client retries a failed request (a moved slot, a dropped
/// connection, `TRYAGAIN`).
pub const CLUSTER_RETRIES: u32 = 8;
/// The shortest wait before a retry on a cluster, in milliseconds.
pub const CLUSTER_MIN_RETRY_WAIT_MS: u64 = 5;
/// The longest wait before a retry on a cluster, in milliseconds.
pub const CLUSTER_MAX_RETRY_WAIT_MS: u64 = 200;

/// How long connecting and each reply may take (`None`: the client's default).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Timeouts {
    pub(crate) connect: Option<Duration>,
    pub(crate) response: Option<Duration>,
}

/// A connection to Redis, standalone or cluster; cheap to clone (clones share the
/// multiplexed connections).
#[derive(Clone)]
pub(crate) enum RedisConnection {
    /// One server.
    Single(ConnectionManager),
    /// A Redis Cluster: requests go to the primary of their first key's slot.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Single(_) => f.write_str("RedisConnection::Single"),
            Self::Cluster(_) => f.write_str("RedisConnection::Cluster"),
        }
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(conn) => conn.req_packed_commands(cmd, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}

/// What a URL connected to: the connection, and the nodes behind it (for Pub/Sub and for
/// loading the Functions library on every primary).
#[derive(Debug, Clone)]
pub(crate) struct Connected {
    pub(crate) conn: RedisConnection,
    pub(crate) nodes: Nodes,
    /// Bumped whenever a request failed on the connection or found the library gone, and
    /// when the Pub/Sub listener reconnected: see [`Store::generation`](crate::store::Store::generation).
    pub(crate) generation: Arc<AtomicU64>,
    /// Client-side tracking, when the store asked for it (a standalone server only).
    pub(crate) tracker: Option<Arc<super::tracking::Tracker>>,
}

/// The nodes behind a connection.
#[derive(Debug, Clone)]
pub(crate) struct Nodes {
    /// How to reach a node by address: the first URL's scheme and credentials.
    base: NodeBase,
    /// Standalone: the one node. Cluster: the nodes given, then those the cluster named at
    /// connect (in that order, without duplicates): where a subscription may go.
    pub(crate) all: Vec<String>,
    /// Whether this is a cluster.
    pub(crate) cluster: bool,
}

impl Nodes {
    /// A client per node, in order (for subscriptions, which any node of a cluster serves:
    /// `PUBLISH` reaches every node).
    ///
    /// # Errors
    /// [`StoreError::InvalidUrl`] for a node URL the client refuses.
    pub(crate) fn clients(&self) -> Result<Vec<redis::Client>, StoreError> {
        self.all.iter().map(|url| open_client(url)).collect()
    }

    /// The URL of the node at `addr` (`host:port`).
    fn url_of(&self, addr: &str) -> String {
        self.base.url(addr)
    }
}

/// A URL's scheme and credentials, to reach other nodes the same way.
#[derive(Debug, Clone)]
struct NodeBase {
    scheme: String,
    userinfo: String,
}

impl NodeBase {
    fn url(&self, addr: &str) -> String {
        format!("{}://{}{addr}", self.scheme, self.userinfo)
    }
}

/// The node URLs a (comma-separated) URL names.
///
/// # Errors
/// [`StoreError::InvalidUrl`] for an empty node or a first node without a scheme.
fn split_nodes(url: &str) -> Result<(NodeBase, Vec<String>), StoreError> {
    let invalid = |reason: &str| StoreError::InvalidUrl { url: crate::backend::redact(url), reason: reason.into() };
    let mut parts = url.split(',').map(str::trim);
    let first = parts.next().filter(|p| !p.is_empty()).ok_or_else(|| invalid("no node given"))?;
    let (scheme, rest) = first.split_once("://").ok_or_else(|| invalid("the first node needs a scheme"))?;
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let userinfo = authority.rsplit_once('@').map_or(String::new(), |(user, _)| format!("{user}@"));
    let base = NodeBase { scheme: scheme.to_owned(), userinfo };
    let mut nodes = vec![first.to_owned()];
    for part in parts {
        if part.is_empty() {
            return Err(invalid("an empty node in the list"));
        }
        nodes.push(if part.contains("://") { part.to_owned() } else { base.url(part) });
    }
    Ok((base, nodes))
}

fn open_client(url: &str) -> Result<redis::Client, StoreError> {
    redis::Client::open(url)
        .map_err(|e| StoreError::InvalidUrl { url: crate::backend::redact(url), reason: e.to_string() })
}

/// One plain connection to a node, with the timeouts.
async fn node_connection(client: &redis::Client, timeouts: Timeouts) -> redis::RedisResult<MultiplexedConnection> {
    let config =
        AsyncConnectionConfig::new().set_connection_timeout(timeouts.connect).set_response_timeout(timeouts.response);
    client.get_multiplexed_async_connection_with_config(&config).await
}

/// Connects to what `url` names, detecting a cluster (see the module documentation).
///
/// # Errors
/// [`StoreError::InvalidUrl`] for a malformed URL, or several nodes that are not a cluster;
/// [`StoreError::Unavailable`] when no node answers.
pub(crate) async fn connect(url: &str, timeouts: Timeouts) -> Result<Connected, StoreError> {
    let (base, nodes) = split_nodes(url)?;
    let clients = nodes.iter().map(|n| open_client(n)).collect::<Result<Vec<_>, _>>()?;
    let mut last_error = None;
    for (i, client) in clients.iter().enumerate() {
        let mut conn = match node_connection(client, timeouts).await {
            Ok(conn) => conn,
            Err(e) => {
                last_error = Some(e);
                continue;
            }
        };
        let info: String = match redis::cmd("INFO").arg("cluster").query_async(&mut conn).await {
            Ok(info) => info,
            Err(e) => {
                last_error = Some(e);
                continue;
            }
        };
        if !info.lines().any(|line| line.trim() == "cluster_enabled:1") {
            if nodes.len() > 1 {
                return Err(StoreError::InvalidUrl {
                    url: crate::backend::redact(url),
                    reason: format!("several nodes are given, but {} is not a Redis Cluster node", i + 1),
                });
            }
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(timeouts.connect)
                .set_response_timeout(timeouts.response);
            let manager = ConnectionManager::new_with_config(client.clone(), config).await.map_err(redis_error)?;
            return Ok(Connected {
                conn: RedisConnection::Single(manager),
                nodes: Nodes { base, all: nodes, cluster: false },
                generation: Arc::default(),
                tracker: None,
            });
        }
        let mut all = nodes.clone();
        let listed: String = redis::cmd("CLUSTER").arg("NODES").query_async(&mut conn).await.map_err(redis_error)?;
        for node in parse_cluster_nodes(&listed) {
            let url = base.url(&node.addr);
            if !all.contains(&url) {
                all.push(url);
            }
        }
        let conn = cluster_connection(&nodes, timeouts).await?;
        return Ok(Connected {
            conn: RedisConnection::Cluster(conn),
            nodes: Nodes { base, all, cluster: true },
            generation: Arc::default(),
            tracker: None,
        });
    }
    Err(last_error.map_or_else(|| StoreError::Unavailable("no Redis node given".into()), redis_error))
}

async fn cluster_connection(nodes: &[String], timeouts: Timeouts) -> Result<ClusterConnection, StoreError> {
    let mut builder = redis::cluster::ClusterClientBuilder::new(nodes.iter().map(String::as_str))
        .retries(CLUSTER_RETRIES)
        .min_retry_wait(CLUSTER_MIN_RETRY_WAIT_MS)
        .max_retry_wait(CLUSTER_MAX_RETRY_WAIT_MS);
    if let Some(timeout) = timeouts.connect {
        builder = builder.connection_timeout(timeout);
    }
    if let Some(timeout) = timeouts.response {
        builder = builder.response_timeout(timeout);
    }
    let client = builder
        .build()
        .map_err(|e| StoreError::InvalidUrl { url: crate::backend::redact(&nodes.join(",")), reason: e.to_string() })?;
    client.get_async_connection().await.map_err(redis_error)
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClusterNode {
    /// `host:port`.
    pub(crate) addr: String,
    /// A primary (not a replica), not flagged as failed.
    pub(crate) live_primary: bool,
}

/// The nodes a `CLUSTER NODES` reply lists (`<id> <host:port@cport[,hostname]> <flags> ...`).
pub(crate) fn parse_cluster_nodes(text: &str) -> Vec<ClusterNode> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_id, addr, flags) = (fields.next()?, fields.next()?, fields.next()?);
            let addr = addr.split(['@', ',']).next().filter(|a| !a.is_empty() && !a.starts_with(':'))?;
            let flags: Vec<&str> = flags.split(',').collect();
            let failed = flags.iter().any(|f| matches!(*f, "fail" | "fail?" | "handshake" | "noaddr"));
            Some(ClusterNode { addr: addr.to_owned(), live_primary: flags.contains(&"master") && !failed })
        })
        .collect()
}

impl Connected {
    /// The connection's generation (see [`Connected::generation`]).
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Starts a new generation: the connection may have lost track of what it served.
    pub(crate) fn bump_generation(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Makes sure every primary runs this engine's Functions library: the one server, or each
    /// primary of the cluster (as the cluster lists them now), each through a connection of its
    /// own (`FUNCTION LOAD` replicates to the primary's replicas).
    ///
    /// # Errors
    /// As [`super::functions::ensure_loaded`] on any primary.
    pub(crate) async fn ensure_library(&self) -> Result<(), StoreError> {
        ensure_library(&self.conn, &self.nodes).await
    }
}

/// See [`Connected::ensure_library`].
///
/// # Errors
/// As [`super::functions::ensure_loaded`] on any primary.
pub(crate) async fn ensure_library(conn: &RedisConnection, nodes: &Nodes) -> Result<(), StoreError> {
    match conn {
        RedisConnection::Single(manager) => super::functions::ensure_loaded(&mut manager.clone()).await,
        RedisConnection::Cluster(cluster) => {
            let listed: String =
                redis::cmd("CLUSTER").arg("NODES").query_async(&mut cluster.clone()).await.map_err(redis_error)?;
            let timeouts = Timeouts { connect: Some(Duration::from_secs(2)), response: Some(Duration::from_secs(5)) };
            for node in parse_cluster_nodes(&listed).into_iter().filter(|n| n.live_primary) {
                let client = open_client(&nodes.url_of(&node.addr))?;
                let mut conn = node_connection(&client, timeouts).await.map_err(redis_error)?;
                // The node that listed the others may not know yet that one became a replica
                // (after a failover, or while a new cluster's gossip settles): a replica
                // refuses `FUNCTION LOAD` (`READONLY`) and gets the library from its primary.
                let role: Vec<Value> = redis::cmd("ROLE").query_async(&mut conn).await.map_err(redis_error)?;
                let role = role.first().and_then(|r| redis::from_redis_value_ref::<String>(r).ok());
                if role.as_deref() != Some("master") {
                    continue;
                }
                super::functions::ensure_loaded(&mut conn).await?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_take_the_first_ones_scheme_and_credentials() {
        let (_, nodes) = split_nodes("redis://:pw@127.0.0.1:7000, 127.0.0.1:7001,redis://h:7002").expect("valid");
        assert_eq!(nodes, ["redis://:pw@127.0.0.1:7000", "redis://:pw@127.0.0.1:7001", "redis://h:7002"]);
        assert!(split_nodes("redis://h:1,,h:2").is_err());
        assert!(split_nodes("h:1,h:2").is_err());
    }

    #[test]
    fn cluster_nodes_lines_name_live_primaries() {
        let text = "a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460\n\
                    b2 127.0.0.1:7001@17001,host master,fail - 0 0 2 connected\n\
                    c3 127.0.0.1:7002@17002 slave a1 0 0 1 connected\n\
                    d4 :0@0 master,noaddr - 0 0 3 disconnected\n";
        let nodes = parse_cluster_nodes(text);
        assert_eq!(
            nodes,
            [
                ClusterNode { addr: "127.0.0.1:7000".into(), live_primary: true },
                ClusterNode { addr: "127.0.0.1:7001".into(), live_primary: false },
                ClusterNode { addr: "127.0.0.1:7002".into(), live_primary: false },
            ]
        );
    }
}
