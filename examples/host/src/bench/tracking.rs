//! Whether RESP3 client-side tracking pays for itself (issue 13): with several engines
//! writing the same models, an engine's snapshot cache goes stale when another engine commits,
//! and its next commit on a moved model is refused (a *stale hit*: the refused commit brings the
//! fresh state, the rule runs again, a second commit). With `CLIENT TRACKING` the server would
//! tell each engine which cached keys moved, so it could load them before running instead.
//!
//! Measured on the Redis under test, from clients: [`KEYS`] account hashes; one writer sends
//! transfers (a script that changes two accounts, as an engine's commit does: two `HINCRBY`s
//! each, the version included) in pipelines of [`BATCH`], each pipeline over distinct
//! accounts; `readers` other clients, each a data connection (RESP2, as the engine's store)
//! with `CLIENT TRACKING ON REDIRECT <id> OPTIN` to an invalidation listener of its own (a RESP3
//! connection receiving the `invalidate` pushes), read every account once, then after each
//! pipeline wait for the invalidations of its accounts and read them again
//! (`CLIENT CACHING YES` + `HGETALL`), so that every key stays tracked. The same run without
//! tracking reads the same accounts again with plain `HGETALL`s. The Redis CPU difference per
//! transfer is what tracking costs the server (the invalidations and the tracking table); the
//! pushes are counted per transfer.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use redis::aio::MultiplexedConnection;
use redis::{IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, Script, Value};
use tokio::sync::mpsc;
use wasmtx::ModelId;
use wasmtx::store::redis::KeyLayout;

use super::overhead::Cost;
use super::run::Row;
use super::server::{self, RedisUnderTest};
use super::sys;

/// Accounts written and tracked (as the bank workload's).
pub const KEYS: usize = 1_000;
/// Transfers per run.
pub const TRANSFERS: usize = 10_000;
/// Transfers per pipeline (`2 × BATCH` distinct accounts).
pub const BATCH: usize = 100;
/// Tracking readers per run, each measured with and without tracking.
pub const READERS: [usize; 3] = [1, 2, 3];
/// Runs of each kind; the median is kept (the machine is shared).
pub const REPEATS: usize = 3;
/// How long a reader may wait for a pipeline's invalidations.
const WAIT: Duration = Duration::from_secs(10);
/// Key prefix of the measure.
const PREFIX: &str = "wasmtx-bench-tracking";

/// One run: `readers` readers, with or without tracking.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// Readers of every written account.
    pub readers: usize,
    /// Transfers written.
    pub transfers: usize,
    /// `invalidate` pushes the listeners received, all readers together.
    pub messages: u64,
    /// Keys those pushes named.
    pub invalidated_keys: u64,
    /// Redis CPU per transfer (its reads again included), microseconds.
    pub redis_us: f64,
    /// This process's CPU per transfer (writer and readers, pushes handled), microseconds.
    pub client_us: f64,
    /// Wall time of the run.
    pub elapsed: Duration,
}

/// Every run's median per kind.
#[derive(Debug, Clone)]
pub struct Measure {
    /// For each reader count of [`READERS`]: without tracking, then with.
    pub pairs: Vec<(Run, Run)>,
    /// The sanity check: balances conserved after every run.
    pub invariant: std::result::Result<String, String>,
}

impl Measure {
    /// What tracking adds to the server per transfer and per reader, microseconds: the
    /// difference of the medians, averaged over the reader counts (each divided by its readers).
    pub fn us_per_transfer_per_reader(&self) -> f64 {
        self.mean_per_reader(|r| r.redis_us)
    }

    /// The same for this process's CPU (the clients: `CLIENT CACHING` sent, pushes received).
    pub fn client_us_per_transfer_per_reader(&self) -> f64 {
        self.mean_per_reader(|r| r.client_us)
    }

    fn mean_per_reader(&self, figure: impl Fn(&Run) -> f64) -> f64 {
        let per: Vec<f64> =
            self.pairs.iter().map(|(off, on)| (figure(on) - figure(off)) / on.readers.max(1) as f64).collect();
        per.iter().sum::<f64>() / per.len().max(1) as f64
    }
}

