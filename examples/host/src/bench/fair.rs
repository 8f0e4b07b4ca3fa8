//! Fairness between engines (issue 18): two engine instances on the same Redis, each with its
//! own store connection, Pub/Sub listener and local lock lines (as two host processes would
//! have), their callers all bumping one hot counter. Per engine: the operations it completed
//! (its share of the turns), its latencies and its longest lock wait.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use wasmtx::store::redis::KeyLayout;
use wasmtx::{Engine, ModelId, Rule};
use wasmtx_examples::rules::RuleArtifacts;

use super::impls::Impl;
use super::run::{Timing, engine_for, percentile};
use super::server::{self, RedisUnderTest};
use super::workloads::{Op, Workload};

/// Engines sharing the hot key.
pub const ENGINES: usize = 2;

/// What one engine got.
#[derive(Debug, Clone, Copy)]
pub struct EngineShare {
    /// Operations completed in the window.
    pub ops: u64,
    /// Failed operations in the window.
    pub errors: u64,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// The slowest operation.
    pub max: Duration,
    /// The longest lock wait an outcome reported (`Outcome::timings.wait`).
    pub max_wait: Duration,
}

/// One run of the fairness measure.
#[derive(Debug, Clone)]
pub struct Fairness {
    /// The engine implementation (lock mode, with or without grouping).
    pub imp: Impl,
    /// Callers per engine.
    pub callers: usize,
    /// The measured window.
    pub window: Duration,
    /// One entry per engine.
    pub engines: Vec<EngineShare>,
    /// The invariant check (count = successes over both engines).
    pub invariant: std::result::Result<String, String>,
}

impl Fairness {
    /// Operations of every engine.
    pub fn total(&self) -> u64 {
        self.engines.iter().map(|e| e.ops).sum()
    }

    /// An engine's share of the operations, in percent.
    pub fn share(&self, engine: usize) -> f64 {
        100.0 * self.engines[engine].ops as f64 / self.total().max(1) as f64
    }

    /// The largest share over the smallest (1.0 is perfectly fair).
    pub fn ratio(&self) -> f64 {
        let most = self.engines.iter().map(|e| e.ops).max().unwrap_or(0) as f64;
        let least = self.engines.iter().map(|e| e.ops).min().unwrap_or(0) as f64;
        if least == 0.0 { f64::INFINITY } else { most / least }
    }
}

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

#[derive(Debug, Default)]
struct Report {
    latencies_us: Vec<u32>,
    ops: u64,
    errors: u64,
    /// Successes over the whole run (warm-up included), for the invariant.
    applied: u64,
    max_wait: Duration,
}

async fn caller(engine: Engine, rule: Rule, phase: Arc<AtomicU8>) -> Report {
    let invocation = Workload::HotCounter.invocation(&Op::Bump, wasmtx::Mode::Lock);
    let mut report = Report::default();
    while phase.load(Ordering::Relaxed) != STOP {
        let started = Instant::now();
        let result = engine.invoke(&rule, &invocation).await;
        let latency = started.elapsed();
        if result.is_ok() {
            report.applied += 1;
        }
        if phase.load(Ordering::Relaxed) == MEASURE {
            match result {
                Ok(outcome) => {
                    report.ops += 1;
                    report.max_wait = report.max_wait.max(outcome.timings.wait);
                    report.latencies_us.push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX));
                }
                Err(_) => report.errors += 1,
            }
        }
    }
    report
}

/// Runs the measure: [`ENGINES`] engines of `imp` (lock mode), `callers` callers each, on one
/// hot counter, for a warm-up and a window.
///
/// # Errors
/// If Redis or the engines cannot be set up.
pub async fn run(
    server: &RedisUnderTest,
    rules: &RuleArtifacts,
    imp: Impl,
    callers: usize,
    timing: Timing,
    seq: usize,
) -> Result<Fairness> {
    let Impl::Engine(spec) = imp else { anyhow::bail!("the fairness measure runs the engine") };
    let prefix = format!("wasmtx-bench:fair{seq}");
    let keys = KeyLayout::new(prefix.clone());
    let mut admin = server.connect().await?;
    server::clear(&mut admin, server.is_private(), &prefix).await?;
    let mut engines = Vec::with_capacity(ENGINES);
    for _ in 0..ENGINES {
        // Each engine opens its own store: its own connection and release listener.
        let (engine, mut rules) = engine_for(&server.url, &prefix, &[Workload::HotCounter], spec, rules).await?;
        engines.push((engine, rules.remove(0)));
    }
    let phase = Arc::new(AtomicU8::new(WARMUP));
    // Interleave the callers' starts so that neither engine gets a head start.
    let mut tasks: Vec<Vec<_>> = (0..ENGINES).map(|_| Vec::with_capacity(callers)).collect();
    for _ in 0..callers {
        for (e, (engine, rule)) in engines.iter().enumerate() {
            tasks[e].push(tokio::spawn(caller(engine.clone(), rule.clone(), Arc::clone(&phase))));
        }
    }
    tokio::time::sleep(timing.warmup).await;
    let started = Instant::now();
    phase.store(MEASURE, Ordering::SeqCst);
    tokio::time::sleep(timing.window).await;
    phase.store(STOP, Ordering::SeqCst);
    let window = started.elapsed();

    let mut shares = Vec::with_capacity(ENGINES);
    let mut applied = 0;
    for these in tasks {
        let (mut latencies, mut ops, mut errors, mut max_wait) = (Vec::new(), 0, 0, Duration::ZERO);
        for t in these {
            let r = t.await?;
            latencies.extend(r.latencies_us);
            ops += r.ops;
            errors += r.errors;
            applied += r.applied;
            max_wait = max_wait.max(r.max_wait);
        }
        latencies.sort_unstable();
        shares.push(EngineShare {
            ops,
            errors,
            p50: percentile(&latencies, 0.50),
            p99: percentile(&latencies, 0.99),
            max: percentile(&latencies, 1.0),
            max_wait,
        });
    }
    drop(engines);
    let count: Option<i64> = redis::cmd("HGET")
        .arg(keys.data(&ModelId::new("HitCounter", "hot")))
        .arg("count")
        .query_async(&mut admin)
        .await?;
    let count = count.unwrap_or(0);
    let invariant = (|| {
        let applied = i64::try_from(applied)?;
        ensure!(count == applied, "count {count} but {applied} increments succeeded");
        Ok(format!("count = successes = {count}"))
    })()
    .map_err(|e: anyhow::Error| format!("{e:#}"));
    server::clear(&mut admin, server.is_private(), &prefix).await?;
    Ok(Fairness { imp, callers, window, engines: shares, invariant })
}
