//! The snapshot cache of optimistic mode: one round trip with a warm cache, and a stale cache
//! (another engine, a plain Redis client, a reconnect, a schema change) never commits a lost
//! update, each transfer checked by its markers.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context as _, Result, ensure};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use wasmtx::store::redis::RedisStore;
use wasmtx::{Engine, Error, Invocation, Mode, ModelId, ModelSchema, SnapshotCacheConfig, Store};
use wasmtx_example_host::chaos::Tail;
use wasmtx_example_host::chaos::bank::{self, ACCOUNT, Bank, Transfer};
use wasmtx_example_host::chaos::exec::invocation;
use wasmtx_example_host::chaos::history::{Fate, Record};
use wasmtx_example_host::chaos::report::Checks;

use crate::private_redis::PrivateRedis;
use crate::process::poll;
use crate::{Backend, TestEnv, compile_rules, engine_builder};

crate::on_both_stores!(
    two_engines_with_stale_caches_lose_no_transfer,
    two_adaptive_engines_with_stale_caches_lose_no_transfer,
    a_schema_change_misses_and_the_bounds_hold,
);

const BANK: Bank = Bank { accounts: 8, initial: 10_000 };

/// An optimistic transfer numbered `id` between two different accounts.
fn transfer(id: u64, rng: &mut StdRng) -> (Transfer, Invocation) {
    transfer_in(Mode::Optimistic, id, rng)
}

/// A transfer numbered `id` between two different accounts, in `mode`.
fn transfer_in(mode: Mode, id: u64, rng: &mut StdRng) -> (Transfer, Invocation) {
    let from = rng.random_range(0..BANK.accounts);
    let to = (from + rng.random_range(1..BANK.accounts)) % BANK.accounts;
    let op = Transfer { from: Some(from), to, amount: rng.random_range(1..=20), mode, tail: Tail::None };
    let call = op.call(id, "pay");
    (op, invocation(&call))
}

/// The bank's per-transfer check (each acknowledged transfer's marker once on both accounts,
/// failed ones nowhere, balances as the logs say, money conserved) on `history`.
async fn check_bank(engine: &Engine, history: &[Record<Transfer>]) -> Result<Checks> {
    let mut checks = Checks::default();
    bank::check(&BANK, engine, history, &mut checks).await?;
    let violations = checks.violations();
    ensure!(violations.is_empty(), "violations:\n{}", violations.join("\n"));
    Ok(checks)
}

/// An engine on `store` whose probe rule and `ChaosAccount` type are ready, with `cache`.
fn bank_engine(store: Arc<dyn Store>, cache: SnapshotCacheConfig) -> Result<(Engine, wasmtx::Rule)> {
    let engine = engine_builder()?.shared_store(store).config(config_with(cache)).build()?;
    engine.register_model(bank::schema()?);
    let probe = compile_rules(&engine)?.probe;
    Ok((engine, probe))
}

fn config_with(cache: SnapshotCacheConfig) -> wasmtx::EngineConfig {
    let mut config = wasmtx::EngineConfig::default();
    config.snapshot_cache = cache;
    config
}

/// Two engines, each with its own cache, run 16 callers of seeded optimistic transfers over 8
/// accounts; on Redis a plain client moves money between them meanwhile, as the README's
/// layout says a client may (`HINCRBY` the balances, `RPUSH` a marker, `HINCRBY ~v 1`, in one
/// `MULTI`). Each engine's cache is stale often (the other engine's and the client's writes),
/// and every transfer must still be applied exactly once if acknowledged, not at all if not:
/// a commit on a stale cached state would drop the other writer's transfer from a balance.
async fn two_engines_with_stale_caches_lose_no_transfer(backend: Backend) -> Result<()> {
    two_engines_with_stale_caches(backend, Mode::Optimistic, false).await
}

