//! Lock mode end to end, on a real Redis and on the embedded store: the reference's lock
//! context manager scenarios, action-named locks, fencing, concurrency invariants.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::{Backend, TestEnv, on_both_stores, probe_ops};
use anyhow::{Result, bail, ensure};
use rand::{Rng, SeedableRng};
use serde_json::json;
use wasmtx::{Error, FieldChange, FieldValue, Invocation, Scalar};

on_both_stores!(
    bank_transfer_moves_money_and_reports_what_it_wrote,
    insufficient_funds_rejects_and_writes_nothing,
    state_written_by_another_client_is_seen_on_entry,
    a_model_never_written_runs_on_its_defaults,
    hot_counter_loses_no_update_across_two_engines,
    different_actions_on_disjoint_fields_keep_all_updates,
    different_keys_do_not_wait_for_each_other,
    same_action_on_same_key_times_out_with_a_typed_error,
    random_transfers_conserve_the_total_without_deadlock,
    fencing_tokens_increase_per_model,
    list_and_dict_changes_keep_their_intent,
);

fn int(v: i64) -> FieldValue {
    FieldValue::Scalar(Scalar::Int(v))
}

async fn balance(env: &TestEnv, key: &str) -> Result<i64> {
    let snapshot = env.engine.read_model("Account", key).await?;
    match &snapshot.values[0] {
        FieldValue::Scalar(Scalar::Int(v)) => Ok(*v),
        other => bail!("balance is {other:?}"),
    }
}

async fn field(env: &TestEnv, model_type: &str, key: &str, name: &str) -> Result<FieldValue> {
    let schema = env.engine.model_type(model_type)?;
    let index = schema.field_index(name).ok_or_else(|| anyhow::anyhow!("no field {name}"))?;
    Ok(env.engine.read_model(model_type, key).await?.values[index].clone())
}

fn transfer(from: &str, to: &str, amount: i64) -> Invocation {
    Invocation::new("transfer")
        .model("Account", from)
        .model("Account", to)
        .input(json!({ "amount": amount }).to_string())
}

async fn bank_transfer_moves_money_and_reports_what_it_wrote(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend, "transfer").await?;
    env.engine.set_field("Account", "alice", "balance", int(100)).await?;
    let outcome =
        env.engine.invoke(&env.rules.bank_transfer, &transfer("alice", "bob", 30)).await.map_err(Error::from)?;

    assert_eq!(outcome.output_as::<String>()?, "Transferred 30 successfully");
    assert_eq!(balance(&env, "alice").await?, 70);
    assert_eq!(balance(&env, "bob").await?, 30);
    assert_eq!(field(&env, "Account", "alice", "transaction_count").await?, int(1));
    assert_eq!(field(&env, "Account", "bob", "transaction_count").await?, int(1));
    // The diff names exactly the two changed fields of each model, in caller order.
    assert_eq!(outcome.changes[0].model.key, "alice");
    let alice: HashSet<_> = outcome.changes[0].changes.iter().map(FieldChange::field).collect();
    assert_eq!(alice, HashSet::from(["balance", "transaction_count"]));
    assert!(outcome.changes[0].changes.contains(&FieldChange::Set { field: "balance".into(), value: Scalar::Int(70) }));
    assert_eq!(outcome.fencing_tokens.len(), 2);
    assert!(outcome.fencing_tokens.iter().all(|t| *t > 0));
    assert_eq!(outcome.versions, vec![2, 1], "alice: seeded once, then the transfer; bob: the transfer");
    assert!(outcome.timings.run > Duration::ZERO && outcome.timings.commit > Duration::ZERO);
    assert!(env.held_locks().await?.is_empty(), "locks are released by the commit");
    Ok(())
}

async fn insufficient_funds_rejects_and_writes_nothing(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend, "rejects").await?;
    env.engine.set_field("Account", "alice", "balance", int(10)).await?;
    let models = [("Account", "alice"), ("Account", "bob")];
    let before = env.fingerprint(&models).await?;
    let err = env
        .engine
        .invoke(&env.rules.bank_transfer, &transfer("alice", "bob", 11))
        .await
        .map_err(Error::from)
        .expect_err("must reject");
    match &err {
        Error::Rejected { message } => assert_eq!(message, "Insufficient funds"),
        other => bail!("expected Rejected, got {other:?}"),
    }
    assert!(!err.is_retryable());
    assert_eq!(env.fingerprint(&models).await?, before);
    assert!(env.held_locks().await?.is_empty());
    // The locks were released: the same action runs again at once.
    env.engine.invoke(&env.rules.bank_transfer, &transfer("alice", "bob", 10)).await.map_err(Error::from)?;
    Ok(())
}

