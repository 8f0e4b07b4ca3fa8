//! One run of a rule: a fresh `Store` and instance over the models' snapshots, the call, and
//! the classification of how it ended.

use std::time::Instant;

use tracing::Instrument as _;
use wasmtime::{Engine, Store, Trap, UpdateDeadline, WasmBacktrace};

use super::RuleRuntime;
use super::bindings::wasmtx::rule::types as wit;
use super::convert::{access_error_from_wit, mode_to_wit};
use super::host::HostState;
use super::limits::MemoryCap;
use super::loader::CompiledRule;
use super::log::RuleLog;
use super::workspace::ModelWorkspace;
use crate::error::Error;
use crate::invocation::RunContext;
use crate::model::change::{ModelSnapshot, ModelTarget};
use crate::model::value::{FieldType, FieldValue};

/// What one run needs: the invocation's facts, its models with their loaded state, and the
/// input.
#[derive(Debug, Clone, Copy)]
pub struct RuleRun<'a> {
    /// The rule's registered name, for logs.
    pub rule_name: &'a str,
    /// The invocation facts the rule sees in its `context`.
    pub context: &'a RunContext,
    /// The declared models, in the caller's order (`models.open(i)` opens `models[i]`).
    pub models: &'a [ModelTarget],
    /// Their loaded state, in the same order.
    pub snapshots: &'a [ModelSnapshot],
    /// The caller's input, JSON text.
    pub input: &'a str,
}

/// A run whose rule returned `ok`.
#[derive(Debug)]
pub struct RunOutput {
    /// The rule's output, valid JSON text.
    pub output: String,
    /// What the rule did to each model, in the order of [`RuleRun::models`].
    pub workspaces: Vec<ModelWorkspace>,
}

impl RuleRuntime {
    /// Runs `rule` once over the models' snapshots in a fresh instance, waiting as long as it
    /// takes for a free instance slot. See [`RuleRuntime::run_until`].
    ///
    /// # Errors
    /// As [`RuleRuntime::run_until`] (never [`Error::Overloaded`]).
    pub async fn run(&self, rule: &CompiledRule, run: RuleRun<'_>) -> Result<RunOutput, Error> {
        self.run_until(rule, run, None).await
    }

    /// Runs `rule` once over the models' snapshots in a fresh instance, waiting for a free
    /// instance slot until `slot_deadline` (if given).
    ///
    /// The rule runs as a future that yields to the executor at every epoch tick
    /// ([`RuntimeConfig::yield_interval`](super::RuntimeConfig::yield_interval)): however long
    /// it runs, it never keeps a host thread from other tasks, timers and I/O for longer than
    /// a tick, and dropping the future stops it. Its deadline is wall-clock time from the start
    /// of the instantiation, time spent yielding included.
    ///
    /// # Errors
    /// - [`Error::Overloaded`] if no slot became free by `slot_deadline`: nothing ran;
    /// - [`Error::InvalidInput`] if `models` and `snapshots` do not match (lengths or shapes), if
    ///   `rule` was compiled by another runtime, or if the rule returned `invalid-input`;
    /// - [`Error::Rejected`] and [`Error::Access`] when the rule returned `rejected` or
    ///   propagated an access error (`model` is the model of the failed access, when known);
    /// - [`Error::InvalidOutput`] if the rule's output is not JSON;
    /// - [`Error::DeadlineExceeded`], [`Error::MemoryLimitExceeded`] and [`Error::Trapped`] when
    ///   the sandbox stopped the rule.
    pub async fn run_until(
        &self,
        rule: &CompiledRule,
        run: RuleRun<'_>,
        slot_deadline: Option<tokio::time::Instant>,
    ) -> Result<RunOutput, Error> {
        let span = tracing::trace_span!("wasmtx.rule", rule = run.rule_name);
        self.run_in_span(rule, run, slot_deadline).instrument(span).await
    }

