//! Group commit: lock-mode invocations of the same models and action that queue in one engine
//! run back to back under one lock hold, over the evolving state, and commit together in one
//! round trip.
//!
//! # How it works
//! Each (sorted lock set) has at most one *line* in an engine. The first invocation to arrive
//! at an idle line leads it: it runs alone, exactly as without grouping (local FIFO line, lock
//! and load, run, commit: two round trips), on its caller's task. Invocations that arrive while
//! the line is busy queue in it, in arrival order, and wait for their own result. When the
//! leader is done (or its caller drops it), a *driver* task is spawned if anyone queued; it
//! serves the line in batches until the line is empty, then the line disappears:
//!
//! 1. take the lock for the first queued invocation (the head), with the head's acquire
//!    deadline, and load the state (one round trip);
//! 2. run the head, then the next queued invocations in order, each on the state the previous
//!    successful one left (it sees their writes), until the group holds
//!    [`EngineConfig::max_group`](crate::EngineConfig::max_group) invocations, nobody else
//!    waits, or one more run could outlast half the lease. A rejection, trap or any other rule
//!    failure drops only that invocation's workspace: the next one starts from the state after
//!    the last successful one;
//! 3. commit the composition of the successful runs (the state diff between the loaded state
//!    and the final one) fenced by the group's leases, in one round trip that also releases the
//!    locks; when no run succeeded, only release. Either way the commit checks that every model
//!    is still at the version loaded, even when nothing is written: the members after the head
//!    were sent after that load, perhaps after another action's write was acknowledged, and
//!    must not read (or fail on) the state before it. A refused commit runs the members again
//!    on fresh state under the locks still held;
//! 4. answer every caller only now that the commit is durable: its own output and changes (its
//!    diff against the state it saw), the shared fencing tokens, the versions after the shared
//!    commit; or its own rule error. If the shared commit fails (`LockLost`, ...), every member
//!    of the group gets that error, the rule failures too (they may have seen writes that were
//!    never made), and nothing of the group was written.
//!
//! Only invocations with the same lock set (same models, same action, same schemas) share a
//! line; they may use different rules and list their models in different orders. The work runs
//! on the driver task, so a caller that drops its future while queued only loses its place
//! (it is skipped, never run), and one that drops it while its group runs does not disturb the
//! others (its changes commit with the group, as a single invocation cancelled during its
//! commit round trip may still commit).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::debug;

use super::acquire::Acquisition;
use super::flow::outcome;
use super::idempotency::{CommitFailure, Committed, Idempotency, payload, replay};
use super::{Plan, Protocol};
use crate::error::{Error, Result};
use crate::invocation::{Invocation, Outcome, RunContext, Timings};
use crate::model::change::{FieldChange, ModelSnapshot, ModelTarget};
use crate::model::ids::LockId;
use crate::rule::Rule;
use crate::runtime::ModelWorkspace;
use crate::runtime::changes::diff;
use crate::store::{CommitGuard, CommitRecords, CommitRequest, LockRequest, RecordEntry, StoreError, VersionCheck};

/// The locks of an invocation in the global lock order: what decides which invocations may
/// share a group.
pub(super) type GroupKey = Vec<LockId>;

/// The key of an invocation's line.
pub(super) fn key(plan: &Plan, action: &str) -> GroupKey {
    plan.sorted.iter().map(|t| LockId { model: t.id.clone(), action: action.to_owned() }).collect()
}

/// The group lines of one engine: one queue per busy lock set. A key is present exactly while
/// a leader or a driver serves its line.
#[derive(Default)]
pub(super) struct GroupLines {
    lines: Mutex<HashMap<GroupKey, VecDeque<Member>>>,
}

impl fmt::Debug for GroupLines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupLines").field("busy", &self.lock().len()).finish()
    }
}

impl GroupLines {
    fn lock(&self) -> MutexGuard<'_, HashMap<GroupKey, VecDeque<Member>>> {
        self.lines.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An invocation waiting in a line, with everything needed to run it on the driver task.
pub(super) struct Member {
    pub rule: Rule,
    pub invocation: Invocation,
    pub plan: Plan,
    pub idem: Idempotency,
    pub context: RunContext,
    /// When it entered the line: its acquire deadline and its wait time count from here.
    pub arrived: Instant,
    pub reply: oneshot::Sender<Result<Outcome>>,
}

impl Member {
    fn deadline(&self, protocol: &Protocol) -> Instant {
        self.arrived + protocol.settings.acquire_timeout
    }

