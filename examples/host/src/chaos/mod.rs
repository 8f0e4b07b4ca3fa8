//! The chaos suite behind `cargo run --release --bin chaos`: seeded workloads (bank transfers
//! and list appends, in every mode, under several action names, on two engine instances) run
//! against a private Redis while faults are injected (connections killed, replies delayed past
//! the response timeout, the server killed and restarted, callers that give up after 0-5 ms);
//! then every invariant is checked per effect: each acknowledged effect applied exactly once,
//! nothing a failed call wrote, no partial write, lists serializable and in real-time order,
//! money conserved and never negative, no lock without a deadline, no lock left once the leases
//! are over, and the next invocation on every key succeeds.
//!
//! A call whose fate its caller could not learn (cancelled, or `outcome_unknown`) is invoked
//! again with its idempotency key once the faults stop: that call either replays the first
//! commit or runs it now, so at the end every operation's fate is known and checked.

pub mod bank;
pub mod exec;
pub mod faults;
pub mod history;
pub mod lists;
pub mod locks;
pub mod report;
pub mod serve;
pub mod server;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{Value, json};
use tokio::sync::watch;
use wasmtx::backend::BackendOptions;
use wasmtx::{Engine, Mode};

use bank::{Bank, Transfer};
use exec::{Call, EngineExecutor, Executor};
use faults::FaultPlan;
use history::{Clock, Fate, Record};
use lists::{ListTxn, Lists};
use report::{ChaosReport, Checks};
use serve::{Fleet, HttpExecutor};
use server::ChaosRedis;

/// The action names operations run under, at random: several actions on one model, whose
/// locks do not exclude one another, so only the commit's checks keep them apart.
pub const ACTIONS: [&str; 3] = ["transfer", "audit", "settle"];

/// The key prefix of the run's data.
const PREFIX: &str = "chaos";

/// How many times a resolving call is sent again while its first run is still in progress.
const RESOLVE_ATTEMPTS: u32 = 50;

/// Runs a direct store call until it succeeds or fails for good: the first call on a connection
/// the faults killed fails (retryably) before the connection is made again.
///
/// # Errors
/// A lasting or non-retryable error.
pub async fn retrying<T, F: Future<Output = wasmtx::Result<T>>>(mut call: impl FnMut() -> F) -> wasmtx::Result<T> {
    let mut tries = 0;
    loop {
        match call().await {
            Err(e) if e.is_retryable() && tries < 50 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// What a rule does after its writes, so that it fails and nothing may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// Nothing: the rule succeeds (unless the bank refuses the transfer).
    None,
    /// A business refusal.
    Reject,
    /// A trap.
    Trap,
    /// A loop until the engine's deadline.
    Loop,
}

impl Tail {
    /// A random tail: mostly none, a few percent each of the failures.
    pub fn random(rng: &mut StdRng) -> Self {
        match rng.random_range(0..100) {
            0..4 => Self::Reject,
            4..7 => Self::Trap,
            7 => Self::Loop,
            _ => Self::None,
        }
    }

    /// The probe op, if any.
    pub fn op(self) -> Option<Value> {
        match self {
            Self::None => None,
            Self::Reject => Some(json!({"op": "reject", "message": "chaos: refused after writing"})),
            Self::Trap => Some(json!({"op": "trap"})),
            Self::Loop => Some(json!({"op": "loop"})),
        }
    }
}

/// A chaos run's settings.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    /// How long the workloads run.
    pub duration: Duration,
    /// The seed of every random choice (operations, faults, cancellations).
    pub seed: u64,
    /// Concurrent callers.
    pub callers: usize,
    /// Bank accounts (besides the reserve); few, so that operations contend.
    pub accounts: usize,
    /// Lists of the list-append workload.
    pub lists: usize,
    /// The share of calls (0-1) dropped by their caller after 0-5 ms.
    pub cancel_share: f64,
    /// The faults.
    pub faults: FaultPlan,
    /// The engines' lock lease (the servers keep their default, the same).
    pub lease: Duration,
    /// The `wasmtx` binary: when set, half the time runs over HTTP against three `wasmtx serve`
    /// processes, one of which is killed and restarted every few seconds.
    pub serve: Option<PathBuf>,
}

impl Default for ChaosConfig {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(60),
            seed: 1,
            callers: 16,
            accounts: 8,
            lists: 6,
            cancel_share: 0.05,
            faults: FaultPlan::default(),
            lease: wasmtx::EngineConfig::default().lease,
            serve: None,
        }
    }
}