    async fn run_in_span(
        &self,
        rule: &CompiledRule,
        run: RuleRun<'_>,
        slot_deadline: Option<tokio::time::Instant>,
    ) -> Result<RunOutput, Error> {
        if !Engine::same(rule.pre().engine(), &self.engine) {
            return Err(invalid("the rule was compiled by another runtime".into()));
        }
        let workspaces = self.workspaces(&run)?;
        let context = wit::Context {
            invocation_id: run.context.shown_invocation_id().to_owned(),
            now_ms: run.context.now_ms,
            action: run.context.action.clone(),
            mode: mode_to_wit(run.context.mode),
            models: run
                .models
                .iter()
                .map(|m| wit::ModelRef { model_type: m.id.model_type.clone(), key: m.id.key.clone() })
                .collect(),
            attempt: run.context.shown_attempt(),
        };
        let state = HostState::new(
            workspaces,
            MemoryCap::new(self.config.memory_limit),
            RuleLog::new(run.rule_name, &run.context.invocation_id, &self.config.limits),
        );

        let waiting_since = tokio::time::Instant::now();
        let Some(permit) = self.gate.acquire(slot_deadline).await else {
            return Err(Error::Overloaded { waited: waiting_since.elapsed() });
        };
        let (engine, pre, input, deadline) =
            (self.engine.clone(), rule.clone(), run.input.to_owned(), self.config.deadline);
        let execution = async move {
            let mut store = Store::new(&engine, state);
            store.limiter(|state| &mut state.memory);
            // At every tick: stop a rule past its deadline, else yield with Tokio's
            // `yield_now`, not a plain self-wake: a task that wakes itself while polled goes
            // back to the front of its worker's queue and would run again at once, while
            // `yield_now` lets the worker run its other ready tasks, timers and I/O first.
            let started = Instant::now();
            store.epoch_deadline_callback(move |_| {
                Ok(if started.elapsed() >= deadline {
                    UpdateDeadline::Interrupt
                } else {
                    UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))
                })
            });
            store.set_epoch_deadline(1);
            let result = match pre.pre().instantiate_async(&mut store).await {
                Ok(rule) => rule.call_run(&mut store, &context, &input).await,
                Err(e) => Err(e),
            };
            // Dropping the store returns the instance's slot to the pool: only then free the
            // permit.
            let state = store.into_data();
            drop(permit);
            (result, state)
        };
        let (result, state) = self.executor.run(execution).await?;
        state.log.finish();

        match result {
            Ok(Ok(output)) => match serde_json::from_str::<serde::de::IgnoredAny>(&output) {
                Ok(_) => Ok(RunOutput { output, workspaces: state.workspaces }),
                Err(e) => Err(Error::InvalidOutput { reason: format!("not JSON text: {e}") }),
            },
            Ok(Err(wit::RuleError::Rejected(message))) => Err(Error::Rejected { message }),
            Ok(Err(wit::RuleError::InvalidInput(reason))) => Err(Error::InvalidInput { reason }),
            Ok(Err(wit::RuleError::Access(e))) => {
                let error = access_error_from_wit(e);
                Err(Error::Access { model: state.model_of_failure(&error), error })
            }
            Err(e) => Err(self.stopped(&e, state.memory.was_hit())),
        }
    }

    /// One workspace per model, after checking that the snapshots fit the schemas.
    fn workspaces(&self, run: &RuleRun<'_>) -> Result<Vec<ModelWorkspace>, Error> {
        if run.models.len() != run.snapshots.len() {
            return Err(invalid(format!("{} models but {} snapshots", run.models.len(), run.snapshots.len())));
        }
        let mut out = Vec::with_capacity(run.models.len());
        for (target, snapshot) in run.models.iter().zip(run.snapshots) {
            let schema = &target.schema;
            // Shapes only (not every item): the workspace relies on them, and a store decodes
            // values with the schema, so items are already typed.
            let fits = snapshot.values.len() == schema.len()
                && schema.fields().zip(&snapshot.values).all(|((_, def), value)| {
                    matches!(
                        (def.ty, value),
                        (FieldType::Scalar(_), FieldValue::Scalar(_))
                            | (FieldType::List(_), FieldValue::List(_))
                            | (FieldType::Dict(_), FieldValue::Dict(_))
                    )
                });
            if !fits {
                return Err(invalid(format!("the snapshot of {} does not match its schema", target.id)));
            }
            out.push(ModelWorkspace::new(target, snapshot.clone(), self.config.limits));
        }
        Ok(out)
    }

    /// Classifies an instantiation or call failure by its cause: the memory cap (which
    /// wasmtime reports as a plain error, hence the flag), the epoch deadline, or a trap.
    fn stopped(&self, e: &wasmtime::Error, memory_hit: bool) -> Error {
        if memory_hit {
            return Error::MemoryLimitExceeded { limit_bytes: self.config.memory_limit };
        }
        let trap = e.downcast_ref::<Trap>();
        let mut message = match trap {
            Some(Trap::Interrupt) => return Error::DeadlineExceeded { limit: self.config.deadline },
            // wasmtime words it "call stack exhausted"; say what a rule author would call it.
            Some(Trap::StackOverflow) => STACK_OVERFLOW.to_owned(),
            // A Rust guest keeps its own stack at the bottom of linear memory (`--stack-first`),
            // so overflowing it runs below address 0: the trap alone cannot tell that from any
            // other stray access, hence a hint rather than a claim.
            Some(Trap::MemoryOutOfBounds) => format!("{} ({OUT_OF_BOUNDS_HINT})", Trap::MemoryOutOfBounds),
            Some(trap) => trap.to_string(),
            None => format!("{e:#}"),
        };
        if let Some(backtrace) = e.downcast_ref::<WasmBacktrace>() {
            message.push('\n');
            message.push_str(&backtrace.to_string());
        }
        Error::Trapped { message }
    }
}

/// How a trap on the wasm call stack's limit (a recursion too deep) begins its message.
const STACK_OVERFLOW: &str = "stack overflow: the rule exhausted its call stack (a recursion too deep?)";

/// Added to an out-of-bounds trap's message: the other thing it may be.
const OUT_OF_BOUNDS_HINT: &str =
    "or a stack overflow in a guest that keeps its stack in linear memory, as Rust guests do";

fn invalid(reason: String) -> Error {
    Error::InvalidInput { reason }
}
