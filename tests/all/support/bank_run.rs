//! A seeded bank run for the tests that change a cluster's topology or spread a workload over
//! several processes: the chaos suite's bank (`wasmtx_example_host::chaos::bank`: accounts
//! exchanging money in lock, optimistic and pipeline mode, each transfer appending its marker
//! to the `log` list of every account it changes) driven by concurrent callers through an
//! executor (engines in this process, or `wasmtx serve` processes over HTTP) until the test
//! stops it, every call timed. At the end, the calls of unknown fate are invoked again with
//! their idempotency keys (the chaos suite's `resolve`), and the bank's checker holds each
//! transfer to what its caller was told, by its markers: applied exactly once if acknowledged,
//! not at all if failed, on both accounts or neither; balances as the logs say; money conserved.
//!
//! An account's `log` key exists only once a transfer appended to it, so early in a run a
//! lock-and-load declares keys that do not exist yet beside keys that do, and every commit
//! declares its idempotency record, which never exists yet: on a cluster, during a slot
//! migration, exactly the calls Redis answers with `TRYAGAIN`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use tokio::task::JoinHandle;
use wasmtx::Engine;
use wasmtx_example_host::chaos::bank::{self, Bank, Transfer};
use wasmtx_example_host::chaos::exec::{Call, Executor};
use wasmtx_example_host::chaos::history::{Clock, Fate, Record};
use wasmtx_example_host::chaos::report::Checks;

use crate::process::poll;

/// The bank's account schema placed in `group` (every account in the group's one slot), as
/// the TOML a user would upload.
pub fn placed_schema_toml(group: &str) -> String {
    bank::SCHEMA.replacen('\n', &format!("\nplacement = \"{group}\"\n"), 1)
}

/// [`placed_schema_toml`], parsed.
///
/// # Errors
/// Never in practice (the schema is valid).
pub fn placed_schema(group: &str) -> Result<wasmtx::ModelSchema> {
    Ok(wasmtx::ModelSchema::from_toml(&placed_schema_toml(group))?)
}

