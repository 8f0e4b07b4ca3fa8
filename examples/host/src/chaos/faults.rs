//! The faults a chaos run injects into the Redis the engines use, one at a time at random
//! intervals: connections killed (`CLIENT KILL`), replies delayed past the engines' response
//! timeout (a script that keeps Redis busy, sent by another client), and the server killed
//! with SIGKILL and started again on its data while locks are held.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, Result};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::sync::watch;

use super::server::ChaosRedis;

/// Which faults to inject, and how often.
#[derive(Debug, Clone)]
pub struct FaultPlan {
    /// Kill some of the engines' connections.
    pub client_kill: bool,
    /// Keep Redis busy past the engines' response timeout.
    pub delayed_reply: bool,
    /// Kill the server and start it again.
    pub restart: bool,
    /// The pause between two faults is drawn from this range.
    pub interval: (Duration, Duration),
    /// The engines' response timeout: a delay lasts longer than it.
    pub response_timeout: Duration,
}

impl Default for FaultPlan {
    fn default() -> Self {
        Self {
            client_kill: true,
            delayed_reply: true,
            restart: true,
            interval: (Duration::from_millis(100), Duration::from_millis(600)),
            response_timeout: Duration::from_millis(250),
        }
    }
}

impl FaultPlan {
    /// No faults at all (a calm run, for comparison).
    pub fn none() -> Self {
        Self { client_kill: false, delayed_reply: false, restart: false, ..Self::default() }
    }

    fn kinds(&self) -> Vec<Fault> {
        let mut kinds = Vec::new();
        // Weights: kills are cheap and common, restarts rarer.
        if self.client_kill {
            kinds.extend([Fault::ClientKill; 5]);
        }
        if self.delayed_reply {
            kinds.extend([Fault::DelayedReply; 3]);
        }
        if self.restart {
            kinds.push(Fault::Restart);
        }
        kinds
    }
}

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    ClientKill,
    DelayedReply,
    Restart,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Self::ClientKill => "CLIENT KILL of engine connections",
            Self::DelayedReply => "reply delayed past the response timeout",
            Self::Restart => "Redis killed (SIGKILL) and restarted",
        }
    }
}

/// Injects faults into `server` until `stop` turns true; returns the server and how many
/// faults of each kind it injected.
///
/// # Errors
/// If the server cannot be started again after a restart (other faults that fail, because the
/// server is down or busy, are simply not counted).
pub async fn inject(
    mut server: ChaosRedis,
    plan: FaultPlan,
    seed: u64,
    mut stop: watch::Receiver<bool>,
) -> Result<(ChaosRedis, BTreeMap<&'static str, u64>)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut injected = BTreeMap::new();
    let kinds = plan.kinds();
    if kinds.is_empty() {
        let _ = stop.wait_for(|s| *s).await;
        return Ok((server, injected));
    }
    // Each kind once first, in a random order, so that even a short run sees every kind.
    let mut first: Vec<Fault> = Vec::new();
    for kind in &kinds {
        if !first.contains(kind) {
            first.insert(rng.random_range(0..=first.len()), *kind);
        }
    }
    loop {
        let pause = rng.random_range(plan.interval.0..=plan.interval.1);
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return Ok((server, injected)),
            () = tokio::time::sleep(pause) => {}
        }
        let fault = first.pop().unwrap_or_else(|| kinds[rng.random_range(0..kinds.len())]);
        let done = match fault {
            Fault::ClientKill => kill_clients(&server, &mut rng).await.is_ok(),
            Fault::DelayedReply => {
                let busy = plan.response_timeout + Duration::from_millis(rng.random_range(50..=400));
                delay_replies(&server, busy).await.is_ok()
            }
            Fault::Restart => {
                server.crash_and_restart().await.context("restarting the chaos Redis")?;
                true
            }
        };
        if done {
            *injected.entry(fault.name()).or_default() += 1;
        }
    }
}

/// Kills a random non-empty subset of the other clients' connections.
async fn kill_clients(server: &ChaosRedis, rng: &mut StdRng) -> Result<()> {
    let mut conn = server.patient_connection().await?;
    let own: u64 = redis::cmd("CLIENT").arg("ID").query_async(&mut conn).await?;
    let list: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut conn).await?;
    let ids: Vec<u64> = list
        .lines()
        .filter_map(|line| line.split_whitespace().find_map(|w| w.strip_prefix("id=")))
        .filter_map(|id| id.parse().ok())
        .filter(|&id| id != own)
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let first = rng.random_range(0..ids.len());
    for (i, id) in ids.iter().enumerate() {
        if i == first || rng.random_bool(0.5) {
            // A connection that closed meanwhile is fine.
            let _: redis::RedisResult<redis::Value> =
                redis::cmd("CLIENT").arg("KILL").arg("ID").arg(id).query_async(&mut conn).await;
        }
    }
    Ok(())
}

/// Keeps Redis busy for `busy` with a script, from a connection of its own: every reply the
/// engines wait for meanwhile comes late.
async fn delay_replies(server: &ChaosRedis, busy: Duration) -> Result<()> {
    let mut conn = server.patient_connection().await?;
    let script = "local t = redis.call('TIME') local start = t[1] * 1000000 + t[2] \
                  repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - start > tonumber(ARGV[1]) return 1";
    let micros = u64::try_from(busy.as_micros())?;
    let _: i64 = redis::cmd("EVAL").arg(script).arg(0).arg(micros).query_async(&mut conn).await?;
    Ok(())
}