    /// Whether it can run on state decoded with `head`'s schemas.
    fn fits(&self, head: &[ModelTarget]) -> bool {
        self.plan.sorted.len() == head.len()
            && self.plan.sorted.iter().zip(head).all(|(a, b)| a.id == b.id && Arc::ptr_eq(&a.schema, &b.schema))
    }
}

/// How an invocation entered its line.
pub(super) enum Joined {
    /// The line was idle: run alone now, and keep the guard until done (it hands the line to
    /// a driver if others queued meanwhile).
    Lead(LeadGuard, RunContext),
    /// The line is busy: the result comes through this channel.
    Queued(oneshot::Receiver<Result<Outcome>>),
}

/// Enters the line of `key`: leads an idle line, or queues in a busy one (then `member` builds
/// what the driver needs).
pub(super) fn join(
    protocol: &Arc<Protocol>,
    runtime: tokio::runtime::Handle,
    key: GroupKey,
    context: RunContext,
    member: impl FnOnce(RunContext, oneshot::Sender<Result<Outcome>>) -> Member,
) -> Joined {
    let mut lines = protocol.groups.lock();
    if let Some(queue) = lines.get_mut(&key) {
        let (tx, rx) = oneshot::channel();
        queue.push_back(member(context, tx));
        return Joined::Queued(rx);
    }
    lines.insert(key.clone(), VecDeque::new());
    drop(lines);
    Joined::Lead(LeadGuard { protocol: Arc::clone(protocol), key: Some(key), runtime }, context)
}

/// The error of a queued invocation whose driver went away without answering (a panic, or the
/// runtime shutting down).
pub(super) fn stopped() -> Error {
    Error::Store(StoreError::Backend("the group commit driver stopped before answering".into()))
}

/// Held by a line's leader while it runs alone. On drop (normal end, error or cancellation) it
/// frees the line, or hands it to a new driver task if invocations queued meanwhile.
pub(super) struct LeadGuard {
    protocol: Arc<Protocol>,
    key: Option<GroupKey>,
    runtime: tokio::runtime::Handle,
}

impl Drop for LeadGuard {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        let mut lines = self.protocol.groups.lock();
        if lines.get(&key).is_some_and(VecDeque::is_empty) {
            lines.remove(&key);
            return;
        }
        drop(lines);
        let protocol = Arc::clone(&self.protocol);
        self.runtime.spawn(drive(protocol, key));
    }
}

/// Removes a line if its driver stops without finishing (a panic, or the runtime dropping the
/// task): the invocations still queued are dropped, so their callers get [`stopped`].
struct DriverGuard {
    protocol: Arc<Protocol>,
    key: Option<GroupKey>,
}

impl Drop for DriverGuard {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let orphans = self.protocol.groups.lock().remove(&key);
            drop(orphans);
        }
    }
}

/// Serves a line in batches until it is empty.
async fn drive(protocol: Arc<Protocol>, key: GroupKey) {
    let mut guard = DriverGuard { protocol: Arc::clone(&protocol), key: Some(key.clone()) };
    while let Some(head) = next_head(&protocol, &key) {
        run_group(&protocol, &key, head).await;
        // Let the callers just answered (and everyone else) run before the next batch.
        tokio::task::yield_now().await;
    }
    // `next_head` removed the line under the lock.
    guard.key = None;
}

/// The first queued invocation that still wants to run; removes the line when none does.
fn next_head(protocol: &Protocol, key: &GroupKey) -> Option<Member> {
    let now = Instant::now();
    let mut lines = protocol.groups.lock();
    loop {
        let queue = lines.get_mut(key)?;
        match queue.pop_front() {
            None => {
                lines.remove(key);
                return None;
            }
            Some(m) => {
                if let Some(m) = still_waiting(protocol, key, m, now) {
                    return Some(m);
                }
            }
        }
    }
}

/// The next queued invocation that can join the running group, if any (it must fit the
/// group's schemas; otherwise it stays first in line for the next group).
fn next_member(protocol: &Protocol, key: &GroupKey, head: &[ModelTarget]) -> Option<Member> {
    let now = Instant::now();
    let mut lines = protocol.groups.lock();
    let queue = lines.get_mut(key)?;
    loop {
        if !queue.front()?.fits(head) {
            return None;
        }
        let m = queue.pop_front()?;
        if let Some(m) = still_waiting(protocol, key, m, now) {
            return Some(m);
        }
    }
}

