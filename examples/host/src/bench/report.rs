//! The results as Markdown: the context of the run, the targets of issue 6 evaluated on the
//! figures, one table per workload, the per-invocation cost and the memory run. Sections
//! between `<!-- keep:NAME -->` markers of an earlier results file are carried over when
//! this run did not produce them (the long memory run, the HTTP row, the Redis Cluster
//! section of `--cluster-only`, the written analysis).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::charts;
use super::fair::Fairness;
use super::http::HttpRun;
use super::impls::Impl;
use super::overhead::Cost;
use super::run::Row;
use super::soak::Soak;
use super::stall::{Latency, Stall};
use super::tracking::{self, Measure as Tracking};
use super::workloads::Workload;

/// What the run was.
#[derive(Debug, Clone)]
pub struct Context {
    /// The command line, as typed.
    pub command: String,
    /// `sys::machine()`.
    pub machine: String,
    /// Redis version and where it ran.
    pub redis: String,
    /// The checked-out commit.
    pub commit: String,
    /// `rustc --version`.
    pub rustc: String,
    /// UTC date and time.
    pub date: String,
    /// Load average before and after.
    pub load: (String, String),
    /// Warm-up and window per row.
    pub warmup: Duration,
    /// The measured window per row.
    pub window: Duration,
    /// Total wall time of the run.
    pub total: Duration,
}

/// A target of the issue, with the figure that decides it.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The target.
    pub target: String,
    /// The measured figures.
    pub figure: String,
    /// Met, missed, or not measured in this run.
    pub met: Option<bool>,
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 10.0 { format!("{ms:.2}") } else { format!("{ms:.1}") }
}

fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

fn find(rows: &[Row], w: Workload, imp: Impl, c: usize) -> Option<&Row> {
    rows.iter().find(|r| r.workload == w && r.imp == imp && r.concurrency == c)
}

/// Evaluates the targets on this run's figures.
/// The hot counter's target for `imp` at 64 callers: at least `min_ratio` × the hand-written
/// lock's ops/s, p99 under `max_p99`.
fn hot_verdict(rows: &[Row], imp: Impl, min_ratio: f64, max_p99: Duration) -> Verdict {
    let (figure, met) =
        match (find(rows, Workload::HotCounter, imp, 64), find(rows, Workload::HotCounter, Impl::Hand, 64)) {
            (Some(e), Some(h)) => {
                let r = e.ops_per_sec() / h.ops_per_sec();
                (
                    format!(
                        "{:.0} ops/s = {r:.1}× hand-written ({:.0}); p99 {} ms",
                        e.ops_per_sec(),
                        h.ops_per_sec(),
                        ms(e.p99)
                    ),
                    Some(r >= min_ratio && e.p99 < max_p99),
                )
            }
            _ => ("not measured".into(), None),
        };
    let mode = if imp == Impl::LOCK { "lock mode".to_owned() } else { imp.key().to_owned() };
    Verdict {
        target: format!(
            "hot counter at 64 callers, {mode}: ≥ {min_ratio}× hand-written lock, p99 < {} ms",
            max_p99.as_millis()
        ),
        figure,
        met,
    }
}

