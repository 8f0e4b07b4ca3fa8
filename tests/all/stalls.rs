//! A slow or hostile rule stalls nothing else: rules yield to the host's executor while they
//! run, the wait for a sandbox slot never blocks a host thread, and a lock-mode invocation's
//! slot wait counts against its lease. Every assertion is about order or counts, not time: a
//! stall shows as a timer that never fired, or as work that waited for the stalling rule.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Result, bail, ensure};
use serde_json::json;
use wasmtx::{EngineConfig, Error, Invocation, Mode};

use crate::{Backend, TestEnv, probe_ops};

fn looping(key: &str, action: &str, mode: Mode) -> Invocation {
    Invocation::new(action).model("Counter", key).mode(mode).input(probe_ops(&[json!({"op": "loop"})]))
}

fn bump(key: &str, action: &str) -> Invocation {
    Invocation::new(action)
        .model("Counter", key)
        .input(probe_ops(&[json!({"op": "increment", "field": "count", "delta": 1})]))
}

/// On a current-thread runtime (one host thread for everything), a rule that loops to its
/// 300 ms deadline lets a 1 ms timer keep firing the whole time. A rule that held the thread
/// would let it fire not once.
async fn a_looping_rule_leaves_the_only_host_thread_to_timers(backend: Backend) -> Result<()> {
    let env = TestEnv::with(backend, "stall-timer", |b| b.deadline(Duration::from_millis(300))).await?;
    let ticks = Arc::new(AtomicU64::new(0));
    let timer = {
        let ticks = Arc::clone(&ticks);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(1)).await;
                ticks.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    tokio::task::yield_now().await;
    let before = ticks.load(Ordering::Relaxed);
    let result = env.engine.invoke(&env.rules.probe, &looping("spin", "spin", Mode::Lock)).await.map_err(Error::from);
    let during = ticks.load(Ordering::Relaxed) - before;
    timer.abort();
    ensure!(matches!(result, Err(Error::DeadlineExceeded { .. })), "the loop hits its deadline: {result:?}");
    ensure!(during >= 20, "the timer fired {during} times while the rule looped for 300 ms: the rule held the thread");
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn a_looping_rule_leaves_the_only_host_thread_to_timers_on_memory() -> Result<()> {
    a_looping_rule_leaves_the_only_host_thread_to_timers(Backend::Memory).await
}

#[tokio::test(flavor = "current_thread")]
async fn a_looping_rule_leaves_the_only_host_thread_to_timers_on_redis() -> Result<()> {
    a_looping_rule_leaves_the_only_host_thread_to_timers(Backend::Redis).await
}

/// With as many looping rules (deadline 3 s) as the runtime has worker threads, a trivial
/// invocation on another model commits while every one of them still loops.
async fn a_trivial_invocation_does_not_wait_for_looping_rules(backend: Backend) -> Result<()> {
    let env =
        TestEnv::with(backend, "stall-peers", |b| b.deadline(Duration::from_secs(3)).lease(Duration::from_secs(10)))
            .await?;
    let loopers: Vec<_> = (0..4)
        .map(|i| {
            let (engine, probe) = (env.engine.clone(), env.rules.probe.clone());
            tokio::spawn(async move {
                engine.invoke(&probe, &looping(&format!("spin{i}"), "spin", Mode::Pipeline)).await.map_err(Error::from)
            })
        })
        .collect();
    // Let every looper start running before the trivial invocation comes in.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let out = env.engine.invoke(&env.rules.probe, &bump("calm", "bump")).await.map_err(Error::from)?;
    ensure!(out.attempts == 1, "the trivial invocation ran once");
    let finished = loopers.iter().filter(|l| l.is_finished()).count();
    ensure!(finished == 0, "{finished} looping rules finished before a trivial invocation could run");
    for looper in loopers {
        let result = looper.await?;
        ensure!(matches!(result, Err(Error::DeadlineExceeded { .. })), "{result:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_trivial_invocation_does_not_wait_for_looping_rules_on_memory() -> Result<()> {
    a_trivial_invocation_does_not_wait_for_looping_rules(Backend::Memory).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_trivial_invocation_does_not_wait_for_looping_rules_on_redis() -> Result<()> {
    a_trivial_invocation_does_not_wait_for_looping_rules(Backend::Redis).await
}

/// One sandbox slot, busy with a rule looping to its 400 ms deadline; a lock-mode invocation
/// that gets its lock then waits for the slot at most what is left of its lease budget (half of
/// a 1 s lease, minus the deadline: 100 ms): it fails with a retryable `Overloaded` while the
/// loop still runs, writes nothing, and releases its lock, which the next invocation of the
/// action takes once the slot is free.
async fn a_slot_wait_under_locks_counts_against_the_lease(backend: Backend) -> Result<()> {
    let env = TestEnv::with(backend, "stall-slot", |b| {
        let mut config = EngineConfig::default();
        config.runtime.max_instances = 1;
        config.runtime.deadline = Duration::from_millis(400);
        config.lease = Duration::from_secs(1);
        config.retry = wasmtx::RetryPolicy::never();
        b.config(config)
    })
    .await?;
    let hog = {
        let (engine, probe) = (env.engine.clone(), env.rules.probe.clone());
        tokio::spawn(
            async move { engine.invoke(&probe, &looping("hog", "hog", Mode::Pipeline)).await.map_err(Error::from) },
        )
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let before = env.fingerprint(&[("Counter", "locked")]).await?;
    match env.engine.invoke(&env.rules.probe, &bump("locked", "bump")).await.map_err(Error::from) {
        Err(e @ Error::Overloaded { .. }) => ensure!(e.is_retryable(), "overloaded is retryable"),
        other => bail!("expected Overloaded while the only slot was busy, got {other:?}"),
    }
    ensure!(!hog.is_finished(), "the refusal came while the slot was still busy");
    ensure!(env.fingerprint(&[("Counter", "locked")]).await? == before, "the refused invocation wrote something");
    ensure!(matches!(hog.await?, Err(Error::DeadlineExceeded { .. })), "the hog hit its deadline");
    ensure!(env.held_locks().await?.is_empty(), "the lock was released");
    env.engine.invoke(&env.rules.probe, &bump("locked", "bump")).await.map_err(Error::from)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slot_wait_under_locks_counts_against_the_lease_on_memory() -> Result<()> {
    a_slot_wait_under_locks_counts_against_the_lease(Backend::Memory).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slot_wait_under_locks_counts_against_the_lease_on_redis() -> Result<()> {
    a_slot_wait_under_locks_counts_against_the_lease(Backend::Redis).await
}

/// A caller that gives up on a looping rule (its future dropped, here by a 50 ms timeout) stops
/// it: the rule, moved to the rule threads, is dropped at its next tick and frees the engine's
/// only sandbox slot at once, so the next invocation gets the slot within its 300 ms bound
/// instead of waiting out the loop's 3 s deadline.
async fn a_cancelled_caller_stops_its_rule_and_frees_the_slot(backend: Backend) -> Result<()> {
    let env = TestEnv::with(backend, "stall-cancel", |b| {
        let mut config = EngineConfig::default();
        config.runtime.max_instances = 1;
        config.runtime.deadline = Duration::from_secs(3);
        config.lease = Duration::from_secs(10);
        config.acquire_timeout = Duration::from_millis(300);
        config.retry = wasmtx::RetryPolicy::never();
        b.config(config)
    })
    .await?;
    let spin = looping("spin", "spin", Mode::Pipeline);
    let cancelled = tokio::time::timeout(Duration::from_millis(50), env.engine.invoke(&env.rules.probe, &spin)).await;
    ensure!(cancelled.is_err(), "the loop was still running when its caller gave up");
    let calm = Invocation::new("bump")
        .model("Counter", "calm")
        .mode(Mode::Pipeline)
        .input(probe_ops(&[json!({"op": "increment", "field": "count", "delta": 1})]));
    match env.engine.invoke(&env.rules.probe, &calm).await.map_err(Error::from) {
        Ok(out) => ensure!(out.attempts == 1, "ran once"),
        Err(e) => bail!("the cancelled rule still held the only slot: {e}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_caller_stops_its_rule_and_frees_the_slot_on_memory() -> Result<()> {
    a_cancelled_caller_stops_its_rule_and_frees_the_slot(Backend::Memory).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_caller_stops_its_rule_and_frees_the_slot_on_redis() -> Result<()> {
    a_cancelled_caller_stops_its_rule_and_frees_the_slot(Backend::Redis).await
}
