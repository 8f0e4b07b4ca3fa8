//! Pipeline and optimistic modes, retry policies and direct field operations, on a real Redis
//! and on the embedded store.

use std::time::Duration;

use crate::{Backend, TestEnv, on_both_stores, probe_ops};
use anyhow::{Result, bail};
use serde_json::json;
use wasmtx::{Error, FieldChange, FieldValue, Invocation, Mode, RetryOn, RetryPolicy, Scalar};

on_both_stores!(
    concurrent_pipelines_keep_every_append_and_the_exact_sum,
    pipeline_changes_keep_their_commutative_intent,
    a_pipeline_batch_that_cannot_fully_apply_writes_nothing,
    concurrent_optimistic_increments_lose_nothing_and_report_retries,
    a_provoked_conflict_is_retried_never_reported_as_success,
    optimistic_gives_up_with_a_typed_conflict,
    optimistic_and_lock_mode_mixed_on_one_model_lose_nothing,
    a_read_only_optimistic_run_commits_nothing,
    an_invocation_of_no_models_runs_alike_in_every_mode,
    retry_policy_retries_lock_timeouts_only_when_asked,
    complete_level_in_pipeline_mode_counts_every_completion,
    direct_field_operations_respect_the_schema_and_bump_versions,
);

fn int(v: i64) -> FieldValue {
    FieldValue::Scalar(Scalar::Int(v))
}

async fn field(env: &TestEnv, model_type: &str, key: &str, name: &str) -> Result<FieldValue> {
    let schema = env.engine.model_type(model_type)?;
    let index = schema.field_index(name).ok_or_else(|| anyhow::anyhow!("no field {name}"))?;
    Ok(env.engine.read_model(model_type, key).await?.values[index].clone())
}

fn bump(mode: Mode, key: &str) -> Invocation {
    // A read-modify-write: set count to the value read plus one. Safe only under a lock or
    // an optimistic version check; the pipeline test uses `increment` instead.
    Invocation::new("bump")
        .model("Counter", key)
        .mode(mode)
        .input(probe_ops(&[json!({"op": "increment", "model": 0, "field": "count", "delta": 1})]))
}