pub fn verdicts(rows: &[Row], costs: &[Cost], soak: Option<&Soak>) -> Vec<Verdict> {
    let mut out = Vec::new();

    // 1. Two round trips per uncontended lock-mode invocation.
    let uncontended: Vec<(Workload, f64)> = Workload::ALL
        .into_iter()
        .filter_map(|w| find(rows, w, Impl::LOCK, 1).map(|r| (w, r.round_trips_per_op)))
        .collect();
    out.push(Verdict {
        target: "lock mode: exactly 2 round trips per uncontended invocation".into(),
        figure: uncontended.iter().map(|(w, rt)| format!("{w}: {rt:.3}")).collect::<Vec<_>>().join(", "),
        met: (!uncontended.is_empty()).then(|| uncontended.iter().all(|(_, rt)| (rt - 2.0).abs() < 0.005)),
    });

    // 2. Uniform keys at 64 callers.
    for w in [Workload::Bank, Workload::LevelUp] {
        let engine = find(rows, w, Impl::LOCK, 64);
        let hand = find(rows, w, Impl::Hand, 64);
        let lua = find(rows, w, Impl::Lua, 64);
        let (figure, met) = match (engine, hand, lua) {
            (Some(e), Some(h), Some(l)) => {
                let (rh, rl) = (e.ops_per_sec() / h.ops_per_sec(), e.ops_per_sec() / l.ops_per_sec());
                (
                    format!(
                        "{:.0} ops/s = {rh:.2}× hand-written ({:.0}), {rl:.2}× Lua ({:.0})",
                        e.ops_per_sec(),
                        h.ops_per_sec(),
                        l.ops_per_sec()
                    ),
                    Some(rh >= 0.8 && rl >= 0.5),
                )
            }
            _ => ("not measured".into(), None),
        };
        out.push(Verdict {
            target: format!("{w} at 64 callers, lock mode: ≥ 0.8× hand-written lock and ≥ 0.5× Lua"),
            figure,
            met,
        });
    }

    // 3. Hot counter at 64 callers.
    out.push(hot_verdict(rows, Impl::LOCK, 5.0, Duration::from_millis(20)));

    // Issue 13: one round trip on a warm cache, and the uniform and hot targets in adaptive mode.
    let warm: Vec<(String, f64)> = [Workload::Bank, Workload::LevelUp]
        .into_iter()
        .flat_map(|w| [Impl::OPTIMISTIC, Impl::ADAPTIVE].map(move |i| (w, i)))
        .filter_map(|(w, i)| find(rows, w, i, 1).map(|r| (format!("{w} {}", i.key()), r.round_trips_per_op)))
        .collect();
    out.push(Verdict {
        target: "optimistic and adaptive, warm cache: 1.00 round trip per uncontended invocation (1 caller)".into(),
        figure: if warm.is_empty() {
            "not measured".into()
        } else {
            warm.iter().map(|(row, rt)| format!("{row}: {rt:.2}")).collect::<Vec<_>>().join(", ")
        },
        met: (!warm.is_empty()).then(|| warm.iter().all(|(_, rt)| *rt < 1.05)),
    });
    for w in [Workload::Bank, Workload::LevelUp] {
        let (figure, met) =
            match (find(rows, w, Impl::ADAPTIVE, 64), find(rows, w, Impl::Hand, 64), find(rows, w, Impl::Lua, 64)) {
                (Some(e), Some(h), Some(l)) => {
                    let (rh, rl) = (e.ops_per_sec() / h.ops_per_sec(), e.ops_per_sec() / l.ops_per_sec());
                    (
                        format!(
                            "{:.0} ops/s = {rh:.2}× hand-written ({:.0}), {rl:.2}× Lua ({:.0}); client CPU {:.0} µs/op",
                            e.ops_per_sec(),
                            h.ops_per_sec(),
                            l.ops_per_sec(),
                            e.client_cpu_us,
                        ),
                        Some(rh >= 1.0 && rl >= 0.35),
                    )
                }
                _ => ("not measured".into(), None),
            };
        out.push(Verdict {
            target: format!("{w} at 64 callers, adaptive: ≥ 1.0× hand-written lock and ≥ 0.35× Lua"),
            figure,
            met,
        });
    }
    out.push(hot_verdict(rows, Impl::ADAPTIVE, 8.0, Duration::from_millis(5)));

    // 4. Per-invocation overhead.
    let mut figures = Vec::new();
    let mut met = None;
    for cost in costs {
        figures.push(format!("{} ({}): {} µs", cost.label, cost.language, us(cost.runtime[0])));
        met = Some(met.unwrap_or(true) && cost.runtime[0] < Duration::from_micros(25));
    }
    if !costs.iter().any(|c| c.language == "AssemblyScript") {
        figures.push("AssemblyScript: pending (no AssemblyScript rule was available)".into());
    }
    out.push(Verdict {
        target: "per-invocation engine overhead (fresh instance + run + diff, mean) < 25 µs".into(),
        figure: figures.join("; "),
        met,
    });

    // 5. Memory.
    out.push(match soak {
        Some(s) => {
            let growth = s.final_rss() as f64 - s.warm_rss() as f64;
            let flat = growth.abs() <= s.warm_rss() as f64 * 0.05 && s.slope_kib_per_min() < s.warm_rss() as f64 * 0.01;
            Verdict {
                target: format!("engine process memory flat over a {} s run", s.duration.as_secs()),
                figure: format!(
                    "RSS {:.1} MiB after warm-up → {:.1} MiB at the end (max {:.1} MiB), slope {:.0} KiB/min",
                    s.warm_rss() as f64 / 1024.0,
                    s.final_rss() as f64 / 1024.0,
                    s.max_rss() as f64 / 1024.0,
                    s.slope_kib_per_min()
                ),
                met: Some(flat),
            }
        }
        None => Verdict {
            target: "engine process memory flat over a 60 s run".into(),
            figure: "see the memory section (run with `--soak 60`)".into(),
            met: None,
        },
    });
    out
}

