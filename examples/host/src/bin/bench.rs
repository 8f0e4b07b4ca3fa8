//! `cargo run --release --bin bench`: measures the engine against the baselines a user would
//! pick instead (one Lua script per operation; a hand-written `SET NX PX` lock protocol) on
//! one Redis, and writes `examples/host/BENCHMARKS.md`.
//!
//! Options (after `--`):
//! - `--duration SECS` measured window per row (default 2), `--warmup SECS` (default 0.5);
//! - `--concurrency 1,16,64`, `--workloads hot,bank,level,append,fair`, `--impls lock,lock1,optimistic,
//!   optimistic-cold,optimistic-2e,pipeline,lua,hand` (defaults: all; `lock1` is lock mode without
//!   grouping; `optimistic` runs on the snapshot cache, `optimistic-cold` with it disabled (bank,
//!   level); `optimistic-2e` splits the callers across two engines, each with its own store
//!   connection and cache, on the same accounts (bank, 2 callers or more)); engine rows report the
//!   cache's hit and stale-hit rates; the engine configurations are the table
//!   `bench::impls::ENGINES`;
//! - `fair` (issue 18): two engines on one hot counter, each with its own connection and local
//!   lines, 16 callers each (or each `--concurrency` given), `lock1` and `lock`: each engine's
//!   share of the turns, latencies and longest lock wait;
//! - `--redis-url URL` to use a running Redis (default: start a private `redis-server` on a
//!   free loopback port, stopped at the end);
//! - `--iterations N` runs per rule for the per-invocation cost (default 20000);
//! - `--soak SECS` also run the memory-flatness run (`--soak 60` for the issue's figure),
//!   `--soak-only` to run only that;
//! - `--http-only` run only the HTTP row (issue 16): bank transfers through a `wasmtx serve`
//!   process from `--http-connections N` (default 64) keep-alive clients for `--duration` (use
//!   60 for the issue's figure), with `--wasmtx PATH` (default: `wasmtx` beside this binary,
//!   `cargo build --release --bin wasmtx`); prints the row and writes the HTTP section of the
//!   results file (the rest of it kept);
//! - `--cluster-only` run only the Redis Cluster section (issue 12): a private cluster of 3
//!   primaries beside the private single server, and on each the hot counter and a ledger bank
//!   (1,000 accounts placed by ledger, 100 ledgers of 10, so both accounts of a transfer share a
//!   slot) at 16 and 64 callers (or `--concurrency`), engine lock, engine optimistic, Lua and
//!   hand-written lock (or `--impls`), with the Redis figures summed over the primaries and the
//!   busiest one's share; then what announcing lock releases costs with classic `PUBLISH` and
//!   with sharded `SPUBLISH`. Prints them and writes the cluster section of the results file
//!   (the rest of it kept);
//! - `--tracking-only` run only the client-side tracking measure (issue 13; part of every full
//!   run, about 10 s): what `CLIENT TRACKING` (opt-in, redirected to a listener connection)
//!   costs Redis per write with 1-3 other clients tracking the written accounts, against the same
//!   writes and reads without it, and the two-engine bank rows at 64 callers (or
//!   `--concurrency`), optimistic and adaptive, tracking off and on (the engine's
//!   `client_tracking`); prints them and writes the tracking section of the results file (the
//!   rest of it kept);
//! - `--stall-only` run only the looping-neighbour measure (a trivial invocation beside 8 rules
//!   looping to their deadline; part of every full run);
//! - `--as-rule PATH` an AssemblyScript build of the counter rule (input `{"delta": 1}` on a model
//!   with an int `count`), measured beside the built-in Rust/AssemblyScript twins;
//! - `--out PATH` where to write the results (default `examples/host/BENCHMARKS.md`, written only
//!   by a run of the whole matrix unless `--out` is given), `--no-write` to only print them.
//!
//! Whenever the results file is written, SVG charts go beside it in `bench-charts/` (per
//! workload: `<workload>-throughput.svg`, ops/s against callers, and `<workload>-latency.svg`,
//! p50 and p99 against callers, a line per implementation), linked under each workload's table.
//! Before each row a progress line (`[3/42] bank, engine, lock, 64 callers … ETA 1m 52s`) is
//! redrawn in place when stderr is a terminal, and printed as a plain line otherwise.

