//! The HTTP row (issue 16): bank transfers through a `wasmtx serve` process on Redis, from
//! keep-alive clients on loopback (one connection each, each on its own pair of accounts so
//! the figure is the API's and not lock contention's), for a window: throughput, latency
//! percentiles, errors, and the server's resident memory sampled every second.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use serde_json::json;
use wasmtx_example_host::serve::ServeProcess;

const TOKEN: &str = "bench-http-token";

/// What the HTTP row measured.
#[derive(Debug, Clone)]
pub struct HttpRun {
    /// Connections (one client each).
    pub connections: usize,
    /// The measured window.
    pub window: Duration,
    /// Invocations answered 200.
    pub ok: u64,
    /// Invocations answered otherwise, or not at all.
    pub errors: u64,
    /// Latency percentiles of the answered invocations: p50, p99.
    pub p50: Duration,
    /// See `p50`.
    pub p99: Duration,
    /// The server's RSS in KiB, one sample a second.
    pub rss_kib: Vec<u64>,
    /// Each pair of accounts checked at the end: the receiving one holds exactly one unit per
    /// acknowledged transfer (warm-up included), and the pair's sum is conserved.
    pub invariant: Result<String, String>,
}

impl HttpRun {
    /// One Markdown table row: connections, ops/s, p50, p99, errors, RSS first → max → last,
    /// invariant.
    pub fn row(&self) -> String {
        let first = self.rss_kib.first().copied().unwrap_or(0);
        let max = self.rss_kib.iter().copied().max().unwrap_or(0);
        let last = self.rss_kib.last().copied().unwrap_or(0);
        format!(
            "| HTTP bank transfer, lock mode, {} keep-alive connections | {:.0} | {:.2} | {:.2} | {} | {:.1} → {:.1} → {:.1} MiB | {} |",
            self.connections,
            self.ok as f64 / self.window.as_secs_f64(),
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.errors,
            first as f64 / 1024.0,
            max as f64 / 1024.0,
            last as f64 / 1024.0,
            match &self.invariant {
                Ok(what) => format!("ok: {what}"),
                Err(why) => format!("**FAILED**: {why}"),
            },
        )
    }
}

fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Runs the row: `bin` serves on `redis_url` under `prefix`; `bank_transfer` is the rule's
/// bytes.
///
/// # Errors
/// If the server does not start or the setup requests fail.
pub async fn run(
    bin: &Path,
    redis_url: &str,
    prefix: &str,
    bank_transfer: Vec<u8>,
    connections: usize,
    window: Duration,
) -> Result<HttpRun> {
    let process = ServeProcess::start(
        bin,
        redis_url,
        prefix,
        &["--token", TOKEN, "--max-invocations-per-rule", "100000", "--max-in-flight", "100000"],
    )?;
    let (pid, url) = (process.pid(), process.url().to_owned());

    let http = reqwest::Client::new();
    let account = std::fs::read_to_string(wasmtx_examples::models_dir().join("account.toml"))?;
    let put =
        http.put(format!("{url}/v1/models/Account")).bearer_auth(TOKEN).header("content-type", "application/toml");
    ensure!(put.body(account).send().await?.status().is_success(), "defining Account");
    let upload = http.post(format!("{url}/v1/rules/bank-transfer")).bearer_auth(TOKEN).body(bank_transfer);
    ensure!(upload.send().await?.status().is_success(), "uploading bank-transfer");
    for i in 0..connections {
        let set = http.put(format!("{url}/v1/models/Account/http-{i}-a/fields/balance")).bearer_auth(TOKEN);
        ensure!(set.json(&json!(1_000_000_000_i64)).send().await?.status().is_success());
    }

    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for i in 0..connections {
        let (stop, measuring) = (stop.clone(), measuring.clone());
        let client = reqwest::Client::builder().pool_max_idle_per_host(1).build()?;
        let target = format!("{url}/v1/rules/bank-transfer/invoke");
        let body = json!({
            "models": [format!("Account:http-{i}-a"), format!("Account:http-{i}-b")],
            "action": "transfer",
            "input": {"amount": 1},
        })
        .to_string();
        clients.push(tokio::spawn(async move {
            let (mut latencies, mut errors, mut acked) = (Vec::new(), 0_u64, 0_i64);
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let sent = client
                    .post(&target)
                    .bearer_auth(TOKEN)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                let ok = match sent {
                    Ok(response) => response.status().is_success() && response.bytes().await.is_ok(),
                    Err(_) => false,
                };
                acked += i64::from(ok);
                if measuring.load(Ordering::Relaxed) {
                    if ok {
                        latencies.push(started.elapsed());
                    } else {
                        errors += 1;
                    }
                }
            }
            (latencies, errors, acked)
        }));
    }
    // Warm up one second, then measure.
    tokio::time::sleep(Duration::from_secs(1)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let mut rss_kib = vec![rss_of(pid)];
    while started.elapsed() < window {
        tokio::time::sleep(Duration::from_secs(1).min(window.saturating_sub(started.elapsed()))).await;
        rss_kib.push(rss_of(pid));
    }
    measuring.store(false, Ordering::Relaxed);
    let window = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (mut latencies, mut errors, mut acked) = (Vec::new(), 0, Vec::new());
    for client in clients {
        let (l, e, a) = client.await?;
        latencies.extend(l);
        errors += e;
        acked.push(a);
    }
    let invariant = check_pairs(&http, &url, &acked).await?;
    drop(process);
    latencies.sort_unstable();
    let at =
        |q: f64| latencies.get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1))).copied();
    Ok(HttpRun {
        connections,
        window,
        ok: latencies.len() as u64,
        errors,
        p50: at(0.50).unwrap_or_default(),
        p99: at(0.99).unwrap_or_default(),
        rss_kib,
        invariant,
    })
}

/// Each pair's balances against its acknowledged transfers.
async fn check_pairs(http: &reqwest::Client, url: &str, acked: &[i64]) -> Result<Result<String, String>> {
    const START: i64 = 1_000_000_000;
    let mut bad = Vec::new();
    for (i, &acked) in acked.iter().enumerate() {
        let mut balances = [0_i64; 2];
        for (balance, side) in balances.iter_mut().zip(["a", "b"]) {
            let read = http.get(format!("{url}/v1/models/Account/http-{i}-{side}")).bearer_auth(TOKEN).send().await?;
            let body: serde_json::Value = read.json().await?;
            *balance = body["fields"]["balance"].as_i64().with_context(|| format!("pair {i}: {body}"))?;
        }
        if balances != [START - acked, acked] {
            bad.push(format!("pair {i}: {balances:?} after {acked} acknowledged transfers"));
        }
    }
    let total: i64 = acked.iter().sum();
    Ok(if bad.is_empty() {
        Ok(format!("each of {} pairs moved exactly its acknowledged transfers ({total} in all)", acked.len()))
    } else {
        Err(bad.join("; "))
    })
}
