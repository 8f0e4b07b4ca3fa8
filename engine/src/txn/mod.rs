//! The transaction protocol: one flow per mode, lock waits with local FIFO lines, and the
//! retry policy they share.
//!
//! Every flow is load → run → commit, two store round trips in the common case:
//! - [`lock_mode`]: lock-and-load, run, fenced commit-and-release (state diff); invocations of
//!   one lock set queued in one engine run back to back under one lock hold and commit together
//!   ([`group`]);
//! - [`pipeline`]: load, run, unguarded commit of the operations' intent;
//! - [`optimistic`]: load with versions, run, commit only if the versions still hold.

pub(crate) mod acquire;
pub(crate) mod group;
pub(crate) mod local_queue;
pub(crate) mod lock_mode;
pub(crate) mod optimistic;
pub(crate) mod pipeline;
pub mod retry;

use std::time::Instant;

use crate::engine::Inner;
use crate::error::Result;
use crate::invocation::{Invocation, Outcome, RunContext, Timings};
use crate::model::change::{FieldChange, ModelChanges, ModelSnapshot, ModelTarget};
use crate::rule::Rule;
use crate::runtime::{RuleRun, RunOutput};

/// An invocation checked and resolved: schemas found, models in caller and lock order.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Models in the caller's order (what the rule sees).
    pub targets: Vec<ModelTarget>,
    /// `order[i]` is the caller index of the i-th model in lock order.
    pub order: Vec<usize>,
    /// Models in the global lock order (what the store sees).
    pub sorted: Vec<ModelTarget>,
}

impl Plan {
    pub(crate) fn new(targets: Vec<ModelTarget>, order: Vec<usize>) -> Self {
        let sorted = order.iter().map(|&i| targets[i].clone()).collect();
        Self { targets, order, sorted }
    }

    /// Per-model values from lock order to caller order.
    pub(crate) fn to_caller_order<T: Clone>(&self, sorted: &[T]) -> Vec<T> {
        let mut out: Vec<Option<T>> = vec![None; sorted.len()];
        for (pos, &caller) in self.order.iter().enumerate() {
            out[caller] = sorted.get(pos).cloned();
        }
        out.into_iter().flatten().collect()
    }

    /// Per-model values from caller order to lock order.
    pub(crate) fn to_lock_order<T: Clone>(&self, caller: &[T]) -> Vec<T> {
        self.order.iter().filter_map(|&i| caller.get(i).cloned()).collect()
    }
}

/// Runs the rule over snapshots given in caller order; returns its output and timing.
pub(crate) fn run_rule(
    inner: &Inner,
    rule: &Rule,
    invocation: &Invocation,
    plan: &Plan,
    context: &RunContext,
    snapshots: &[ModelSnapshot],
) -> Result<(RunOutput, std::time::Duration)> {
    let start = Instant::now();
    let output = inner.runtime.run(
        rule.compiled(),
        RuleRun { rule_name: rule.name(), context, models: &plan.targets, snapshots, input: &invocation.input },
    )?;
    Ok((output, start.elapsed()))
}

/// The first half of the lock-free modes: the models loaded (lock order) and the rule's run.
pub(crate) struct LoadedRun {
    /// The snapshots, in lock order (with the versions optimistic mode guards on).
    pub loaded: Vec<ModelSnapshot>,
    /// The rule's output and workspaces (caller order).
    pub output: RunOutput,
    /// The load round trip.
    pub load: std::time::Duration,
    /// The rule's run.
    pub run: std::time::Duration,
}

/// Loads the models without locks in one round trip and runs the rule over them.
pub(crate) async fn load_and_run(
    inner: &Inner,
    rule: &Rule,
    invocation: &Invocation,
    plan: &Plan,
    context: &RunContext,
) -> Result<LoadedRun> {
    let load_start = Instant::now();
    let loaded = inner.store.load(&plan.sorted).await?;
    let load = load_start.elapsed();
    let snapshots = plan.to_caller_order(&loaded);
    let (output, run) = run_rule(inner, rule, invocation, plan, context, &snapshots)?;
    Ok(LoadedRun { loaded, output, load, run })
}

/// Assembles a committed invocation's outcome; `changes` in caller order.
pub(crate) fn outcome(
    plan: &Plan,
    context: RunContext,
    output: String,
    changes: Vec<Vec<FieldChange>>,
    fencing_tokens: Vec<u64>,
    versions: Vec<u64>,
    timings: Timings,
) -> Outcome {
    Outcome {
        invocation_id: context.invocation_id,
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
