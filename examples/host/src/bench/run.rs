//! Running one row: a workload, one implementation, a concurrency, for a warm-up and a
//! measured window; then the invariant check. On the single server or on the cluster
//! ([`Deployment`]), with the Redis figures summed over the cluster's primaries.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use rand::SeedableRng;
use rand::rngs::StdRng;
use wasmtx::backend::BackendOptions;
use wasmtx::store::redis::KeyLayout;
use wasmtx::{CacheStats, Engine, Mode, Rule};
use wasmtx_examples::rules::RuleArtifacts;

use super::deploy::{self, Conn, Deployment};
use super::impls::{EngineSpec, Impl};
use super::server::ServerStats;
use super::sys;
use super::workloads::{Done, Tally, Workload};

/// The figures of one row.
#[derive(Debug, Clone)]
pub struct Row {
    /// The workload.
    pub workload: Workload,
    /// The implementation.
    pub imp: Impl,
    /// Concurrent callers.
    pub concurrency: usize,
    /// Operations completed (applied or rejected) in the window.
    pub ops: u64,
    /// Of which rejected by the business rule.
    pub rejected: u64,
    /// Failed operations in the window (timeouts, gave-up conflicts, ...).
    pub errors: u64,
    /// The first error seen, if any.
    pub first_error: Option<String>,
    /// The measured window.
    pub window: Duration,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Redis commands per operation (inside scripts included).
    pub commands_per_op: f64,
    /// Round trips per operation, from the server's statistics.
    pub round_trips_per_op: f64,
    /// Round trips per operation counted by the baseline's client (none for the engine).
    pub client_round_trips_per_op: Option<f64>,
    /// CPU time of this process per operation (engine or baseline client, load generator
    /// included), microseconds.
    pub client_cpu_us: f64,
    /// CPU time of the Redis server per operation, microseconds.
    pub redis_cpu_us: f64,
    /// The invariant check: what was checked, or why it failed.
    pub invariant: std::result::Result<String, String>,
    /// Engine rows: the mean `Outcome::timings` (wait, load, run, commit) of the window.
    pub phases: Option<[Duration; 4]>,
    /// Engine rows: what the snapshot cache did in the window, summed over the row's engines.
    pub cache: Option<CacheFigures>,
    /// What it ran on ([`Deployment::label`]).
    pub on: &'static str,
    /// The window's Redis statistics (summed over a cluster's primaries, each one's kept).
    pub stats: ServerStats,
}

impl Row {
    /// Completed operations per second.
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.window.as_secs_f64()
    }

    /// Calls of a Redis command per operation (`publish`: releases announced).
    pub fn calls_per_op(&self, command: &str) -> f64 {
        self.stats.calls(command) as f64 / self.ops.max(1) as f64
    }
}

/// What snapshot caches did in a window ([`Engine::cache_stats`], differences), summed over
/// engines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheFigures {
    /// Invocations that found every model cached.
    pub hits: u64,
    /// Invocations that loaded first.
    pub misses: u64,
    /// Commits on cached state refused because a model had moved (one extra round trip each).
    pub stale_hits: u64,
}

impl CacheFigures {
    /// The counters of `stats`.
    pub fn of(stats: &CacheStats) -> Self {
        Self { hits: stats.hits, misses: stats.misses, stale_hits: stats.stale_hits }
    }

    /// The counters of every engine, summed.
    pub fn of_all<'a>(engines: impl IntoIterator<Item = &'a Engine>) -> Self {
        engines.into_iter().fold(Self::default(), |sum, e| sum.plus(Self::of(&e.cache_stats())))
    }

    /// Both sums.
    pub fn plus(self, other: Self) -> Self {
        Self {
            hits: self.hits + other.hits,
            misses: self.misses + other.misses,
            stale_hits: self.stale_hits + other.stale_hits,
        }
    }

    /// What happened since `start`.
    pub fn since(self, start: Self) -> Self {
        Self {
            hits: self.hits.saturating_sub(start.hits),
            misses: self.misses.saturating_sub(start.misses),
            stale_hits: self.stale_hits.saturating_sub(start.stale_hits),
        }
    }

    /// Cache lookups: hits and misses (an invocation's every attempt that asked the cache).
    pub fn lookups(self) -> u64 {
        self.hits + self.misses
    }

    /// Hits over lookups, percent (`None` without lookups: lock and pipeline rows).
    pub fn hit_rate(self) -> Option<f64> {
        (self.lookups() > 0).then(|| self.hits as f64 * 100.0 / self.lookups() as f64)
    }

    /// Stale hits over lookups, percent.
    pub fn stale_rate(self) -> Option<f64> {
        (self.lookups() > 0).then(|| self.stale_hits as f64 * 100.0 / self.lookups() as f64)
    }
}

/// How long a row runs.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Before the window (connections, scripts loaded, lines formed).
    pub warmup: Duration,
    /// The measured window.
    pub window: Duration,
}