/// A data connection's URL as RESP3 (the listener's).
fn resp3(url: &str) -> Result<redis::ConnectionInfo> {
    let info = url.into_connection_info()?;
    let settings = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
    Ok(info.set_redis_settings(settings))
}

/// A reader: its data connection, and the listener its invalidations go to.
struct Reader {
    data: MultiplexedConnection,
    pushes: mpsc::UnboundedReceiver<PushInfo>,
    /// Kept open: the redirect target.
    _listener: MultiplexedConnection,
    messages: u64,
    keys: u64,
}

impl Reader {
    async fn open(url: &str, tracking: bool) -> Result<Self> {
        let (tx, pushes) = mpsc::unbounded_channel::<PushInfo>();
        let config = redis::AsyncConnectionConfig::new().set_push_sender(tx);
        let mut listener =
            redis::Client::open(resp3(url)?)?.get_multiplexed_async_connection_with_config(&config).await?;
        let id: i64 = redis::cmd("CLIENT").arg("ID").query_async(&mut listener).await?;
        let mut data = redis::Client::open(url)?.get_multiplexed_async_connection().await?;
        if tracking {
            redis::cmd("CLIENT")
                .arg(&["TRACKING", "ON", "REDIRECT"])
                .arg(id)
                .arg("OPTIN")
                .query_async::<()>(&mut data)
                .await
                .context("CLIENT TRACKING ON REDIRECT")?;
        }
        Ok(Self { data, pushes, _listener: listener, messages: 0, keys: 0 })
    }

    /// Reads `keys` in one pipeline, each tracked (`CLIENT CACHING YES` before it) if `tracking`.
    async fn read(&mut self, keys: &[String], tracking: bool) -> Result<()> {
        let mut pipe = redis::pipe();
        for key in keys {
            if tracking {
                pipe.cmd("CLIENT").arg("CACHING").arg("YES").ignore();
            }
            pipe.cmd("HGETALL").arg(key).ignore();
        }
        pipe.query_async::<()>(&mut self.data).await?;
        Ok(())
    }

    /// Waits for invalidations naming `want` keys; returns them.
    async fn invalidated(&mut self, want: usize) -> Result<Vec<String>> {
        let mut keys = Vec::with_capacity(want);
        while keys.len() < want {
            let push = match tokio::time::timeout(WAIT, self.pushes.recv()).await {
                Ok(Some(push)) => push,
                Ok(None) => bail!("the invalidation listener closed after {} of {want} keys", keys.len()),
                Err(_) => bail!("{} of {want} invalidations arrived within {WAIT:?}", keys.len()),
            };
            if push.kind != PushKind::Invalidate {
                continue;
            }
            self.messages += 1;
            for value in push.data {
                let Value::Array(names) = value else { continue };
                for name in names {
                    if let Value::BulkString(b) = name {
                        keys.push(String::from_utf8(b)?);
                    }
                }
            }
        }
        self.keys += keys.len() as u64;
        Ok(keys)
    }
}

/// Every run, alternating with and without tracking, [`REPEATS`] times; the medians.
///
/// # Errors
/// If Redis fails, an invalidation does not arrive, or the balances are not conserved.
pub async fn measure(server: &RedisUnderTest) -> Result<Measure> {
    let mut admin = server.connect().await?;
    let mut pairs = Vec::new();
    let mut checked = 0;
    for &readers in &READERS {
        let mut runs: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
        for repeat in 0..REPEATS {
            for tracking in [false, true] {
                let run = run(server, &mut admin, readers, tracking, repeat).await?;
                runs[usize::from(tracking)].push(run);
                checked += 1;
            }
        }
        let [off, on] = runs.map(|mut r| {
            r.sort_by(|a, b| a.redis_us.total_cmp(&b.redis_us));
            r[r.len() / 2]
        });
        pairs.push((off, on));
    }
    Ok(Measure { pairs, invariant: Ok(format!("Σ balance conserved after each of {checked} runs")) })
}

