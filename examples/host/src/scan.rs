//! Listing keys under a prefix with `SCAN` (never `KEYS`, which blocks Redis), for the programs
//! that read or clear what a run left behind.

use redis::aio::MultiplexedConnection;

/// Every key under `prefix` (`<prefix>:*`), in `SCAN` order (a key may appear twice if the
/// keyspace is rehashed meanwhile).
///
/// # Errors
/// If Redis fails.
pub async fn keys_under(conn: &mut MultiplexedConnection, prefix: &str) -> redis::RedisResult<Vec<String>> {
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}
