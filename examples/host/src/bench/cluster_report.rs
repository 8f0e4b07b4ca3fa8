//! The Redis Cluster section of the results file (issue 12), written by `--cluster-only` and
//! kept by every other run (`<!-- keep:cluster -->`): the same rows on the single server and
//! on the private 3-primary cluster side by side, how evenly the cluster's primaries shared
//! the work, and what announcing lock releases costs with classic and with sharded Pub/Sub.

use std::fmt::Write as _;

use super::impls::Impl;
use super::pubsub::{self, Measure};
use super::report::Context;
use super::run::Row;
use super::workloads::Workload;

/// The section's heading.
pub const CLUSTER_HEADING: &str = "## Redis Cluster (issue 12)";

/// The engine row whose announcements the Pub/Sub conclusion prices: the hot counter on the
/// cluster, lock mode, at the most callers measured (where waiters, and so releases worth
/// announcing, are most frequent).
pub fn hot_lock_row(rows: &[Row]) -> Option<&Row> {
    rows.iter()
        .filter(|r| r.workload == Workload::HotCounter && r.imp == Impl::LOCK && r.on == "cluster")
        .max_by_key(|r| r.concurrency)
}

/// The share (percent) of the cluster's Redis CPU per operation that the broadcast costs in
/// `row`, and the row's announcements per operation.
pub fn broadcast_of(row: &Row, pubsub: &Measure) -> (f64, f64) {
    let publishes = row.calls_per_op("publish");
    (pubsub::broadcast_share(publishes, row.redis_cpu_us, pubsub.broadcast_us()), publishes)
}

