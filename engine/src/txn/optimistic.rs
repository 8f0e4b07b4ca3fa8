//! Optimistic mode: serializable without locks. The commit applies only if no model's
//! version moved since the load; every commit in every mode bumps the versions of the models
//! it changed, so lock-mode and optimistic invocations can be mixed on one model.

use std::time::{Duration, Instant};

use super::flow::{LoadedRun, outcome};
use super::{Plan, Protocol};
use crate::error::{Error, Result};
use crate::invocation::{Invocation, Outcome, RunContext, Timings};
use crate::rule::Rule;
use crate::store::{CommitGuard, CommitRequest, StoreError};

/// One attempt: load with versions, run, commit under a version guard. A moved version is
/// [`Error::Conflict`], which the protocol's retry loop turns into a re-run.
pub(super) async fn run(
    protocol: &Protocol,
    rule: &Rule,
    invocation: &Invocation,
    plan: &Plan,
    context: RunContext,
) -> Result<Outcome> {
    let LoadedRun { loaded, output, load: load_time, run: run_time } =
        protocol.load_and_run(rule, invocation, plan, &context).await?;
    let versions: Vec<u64> = loaded.iter().map(|s| s.version).collect();
    let changes: Vec<_> = output.workspaces.iter().map(|w| w.state_changes()).collect();
    let attempt = context.attempt;

    let commit_start = Instant::now();
    let committed_versions = if changes.iter().all(Vec::is_empty) {
        // A read-only run needs no commit: the load was one consistent snapshot.
        versions
    } else {
        let sorted_changes = plan.to_lock_order(&changes);
        protocol
            .store
            .commit(CommitRequest {
                models: &plan.sorted,
                changes: &sorted_changes,
                guard: CommitGuard::Versions { versions: &versions, action: &invocation.action },
            })
            .await
            .map_err(|e| match e {
                StoreError::Conflict { model, .. } => Error::Conflict { model, attempts: attempt },
                other => other.into(),
            })?
            .versions
    };
    Ok(outcome(
        plan,
        context,
        output.output,
        changes,
        Vec::new(),
        plan.to_caller_order(&committed_versions),
        Timings { wait: Duration::ZERO, load: load_time, run: run_time, commit: commit_start.elapsed() },
    ))
}
