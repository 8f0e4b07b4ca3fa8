//! Redis Cluster under topology changes (issue 12, step 2), on the binary's 3+3 cluster
//! (`support::test_cluster::replicated_cluster`): a manual failover and a slot migration, each
//! in the middle of a seeded bank run on two engines (`support::bank_run`: the chaos bank,
//! every account placed in one slot, per-transfer markers). Each test holds the cluster's
//! topology for itself ([`TestCluster::exclusive`]), so the two never overlap.
//!
//! Checked per transfer: each acknowledged transfer applied exactly once and each failed one
//! not at all (its markers), money conserved, no call given up on (`store_unavailable`) or
//! failed as an internal error, transfers acknowledged after the change, no lock left once the
//! leases are over, and no call slower than a bound (below).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use wasmtx::backend::BackendOptions;
use wasmtx::store::redis::KeyLayout;
use wasmtx::{Engine, EngineConfig, ModelId};
use wasmtx_example_host::chaos::bank::{self, Bank};
use wasmtx_example_host::chaos::exec::EngineExecutor;

use crate::bank_run::{self, BankRun, Finished};
use crate::process::poll;
use crate::support::test_cluster::{TestCluster, replicated_cluster};
use crate::unique_prefix;

/// The accounts: few, so that transfers contend.
const BANK: Bank = Bank { accounts: 8, initial: 100 };
/// Concurrent callers.
const CALLERS: u64 = 8;
/// Transfers acknowledged before the change starts, and again after it ended.
const BEFORE: u64 = 40;
const AFTER: u64 = 40;
/// How long the run may go without reaching those counts before it counts as stalled.
const STALL: Duration = Duration::from_secs(15);

/// How much longer than the topology change itself (the failover until the roles flipped, the
/// migration window) any call may take: while the change lasts, a call waits (a paused primary
/// holds it; a split slot answers `TRYAGAIN` or `ASK`, which the client retries 8 times 5-200
/// ms apart, then the engine retries the invocation, or first asks whether a commit landed, at
/// most 500 ms apart); once it is over a call needs one more wait of each and its own time.
/// Measured on 2 shared cores: the slowest call took the change plus 0.2 s (README, "Scaling
/// out").
const CHANGE_SLACK: Duration = Duration::from_secs(2);

/// Two engines (with their own connections, one seeded with every node, one with the first)
/// on the cluster under a fresh prefix, the bank's accounts placed in group `group` (one
/// slot), the probe rule compiled on each; the bank seeded.
struct Fixture {
    prefix: String,
    slot: u16,
    executor: Arc<EngineExecutor>,
    checker: Engine,
}

impl Fixture {
    async fn new(cluster: &TestCluster, group: &str) -> Result<Self> {
        let prefix = unique_prefix(group);
        let probe = std::fs::read(&crate::rules()?.probe)?;
        let mut engines = Vec::new();
        for url in [cluster.seeds_url(), cluster.url()] {
            let store = wasmtx::backend::open_store(&url, &BackendOptions::with_prefix(prefix.clone()))
                .await
                .with_context(|| format!("opening a store on {url}"))?;
            let engine = Engine::builder().shared_store(store).model(bank_run::placed_schema(group)?).build()?;
            let rule = engine.compile_rule("probe", &probe)?;
            engines.push((engine, rule));
        }
        let checker = engines[0].0.clone();
        BANK.seed(&checker).await.context("seeding the bank")?;
        let layout = KeyLayout::new(prefix.clone());
        layout.place(bank::ACCOUNT, bank_run::placed_schema(group)?.placement());
        let slot = layout.slot(&ModelId::new(bank::ACCOUNT, bank::account_key(0)));
        Ok(Self { prefix, slot, executor: Arc::new(EngineExecutor::new(engines)), checker })
    }

