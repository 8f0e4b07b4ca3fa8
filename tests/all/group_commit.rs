//! Group commit in lock mode, on a real Redis and on the embedded store: invocations of the
//! same models and action queued in one engine run back to back under one lock hold and
//! commit together, each keeping its own semantics.
//!
//! The tests make groups happen deterministically: they hold the lock from outside (through
//! the store API), start the invocations, which queue in the engine's line behind the first
//! one (blocked on the held lock), then release it.

use std::collections::{BTreeMap, HashMap};
use std::pin::pin;
use std::time::Duration;

use crate::{Backend, TestEnv, hold_lock, on_both_stores, probe_ops};
use anyhow::{Result, bail, ensure};
use futures_util::FutureExt as _;
use serde_json::json;
use wasmtx::{Engine, Error, FieldChange, FieldValue, Invocation, Outcome, RetryPolicy, Rule, Scalar};

on_both_stores!(
    successes_rejections_and_traps_in_groups_apply_exactly_the_successes,
    transfers_in_both_directions_group_and_conserve_the_total,
    a_failed_shared_commit_fails_every_member_and_writes_nothing,
    callers_that_drop_their_futures_do_not_break_the_group,
    queued_invocations_still_time_out_and_the_line_recovers,
    max_group_one_turns_grouping_off,
    a_member_that_joins_after_the_load_sees_every_write_acknowledged_before_it,
);

/// How long the tests give spawned invocations to reach the engine's line.
const SETTLE: Duration = Duration::from_millis(300);

async fn field(env: &TestEnv, model_type: &str, key: &str, name: &str) -> Result<FieldValue> {
    let schema = env.engine.model_type(model_type)?;
    let index = schema.field_index(name).ok_or_else(|| anyhow::anyhow!("no field {name}"))?;
    Ok(env.engine.read_model(model_type, key).await?.values[index].clone())
}

fn int(v: i64) -> FieldValue {
    FieldValue::Scalar(Scalar::Int(v))
}

fn spawn_invoke(
    engine: &Engine,
    rule: &Rule,
    invocation: Invocation,
) -> tokio::task::JoinHandle<wasmtx::Result<Outcome>> {
    let (engine, rule) = (engine.clone(), rule.clone());
    tokio::spawn(async move { engine.invoke(&rule, &invocation).await.map_err(Error::from) })
}

/// What invocation `i` of the mixed test does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Success,
    Reject,
    Trap,
}

fn kind(i: usize) -> Kind {
    match i % 5 {
        1 => Kind::Reject,
        3 if i % 2 == 1 => Kind::Trap,
        _ => Kind::Success,
    }
}

