//! Pipeline mode: the reference's `pipeline()` context manager, without its silent partial
//! batches. No lock: the changes keep their commutative intent (increments as `HINCRBY`,
//! appends as `RPUSH`, ...) and apply together in one atomic step, or not at all.

use std::time::{Duration, Instant};

use super::flow::{LoadedRun, outcome};
use super::idempotency::{Committed, Idempotency, payload, replay};
use super::{Plan, Protocol};
use crate::error::Result;
use crate::invocation::{Invocation, Outcome, RunContext, Timings};
use crate::rule::Rule;
use crate::store::{CommitGuard, CommitRecords, CommitRequest, RecordEntry};

/// Load (unless the key is recorded), run, apply the operations' intent unguarded with the
/// invocation's record.
pub(super) async fn run(
    protocol: &Protocol,
    rule: &Rule,
    invocation: &Invocation,
    plan: &Plan,
    idem: &Idempotency,
    context: RunContext,
) -> Result<Outcome> {
    let LoadedRun { output, load: load_time, run: run_time, .. } =
        match protocol.load_and_run(rule, invocation, plan, idem, &context).await? {
            Ok(ran) => ran,
            Err(replayed) => return Ok(replayed),
        };
    let changes: Vec<_> = output.workspaces.iter().map(|w| w.intent_changes()).collect();

    let commit_start = Instant::now();
    // Applied to whatever is stored: this engine will not know the result exactly.
    protocol.forget_cached(&plan.sorted);
    let sorted_changes = plan.to_lock_order(&changes);
    let recorded = payload(idem, &context.invocation_id, &output.output, &[], context.attempt);
    let entries = [RecordEntry { key: &idem.key, payload: Some(&recorded) }];
    let request = CommitRequest {
        models: &plan.sorted,
        changes: &sorted_changes,
        guard: CommitGuard::Unguarded,
        records: CommitRecords::NONE,
    };
    let receipt = match protocol.commit(request, &entries, idem).await? {
        Committed::Applied(receipt) => receipt,
        Committed::Recorded { record, .. } => {
            let timings =
                Timings { load: load_time, run: run_time, commit: commit_start.elapsed(), ..Timings::default() };
            return replay(plan, idem, &record, timings);
        }
    };
    Ok(outcome(
        plan,
        idem,
        context,
        output.output,
        changes,
        Vec::new(),
        plan.to_caller_order(&receipt.versions),
        Timings { wait: Duration::ZERO, load: load_time, run: run_time, commit: commit_start.elapsed() },
    ))
}