/// 32 concurrent pipelines, 10 rounds each, appending to one list and incrementing one counter
/// of one model: every append and every increment survives.
async fn concurrent_pipelines_keep_every_append_and_the_exact_sum(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend, "pipeline-hot").await?;
    let (engine2, rules2) = env.second_engine()?;
    let mut tasks = Vec::new();
    for task in 0..32i64 {
        let (engine, probe) = if task % 2 == 0 {
            (env.engine.clone(), env.rules.probe.clone())
        } else {
            (engine2.clone(), rules2.probe.clone())
        };
        tasks.push(tokio::spawn(async move {
            for round in 0..10 {
                let ops = [
                    json!({"op": "append", "model": 0, "field": "items", "item": format!("t{task}-r{round}")}),
                    json!({"op": "increment", "model": 0, "field": "count", "delta": task + 1}),
                ];
                let inv = Invocation::new("any").model("Counter", "hot").mode(Mode::Pipeline).input(probe_ops(&ops));
                engine.invoke(&probe, &inv).await.map_err(Error::from)?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    assert_eq!(field(&env, "Counter", "hot", "count").await?, int(10 * (1..=32).sum::<i64>()));
    let FieldValue::List(items) = field(&env, "Counter", "hot", "items").await? else { bail!("items") };
    assert_eq!(items.len(), 320);
    let mut names: Vec<String> = items.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 320, "every append is there exactly once");
    assert!(env.held_locks().await?.is_empty(), "pipeline mode takes no lock");
    Ok(())
}

async fn pipeline_changes_keep_their_commutative_intent(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend, "pipeline-intent").await?;
    env.engine.list_append("Counter", "c", "items", vec!["a".into(), "b".into()]).await?;
    let ops = [
        json!({"op": "increment", "model": 0, "field": "count", "delta": 3}),
        json!({"op": "increment", "model": 0, "field": "count", "delta": 4}),
        json!({"op": "append", "model": 0, "field": "items", "item": "c"}),
        json!({"op": "list_pop", "model": 0, "field": "items", "index": 0}),
        json!({"op": "dict_set", "model": 0, "field": "tags", "key": "x", "value": 1}),
        json!({"op": "set", "model": 0, "field": "label", "value": "hello"}),
    ];
    let out = env
        .engine
        .invoke(
            &env.rules.probe,
            &Invocation::new("any").model("Counter", "c").mode(Mode::Pipeline).input(probe_ops(&ops)),
        )
        .await
        .map_err(Error::from)?;
    let changes = &out.changes[0].changes;
    assert!(changes.contains(&FieldChange::Increment { field: "count".into(), delta: 7 }), "{changes:?}");
    assert!(
        changes.contains(&FieldChange::ListAppend { field: "items".into(), items: vec!["c".into()] }),
        "{changes:?}"
    );
    assert!(changes.contains(&FieldChange::ListPop { field: "items".into(), index: Some(0) }), "{changes:?}");
    assert!(changes.contains(&FieldChange::Set { field: "label".into(), value: "hello".into() }), "{changes:?}");
    assert_eq!(field(&env, "Counter", "c", "items").await?, FieldValue::List(vec!["b".into(), "c".into()]));
    assert_eq!(field(&env, "Counter", "c", "count").await?, int(7));
    Ok(())
}

/// Rapyer's pipeline applies part of a batch and says nothing. Here: the pipeline loads a list
/// with one item, plans to pop it, increment a counter and append elsewhere; another client
/// empties the list before the commit; the pop cannot apply, so nothing of the batch does.
async fn a_pipeline_batch_that_cannot_fully_apply_writes_nothing(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend, "pipeline-atomic").await?;
    env.engine.list_append("Counter", "c", "items", vec!["only".into()]).await?;
    let (gated_engine, rules, gated) = env.gated_engine(|b| b.retry(RetryPolicy::never()))?;
    let mut gate = gated.arm();
    let ops = [
        json!({"op": "increment", "model": 0, "field": "count", "delta": 5}),
        json!({"op": "dict_set", "model": 0, "field": "tags", "key": "seen", "value": 1}),
        json!({"op": "list_pop", "model": 0, "field": "items", "index": null}),
    ];
    let inv = Invocation::new("any").model("Counter", "c").mode(Mode::Pipeline).input(probe_ops(&ops));
    let running = tokio::spawn(async move { gated_engine.invoke(&rules.probe, &inv).await.map_err(Error::from) });
    gate.wait_reached().await?;
    env.engine.set_field("Counter", "c", "items", FieldValue::List(Vec::new())).await?;
    let before = env.fingerprint(&[("Counter", "c")]).await?;
    gate.open();
    match running.await? {
        Err(Error::CannotApply { model, field, .. }) => {
            assert_eq!(model.key, "c");
            assert_eq!(field, "items");
        }
        other => bail!("expected CannotApply, got {other:?}"),
    }
    assert_eq!(env.fingerprint(&[("Counter", "c")]).await?, before, "no part of the batch may apply");
    Ok(())
}

/// 32 concurrent read-modify-write increments in optimistic mode on one counter: none is lost
/// (the version check refuses stale commits and the rule runs again), and the outcomes report
/// the re-runs.
async fn concurrent_optimistic_increments_lose_nothing_and_report_retries(backend: Backend) -> Result<()> {
    let env = TestEnv::with(backend, "optimistic-hot", |b| b.retry(RetryPolicy::default().attempts(1_000))).await?;
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (engine, probe) = (env.engine.clone(), env.rules.probe.clone());
        tasks.push(tokio::spawn(async move {
            let mut attempts = 0;
            for _ in 0..5 {
                attempts += engine.invoke(&probe, &bump(Mode::Optimistic, "hot")).await.map_err(Error::from)?.attempts;
            }
            anyhow::Ok(attempts)
        }));
    }
    let mut attempts = 0;
    for t in tasks {
        attempts += t.await??;
    }
    assert_eq!(field(&env, "Counter", "hot", "count").await?, int(32 * 5));
    assert!(attempts >= 32 * 5);
    if backend == Backend::Redis {
        // Loads and commits are real round trips that interleave: 32 writers on one counter
        // conflict. (The embedded store's calls never yield, so a run there may not.)
        assert!(attempts > 32 * 5, "32 concurrent writers on one counter must have conflicted at least once");
    }
    assert!(env.held_locks().await?.is_empty(), "optimistic mode takes no lock");
    Ok(())
}

/// A write lands between the optimistic load and commit: the commit is refused, the rule runs
/// again on the new state, and the result counts both writes.
async fn a_provoked_conflict_is_retried_never_reported_as_success(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend, "optimistic-conflict").await?;
    env.engine.set_field("Counter", "c", "count", int(10)).await?;
    let (gated_engine, rules, gated) = env.gated_engine(|b| b)?;
    let mut gate = gated.arm();
    let running = tokio::spawn(async move {
        gated_engine.invoke(&rules.probe, &bump(Mode::Optimistic, "c")).await.map_err(Error::from)
    });
    gate.wait_reached().await?;
    env.engine.increment("Counter", "c", "count", 100).await?; // bumps the version
    gate.open();
    let outcome = running.await??;
    assert_eq!(outcome.attempts, 2, "the first commit must be refused and the rule re-run");
    assert_eq!(outcome.output, "[111]", "the re-run saw the other write");
    assert_eq!(field(&env, "Counter", "c", "count").await?, int(111));
    Ok(())
}