/// Every invocation increments `count`, appends its own item and sets its own dict entry; a
/// rejected or trapped one fails after those writes. With 8 per group and 60 invocations:
/// exactly the successes are applied (count, list and dict), each success saw the writes of
/// the successes before it (its increment returned its position), each caller's outcome holds
/// its own diff, and no group is larger than the bound.
async fn successes_rejections_and_traps_in_groups_apply_exactly_the_successes(backend: Backend) -> Result<()> {
    let max_group = 8;
    let env =
        TestEnv::with(backend, "group-mixed", |b| b.max_group(max_group).acquire_timeout(Duration::from_secs(60)))
            .await?;
    let held = hold_lock(&env.engine, "Counter", &["hot"], "bump").await?;
    let n = 60;
    let mut tasks = Vec::new();
    for i in 0..n {
        let mut ops = vec![
            json!({"op": "increment", "model": 0, "field": "count", "delta": 1}),
            json!({"op": "append", "model": 0, "field": "items", "item": format!("i{i}")}),
            json!({"op": "dict_set", "model": 0, "field": "tags", "key": format!("k{i}"), "value": i}),
        ];
        match kind(i) {
            Kind::Success => {}
            Kind::Reject => ops.push(json!({"op": "reject", "message": format!("no {i}")})),
            Kind::Trap => ops.push(json!({"op": "trap"})),
        }
        let inv = Invocation::new("bump").model("Counter", "hot").input(probe_ops(&ops));
        tasks.push(spawn_invoke(&env.engine, &env.rules.probe, inv));
    }
    tokio::time::sleep(SETTLE).await;
    env.engine.store().release(&held).await?;

    let mut successes: Vec<(usize, i64, Outcome)> = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        let result = tokio::time::timeout(Duration::from_secs(60), task).await??;
        match (kind(i), result) {
            (Kind::Success, Ok(outcome)) => {
                let results: Vec<serde_json::Value> = outcome.output_as()?;
                let seen = results[0].as_i64().ok_or_else(|| anyhow::anyhow!("increment result {results:?}"))?;
                successes.push((i, seen, outcome));
            }
            (Kind::Reject, Err(Error::Rejected { message })) => ensure!(message == format!("no {i}"), "{i}: {message}"),
            (Kind::Trap, Err(Error::Trapped { .. })) => {}
            (k, other) => bail!("invocation {i} ({k:?}) ended with {other:?}"),
        }
    }
    let expected = (0..n).filter(|&i| kind(i) == Kind::Success).count();
    assert_eq!(successes.len(), expected);

    // Each success saw every earlier success's increment: the values are 1..=S, once each.
    successes.sort_by_key(|(_, seen, _)| *seen);
    let seen: Vec<i64> = successes.iter().map(|(_, seen, _)| *seen).collect();
    assert_eq!(seen, (1..=i64::try_from(expected)?).collect::<Vec<_>>());

    // The store holds exactly the successes' writes, the list in the order they ran.
    assert_eq!(field(&env, "Counter", "hot", "count").await?, int(i64::try_from(expected)?));
    let items: Vec<Scalar> = successes.iter().map(|(i, _, _)| Scalar::Str(format!("i{i}"))).collect();
    assert_eq!(field(&env, "Counter", "hot", "items").await?, FieldValue::List(items));
    let tags: BTreeMap<String, Scalar> = successes
        .iter()
        .map(|(i, _, _)| (format!("k{i}"), Scalar::Int(i64::try_from(*i).unwrap_or_default())))
        .collect();
    assert_eq!(field(&env, "Counter", "hot", "tags").await?, FieldValue::Dict(tags));

    // Each outcome is its own: its increment, its item, its entry.
    for (i, seen, outcome) in &successes {
        let changes = &outcome.changes[0].changes;
        assert!(
            changes.contains(&FieldChange::Set { field: "count".into(), value: Scalar::Int(*seen) }),
            "{i}: {changes:?}"
        );
        assert!(
            changes.contains(&FieldChange::ListAppend {
                field: "items".into(),
                items: vec![Scalar::Str(format!("i{i}"))]
            }),
            "{i}: {changes:?}"
        );
        assert!(
            changes.contains(&FieldChange::DictSet {
                field: "tags".into(),
                entries: vec![(format!("k{i}"), Scalar::Int(i64::try_from(*i)?))]
            }),
            "{i}: {changes:?}"
        );
        assert_eq!(changes.len(), 3, "{i}: {changes:?}");
    }

    // Groups: one fencing token (and one version) per group, no group over the bound, and
    // grouping did happen.
    let mut groups: HashMap<u64, Vec<u64>> = HashMap::new();
    for (_, _, outcome) in &successes {
        groups.entry(outcome.fencing_tokens[0]).or_default().push(outcome.versions[0]);
    }
    assert!(groups.len() >= expected.div_ceil(max_group), "{} groups for {expected} successes", groups.len());
    assert!(groups.values().all(|g| g.len() <= max_group), "a group exceeded {max_group}: {groups:?}");
    assert!(groups.values().any(|g| g.len() > 1), "nothing was grouped: {groups:?}");
    for versions in groups.values() {
        assert!(versions.windows(2).all(|w| w[0] == w[1]), "one commit, one version per group: {versions:?}");
    }
    assert!(env.held_locks().await?.is_empty(), "no lock left behind");
    Ok(())
}

