//! The memory-flatness run: the engine in adaptive mode (the snapshot cache on, the hot counter
//! going to lock mode with group commit, the uniform keys optimistic on cached state) under the
//! hot-counter and bank workloads at once, for a long window, sampling this process's resident
//! memory every second.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use rand::SeedableRng;
use rand::rngs::StdRng;
use wasmtx_examples::rules::RuleArtifacts;

use super::impls::{self, Impl};
use super::run::engine_for;
use super::server::{self, RedisUnderTest};
use super::sys;
use super::workloads::{Done, Tally, Workload};

/// What the soak saw.
#[derive(Debug, Clone)]
pub struct Soak {
    /// How long it ran.
    pub duration: Duration,
    /// Callers per workload.
    pub concurrency: usize,
    /// Operations completed.
    pub ops: u64,
    /// Failed operations.
    pub errors: u64,
    /// `(seconds since start, RSS KiB)`, one per second.
    pub samples: Vec<(u64, u64)>,
    /// The invariants, checked at the end.
    pub invariants: Vec<std::result::Result<String, String>>,
    /// What the snapshot cache did and held at the end.
    pub cache: wasmtx::CacheStats,
    /// What adaptive mode did.
    pub adaptive: wasmtx::AdaptiveStats,
}

/// The mode the soak runs in.
pub const MODE: wasmtx::Mode = wasmtx::Mode::Adaptive;

impl Soak {
    /// RSS after the first tenth of the run (warm: pools, connections, caches filled).
    pub fn warm_rss(&self) -> u64 {
        let skip = (self.samples.len() / 10).max(1);
        self.samples.get(skip).or(self.samples.last()).map_or(0, |s| s.1)
    }

    /// RSS at the end.
    pub fn final_rss(&self) -> u64 {
        self.samples.last().map_or(0, |s| s.1)
    }

    /// The largest RSS seen after warm-up.
    pub fn max_rss(&self) -> u64 {
        let skip = (self.samples.len() / 10).max(1);
        self.samples.iter().skip(skip).map(|s| s.1).max().unwrap_or(0)
    }

    /// Least-squares slope of RSS after warm-up, KiB per minute.
    pub fn slope_kib_per_min(&self) -> f64 {
        let skip = (self.samples.len() / 10).max(1);
        let pts: Vec<(f64, f64)> = self.samples.iter().skip(skip).map(|&(t, r)| (t as f64, r as f64)).collect();
        let n = pts.len() as f64;
        if n < 2.0 {
            return 0.0;
        }
        let (mx, my) = (pts.iter().map(|p| p.0).sum::<f64>() / n, pts.iter().map(|p| p.1).sum::<f64>() / n);
        let cov: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        let var: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
        if var == 0.0 { 0.0 } else { cov / var * 60.0 }
    }
}

/// Runs the soak.
///
/// # Errors
/// If Redis or the engine cannot be set up.
pub async fn run(
    server: &RedisUnderTest,
    rules: &RuleArtifacts,
    duration: Duration,
    concurrency: usize,
) -> Result<Soak> {
    let prefix = "wasmtx-bench:soak";
    let keys = wasmtx::store::redis::KeyLayout::new(prefix);
    let mut admin = server.connect().await.context("connecting")?;
    server::clear(&mut admin, server.is_private(), prefix).await.context("clearing before the run")?;
    // Workloads whose data keeps its size (level-up's inventories grow with every level), so
    // that what grows is the process's, not the models'.
    let workloads = [Workload::HotCounter, Workload::Bank];
    for w in workloads {
        w.seed(&mut admin, &keys).await.with_context(|| format!("seeding {w:?}"))?;
    }
    let (engine, compiled) =
        engine_for(&server.url, prefix, &workloads, impls::ADAPTIVE, rules).await.context("opening the engine")?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (w, rule) in workloads.into_iter().zip(compiled) {
        for i in 0..concurrency {
            let (engine, rule, stop) = (engine.clone(), rule.clone(), Arc::clone(&stop));
            tasks.push(tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(0x50a6 + i as u64);
                let mut tally = Tally::default();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let op = w.next_op(&mut rng, i, n);
                    n += 1;
                    let result: Result<Done> = w.engine_done(engine.invoke(&rule, &w.invocation(&op, MODE)).await);
                    tally.add(&op, &result);
                }
                (w, tally)
            }));
        }
    }
    let started = Instant::now();
    let mut samples = vec![(0, sys::rss_kib())];
    let mut next = Duration::from_secs(1);
    while started.elapsed() < duration {
        tokio::time::sleep(next.saturating_sub(started.elapsed())).await;
        samples.push((next.as_secs(), sys::rss_kib()));
        next += Duration::from_secs(1);
    }
    stop.store(true, Ordering::SeqCst);
    let mut tallies = std::collections::BTreeMap::<Workload, Tally>::new();
    for t in tasks {
        let (w, tally) = t.await?;
        tallies.entry(w).or_default().merge(&tally);
    }
    let mut invariants = Vec::new();
    let (mut ops, mut errors) = (0, 0);
    for (w, tally) in &tallies {
        ops += tally.applied + tally.rejected;
        errors += tally.errors;
        invariants
            .push(w.verify(&mut admin, &keys, tally, Impl::ADAPTIVE, concurrency).await.map_err(|e| format!("{e:#}")));
    }
    let (cache, adaptive) = (engine.cache_stats(), engine.adaptive_stats());
    server::clear(&mut admin, server.is_private(), prefix).await.context("clearing after the run")?;
    Ok(Soak { duration: started.elapsed(), concurrency, ops, errors, samples, invariants, cache, adaptive })
}
