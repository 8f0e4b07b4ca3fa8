//! Scaling out (issue 12, step 2): three `wasmtx serve` processes (the binary, as child
//! processes: the chaos suite's `Fleet`) on one store share a seeded bank run over HTTP (each
//! call to one of them at random, with its idempotency key), on the shared standalone Redis and
//! on the binary's 3-primary cluster. Checked per transfer by its markers (`support::bank_run`):
//! each acknowledged transfer applied once, each failed one not at all, money conserved; no lock
//! left once the leases are over; and every process served a share, by its own `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use wasmtx::backend::BackendOptions;
use wasmtx::{Engine, EngineConfig, Store};
use wasmtx_example_host::chaos::bank::{self, Bank};
use wasmtx_example_host::chaos::serve::{Fleet, HttpExecutor};

use crate::bank_run::{self, BankRun};
use crate::process::poll;
use crate::support::test_cluster::cluster;
use crate::{RedisFixture, unique_prefix};

/// The accounts: few, so that transfers contend across processes.
const BANK: Bank = Bank { accounts: 8, initial: 100 };
/// Concurrent HTTP callers.
const CALLERS: u64 = 12;
/// Transfers acknowledged before the run stops.
const ACKED: u64 = 150;
/// How long that may take before the run counts as stalled.
const STALL: Duration = Duration::from_secs(20);
/// The placement group of the accounts (on a cluster: one slot; on one server, just a tag).
const GROUP: &str = "fleet";

/// Where the fleet runs: the shared Redis or the test cluster, under a fresh prefix.
enum Backing {
    Standalone(RedisFixture),
    Cluster { prefix: String, store: Arc<dyn Store> },
}

impl Backing {
    async fn standalone() -> Result<Self> {
        Ok(Self::Standalone(RedisFixture::new("fleet").await?))
    }

    async fn cluster() -> Result<Self> {
        let prefix = unique_prefix("fleet");
        let store =
            wasmtx::backend::open_store(&cluster()?.seeds_url(), &BackendOptions::with_prefix(prefix.clone())).await?;
        Ok(Self::Cluster { prefix, store })
    }

    fn url(&self) -> Result<String> {
        Ok(match self {
            Self::Standalone(_) => crate::redis_url(),
            Self::Cluster { .. } => cluster()?.seeds_url(),
        })
    }

    fn prefix(&self) -> &str {
        match self {
            Self::Standalone(fixture) => &fixture.prefix,
            Self::Cluster { prefix, .. } => prefix,
        }
    }

    fn store(&self) -> Arc<dyn Store> {
        match self {
            Self::Standalone(fixture) => Arc::clone(&fixture.store),
            Self::Cluster { store, .. } => Arc::clone(store),
        }
    }

    async fn held_locks(&self) -> Result<Vec<String>> {
        match self {
            Self::Standalone(fixture) => fixture.held_locks().await,
            Self::Cluster { prefix, .. } => cluster()?.held_locks(prefix).await,
        }
    }
}

/// The probe invocations a server's `/metrics` counts (`wasmtx_invocations_total` samples of
/// rule `probe`, every mode and outcome).
fn probe_invocations(metrics: &str) -> Result<u64> {
    let mut total = 0;
    for line in metrics.lines().filter(|l| l.starts_with("wasmtx_invocations_total{") && l.contains("rule=\"probe\"")) {
        let value = line.rsplit(' ').next().context("a sample without a value")?;
        total += value.parse::<u64>().with_context(|| format!("sample {line:?}"))?;
    }
    Ok(total)
}

/// Three servers on `backing`, the bank's schema defined and the probe rule uploaded through
/// the first, share a seeded bank run; then everything above is checked.
async fn three_servers_share_a_bank_run(backing: Backing) -> Result<()> {
    let seed = bank_run::seed();
    let fleet = Fleet::start(crate::process::wasmtx_bin()?, &backing.url()?, backing.prefix(), 3)?;
    let probe = std::fs::read(&crate::rules()?.probe)?;
    let schema = bank_run::placed_schema_toml(GROUP);
    fleet.install(&[(bank::ACCOUNT, schema.as_str())], &probe, (bank::ACCOUNT, bank::RESERVE)).await?;
    let checker = Engine::builder().shared_store(backing.store()).model(bank_run::placed_schema(GROUP)?).build()?;
    BANK.seed(&checker).await?;
    let served_before = fleet.metrics().await?;

    let executor = Arc::new(HttpExecutor::new(Arc::clone(&fleet)));
    let run = BankRun::start(&executor, BANK, seed, CALLERS);
    run.wait_for_acked(ACKED, STALL).await?;
    let finished = run.finish(&*executor, &checker).await?;
    println!("{}", finished.summary());
    finished.ensure_clean()?;

    let mut shares = Vec::new();
    for ((url, before), (_, after)) in served_before.iter().zip(fleet.metrics().await?) {
        shares.push((url.clone(), probe_invocations(&after)? - probe_invocations(before)?));
    }
    println!("seed {seed}: probe invocations served per process: {shares:?}");
    ensure!(shares.len() == 3, "seed {seed}: {} servers answered /metrics", shares.len());
    ensure!(shares.iter().all(|(_, n)| *n > 0), "seed {seed}: a process served nothing: {shares:?}");
    let served: u64 = shares.iter().map(|(_, n)| n).sum();
    let calls = u64::try_from(finished.calls.records.len())?;
    ensure!(served >= calls, "seed {seed}: the processes count {served} invocations for {calls} calls");

    let lease = EngineConfig::default().lease;
    poll(lease + Duration::from_millis(500), "no lock left once the leases are over", || async {
        Ok(backing.held_locks().await?.is_empty().then_some(()))
    })
    .await
    .with_context(|| format!("seed {seed}"))
}

/// On the shared standalone Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_servers_on_one_redis_share_a_bank_run() -> Result<()> {
    three_servers_share_a_bank_run(Backing::standalone().await?).await
}

/// On the 3-primary test cluster (the accounts placed in one slot).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_servers_on_the_cluster_share_a_bank_run() -> Result<()> {
    three_servers_share_a_bank_run(Backing::cluster().await?).await
}
