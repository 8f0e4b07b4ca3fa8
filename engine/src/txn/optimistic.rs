//! Optimistic mode: serializable without locks. The commit applies only if no model's
//! version moved since the load; every commit in every mode bumps the versions of the models
//! it changed, so lock-mode and optimistic invocations can be mixed on one model.

use std::time::{Duration, Instant};

use super::flow::{LoadedRun, outcome};
use super::idempotency::{CommitFailure, Committed, Idempotency, payload, replay};
use super::{Plan, Protocol};
use crate::error::{Error, Result};
use crate::invocation::{Invocation, Outcome, RunContext, Timings};
use crate::rule::Rule;
use crate::store::{CommitGuard, CommitRecords, CommitRequest, RecordEntry, StoreError};

/// One attempt: load with versions (unless the key is recorded), run, commit under a version
/// guard with the invocation's record. A moved version is [`Error::Conflict`], which the
/// protocol's retry loop turns into a re-run.
pub(super) async fn run(
    protocol: &Protocol,
    rule: &Rule,
    invocation: &Invocation,
    plan: &Plan,
    idem: &Idempotency,
    context: RunContext,
) -> Result<Outcome> {
    let LoadedRun { loaded, output, load: load_time, run: run_time } =
        match protocol.load_and_run(rule, invocation, plan, idem, &context).await? {
            Ok(ran) => ran,
            Err(replayed) => return Ok(replayed),
        };
    let versions: Vec<u64> = loaded.iter().map(|s| s.version).collect();
    let changes: Vec<_> = output.workspaces.iter().map(|w| w.state_changes()).collect();
    let attempt = context.attempt;

    let commit_start = Instant::now();
    let committed_versions = if changes.iter().all(Vec::is_empty) {
        // A read-only run needs no commit (and leaves no record: it has no effect to protect):
        // the load was one consistent snapshot.
        versions
    } else {
        let sorted_changes = plan.to_lock_order(&changes);
        let recorded = payload(idem, &context.invocation_id, &output.output, &[], attempt);
        let entries = [RecordEntry { key: &idem.key, payload: Some(&recorded) }];
        let request = CommitRequest {
            models: &plan.sorted,
            changes: &sorted_changes,
            guard: CommitGuard::Versions { versions: &versions, action: &invocation.action },
            records: CommitRecords::NONE,
        };
        match protocol.commit(request, &entries, idem).await {
            Ok(Committed::Applied(receipt)) => receipt.versions,
            Ok(Committed::Recorded { record, .. }) => {
                let timings =
                    Timings { load: load_time, run: run_time, commit: commit_start.elapsed(), ..Timings::default() };
                return replay(plan, idem, &record, timings);
            }
            Err(CommitFailure::Store(StoreError::Conflict { model, .. })) => {
                return Err(Error::Conflict { model, attempts: attempt });
            }
            Err(other) => return Err(other.into()),
        }
    };
    Ok(outcome(
        plan,
        idem,
        context,
        output.output,
        changes,
        Vec::new(),
        plan.to_caller_order(&committed_versions),
        Timings { wait: Duration::ZERO, load: load_time, run: run_time, commit: commit_start.elapsed() },
    ))
}