/// Transfers between two accounts in both directions share one lock set, so they group
/// although the rule sees the models in opposite orders. Some are refused for lack of funds.
async fn transfers_in_both_directions_group_and_conserve_the_total(backend: Backend) -> Result<()> {
    let env =
        TestEnv::with(backend, "group-bank", |b| b.max_group(16).acquire_timeout(Duration::from_secs(60))).await?;
    env.engine.set_field("Account", "alice", "balance", int(100)).await?;
    env.engine.set_field("Account", "bob", "balance", int(20)).await?;
    let held = hold_lock(&env.engine, "Account", &["alice", "bob"], "transfer").await?;
    let mut tasks = Vec::new();
    for i in 0..40i64 {
        let (from, to) = if i % 3 == 0 { ("bob", "alice") } else { ("alice", "bob") };
        let inv = Invocation::new("transfer")
            .model("Account", from)
            .model("Account", to)
            .input(json!({ "amount": 7 + i % 5 }).to_string());
        tasks.push(spawn_invoke(&env.engine, &env.rules.bank_transfer, inv));
    }
    tokio::time::sleep(SETTLE).await;
    env.engine.store().release(&held).await?;
    let mut committed = 0;
    let mut tokens: HashMap<Vec<u64>, usize> = HashMap::new();
    for task in tasks {
        match tokio::time::timeout(Duration::from_secs(60), task).await?? {
            Ok(outcome) => {
                committed += 1;
                // Tokens come in the caller's order: sort them to compare across directions.
                let mut t = outcome.fencing_tokens.clone();
                t.sort_unstable();
                *tokens.entry(t).or_default() += 1;
            }
            Err(Error::Rejected { message }) => ensure!(message == "Insufficient funds", "{message}"),
            Err(e) => return Err(e.into()),
        }
    }
    let balance = |key: &'static str| {
        let env = env.clone();
        async move {
            match field(&env, "Account", key, "balance").await? {
                FieldValue::Scalar(Scalar::Int(v)) => anyhow::Ok(v),
                other => bail!("balance {other:?}"),
            }
        }
    };
    let (a, b) = (balance("alice").await?, balance("bob").await?);
    assert_eq!(a + b, 120, "money was created or destroyed");
    assert!(a >= 0 && b >= 0);
    assert_eq!(field(&env, "Account", "alice", "transaction_count").await?, int(committed));
    assert_eq!(field(&env, "Account", "bob", "transaction_count").await?, int(committed));
    assert!(tokens.values().any(|&n| n > 1), "nothing was grouped: {tokens:?}");
    assert!(tokens.values().all(|&n| n <= 16));
    assert!(env.held_locks().await?.is_empty());
    Ok(())
}

/// A group whose commit is refused (its lease ran out while the commit was held at a gate)
/// fails every member with that error, the rejected one too, and writes nothing of the group.
async fn a_failed_shared_commit_fails_every_member_and_writes_nothing(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend, "group-lost").await?;
    let lease = Duration::from_millis(500);
    let (engine, rules, gated) = env.gated_engine(|b| {
        b.lease(lease).deadline(Duration::from_millis(100)).retry(RetryPolicy::never()).max_group(16)
    })?;
    let mut first_gate = gated.arm();
    let mut group_gate = gated.arm();
    let held = hold_lock(&engine, "Counter", &["g"], "bump").await?;
    let inc = |extra: Option<serde_json::Value>| {
        let mut ops = vec![json!({"op": "increment", "model": 0, "field": "count", "delta": 1})];
        ops.extend(extra);
        Invocation::new("bump").model("Counter", "g").input(probe_ops(&ops))
    };
    // The first invocation leads the line (and waits for the held lock); the others queue.
    let first = spawn_invoke(&engine, &rules.probe, inc(None));
    tokio::time::sleep(SETTLE / 3).await;
    let mut group = Vec::new();
    for i in 0..9 {
        let extra = (i == 4).then(|| json!({"op": "reject", "message": "refused"}));
        group.push(spawn_invoke(&engine, &rules.probe, inc(extra)));
    }
    tokio::time::sleep(SETTLE).await;
    engine.store().release(&held).await?;

    // The first one commits alone.
    first_gate.wait_reached().await?;
    first_gate.open();
    let out = first.await??;
    assert_eq!(out.output_as::<Vec<i64>>()?, vec![1]);
    let before = env.fingerprint(&[("Counter", "g")]).await?;

    // The group reaches its commit; its lease runs out; the commit is refused.
    group_gate.wait_reached().await?;
    tokio::time::sleep(lease + Duration::from_millis(200)).await;
    group_gate.open();
    for (i, task) in group.into_iter().enumerate() {
        match task.await? {
            Err(Error::LockLost { lock }) => assert_eq!((lock.model.key.as_str(), lock.action.as_str()), ("g", "bump")),
            other => bail!("member {i}: expected LockLost, got {other:?}"),
        }
    }
    assert_eq!(env.fingerprint(&[("Counter", "g")]).await?, before, "the refused group wrote something");
    assert_eq!(field(&env, "Counter", "g", "count").await?, int(1));
    assert!(env.held_locks().await?.is_empty());
    Ok(())
}