/// The seed of a run: `WASMTX_TEST_SEED` if set (to replay one), else a random one; printed.
pub fn seed() -> u64 {
    let seed = std::env::var("WASMTX_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("WASMTX_TEST_SEED={seed}");
    seed
}

/// What the callers did: one entry per call, in the same order in each vector.
#[derive(Debug, Default)]
pub struct Calls {
    /// The operations and their fates.
    pub records: Vec<Record<Transfer>>,
    /// The calls (to invoke again with their keys).
    pub calls: Vec<Call>,
    /// When each was sent.
    pub sent: Vec<Instant>,
    /// How long each took to be answered.
    pub took: Vec<Duration>,
}

/// A bank run in progress.
#[derive(Debug)]
pub struct BankRun {
    bank: Bank,
    seed: u64,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    clock: Arc<Clock>,
    tasks: Vec<JoinHandle<Calls>>,
}

impl BankRun {
    /// Starts `callers` callers, each drawing operations on `bank` from its own generator
    /// (derived from `seed`) and sending them one after the other through `executor`.
    pub fn start<E: Executor>(executor: &Arc<E>, bank: Bank, seed: u64, callers: u64) -> Self {
        let (stop, acked) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let clock = Arc::new(Clock::default());
        let tasks = (0..callers)
            .map(|caller| {
                let (executor, stop, acked, clock) =
                    (executor.clone(), stop.clone(), acked.clone(), Arc::clone(&clock));
                tokio::spawn(async move {
                    let mut rng = StdRng::seed_from_u64(seed ^ (caller + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                    let mut out = Calls::default();
                    for n in 0.. {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let id = caller * 1_000_000 + n;
                        let (op, call) = bank.next(id, &mut rng);
                        let (sent, start) = (Instant::now(), clock.tick());
                        let fate = executor.invoke(&call, None, &mut rng).await;
                        let (took, end) = (sent.elapsed(), clock.tick());
                        acked.fetch_add(u64::from(fate.is_acked()), Ordering::SeqCst);
                        out.records.push(Record { id, op, start, end, fate, resolved: false });
                        out.calls.push(call);
                        out.sent.push(sent);
                        out.took.push(took);
                    }
                    out
                })
            })
            .collect();
        Self { bank, seed, stop, acked, clock, tasks }
    }

    /// How many calls were acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::SeqCst)
    }

    /// Waits (polling, at most `within`) until `n` calls in all were acknowledged.
    ///
    /// # Errors
    /// If that does not happen in time: the run stalled.
    pub async fn wait_for_acked(&self, n: u64, within: Duration) -> Result<()> {
        let what = format!("seed {}: {n} acknowledged transfers (stuck at {})", self.seed, self.acked());
        poll(within, &what, || async { Ok((self.acked() >= n).then_some(())) }).await
    }

    /// Stops the callers (each finishes its call), resolves the unknown fates through
    /// `executor` and checks the bank, read through `checker`.
    ///
    /// # Errors
    /// If a caller panicked or the store cannot be read (violations are in the result).
    pub async fn finish<E: Executor>(self, executor: &E, checker: &Engine) -> Result<Finished> {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Calls::default();
        for task in self.tasks {
            let mut one = task.await?;
            all.records.append(&mut one.records);
            all.calls.append(&mut one.calls);
            all.sent.append(&mut one.sent);
            all.took.append(&mut one.took);
        }
        let unknown_at_first = all.records.iter().filter(|r| matches!(r.fate, Fate::Unknown { .. })).count();
        let mut resolved = BTreeMap::new();
        wasmtx_example_host::chaos::resolve(executor, &mut all.records, &all.calls, &self.clock, &mut resolved).await;
        let mut checks = Checks::default();
        bank::check(&self.bank, checker, &all.records, &mut checks).await?;
        Ok(Finished { seed: self.seed, calls: all, checks, unknown_at_first, resolved })
    }
}

/// A finished run: its calls and the bank's checks.
#[derive(Debug)]
pub struct Finished {
    /// The run's seed.
    pub seed: u64,
    /// The calls.
    pub calls: Calls,
    /// The bank's invariants, checked.
    pub checks: Checks,
    /// How many calls had an unknown fate before they were resolved.
    pub unknown_at_first: usize,
    /// What the resolving calls came to.
    pub resolved: BTreeMap<String, u64>,
}

impl Finished {
    /// How many calls ended in each fate (`acked`, `failed: <kind>`, ...).
    pub fn fates(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for record in &self.calls.records {
            *out.entry(record.fate.label()).or_default() += 1;
        }
        out
    }

    /// How many calls sent after `at` were acknowledged.
    pub fn acked_sent_after(&self, at: Instant) -> usize {
        self.calls.records.iter().zip(&self.calls.sent).filter(|(r, sent)| **sent > at && r.fate.is_acked()).count()
    }

    /// The longest any call took, and its marker.
    pub fn slowest(&self) -> (Duration, String) {
        let at = (0..self.calls.took.len()).max_by_key(|&i| self.calls.took[i]).unwrap_or_default();
        let marker = self.calls.records.get(at).map(|r| format!("t{}", r.id)).unwrap_or_default();
        (self.calls.took.get(at).copied().unwrap_or_default(), marker)
    }

    /// A one-line summary for the test's output.
    pub fn summary(&self) -> String {
        let (slowest, marker) = self.slowest();
        format!(
            "seed {}: {} calls, fates {:?}, {} unknown at first (resolved: {:?}), slowest {slowest:?} ({marker}), {} checks",
            self.seed,
            self.calls.records.len(),
            self.fates(),
            self.unknown_at_first,
            self.resolved,
            self.checks.checked()
        )
    }

    /// Fails on any violation of the bank's invariants, and on any call that failed as the
    /// server's own fault (an internal error) or for want of the store (`store_unavailable`:
    /// the engine gave up retrying a store that was only moving a slot or failing over).
    ///
    /// # Errors
    /// Naming the seed and the violations.
    pub fn ensure_clean(&self) -> Result<()> {
        let violations = self.checks.violations();
        ensure!(violations.is_empty(), "{}\nviolations:\n{}", self.summary(), violations.join("\n"));
        let given_up: Vec<String> = self
            .calls
            .records
            .iter()
            .filter(|r| matches!(&r.fate, Fate::Failed { kind, internal } if *internal || kind == "store_unavailable"))
            .map(|r| format!("t{}: {}", r.id, r.fate.label()))
            .collect();
        ensure!(given_up.is_empty(), "{}\ncalls given up on: {given_up:?}", self.summary());
        ensure!(self.checks.checked() > 0, "{}: nothing was checked", self.summary());
        Ok(())
    }
}