/// What the callers recorded.
#[derive(Debug, Default)]
struct Histories {
    bank: Vec<Record<Transfer>>,
    calls_bank: Vec<Call>,
    lists: Vec<Record<ListTxn>>,
    calls_lists: Vec<Call>,
    cancelled: u64,
    /// The clock the records' ticks come from.
    clock: Arc<Clock>,
}

/// Runs the workloads with faults for `config.duration` (half in process, half over HTTP when
/// [`ChaosConfig::serve`] is set), then checks every invariant.
///
/// # Errors
/// If Redis or a server cannot be started, the rules cannot be built, or the store cannot be
/// read for the checks. Violations are not errors: they are in the report.
pub async fn run(config: &ChaosConfig) -> Result<ChaosReport> {
    let mut server = ChaosRedis::start().await?;
    let probe = std::fs::read(&wasmtx_examples::rules::build_rules()?.probe).context("reading the probe rule")?;
    let mut report = ChaosReport { seed: config.seed, ..ChaosReport::default() };
    let phase_time = if config.serve.is_some() { config.duration / 2 } else { config.duration };

    let mut engines = Vec::new();
    for _ in 0..2 {
        let engine = engine(config, &server.url(), PREFIX).await?;
        let rule = engine.compile_rule("probe", &probe)?;
        engines.push((engine, rule));
    }
    let executor = Arc::new(EngineExecutor::new(engines));
    let checker = executor.engine().clone();
    let phase = Phase { name: "", prefix: PREFIX, time: phase_time, fleet: None };
    server = phase.run(config, executor, &checker, server, &mut report).await?;

    if let Some(bin) = &config.serve {
        let prefix = "chaos-http";
        let fleet = Fleet::start(bin, &server.url(), prefix, 3)?;
        let schemas = [(bank::ACCOUNT, bank::SCHEMA), (lists::LIST, lists::SCHEMA)];
        fleet.install(&schemas, &probe, (bank::ACCOUNT, bank::RESERVE)).await?;
        let checker = engine(config, &server.url(), prefix).await?;
        let phase = Phase { name: " (http)", prefix, time: phase_time, fleet: Some(fleet.clone()) };
        server = phase.run(config, Arc::new(HttpExecutor::new(fleet)), &checker, server, &mut report).await?;
    }
    drop(server);
    Ok(report)
}

/// An engine on the chaos Redis under `prefix`, with the chaos model types.
async fn engine(config: &ChaosConfig, url: &str, prefix: &str) -> Result<Engine> {
    let options = BackendOptions::with_prefix(prefix).response_timeout(config.faults.response_timeout);
    let store = wasmtx::backend::open_store(url, &options).await?;
    Ok(Engine::builder()
        .shared_store(store)
        .model(bank::schema()?)
        .model(lists::schema()?)
        .lease(config.lease)
        .build()?)
}

/// One part of a run: the workloads through one executor, under one key prefix.
struct Phase {
    /// Appended to the workloads' names in the report.
    name: &'static str,
    prefix: &'static str,
    time: Duration,
    /// The servers, when the calls go over HTTP: one at a time is killed and restarted.
    fleet: Option<Arc<Fleet>>,
}

