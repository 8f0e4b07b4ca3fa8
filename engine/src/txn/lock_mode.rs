//! Lock mode: the reference's lock context manager, fenced, with group commit for hot keys.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::acquire::Acquisition;
use super::flow::outcome;
use super::group::{self, Joined, Member};
use super::idempotency::{CommitFailure, Committed, Idempotency, payload, replay};
use super::{Plan, Protocol};
use crate::error::Result;
use crate::invocation::{Invocation, Outcome, RunContext, Timings};
use crate::rule::Rule;
use crate::store::{CommitGuard, CommitRecords, CommitRequest, LockRequest, RecordEntry, StoreError, VersionCheck};

/// Runs one lock-mode invocation. With group commit on (`max_group > 1`), an invocation whose
/// lock set is already being served in this engine queues behind it and runs in the next
/// group (see [`group`]); otherwise it runs alone ([`run_alone`]).
pub(super) async fn run(
    protocol: &Arc<Protocol>,
    rule: &Rule,
    invocation: &Invocation,
    plan: &Plan,
    idem: &Idempotency,
    context: RunContext,
) -> Result<Outcome> {
    // Groups run on a task of their own: without a Tokio runtime to spawn it on, run alone
    // (and, with no releaser task either, a caller that drops its future leaves its locks to
    // run out with their lease: see `release`).
    let runtime = match tokio::runtime::Handle::try_current() {
        Ok(runtime) if protocol.settings.max_group > 1 => runtime,
        _ => return run_alone(protocol, rule, invocation, plan, idem, context).await,
    };
    let arrived = tokio::time::Instant::now();
    let joined =
        group::join(protocol, runtime, group::key(plan, &invocation.action), context, |context, reply| Member {
            rule: rule.clone(),
            invocation: invocation.clone(),
            plan: plan.clone(),
            idem: idem.clone(),
            context,
            arrived,
            reply,
        });
    match joined {
        Joined::Lead(guard, context) => {
            let result = run_alone(protocol, rule, invocation, plan, idem, context).await;
            drop(guard);
            result
        }
        Joined::Queued(reply) => reply.await.unwrap_or_else(|_| Err(group::stopped())),
    }
}