async fn state_written_by_another_client_is_seen_on_entry(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend, "refresh").await?;
    env.engine.set_field("Account", "alice", "balance", int(5)).await?;
    let rejected =
        env.engine.invoke(&env.rules.bank_transfer, &transfer("alice", "bob", 50)).await.map_err(Error::from);
    assert!(matches!(rejected, Err(Error::Rejected { .. })));
    // Another client writes between two invocations: with Redis a plain HSET, as any client
    // would; with the memory store, a direct write through the engine's store.
    match &env.redis {
        Some(redis) => {
            let mut conn = redis.client().await?;
            let key = redis.keys.data(&wasmtx::ModelId::new("Account", "alice"));
            redis::cmd("HSET").arg(&key).arg("balance").arg("500").query_async::<()>(&mut conn).await?;
        }
        None => {
            env.engine.set_field("Account", "alice", "balance", int(500)).await?;
        }
    }
    let outcome =
        env.engine.invoke(&env.rules.bank_transfer, &transfer("alice", "bob", 50)).await.map_err(Error::from)?;
    assert_eq!(outcome.output_as::<String>()?, "Transferred 50 successfully");
    assert_eq!(balance(&env, "alice").await?, 450);
    Ok(())
}

async fn a_model_never_written_runs_on_its_defaults(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend, "defaults").await?;
    let outcome = env
        .engine
        .invoke(
            &env.rules.level_up,
            &Invocation::new("level_up").model("GameCharacter", "new").input(r#"{"exp_gained": 10}"#),
        )
        .await
        .map_err(Error::from)?;
    // Level 1 needs 1000 experience.
    assert_eq!(outcome.output_as::<String>()?, "Need 990 more experience to level up");
    assert_eq!(field(&env, "GameCharacter", "new", "health").await?, int(100));
    Ok(())
}