/// What a run measured besides the workload rows (each section's figures, when it ran).
#[derive(Debug, Clone, Copy)]
pub struct Measured<'a> {
    /// The per-invocation costs without Redis.
    pub costs: &'a [Cost],
    /// The fairness runs.
    pub fairness: &'a [Fairness],
    /// The looping-neighbour measure.
    pub stall: Option<&'a Stall>,
    /// The memory run.
    pub soak: Option<&'a Soak>,
    /// The client-side tracking measure.
    pub tracking: Option<&'a Tracking>,
}

/// The whole results file. `previous` is the earlier file's text, whose kept sections carry
/// over when this run has no replacement for them.
pub fn markdown(ctx: &Context, rows: &[Row], measured: &Measured<'_>, previous: Option<&str>) -> String {
    let Measured { costs, fairness, stall, soak, tracking } = *measured;
    let mut s = String::new();
    let kept = previous.map(kept_sections).unwrap_or_default();
    let _ = writeln!(s, "# wasmtx benchmarks\n");
    let _ = writeln!(
        s,
        "Generated by `{}`: every row of one workload runs in the same process against the same Redis, one after \
         the other, so the ratios compare like with like. Re-run it to refresh this file; the sections marked \
         *kept* are carried over from the previous file when a run does not produce them.\n",
        ctx.command
    );
    let _ = writeln!(s, "| | |\n|---|---|");
    let _ = writeln!(s, "| machine | {} |", ctx.machine);
    let _ = writeln!(s, "| Redis | {} |", ctx.redis);
    let _ = writeln!(s, "| commit | {} |", ctx.commit);
    let _ = writeln!(s, "| toolchain | {} |", ctx.rustc);
    let _ = writeln!(s, "| date | {} |", ctx.date);
    let _ = writeln!(s, "| load average (1 min) before / after | {} / {} |", ctx.load.0, ctx.load.1);
    let _ = writeln!(
        s,
        "| per row | {:.1} s warm-up, then {:.1} s measured; whole run {:.0} s |\n",
        ctx.warmup.as_secs_f64(),
        ctx.window.as_secs_f64(),
        ctx.total.as_secs_f64()
    );

    let _ = writeln!(s, "## Targets (issues 6 and 13)\n");
    let _ = writeln!(s, "| target | measured in this run | met |\n|---|---|---|");
    for v in verdicts(rows, costs, soak) {
        let met = match v.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "—",
        };
        let _ = writeln!(s, "| {} | {} | {met} |", v.target, v.figure);
    }
    let _ = writeln!(s);

    let _ = writeln!(s, "## Results\n");
    let _ = writeln!(
        s,
        "ops/s counts completed operations (applied or refused by the business rule) in the measured window; \
         latencies are per operation as its caller saw it (lock waits and retries included). *Redis cmds/op* \
         counts every command the server ran, those inside scripts included (`INFO commandstats`); *round \
         trips/op* is script calls per operation for the engine and the Lua script, and lock attempts (one \
         pipelined `SET NX PX` + reads) plus script calls for the hand-written protocol, all from the same \
         statistics. *client CPU* is this process's CPU time per operation (the engine, or the baseline's \
         client; the load generator in both); *Redis CPU* is the server's. × columns: ops/s over the baseline's \
         at the same concurrency. *engine phases*: the mean `Outcome::timings` of the engine's \
         operations (wait: local line, group and lock waits; load: the lock-and-load round trip; run: instantiate, \
         run and diff; commit: the commit round trip; in a group, load and commit are shared by its members). \
         *cache hit / stale %*: the snapshot cache's hits and stale hits over its lookups in the window \
         (`Engine::cache_stats`, summed over a row's engines; a stale hit is a commit on cached state refused \
         because a model had moved: one more round trip). *optimistic, cache off* runs with \
         `SnapshotCacheConfig::disabled()` (every invocation loads first); *optimistic, 2 engines* splits the \
         callers across two engine instances, each with its own store connection and cache, on the same models.\n"
    );
    let mut baseline: HashMap<(Workload, usize, &str), f64> = HashMap::new();
    for r in rows {
        match r.imp {
            Impl::Lua => {
                baseline.insert((r.workload, r.concurrency, "lua"), r.ops_per_sec());
            }
            Impl::Hand => {
                baseline.insert((r.workload, r.concurrency, "hand"), r.ops_per_sec());
            }
            Impl::Engine { .. } => {}
        }
    }
    for w in Workload::ALL {
        let mut these: Vec<&Row> = rows.iter().filter(|r| r.workload == w).collect();
        if these.is_empty() {
            continue;
        }
        these.sort_by_key(|r| (r.concurrency, w.impls().iter().position(|i| *i == r.imp)));
        let _ = writeln!(s, "### {}\n", w.title());
        let _ = writeln!(
            s,
            "| implementation | callers | ops/s | p50 ms | p99 ms | Redis cmds/op | round trips/op | client CPU µs/op | \
             Redis CPU µs/op | × Lua | × hand-written | engine phases µs: wait / load / run / commit | cache hit / stale % | \
             refused | errors | invariant |"
        );
        let _ = writeln!(s, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|");
        for r in these {
            let ratio = |which: &str| match (r.imp, baseline.get(&(w, r.concurrency, which))) {
                (Impl::Engine { .. }, Some(b)) if *b > 0.0 => format!("{:.2}", r.ops_per_sec() / b),
                _ => "—".into(),
            };
            let invariant = match &r.invariant {
                Ok(what) => format!("ok: {what}"),
                Err(why) => format!("**FAILED**: {why}"),
            };
            let errors = match (&r.first_error, r.errors) {
                (_, 0) => "0".to_owned(),
                (Some(e), n) => format!("{n} ({})", e.chars().take(80).collect::<String>()),
                (None, n) => n.to_string(),
            };
            let round_trips = match r.client_round_trips_per_op {
                Some(client) if (client - r.round_trips_per_op).abs() > 0.02 * r.round_trips_per_op => {
                    format!("{:.2} (client counted {client:.2})", r.round_trips_per_op)
                }
                _ => format!("{:.2}", r.round_trips_per_op),
            };
            let phases = r.phases.map_or_else(
                || "—".to_owned(),
                |p| p.iter().map(|d| format!("{:.0}", d.as_secs_f64() * 1e6)).collect::<Vec<_>>().join(" / "),
            );
            let cache = match r.cache.and_then(|c| c.hit_rate().zip(c.stale_rate())) {
                Some((hit, stale)) => format!("{hit:.1} / {stale:.1}"),
                None => "—".to_owned(),
            };
            let label = match r.imp {
                Impl::Engine { .. } => format!("**{}**", r.imp.label()),
                _ => r.imp.label(),
            };
            let _ = writeln!(
                s,
                "| {label} | {} | {:.0} | {} | {} | {:.1} | {round_trips} | {:.0} | {:.0} | {} | {} | {phases} | {cache} | {} | {errors} | {invariant} |",
                r.concurrency,
                r.ops_per_sec(),
                ms(r.p50),
                ms(r.p99),
                r.commands_per_op,
                r.client_cpu_us,
                r.redis_cpu_us,
                ratio("lua"),
                ratio("hand"),
                r.rejected,
            );
        }
        // The charts written beside this file (`charts::write_all`), under the table they draw.
        let _ = writeln!(
            s,
            "\n![throughput]({}) ![latency]({})\n",
            charts::link(w, charts::Kind::Throughput),
            charts::link(w, charts::Kind::Latency)
        );
    }

    let _ = writeln!(s, "## Fairness between engines (issue 18)\n");
    if fairness.is_empty() {
        let text = kept
            .get("fair")
            .map_or("Not run yet: `cargo run --release --bin bench -- --workloads fair`.", |t| t.trim());
        let _ = writeln!(s, "<!-- keep:fair -->\n{text}\n<!-- /keep:fair -->\n");
    } else {
        let _ = writeln!(s, "<!-- keep:fair -->\n{}<!-- /keep:fair -->\n", fair_section(fairness, ctx));
    }

    let _ = writeln!(s, "## Engine cost per invocation, without Redis\n");
    let _ = writeln!(
        s,
        "A fresh instance per run (pooling allocator), through `RuleRuntime::run` and `ModelWorkspace::state_changes` \
         (instantiate + run + diff), single-threaded; then a whole `Engine::invoke` on the in-memory store (local \
         line, lock, load, run, diff, commit).\n"
    );
    let _ = writeln!(
        s,
        "| rule | language | host calls per run | instantiate + run + diff: mean µs | p50 µs | p99 µs | whole invoke, in-memory store: µs |"
    );
    let _ = writeln!(s, "|---|---|---|--:|--:|--:|--:|");
    for c in costs {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            c.label,
            c.language,
            c.host_calls,
            us(c.runtime[0]),
            us(c.runtime[1]),
            us(c.runtime[2]),
            us(c.invoke_memory)
        );
    }
    let _ = writeln!(s);

    let _ = writeln!(s, "## A looping neighbour (issue 10)\n");
    match stall {
        Some(stall) => {
            let _ = writeln!(s, "<!-- keep:stall -->\n{}\n<!-- /keep:stall -->\n", stall_section(stall, ctx));
        }
        None => {
            let text = kept.get("stall").map_or("Not run yet: `cargo run --release --bin bench`.", |t| t.trim());
            let _ = writeln!(s, "<!-- keep:stall -->\n{text}\n<!-- /keep:stall -->\n");
        }
    }

    let _ = writeln!(s, "{TRACKING_HEADING}\n");
    match tracking {
        Some(t) => {
            let _ = writeln!(
                s,
                "<!-- keep:tracking -->\n{}\n<!-- /keep:tracking -->\n",
                tracking_section(t, rows, costs, ctx).trim()
            );
        }
        None => {
            let text = kept
                .get("tracking")
                .map_or("Not run yet: `cargo run --release --bin bench -- --tracking-only`.", |t| t.trim());
            let _ = writeln!(s, "<!-- keep:tracking -->\n{text}\n<!-- /keep:tracking -->\n");
        }
    }

    let only_kept = [
        ("http", HTTP_HEADING, "--http-only --duration 60"),
        ("cluster", super::cluster_report::CLUSTER_HEADING, "--cluster-only"),
    ];
    for (name, heading, options) in only_kept {
        let not_yet = format!("Not run yet: `cargo run --release --bin bench -- {options}`.");
        let text = kept.get(name).map_or(not_yet.as_str(), |t| t.trim());
        let _ = writeln!(s, "{heading}\n\n<!-- keep:{name} -->\n{text}\n<!-- /keep:{name} -->\n");
    }

    let _ = writeln!(s, "## Memory over a long run\n");
    match soak {
        Some(soak) => {
            let _ = writeln!(s, "<!-- keep:soak -->");
            let _ = writeln!(s, "{}", soak_section(soak, ctx));
            let _ = writeln!(s, "<!-- /keep:soak -->\n");
        }
        None => match kept.get("soak") {
            Some(text) => {
                let _ = writeln!(s, "<!-- keep:soak -->\n{}\n<!-- /keep:soak -->\n", text.trim());
            }
            None => {
                let _ = writeln!(
                    s,
                    "<!-- keep:soak -->\nNot run yet: `cargo run --release --bin bench -- --soak 60`.\n<!-- /keep:soak -->\n"
                );
            }
        },
    }

    let _ = writeln!(s, "## Analysis\n");
    let notes = kept
        .get("notes")
        .map_or("Written by hand after a run: what the figures say, and why a missed target is missed.", |t| t.trim());
    let _ = writeln!(s, "<!-- keep:notes -->\n{notes}\n<!-- /keep:notes -->");
    s
}

