//! Redis client-side tracking (`RedisStoreBuilder::client_tracking`): another engine's or a
//! plain client's write of a model an engine cached drops the entry at once, so the next
//! invocation loads instead of running on a stale state and being refused; the engine's own
//! commits (in every mode) keep its entries and leave them tracked; a lost listener drops the
//! cache and tracking resumes. Every increment is counted.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::json;
use wasmtx::store::redis::RedisStore;
use wasmtx::{CacheStats, Engine, FieldValue, Invocation, Mode, ModelId, Rule, Scalar, Store};

use crate::private_redis::PrivateRedis;
use crate::process::poll;
use crate::{compile_rules, engine_on, redis_url, unique_prefix};

/// An engine on a store of its own (its own connections) with client tracking on.
async fn tracked_engine(url: &str, prefix: &str) -> Result<(Engine, Rule, RedisStore)> {
    let store = RedisStore::builder(url).prefix(prefix).client_tracking(true).connect().await?;
    ensure!(store.is_tracking(), "the store does not track");
    let engine = engine_on(Arc::new(store.clone()))?;
    let probe = compile_rules(&engine)?.probe;
    Ok((engine, probe, store))
}

/// Increments `Counter:key`'s count by one and appends `marker` to its items.
fn bump(key: &str, mode: Mode, marker: &str) -> Invocation {
    let ops = [
        json!({"op": "increment", "model": 0, "field": "count", "delta": 1}),
        json!({"op": "append", "model": 0, "field": "items", "item": marker}),
    ];
    Invocation::new("bump").model("Counter", key).mode(mode).input(crate::probe_ops(&ops))
}

/// Runs `bump` and returns the count it saw.
async fn run(engine: &Engine, rule: &Rule, key: &str, mode: Mode, marker: &str) -> Result<i64> {
    let out = engine.invoke(rule, &bump(key, mode, marker)).await.with_context(|| format!("{key} {marker}"))?;
    let seen: Vec<serde_json::Value> = out.output_as()?;
    seen.first().and_then(serde_json::Value::as_i64).context("the increment's result")
}

async fn items(engine: &Engine, key: &str) -> Result<Vec<String>> {
    let schema = engine.model_type("Counter")?;
    let index = schema.field_index("items").context("no items field")?;
    match &engine.read_model("Counter", key).await?.values[index] {
        FieldValue::List(items) => Ok(items
            .iter()
            .map(|s| match s {
                Scalar::Str(s) => s.clone(),
                other => format!("{other:?}"),
            })
            .collect()),
        other => bail!("items is {other:?}"),
    }
}

/// Waits until `engine`'s cache has dropped more entries on notice than `before` says.
async fn invalidated(engine: &Engine, before: &CacheStats, what: &str) -> Result<CacheStats> {
    poll(Duration::from_secs(10), what, || async {
        let now = engine.cache_stats();
        Ok((now.invalidations > before.invalidations).then_some(now))
    })
    .await
}

/// A plain client's increment of `key`'s count by `delta`, as the README's layout lets one do
/// (the field and the version in one `MULTI`).
async fn external_increment(url: &str, prefix: &str, key: &str, delta: i64) -> Result<()> {
    let mut conn = redis::Client::open(url)?.get_multiplexed_async_connection().await?;
    let data = wasmtx::store::redis::KeyLayout::new(prefix).data(&ModelId::new("Counter", key));
    redis::pipe().atomic().hincr(&data, "count", delta).hincr(&data, "~v", 1).query_async::<()>(&mut conn).await?;
    Ok(())
}

/// In each mode: engine A caches a model from its own commits, which are not reported back to
/// it and keep it tracked (the second run is a cache hit where the mode reads the cache, and
/// nothing is dropped). Engine B's commit on the model, then a plain client's increment, each
/// drops A's entry within a bounded wait; A's next optimistic or adaptive run then loads (a
/// miss, not a stale hit: one attempt, no refused commit) and sees every increment.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_engine_s_or_client_s_write_drops_the_entry_before_the_next_run() -> Result<()> {
    let (url, prefix) = (redis_url(), unique_prefix("tracking"));
    let (a, probe_a, _) = tracked_engine(&url, &prefix).await?;
    let (b, probe_b, _) = tracked_engine(&url, &prefix).await?;
    for mode in [Mode::Optimistic, Mode::Adaptive, Mode::Lock] {
        let key = format!("m-{mode}");
        run(&a, &probe_a, &key, mode, "a1").await?;
        let warm = a.cache_stats();
        ensure!(run(&a, &probe_a, &key, mode, "a2").await? == 2);
        let own = a.cache_stats();
        ensure!(own.invalidations == warm.invalidations, "{mode}: A's own commit dropped its entry: {own:?}");
        if mode != Mode::Lock {
            ensure!(own.hits > warm.hits, "{mode}: the second run did not use the cache: {own:?}");
        }

        ensure!(run(&b, &probe_b, &key, mode, "b1").await? == 3);
        let dropped = invalidated(&a, &own, &format!("{mode}: B's commit reported to A")).await?;
        ensure!(run(&a, &probe_a, &key, mode, "a3").await? == 4, "{mode}: A ran on a stale state");
        let after = a.cache_stats();
        if mode != Mode::Lock {
            ensure!(
                after.misses == dropped.misses + 1 && after.stale_hits == dropped.stale_hits,
                "{mode}: after B's write, A loaded: {after:?}"
            );
        }

        external_increment(&url, &prefix, &key, 10).await?;
        invalidated(&a, &after, &format!("{mode}: the plain client's write reported to A")).await?;
        let before = a.cache_stats();
        ensure!(run(&a, &probe_a, &key, mode, "a4").await? == 15, "{mode}: the external increment was missed");
        if mode != Mode::Lock {
            let last = a.cache_stats();
            ensure!(last.stale_hits == before.stale_hits, "{mode}: a stale hit despite the notice: {last:?}");
        }
        ensure!(items(&a, &key).await? == ["a1", "a2", "b1", "a3", "a4"], "{mode}: {:?}", items(&a, &key).await?);
    }
    Ok(())
}