#[path = "../bench/mod.rs"]
mod bench;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use bench::cluster::Cluster;
use bench::cluster_report;
use bench::deploy::Deployment;
use bench::fair::{self, Fairness};
use bench::impls::Impl;
use bench::overhead::{self, Case, Cost, int};
use bench::progress::Progress;
use bench::report::{self, Context};
use bench::run::{self, Row, Timing};
use bench::server::RedisUnderTest;
use bench::workloads::Workload;
use bench::{charts, soak, stall, sys};
use wasmtx::{FieldType, FieldValue, ModelSchema, Scalar, ScalarKind};
use wasmtx_examples::rules::{RuleArtifacts, build_assemblyscript_rules};
use wasmtx_examples::{models_dir, workspace_root};

#[derive(Debug)]
struct Args {
    window: Duration,
    warmup: Duration,
    concurrency: Vec<usize>,
    workloads: Vec<Workload>,
    fair: bool,
    concurrency_given: bool,
    impls: Option<Vec<String>>,
    redis_url: Option<String>,
    iterations: usize,
    soak: Option<Duration>,
    soak_only: bool,
    stall_only: bool,
    http_only: bool,
    cluster_only: bool,
    tracking_only: bool,
    http_connections: usize,
    wasmtx: Option<PathBuf>,
    as_rule: Option<PathBuf>,
    out: Option<PathBuf>,
    no_write: bool,
    full_matrix: bool,
    raw: Vec<String>,
}

fn parse_args() -> Result<Args> {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let mut args = Args {
        window: Duration::from_secs(2),
        warmup: Duration::from_millis(500),
        concurrency: vec![1, 16, 64],
        workloads: Workload::ALL.to_vec(),
        fair: true,
        concurrency_given: false,
        impls: None,
        redis_url: None,
        iterations: 20_000,
        soak: None,
        soak_only: false,
        stall_only: false,
        http_only: false,
        cluster_only: false,
        tracking_only: false,
        http_connections: 64,
        wasmtx: None,
        as_rule: None,
        out: None,
        no_write: false,
        full_matrix: true,
        raw: raw.clone(),
    };
    let mut it = raw.into_iter();
    let secs = |v: Option<String>, name: &str| -> Result<Duration> {
        let v = v.with_context(|| format!("{name} needs a value"))?;
        Ok(Duration::from_secs_f64(v.parse().with_context(|| format!("{name} {v}"))?))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--duration" => args.window = secs(it.next(), "--duration")?,
            "--warmup" => args.warmup = secs(it.next(), "--warmup")?,
            "--concurrency" => {
                args.concurrency = it
                    .next()
                    .context("--concurrency needs a list")?
                    .split(',')
                    .map(|c| c.trim().parse().with_context(|| format!("concurrency {c}")))
                    .collect::<Result<_>>()?;
                args.concurrency_given = true;
                args.full_matrix = false;
            }
            "--workloads" => {
                let names: Vec<String> =
                    it.next().context("--workloads needs a list")?.split(',').map(|w| w.trim().to_owned()).collect();
                args.fair = names.iter().any(|w| w == "fair");
                args.workloads = names
                    .iter()
                    .filter(|w| *w != "fair")
                    .map(|w| {
                        Workload::parse(w)
                            .with_context(|| format!("unknown workload {w} (hot, bank, level, append, fair)"))
                    })
                    .collect::<Result<_>>()?;
                args.full_matrix = false;
            }
            "--impls" => {
                let impls: Vec<String> =
                    it.next().context("--impls needs a list")?.split(',').map(|s| s.trim().to_owned()).collect();
                if let Some(unknown) = impls.iter().find(|i| Impl::parse(i).is_none()) {
                    bail!("unknown implementation {unknown} ({})", Impl::keys().join(", "));
                }
                args.impls = Some(impls);
                args.full_matrix = false;
            }
            "--redis-url" => args.redis_url = Some(it.next().context("--redis-url needs a URL")?),
            "--iterations" => args.iterations = it.next().context("--iterations needs a number")?.parse()?,
            "--soak" => args.soak = Some(secs(it.next(), "--soak")?),
            "--soak-only" => {
                args.soak_only = true;
                args.soak = args.soak.or(Some(Duration::from_secs(60)));
            }
            "--http-only" => args.http_only = true,
            "--cluster-only" => args.cluster_only = true,
            "--tracking-only" => args.tracking_only = true,
            "--http-connections" => {
                args.http_connections = it.next().context("--http-connections needs a number")?.parse()?;
            }
            "--wasmtx" => args.wasmtx = Some(it.next().context("--wasmtx needs a path")?.into()),
            "--stall-only" => {
                args.stall_only = true;
                args.full_matrix = false;
            }
            "--as-rule" => args.as_rule = Some(it.next().context("--as-rule needs a path")?.into()),
            "--out" => args.out = Some(it.next().context("--out needs a path")?.into()),
            "--no-write" => args.no_write = true,
            "-h" | "--help" => {
                println!(
                    "{}",
                    include_str!("bench.rs")
                        .lines()
                        .take_while(|l| l.starts_with("//!"))
                        .map(|l| l.trim_start_matches("//!").trim_start())
                        .collect::<Vec<_>>()
                        .join("\n")
                );
                std::process::exit(0);
            }
            other => bail!("unknown option {other} (try --help)"),
        }
    }
    Ok(args)
}