fn fair_section(fairness: &[Fairness], ctx: &Context) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "*Kept*: measured by `{}` on {}. Two engine instances on one Redis, each with its own connection, \
         release listener and local lock lines (as two host processes), their callers all bumping one hot counter \
         in lock mode for {:.1} s. Per engine: operations completed and its share of them, latencies as callers \
         saw them, and the longest lock wait an outcome reported (`Outcome::timings.wait`). *share ratio*: the \
         larger share over the smaller (1.00 is even).\n",
        ctx.command,
        ctx.date,
        ctx.window.as_secs_f64()
    );
    let _ = writeln!(
        s,
        "| implementation | callers per engine | engine | ops | ops/s | share | p50 ms | p99 ms | max ms | max wait ms | errors | share ratio | invariant |"
    );
    let _ = writeln!(s, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|");
    for f in fairness {
        for (e, share) in f.engines.iter().enumerate() {
            let (ratio, invariant) = if e == 0 {
                let invariant = match &f.invariant {
                    Ok(what) => format!("ok: {what}"),
                    Err(why) => format!("**FAILED**: {why}"),
                };
                (format!("{:.2}", f.ratio()), invariant)
            } else {
                (String::new(), String::new())
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {:.0} | {:.1} % | {} | {} | {} | {} | {} | {ratio} | {invariant} |",
                f.imp.label(),
                f.callers,
                e + 1,
                share.ops,
                share.ops as f64 / f.window.as_secs_f64(),
                f.share(e),
                ms(share.p50),
                ms(share.p99),
                ms(share.max),
                ms(share.max_wait),
                share.errors,
            );
        }
    }
    s
}