/// As [`two_engines_with_stale_caches_lose_no_transfer`], in adaptive mode: 16 callers on 8
/// accounts conflict, so accounts go to lock mode and back while the other engine and the
/// plain client write them, lock-mode and optimistic commits mixed on the same accounts.
async fn two_adaptive_engines_with_stale_caches_lose_no_transfer(backend: Backend) -> Result<()> {
    two_engines_with_stale_caches(backend, Mode::Adaptive, false).await
}

/// As [`two_adaptive_engines_with_stale_caches_lose_no_transfer`], each engine on a store of
/// its own with client tracking on: Redis reports the other engine's and the plain client's
/// writes, the caches drop those entries meanwhile, and still no transfer is lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_tracked_adaptive_engines_lose_no_transfer() -> Result<()> {
    two_engines_with_stale_caches(Backend::Redis, Mode::Adaptive, true).await
}

async fn two_engines_with_stale_caches(backend: Backend, mode: Mode, tracking: bool) -> Result<()> {
    let env = TestEnv::new(backend, "cache-stale").await?;
    let seed = crate::bank_run::seed();
    let (store_one, store_two): (Arc<dyn Store>, Arc<dyn Store>) = match &env.redis {
        Some(redis) if tracking => {
            let open = || RedisStore::builder(crate::redis_url()).prefix(redis.prefix.clone()).client_tracking(true);
            (Arc::new(open().connect().await?), Arc::new(open().connect().await?))
        }
        _ => (env.engine.store().clone(), env.engine.store().clone()),
    };
    let (one, probe_one) = bank_engine(store_one, SnapshotCacheConfig::default())?;
    let (two, probe_two) = bank_engine(store_two, SnapshotCacheConfig::default())?;
    BANK.seed(&one).await?;
    let mut callers = Vec::new();
    for caller in 0..16u64 {
        let (engine, probe) =
            if caller % 2 == 0 { (one.clone(), probe_one.clone()) } else { (two.clone(), probe_two.clone()) };
        callers.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed ^ (caller + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut records = Vec::new();
            for n in 0..40 {
                let id = caller * 1_000 + n;
                let (op, invocation) = transfer_in(mode, id, &mut rng);
                let fate = Fate::of(&engine.invoke(&probe, &invocation).await);
                records.push(Record { id, op, start: 0, end: 0, fate, resolved: false });
            }
            records
        }));
    }
    let mut history = Vec::new();
    if let Some(redis) = &env.redis {
        // The plain client's transfers, numbered apart from the engines'.
        let mut conn = redis.client().await?;
        let mut rng = StdRng::seed_from_u64(seed.wrapping_add(7));
        for n in 0..120u64 {
            let id = 900_000 + n;
            let from = rng.random_range(0..BANK.accounts);
            let to = (from + rng.random_range(1..BANK.accounts)) % BANK.accounts;
            let amount = rng.random_range(1..=20);
            let marker = format!("t{id}");
            let key = |i: usize| ModelId::new(ACCOUNT, bank::account_key(i));
            let list = |i: usize| {
                redis
                    .keys
                    .collection(&key(i), "log", wasmtx::FieldType::List(wasmtx::ScalarKind::Str))
                    .unwrap_or_default()
            };
            redis::pipe()
                .atomic()
                .hincr(redis.keys.data(&key(from)), "balance", -amount)
                .rpush(list(from), &marker)
                .hincr(redis.keys.data(&key(from)), "~v", 1)
                .hincr(redis.keys.data(&key(to)), "balance", amount)
                .rpush(list(to), &marker)
                .hincr(redis.keys.data(&key(to)), "~v", 1)
                .query_async::<()>(&mut conn)
                .await?;
            let op = Transfer { from: Some(from), to, amount, mode: Mode::Pipeline, tail: Tail::None };
            history.push(Record {
                id,
                op,
                start: 0,
                end: 0,
                fate: Fate::Acked { output: String::new(), replayed: false },
                resolved: false,
            });
            tokio::task::yield_now().await;
        }
    }
    for caller in callers {
        history.extend(caller.await?);
    }
    let checks = check_bank(&one, &history).await.with_context(|| format!("seed {seed}"))?;
    let acked = history.iter().filter(|r| r.fate.is_acked()).count();
    let failed: BTreeMap<String, usize> =
        history.iter().filter(|r| !r.fate.is_acked()).fold(BTreeMap::new(), |mut m, r| {
            *m.entry(r.fate.label()).or_default() += 1;
            m
        });
    let (s1, s2) = (one.cache_stats(), two.cache_stats());
    println!(
        "seed {seed}: {acked} acknowledged, failed {failed:?}, {} checks; caches {s1:?} / {s2:?}",
        checks.checked()
    );
    ensure!(acked >= 16 * 40 / 2, "seed {seed}: most transfers commit ({acked} did; failed {failed:?})");
    ensure!(s1.hits + s2.hits > 0, "seed {seed}: the caches were used: {s1:?} / {s2:?}");
    if tracking {
        ensure!(s1.invalidations + s2.invalidations > 0, "seed {seed}: nothing was reported: {s1:?} / {s2:?}");
    } else {
        ensure!(s1.stale_hits + s2.stale_hits > 0, "seed {seed}: the caches were found stale: {s1:?} / {s2:?}");
    }
    if mode == Mode::Adaptive {
        let (a1, a2) = (one.adaptive_stats(), two.adaptive_stats());
        println!("adaptive: {a1:?} / {a2:?}");
        ensure!(
            a1.lock_attempts + a2.lock_attempts > 0 && a1.optimistic_attempts + a2.optimistic_attempts > 0,
            "seed {seed}: both flows ran: {a1:?} / {a2:?}"
        );
    }
    ensure!(env.held_locks().await?.is_empty(), "no lock is left");
    Ok(())
}

