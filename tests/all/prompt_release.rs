//! Prompt release (issue 18): a caller that gives up on an invocation (its future dropped by a
//! timeout or an aborted task) does not leave its locks taken for the rest of their lease. The
//! engines here use a 60 s lease and a 3 s acquire timeout, so an invocation that gets a lock a
//! cancelled one held shows the lock was released by the engine, not by the lease running out.
//! Every wait on a signal is bounded; the seed of the storm is printed (`WASMTX_TEST_SEED`
//! replays a run).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::task::JoinHandle;
use wasmtx::store::{LockAttempt, LockLease, LockRequest};
use wasmtx::{Engine, EngineBuilder, Error, FieldValue, Invocation, ModelId, ModelTarget, Outcome, RetryPolicy, Rule};
use wasmtx::{Scalar, Store};

use crate::gated::{GatedStore, LostReply};
use crate::{Backend, CompiledRules, RedisFixture, compile_rules, engine_builder, on_both_stores, probe_ops};

on_both_stores!(
    a_caller_that_gives_up_mid_run_frees_its_lock_at_once,
    a_caller_that_gives_up_at_its_commit_frees_its_lock_at_once,
    a_cancelled_commit_of_unknown_outcome_releases_nothing_it_no_longer_holds,
    a_cancellation_storm_loses_nothing_applies_each_acknowledged_transfer_once_and_leaves_no_lock,
);

/// Far longer than any test here runs: a lock still taken at the end was not released.
const LEASE: Duration = Duration::from_secs(60);
/// How long an invocation waits for a lock: far below the lease.
const ACQUIRE: Duration = Duration::from_secs(3);
/// The bound of every wait for a signal (a guard against a hang, not a timing assertion).
const PATIENCE: Duration = Duration::from_secs(30);
/// The action of every invocation here.
const ACTION: &str = "transfer";