fn stall_section(stall: &Stall, ctx: &Context) -> String {
    let row =
        |what: &str, l: &Latency| format!("| {what} | {} | {} | {} | {} |", l.count, ms(l.p50), ms(l.p99), ms(l.max));
    let met = if stall.with.p99 < Duration::from_millis(5) { "met" } else { "**missed**" };
    format!(
        "*Kept*: measured by `{}` on {}. One caller runs trivial lock-mode invocations (one increment on one model) \
         one after the other, first alone, then while {} rules on other models loop to their {} ms deadline \
         ({} looping runs in the window), on one engine, on this machine's 2 cores with Redis. Target: p99 under \
         5 ms beside the loops: {met}.\n\n\
         | trivial invocation | count | p50 ms | p99 ms | max ms |\n|---|--:|--:|--:|--:|\n{}\n{}",
        ctx.command,
        ctx.date,
        stall.loopers,
        stall.deadline.as_millis(),
        stall.looping_runs,
        row("alone", &stall.alone),
        row(&format!("beside {} looping rules", stall.loopers), &stall.with),
    )
}

fn soak_section(soak: &Soak, ctx: &Context) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "*Kept*: measured by `{}` (refresh with `cargo run --release --bin bench -- --soak-only --soak 60`) on {}, \
         commit {}: the engine in {} mode (snapshot cache on), hot counter and bank transfer at once, {} callers \
         each, for {} s; {} operations, {} errors. Resident memory of the benchmark process (engine, Redis \
         client and load generator), sampled every second:\n",
        ctx.command,
        ctx.date,
        ctx.commit,
        super::soak::MODE,
        soak.concurrency,
        soak.duration.as_secs(),
        soak.ops,
        soak.errors
    );
    let _ = writeln!(s, "| second | RSS MiB |\n|--:|--:|");
    let step = (soak.samples.len() / 12).max(1);
    for (i, (t, rss)) in soak.samples.iter().enumerate() {
        if i % step == 0 || i + 1 == soak.samples.len() {
            let _ = writeln!(s, "| {t} | {:.1} |", *rss as f64 / 1024.0);
        }
    }
    let _ = writeln!(
        s,
        "\nAfter warm-up (the first tenth): {:.1} MiB → {:.1} MiB at the end, at most {:.1} MiB; least-squares slope {:.0} KiB/min.",
        soak.warm_rss() as f64 / 1024.0,
        soak.final_rss() as f64 / 1024.0,
        soak.max_rss() as f64 / 1024.0,
        soak.slope_kib_per_min()
    );
    let (c, a) = (&soak.cache, &soak.adaptive);
    let _ = writeln!(
        s,
        "Snapshot cache at the end: {} entries, {:.1} KiB kept; over the run {} hits, {} misses, {} stale hits, {} \
         evictions, {} drops. Adaptive mode: {} optimistic and {} lock-mode attempts, {} conflicts, models marked hot \
         {} times ({} hot at the end).",
        c.entries,
        c.bytes as f64 / 1024.0,
        c.hits,
        c.misses,
        c.stale_hits,
        c.evictions,
        c.drops,
        a.optimistic_attempts,
        a.lock_attempts,
        a.conflicts,
        a.marked_hot,
        a.hot_now
    );
    for inv in &soak.invariants {
        let _ = match inv {
            Ok(what) => writeln!(s, "Invariant ok: {what}."),
            Err(why) => writeln!(s, "Invariant **FAILED**: {why}."),
        };
    }
    s
}