async fn optimistic_gives_up_with_a_typed_conflict(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend, "optimistic-give-up").await?;
    let (gated_engine, rules, gated) = env.gated_engine(|b| b.retry(RetryPolicy::default().attempts(3)))?;
    let gates: Vec<_> = (0..3).map(|_| gated.arm()).collect();
    let running = tokio::spawn(async move {
        gated_engine.invoke(&rules.probe, &bump(Mode::Optimistic, "c")).await.map_err(Error::from)
    });
    let mut before = String::new();
    // Each attempt stops before its commit; another write lands; the attempt goes on and is
    // refused.
    for mut gate in gates {
        gate.wait_reached().await?;
        env.engine.increment("Counter", "c", "count", 1).await?;
        before = env.fingerprint(&[("Counter", "c")]).await?;
        gate.open();
    }
    match running.await? {
        Err(e @ Error::Conflict { .. }) => {
            assert!(e.is_retryable());
            let Error::Conflict { model, attempts } = e else { unreachable!() };
            assert_eq!(model.key, "c");
            assert_eq!(attempts, 3);
        }
        other => bail!("expected Conflict after 3 attempts, got {other:?}"),
    }
    assert_eq!(env.fingerprint(&[("Counter", "c")]).await?, before);
    Ok(())
}

async fn optimistic_and_lock_mode_mixed_on_one_model_lose_nothing(backend: Backend) -> Result<()> {
    let env = TestEnv::with(backend, "mixed", |b| b.retry(RetryPolicy::default().attempts(1_000))).await?;
    let mut tasks = Vec::new();
    for task in 0..16 {
        let (engine, probe) = (env.engine.clone(), env.rules.probe.clone());
        let mode = if task % 2 == 0 { Mode::Optimistic } else { Mode::Lock };
        tasks.push(tokio::spawn(async move {
            for _ in 0..8 {
                engine.invoke(&probe, &bump(mode, "m")).await.map_err(Error::from)?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    assert_eq!(field(&env, "Counter", "m", "count").await?, int(16 * 8));
    Ok(())
}

async fn a_read_only_optimistic_run_commits_nothing(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend, "read-only").await?;
    let version = env.engine.set_field("Counter", "c", "count", int(4)).await?;
    let inv = Invocation::new("read")
        .model("Counter", "c")
        .mode(Mode::Optimistic)
        .input(probe_ops(&[json!({"op": "get", "model": 0, "field": "count"})]));
    let out = env.engine.invoke(&env.rules.probe, &inv).await.map_err(Error::from)?;
    assert_eq!(out.output, "[4]");
    assert!(!out.wrote_anything());
    assert_eq!(out.versions, vec![version]);
    Ok(())
}

/// An invocation that names no models runs the rule in every mode, with and without retries,
/// and locks and writes nothing; a rule that reaches for a model it was not given gets the same
/// typed error in each. (The HTTP fuzzer found the optimistic flow indexing the first model of
/// an empty list: the server's worker panicked and the connection dropped without an answer.)
async fn an_invocation_of_no_models_runs_alike_in_every_mode(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend, "no-models").await?;
    let before = env.fingerprint(&[]).await?;
    for mode in Mode::ALL {
        for policy in [RetryPolicy::default(), RetryPolicy::never()] {
            let label = format!("{mode} with {} attempt(s)", policy.max_attempts);
            let quiet = Invocation::new("run").mode(mode).retry(policy).input(probe_ops(&[]));
            let out = env.engine.invoke(&env.rules.probe, &quiet).await.map_err(Error::from)?;
            assert_eq!((out.output.as_str(), out.attempts), ("[]", 1), "{label}");
            assert!(!out.wrote_anything() && out.versions.is_empty(), "{label}: {out:?}");

            let reach = Invocation::new("run")
                .mode(mode)
                .retry(policy)
                .input(probe_ops(&[json!({"op": "get", "model": 0, "field": "count"})]));
            let err = env.engine.invoke(&env.rules.probe, &reach).await.map_err(Error::from).expect_err(&label);
            assert!(matches!(err, Error::Access { .. }), "{label}: {err:?}");
        }
    }
    assert_eq!(env.fingerprint(&[]).await?, before, "nothing was written");
    assert!(env.held_locks().await?.is_empty(), "no lock is left");
    Ok(())
}

async fn retry_policy_retries_lock_timeouts_only_when_asked(backend: Backend) -> Result<()> {
    let env = TestEnv::with(backend, "retry-timeout", |b| b.acquire_timeout(Duration::from_millis(100))).await?;
    let hold = |lease: Duration| -> Result<wasmtx::store::LockRequest> {
        let target = wasmtx::ModelTarget {
            id: wasmtx::ModelId::new("Counter", "busy"),
            schema: env.engine.model_type("Counter")?,
        };
        Ok(wasmtx::store::LockRequest {
            models: vec![target],
            action: "bump".into(),
            owner: "test".into(),
            lease,
            record: None,
        })
    };
    let request = hold(Duration::from_secs(60))?;
    let wasmtx::store::LockAttempt::Acquired { leases, .. } = env.engine.store().try_lock_and_load(&request).await?
    else {
        bail!("lock")
    };

    // Default policy: a timeout is returned as is (typed, retryable), after one attempt's wait.
    let err =
        env.engine.invoke(&env.rules.probe, &bump(Mode::Lock, "busy")).await.map_err(Error::from).expect_err("held");
    assert!(matches!(err, Error::LockTimeout { .. }) && err.is_retryable(), "{err:?}");
    env.engine.store().release(&leases).await?;

    // A policy retrying timeouts: the lock is held for 250 ms by a holder that never releases
    // it, longer than the 100 ms acquire timeout, so the first attempt must time out and a
    // later one succeeds once the lease runs out.
    let request = hold(Duration::from_millis(250))?;
    let wasmtx::store::LockAttempt::Acquired { .. } = env.engine.store().try_lock_and_load(&request).await? else {
        bail!("lock")
    };
    let policy = RetryPolicy::default()
        .attempts(50)
        .backoff_between(Duration::from_millis(1), Duration::from_millis(5))
        .retry_on(RetryOn::ALL);
    let outcome =
        env.engine.invoke(&env.rules.probe, &bump(Mode::Lock, "busy").retry(policy)).await.map_err(Error::from)?;
    assert!(outcome.attempts >= 2, "the first attempt must have timed out");
    assert!(outcome.timings.wait >= Duration::from_millis(100));

    // The same policy never runs a rejected rule twice.
    let reject = Invocation::new("bump")
        .model("Counter", "busy")
        .input(probe_ops(&[json!({"op": "reject", "message": "no"})]))
        .retry(policy);
    assert!(matches!(
        env.engine.invoke(&env.rules.probe, &reject).await.map_err(Error::from),
        Err(Error::Rejected { .. })
    ));
    Ok(())
}

/// The reference's `complete_level` in pipeline mode, 16 concurrent completions on one user:
/// the score and the number of achievements are exact; `stats` entries are last-writer-wins
/// assignments, as documented.
async fn complete_level_in_pipeline_mode_counts_every_completion(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend, "complete-level").await?;
    let mut tasks = Vec::new();
    for task in 0..16 {
        let (engine, rule) = (env.engine.clone(), env.rules.complete_level.clone());
        tasks.push(tokio::spawn(async move {
            let input = json!({ "level_score": 100, "level_name": format!("level-{task}") }).to_string();
            engine
                .invoke(&rule, &Invocation::new("play").model("GameUser", "p").mode(Mode::Pipeline).input(input))
                .await
                .map_err(Error::from)
        }));
    }
    for t in tasks {
        t.await??;
    }
    assert_eq!(field(&env, "GameUser", "p", "total_score").await?, int(1_600));
    let FieldValue::List(achievements) = field(&env, "GameUser", "p", "achievements").await? else { bail!("list") };
    let completed = achievements.iter().filter(|a| a.as_str().is_some_and(|s| s.starts_with("Completed"))).count();
    assert_eq!(completed, 16, "every completion is recorded");
    Ok(())
}

async fn direct_field_operations_respect_the_schema_and_bump_versions(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend, "direct").await?;
    let e = &env.engine;
    let v1 = e.set_field("Counter", "d", "label", FieldValue::Scalar("x".into())).await?;
    let v2 = e.increment("Counter", "d", "count", 5).await?;
    let v3 = e.list_append("Counter", "d", "items", vec!["a".into(), "b".into()]).await?;
    let v4 = e.dict_set("Counter", "d", "tags", vec![("k".into(), Scalar::Int(1))]).await?;
    assert_eq!((v1, v2, v3, v4), (1, 2, 3, 4));
    let snapshot = e.read_model("Counter", "d").await?;
    assert_eq!(snapshot.version, 4);
    let schema = e.model_type("Counter")?;
    assert_eq!(snapshot.to_json(&schema)["items"], json!(["a", "b"]));
    assert_eq!(snapshot.to_json(&schema)["count"], 5);
    // Replacing a dict drops its old entries.
    e.set_field("Counter", "d", "tags", FieldValue::Dict([("z".to_owned(), Scalar::Int(2))].into())).await?;
    assert_eq!(field(&env, "Counter", "d", "tags").await?, FieldValue::Dict([("z".to_owned(), Scalar::Int(2))].into()));
    let v = e.delete_model("Counter", "d").await?;
    let after = e.read_model("Counter", "d").await?;
    assert_eq!(after.version, v, "delete bumps the version");
    assert_eq!(after.values, wasmtx::ModelSnapshot::defaults(&schema).values);
    Ok(())
}