/// The per-invocation cost cases: the benchmark's Rust rules, and the rules that exist in both
/// Rust and AssemblyScript (same input, same writes) for the language comparison.
fn cost_cases(rules: &RuleArtifacts, as_rule: Option<&PathBuf>) -> Result<Vec<Case>> {
    let counter = ModelSchema::builder("HitCounter").field("count", FieldType::Scalar(ScalarKind::Int)).build()?;
    let account = ModelSchema::from_path(models_dir().join("account.toml"))?;
    let character = ModelSchema::from_path(models_dir().join("game_character.toml"))?;
    let profile = ModelSchema::from_path(models_dir().join("user_profile.toml"))?;
    let skills = FieldValue::Dict(
        [("sword", 1), ("shield", 1), ("magic", 1)].into_iter().map(|(k, v)| (k.to_owned(), Scalar::Int(v))).collect(),
    );
    let probe_input = r#"{"ops":[{"op":"increment","model":0,"field":"count","delta":1}]}"#;
    let profile_input = r#"{"new_email":"ada@example.com","theme":"dark"}"#;
    let case = |label: &str, language, host_calls, bytes, models, action, input: &str, rotate_keys| Case {
        label: label.into(),
        language,
        rotate_keys,
        host_calls,
        bytes,
        models,
        action,
        input: input.into(),
    };
    let one_counter = || vec![(counter.clone(), "hot".to_owned(), vec![])];
    let one_profile =
        || vec![(profile.clone(), "ada".to_owned(), vec![("username", FieldValue::Scalar(Scalar::Str("ada".into())))])];
    let mut cases = vec![
        case(
            "counter (the hot counter's rule)",
            "Rust",
            "1",
            rules.read("counter")?,
            one_counter(),
            "bump",
            r#"{"delta":1}"#,
            false,
        ),
        case(
            "bank transfer",
            "Rust",
            "4 (typed models: 2 loads, 2 saves)",
            rules.read("bank_transfer")?,
            vec![
                (account.clone(), "alice".into(), vec![("balance", int(1_000_000_000_000))]),
                (account, "bob".into(), vec![]),
            ],
            "transfer",
            r#"{"amount":1}"#,
            false,
        ),
        case(
            "level-up (a level gained)",
            "Rust",
            "8",
            rules.read("level_up")?,
            vec![(character, "hero".into(), vec![("skills", skills)])],
            "level_up",
            r#"{"exp_gained":1500}"#,
            true,
        ),
        case("probe: one increment", "Rust", "1", rules.read("probe")?, one_counter(), "bump", probe_input, false),
        case(
            "probe: one increment",
            "AssemblyScript",
            "1",
            rules.read("probe_as")?,
            one_counter(),
            "bump",
            probe_input,
            false,
        ),
        case("user profile", "Rust", "9", rules.read("user_profile")?, one_profile(), "settings", profile_input, true),
        case(
            "user profile",
            "AssemblyScript",
            "9",
            rules.read("user_profile_as")?,
            one_profile(),
            "settings",
            profile_input,
            true,
        ),
    ];
    if let Some(path) = as_rule {
        let bytes = std::fs::read(path).with_context(|| path.display().to_string())?;
        cases.push(case(
            "counter (--as-rule)",
            "AssemblyScript",
            "1",
            bytes,
            one_counter(),
            "bump",
            r#"{"delta":1}"#,
            false,
        ));
    }
    Ok(cases)
}