/// `None` for an invocation whose caller went away (dropped without running) or whose acquire
/// deadline passed while it queued (answered with [`Error::LockTimeout`]).
fn still_waiting(protocol: &Protocol, key: &GroupKey, m: Member, now: Instant) -> Option<Member> {
    if m.reply.is_closed() {
        return None;
    }
    if now >= m.deadline(protocol) {
        let waited = now - m.arrived;
        let _ = m.reply.send(Err(Error::LockTimeout { lock: key[0].clone(), waited }));
        return None;
    }
    Some(m)
}

/// A member's run that succeeded.
struct Ran {
    output: String,
    /// Its own changes (against the state it saw), caller order.
    changes: Vec<Vec<FieldChange>>,
    run: Duration,
}

/// One pass of a group's members over the state loaded under its locks: each runs on the state
/// the previous successful one left.
#[derive(Default)]
struct Pass {
    /// One result per member, in order.
    results: Vec<Result<Ran>>,
    /// The state after the last successful run (lock order); `None` while no run changed it.
    state: Option<Vec<ModelSnapshot>>,
    succeeded: usize,
}

impl Pass {
    /// Runs `member` on the state so far (`first` while nobody changed it); its wait for an
    /// instance slot ends at `slot_deadline`.
    async fn run(&mut self, protocol: &Protocol, member: &Member, first: &[ModelSnapshot], slot_deadline: Instant) {
        let current = self.state.as_deref().unwrap_or(first);
        let snapshots = member.plan.to_caller_order(current);
        let (rule, invocation, plan, context) = (&member.rule, &member.invocation, &member.plan, &member.context);
        match protocol.run_rule(rule, invocation, plan, context, &snapshots, slot_deadline).await {
            Ok((output, run)) => {
                let changes: Vec<Vec<FieldChange>> =
                    output.workspaces.iter().map(ModelWorkspace::state_changes).collect();
                if changes.iter().any(|c| !c.is_empty()) {
                    let finals: Vec<ModelSnapshot> =
                        output.workspaces.iter().zip(snapshots).map(|(w, s)| final_state(w, s)).collect();
                    self.state = Some(member.plan.to_lock_order(&finals));
                }
                self.succeeded += 1;
                self.results.push(Ok(Ran { output: output.output, changes, run }));
            }
            Err(e) => self.results.push(Err(e)),
        }
    }
}