/// The client-side tracking section's heading.
pub const TRACKING_HEADING: &str = "## Client-side tracking with several engines (issue 13)";

/// The client-side tracking section: what tracking costs (`t`), and what it would save on the
/// two-engine bank row of `rows` (a rule run's CPU from `costs`, the bank transfer's).
pub fn tracking_section(t: &Tracking, rows: &[Row], costs: &[Cost], ctx: &Context) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "*Kept*: measured by `{}` on {}, commit {}; Redis {}. Does RESP3 client-side tracking (`CLIENT TRACKING`, \
         invalidations redirected to a connection of its own) pay for itself with several engines writing the same \
         models? The engine has it as an option (`RedisStoreBuilder::client_tracking`, `BackendOptions`, `wasmtx \
         --client-tracking`); first what it costs Redis and the clients on their own, then the bank rows with it \
         on and off.\n",
        ctx.command, ctx.date, ctx.commit, ctx.redis
    );
    let _ = writeln!(
        s,
        "**What tracking costs.** {} accounts; one client writes {} transfers (a script changing two accounts, two \
         `HINCRBY`s each, the version included, as an engine's commit), {} per pipeline over distinct accounts; each \
         of *n* other clients (the other engines) has read every account with `CLIENT TRACKING ON REDIRECT \
         <listener> OPTIN` (`CLIENT CACHING YES` before each `HGETALL`), and after each pipeline waits for the \
         invalidations of what was written (RESP3 `invalidate` pushes on its listener) and reads those accounts \
         again, so that they stay tracked. Without tracking, the same clients read the same accounts again with \
         plain `HGETALL`s. CPU per transfer (the reads again included) of Redis and of this process (the clients), \
         median of {} runs each, alternated:\n",
        tracking::KEYS,
        tracking::TRANSFERS,
        tracking::BATCH,
        tracking::REPEATS
    );
    let _ = writeln!(
        s,
        "| readers (engines besides the writer) | Redis CPU µs/transfer: no tracking → tracking | tracking's Redis cost \
         per reader | client CPU µs/transfer: no tracking → tracking | tracking's client cost per reader | \
         `invalidate` pushes / transfer | keys / push |"
    );
    let _ = writeln!(s, "|--:|--:|--:|--:|--:|--:|--:|");
    for (off, on) in &t.pairs {
        let n = on.readers.max(1) as f64;
        let _ = writeln!(
            s,
            "| {} | {:.2} → {:.2} | {:.2} | {:.2} → {:.2} | {:.2} | {:.2} | {:.2} |",
            on.readers,
            off.redis_us,
            on.redis_us,
            (on.redis_us - off.redis_us) / n,
            off.client_us,
            on.client_us,
            (on.client_us - off.client_us) / n,
            on.messages as f64 / on.transfers.max(1) as f64,
            on.invalidated_keys as f64 / on.messages.max(1) as f64,
        );
    }
    let _ = writeln!(
        s,
        "\nMean cost per transfer and per tracking reader: {:.2} µs of Redis CPU and {:.2} µs of client CPU. {}.\n",
        t.us_per_transfer_per_reader(),
        t.client_us_per_transfer_per_reader(),
        match &t.invariant {
            Ok(what) => format!("Invariant ok: {what}"),
            Err(why) => format!("Invariant **FAILED**: {why}"),
        }
    );
    let verdict = tracking::verdict(rows, t, tracking::run_cpu_us(costs));
    if let Some(v) = &verdict {
        let _ = writeln!(
            s,
            "**What tracking would save.** The bank table's *optimistic, {} engines* row at {} callers: {} engine \
             instances, each with its own store connection and snapshot cache, on the same 1,000 accounts (stale hits \
             over cache lookups, summed over the engines):\n",
            v.engines, v.callers, v.engines
        );
        let _ = writeln!(
            s,
            "| ops/s | round trips/op | cache hits % | stale hits % | run phase µs (wall) | client CPU µs/op | Redis CPU µs/op |"
        );
        let _ = writeln!(s, "|--:|--:|--:|--:|--:|--:|--:|");
        let _ = writeln!(
            s,
            "| {:.0} | {:.2} | {:.1} | {:.1} | {:.1} | {:.0} | {:.0} |\n",
            v.ops_per_sec,
            v.round_trips_per_op,
            v.hit_rate,
            v.stale_rate,
            v.run_phase_us,
            v.client_cpu_us,
            v.redis_cpu_us
        );
        let _ = writeln!(
            s,
            "A stale hit costs a refused commit (which brings the moved model's fresh state back) and a recommit after \
             the rule ran again: 2 round trips and one wasted run. An invalidation only names keys, so a miss after an \
             invalidation costs a load and a commit: 2 round trips as well. Tracking can save only the wasted run: at \
             most {:.1} % × {:.1} µs (the bank transfer's instantiate + run + diff, CPU) = **{:.1} µs of CPU per \
             invocation**, less when an invalidation arrives after the run started (it races the other engine's \
             commit). It costs **{:.1} µs of CPU per write** ({} other engine(s) tracking: {:.1} µs Redis + {:.1} µs \
             client, at the costs per reader above), plus a listener connection per engine.\n",
            v.stale_rate,
            v.run_us,
            v.saved_us,
            v.cost_us(),
            v.engines - 1,
            v.redis_cost_us,
            v.client_cost_us
        );
    }
    let measured = tracking::measured(rows);
    if !measured.is_empty() {
        let _ = writeln!(
            s,
            "**What the built tracking does.** The bank table's multi-engine rows, each engine's store with client \
             tracking off, then on (`NOLOOP`; lock-and-load and commit read what they wrote again, to keep it \
             tracked): another engine's commit drops the entry, and the next invocation loads (a miss) instead of \
             running on the stale state and being refused (a stale hit).\n"
        );
        let _ = writeln!(
            s,
            "| row | callers | ops/s | round trips/op | cache hits % | stale hits % | client CPU µs/op | Redis CPU µs/op | Redis cmds/op |"
        );
        let _ = writeln!(s, "|---|--:|--:|--:|--:|--:|--:|--:|--:|");
        for (off, on) in &measured {
            for row in [off, on] {
                let (hits, stale) = row
                    .cache
                    .map_or((f64::NAN, f64::NAN), |c| (c.hit_rate().unwrap_or(0.0), c.stale_rate().unwrap_or(0.0)));
                let _ = writeln!(
                    s,
                    "| {} | {} | {:.0} | {:.2} | {:.1} | {:.1} | {:.0} | {:.0} | {:.1} |",
                    row.imp.label(),
                    row.concurrency,
                    row.ops_per_sec(),
                    row.round_trips_per_op,
                    hits,
                    stale,
                    row.client_cpu_us,
                    row.redis_cpu_us,
                    row.commands_per_op
                );
            }
        }
        let _ = writeln!(s);
        let verdict = match tracking::measured_pays(&measured) {
            Some(true) => {
                "it pays: with tracking every pair above spent less CPU per operation (client and Redis together)"
            }
            Some(false) => "it does not pay in every pair above (CPU per operation, client and Redis together)",
            None => "not measured",
        };
        let _ =
            writeln!(s, "**Measured**: {verdict}. It stays off by default: one engine alone gains nothing from it.\n");
    }
    let _ = writeln!(s, "**The synthetic measure**: {}.", tracking::conclusion(verdict.as_ref()));
    s
}

