//! The store-level invariants of a chaos run, read straight from Redis with a plain client
//! (following the storage layout the README documents): every lock has a deadline no further
//! than one lease ahead, every idempotency record has a TTL, and no lock is left once the
//! run's leases are over.

use std::time::{Duration, Instant};

use anyhow::Result;
use redis::aio::MultiplexedConnection;

use super::report::Checks;

/// How long after the leases' end a lock may still be seen (clock granularity, a slow poll).
const SLACK: Duration = Duration::from_millis(500);

async fn now_ms(conn: &mut MultiplexedConnection) -> Result<u64> {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(conn).await?;
    Ok(secs * 1000 + micros / 1000)
}

/// The data hashes' live locks, as `(key, field, deadline)`; malformed lock values are
/// reported to `checks`.
async fn live_locks(
    conn: &mut MultiplexedConnection,
    prefix: &str,
    lease: Duration,
    checks: &mut Checks,
) -> Result<Vec<(String, String, u64)>> {
    let now = now_ms(conn).await?;
    let lease_ms = u64::try_from((lease + SLACK).as_millis())?;
    let mut live = Vec::new();
    // A data hash is `<prefix>:{T:k}`: the key ends with the hash tag.
    for key in crate::scan::keys_under(conn, prefix).await?.into_iter().filter(|k| k.ends_with('}')) {
        let fields: Vec<(String, String)> = redis::cmd("HGETALL").arg(&key).query_async(conn).await?;
        for (field, value) in fields.into_iter().filter(|(f, _)| f.starts_with("~l:")) {
            if value.is_empty() {
                continue;
            }
            let deadline = value.split(':').nth(1).and_then(|d| d.parse::<u64>().ok());
            checks.expect("store: every lock has a deadline", deadline.is_some(), || {
                format!("{key} {field} = {value:?} has no deadline")
            });
            let Some(deadline) = deadline else { continue };
            checks.expect("store: no lock held longer than a lease", deadline <= now + lease_ms, || {
                format!("{key} {field} runs until {deadline}, {} ms from now", deadline.saturating_sub(now))
            });
            if deadline > now {
                live.push((key.clone(), field, deadline));
            }
        }
    }
    Ok(live)
}

/// Checks the locks and records under `prefix` once the workloads stopped, then waits (at most
/// a lease and a little) until no lock is held; returns how long that took.
///
/// # Errors
/// If Redis fails.
pub async fn check(
    conn: &mut MultiplexedConnection,
    prefix: &str,
    lease: Duration,
    checks: &mut Checks,
) -> Result<Duration> {
    let started = Instant::now();
    let records: Vec<String> =
        crate::scan::keys_under(conn, prefix).await?.into_iter().filter(|k| k.contains(":done:")).collect();
    for chunk in records.chunks(500) {
        let mut pipe = redis::pipe();
        for key in chunk {
            pipe.cmd("PTTL").arg(key);
        }
        let ttls: Vec<i64> = pipe.query_async(conn).await?;
        for (key, ttl) in chunk.iter().zip(ttls) {
            // -2: expired meanwhile; -1: no TTL.
            checks.expect("store: every idempotency record has a TTL", ttl != -1, || format!("{key} has no TTL"));
        }
    }
    let mut live = live_locks(conn, prefix, lease, checks).await?;
    while !live.is_empty() && started.elapsed() < lease + SLACK {
        tokio::time::sleep(Duration::from_millis(20)).await;
        live = live_locks(conn, prefix, lease, &mut Checks::default()).await?;
    }
    checks.expect("store: no lock left once the run's leases are over", live.is_empty(), || {
        format!("{} locks still held {:?} after the run, e.g. {:?}", live.len(), started.elapsed(), live.first())
    });
    Ok(started.elapsed())
}
