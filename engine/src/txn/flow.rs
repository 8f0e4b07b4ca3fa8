//! The steps every flow shares: running the rule over loaded snapshots, the lock-free modes'
//! load-and-run, and assembling a committed invocation's outcome.

use std::time::{Duration, Instant};

use super::idempotency::{Idempotency, replay};
use super::{Plan, Protocol};
use crate::error::{Error, Result};
use crate::invocation::{Invocation, Outcome, RunContext, Timings};
use crate::model::change::{FieldChange, ModelChanges, ModelSnapshot, ModelTarget};
use crate::model::ids::ModelId;
use crate::rule::Rule;
use crate::runtime::{RuleRun, RunOutput};
use crate::store::Loaded;

/// How many times one lock hold runs a rule again because other writers kept changing its
/// models; past it the invocation fails with a retryable [`Error::Conflict`] (and releases).
const MAX_RERUNS: u32 = 16;

impl Protocol {
    /// After a lock-mode commit was refused because `model` changed since the load (another
    /// action's lock, a pipeline or a direct write committed in between), loads the models
    /// again under the locks still held, for the rule to run once more on fresh state: a value
    /// computed from the older state never lands, and no other writer is overwritten.
    ///
    /// # Errors
    /// [`Error::Conflict`] (retryable; the caller releases the locks) after [`MAX_RERUNS`]
    /// re-runs, or when one more run could outlast half the lease (the commit must land while
    /// the locks are still ours); or the load's store error.
    pub(super) async fn reload_under_locks(
        &self,
        models: &[ModelTarget],
        model: ModelId,
        reruns: u32,
        attempts: u32,
        held_since: tokio::time::Instant,
    ) -> Result<(Vec<ModelSnapshot>, Duration)> {
        let budget = self.settings.lease / 2;
        if reruns >= MAX_RERUNS || held_since.elapsed() + self.settings.rule_deadline >= budget {
            return Err(Error::Conflict { model, attempts });
        }
        tracing::debug!(%model, reruns, "a model changed under the locks: running the rule again on fresh state");
        let start = Instant::now();
        let fresh = self.store.load(models).await?;
        Ok((fresh, start.elapsed()))
    }

    /// Runs the rule over snapshots given in caller order; returns its output and timing. The
    /// wait for a free instance slot ends at `slot_deadline` ([`Error::Overloaded`]).
    pub(super) async fn run_rule(
        &self,
        rule: &Rule,
        invocation: &Invocation,
        plan: &Plan,
        context: &RunContext,
        snapshots: &[ModelSnapshot],
        slot_deadline: tokio::time::Instant,
    ) -> Result<(RunOutput, Duration)> {
        let start = Instant::now();
        let run =
            RuleRun { rule_name: rule.name(), context, models: &plan.targets, snapshots, input: &invocation.input };
        let output = self.runtime.run_until(rule.compiled(), run, Some(slot_deadline)).await?;
        Ok((output, start.elapsed()))
    }

    /// The latest a run under locks taken at `held_since` may start waiting for a slot: its
    /// deadline later, half the lease has gone, and the commit must still land while the locks
    /// are ours. A slot wait counts against the lease like the run itself.
    pub(super) fn slot_deadline_under_locks(&self, held_since: tokio::time::Instant) -> tokio::time::Instant {
        let budget = (self.settings.lease / 2).saturating_sub(self.settings.rule_deadline);
        held_since + budget
    }

    /// Loads the models without locks in one round trip (unless the key is recorded as
    /// committed: then the replay) and runs the rule over them.
    pub(super) async fn load_and_run(
        &self,
        rule: &Rule,
        invocation: &Invocation,
        plan: &Plan,
        idem: &Idempotency,
        context: &RunContext,
    ) -> Result<Result<LoadedRun, Outcome>> {
        let load_start = Instant::now();
        let loaded = match idem.lookup(context.attempt) {
            Some(key) => self.store.load_unless_recorded(&plan.sorted, key).await?,
            None => Loaded::Snapshots(self.store.load(&plan.sorted).await?),
        };
        let loaded = match loaded {
            Loaded::Snapshots(loaded) => loaded,
            Loaded::Recorded(record) => {
                let timings = Timings { load: load_start.elapsed(), ..Timings::default() };
                return replay(plan, idem, &record, timings).map(Err);
            }
        };
        let load = load_start.elapsed();
        let snapshots = plan.to_caller_order(&loaded);
        // No lock is held: the slot wait is bounded like a lock wait would be.
        let slot_deadline = tokio::time::Instant::now() + self.settings.acquire_timeout;
        let (output, run) = self.run_rule(rule, invocation, plan, context, &snapshots, slot_deadline).await?;
        Ok(Ok(LoadedRun { output, load, run }))
    }
}

/// The first half of pipeline mode: the rule's run on the models loaded.
pub(super) struct LoadedRun {
    /// The rule's output and workspaces (caller order).
    pub output: RunOutput,
    /// The load round trip.
    pub load: Duration,
    /// The rule's run.
    pub run: Duration,
}

/// Assembles a committed invocation's outcome; `changes` in caller order.
#[allow(clippy::too_many_arguments)]
pub(super) fn outcome(
    plan: &Plan,
    idem: &Idempotency,
    context: RunContext,
    output: String,
    changes: Vec<Vec<FieldChange>>,
    fencing_tokens: Vec<u64>,
    versions: Vec<u64>,
    timings: Timings,
) -> Outcome {
    Outcome {
        invocation_id: context.invocation_id,
        idempotency_key: idem.key.clone(),
        replayed: false,
        output,
        changes: plan
            .targets
            .iter()
            .zip(changes)
            .map(|(t, changes)| ModelChanges { model: t.id.clone(), changes })
            .collect(),
        fencing_tokens,
        versions,
        attempts: context.attempt,
        timings,
    }
}