/// What the workers drive.
enum Target {
    /// One engine, or several sharing the callers round robin ([`EngineSpec::engines`]).
    Engine {
        engines: Vec<(Engine, Rule)>,
        mode: Mode,
    },
    Lua(Conn),
    Hand(Conn),
}

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

/// What one worker measured.
#[derive(Debug, Default)]
struct WorkerReport {
    tally: Tally,
    latencies_us: Vec<u32>,
    ops: u64,
    rejected: u64,
    errors: u64,
    client_round_trips: u64,
    first_error: Option<String>,
    /// Engine outcomes' wait, load, run and commit times, summed, and their count.
    timings: (Duration, Duration, Duration, Duration, u32),
}

/// An engine configured as `spec` (its group bound and snapshot cache) on the Redis under
/// test, with its own store connection, the workloads' models, their rules compiled.
///
/// # Errors
/// If the store cannot connect or the rule does not compile.
pub async fn engine_for(
    url: &str,
    prefix: &str,
    workloads: &[Workload],
    spec: EngineSpec,
    rules: &RuleArtifacts,
) -> Result<(Engine, Vec<Rule>)> {
    let options = BackendOptions::with_prefix(prefix).client_tracking(spec.tracking);
    let store = wasmtx::backend::open_store(url, &options).await?;
    let mut config = wasmtx::EngineConfig::default();
    config.snapshot_cache = spec.cache_config();
    let mut builder = Engine::builder().shared_store(store).config(config).max_group(spec.max_group);
    for w in workloads {
        for schema in w.models()? {
            builder = builder.model(schema);
        }
    }
    let engine = builder.build()?;
    let rules = workloads
        .iter()
        .map(|w| Ok(engine.compile_rule(&w.rule().replace('_', "-"), &rules.read(w.rule())?)?))
        .collect::<Result<Vec<_>>>()?;
    Ok((engine, rules))
}

/// Runs one row on a clean database (or prefix) and checks the invariant.
///
/// # Errors
/// If Redis or the engine cannot be set up; a failed invariant is reported in the row.
pub async fn run_row(
    server: Deployment<'_>,
    rules: &RuleArtifacts,
    workload: Workload,
    imp: Impl,
    concurrency: usize,
    timing: Timing,
    seq: usize,
) -> Result<Row> {
    let prefix = format!("wasmtx-bench:{seq}");
    // The baselines' keys are the engine's: placed as the workload's schemas place them.
    let keys = KeyLayout::new(prefix.clone());
    for schema in workload.models()? {
        keys.place(schema.name(), schema.placement());
    }
    let mut nodes = server.nodes().await?;
    deploy::clear(&mut nodes, server.is_private(), &prefix).await?;
    let mut admin = server.connect().await?;
    workload.seed(&mut admin, &keys).await.context("seeding")?;
    let target = match imp {
        Impl::Engine(spec) => {
            let mut engines = Vec::with_capacity(spec.engines);
            for _ in 0..spec.engines.max(1) {
                let (engine, mut rules) = engine_for(&server.url(), &prefix, &[workload], spec, rules).await?;
                engines.push((engine, rules.remove(0)));
            }
            Target::Engine { engines, mode: spec.mode }
        }
        Impl::Lua => Target::Lua(server.connect().await?),
        Impl::Hand => Target::Hand(server.connect().await?),
    };
    let target = Arc::new(target);
    let phase = Arc::new(AtomicU8::new(WARMUP));
    let workers: Vec<_> = (0..concurrency)
        .map(|i| tokio::spawn(worker(workload, Arc::clone(&target), keys.clone(), Arc::clone(&phase), i)))
        .collect();

    tokio::time::sleep(timing.warmup).await;
    let redis_cpu_at_start = deploy::start_window(&mut nodes).await?;
    let cpu_at_start = sys::process_cpu();
    let cache_at_start = target.cache();
    let started = Instant::now();
    phase.store(MEASURE, Ordering::SeqCst);
    tokio::time::sleep(timing.window).await;
    phase.store(STOP, Ordering::SeqCst);
    let window = started.elapsed();
    let cache = target.cache().zip(cache_at_start).map(|(end, start)| end.since(start));
    let cpu = sys::process_cpu().saturating_sub(cpu_at_start);
    let stats: ServerStats = deploy::end_window(&mut nodes, &redis_cpu_at_start).await?;

    let mut tally = Tally::default();
    let mut latencies = Vec::new();
    let (mut ops, mut rejected, mut errors, mut client_rts) = (0, 0, 0, 0);
    let mut first_error = None;
    let mut timings = (Duration::ZERO, Duration::ZERO, Duration::ZERO, Duration::ZERO, 0u32);
    for w in workers {
        let r = w.await?;
        timings.0 += r.timings.0;
        timings.1 += r.timings.1;
        timings.2 += r.timings.2;
        timings.3 += r.timings.3;
        timings.4 += r.timings.4;
        tally.merge(&r.tally);
        latencies.extend(r.latencies_us);
        ops += r.ops;
        rejected += r.rejected;
        errors += r.errors;
        client_rts += r.client_round_trips;
        first_error = first_error.or(r.first_error);
    }
    latencies.sort_unstable();
    let phases = (timings.4 > 0).then(|| {
        let n = timings.4;
        [timings.0 / n, timings.1 / n, timings.2 / n, timings.3 / n]
    });
    let invariant = workload.verify(&mut admin, &keys, &tally, imp, concurrency).await.map_err(|e| format!("{e:#}"));
    drop(target);
    deploy::clear(&mut nodes, server.is_private(), &prefix).await?;

    let all = (ops + errors).max(1) as f64;
    let per_op = |n: u64| n as f64 / ops.max(1) as f64;
    Ok(Row {
        workload,
        imp,
        concurrency,
        ops,
        rejected,
        errors,
        first_error,
        window,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        commands_per_op: per_op(stats.workload_commands()),
        round_trips_per_op: per_op(workload.server_round_trips(imp, &stats)),
        client_round_trips_per_op: (!imp.is_engine() && imp != Impl::Lua).then(|| client_rts as f64 / all),
        client_cpu_us: cpu.as_secs_f64() * 1e6 / ops.max(1) as f64,
        redis_cpu_us: stats.cpu.as_secs_f64() * 1e6 / ops.max(1) as f64,
        invariant,
        phases,
        cache,
        on: server.label(),
        stats,
    })
}