/// 32 concurrent invocations of one action on one hot counter, split over two engine
/// instances so they contend in the store and not only in one engine's local line.
async fn hot_counter_loses_no_update_across_two_engines(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend, "hot").await?;
    let (engine2, rules2) = env.second_engine()?;
    let rounds = 10;
    let mut tasks = Vec::new();
    for task in 0..32 {
        let (engine, probe) = if task % 2 == 0 {
            (env.engine.clone(), env.rules.probe.clone())
        } else {
            (engine2.clone(), rules2.probe.clone())
        };
        tasks.push(tokio::spawn(async move {
            for _ in 0..rounds {
                let input = probe_ops(&[json!({"op": "increment", "model": 0, "field": "count", "delta": 1})]);
                engine
                    .invoke(&probe, &Invocation::new("bump").model("Counter", "hot").input(input))
                    .await
                    .map_err(Error::from)?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    assert_eq!(field(&env, "Counter", "hot", "count").await?, int(32 * rounds));
    assert!(env.held_locks().await?.is_empty(), "no lock left behind");
    Ok(())
}

/// The reference's action-named locks: two actions run concurrently on one model; each writes
/// only the field it changed, so neither overwrites the other (Rapyer's whole-document save
/// would).
async fn different_actions_on_disjoint_fields_keep_all_updates(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend, "disjoint").await?;
    let rounds = 40;
    let mut tasks = Vec::new();
    for (action, name) in [("views", "count"), ("logins", "other")] {
        for _ in 0..4 {
            let (engine, probe) = (env.engine.clone(), env.rules.probe.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..rounds {
                    let input = probe_ops(&[json!({"op": "increment", "model": 0, "field": name, "delta": 1})]);
                    engine
                        .invoke(&probe, &Invocation::new(action).model("Counter", "shared").input(input))
                        .await
                        .map_err(Error::from)?;
                }
                anyhow::Ok(())
            }));
        }
    }
    for t in tasks {
        t.await??;
    }
    assert_eq!(field(&env, "Counter", "shared", "count").await?, int(4 * rounds));
    assert_eq!(field(&env, "Counter", "shared", "other").await?, int(4 * rounds));
    Ok(())
}

/// Holds the lock of (Counter:a, hold) through the store API, then shows that another key
/// with the same action proceeds at once while the held one waits.
async fn different_keys_do_not_wait_for_each_other(backend: Backend) -> Result<()> {
    let env = TestEnv::with(backend, "keys", |b| b.acquire_timeout(Duration::from_secs(30))).await?;
    let held = crate::hold_lock(&env.engine, "Counter", &["a"], "hold").await?;
    let bump = |key: &str| {
        Invocation::new("hold")
            .model("Counter", key)
            .input(probe_ops(&[json!({"op": "increment", "model": 0, "field": "count", "delta": 1})]))
    };
    // Key b is not blocked by key a's lock (a 30 s acquire timeout would show up as a hang).
    let other = tokio::time::timeout(Duration::from_secs(10), env.engine.invoke(&env.rules.probe, &bump("b"))).await;
    assert!(other.is_ok_and(|r| r.is_ok()), "a different key must not wait");
    // Key a is blocked until the holder releases, then proceeds (woken, not timed out).
    let engine = env.engine.clone();
    let probe = env.rules.probe.clone();
    let blocked = tokio::spawn(async move { engine.invoke(&probe, &bump("a")).await.map_err(Error::from) });
    tokio::task::yield_now().await;
    assert!(!blocked.is_finished());
    env.engine.store().release(&held).await?;
    let outcome = tokio::time::timeout(Duration::from_secs(10), blocked).await???;
    assert!(outcome.timings.wait > Duration::ZERO);
    assert_eq!(field(&env, "Counter", "a", "count").await?, int(1));
    Ok(())
}

async fn same_action_on_same_key_times_out_with_a_typed_error(backend: Backend) -> Result<()> {
    let env = TestEnv::with(backend, "timeout", |b| b.acquire_timeout(Duration::from_millis(300))).await?;
    let _held = crate::hold_lock(&env.engine, "Counter", &["a"], "hold").await?;
    let before = env.fingerprint(&[("Counter", "a")]).await?;
    let input = probe_ops(&[json!({"op": "increment", "model": 0, "field": "count", "delta": 1})]);
    let err = env
        .engine
        .invoke(&env.rules.probe, &Invocation::new("hold").model("Counter", "a").input(input.clone()))
        .await
        .map_err(Error::from)
        .expect_err("must time out");
    match &err {
        Error::LockTimeout { lock, waited } => {
            assert_eq!(lock.model.key, "a");
            assert_eq!(lock.action, "hold");
            assert!(*waited >= Duration::from_millis(300));
        }
        other => bail!("expected LockTimeout, got {other:?}"),
    }
    assert!(err.is_retryable());
    assert_eq!(env.fingerprint(&[("Counter", "a")]).await?, before);
    // Another action on the same key is not blocked.
    env.engine
        .invoke(&env.rules.probe, &Invocation::new("other").model("Counter", "a").input(input))
        .await
        .map_err(Error::from)?;
    Ok(())
}

/// 32 tasks, 40 random transfers each (1,280 in all) among 20 accounts, in both directions:
/// the total is conserved, no balance goes negative, nothing deadlocks (every invocation
/// finishes, none times out), no lock is left.
async fn random_transfers_conserve_the_total_without_deadlock(backend: Backend) -> Result<()> {
    let env = TestEnv::with(backend, "bank", |b| b.acquire_timeout(Duration::from_secs(60))).await?;
    let (engine2, rules2) = env.second_engine()?;
    let accounts: Vec<String> = (0..20).map(|i| format!("acct{i:02}")).collect();
    for a in &accounts {
        env.engine.set_field("Account", a, "balance", int(1_000)).await?;
    }
    let accounts = Arc::new(accounts);
    let mut tasks = Vec::new();
    for task in 0..32u64 {
        let (engine, rule) = if task % 2 == 0 {
            (env.engine.clone(), env.rules.bank_transfer.clone())
        } else {
            (engine2.clone(), rules2.bank_transfer.clone())
        };
        let accounts = Arc::clone(&accounts);
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed + task);
            let mut committed = 0u32;
            for _ in 0..40 {
                let from = rng.random_range(0..accounts.len());
                let to = (from + rng.random_range(1..accounts.len())) % accounts.len();
                let amount = rng.random_range(1..400);
                match engine.invoke(&rule, &transfer(&accounts[from], &accounts[to], amount)).await.map_err(Error::from)
                {
                    Ok(_) => committed += 1,
                    Err(Error::Rejected { .. }) => {}
                    Err(e) => return Err(anyhow::Error::from(e)),
                }
            }
            Ok(committed)
        }));
    }
    let mut committed = 0;
    for t in tokio::time::timeout(Duration::from_secs(120), futures_util::future::join_all(tasks)).await? {
        committed += t??;
    }
    let mut total = 0;
    let mut count = 0;
    for a in accounts.iter() {
        let b = balance(&env, a).await?;
        ensure!(b >= 0, "{a} went negative: {b}");
        total += b;
        let FieldValue::Scalar(Scalar::Int(n)) = field(&env, "Account", a, "transaction_count").await? else {
            bail!("count")
        };
        count += n;
    }
    assert_eq!(total, 20 * 1_000, "money was created or destroyed");
    assert_eq!(count, 2 * i64::from(committed), "each committed transfer counts on both sides");
    assert!(committed > 500, "most transfers should succeed, got {committed}");
    assert!(env.held_locks().await?.is_empty());
    Ok(())
}

