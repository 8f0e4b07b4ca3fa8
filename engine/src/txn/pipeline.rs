//! Pipeline mode: the reference's `pipeline()` context manager, without its silent partial
//! batches. No lock: the changes keep their commutative intent (increments as `HINCRBY`,
//! appends as `RPUSH`, ...) and apply together in one atomic step, or not at all.

use std::time::{Duration, Instant};

use super::flow::{LoadedRun, outcome};
use super::{Plan, Protocol};
use crate::error::Result;
use crate::invocation::{Invocation, Outcome, RunContext, Timings};
use crate::rule::Rule;
use crate::store::{CommitGuard, CommitRequest};

/// Load, run, apply the operations' intent unguarded.
pub(super) async fn run(
    protocol: &Protocol,
    rule: &Rule,
    invocation: &Invocation,
    plan: &Plan,
    context: RunContext,
) -> Result<Outcome> {
    let LoadedRun { output, load: load_time, run: run_time, .. } =
        protocol.load_and_run(rule, invocation, plan, &context).await?;
    let changes: Vec<_> = output.workspaces.iter().map(|w| w.intent_changes()).collect();

    let commit_start = Instant::now();
    let sorted_changes = plan.to_lock_order(&changes);
    let receipt = protocol
        .store
        .commit(CommitRequest { models: &plan.sorted, changes: &sorted_changes, guard: CommitGuard::Unguarded })
        .await?;
    Ok(outcome(
        plan,
        context,
        output.output,
        changes,
        Vec::new(),
        plan.to_caller_order(&receipt.versions),
        Timings { wait: Duration::ZERO, load: load_time, run: run_time, commit: commit_start.elapsed() },
    ))
}