/// Where the results go by default.
fn default_out() -> PathBuf {
    workspace_root().join("examples").join("host").join("BENCHMARKS.md")
}

/// What the results file says about this run.
fn context(args: &Args, redis: String, load_before: String, started: Instant) -> Context {
    let command = if args.raw.is_empty() {
        "cargo run --release --bin bench".to_owned()
    } else {
        format!("cargo run --release --bin bench -- {}", args.raw.join(" "))
    };
    Context {
        command,
        machine: sys::machine(),
        redis,
        commit: sys::git_commit(&workspace_root()),
        rustc: sys::rustc_version(),
        date: date(),
        load: (load_before, sys::load_average()),
        warmup: args.warmup,
        window: args.window,
        total: started.elapsed(),
    }
}

/// One row's figures on stderr, as it finishes (the cluster rows with where they ran, the
/// busiest node's share and the releases announced).
fn print_row(row: &Row) {
    let cluster = if row.on == "cluster" {
        format!("  busiest node {:.0} %  {:.2} PUBLISH/op  ", row.stats.busiest_share(), row.calls_per_op("publish"))
    } else {
        String::new()
    };
    eprintln!(
        "bench: {:>6} c={:<3} {:<28} {:>8.0} ops/s  p50 {:>7.2} ms  p99 {:>7.2} ms  {:>5.1} cmds/op  {:>4.2} RT/op  {:>5.0} µs CPU/op  {:>5.0} µs Redis CPU/op  {cluster}{}{}",
        row.workload,
        row.concurrency,
        row.imp.label(),
        row.ops_per_sec(),
        row.p50.as_secs_f64() * 1e3,
        row.p99.as_secs_f64() * 1e3,
        row.commands_per_op,
        row.round_trips_per_op,
        row.client_cpu_us,
        row.redis_cpu_us,
        if row.errors > 0 {
            format!("{} errors ({}) ", row.errors, row.first_error.clone().unwrap_or_default())
        } else {
            String::new()
        },
        match &row.invariant {
            Ok(_) => "invariant ok".to_owned(),
            Err(e) => format!("INVARIANT FAILED: {e}"),
        }
    );
    if let Some((hit, stale)) = row.cache.and_then(|c| c.hit_rate().zip(c.stale_rate())) {
        let c = row.cache.unwrap_or_default();
        eprintln!(
            "bench:        snapshot cache: {hit:.1} % hits, {stale:.1} % stale hits ({} hits, {} misses, {} stale)",
            c.hits, c.misses, c.stale_hits
        );
    }
    if let Some([wait, load, run, commit]) = row.phases {
        eprintln!(
            "bench:        mean outcome timings: wait {:.0} µs, load {:.0} µs, run {:.1} µs, commit {:.0} µs",
            wait.as_secs_f64() * 1e6,
            load.as_secs_f64() * 1e6,
            run.as_secs_f64() * 1e6,
            commit.as_secs_f64() * 1e6
        );
    }
}

/// Writes `section` as the results file's kept section `name` (under `heading`), the rest of
/// the previous file kept: what a run that measures only that section writes.
fn write_section(out: &Path, previous: Option<&str>, name: &str, heading: &str, section: &str) -> Result<()> {
    let fresh = format!("<!-- keep:{name} -->\n{}\n<!-- /keep:{name} -->", section.trim());
    let text = match previous {
        Some(prev) => report::replace_kept(prev, &fresh, name, heading, "## Memory over a long run"),
        None => fresh,
    };
    std::fs::write(out, text).with_context(|| out.display().to_string())?;
    eprintln!("bench: wrote {}", out.display());
    Ok(())
}