/// The HTTP section's heading.
pub const HTTP_HEADING: &str = "## The HTTP API (issue 16)";

/// The HTTP section: `run`, and beside it the in-process figure of the same workload at the
/// same concurrency from `previous` (the bank transfer table's lock-mode row), when it has one.
pub fn http_section(run: &HttpRun, ctx: &Context, previous: Option<&str>) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "*Kept*: measured by `{}` on {}, commit {}; Redis {}. Bank transfers (lock mode, the `bank-transfer` rule) \
         through a `wasmtx serve` process on Redis, from {} keep-alive HTTP/1.1 clients on loopback, each on its own \
         pair of accounts (the API's cost, not lock contention's), for {} s. The clients, the server and Redis share \
         the machine's cores. Server RSS sampled every second.\n",
        ctx.command,
        ctx.date,
        ctx.commit,
        ctx.redis,
        run.connections,
        run.window.as_secs()
    );
    let _ =
        writeln!(s, "| row | invocations/s | p50 ms | p99 ms | errors | server RSS first → max → last | invariant |");
    let _ = writeln!(s, "|---|--:|--:|--:|--:|---|---|");
    let _ = writeln!(s, "{}", run.row());
    if let Some([ops, p50, p99]) = previous.and_then(in_process_bank_row) {
        let _ = writeln!(
            s,
            "\nIn process, the same rule in lock mode at 64 callers (the bank transfer table above: random pairs \
             of 1,000 accounts, so with some lock contention, and no HTTP): {ops} ops/s, p50 {p50} ms, p99 {p99} ms."
        );
    }
    s
}