async fn fencing_tokens_increase_per_model(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend, "fence").await?;
    let input = probe_ops(&[json!({"op": "increment", "model": 0, "field": "count", "delta": 1})]);
    let mut last = 0;
    for action in ["a", "b", "a", "c"] {
        let out = env
            .engine
            .invoke(&env.rules.probe, &Invocation::new(action).model("Counter", "f").input(input.clone()))
            .await
            .map_err(Error::from)?;
        assert!(out.fencing_tokens[0] > last, "tokens must strictly increase across actions");
        last = out.fencing_tokens[0];
    }
    Ok(())
}

async fn list_and_dict_changes_keep_their_intent(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend, "intent").await?;
    env.engine.list_append("Counter", "c", "items", vec!["a".into(), "b".into(), "c".into()]).await?;
    env.engine
        .dict_set("Counter", "c", "tags", vec![("x".into(), Scalar::Int(1)), ("y".into(), Scalar::Int(2))])
        .await?;
    let run = |ops: Vec<serde_json::Value>| {
        let env = env.clone();
        async move {
            env.engine
                .invoke(&env.rules.probe, &Invocation::new("edit").model("Counter", "c").input(probe_ops(&ops)))
                .await
                .map_err(Error::from)
        }
    };
    let out = run(vec![json!({"op": "append", "model": 0, "field": "items", "item": "d"})]).await?;
    assert_eq!(
        out.changes[0].changes,
        vec![FieldChange::ListAppend { field: "items".into(), items: vec!["d".into()] }]
    );
    let out = run(vec![json!({"op": "list_pop", "model": 0, "field": "items", "index": null})]).await?;
    assert_eq!(out.changes[0].changes, vec![FieldChange::ListTruncate { field: "items".into(), len: 3 }]);
    let out = run(vec![
        json!({"op": "dict_set", "model": 0, "field": "tags", "key": "y", "value": 5}),
        json!({"op": "dict_pop", "model": 0, "field": "tags", "key": "x"}),
    ])
    .await?;
    assert!(
        out.changes[0]
            .changes
            .contains(&FieldChange::DictSet { field: "tags".into(), entries: vec![("y".into(), Scalar::Int(5))] })
    );
    assert!(out.changes[0].changes.contains(&FieldChange::DictRemove { field: "tags".into(), keys: vec!["x".into()] }));
    // Reading without writing writes nothing.
    let out = run(vec![json!({"op": "get", "model": 0, "field": "items"})]).await?;
    assert!(!out.wrote_anything());
    assert_eq!(field(&env, "Counter", "c", "items").await?, FieldValue::List(vec!["a".into(), "b".into(), "c".into()]));
    assert_eq!(field(&env, "Counter", "c", "tags").await?, FieldValue::Dict([("y".to_owned(), Scalar::Int(5))].into()));
    Ok(())
}