async fn run(
    server: &RedisUnderTest,
    admin: &mut MultiplexedConnection,
    readers: usize,
    tracking: bool,
    repeat: usize,
) -> Result<Run> {
    server::clear(admin, server.is_private(), PREFIX).await?;
    let layout = KeyLayout::new(PREFIX);
    let keys: Vec<String> = (0..KEYS).map(|i| layout.data(&ModelId::new("Account", format!("acct{i:04}")))).collect();
    let mut seed = redis::pipe();
    for key in &keys {
        seed.cmd("HSET").arg(key).arg(&["balance", "1000", "~v", "1"]).ignore();
    }
    seed.query_async::<()>(admin).await?;

    let mut all = Vec::with_capacity(readers);
    for _ in 0..readers {
        let mut reader = Reader::open(&server.url, tracking).await?;
        for chunk in keys.chunks(250) {
            reader.read(chunk, tracking).await?;
        }
        all.push(reader);
    }
    let mut writer = server.connect().await?;
    let transfer = Script::new(
        r"
redis.call('HINCRBY', KEYS[1], 'balance', -tonumber(ARGV[1]))
redis.call('HINCRBY', KEYS[2], 'balance', ARGV[1])
redis.call('HINCRBY', KEYS[1], '~v', 1)
redis.call('HINCRBY', KEYS[2], '~v', 1)
return 1
",
    );
    // Loaded before the window: the transfers are `EVALSHA`s.
    transfer.prepare_invoke().load_async(&mut writer).await?;
    let mut rng = StdRng::seed_from_u64(0x7ac_0000 + repeat as u64);
    let mut order: Vec<usize> = (0..KEYS).collect();
    let per_cycle = KEYS / (2 * BATCH);

    let cpu_at_start = server::start_window(admin).await?;
    let client_at_start = sys::process_cpu();
    let started = Instant::now();
    for b in 0..TRANSFERS / BATCH {
        if b % per_cycle == 0 {
            order.shuffle(&mut rng);
        }
        let slice = &order[(b % per_cycle) * 2 * BATCH..][..2 * BATCH];
        let mut pipe = redis::pipe();
        for pair in slice.chunks_exact(2) {
            pipe.cmd("EVALSHA").arg(transfer.get_hash()).arg(2).arg(&keys[pair[0]]).arg(&keys[pair[1]]).arg(1).ignore();
        }
        pipe.query_async::<()>(&mut writer).await?;
        let written: Vec<String> = slice.iter().map(|&i| keys[i].clone()).collect();
        let rereads = all.iter_mut().map(|reader| {
            let written = &written;
            async move {
                let again = if tracking { reader.invalidated(written.len()).await? } else { written.clone() };
                reader.read(&again, tracking).await
            }
        });
        for result in futures_join(rereads).await {
            result?;
        }
    }
    let elapsed = started.elapsed();
    let client = sys::process_cpu().saturating_sub(client_at_start);
    let stats = server::end_window(admin, cpu_at_start).await?;
    let transfers = TRANSFERS / BATCH * BATCH;

    let mut sum = redis::pipe();
    for key in &keys {
        sum.cmd("HGET").arg(key).arg("balance");
    }
    let balances: Vec<i64> = sum.query_async(admin).await?;
    let total: i64 = balances.iter().sum();
    ensure!(total == 1000 * KEYS as i64, "Σ balance {total} after the run, expected {}", 1000 * KEYS);
    let (messages, invalidated_keys) = all.iter().fold((0, 0), |(m, k), r| (m + r.messages, k + r.keys));
    drop(all);
    server::clear(admin, server.is_private(), PREFIX).await?;
    Ok(Run {
        readers,
        transfers,
        messages,
        invalidated_keys,
        redis_us: stats.cpu.as_secs_f64() * 1e6 / transfers as f64,
        client_us: client.as_secs_f64() * 1e6 / transfers as f64,
        elapsed,
    })
}