/// Callers that give up while queued (and a leader that gives up while waiting for the lock)
/// are skipped; everyone else runs, in groups, and nothing is lost or left locked.
async fn callers_that_drop_their_futures_do_not_break_the_group(backend: Backend) -> Result<()> {
    let env =
        TestEnv::with(backend, "group-cancel", |b| b.max_group(4).acquire_timeout(Duration::from_secs(60))).await?;
    let held = hold_lock(&env.engine, "Counter", &["c"], "bump").await?;
    let inc = || {
        Invocation::new("bump")
            .model("Counter", "c")
            .input(probe_ops(&[json!({"op": "increment", "model": 0, "field": "count", "delta": 1})]))
    };
    let mut tasks = Vec::new();
    for _ in 0..20 {
        tasks.push(spawn_invoke(&env.engine, &env.rules.probe, inc()));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(SETTLE).await;
    // Drop the leader (waiting for the held lock) and every third queued caller.
    let mut kept = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        if i % 3 == 0 {
            task.abort();
            ensure!(task.await.is_err_and(|e| e.is_cancelled()), "task {i} was not cancelled");
        } else {
            kept.push(task);
        }
    }
    env.engine.store().release(&held).await?;
    let mut values = Vec::new();
    for task in kept.iter_mut() {
        let out = tokio::time::timeout(Duration::from_secs(60), task).await???;
        values.push(out.output_as::<Vec<i64>>()?[0]);
    }
    values.sort_unstable();
    let n = i64::try_from(kept.len())?;
    assert_eq!(values, (1..=n).collect::<Vec<_>>(), "the dropped callers never ran");
    assert_eq!(field(&env, "Counter", "c", "count").await?, int(n));
    // The line still works.
    let out = env.engine.invoke(&env.rules.probe, &inc()).await.map_err(Error::from)?;
    assert_eq!(out.output_as::<Vec<i64>>()?, vec![n + 1]);
    assert!(env.held_locks().await?.is_empty());
    Ok(())
}

/// Queued invocations keep their acquire deadline: with the lock held throughout, each times
/// out with a typed error and writes nothing; once the lock is free the line works again.
async fn queued_invocations_still_time_out_and_the_line_recovers(backend: Backend) -> Result<()> {
    let timeout = Duration::from_millis(300);
    let env = TestEnv::with(backend, "group-timeout", |b| b.acquire_timeout(timeout)).await?;
    let held = hold_lock(&env.engine, "Counter", &["t"], "bump").await?;
    let before = env.fingerprint(&[("Counter", "t")]).await?;
    let inc = || {
        Invocation::new("bump")
            .model("Counter", "t")
            .input(probe_ops(&[json!({"op": "increment", "model": 0, "field": "count", "delta": 1})]))
    };
    let tasks: Vec<_> = (0..6).map(|_| spawn_invoke(&env.engine, &env.rules.probe, inc())).collect();
    for task in tasks {
        match tokio::time::timeout(Duration::from_secs(30), task).await?? {
            Err(Error::LockTimeout { lock, waited }) => {
                assert_eq!(lock.model.key, "t");
                assert!(waited >= timeout, "{waited:?}");
            }
            other => bail!("expected LockTimeout, got {other:?}"),
        }
    }
    assert_eq!(env.fingerprint(&[("Counter", "t")]).await?, before);
    env.engine.store().release(&held).await?;
    let out = env.engine.invoke(&env.rules.probe, &inc()).await.map_err(Error::from)?;
    assert_eq!(out.output_as::<Vec<i64>>()?, vec![1]);
    Ok(())
}