impl Target {
    /// The engines' cache counters so far (`None` for a baseline).
    fn cache(&self) -> Option<CacheFigures> {
        match self {
            Self::Engine { engines, .. } => Some(CacheFigures::of_all(engines.iter().map(|(e, _)| e))),
            Self::Lua(_) | Self::Hand(_) => None,
        }
    }
}

/// The latency at quantile `q` of sorted microsecond samples.
pub fn percentile(sorted_us: &[u32], q: f64) -> Duration {
    if sorted_us.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted_us.len() as f64 * q).ceil() as usize).clamp(1, sorted_us.len());
    Duration::from_micros(u64::from(sorted_us[rank - 1]))
}

async fn worker(
    workload: Workload,
    target: Arc<Target>,
    keys: KeyLayout,
    phase: Arc<AtomicU8>,
    index: usize,
) -> WorkerReport {
    let mut rng = StdRng::seed_from_u64(0x5eed_0000 + index as u64);
    let mut conn = match &*target {
        Target::Lua(c) | Target::Hand(c) => Some(c.clone()),
        Target::Engine { .. } => None,
    };
    let mut report = WorkerReport { latencies_us: Vec::with_capacity(16 * 1024), ..WorkerReport::default() };
    let mut n: u64 = 0;
    while phase.load(Ordering::Relaxed) != STOP {
        let op = workload.next_op(&mut rng, index, n);
        n += 1;
        let started = Instant::now();
        let (result, round_trips) = match (&*target, conn.as_mut()) {
            (Target::Engine { engines, mode }, _) => {
                let (engine, rule) = &engines[index % engines.len()];
                let result = engine.invoke(rule, &workload.invocation(&op, *mode)).await;
                if let Ok(outcome) = &result
                    && phase.load(Ordering::Relaxed) == MEASURE
                {
                    report.timings.0 += outcome.timings.wait;
                    report.timings.1 += outcome.timings.load;
                    report.timings.2 += outcome.timings.run;
                    report.timings.3 += outcome.timings.commit;
                    report.timings.4 += 1;
                }
                (workload.engine_done(result), 0)
            }
            (Target::Lua(_), Some(conn)) => (workload.lua(conn, &keys, &op).await, 1),
            (Target::Hand(_), Some(conn)) => match workload.hand(conn, &keys, &op, &mut rng).await {
                Ok((done, rts)) => (Ok(done), rts),
                Err(e) => (Err(e), 0),
            },
            _ => (Err(anyhow::anyhow!("no connection")), 0),
        };
        let latency = started.elapsed();
        report.tally.add(&op, &result);
        if phase.load(Ordering::Relaxed) == MEASURE {
            report.latencies_us.push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX));
            report.client_round_trips += round_trips;
            match &result {
                Ok(Done::Applied { .. }) => report.ops += 1,
                Ok(Done::Rejected) => {
                    report.ops += 1;
                    report.rejected += 1;
                }
                Err(e) => {
                    report.errors += 1;
                    if report.first_error.is_none() {
                        report.first_error = Some(format!("{e:#}"));
                    }
                }
            }
        }
        if let Err(e) = &result
            && report.first_error.is_none()
        {
            report.first_error = Some(format!("{e:#}"));
        }
    }
    report
}