/// Runs the futures concurrently on this task; their results in order.
async fn futures_join<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, fut) in out.iter_mut().zip(pinned.iter_mut()) {
            if slot.is_none() {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    out.into_iter().map(|o| o.expect("every future finished")).collect()
}

/// The figures from the two-engine bank row that decide whether tracking pays.
#[derive(Debug, Clone, Copy)]
pub struct Verdict {
    /// Callers of the two-engine row.
    pub callers: usize,
    /// Engines of the row.
    pub engines: usize,
    /// Its throughput.
    pub ops_per_sec: f64,
    /// Its round trips per operation.
    pub round_trips_per_op: f64,
    /// Stale hits over lookups, summed over both engines, percent.
    pub stale_rate: f64,
    /// Hits over lookups, percent.
    pub hit_rate: f64,
    /// Its mean run phase (`Outcome::timings.run`, wall time under the row's load), microseconds.
    pub run_phase_us: f64,
    /// What a rule run costs in CPU: the bank transfer's instantiate + run + diff without Redis
    /// (the per-invocation cost table), or the run phase when that was not measured; what a
    /// stale hit wastes and an invalidation-driven miss would not, microseconds.
    pub run_us: f64,
    /// Its client CPU per operation, microseconds.
    pub client_cpu_us: f64,
    /// Its Redis CPU per operation, microseconds.
    pub redis_cpu_us: f64,
    /// What tracking would save per invocation: stale rate × run, microseconds of client CPU
    /// (an upper bound: an invalidation that arrives after the run started saves nothing).
    pub saved_us: f64,
    /// What tracking would cost per invocation (one write, tracked by the `engines - 1` other
    /// engines), microseconds of Redis CPU, at the measured cost per reader.
    pub redis_cost_us: f64,
    /// The same in client CPU (sending `CLIENT CACHING`, receiving the pushes).
    pub client_cost_us: f64,
}

impl Verdict {
    /// Both costs, microseconds of CPU per invocation (client and Redis share this machine's
    /// cores).
    pub fn cost_us(&self) -> f64 {
        self.redis_cost_us.max(0.0) + self.client_cost_us.max(0.0)
    }

    /// Whether tracking pays clearly: it saves at least twice the CPU it costs (it also costs a
    /// connection per engine, a push handler and races to reason about).
    pub fn pays(&self) -> bool {
        self.saved_us >= 2.0 * self.cost_us()
    }
}

/// The verdict from the two-engine optimistic bank row with the most callers in `rows`, given
/// the measure and what a rule run costs in CPU (`run_cpu_us`, the bank transfer's
/// instantiate + run + diff without Redis, when measured).
pub fn verdict(rows: &[Row], measure: &Measure, run_cpu_us: Option<f64>) -> Option<Verdict> {
    let row = rows
        .iter()
        .filter(|r| r.imp.engine().is_some_and(|e| e.engines > 1 && e.mode == wasmtx::Mode::Optimistic && !e.tracking))
        .max_by_key(|r| r.concurrency)?;
    let cache = row.cache?;
    let engines = row.imp.engine()?.engines;
    let run_phase_us = row.phases.map_or(0.0, |p| p[2].as_secs_f64() * 1e6);
    let run_us = run_cpu_us.unwrap_or(run_phase_us);
    let stale_rate = cache.stale_rate()?;
    let others = (engines - 1) as f64;
    Some(Verdict {
        callers: row.concurrency,
        engines,
        ops_per_sec: row.ops_per_sec(),
        round_trips_per_op: row.round_trips_per_op,
        stale_rate,
        hit_rate: cache.hit_rate()?,
        run_phase_us,
        run_us,
        client_cpu_us: row.client_cpu_us,
        redis_cpu_us: row.redis_cpu_us,
        saved_us: stale_rate / 100.0 * run_us,
        redis_cost_us: others * measure.us_per_transfer_per_reader(),
        client_cost_us: others * measure.client_us_per_transfer_per_reader(),
    })
}

/// The engine's tracking as built (`BackendOptions::client_tracking`), measured: for each mode
/// with multi-engine bank rows, the row without tracking and the one with it, at the highest
/// concurrency both ran.
pub fn measured(rows: &[Row]) -> Vec<(&Row, &Row)> {
    let multi = |r: &&Row, tracking: bool| {
        r.workload == super::workloads::Workload::Bank
            && r.imp.engine().is_some_and(|e| e.engines > 1 && e.tracking == tracking)
    };
    let mut pairs = Vec::new();
    for mode in wasmtx::Mode::ALL {
        let of_mode = |r: &&Row| r.imp.engine().is_some_and(|e| e.mode == mode);
        let with = rows.iter().filter(|r| multi(r, true) && of_mode(r)).max_by_key(|r| r.concurrency);
        let Some(with) = with else { continue };
        let without = rows.iter().find(|r| multi(r, false) && of_mode(r) && r.concurrency == with.concurrency);
        if let Some(without) = without {
            pairs.push((without, with));
        }
    }
    pairs
}

/// Whether the built tracking paid in `pairs`: less CPU (client and Redis together) per
/// operation with it, in every pair.
pub fn measured_pays(pairs: &[(&Row, &Row)]) -> Option<bool> {
    if pairs.is_empty() {
        return None;
    }
    Some(pairs.iter().all(|(off, on)| on.client_cpu_us + on.redis_cpu_us < off.client_cpu_us + off.redis_cpu_us))
}

/// A bank transfer's instantiate + run + diff without Redis, mean, microseconds (the Rust rule's
/// line of the per-invocation cost table), if measured.
pub fn run_cpu_us(costs: &[Cost]) -> Option<f64> {
    costs.iter().find(|c| c.label == "bank transfer" && c.language == "Rust").map(|c| c.runtime[0].as_secs_f64() * 1e6)
}

/// The conclusion, for the printout and the section.
pub fn conclusion(verdict: Option<&Verdict>) -> String {
    let Some(v) = verdict else {
        return "no two-engine bank row in this run: run `--tracking-only` for the whole measure".into();
    };
    let same = "no round trip either way (an invalidation-driven miss is a load and a commit, 2 round trips, as a \
                stale hit is a refused commit and a recommit)";
    let verdict = if v.pays() { "tracking pays" } else { "tracking does not pay (it saves less than twice its cost)" };
    format!(
        "it predicts that {verdict}: it would save up to {:.1} µs of CPU per invocation (the wasted rule runs on \
         stale state) for {:.1} µs ({:.1} Redis + {:.1} client) per write, and {same}",
        v.saved_us,
        v.cost_us(),
        v.redis_cost_us,
        v.client_cost_us
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(readers: usize, redis_us: f64) -> Run {
        Run {
            readers,
            transfers: 100,
            messages: 0,
            invalidated_keys: 0,
            redis_us,
            client_us: redis_us / 2.0,
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn the_cost_per_reader_is_the_difference_over_the_readers() {
        let m = Measure {
            pairs: vec![(run(1, 10.0), run(1, 12.0)), (run(2, 20.0), run(2, 24.0))],
            invariant: Ok(String::new()),
        };
        assert!((m.us_per_transfer_per_reader() - 2.0).abs() < 1e-9);
    }

    #[test]
    fn tracking_pays_when_it_saves_twice_what_it_costs() {
        let v = |saved_us, redis_cost_us| Verdict {
            callers: 64,
            engines: 2,
            ops_per_sec: 1.0,
            round_trips_per_op: 1.5,
            stale_rate: 50.0,
            hit_rate: 90.0,
            run_phase_us: 20.0,
            run_us: 20.0,
            client_cpu_us: 100.0,
            redis_cpu_us: 30.0,
            saved_us,
            redis_cost_us,
            client_cost_us: 1.0,
        };
        assert!(v(10.0, 2.0).pays());
        assert!(!v(5.0, 2.0).pays());
        assert!(conclusion(Some(&v(5.0, 2.0))).starts_with("it predicts that tracking does not pay"));
        assert!(conclusion(Some(&v(10.0, 2.0))).starts_with("it predicts that tracking pays"));
        assert!(conclusion(None).starts_with("no two-engine"));
    }
}