/// ops/s, p50 and p99 of the lock-mode row at 64 callers of the bank transfer table in an
/// earlier file.
fn in_process_bank_row(text: &str) -> Option<[&str; 3]> {
    let table = &text[text.find("### Bank transfer")?..];
    let table = &table[..table[3..].find("\n#").map_or(table.len(), |i| i + 3)];
    let row = table.lines().find(|l| l.starts_with("| **engine, lock** | 64 |"))?;
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    Some([cells.get(3)?, cells.get(4)?, cells.get(5)?].map(|c| *c))
}

/// `previous` with its `name` kept section replaced by the one in `fresh`: what a run that
/// measures only that section writes. A `previous` written before the section existed gets it
/// under `heading`, before the next heading that follows where `before` is (or at the end).
pub fn replace_kept(previous: &str, fresh: &str, name: &str, heading: &str, before: &str) -> String {
    let (open, close) = (format!("<!-- keep:{name} -->"), format!("<!-- /keep:{name} -->"));
    let section = |t: &str| -> Option<(usize, usize)> {
        let start = t.find(&open)?;
        let end = t[start..].find(&close)? + start + close.len();
        Some((start, end))
    };
    let Some((fs, fe)) = section(fresh) else { return previous.to_owned() };
    let fresh = &fresh[fs..fe];
    match section(previous) {
        Some((ps, pe)) => format!("{}{fresh}{}", &previous[..ps], &previous[pe..]),
        None => {
            let at = previous.find(before).unwrap_or(previous.len());
            format!("{}{heading}\n\n{fresh}\n\n{}", &previous[..at], &previous[at..])
        }
    }
}

/// Sections of an earlier file between `<!-- keep:NAME -->` and `<!-- /keep:NAME -->`.
fn kept_sections(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = text;
    while let Some(start) = rest.find("<!-- keep:") {
        let after = &rest[start + "<!-- keep:".len()..];
        let Some(name_end) = after.find(" -->") else { break };
        let name = after[..name_end].to_owned();
        let body = &after[name_end + " -->".len()..];
        let end_marker = format!("<!-- /keep:{name} -->");
        let Some(end) = body.find(&end_marker) else { break };
        out.insert(name, body[..end].to_owned());
        rest = &body[end + end_marker.len()..];
    }
    out
}
