//! A hostile neighbour: the latency of a trivial lock-mode invocation (one increment) while
//! rules on other models loop to their deadline, against the same invocation with no such
//! neighbour, on one engine and the Redis under test.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use wasmtx::backend::BackendOptions;
use wasmtx::{Engine, Error, Invocation, Mode, ModelSchema};
use wasmtx_examples::rules::RuleArtifacts;

use super::run::percentile;
use super::server::{self, RedisUnderTest};

/// What the stall measure saw.
#[derive(Debug, Clone)]
pub struct Stall {
    /// Rules looping to their deadline beside the measured invocations.
    pub loopers: usize,
    /// Their deadline.
    pub deadline: Duration,
    /// How many looping runs hit their deadline during the window.
    pub looping_runs: u64,
    /// The measured invocations with loopers: count, p50, p99, max.
    pub with: Latency,
    /// The same invocations alone.
    pub alone: Latency,
}

/// Latency figures of one window.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    /// Invocations measured.
    pub count: usize,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// The slowest.
    pub max: Duration,
}

const SCHEMA: &str = "name = \"Counter\"\n[fields]\ncount = { type = \"int\" }\n";

fn probe(ops: &str) -> String {
    format!("{{\"ops\": [{ops}]}}")
}

/// Sequential trivial invocations for `window`.
async fn measure(engine: &Engine, rule: &wasmtx::Rule, window: Duration) -> Result<Latency> {
    let bump = Invocation::new("bump")
        .model("Counter", "calm")
        .input(probe(r#"{"op": "increment", "field": "count", "delta": 1}"#));
    let mut samples = Vec::new();
    let started = Instant::now();
    while started.elapsed() < window {
        let t = Instant::now();
        engine.invoke(rule, &bump).await?;
        samples.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
    }
    samples.sort_unstable();
    Ok(Latency {
        count: samples.len(),
        p50: percentile(&samples, 0.50),
        p99: percentile(&samples, 0.99),
        max: percentile(&samples, 1.0),
    })
}

/// Runs the measure: `window` alone, then `window` beside `loopers` looping rules.
///
/// # Errors
/// If Redis or the engine cannot be set up, or a trivial invocation fails.
pub async fn run(server: &RedisUnderTest, rules: &RuleArtifacts, loopers: usize, window: Duration) -> Result<Stall> {
    let prefix = "wasmtx-bench:stall";
    let mut admin = server.connect().await?;
    server::clear(&mut admin, server.is_private(), prefix).await?;
    let store = wasmtx::backend::open_store(&server.url, &BackendOptions::with_prefix(prefix)).await?;
    let engine = Engine::builder().shared_store(store).model(ModelSchema::from_toml(SCHEMA)?).build()?;
    let rule = engine.compile_rule("probe", &rules.read("probe")?)?;
    let deadline = engine.config().runtime.deadline;

    measure(&engine, &rule, window / 4).await?; // warm-up
    let alone = measure(&engine, &rule, window).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let looping_runs = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..loopers {
        let (engine, rule, stop, runs) = (engine.clone(), rule.clone(), Arc::clone(&stop), Arc::clone(&looping_runs));
        tasks.push(tokio::spawn(async move {
            let spin = Invocation::new("spin")
                .model("Counter", format!("spin{i}"))
                .mode(Mode::Pipeline)
                .input(probe(r#"{"op": "loop"}"#));
            while !stop.load(Ordering::Relaxed) {
                match engine.invoke(&rule, &spin).await.map_err(|failed| failed.error) {
                    Err(Error::DeadlineExceeded { .. }) => runs.fetch_add(1, Ordering::Relaxed),
                    other => anyhow::bail!("a looping rule ended otherwise: {other:?}"),
                };
            }
            Ok(())
        }));
    }
    // Let every looper be in its loop before measuring.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let with = measure(&engine, &rule, window).await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await??;
    }
    let with = with?;
    let runs = looping_runs.load(Ordering::Relaxed);
    ensure!(runs > 0, "no looping rule ran during the window");
    server::clear(&mut admin, server.is_private(), prefix).await?;
    Ok(Stall { loopers, deadline, looping_runs: runs, with, alone })
}
