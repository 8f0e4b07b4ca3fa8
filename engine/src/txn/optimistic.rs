//! Optimistic mode: serializable without locks. The commit applies only if no model's
//! version moved since the state the rule ran on; every commit in every mode bumps the versions
//! of the models it changed, so lock-mode and optimistic invocations can be mixed on one model.
//!
//! One round trip when the engine's snapshot cache ([`super::cache`]) holds every model: the
//! rule runs on the cached state and the commit checks every model's version (the read set
//! too). A commit refused because versions moved brings the fresh state of those models in the
//! same reply ([`StoreError::Stale`]); the rule runs again on it at once. Without the cache (a
//! miss, or the cache off) the models are loaded first: two round trips.

use std::time::Instant;

use super::flow::outcome;
use super::idempotency::{CommitFailure, Committed, Idempotency, payload, replay};
use super::{Plan, Protocol};
use crate::error::{Error, Result};
use crate::invocation::{Invocation, Outcome, RunContext, Timings};
use crate::rule::Rule;
use crate::store::{CommitGuard, CommitRecords, CommitRequest, Loaded, RecordEntry, StoreError};

/// Where the state a run starts from came from.
enum Source {
    /// The snapshot cache: its versions must be checked before anything the run read counts.
    Cache,
    /// A load (that checked the record, when the key may be recorded): one consistent
    /// snapshot, so a run that writes nothing is done.
    Store,
    /// The refusal of a commit, which brought the moved models' state: consistent, but the
    /// record was not looked at, so (as on cached state) a failure or a run that writes nothing
    /// is not final until the store says the key is not recorded: a repeat of a committed
    /// invocation whose cache was behind lands here.
    Refused,
}