/// `--cluster-only`: the hot counter and the ledger bank on the single server and on a private
/// cluster, row by row, then the Pub/Sub measure; prints them and writes the cluster section.
async fn cluster_only(args: &Args, rules: &RuleArtifacts, server: &mut RedisUnderTest, single: String) -> Result<()> {
    let (started, load_before) = (Instant::now(), sys::load_average());
    let mut cluster = Cluster::start().await?;
    let described = format!("{} on ports {:?} (PIDs {:?})", cluster.version, cluster.ports, cluster.pids());
    let timing = Timing { warmup: args.warmup, window: args.window };
    let callers = if args.concurrency_given { args.concurrency.clone() } else { vec![16, 64] };
    let imps = [Impl::LOCK, Impl::OPTIMISTIC, Impl::Lua, Impl::Hand];
    let planned: Vec<(Workload, usize, Impl)> = [Workload::HotCounter, Workload::Ledger]
        .into_iter()
        .flat_map(|w| callers.iter().flat_map(move |&c| imps.into_iter().map(move |i| (w, c, i))))
        .filter(|(_, _, imp)| args.impls.as_ref().is_none_or(|only| only.iter().any(|o| *o == imp.key())))
        .collect();
    let mut progress = Progress::new(planned.len() * 2, args.warmup + args.window);
    let mut rows: Vec<Row> = Vec::new();
    for (seq, (workload, concurrency, imp)) in planned.into_iter().enumerate() {
        // Each row on the single server, then on the cluster: the two share the machine's state.
        for (k, on) in [Deployment::Single(server), Deployment::Cluster(&cluster)].into_iter().enumerate() {
            progress.row(&format!("{workload}, {}, {concurrency} callers, {}", imp.label(), on.label()));
            let row = run::run_row(on, rules, workload, imp, concurrency, timing, 2 * seq + k + 1).await;
            progress.clear();
            let row = row?;
            print_row(&row);
            rows.push(row);
        }
    }
    eprintln!("bench: Pub/Sub on the cluster, {} messages per kind…", bench::pubsub::MESSAGES);
    let keys = wasmtx::store::redis::KeyLayout::new("wasmtx-bench");
    let counter = wasmtx::ModelId::new("HitCounter", "hot");
    let measure = bench::pubsub::measure(&cluster, &keys.data(&counter), &keys.lock(&counter, "bump")).await?;
    for run in &measure.runs {
        eprintln!(
            "bench:   {}: {} of {} received, {:.2} µs Redis CPU per message over the primaries ({:?})",
            run.kind.label(),
            run.received,
            run.sent,
            run.total_us(),
            run.node_us.iter().map(|us| format!("{us:.2}")).collect::<Vec<_>>()
        );
    }
    if let Some(row) = cluster_report::hot_lock_row(&rows) {
        let (share, publishes) = cluster_report::broadcast_of(row, &measure);
        eprintln!(
            "bench:   broadcast {:.2} µs per message × {publishes:.2} releases announced per hot-counter operation = {share:.1} % of its {:.0} µs Redis CPU: {}",
            measure.broadcast_us(),
            row.redis_cpu_us,
            bench::pubsub::conclusion(share)
        );
    }
    cluster.stop();
    server.stop();

    let mut ctx = context(args, single, load_before, started);
    ctx.total = started.elapsed();
    let section = cluster_report::cluster_section(&rows, Some(&measure), &ctx, &described);
    println!("{section}");
    if !args.no_write {
        let out = args.out.clone().unwrap_or_else(default_out);
        let previous = std::fs::read_to_string(&out).ok();
        write_section(&out, previous.as_deref(), "cluster", cluster_report::CLUSTER_HEADING, &section)?;
    }
    let failed = rows.iter().filter(|r| r.invariant.is_err()).count();
    ensure!(failed == 0, "{failed} invariant check(s) failed");
    Ok(())
}