impl Phase {
    /// Seeds the models, runs the workloads with faults, stops the faults, resolves the unknown
    /// fates and checks everything; gives the server back.
    async fn run<E: Executor>(
        &self,
        config: &ChaosConfig,
        executor: Arc<E>,
        checker: &Engine,
        server: ChaosRedis,
        report: &mut ChaosReport,
    ) -> Result<ChaosRedis> {
        let bank = Bank { accounts: config.accounts, initial: 100 };
        let lists = Lists { keys: config.lists };
        bank.seed(checker).await?;

        let (stop, stopped) = watch::channel(false);
        let injector = tokio::spawn(faults::inject(server, config.faults.clone(), config.seed, stopped.clone()));
        let crasher = self.fleet.clone().map(|fleet| tokio::spawn(fleet.crash_servers(config.seed, stopped)));
        let started = Instant::now();
        let histories = drive(config, self.time, &executor, bank, lists).await?;
        report.ran_for += started.elapsed();
        let _ = stop.send(true);
        let (server, faults) = injector.await??;
        for (kind, n) in faults {
            *report.faults.entry(kind).or_default() += n;
        }
        if let Some(crasher) = crasher {
            *report.faults.entry("wasmtx serve killed (SIGKILL) and restarted").or_default() += crasher.await??;
        }
        if histories.cancelled > 0 {
            *report.faults.entry("caller gave up after 0-5 ms").or_default() += histories.cancelled;
        }

        let Histories { bank: mut bank_history, calls_bank, lists: mut list_history, calls_lists, clock, .. } =
            histories;
        let (bank_name, list_name) = (format!("bank{}", self.name), format!("list-append{}", self.name));
        tally(&mut report.ops, &bank_name, &bank_history);
        tally(&mut report.ops, &list_name, &list_history);

        let mut conn = server.patient_connection().await?;
        let gone = locks::check(&mut conn, self.prefix, config.lease, &mut report.checks).await?;
        report.locks_gone_after = report.locks_gone_after.max(gone);

        let resolved = report.resolved.entry(bank_name).or_default();
        resolve(&*executor, &mut bank_history, &calls_bank, &clock, resolved).await;
        let resolved = report.resolved.entry(list_name).or_default();
        resolve(&*executor, &mut list_history, &calls_lists, &clock, resolved).await;
        no_internal_errors(&bank_history, &mut report.checks);
        no_internal_errors(&list_history, &mut report.checks);
        bank::check(&bank, checker, &bank_history, &mut report.checks).await?;
        lists::check(&lists, checker, &list_history, &mut report.checks).await?;
        next_invocations_succeed(&*executor, &bank, &lists, &mut report.checks).await;
        Ok(server)
    }
}

/// The callers: each draws operations from its own seeded generator until the time is up.
async fn drive<E: Executor>(
    config: &ChaosConfig,
    time: Duration,
    executor: &Arc<E>,
    bank: Bank,
    lists: Lists,
) -> Result<Histories> {
    let clock = Arc::new(Clock::default());
    let ids = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + time;
    let mut tasks = Vec::new();
    for caller in 0..config.callers {
        let (executor, clock, ids) = (executor.clone(), clock.clone(), ids.clone());
        let seed = config.seed ^ (u64::try_from(caller)? + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let cancel_share = config.cancel_share;
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut out = Histories::default();
            while Instant::now() < until {
                let id = ids.fetch_add(1, Ordering::Relaxed);
                let cancel = rng.random_bool(cancel_share).then(|| Duration::from_micros(rng.random_range(0..=5_000)));
                out.cancelled += u64::from(cancel.is_some());
                if rng.random_bool(0.5) {
                    let (op, call) = bank.next(id, &mut rng);
                    let (start, fate, end) = timed(&*executor, &clock, &call, cancel, &mut rng).await;
                    out.bank.push(Record { id, op, start, end, fate, resolved: false });
                    out.calls_bank.push(call);
                } else {
                    let (op, call) = lists.next(id, &mut rng);
                    let (start, fate, end) = timed(&*executor, &clock, &call, cancel, &mut rng).await;
                    out.lists.push(Record { id, op, start, end, fate, resolved: false });
                    out.calls_lists.push(call);
                }
            }
            out
        }));
    }
    let mut all = Histories { clock, ..Histories::default() };
    for task in tasks {
        let mut one = task.await?;
        all.bank.append(&mut one.bank);
        all.calls_bank.append(&mut one.calls_bank);
        all.lists.append(&mut one.lists);
        all.calls_lists.append(&mut one.calls_lists);
        all.cancelled += one.cancelled;
    }
    Ok(all)
}