/// One group: lock and load for `head`, run it and whoever joins, commit once with every
/// member's record, answer all. A commit refused because another writer changed a model since
/// the load (another action, a pipeline, a direct write) runs the same members again on fresh
/// state under the locks still held ([`Protocol::reload_under_locks`]); one refused because a
/// member's key was committed before answers that member with the replay and runs the others
/// again without it. Nobody has been answered before the commit, so every member's result is
/// the one of the run that commits.
async fn run_group(protocol: &Protocol, key: &GroupKey, head: Member) {
    let settings = protocol.settings;
    let request = LockRequest {
        models: head.plan.sorted.clone(),
        action: head.invocation.action.clone(),
        owner: head.context.invocation_id.clone(),
        lease: settings.lease,
        record: head.idem.lookup(head.context.attempt).map(str::to_owned),
    };
    let acquired = match protocol.acquire_until(&request, head.arrived, head.deadline(protocol)).await {
        Ok(Acquisition::Held(acquired)) => acquired,
        Ok(Acquisition::Recorded { record, waited, load }) => {
            let timings = Timings { wait: waited, load, ..Timings::default() };
            let _ = head.reply.send(replay(&head.plan, &head.idem, &record, timings));
            return;
        }
        Err(e) => {
            // Only the head's deadline was used; the others get their own attempt.
            let _ = head.reply.send(Err(e));
            return;
        }
    };
    let held_since = Instant::now();
    let max_group = settings.max_group.max(1);
    // Stop adding runs once one more could outlast half the lease: the commit must land
    // while the locks are still ours.
    let budget = settings.lease / 2;
    let deadline = settings.rule_deadline;

    let mut first = acquired.snapshots;
    let mut load = acquired.load;
    let mut members: Vec<Member> = Vec::with_capacity(max_group.min(64));
    let mut pass = Pass::default();
    let mut next = Some(head);
    let slot_deadline = protocol.slot_deadline_under_locks(held_since);
    while let Some(member) = next.take() {
        pass.run(protocol, &member, &first, slot_deadline).await;
        members.push(member);
        if members.len() < max_group && held_since.elapsed() + deadline < budget {
            next = next_member(protocol, key, &members[0].plan.sorted);
        }
    }
    let tokens: Vec<u64> = acquired.leases.leases().iter().map(|l| l.token).collect();
    let targets = members[0].plan.sorted.clone();
    // The members after the head joined after the load, perhaps after another writer's commit
    // was acknowledged: what they read (or failed on) must still be the stored state when
    // they are answered, even if nobody writes; else they run again on fresh state.
    let check = if members.len() > 1 { VersionCheck::Always } else { VersionCheck::WhenWriting };
    let mut reruns = 0;
    loop {
        debug!(size = members.len(), succeeded = pass.succeeded, reruns, "group ran");
        if members.is_empty() {
            protocol.release_after_failure(acquired.leases, "every member of the group was a replay").await;
            return;
        }
        let changes = match &pass.state {
            Some(last) => compose(&targets, &first, last),
            None => vec![Vec::new(); targets.len()],
        };
        let versions: Vec<u64> = first.iter().map(|s| s.version).collect();
        // Every member's record: written for the runs that succeeded, only checked for the
        // others (a failed run writes nothing, but must learn that its key committed before).
        let payloads: Vec<Option<String>> = members
            .iter()
            .zip(&pass.results)
            .map(|(m, result)| {
                result.as_ref().ok().map(|ran| {
                    let tokens = m.plan.to_caller_order(&tokens);
                    payload(&m.idem, &m.context.invocation_id, &ran.output, &tokens, m.context.attempt)
                })
            })
            .collect();
        let entries: Vec<RecordEntry<'_>> = members
            .iter()
            .zip(&payloads)
            .map(|(m, p)| RecordEntry { key: &m.idem.key, payload: p.as_deref() })
            .collect();
        let commit_start = Instant::now();
        protocol.forget_cached(&targets);
        let request = CommitRequest {
            models: &targets,
            changes: &changes,
            guard: CommitGuard::Leases { leases: acquired.leases.leases(), versions: &versions, check },
            records: CommitRecords::NONE,
        };
        let committed = protocol.commit(request, &entries, &members[0].idem).await;
        let commit = commit_start.elapsed();
        drop(entries);
        let error = match committed {
            Ok(Committed::Applied(receipt)) => {
                // The commit released the locks.
                acquired.leases.settle();
                drop(acquired.turn);
                for (member, result) in members.into_iter().zip(pass.results) {
                    let reply = result.map(|ran| {
                        let waited = member.arrived.elapsed().saturating_sub(load + ran.run + commit);
                        outcome(
                            &member.plan,
                            &member.idem,
                            member.context,
                            ran.output,
                            ran.changes,
                            member.plan.to_caller_order(&tokens),
                            member.plan.to_caller_order(&receipt.versions),
                            Timings { wait: waited, load, run: ran.run, commit },
                        )
                    });
                    let _ = member.reply.send(reply);
                }
                return;
            }
            Ok(Committed::Recorded { index, record }) if index < members.len() => {
                // That member was committed before: answer it, and run the others again on
                // the state without its run.
                let member = members.remove(index);
                let timings = Timings { load, commit, ..Timings::default() };
                let _ = member.reply.send(replay(&member.plan, &member.idem, &record, timings));
                pass = Pass::default();
                for member in &mut members {
                    member.context.attempt += 1;
                    pass.run(protocol, member, &first, slot_deadline).await;
                }
                continue;
            }
            Ok(Committed::Recorded { .. }) => {
                Error::Store(StoreError::Backend("the commit named a record outside the group".into()))
            }
            Err(CommitFailure::Store(StoreError::Conflict { model, .. })) => {
                let attempts = members[0].context.attempt;
                match protocol.reload_under_locks(&targets, model, reruns, attempts, held_since).await {
                    Ok((fresh, reload)) => {
                        first = fresh;
                        load += reload;
                        reruns += 1;
                        pass = Pass::default();
                        for member in &mut members {
                            member.context.attempt += 1;
                            pass.run(protocol, member, &first, slot_deadline).await;
                        }
                        continue;
                    }
                    Err(e) => e,
                }
            }
            Err(e) => Error::from(e),
        };
        // Nothing of the group was written (or, for an unknown outcome, it may all have been).
        protocol.release_after_failure(acquired.leases, "group commit refused").await;
        drop(acquired.turn);
        if pass.succeeded == 0 {
            // Every run failed on the stored state and had nothing to write: each error stands.
            for (member, result) in members.into_iter().zip(pass.results) {
                let _ = member.reply.send(Err(result.err().unwrap_or_else(stopped)));
            }
            return;
        }
        for member in members {
            let error = match &error {
                Error::OutcomeUnknown { reason, .. } => {
                    Error::OutcomeUnknown { key: member.idem.key.clone(), reason: reason.clone() }
                }
                other => other.clone(),
            };
            let _ = member.reply.send(Err(error));
        }
        return;
    }
}