/// Prints the tracking measure's figures as they come.
fn print_tracking(t: &bench::tracking::Measure) {
    for (off, on) in &t.pairs {
        eprintln!(
            "bench:   tracking, {} reader(s): Redis CPU {:.2} → {:.2} µs/transfer, client CPU {:.2} → {:.2}; {:.2} invalidate pushes/transfer, {:.2} keys/push; {:.2} s / {:.2} s",
            on.readers,
            off.redis_us,
            on.redis_us,
            off.client_us,
            on.client_us,
            on.messages as f64 / on.transfers.max(1) as f64,
            on.invalidated_keys as f64 / on.messages.max(1) as f64,
            off.elapsed.as_secs_f64(),
            on.elapsed.as_secs_f64()
        );
    }
    eprintln!(
        "bench:   tracking costs {:.2} µs of Redis CPU and {:.2} µs of client CPU per transfer per tracking reader",
        t.us_per_transfer_per_reader(),
        t.client_us_per_transfer_per_reader()
    );
}

/// `--tracking-only`: the tracking measure and the two-engine bank rows, tracking off and on;
/// prints them and writes the tracking section.
async fn tracking_only(args: &Args, rules: &RuleArtifacts, server: &mut RedisUnderTest, redis: String) -> Result<()> {
    let (started, load_before) = (Instant::now(), sys::load_average());
    eprintln!("bench: client-side tracking, {} transfers per run…", bench::tracking::TRANSFERS);
    let at = Instant::now();
    let measure = bench::tracking::measure(server).await?;
    print_tracking(&measure);
    eprintln!("bench:   the tracking measure took {:.1} s", at.elapsed().as_secs_f64());
    // What a rule run costs in CPU, for the saving: the bank transfer's line of the cost table.
    let mut costs = Vec::new();
    for case in cost_cases(rules, None)?.into_iter().filter(|c| c.label == "bank transfer") {
        costs.push(overhead::measure(&case, args.iterations.min(5_000)).await?);
    }
    let timing = Timing { warmup: args.warmup, window: args.window };
    let callers = if args.concurrency_given { args.concurrency.clone() } else { vec![64] };
    let keys = ["optimistic-2e", "optimistic-2e-tracking", "adaptive-2e", "adaptive-2e-tracking"];
    let imps = keys.iter().map(|k| Impl::parse(k).with_context(|| format!("the implementation {k}")));
    let imps = imps.collect::<Result<Vec<_>>>()?;
    let mut rows = Vec::new();
    for c in callers {
        for &imp in &imps {
            let seq = rows.len() + 1;
            let row = run::run_row(Deployment::Single(server), rules, Workload::Bank, imp, c, timing, seq).await?;
            print_row(&row);
            rows.push(row);
        }
    }
    server.stop();
    let verdict = bench::tracking::verdict(&rows, &measure, bench::tracking::run_cpu_us(&costs));
    eprintln!("bench:   {}", bench::tracking::conclusion(verdict.as_ref()));
    let ctx = context(args, redis, load_before, started);
    let section = report::tracking_section(&measure, &rows, &costs, &ctx);
    println!("{section}");
    if !args.no_write {
        let out = args.out.clone().unwrap_or_else(default_out);
        let previous = std::fs::read_to_string(&out).ok();
        write_section(&out, previous.as_deref(), "tracking", report::TRACKING_HEADING, &section)?;
    }
    let failed = rows.iter().filter(|r| r.invariant.is_err()).count() + usize::from(measure.invariant.is_err());
    ensure!(failed == 0, "{failed} invariant check(s) failed");
    Ok(())
}