/// The ids of the server's RESP3 clients (on a private server: the tracking listeners).
async fn resp3_clients(conn: &mut redis::aio::MultiplexedConnection) -> Result<Vec<String>> {
    let list: String = redis::cmd("CLIENT").arg("LIST").query_async(conn).await?;
    Ok(list
        .lines()
        .filter(|l| l.split_whitespace().any(|f| f == "resp=3"))
        .filter_map(|l| l.split_whitespace().find_map(|f| f.strip_prefix("id=")).map(str::to_owned))
        .collect())
}

/// The listener's connection is killed: the store's generation moves (the cache drops what it
/// kept, since notices may have been missed), a new listener connects, and the next call
/// tracks into it: a plain client's write after that is reported again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_listener_drops_the_cache_and_tracking_resumes() -> Result<()> {
    let server = PrivateRedis::start().await?;
    let (url, prefix) = (server.url(), unique_prefix("tracking-lost"));
    let mut admin = server.client().await?;
    let (engine, probe, store) = tracked_engine(&url, &prefix).await?;
    run(&engine, &probe, "k", Mode::Optimistic, "1").await?;
    run(&engine, &probe, "k", Mode::Optimistic, "2").await?;
    let listeners = resp3_clients(&mut admin).await?;
    ensure!(listeners.len() == 1, "one listener: {listeners:?}");
    let generation = store.generation();
    redis::cmd("CLIENT").arg("KILL").arg("ID").arg(&listeners[0]).query_async::<i64>(&mut admin).await?;
    poll(Duration::from_secs(10), "a new listener", || async {
        let now = resp3_clients(&mut server.client().await?).await?;
        Ok((now.len() == 1 && now != listeners && store.generation() > generation).then_some(()))
    })
    .await?;
    let before = engine.cache_stats();
    ensure!(run(&engine, &probe, "k", Mode::Optimistic, "3").await? == 3);
    let after = engine.cache_stats();
    ensure!(after.drops > before.drops || after.misses > before.misses, "the cache was not dropped: {after:?}");
    external_increment(&url, &prefix, "k", 10).await?;
    invalidated(&engine, &after, "the write after the new listener reported").await?;
    ensure!(run(&engine, &probe, "k", Mode::Optimistic, "4").await? == 14);
    Ok(())
}

/// Redis 7.0 tracks every key a function declares once it reads any, so an invocation's
/// idempotency record is tracked too, and reported when it expires: that changes no model, and
/// the cached model stays (only another model's reported write drops anything, and the next run
/// on the first one is a hit).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_record_does_not_drop_its_model() -> Result<()> {
    let server = PrivateRedis::start().await?;
    let (url, prefix) = (server.url(), unique_prefix("tracking-records"));
    let mut admin = server.client().await?;
    let store = RedisStore::builder(url.as_str()).prefix(prefix.as_str()).client_tracking(true).connect().await?;
    let mut config = wasmtx::EngineConfig::default();
    config.idempotency_retention = Duration::from_secs(1);
    let engine = crate::engine_builder()?.shared_store(Arc::new(store)).config(config).build()?;
    let probe = compile_rules(&engine)?.probe;
    let bumped = bump("k", Mode::Optimistic, "m1").idempotency_key("order-1");
    engine.invoke(&probe, &bumped).await?;
    run(&engine, &probe, "other", Mode::Optimistic, "o1").await?;
    let record = wasmtx::store::redis::KeyLayout::new(prefix.as_str()).record(&ModelId::new("Counter", "k"), "order-1");
    ensure!(redis::cmd("EXISTS").arg(&record).query_async::<i64>(&mut admin).await? == 1, "no record at {record}");
    let before = engine.cache_stats();
    // Touching the key expires it once its time is up: the server reports it then.
    poll(Duration::from_secs(10), "the record to expire", || async {
        let exists: i64 = redis::cmd("EXISTS").arg(&record).query_async(&mut server.client().await?).await?;
        Ok((exists == 0).then_some(()))
    })
    .await?;
    // A write of another cached model after it: its report comes after the record's on the
    // listener, so once it is handled, so is the record's.
    external_increment(&url, &prefix, "other", 1).await?;
    let seen = invalidated(&engine, &before, "the other model's write reported").await?;
    ensure!(seen.invalidations == before.invalidations + 1, "more than the other model dropped: {seen:?}");
    ensure!(run(&engine, &probe, "k", Mode::Optimistic, "m2").await? == 2);
    let after = engine.cache_stats();
    ensure!(after.hits == seen.hits + 1, "the record's expiry dropped the model: {seen:?} → {after:?}");
    Ok(())
}