fn ms(d: std::time::Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

/// The section's text (between its keep markers). `cluster` describes the cluster (version,
/// ports, PIDs).
pub fn cluster_section(rows: &[Row], pubsub: Option<&Measure>, ctx: &Context, cluster: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "*Kept*: measured by `{}` on {}, commit {}; {}; {}. Single server: {}. Cluster: {cluster}, three \
         primaries and no replicas. Load average (1 min) before / after: {} / {}. Per row {:.1} s warm-up, then \
         {:.1} s measured; whole run {:.0} s.\n",
        ctx.command,
        ctx.date,
        ctx.commit,
        ctx.machine,
        ctx.rustc,
        ctx.redis,
        ctx.load.0,
        ctx.load.1,
        ctx.warmup.as_secs_f64(),
        ctx.window.as_secs_f64(),
        ctx.total.as_secs_f64()
    );
    let _ = writeln!(
        s,
        "The same rows on both, each row's single-server run just before its cluster run. *hot*: one model, so one \
         slot, so one primary does all the work. *ledger*: 100 ledgers × 10 accounts `L<ledger>/<i>`, the `Account` \
         schema placed by ledger (`{{ group = \"ledger\", by = \"prefix\", separator = \"/\" }}`), each transfer \
         between two random accounts of one random ledger; the Lua script and the hand-written lock use the \
         engine's keys, so both accounts share a slot. On the cluster *Redis cmds/op* and *Redis CPU* are summed \
         over the three primaries; *per node* is each primary's Redis CPU µs/op; *busiest* is the busiest \
         primary's share of the commands; *PUBLISH/op* the releases announced per operation (`cmdstat_publish`). \
         × single: ops/s over the single server's same row.\n"
    );
    let _ = writeln!(
        s,
        "| workload | implementation | callers | on | ops/s | × single | p50 ms | p99 ms | Redis cmds/op | round trips/op | \
         client CPU µs/op | Redis CPU µs/op | per node µs/op | busiest | PUBLISH/op | errors | invariant |"
    );
    let _ = writeln!(s, "|---|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|---|");
    for r in rows {
        let single = rows.iter().find(|o| {
            o.on != "cluster" && o.workload == r.workload && o.imp == r.imp && o.concurrency == r.concurrency
        });
        let ratio = match single {
            Some(o) if r.on == "cluster" && o.ops > 0 => format!("{:.2}", r.ops_per_sec() / o.ops_per_sec()),
            _ => "—".into(),
        };
        let per_node = r
            .stats
            .nodes
            .iter()
            .map(|(_, cpu)| format!("{:.0}", cpu.as_secs_f64() * 1e6 / r.ops.max(1) as f64))
            .collect::<Vec<_>>()
            .join(" / ");
        let invariant = match &r.invariant {
            Ok(what) => format!("ok: {what}"),
            Err(why) => format!("**FAILED**: {why}"),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.0} | {ratio} | {} | {} | {:.1} | {:.2} | {:.0} | {:.0} | {per_node} | {:.0} % | {:.2} | {} | {invariant} |",
            r.workload,
            r.imp.label(),
            r.concurrency,
            r.on,
            r.ops_per_sec(),
            ms(r.p50),
            ms(r.p99),
            r.commands_per_op,
            r.round_trips_per_op,
            r.client_cpu_us,
            r.redis_cpu_us,
            r.stats.busiest_share(),
            r.calls_per_op("publish"),
            r.errors,
        );
    }
    let _ = writeln!(s, "\n### Announcing lock releases: classic or sharded Pub/Sub\n");
    let Some(m) = pubsub else {
        let _ = writeln!(s, "Not measured in this run.");
        return s;
    };
    let _ = writeln!(
        s,
        "{} messages of {} bytes (a release announcement of the hot counter) pipelined {} at a time to primary {} \
         (the one serving the hot counter's slot, where the engine's function publishes), one subscriber; Redis \
         CPU of every primary over the run, per message sent. A client's message also pays a command's parsing \
         and dispatch, which a `redis.call('PUBLISH', ...)` inside a function does not; the difference between \
         the rows is the broadcast over the cluster bus.\n",
        m.runs[0].sent,
        m.payload_bytes,
        100,
        m.publisher + 1
    );
    let _ = writeln!(s, "| kind | received | messages/s | Redis CPU µs/message per primary | Σ µs/message |");
    let _ = writeln!(s, "|---|--:|--:|---|--:|");
    for run in &m.runs {
        let label = match run.kind {
            pubsub::Kind::Classic => format!("{} (primary {})", run.kind.label(), m.classic_subscriber + 1),
            pubsub::Kind::Sharded => run.kind.label().to_owned(),
        };
        let per_node = run.node_us.iter().map(|us| format!("{us:.2}")).collect::<Vec<_>>().join(" / ");
        let _ = writeln!(
            s,
            "| {label} | {} | {:.0} | {per_node} | {:.2} |",
            run.received,
            run.sent as f64 / run.elapsed.as_secs_f64().max(1e-9),
            run.total_us()
        );
    }
    let _ = writeln!(s, "\nThe broadcast: {:.2} µs of Redis CPU per message, over the cluster.", m.broadcast_us());
    match hot_lock_row(rows) {
        Some(row) => {
            let (share, publishes) = broadcast_of(row, m);
            let _ = writeln!(
                s,
                "At the hot counter's rate on the cluster (engine, lock, {} callers: {publishes:.2} releases announced \
                 per operation, {:.0} µs of Redis CPU per operation over the primaries) the broadcast costs about \
                 {share:.1} % of the cluster's Redis CPU per operation: {}.",
                row.concurrency,
                row.redis_cpu_us,
                pubsub::conclusion(share)
            );
            // Why the rate is what it is, and where the answer would change.
            let break_even =
                if m.broadcast_us() > 0.0 { 0.05 * row.redis_cpu_us / m.broadcast_us() } else { f64::INFINITY };
            let _ = writeln!(
                s,
                "\nA release is announced only when a waiter flagged the lock in Redis: the callers of one engine wait in \
                 its local line and its group commit, so a single engine announces (almost) nothing, and announcements \
                 come from several engine processes contending for one lock. At the cost above, the broadcast reaches 5 % \
                 of this row's Redis CPU at about {break_even:.2} announcements per operation; below that, the classic \
                 channel (one subscription per store, on any node, which survives slot moves) is kept."
            );
        }
        None => {
            let _ = writeln!(s, "No hot-counter lock row on the cluster in this run to price it against.");
        }
    }
    s
}