/// A re-registered schema of a cached type misses (the state is loaded again and decoded with
/// the new schema), and the cache keeps to its bounds over more models than it may hold.
async fn a_schema_change_misses_and_the_bounds_hold(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend, "cache-bounds").await?;
    let (engine, probe) = bank_engine(env.engine.store().clone(), SnapshotCacheConfig::bounded(4, 1 << 20))?;
    BANK.seed(&engine).await?;
    let mut rng = StdRng::seed_from_u64(11);
    for id in 0..40 {
        let (_, invocation) = transfer(id, &mut rng);
        engine.invoke(&probe, &invocation).await.map_err(Error::from)?;
        ensure!(engine.cache_stats().entries <= 4, "the cache holds {:?}", engine.cache_stats());
    }
    let stats = engine.cache_stats();
    ensure!(stats.evictions > 0 && stats.hits > 0, "40 transfers over 8 accounts in a cache of 4: {stats:?}");

    let pay = |key_from: &str, key_to: &str| {
        Invocation::new("pay")
            .model(ACCOUNT, key_from)
            .model(ACCOUNT, key_to)
            .mode(Mode::Optimistic)
            .input(crate::probe_ops(&[serde_json::json!({"op": "transfer", "from": 0, "to": 1, "amount": 1})]))
    };
    engine.invoke(&probe, &pay("a0", "a1")).await.map_err(Error::from)?;
    let warm = engine.cache_stats();
    engine.invoke(&probe, &pay("a0", "a1")).await.map_err(Error::from)?;
    ensure!(engine.cache_stats().hits == warm.hits + 1, "a repeat on the same accounts hits");
    let wider = format!("{}note = {{ type = \"str\", default = \"new\" }}\n", bank::SCHEMA);
    engine.register_model(ModelSchema::from_toml(&wider)?);
    let before = engine.cache_stats();
    let outcome = engine.invoke(&probe, &pay("a0", "a1")).await.map_err(Error::from)?;
    let after = engine.cache_stats();
    ensure!(after.misses == before.misses + 1 && after.hits == before.hits, "a new schema misses: {after:?}");
    ensure!(outcome.attempts == 1, "and loads, rather than running on state of the old schema");
    let note = engine.read_model(ACCOUNT, "a0").await?;
    ensure!(note.values.len() == 3, "the model reads with the new schema");
    Ok(())
}

