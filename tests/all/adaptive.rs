//! Adaptive mode: optimistic on the snapshot cache, lock mode (with group commit) for a model
//! that keeps conflicting, optimistic again once its mark runs out; uniform keys beside the hot
//! one stay optimistic. Every acknowledged increment is checked on its own: its marker once in
//! the list, the value it saw unique and in sequence (each run saw every earlier commit).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::json;
use wasmtx::{AdaptiveConfig, AdaptiveStats, Engine, Error, FieldValue, Invocation, Mode, Rule, Scalar};

use crate::process::poll;
use crate::{Backend, TestEnv, hold_lock, on_both_stores, probe_ops};

on_both_stores!(a_hot_key_goes_to_lock_mode_and_back_with_every_effect_once,);

/// How long a hot model stays in lock mode in these tests.
const LOCK_FOR: Duration = Duration::from_secs(2);

/// An adaptive invocation that increments `Counter:key`'s count and appends `marker`.
fn bump(key: &str, marker: &str) -> Invocation {
    let ops = [
        json!({"op": "increment", "model": 0, "field": "count", "delta": 1}),
        json!({"op": "append", "model": 0, "field": "items", "item": marker}),
    ];
    Invocation::new("bump").model("Counter", key).mode(Mode::Adaptive).input(probe_ops(&ops))
}

/// One acknowledged increment: its key, marker and the count it saw.
#[derive(Debug)]
struct Acked {
    key: String,
    marker: String,
    seen: i64,
}

async fn run_bump(engine: &Engine, rule: &Rule, key: &str, marker: &str) -> Result<Acked> {
    let outcome =
        engine.invoke(rule, &bump(key, marker)).await.map_err(Error::from).with_context(|| marker.to_owned())?;
    let results: Vec<serde_json::Value> = outcome.output_as()?;
    let seen = results.first().and_then(serde_json::Value::as_i64).context("the increment's result")?;
    Ok(Acked { key: key.to_owned(), marker: marker.to_owned(), seen })
}

fn stats_line(stats: &AdaptiveStats) -> String {
    format!(
        "optimistic {} / lock {} attempts, {} conflicts, marked hot {} times, {} hot now",
        stats.optimistic_attempts, stats.lock_attempts, stats.conflicts, stats.marked_hot, stats.hot_now
    )
}