fn seed() -> u64 {
    let seed = std::env::var("WASMTX_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("WASMTX_TEST_SEED={seed}");
    seed
}

/// A long lease, a short acquire timeout, a rule deadline long enough to hold a looping rule
/// mid-run, and no retries (each invocation is one attempt).
fn configure(builder: EngineBuilder) -> EngineBuilder {
    builder.lease(LEASE).acquire_timeout(ACQUIRE).deadline(Duration::from_secs(20)).retry(RetryPolicy::never())
}

/// Two engines on one store, as two host processes would be: `engine` on a gated view of the
/// store (to see when its invocations take locks, stop their commits, lose replies, count
/// releases), `other` on the store itself and without group commit (every invocation runs on
/// its caller's task, so its caller giving up stops it wherever it is).
struct Setup {
    store: Arc<dyn Store>,
    redis: Option<RedisFixture>,
    gated: Arc<GatedStore>,
    engine: Engine,
    rules: CompiledRules,
    other: Engine,
    other_rules: CompiledRules,
    /// How many holders of `store` there were before the engines.
    holders_before: usize,
}

impl Setup {
    async fn new(backend: Backend, name: &str) -> Result<Self> {
        let (store, redis) = match backend {
            Backend::Memory => (backend.open_store(name).await?, None),
            Backend::Redis => {
                let fixture = RedisFixture::new(name).await?;
                (fixture.store.clone(), Some(fixture))
            }
        };
        let holders_before = Arc::strong_count(&store);
        let gated = GatedStore::new(store.clone());
        let engine = configure(engine_builder()?.shared_store(gated.clone())).build()?;
        let other = configure(engine_builder()?.shared_store(store.clone())).max_group(1).build()?;
        let (rules, other_rules) = (compile_rules(&engine)?, compile_rules(&other)?);
        Ok(Self { store, redis, gated, engine, rules, other, other_rules, holders_before })
    }

    fn target(&self, key: &str) -> Result<ModelTarget> {
        Ok(ModelTarget { id: ModelId::new("Counter", key), schema: self.engine.model_type("Counter")? })
    }

    /// Tries to take the lock of `key` from outside the engines, with a 60 s lease.
    async fn try_take(&self, key: &str) -> Result<Option<Vec<LockLease>>> {
        self.try_take_as(key, "test-holder").await
    }

    /// As [`Setup::try_take`], as `owner` (a store gives an owner its own live lock again).
    async fn try_take_as(&self, key: &str, owner: &str) -> Result<Option<Vec<LockLease>>> {
        let request = LockRequest {
            models: vec![self.target(key)?],
            action: ACTION.into(),
            owner: owner.into(),
            lease: LEASE,
            record: None,
        };
        match self.store.try_lock_and_load(&request).await? {
            LockAttempt::Acquired { leases, .. } => Ok(Some(leases)),
            LockAttempt::Busy { .. } => Ok(None),
            LockAttempt::Recorded(record) => bail!("no record was asked for: {record:?}"),
        }
    }

    /// Whether someone holds the lock of `key` (a probe that gets it gives it back at once).
    async fn lock_held(&self, key: &str) -> Result<bool> {
        match self.try_take_as(key, "test-probe").await? {
            Some(leases) => {
                self.store.release(&leases).await?;
                Ok(false)
            }
            None => Ok(true),
        }
    }

    /// Fails unless every key's lock is free, checked through the store API (both stores) and,
    /// on Redis, in the data hashes.
    async fn no_lock_left(&self, keys: &[String]) -> Result<()> {
        for key in keys {
            ensure!(!self.lock_held(key).await?, "the lock of {key} is still held");
        }
        if let Some(redis) = &self.redis {
            let held = redis.held_locks().await?;
            ensure!(held.is_empty(), "locks left in Redis: {held:?}");
        }
        Ok(())
    }

    /// Drops both engines and waits (bounded) until nothing of theirs holds the store any more:
    /// their releaser tasks and group drivers stopped with them.
    async fn drop_engines(self) -> Result<(Arc<dyn Store>, Option<RedisFixture>)> {
        let Self { store, redis, gated, engine, rules, other, other_rules, holders_before } = self;
        drop((gated, engine, rules, other, other_rules));
        let released = poll_until("the engines' background tasks let go of the store", || {
            Arc::strong_count(&store) == holders_before
        })
        .await;
        released.with_context(|| format!("{} holders, {holders_before} before", Arc::strong_count(&store)))?;
        Ok((store, redis))
    }

    /// Counter `key`'s count and list of markers.
    async fn count_and_items(&self, key: &str) -> Result<(i64, Vec<String>)> {
        let snapshot = self.engine.read_model("Counter", key).await?;
        counter_state(&snapshot.values)
    }
}

/// A Counter's `count` and `items` from its values (schema order: `count` first, `items` 7th).
fn counter_state(values: &[FieldValue]) -> Result<(i64, Vec<String>)> {
    let count = match &values[0] {
        FieldValue::Scalar(Scalar::Int(n)) => *n,
        other => bail!("count is {other:?}"),
    };
    let items = match &values[6] {
        FieldValue::List(items) => items
            .iter()
            .map(|s| match s {
                Scalar::Str(s) => Ok(s.clone()),
                other => bail!("an item is {other:?}"),
            })
            .collect::<Result<Vec<_>>>()?,
        other => bail!("items is {other:?}"),
    };
    Ok((count, items))
}

/// Waits, up to [`PATIENCE`], until `done` holds, checking every 2 ms.
async fn poll_until(what: &str, mut done: impl FnMut() -> bool) -> Result<()> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done() {
        ensure!(tokio::time::Instant::now() < deadline, "not within {PATIENCE:?}: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

fn spawn_invoke(engine: &Engine, rule: &Rule, invocation: Invocation) -> JoinHandle<wasmtx::Result<Outcome>> {
    let (engine, rule) = (engine.clone(), rule.clone());
    tokio::spawn(async move { engine.invoke(&rule, &invocation).await.map_err(Error::from) })
}

/// Appends `marker` to Counter `key`'s items and counts one; then loops until the rule
/// deadline if `looping`.
fn mark(key: &str, marker: &str, looping: bool) -> Invocation {
    let mut ops = vec![
        json!({"op": "append", "field": "items", "item": marker}),
        json!({"op": "increment", "field": "count", "delta": 1}),
    ];
    if looping {
        ops.push(json!({"op": "loop"}));
    }
    Invocation::new(ACTION).model("Counter", key).input(probe_ops(&ops))
}

/// Aborts a task and checks it was cancelled (not finished).
async fn cancel(task: JoinHandle<wasmtx::Result<Outcome>>) -> Result<()> {
    task.abort();
    match task.await {
        Err(e) if e.is_cancelled() => Ok(()),
        other => bail!("the invocation was not cancelled: {other:?}"),
    }
}

/// Awaits an invocation that must succeed, up to [`PATIENCE`] (its own acquire timeout is 3 s).
async fn succeeds(name: &str, task: JoinHandle<wasmtx::Result<Outcome>>) -> Result<Outcome> {
    match tokio::time::timeout(PATIENCE, task).await {
        Ok(Ok(Ok(outcome))) => Ok(outcome),
        Ok(Ok(Err(e))) => bail!("{name} failed: {e} (was the cancelled invocation's lock released?)"),
        Ok(Err(e)) => bail!("{name} panicked or was cancelled: {e}"),
        Err(_) => bail!("{name} did not finish within {PATIENCE:?}"),
    }
}

/// A rule looping to its 20 s deadline holds the lock; its caller gives up (the task is
/// aborted). Waiters in the same engine (queued in its group line) and in another engine
/// (waiting in the store) both get the lock within their 3 s acquire timeout, nothing of the
/// cancelled run is written, no lock is left, and the engines' background tasks stop with them.
async fn a_caller_that_gives_up_mid_run_frees_its_lock_at_once(backend: Backend) -> Result<()> {
    let setup = Setup::new(backend, "release-mid-run").await?;
    let locked = setup.gated.on_next_lock();
    let cancelled = spawn_invoke(&setup.engine, &setup.rules.probe, mark("k", "cancelled", true));
    let leases = tokio::time::timeout(PATIENCE, locked).await.context("the looping invocation never locked")??;
    ensure!(leases.len() == 1, "one model, one lease: {leases:?}");
    ensure!(setup.lock_held("k").await?, "the looping invocation holds its lock");
    if let Some(redis) = &setup.redis {
        ensure!(redis.held_locks().await?.len() == 1, "Redis shows the lock held");
    }
    let same = spawn_invoke(&setup.engine, &setup.rules.probe, mark("k", "same-engine", false));
    let other = spawn_invoke(&setup.other, &setup.other_rules.probe, mark("k", "other-engine", false));
    ensure!(!cancelled.is_finished(), "the rule still loops (its deadline is 20 s)");
    cancel(cancelled).await?;

    for (name, waiter) in [("the same engine's waiter", same), ("the other engine's waiter", other)] {
        let outcome = succeeds(name, waiter).await?;
        ensure!(outcome.attempts == 1 && !outcome.replayed, "{name} ran once: {outcome:?}");
    }
    let (count, mut items) = setup.count_and_items("k").await?;
    items.sort();
    ensure!(items == ["other-engine", "same-engine"], "exactly the two waiters' effects: {items:?}");
    ensure!(count == 2, "the cancelled run counted nothing: {count}");
    setup.no_lock_left(&["k".to_owned()]).await?;
    setup.drop_engines().await?;
    Ok(())
}

/// The caller gives up while its commit waits at the gate (never sent): the commit is dropped,
/// and the lock is released at once; the next invocation, from another engine, gets it within
/// its acquire timeout and is the only effect.
async fn a_caller_that_gives_up_at_its_commit_frees_its_lock_at_once(backend: Backend) -> Result<()> {
    let setup = Setup::new(backend, "release-at-commit").await?;
    let mut gate = setup.gated.arm();
    let cancelled = spawn_invoke(&setup.engine, &setup.rules.probe, mark("k", "cancelled", false));
    tokio::time::timeout(PATIENCE, gate.wait_reached()).await.context("the commit never reached the gate")??;
    ensure!(setup.lock_held("k").await?, "the invocation holds its lock at its commit");
    cancel(cancelled).await?;
    drop(gate);

    let next = spawn_invoke(&setup.other, &setup.other_rules.probe, mark("k", "next", false));
    let outcome = succeeds("the next invocation", next).await?;
    ensure!(outcome.attempts == 1, "ran once: {outcome:?}");
    let (count, items) = setup.count_and_items("k").await?;
    ensure!(items == ["next"] && count == 1, "only the next invocation's effect: {count} {items:?}");
    setup.no_lock_left(&["k".to_owned()]).await?;
    setup.drop_engines().await?;
    Ok(())
}

/// The commit applies (releasing the lock) but its reply is lost, and the store cannot be
/// asked whether it applied, so the engine keeps asking; meanwhile another holder takes the
/// lock. The caller then gives up: the releaser does release the cancelled invocation's lease
/// (the store sees the release), but its token is no longer the lock's, so the new holder keeps
/// the lock. The commit applied exactly once.
async fn a_cancelled_commit_of_unknown_outcome_releases_nothing_it_no_longer_holds(backend: Backend) -> Result<()> {
    let setup = Setup::new(backend, "release-unknown").await?;
    setup.gated.lose_reply(LostReply::AfterApplying);
    setup.gated.fail_resolves(u32::MAX);
    let cancelled = spawn_invoke(&setup.engine, &setup.rules.probe, mark("k", "landed", false));
    let gated = Arc::clone(&setup.gated);
    poll_until("the engine asks whether its commit applied", || gated.resolves() >= 1).await?;
    let holder = setup.try_take("k").await?.context("the applied commit released the lock: it can be taken")?;
    let releases_before = setup.gated.releases();
    ensure!(!cancelled.is_finished(), "the engine still asks whether its commit applied");
    cancel(cancelled).await?;

    poll_until("the releaser releases the cancelled invocation's lease", || gated.releases() > releases_before).await?;
    ensure!(setup.lock_held("k").await?, "the stale release freed the new holder's lock");
    setup.store.release(&holder).await?;
    let (count, items) = setup.count_and_items("k").await?;
    ensure!(items == ["landed"] && count == 1, "the commit applied once: {count} {items:?}");
    setup.no_lock_left(&["k".to_owned()]).await?;
    drop(gated);
    setup.drop_engines().await?;
    Ok(())
}

/// How one storm invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Acknowledged: its transfer must be applied exactly once.
    Acked,
    /// It failed: nothing of it may be written.
    Failed,
    /// Its caller gave up: applied once or not at all.
    Cancelled,
}

/// 1,000 transfers among 4 accounts, from two engines at once, nine in ten given up after a
/// random 0–5 ms (a seeded rng): some finish, the others are dropped wherever they are (in a
/// local line, a group line, a lock-and-load in flight, the rule, the commit). One in three
/// rules runs for milliseconds, so that callers also give up while their rules run. Each transfer moves a
/// random amount and appends its marker to both accounts. Afterwards: every account's next
/// invocation gets its lock within the 3 s acquire timeout (the 60 s leases were released);
/// once the engines are gone no lock is left; and in the final state every marker is on both of
/// its accounts or on neither, none twice, every acknowledged one is there, no failed one is,
/// and each balance is exactly what the markers present moved (so the total is conserved).
async fn a_cancellation_storm_loses_nothing_applies_each_acknowledged_transfer_once_and_leaves_no_lock(
    backend: Backend,
) -> Result<()> {
    const TRANSFERS: usize = 1_000;
    let seed = seed();
    let setup = Setup::new(backend, "release-storm").await?;
    let keys: Vec<String> = (0..4).map(|i| format!("acct{i}")).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut plan = Vec::with_capacity(TRANSFERS);
    let mut tasks = Vec::with_capacity(TRANSFERS);
    for i in 0..TRANSFERS {
        let from = rng.random_range(0..keys.len());
        let to = (from + rng.random_range(1..keys.len())) % keys.len();
        let amount = rng.random_range(1..=50i64);
        // One caller in ten is patient (so that some transfers are surely acknowledged); the
        // others give up after 0-5 ms.
        let give_up_after =
            if rng.random_range(0..10) == 0 { PATIENCE } else { Duration::from_micros(rng.random_range(0..=5_000)) };
        let marker = format!("t{i}");
        let mut ops = vec![
            json!({"op": "increment", "model": 0, "field": "count", "delta": -amount}),
            json!({"op": "increment", "model": 1, "field": "count", "delta": amount}),
            json!({"op": "append", "model": 0, "field": "items", "item": marker}),
            json!({"op": "append", "model": 1, "field": "items", "item": marker}),
        ];
        // One in three runs for milliseconds (writing 12 MiB one to four times): it
        // outlasts its first tick and moves to the rule threads, so its caller may give up
        // while it runs under its locks, even on the embedded store, whose lock-and-load and
        // commit never wait.
        if rng.random_range(0..3) == 0 {
            for _ in 0..rng.random_range(1..=4) {
                ops.push(json!({"op": "alloc", "bytes": 12 << 20}));
            }
        }
        let invocation =
            Invocation::new(ACTION).model("Counter", &keys[from]).model("Counter", &keys[to]).input(probe_ops(&ops));
        let (engine, rule) = if i % 2 == 0 {
            (setup.engine.clone(), setup.rules.probe.clone())
        } else {
            (setup.other.clone(), setup.other_rules.probe.clone())
        };
        tasks.push(tokio::spawn(async move {
            match tokio::time::timeout(give_up_after, engine.invoke(&rule, &invocation)).await {
                Ok(Ok(_)) => Ended::Acked,
                Ok(Err(_)) => Ended::Failed,
                Err(_) => Ended::Cancelled,
            }
        }));
        plan.push((marker, from, to, amount));
    }
    let mut ended = Vec::with_capacity(TRANSFERS);
    for task in tasks {
        ended.push(tokio::time::timeout(PATIENCE, task).await.context("a storm invocation hung")??);
    }
    let tally = |e: Ended| ended.iter().filter(|x| **x == e).count();
    let (acked, failed, cancelled) = (tally(Ended::Acked), tally(Ended::Failed), tally(Ended::Cancelled));
    println!("storm: {acked} acknowledged, {failed} failed, {cancelled} cancelled");
    ensure!(acked > 0 && cancelled > 0, "seed {seed}: the storm must both finish and cancel invocations");

    // The next invocation on every key, from each engine, gets its lock in time.
    for key in &keys {
        let read =
            Invocation::new(ACTION).model("Counter", key).input(probe_ops(&[json!({"op": "get", "field": "count"})]));
        succeeds(
            &format!("seed {seed}: the next invocation on {key}"),
            spawn_invoke(&setup.engine, &setup.rules.probe, read.clone()),
        )
        .await?;
        succeeds(
            &format!("seed {seed}: the other engine's next invocation on {key}"),
            spawn_invoke(&setup.other, &setup.other_rules.probe, read),
        )
        .await?;
    }
    let targets = keys.iter().map(|k| setup.target(k)).collect::<Result<Vec<_>>>()?;
    let (store, redis) = setup.drop_engines().await?;
    for (key, target) in keys.iter().zip(&targets) {
        let request = LockRequest {
            models: vec![target.clone()],
            action: ACTION.into(),
            owner: "test-probe".into(),
            lease: LEASE,
            record: None,
        };
        match store.try_lock_and_load(&request).await? {
            LockAttempt::Acquired { leases, .. } => store.release(&leases).await?,
            other => bail!("seed {seed}: a lock of {key} is left: {other:?}"),
        }
    }
    if let Some(redis) = &redis {
        let held = redis.held_locks().await?;
        ensure!(held.is_empty(), "seed {seed}: locks left in Redis: {held:?}");
    }

    // One consistent snapshot of every account.
    let snapshots = store.load(&targets).await?;
    let mut balances = Vec::new();
    let mut seen: HashMap<String, Vec<usize>> = HashMap::new();
    for (index, snapshot) in snapshots.iter().enumerate() {
        let (count, items) = counter_state(&snapshot.values)?;
        balances.push(count);
        let unique: HashSet<&String> = items.iter().collect();
        ensure!(unique.len() == items.len(), "seed {seed}: a marker is twice on {}: {items:?}", keys[index]);
        for item in items {
            seen.entry(item).or_default().push(index);
        }
    }
    let mut expected = vec![0i64; keys.len()];
    for ((marker, from, to, amount), end) in plan.iter().zip(&ended) {
        let on = seen.remove(marker).unwrap_or_default();
        match on.as_slice() {
            [] => ensure!(*end != Ended::Acked, "seed {seed}: acknowledged {marker} is missing"),
            [a, b] if (*a, *b) == (*from, *to) || (*a, *b) == (*to, *from) => {
                ensure!(*end != Ended::Failed, "seed {seed}: failed {marker} was written");
                expected[*from] -= amount;
                expected[*to] += amount;
            }
            other => bail!("seed {seed}: {marker} ({from} -> {to}) is on accounts {other:?}"),
        }
    }
    ensure!(seen.is_empty(), "seed {seed}: markers nobody wrote: {:?}", seen.keys().collect::<Vec<_>>());
    ensure!(balances == expected, "seed {seed}: balances {balances:?}, the markers present say {expected:?}");
    ensure!(balances.iter().sum::<i64>() == 0, "seed {seed}: money was created or lost: {balances:?}");
    Ok(())
}