/// `FCALL`s the server ran since the last `CONFIG RESETSTAT`.
async fn fcalls(conn: &mut redis::aio::MultiplexedConnection) -> Result<u64> {
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(conn).await?;
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_fcall:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(Ok(0), str::parse)?)
}

/// On a private server (to count its commands): with a warm cache an uncontended optimistic
/// or adaptive transfer is one `FCALL`, the commit; cold, or with the cache off, it is two
/// (load, commit).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_warm_cache_commits_in_one_round_trip_and_a_cold_one_in_two() -> Result<()> {
    let server = PrivateRedis::start().await?;
    let mut conn = server.client().await?;
    let cases = [
        (Mode::Optimistic, SnapshotCacheConfig::default(), 1),
        (Mode::Adaptive, SnapshotCacheConfig::default(), 1),
        (Mode::Optimistic, SnapshotCacheConfig::disabled(), 2),
    ];
    for (mode, cache, per_transfer) in cases {
        let store = RedisStore::builder(server.url()).prefix(crate::unique_prefix("cache-rtt")).connect().await?;
        let (engine, probe) = bank_engine(Arc::new(store), cache)?;
        BANK.seed(&engine).await?;
        let mut rng = StdRng::seed_from_u64(3);
        // The first transfer on a pair is cold: a load, then the commit.
        let (_, first) = transfer_in(mode, 0, &mut rng);
        redis::cmd("CONFIG").arg("RESETSTAT").query_async::<()>(&mut conn).await?;
        engine.invoke(&probe, &first).await.map_err(Error::from)?;
        ensure!(fcalls(&mut conn).await? == 2, "a cold transfer loads, then commits");
        redis::cmd("CONFIG").arg("RESETSTAT").query_async::<()>(&mut conn).await?;
        for id in 1..=10 {
            engine.invoke(&probe, &first.clone().idempotency_key(format!("again-{id}"))).await.map_err(Error::from)?;
        }
        let calls = fcalls(&mut conn).await?;
        ensure!(
            calls == 10 * per_transfer,
            "10 {mode} transfers with {cache:?}: {calls} FCALLs, not {}",
            10 * per_transfer
        );
    }
    Ok(())
}

/// A reconnect starts a new store generation: what the cache kept from before is dropped, and
/// the next invocation loads. (A server that restarted empty can reach a cached version again
/// with other data behind it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reconnect_drops_the_cache() -> Result<()> {
    let server = PrivateRedis::start().await?;
    let mut conn = server.client().await?;
    let store: Arc<dyn Store> =
        Arc::new(RedisStore::builder(server.url()).prefix(crate::unique_prefix("cache-reconnect")).connect().await?);
    let (engine, probe) = bank_engine(Arc::clone(&store), SnapshotCacheConfig::default())?;
    BANK.seed(&engine).await?;
    let mut rng = StdRng::seed_from_u64(5);
    let (_, pay) = transfer(0, &mut rng);
    engine.invoke(&probe, &pay).await.map_err(Error::from)?;
    engine.invoke(&probe, &pay.clone().idempotency_key("warm")).await.map_err(Error::from)?;
    ensure!(engine.cache_stats().hits == 1, "warm: {:?}", engine.cache_stats());
    let before = store.generation();
    // Every connection but this one: the store's and its listener's.
    redis::cmd("CLIENT").arg("KILL").arg("SKIPME").arg("yes").query_async::<i64>(&mut conn).await?;
    poll(std::time::Duration::from_secs(10), "a new store generation", || async {
        Ok((store.generation() > before).then_some(()))
    })
    .await?;
    let stats = engine.cache_stats();
    engine.invoke(&probe, &pay.clone().idempotency_key("after")).await.map_err(Error::from)?;
    let after = engine.cache_stats();
    // A miss (two, if the first load met the killed connection and was retried), no hit.
    ensure!(
        after.misses > stats.misses && after.hits == stats.hits && after.drops >= 1,
        "after the reconnect: {after:?}"
    );
    Ok(())
}