/// Lock-and-load, run, then a fenced commit that releases the locks and records the
/// invocation: two round trips. A key recorded as committed already is replayed (found by the
/// lock-and-load, or by the commit when another mode committed it in between). A commit
/// refused because another writer changed a model since the load (another action's lock, a
/// pipeline, a direct write) is not reported: the rule runs again on fresh state under the
/// locks it still holds ([`Protocol::reload_under_locks`]). On any failure after the locks were
/// taken, they are released before the error returns; if the caller drops the future while it
/// holds them, the engine's releaser releases them ([`super::release`]).
async fn run_alone(
    protocol: &Protocol,
    rule: &Rule,
    invocation: &Invocation,
    plan: &Plan,
    idem: &Idempotency,
    mut context: RunContext,
) -> Result<Outcome> {
    let request = LockRequest {
        models: plan.sorted.clone(),
        action: invocation.action.clone(),
        owner: context.invocation_id.clone(),
        lease: protocol.settings.lease,
        record: idem.lookup(context.attempt).map(str::to_owned),
    };
    // Taken before the lock-and-load: what it read is kept only under this epoch.
    let mut loaded_at = protocol.cache_epoch();
    let acquired = match protocol.acquire(&request).await? {
        Acquisition::Held(acquired) => acquired,
        Acquisition::Recorded { record, waited, load } => {
            return replay(plan, idem, &record, Timings { wait: waited, load, ..Timings::default() });
        }
    };
    let held_since = tokio::time::Instant::now();
    let mut loaded = acquired.snapshots;
    let mut load_time = acquired.load;
    let mut run_time = Duration::ZERO;
    let mut reruns = 0;
    let tokens: Vec<u64> = plan.to_caller_order(&acquired.leases.leases().iter().map(|l| l.token).collect::<Vec<_>>());
    loop {
        let snapshots = plan.to_caller_order(&loaded);
        let slot_deadline = protocol.slot_deadline_under_locks(held_since);
        let (output, run) = match protocol.run_rule(rule, invocation, plan, &context, &snapshots, slot_deadline).await {
            Ok(ran) => ran,
            Err(e) => {
                protocol.release_after_failure(acquired.leases, "rule failed").await;
                return Err(e);
            }
        };
        run_time += run;
        let changes: Vec<_> = output.workspaces.iter().map(|w| w.state_changes()).collect();

        let commit_start = Instant::now();
        let sorted_changes = plan.to_lock_order(&changes);
        let versions: Vec<u64> = loaded.iter().map(|s| s.version).collect();
        let recorded = payload(idem, &context.invocation_id, &output.output, &tokens, context.attempt);
        let entries = [RecordEntry { key: &idem.key, payload: Some(&recorded) }];
        let request = CommitRequest {
            models: &plan.sorted,
            changes: &sorted_changes,
            // Read before the commit was sent, under the locks: a run that writes nothing needs
            // no version check.
            guard: CommitGuard::Leases {
                leases: acquired.leases.leases(),
                versions: &versions,
                check: VersionCheck::WhenWriting,
            },
            records: CommitRecords::NONE,
        };
        let committed_at = protocol.cache_epoch();
        let receipt = match protocol.commit(request, &entries, idem).await {
            Ok(Committed::Applied(receipt)) => receipt,
            Ok(Committed::Recorded { record, .. }) => {
                // Another mode committed the key meanwhile: nothing of this run was written.
                protocol.release_after_failure(acquired.leases, "the invocation was committed meanwhile").await;
                let timings =
                    Timings { wait: acquired.waited, load: load_time, run: run_time, commit: commit_start.elapsed() };
                return replay(plan, idem, &record, timings);
            }
            Err(CommitFailure::Store(StoreError::Conflict { model, .. })) => {
                let reloaded_at = protocol.cache_epoch();
                match protocol.reload_under_locks(&plan.sorted, model, reruns, context.attempt, held_since).await {
                    Ok((fresh, reload)) => {
                        loaded_at = reloaded_at;
                        loaded = fresh;
                        load_time += reload;
                        reruns += 1;
                        context.attempt += 1;
                        continue;
                    }
                    Err(e) => {
                        protocol.release_after_failure(acquired.leases, "models kept changing").await;
                        return Err(e);
                    }
                }
            }
            Err(e) => {
                // Nothing was written (or, for an unknown outcome, the locks are ours or run
                // out). Free what we may still hold (a no-op for lost locks).
                protocol.release_after_failure(acquired.leases, "commit refused").await;
                return Err(e.into());
            }
        };
        let commit_time = commit_start.elapsed();
        // The commit released the locks: nothing is left for the releaser, and local followers
        // may go.
        acquired.leases.settle();
        drop(acquired.turn);
        // A commit that wrote checked every version loaded under the locks: the store holds
        // the state the rule left. One that wrote nothing checked none, so only the loaded
        // state, at its loaded version, is known.
        let wrote = changes.iter().any(|c| !c.is_empty());
        for (pos, &caller) in plan.order.iter().enumerate() {
            if wrote {
                let version = receipt.versions.get(pos).copied().unwrap_or_default();
                protocol.cache.put(
                    &plan.sorted[pos],
                    &output.workspaces[caller].final_snapshot(version),
                    committed_at.with_read_generation(loaded_at.generation()),
                );
            } else {
                protocol.cache.put(&plan.sorted[pos], &loaded[pos], loaded_at);
            }
        }
        return Ok(outcome(
            plan,
            idem,
            context,
            output.output,
            changes,
            tokens,
            plan.to_caller_order(&receipt.versions),
            Timings { wait: acquired.waited, load: load_time, run: run_time, commit: commit_time },
        ));
    }
}