/// Phase 1: a lock of the action is held from outside, so the first optimistic attempts on
/// `Counter:hot` are refused and go to the lock queue, and the model is marked hot (later
/// invocations go to the queue at once); while the mark holds, an invocation on it goes to the
/// lock queue without trying. Phase 2: 24 seeded callers, three quarters of their increments
/// on the hot model and the rest on 40 uniform ones. Phase 3: with no contention left the mark
/// runs out, and the next invocation runs optimistic. At the end each model's count is its
/// acknowledged increments, its list holds each one's marker once, the counts they saw are
/// 1..=n, and no lock is left.
async fn a_hot_key_goes_to_lock_mode_and_back_with_every_effect_once(backend: Backend) -> Result<()> {
    let config = AdaptiveConfig::new(2, Duration::from_millis(250), LOCK_FOR);
    let env =
        TestEnv::with(backend, "adaptive-hot", |b| b.adaptive(config).acquire_timeout(Duration::from_secs(30))).await?;
    let (engine, rule) = (env.engine.clone(), env.rules.probe.clone());
    let seed = crate::bank_run::seed();

    let held = hold_lock(&engine, "Counter", &["hot"], "bump").await?;
    let mut queued = Vec::new();
    for i in 0..8 {
        let (engine, rule) = (engine.clone(), rule.clone());
        queued.push(tokio::spawn(async move { run_bump(&engine, &rule, "hot", &format!("q{i}")).await }));
    }
    // Each runs optimistic and is refused (the held lock), or finds the model marked by the
    // refusals before it; either way it ends up in the lock queue.
    poll(Duration::from_secs(20), "every queued invocation in lock mode", || async {
        Ok((engine.adaptive_stats().lock_attempts >= 8).then_some(()))
    })
    .await
    .with_context(|| stats_line(&engine.adaptive_stats()))?;
    let marked = engine.adaptive_stats();
    ensure!(
        marked.marked_hot >= 1 && marked.hot_now == 1,
        "conflicts on a held lock mark the model: {}",
        stats_line(&marked)
    );
    engine.store().release(&held).await?;
    let mut acked = Vec::new();
    for task in queued {
        acked.push(task.await??);
    }
    // While the mark holds, an invocation on the model goes to the lock queue without trying.
    let before = engine.adaptive_stats();
    acked.push(run_bump(&engine, &rule, "hot", "marked").await?);
    let after = engine.adaptive_stats();
    ensure!(
        before.hot_now == 1
            && after.lock_attempts == before.lock_attempts + 1
            && after.optimistic_attempts == before.optimistic_attempts,
        "a marked model runs in lock mode: {} then {}",
        stats_line(&before),
        stats_line(&after)
    );

    let mut callers = Vec::new();
    for caller in 0..24u64 {
        let (engine, rule) = (engine.clone(), rule.clone());
        callers.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed ^ (caller + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut acked = Vec::new();
            for n in 0..20 {
                let key =
                    if rng.random_range(0..4) == 0 { format!("u{}", rng.random_range(0..40)) } else { "hot".into() };
                acked.push(run_bump(&engine, &rule, &key, &format!("c{caller}-{n}")).await?);
                if rng.random_range(0..8) == 0 {
                    // Some callers pause, so the hot model sees less contention now and then.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            anyhow::Ok(acked)
        }));
    }
    for task in callers {
        acked.extend(task.await?.with_context(|| format!("seed {seed}"))?);
    }
    let busy = engine.adaptive_stats();
    ensure!(busy.lock_attempts >= 8 && busy.optimistic_attempts > 0, "seed {seed}: {}", stats_line(&busy));

    poll(Duration::from_secs(10), "the hot mark to run out", || async {
        Ok((engine.adaptive_stats().hot_now == 0).then_some(()))
    })
    .await?;
    let before = engine.adaptive_stats();
    acked.push(run_bump(&engine, &rule, "hot", "after").await?);
    let after = engine.adaptive_stats();
    ensure!(
        after.optimistic_attempts == before.optimistic_attempts + 1 && after.lock_attempts == before.lock_attempts,
        "once the mark ran out the hot model runs optimistic: {} then {}",
        stats_line(&before),
        stats_line(&after)
    );

    let mut by_key: BTreeMap<String, Vec<Acked>> = BTreeMap::new();
    for a in acked {
        by_key.entry(a.key.clone()).or_default().push(a);
    }
    for (key, mut ran) in by_key {
        let state = engine.read_model("Counter", &key).await?;
        let schema = engine.model_type("Counter")?;
        let field = |name: &str| schema.field_index(name).map(|i| state.values[i].clone());
        ensure!(
            field("count") == Some(FieldValue::Scalar(Scalar::Int(i64::try_from(ran.len())?))),
            "seed {seed}: {key}: count {:?} for {} acknowledged increments",
            field("count"),
            ran.len()
        );
        let Some(FieldValue::List(items)) = field("items") else { anyhow::bail!("{key}: no list") };
        let stored: Vec<String> = items
            .iter()
            .map(|item| match item {
                Scalar::Str(marker) => marker.clone(),
                other => format!("{other:?}"),
            })
            .collect();
        let unique: BTreeSet<String> = stored.iter().cloned().collect();
        let expected: BTreeSet<String> = ran.iter().map(|a| a.marker.clone()).collect();
        ensure!(
            unique.len() == stored.len() && unique == expected,
            "seed {seed}: {key}: each acknowledged marker exactly once, nothing else: {stored:?}"
        );
        ran.sort_by_key(|a| a.seen);
        let seen: Vec<i64> = ran.iter().map(|a| a.seen).collect();
        ensure!(
            seen == (1..=i64::try_from(seen.len())?).collect::<Vec<_>>(),
            "seed {seed}: {key}: each increment saw every earlier one: {seen:?}"
        );
    }
    println!("seed {seed}: {}", stats_line(&engine.adaptive_stats()));
    ensure!(env.held_locks().await?.is_empty(), "no lock is left");
    Ok(())
}