fn date() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// jemalloc, as the `wasmtx` binary has it (`--no-default-features`: the system allocator).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let started = Instant::now();
    let load_before = sys::load_average();
    eprintln!("bench: building the example rules…");
    let rules = build_assemblyscript_rules()?;

    let mut server = RedisUnderTest::start_or_use(args.redis_url.clone()).await?;
    let redis = match server.pid() {
        Some(pid) => format!("{} (private `redis-server`, pid {pid}, {}, no persistence)", server.version, server.url),
        None => format!("{} at {}", server.version, server.url),
    };
    eprintln!("bench: Redis {redis}");

    if args.cluster_only {
        return cluster_only(&args, rules, &mut server, redis).await;
    }

    if args.tracking_only {
        return tracking_only(&args, rules, &mut server, redis).await;
    }

    if args.http_only {
        let bin = match &args.wasmtx {
            Some(bin) => bin.clone(),
            None => std::env::current_exe()?.with_file_name("wasmtx"),
        };
        let prefix = format!("bench-http-{}", std::process::id());
        eprintln!("bench: HTTP row, {} connections, {} s…", args.http_connections, args.window.as_secs_f64());
        let bank = rules.read("bank_transfer")?;
        let run = bench::http::run(&bin, &server.url, &prefix, bank, args.http_connections, args.window).await?;
        server.stop();
        let ctx = context(&args, redis, load_before, started);
        let out = args.out.clone().unwrap_or_else(default_out);
        let previous = std::fs::read_to_string(&out).ok();
        let section = report::http_section(&run, &ctx, previous.as_deref());
        println!("{section}");
        if !args.no_write {
            write_section(&out, previous.as_deref(), "http", report::HTTP_HEADING, &section)?;
        }
        ensure!(run.errors == 0, "{} HTTP invocation(s) failed", run.errors);
        if let Err(why) = &run.invariant {
            bail!("the HTTP row's invariant failed: {why}");
        }
        return Ok(());
    }

    let mut costs: Vec<Cost> = Vec::new();
    let mut rows: Vec<Row> = Vec::new();
    if !args.soak_only && !args.stall_only {
        for case in cost_cases(rules, args.as_rule.as_ref())? {
            let cost = overhead::measure(&case, args.iterations).await?;
            eprintln!(
                "bench: {} ({}): {:.1} µs per fresh instance + run + diff (p99 {:.1}); whole invoke on the memory store {:.1} µs",
                cost.label,
                cost.language,
                cost.runtime[0].as_secs_f64() * 1e6,
                cost.runtime[2].as_secs_f64() * 1e6,
                cost.invoke_memory.as_secs_f64() * 1e6
            );
            costs.push(cost);
        }

        let timing = Timing { warmup: args.warmup, window: args.window };
        let planned: Vec<(Workload, usize, Impl)> = args
            .workloads
            .iter()
            .flat_map(|&w| args.concurrency.iter().flat_map(move |&c| w.impls().into_iter().map(move |i| (w, c, i))))
            .filter(|(_, c, imp)| imp.runs_with(*c))
            .filter(|(_, _, imp)| args.impls.as_ref().is_none_or(|only| only.iter().any(|o| *o == imp.key())))
            .collect();
        let mut progress = Progress::new(planned.len(), args.warmup + args.window);
        for (seq, (workload, concurrency, imp)) in planned.into_iter().enumerate() {
            progress.row(&format!("{workload}, {}, {concurrency} callers", imp.label()));
            let row =
                run::run_row(Deployment::Single(&server), rules, workload, imp, concurrency, timing, seq + 1).await;
            progress.clear();
            let row = row?;
            print_row(&row);
            rows.push(row);
        }
    }

    let mut fairness: Vec<Fairness> = Vec::new();
    if args.fair && !args.soak_only && !args.stall_only {
        let timing = Timing { warmup: args.warmup, window: args.window };
        let callers = if args.concurrency_given { args.concurrency.clone() } else { vec![16] };
        let imps = [Impl::LOCK1, Impl::LOCK];
        for (i, imp) in imps.into_iter().enumerate() {
            if args.impls.as_ref().is_some_and(|only| !only.iter().any(|o| *o == imp.key())) {
                continue;
            }
            for (j, &c) in callers.iter().enumerate() {
                let f = fair::run(&server, rules, imp, c, timing, i * 100 + j).await?;
                eprintln!(
                    "bench:   fair {} engines × {c} callers, {:<28} {}  share ratio {:.2}  {}",
                    f.engines.len(),
                    imp.label(),
                    f.engines
                        .iter()
                        .enumerate()
                        .map(|(e, s)| format!(
                            "[engine {}: {} ops ({:.1} %), p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms, max wait {:.1} ms, {} errors]",
                            e + 1,
                            s.ops,
                            f.share(e),
                            s.p50.as_secs_f64() * 1e3,
                            s.p99.as_secs_f64() * 1e3,
                            s.max.as_secs_f64() * 1e3,
                            s.max_wait.as_secs_f64() * 1e3,
                            s.errors
                        ))
                        .collect::<Vec<_>>()
                        .join(" "),
                    f.ratio(),
                    match &f.invariant {
                        Ok(_) => "invariant ok".to_owned(),
                        Err(e) => format!("INVARIANT FAILED: {e}"),
                    }
                );
                fairness.push(f);
            }
        }
    }

    let stall = if args.full_matrix || args.stall_only {
        eprintln!("bench: a trivial invocation beside 8 looping rules…");
        let s = stall::run(&server, rules, 8, args.window.max(Duration::from_secs(2))).await?;
        eprintln!(
            "bench: trivial invocation alone p50 {:.2} ms p99 {:.2} ms; beside {} looping rules p50 {:.2} ms p99 {:.2} ms (max {:.2} ms, {} looping runs)",
            s.alone.p50.as_secs_f64() * 1e3,
            s.alone.p99.as_secs_f64() * 1e3,
            s.loopers,
            s.with.p50.as_secs_f64() * 1e3,
            s.with.p99.as_secs_f64() * 1e3,
            s.with.max.as_secs_f64() * 1e3,
            s.looping_runs
        );
        Some(s)
    } else {
        None
    };

    let tracking = if args.full_matrix {
        eprintln!("bench: client-side tracking, {} transfers per run…", bench::tracking::TRANSFERS);
        let t = bench::tracking::measure(&server).await?;
        print_tracking(&t);
        let verdict = bench::tracking::verdict(&rows, &t, bench::tracking::run_cpu_us(&costs));
        eprintln!("bench:   {}", bench::tracking::conclusion(verdict.as_ref()));
        Some(t)
    } else {
        None
    };

    let soak = match args.soak {
        Some(duration) => {
            eprintln!("bench: memory run for {} s…", duration.as_secs());
            let s = soak::run(&server, rules, duration, 64).await?;
            eprintln!(
                "bench: RSS {:.1} MiB after warm-up → {:.1} MiB at the end (max {:.1}), slope {:.0} KiB/min",
                s.warm_rss() as f64 / 1024.0,
                s.final_rss() as f64 / 1024.0,
                s.max_rss() as f64 / 1024.0,
                s.slope_kib_per_min()
            );
            Some(s)
        }
        None => None,
    };
    server.stop();

    let ctx = context(&args, redis, load_before, started);
    let out = args.out.clone().unwrap_or_else(default_out);
    let previous = std::fs::read_to_string(&out).ok();
    let text = report::markdown(
        &ctx,
        &rows,
        &report::Measured {
            costs: &costs,
            fairness: &fairness,
            stall: stall.as_ref(),
            soak: soak.as_ref(),
            tracking: tracking.as_ref(),
        },
        previous.as_deref(),
    );
    println!("{text}");
    let write = !args.no_write && (args.out.is_some() || args.full_matrix || args.soak_only);
    if write {
        let text = if args.soak_only {
            // Only the memory section is new: keep the rest of the previous file.
            match previous.as_deref() {
                Some(prev) => report::replace_kept(prev, &text, "soak", "## Memory over a long run", "## Analysis"),
                None => text,
            }
        } else {
            text
        };
        std::fs::write(&out, text).with_context(|| out.display().to_string())?;
        eprintln!("bench: wrote {}", out.display());
        if !args.soak_only {
            for path in charts::write_all(&out, &rows)? {
                eprintln!("bench: wrote {}", path.display());
            }
        }
    } else {
        eprintln!("bench: partial run, results not written (pass --out PATH to write them)");
    }
    let failed = rows.iter().filter(|r| r.invariant.is_err()).count()
        + fairness.iter().filter(|f| f.invariant.is_err()).count()
        + soak.iter().flat_map(|s| &s.invariants).filter(|i| i.is_err()).count()
        + tracking.iter().filter(|t| t.invariant.is_err()).count();
    if failed > 0 {
        bail!("{failed} invariant check(s) failed");
    }
    Ok(())
}