/// `max_group(1)`: every invocation takes the lock for itself (one fencing token each).
async fn max_group_one_turns_grouping_off(backend: Backend) -> Result<()> {
    let env = TestEnv::with(backend, "group-off", |b| b.max_group(1).acquire_timeout(Duration::from_secs(60))).await?;
    let held = hold_lock(&env.engine, "Counter", &["o"], "bump").await?;
    let inc = Invocation::new("bump")
        .model("Counter", "o")
        .input(probe_ops(&[json!({"op": "increment", "model": 0, "field": "count", "delta": 1})]));
    let tasks: Vec<_> = (0..12).map(|_| spawn_invoke(&env.engine, &env.rules.probe, inc.clone())).collect();
    tokio::time::sleep(SETTLE).await;
    env.engine.store().release(&held).await?;
    let mut tokens = Vec::new();
    for task in tasks {
        tokens.push(tokio::time::timeout(Duration::from_secs(60), task).await???.fencing_tokens[0]);
    }
    tokens.sort_unstable();
    tokens.dedup();
    assert_eq!(tokens.len(), 12, "every invocation had its own lock hold");
    assert_eq!(field(&env, "Counter", "o", "count").await?, int(12));
    assert!(Engine::builder().max_group(0).build().is_err(), "0 is refused");
    Ok(())
}

/// The first result of a probe run that read one value.
fn read_value(outcome: &Outcome) -> Result<serde_json::Value> {
    let results: Vec<serde_json::Value> = outcome.output_as()?;
    results.into_iter().next().ok_or_else(|| anyhow::anyhow!("no result in {:?}", outcome.output))
}

/// Members join a running group after its state was loaded. One that was sent after another
/// action's write was acknowledged must see that write, even when no member of the group
/// writes (a read-only group still checks, as it commits, that the state it ran on is the
/// stored one, and runs again on fresh state if not). The test stops the group right after its
/// lock-and-load (a gate in the store), writes from another action meanwhile, and only then
/// sends the late reader.
async fn a_member_that_joins_after_the_load_sees_every_write_acknowledged_before_it(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend, "group-late-join").await?;
    let (engine, rules, gated) = env.gated_engine(|b| b.max_group(8).acquire_timeout(Duration::from_secs(60)))?;
    let read = || {
        Invocation::new("look")
            .model("Counter", "late")
            .input(probe_ops(&[json!({"op": "get", "model": 0, "field": "count"})]))
    };

    // The leader waits at its commit: the line stays busy, so the next reader queues in it.
    let mut lead_commit = gated.arm();
    let lead = spawn_invoke(&engine, &rules.probe, read());
    lead_commit.wait_reached().await?;
    let queued_read = read();
    let mut queued = pin!(engine.invoke(&rules.probe, &queued_read));
    ensure!(queued.as_mut().now_or_never().is_none(), "the queued reader did not wait in the line");

    // The group for the queued reader takes its locks and loads (count 0), then waits.
    let mut group_load = gated.arm_lock();
    lead_commit.open();
    group_load.wait_reached().await?;

    // Another action writes meanwhile, and its caller is answered.
    let write = Invocation::new("write")
        .model("Counter", "late")
        .input(probe_ops(&[json!({"op": "set", "model": 0, "field": "count", "value": 7})]));
    env.engine.invoke(&env.rules.probe, &write).await?;

    // Sent after that answer, the late reader joins the group that loaded before the write.
    let late_read = read();
    let mut late = pin!(engine.invoke(&rules.probe, &late_read));
    ensure!(late.as_mut().now_or_never().is_none(), "the late reader did not wait in the line");
    group_load.open();

    let (queued, late) = tokio::join!(queued, late);
    let (queued, late) = (queued?, late?);
    ensure!(
        queued.fencing_tokens == late.fencing_tokens,
        "the two readers were not one group (tokens {:?} and {:?}): the test set nothing up",
        queued.fencing_tokens,
        late.fencing_tokens
    );
    ensure!(read_value(&late)? == json!(7), "the late reader saw {}, not the write answered before it", late.output);
    ensure!(read_value(&lead.await??)? == json!(0), "the leader ran before the write");
    ensure!(env.held_locks().await?.is_empty(), "locks left: {:?}", env.held_locks().await?);
    Ok(())
}