/// One attempt: the models from the cache (else loaded, unless the key is recorded), then
/// run and commit under a version guard with the invocation's record, running again on the
/// fresh state a refused commit brings back (each run counts as an attempt, up to
/// `max_attempts`; then [`Error::Conflict`] with the attempts made). A model held by a lock of the action is
/// [`Error::Conflict`], which the protocol's retry loop turns into a later attempt.
pub(super) async fn run(
    protocol: &Protocol,
    rule: &Rule,
    invocation: &Invocation,
    plan: &Plan,
    idem: &Idempotency,
    mut context: RunContext,
    max_attempts: u32,
) -> Result<Outcome> {
    // Cached entries serve only under the store's current generation (each store call below
    // takes its own cache epoch for what it keeps). `read_generation` is the generation of the
    // read the rule runs on: a commit's snapshot is kept only under it (a generation change
    // since may hide lost data).
    let mut timings = Timings::default();
    let mut read_generation = protocol.store.generation();
    let (mut loaded, mut source) = match protocol.cache.get_all(&plan.sorted, read_generation) {
        Some(cached) => (cached, Source::Cache),
        None => match load_fresh(protocol, plan, idem, &context, &mut timings, &mut read_generation).await? {
            Loaded::Snapshots(loaded) => (loaded, Source::Store),
            Loaded::Recorded(record) => return replay(plan, idem, &record, timings),
        },
    };
    loop {
        let snapshots = plan.to_caller_order(&loaded);
        // No lock is held: the slot wait is bounded like a lock wait would be.
        let slot_deadline = tokio::time::Instant::now() + protocol.settings.acquire_timeout;
        let ran = protocol.run_rule(rule, invocation, plan, &context, &snapshots, slot_deadline).await;
        let (output, run) = match ran {
            Ok(ran) => ran,
            Err(failure) if matches!(source, Source::Cache | Source::Refused) => {
                // A failure on cached state may be the cache's: the key may be recorded (a
                // repeat of a committed invocation gets its first outcome, never this
                // failure), or the state may have moved. The store's state decides.
                let fresh = match load_fresh(protocol, plan, idem, &context, &mut timings, &mut read_generation).await?
                {
                    Loaded::Snapshots(fresh) => fresh,
                    Loaded::Recorded(record) => return replay(plan, idem, &record, timings),
                };
                if fresh.iter().zip(&loaded).all(|(f, c)| f.version == c.version) {
                    return Err(failure);
                }
                if matches!(source, Source::Cache) {
                    protocol.cache.count_stale();
                }
                loaded = fresh;
                source = Source::Store;
                continue;
            }
            Err(failure) => return Err(failure),
        };
        timings.run += run;
        let changes: Vec<_> = output.workspaces.iter().map(|w| w.state_changes()).collect();
        let versions: Vec<u64> = loaded.iter().map(|s| s.version).collect();
        let read_only = changes.iter().all(Vec::is_empty);
        if read_only && matches!(source, Source::Store) {
            // A read-only run on one consistent snapshot needs no commit (and leaves no record:
            // it has no effect to protect).
            let versions = plan.to_caller_order(&versions);
            return Ok(outcome(plan, idem, context, output.output, changes, Vec::new(), versions, timings));
        }

        // A read-only run on cached state commits nothing, but checks the versions (and that
        // the key is not recorded: a repeat gets the first outcome) in one round trip.
        let commit_start = Instant::now();
        let sorted_changes = plan.to_lock_order(&changes);
        let recorded = payload(idem, &context.invocation_id, &output.output, &[], context.attempt);
        let entries = [RecordEntry { key: &idem.key, payload: (!read_only).then_some(recorded.as_str()) }];
        let request = CommitRequest {
            models: &plan.sorted,
            changes: &sorted_changes,
            guard: CommitGuard::Versions { versions: &versions, action: &invocation.action, refresh: true },
            records: CommitRecords::NONE,
        };
        let epoch = protocol.cache_epoch();
        let committed = protocol.commit(request, &entries, idem).await;
        timings.commit += commit_start.elapsed();
        match committed {
            Ok(Committed::Applied(receipt)) => {
                let committed_versions = receipt.versions;
                if !read_only {
                    // The commit landed on the versions the rule ran on: the store now holds
                    // exactly the state the rule left.
                    for (pos, &caller) in plan.order.iter().enumerate() {
                        let version = committed_versions.get(pos).copied().unwrap_or_default();
                        let state = output.workspaces[caller].final_snapshot(version);
                        protocol.cache.put(&plan.sorted[pos], &state, epoch.with_read_generation(read_generation));
                    }
                }
                let versions = plan.to_caller_order(&committed_versions);
                return Ok(outcome(plan, idem, context, output.output, changes, Vec::new(), versions, timings));
            }
            Ok(Committed::Recorded { record, .. }) => return replay(plan, idem, &record, timings),
            Err(CommitFailure::Store(StoreError::Stale { models })) => {
                if matches!(source, Source::Cache) {
                    protocol.cache.count_stale();
                }
                // The store names at least one model it refused; an invocation of no models
                // checks no versions and is never refused.
                let Some(model) = models.first().map(|m| m.model.clone()) else {
                    return Err(StoreError::Stale { models }.into());
                };
                // The refusal's reply read the fresh state: that is what the next run is on.
                read_generation = epoch.generation();
                for stale in models {
                    if let Some(slot) = loaded.get_mut(stale.index) {
                        protocol.cache.put(&plan.sorted[stale.index], &stale.snapshot, epoch);
                        *slot = stale.snapshot;
                    }
                }
                // A cache that was behind costs one run at once, on the state the refusal
                // brought; a state that moved again under a fresh one is contention, which the
                // retry loop meets with its backoff (the next attempt finds the fresh state
                // cached).
                if matches!(source, Source::Store | Source::Refused) || context.attempt >= max_attempts {
                    return Err(Error::Conflict { model, attempts: context.attempt });
                }
                tracing::debug!("models moved since the state the rule ran on: running it again on fresh state");
                source = Source::Refused;
                context.attempt += 1;
            }
            Err(CommitFailure::Store(StoreError::Conflict { model, .. })) => {
                if read_only {
                    // Every version held (only a lock of the action is taken, which changes no
                    // data until it commits): the run read one consistent state.
                    let versions = plan.to_caller_order(&versions);
                    return Ok(outcome(plan, idem, context, output.output, changes, Vec::new(), versions, timings));
                }
                return Err(Error::Conflict { model, attempts: context.attempt });
            }
            Err(other) => return Err(other.into()),
        }
    }
}

/// Loads the models from the store (unless the key is recorded: then the record), keeps what
/// was loaded in the cache, and sets `read_generation` to the generation the load began under.
async fn load_fresh(
    protocol: &Protocol,
    plan: &Plan,
    idem: &Idempotency,
    context: &RunContext,
    timings: &mut Timings,
    read_generation: &mut u64,
) -> Result<Loaded> {
    let start = Instant::now();
    let epoch = protocol.cache_epoch();
    *read_generation = epoch.generation();
    let loaded = match idem.lookup(context.attempt) {
        Some(key) => protocol.store.load_unless_recorded(&plan.sorted, key).await?,
        None => Loaded::Snapshots(protocol.store.load(&plan.sorted).await?),
    };
    timings.load += start.elapsed();
    if let Loaded::Snapshots(snapshots) = &loaded {
        for (target, snapshot) in plan.sorted.iter().zip(snapshots) {
            protocol.cache.put(target, snapshot, epoch);
        }
    }
    Ok(loaded)
}