/// The state a run left: its workspace's final value of every field.
fn final_state(workspace: &ModelWorkspace, seen: ModelSnapshot) -> ModelSnapshot {
    if !workspace.is_changed() {
        return seen;
    }
    let values = workspace
        .schema()
        .fields()
        .zip(seen.values)
        .map(|((name, _), before)| workspace.value(name).cloned().unwrap_or(before))
        .collect();
    ModelSnapshot { values, version: seen.version }
}

/// The changes that turn `first` into `last`, per model (lock order): what the group commits.
/// A state diff composes every member's writes (appends stay appends, dict entries stay
/// entries), and the locks guarantee the store still holds `first`.
fn compose(targets: &[ModelTarget], first: &[ModelSnapshot], last: &[ModelSnapshot]) -> Vec<Vec<FieldChange>> {
    targets
        .iter()
        .zip(first.iter().zip(last))
        .map(|(target, (before, after))| {
            let mut out = Vec::new();
            for (((name, _), old), new) in target.schema.fields().zip(&before.values).zip(&after.values) {
                diff(name, old, new, &mut out);
            }
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ids::ModelId;
    use crate::model::schema::ModelSchema;
    use crate::model::value::{FieldType, FieldValue, Scalar, ScalarKind};

    fn target() -> ModelTarget {
        let schema = ModelSchema::builder("T")
            .field("n", FieldType::Scalar(ScalarKind::Int))
            .field("log", FieldType::List(ScalarKind::Str))
            .field("tags", FieldType::Dict(ScalarKind::Int))
            .build()
            .expect("valid schema");
        ModelTarget { id: ModelId::new("T", "k"), schema: Arc::new(schema) }
    }

    fn state(n: i64, log: &[&str], tags: &[(&str, i64)]) -> ModelSnapshot {
        ModelSnapshot {
            values: vec![
                FieldValue::Scalar(Scalar::Int(n)),
                FieldValue::List(log.iter().map(|s| Scalar::Str((*s).to_owned())).collect()),
                FieldValue::Dict(tags.iter().map(|(k, v)| ((*k).to_owned(), Scalar::Int(*v))).collect()),
            ],
            version: 3,
        }
    }

    /// Three members appended one item each, changed the counter and moved dict entries: the
    /// group writes one append of the three items, the last counter value, and the net dict
    /// change; a field that came back to its loaded value is not written.
    #[test]
    fn the_group_commits_the_composed_state_diff() {
        let t = target();
        let first = state(5, &["a"], &[("x", 1), ("y", 2)]);
        let last = state(8, &["a", "b", "c", "d"], &[("y", 2), ("z", 9)]);
        let changes = compose(std::slice::from_ref(&t), std::slice::from_ref(&first), std::slice::from_ref(&last));
        assert_eq!(
            changes,
            vec![vec![
                FieldChange::Set { field: "n".into(), value: Scalar::Int(8) },
                FieldChange::ListAppend { field: "log".into(), items: vec!["b".into(), "c".into(), "d".into()] },
                FieldChange::DictRemove { field: "tags".into(), keys: vec!["x".into()] },
                FieldChange::DictSet { field: "tags".into(), entries: vec![("z".into(), Scalar::Int(9))] },
            ]]
        );
        let unchanged = compose(std::slice::from_ref(&t), std::slice::from_ref(&first), std::slice::from_ref(&first));
        assert_eq!(unchanged, vec![Vec::<FieldChange>::new()]);
    }
}