async fn timed(
    executor: &impl Executor,
    clock: &Clock,
    call: &Call,
    cancel: Option<Duration>,
    rng: &mut StdRng,
) -> (u64, Fate, u64) {
    let start = clock.tick();
    let fate = executor.invoke(call, cancel, rng).await;
    (start, fate, clock.tick())
}

fn tally<Op>(ops: &mut BTreeMap<String, BTreeMap<String, u64>>, workload: &str, history: &[Record<Op>]) {
    let fates = ops.entry(workload.to_owned()).or_default();
    for record in history {
        *fates.entry(record.fate.label()).or_default() += 1;
    }
}

/// Invokes every operation of unknown fate again with its idempotency key: it replays the
/// first commit, or runs now if there was none. Its end is a tick of the run's clock, later
/// than every tick of the run.
pub async fn resolve<Op>(
    executor: &impl Executor,
    history: &mut [Record<Op>],
    calls: &[Call],
    clock: &Clock,
    tally: &mut BTreeMap<String, u64>,
) {
    let mut rng = StdRng::seed_from_u64(0);
    for (record, call) in history.iter_mut().zip(calls) {
        if !matches!(record.fate, Fate::Unknown { .. }) {
            continue;
        }
        let mut fate = executor.invoke(call, None, &mut rng).await;
        for _ in 1..RESOLVE_ATTEMPTS {
            if !matches!(&fate, Fate::Failed { kind, .. } if kind == "in_progress") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            fate = executor.invoke(call, None, &mut rng).await;
        }
        *tally.entry(fate.label()).or_default() += 1;
        record.fate = fate;
        record.resolved = true;
        record.end = clock.tick();
    }
}

/// Every failure under the injected faults is typed as what it is (bad input, a refusal, a
/// passing outage: HTTP 4xx or 503), never as the server's own fault (HTTP 500).
fn no_internal_errors<Op>(history: &[Record<Op>], checks: &mut Checks) {
    for record in history {
        let internal = matches!(record.fate, Fate::Failed { internal: true, .. });
        checks.expect("engine: no fault ends in an internal error", !internal, || {
            format!("t{}: {}", record.id, record.fate.label())
        });
    }
}

/// Once the faults stop, an invocation on every model succeeds (nothing is stuck).
async fn next_invocations_succeed(executor: &impl Executor, bank: &Bank, lists: &Lists, checks: &mut Checks) {
    let mut rng = StdRng::seed_from_u64(0);
    let mut models: Vec<(&'static str, String)> =
        (0..bank.accounts).map(|i| (bank::ACCOUNT, bank::account_key(i))).collect();
    models.push((bank::ACCOUNT, bank::RESERVE.to_owned()));
    models.extend((0..lists.keys).map(|i| (lists::LIST, lists::list_key(i))));
    for (n, (model_type, key)) in models.into_iter().enumerate() {
        for action in ACTIONS {
            let call = Call {
                models: vec![(model_type, key.clone())],
                action,
                mode: Mode::Lock,
                input: json!({"ops": [{"op": "fields"}]}),
                key: format!("chaos-after-{n}-{action}"),
            };
            let fate = executor.invoke(&call, None, &mut rng).await;
            checks.expect("engine: the next invocation on every model succeeds", fate.is_acked(), || {
                format!("{model_type}:{key} ({action}) after the run: {}", fate.label())
            });
        }
    }
}