    /// Stops the run, checks it, and checks the rest: no lock left once a lease is over, no
    /// call slower than the change (`change`, over at `changed`) plus [`CHANGE_SLACK`], calls
    /// acknowledged after `changed`.
    async fn finish(
        &self,
        cluster: &TestCluster,
        run: BankRun,
        change: Duration,
        changed: Instant,
    ) -> Result<Finished> {
        let finished = run.finish(&*self.executor, &self.checker).await?;
        println!("{}", finished.summary());
        finished.ensure_clean()?;
        let after = finished.acked_sent_after(changed);
        ensure!(after > 0, "{}: no transfer sent after the change was acknowledged", finished.summary());
        let (slowest, marker) = finished.slowest();
        let bound = change + CHANGE_SLACK;
        ensure!(slowest <= bound, "{}: {marker} took {slowest:?}, over the bound {bound:?}", finished.summary());
        let lease = EngineConfig::default().lease;
        let held = poll(lease + Duration::from_millis(500), "no lock left once the leases are over", || async {
            let held = cluster.held_locks(&self.prefix).await?;
            Ok(held.is_empty().then_some(()))
        })
        .await;
        held.with_context(|| format!("seed {}", finished.seed))?;
        Ok(finished)
    }
}

/// A manual `CLUSTER FAILOVER` on the replica of the primary serving the bank's slot, in the
/// middle of the run: the roles swap (coordinated: the primary stops taking writes until the
/// replica has caught up), calls resume on the new primary, and nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_manual_failover_during_a_bank_run_loses_no_acknowledged_transfer() -> Result<()> {
    let seed = bank_run::seed();
    let cluster = replicated_cluster()?;
    let _topology = cluster.exclusive().await;
    let fixture = Fixture::new(cluster, "failover").await?;
    let run = BankRun::start(&fixture.executor, BANK, seed, CALLERS);
    run.wait_for_acked(BEFORE, STALL).await?;

    let owner = cluster.owner_of(fixture.slot)?;
    let replica = cluster.replica_of(&owner)?;
    let started = Instant::now();
    let promoted = replica.clone();
    let flipped = tokio::task::spawn_blocking(move || cluster.fail_over_to(&promoted)).await??;
    println!(
        "seed {seed}: slot {} failed over from {} to {} in {:?}",
        fixture.slot,
        owner.port,
        replica.port,
        flipped - started
    );
    ensure!(cluster.owner_of(fixture.slot)?.id == replica.id, "the replica does not serve the slot");
    run.wait_for_acked(run.acked() + AFTER, STALL).await?;
    fixture.finish(cluster, run, flipped - started, flipped).await?;
    Ok(())
}

/// The bank's slot moved to another primary in the middle of the run, its keys in batches so
/// that the migration window stays open with keys on both nodes (calls then get `ASK` and
/// `TRYAGAIN`): no transfer lost or applied twice, and every call within the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slot_migration_during_a_bank_run_loses_and_duplicates_nothing() -> Result<()> {
    let seed = bank_run::seed();
    let cluster = replicated_cluster()?;
    let _topology = cluster.exclusive().await;
    let fixture = Fixture::new(cluster, "migration").await?;
    let run = BankRun::start(&fixture.executor, BANK, seed, CALLERS);
    run.wait_for_acked(BEFORE, STALL).await?;

    let from = cluster.owner_of(fixture.slot)?;
    let to = cluster.nodes()?.into_iter().find(|n| n.primary_of.is_none() && n.id != from.id).context("no target")?;
    let (source, slot) = (from.clone(), fixture.slot);
    let (window, moved) =
        tokio::task::spawn_blocking(move || cluster.move_slot(slot, &source, &to, MIGRATE_BATCHES, MIGRATE_PAUSE))
            .await??;
    let moved_at = Instant::now();
    println!("seed {seed}: slot {slot} moved from {} ({moved} keys), window open {window:?}", from.port);
    run.wait_for_acked(run.acked() + AFTER, STALL).await?;
    fixture.finish(cluster, run, window, moved_at).await?;
    Ok(())
}

/// The migration test moves the slot's keys in this many `MIGRATE`s...
const MIGRATE_BATCHES: usize = 5;
/// ...with this pause between two: the window stays open ~1 s, half the keys on each side.
const MIGRATE_PAUSE: Duration = Duration::from_millis(250);
