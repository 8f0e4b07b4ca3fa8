//! `cargo run --release --bin chaos -- --duration 60 --seed 7`: the chaos suite. Bank
//! transfers and list appends run in every mode, under several action names, on two engine
//! instances in this process for half the time, then over HTTP against three `wasmtx serve`
//! processes (one at a time killed with SIGKILL and restarted) for the other half, against a private `redis-server` (started on a free loopback port, stopped by PID
//! at the end) while faults are injected: connections killed, replies delayed past the response
//! timeout, the server killed and restarted, callers that give up after 0-5 ms. Then every
//! invariant is checked per effect (see `wasmtx_example_host::chaos`), a summary table is
//! printed, and the last line reads `chaos: N ops, F faults, V violations`. The exit code is 1
//! when any invariant was violated.
//!
//! Options (after `--`):
//! - `--duration SECS` how long the workloads run (default 60);
//! - `--seed N` the seed of every random choice (default: a random one, printed);
//! - `--callers N` concurrent callers (default 16); `--accounts N` (default 8), `--lists N`
//!   (default 6): few models, so that operations contend;
//! - `--faults kill,delay,restart` which faults to inject (default: all), `--no-faults` none;
//! - `--cancel-share F` the share of calls dropped after 0-5 ms (default 0.05);
//! - `--wasmtx PATH` the `wasmtx` binary for the HTTP half (default: the one beside this
//!   program, built with `cargo build --release --bin wasmtx` first if missing), `--no-http`
//!   to run everything in process.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use wasmtx_example_host::chaos::faults::FaultPlan;
use wasmtx_example_host::chaos::{self, ChaosConfig};

/// The `wasmtx` binary beside this program, built first if it is not there.
fn sibling_wasmtx() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("the program has no directory")?;
    let bin = dir.join(format!("wasmtx{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        eprintln!("chaos: building the wasmtx binary for the HTTP half…");
        let target_dir = dir.parent().context("the program is not in a cargo target directory")?;
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .args(["build", "--release", "-p", "wasmtx", "--bin", "wasmtx", "--target-dir"])
            .arg(target_dir)
            .current_dir(wasmtx_examples::workspace_root())
            .status()
            .context("running cargo build")?;
        if !status.success() || !bin.exists() {
            bail!("cargo build --release --bin wasmtx failed (or pass --wasmtx PATH, or --no-http)");
        }
    }
    Ok(bin)
}

fn parse_args() -> Result<ChaosConfig> {
    let mut config = ChaosConfig { seed: rand::random::<u32>().into(), ..ChaosConfig::default() };
    let mut http = true;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--duration" => config.duration = Duration::from_secs_f64(value()?.parse().context("--duration")?),
            "--seed" => config.seed = value()?.parse().context("--seed")?,
            "--callers" => config.callers = value()?.parse().context("--callers")?,
            "--accounts" => config.accounts = value()?.parse().context("--accounts")?,
            "--lists" => config.lists = value()?.parse().context("--lists")?,
            "--cancel-share" => config.cancel_share = value()?.parse().context("--cancel-share")?,
            "--no-faults" => config.faults = FaultPlan::none(),
            "--no-http" => http = false,
            "--wasmtx" => config.serve = Some(PathBuf::from(value()?)),
            "--faults" => {
                let mut plan = FaultPlan::none();
                for fault in value()?.split(',') {
                    match fault {
                        "kill" => plan.client_kill = true,
                        "delay" => plan.delayed_reply = true,
                        "restart" => plan.restart = true,
                        other => bail!("unknown fault {other:?} (kill, delay, restart)"),
                    }
                }
                config.faults = plan;
            }
            other => bail!("unknown option {other:?} (see the header of examples/host/src/bin/chaos.rs)"),
        }
    }
    if config.accounts < 2 || config.lists < 2 || config.callers == 0 || !(0.0..=1.0).contains(&config.cancel_share) {
        bail!("--accounts and --lists need at least 2, --callers at least 1, --cancel-share 0 to 1");
    }
    if !http {
        config.serve = None;
    } else if config.serve.is_none() {
        config.serve = Some(sibling_wasmtx()?);
    }
    Ok(config)
}

#[tokio::main]
async fn main() -> Result<()> {
    let config = parse_args()?;
    eprintln!("chaos: seed {} for {:?} (building the rules, starting Redis)…", config.seed, config.duration);
    let report = chaos::run(&config).await?;
    println!("{}", report.render());
    if report.total_violations() > 0 {
        std::process::exit(1);
    }
    Ok(())
}
