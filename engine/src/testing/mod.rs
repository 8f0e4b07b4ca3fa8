//! Testing rules without Redis: a harness on the embedded
//! [`MemoryStore`](crate::MemoryStore), and a runner of fixture files of given/when/then cases.
//!
//! A rule's test loads the built rule, registers the model schemas, seeds models from JSON,
//! invokes the rule in any mode and asserts on the output, the error and the resulting state,
//! in milliseconds and with no server. From a test in the rule's own crate (with `wasmtx` as a
//! dev-dependency):
//!
//! ```no_run
//! use serde_json::json;
//! use wasmtx::testing::RuleHarness;
//!
//! # fn main() -> Result<(), wasmtx::testing::HarnessError> {
//! let harness = RuleHarness::new()?
//!     .schema_file("../../models/game_character.toml")?
//!     .rule_crate(env!("CARGO_MANIFEST_DIR"))?; // builds this crate for wasm32
//! harness.seed("GameCharacter", "hero", json!({"level": 4, "experience": 3500}))?;
//!
//! harness
//!     .run("level_up", &["GameCharacter:hero"], json!({"exp_gained": 500}))
//!     .assert_output(json!("Leveled up from 4 to 5!"));
//! harness.assert_state("GameCharacter:hero", json!({"level": 5, "experience": 4000}));
//! # Ok(()) }
//! ```
//!
//! The `assert_*` methods panic with a report that shows the invocation, what was expected,
//! what happened (output or error) and the log records the rule emitted; the `check_*`
//! methods return the same as an `Err` instead. [`fixtures`] runs a whole file of cases (and
//! is what `wasmtx test` runs).
//!
//! Models are named `"Type:key"` (`"GameCharacter:hero"`); a model type whose name contains
//! `:` still works, as the part that names a registered type is taken as the type.
//!
//! The harness methods block; they may be called from synchronous tests and from async ones
//! (inside a Tokio runtime the call runs on a helper thread).

mod build;
mod capture;
pub mod compare;
pub mod fixtures;

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

pub use self::build::{AssemblyScriptBuild, BuiltRules, RustRuleBuild, WASM_TARGET, build_rule_crate};
pub use self::capture::RuleLogRecord;
pub use self::compare::Difference;
use self::compare::{short, shorten};
use crate::engine::{Engine, EngineBuilder};
use crate::error::Error;
use crate::invocation::{Invocation, Mode, Outcome};
use crate::model::change::{FieldChange, ModelTarget};
use crate::model::ids::ModelId;
use crate::model::schema::ModelSchema;
use crate::model::value::FieldValue;
use crate::rule::Rule;
use crate::store::{CommitGuard, CommitRequest};

/// Why setting up a harness, seeding or reading a model failed. (A failed *invocation* is
/// not a harness error: it is the [`Run`]'s result, to assert on.)
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Building a rule (a Rust crate or an AssemblyScript project) failed.
    #[error("building the rule in {}: {reason}", crate_dir.display())]
    Build {
        /// The crate's (or project's) directory.
        crate_dir: PathBuf,
        /// What failed, with the tool's output.
        reason: String,
    },
    /// The engine refused something: a schema, rule bytes, a model id.
    #[error(transparent)]
    Engine(#[from] Error),
    /// A model's seed state does not fit its schema, or a model name is malformed.
    #[error("model {model}: {reason}")]
    Model {
        /// The model, as given.
        model: String,
        /// What is wrong.
        reason: String,
    },
    /// No rule is loaded, or none of this name.
    #[error("{0}")]
    NoRule(String),
}

/// A rule test bench: an [`Engine`] on a fresh [`MemoryStore`](crate::MemoryStore), the model
/// schemas, and the rules under test. See the [module documentation](self).
///
/// Setup methods consume and return the harness (`RuleHarness::new()?.schema_file(..)?`);
/// seeding, invoking and reading take `&self`.
pub struct RuleHarness {
    engine: Engine,
    rules: Vec<Rule>,
    /// Every model seeded or invoked, for [`RuleHarness::reset`].
    touched: Mutex<BTreeSet<ModelId>>,
    capture_logs: bool,
    runtime: Option<tokio::runtime::Runtime>,
}

impl fmt::Debug for RuleHarness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuleHarness")
            .field("models", &self.engine.model_types().names())
            .field("rules", &self.rules.iter().map(Rule::name).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Drop for RuleHarness {
    fn drop(&mut self) {
        // Dropping a runtime inside another runtime's task would panic; this never does.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl RuleHarness {
    /// A harness with default engine settings on a fresh [`MemoryStore`](crate::MemoryStore),
    /// with no model types and no rule yet.
    ///
    /// # Errors
    ///
    /// [`HarnessError::Engine`] if the engine cannot start (the wasm runtime's instance pool),
    /// or an I/O error if the harness's Tokio runtime cannot start.
    pub fn new() -> Result<Self, HarnessError> {
        Self::with_engine(Engine::builder())
    }

    /// A harness whose engine is built from `builder` (for other limits, a deadline, a retry
    /// policy...). Unless the builder names a store, the engine runs on a fresh
    /// [`MemoryStore`](crate::MemoryStore).
    ///
    /// # Errors
    ///
    /// As [`RuleHarness::new`], and the builder's own refusal.
    pub fn with_engine(builder: EngineBuilder) -> Result<Self, HarnessError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("wasmtx-harness")
            .build()
            .map_err(|source| HarnessError::Io { path: PathBuf::from("<tokio runtime>"), source })?;
        Ok(Self {
            engine: builder.build()?,
            rules: Vec::new(),
            touched: Mutex::default(),
            capture_logs: true,
            runtime: Some(runtime),
        })
    }

    /// The engine, for anything the harness does not wrap.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Registers a model type.
    #[must_use]
    pub fn schema(self, schema: ModelSchema) -> Self {
        self.engine.register_model(schema);
        self
    }

    /// Registers the model type of a schema file (TOML, or JSON if the name ends in `.json`).
    ///
    /// # Errors
    ///
    /// [`HarnessError::Engine`] with [`Error::Schema`] if the file is unreadable or invalid.
    pub fn schema_file(self, path: impl AsRef<Path>) -> Result<Self, HarnessError> {
        let schema = ModelSchema::from_path(path.as_ref()).map_err(Error::Schema)?;
        Ok(self.schema(schema))
    }

    /// Registers the model type of a TOML schema text.
    ///
    /// # Errors
    ///
    /// [`HarnessError::Engine`] with [`Error::Schema`] if the text is invalid.
    pub fn schema_toml(self, text: &str) -> Result<Self, HarnessError> {
        let schema = ModelSchema::from_toml(text).map_err(Error::Schema)?;
        Ok(self.schema(schema))
    }

    /// Compiles a rule from its bytes (a core module built for `wasm32-unknown-unknown`, or a
    /// component) under `name`. The last rule loaded is the one [`RuleHarness::invoke`] runs.
    ///
    /// # Errors
    ///
    /// [`HarnessError::Engine`] with [`Error::InvalidRule`] or [`Error::InvalidRuleName`].
    pub fn rule_bytes(mut self, name: &str, bytes: &[u8]) -> Result<Self, HarnessError> {
        let rule = self.engine.compile_rule(name, bytes)?;
        self.rules.retain(|r| r.name() != name);
        self.rules.push(rule);
        Ok(self)
    }

    /// Compiles the rule in a `.wasm` file, named after the file (`rule_level_up.wasm` →
    /// `rule-level-up`).
    ///
    /// # Errors
    ///
    /// [`HarnessError::Io`] if the file cannot be read, or as [`RuleHarness::rule_bytes`].
    pub fn rule_file(self, path: impl AsRef<Path>) -> Result<Self, HarnessError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| HarnessError::Io { path: path.to_path_buf(), source })?;
        let name = rule_name(path);
        self.rule_bytes(&name, &bytes)
    }

    /// Builds the rule crate in `crate_dir` with [`build_rule_crate`] and compiles the result:
    /// `rule_crate(env!("CARGO_MANIFEST_DIR"))` from the rule's own tests.
    ///
    /// # Errors
    ///
    /// [`HarnessError::Build`], or as [`RuleHarness::rule_file`].
    pub fn rule_crate(self, crate_dir: impl AsRef<Path>) -> Result<Self, HarnessError> {
        let wasm = build_rule_crate(crate_dir)?;
        self.rule_file(wasm)
    }

    /// Whether to keep the log records rules emit during each call (default: yes), for
    /// [`Run::logs`] and failure reports. While a call runs, the harness's capture is the
    /// thread's `tracing` subscriber; turn it off to see rule records in your own subscriber.
    #[must_use]
    pub fn capture_logs(mut self, on: bool) -> Self {
        self.capture_logs = on;
        self
    }

    /// The rules loaded, in load order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Sets a model's whole state: the fields `state` (a JSON object) names take its values,
    /// every other field its default. Values are checked against the schema: ints as JSON
    /// integers, floats as numbers, lists as arrays, dicts as objects, bytes as a string or an
    /// array of 0..=255. One commit; the model's version goes up by one.
    ///
    /// # Errors
    ///
    /// [`HarnessError::Model`] for an unknown model type or field, or a value of the wrong
    /// type; [`HarnessError::Engine`] for an invalid key or if the store refuses.
    pub fn seed(&self, model_type: &str, key: &str, state: Value) -> Result<(), HarnessError> {
        let id = ModelId::new(model_type, key);
        let target = self.target(&id)?;
        let changes = seed_changes(&target, &state).map_err(|reason| model_error(&id, reason))?;
        self.touch(&id);
        let models = [target];
        let changes = [changes];
        self.block_on(self.engine.store().commit(CommitRequest {
            models: &models,
            changes: &changes,
            guard: CommitGuard::Unguarded,
            records: crate::store::CommitRecords::NONE,
        }))
        .map_err(Error::from)?;
        Ok(())
    }

    /// As [`RuleHarness::seed`], with the model named `"Type:key"`.
    ///
    /// # Errors
    ///
    /// As [`RuleHarness::seed`].
    pub fn seed_model(&self, model: &str, state: Value) -> Result<(), HarnessError> {
        let id = self.parse_model(model)?;
        self.seed(&id.model_type, &id.key, state)
    }

    /// A model's current state as a JSON object `{field: value}` in schema order.
    ///
    /// # Errors
    ///
    /// [`HarnessError::Model`] for a malformed name or unknown type; a store error.
    pub fn state(&self, model: &str) -> Result<Value, HarnessError> {
        Ok(self.snapshot(&self.parse_model(model)?)?.0)
    }

    /// A model's current version: 0 if it was never written, one more per commit that wrote
    /// it.
    ///
    /// # Errors
    ///
    /// As [`RuleHarness::state`].
    pub fn version(&self, model: &str) -> Result<u64, HarnessError> {
        Ok(self.snapshot(&self.parse_model(model)?)?.1)
    }

    /// Checks the fields `expected` (a JSON object) names against the model's current state;
    /// fields it does not name are not checked.
    ///
    /// # Errors
    ///
    /// A [`Failure`] listing every differing field, or saying why the model could not be read.
    pub fn check_state(&self, model: &str, expected: Value) -> Result<(), Failure> {
        let actual = self.state(model).map_err(|e| Failure::new(format!("cannot read {model}: {e}")))?;
        let diffs = compare::fields_subset(&expected, &actual);
        if diffs.is_empty() {
            return Ok(());
        }
        let mut failure = Failure::new(format!("state of {model} differs"));
        failure.lines.extend(diffs.iter().map(|d| format!("{model}.{d}")));
        failure.lines.push(format!("whole state: {}", short(&actual)));
        Err(failure)
    }

    /// As [`RuleHarness::check_state`], panicking with the report.
    ///
    /// # Panics
    ///
    /// If the state differs or cannot be read.
    #[track_caller]
    pub fn assert_state(&self, model: &str, expected: Value) {
        if let Err(failure) = self.check_state(model, expected) {
            panic!("{failure}");
        }
    }

    /// Runs the last rule loaded on `invocation` and returns what happened; see
    /// [`RuleHarness::invoke_rule`].
    pub fn invoke(&self, invocation: &Invocation) -> Run {
        match self.rules.last() {
            Some(rule) => self.invoke_with(rule, invocation),
            None => Run::setup_error(invocation, "no rule is loaded: call rule_file, rule_crate or rule_bytes first"),
        }
    }

    /// Runs the rule named `rule` on `invocation` through [`Engine::invoke`], exactly as a
    /// host would (the invocation's mode and retry policy included), capturing the rule's
    /// log records. A rule error is part of the [`Run`], not a harness error.
    pub fn invoke_rule(&self, rule: &str, invocation: &Invocation) -> Run {
        match self.rules.iter().find(|r| r.name() == rule) {
            Some(found) => self.invoke_with(found, invocation),
            None => {
                let names: Vec<&str> = self.rules.iter().map(Rule::name).collect();
                Run::setup_error(invocation, &format!("no rule named `{rule}` (loaded: {})", names.join(", ")))
            }
        }
    }

    /// Runs the last rule loaded under `action` on `models` (`"Type:key"` each, in the order
    /// the rule sees them) with `input` as its JSON input, in lock mode.
    pub fn run(&self, action: &str, models: &[&str], input: Value) -> Run {
        self.run_in(Mode::Lock, action, models, input)
    }

    /// As [`RuleHarness::run`], in `mode`.
    pub fn run_in(&self, mode: Mode, action: &str, models: &[&str], input: Value) -> Run {
        let mut invocation = Invocation::new(action).input(input.to_string()).mode(mode);
        for model in models {
            match self.parse_model(model) {
                Ok(id) => invocation.models.push(id),
                Err(e) => return Run::setup_error(&invocation, &e.to_string()),
            }
        }
        self.invoke(&invocation)
    }

    /// Deletes every model this harness seeded or invoked: they read as their defaults again
    /// (their versions still go up). Fixture files reset between cases.
    ///
    /// # Errors
    ///
    /// A store error.
    pub fn reset(&self) -> Result<(), HarnessError> {
        let touched = std::mem::take(&mut *self.touched.lock().unwrap_or_else(PoisonError::into_inner));
        for id in touched {
            self.block_on(self.engine.delete_model(&id.model_type, &id.key))?;
        }
        Ok(())
    }

    fn invoke_with(&self, rule: &Rule, invocation: &Invocation) -> Run {
        for id in &invocation.models {
            self.touch(id);
        }
        let started = Instant::now();
        let (result, logs) = self.block_on_captured(self.engine.invoke(rule, invocation));
        let result = result.map_err(Error::from);
        Run { rule: rule.name().to_owned(), invocation: invocation.clone(), result, logs, elapsed: started.elapsed() }
    }

    /// Resolves `"Type:key"`: the type is the longest prefix before a `:` that names a
    /// registered model type (else the part before the first `:`).
    ///
    /// # Errors
    ///
    /// [`HarnessError::Model`] if there is no `:` or no such type.
    pub fn parse_model(&self, model: &str) -> Result<ModelId, HarnessError> {
        let known = self.engine.model_types().names();
        let split = model
            .match_indices(':')
            .map(|(i, _)| i)
            .rfind(|&i| known.iter().any(|k| k == &model[..i]))
            .or_else(|| model.find(':'));
        let Some(i) = split else {
            return Err(HarnessError::Model {
                model: model.to_owned(),
                reason: "name a model as `Type:key`, for example `Account:alice`".into(),
            });
        };
        let id = ModelId::new(&model[..i], &model[i + 1..]);
        if !known.iter().any(|k| k == &id.model_type) {
            return Err(model_error(
                &id,
                format!("unknown model type `{}` (registered: {})", id.model_type, known.join(", ")),
            ));
        }
        Ok(id)
    }

    fn target(&self, id: &ModelId) -> Result<ModelTarget, HarnessError> {
        id.validate()?;
        let schema = self.engine.model_type(&id.model_type).map_err(|_| {
            model_error(
                id,
                format!(
                    "unknown model type `{}` (registered: {})",
                    id.model_type,
                    self.engine.model_types().names().join(", ")
                ),
            )
        })?;
        Ok(ModelTarget { id: id.clone(), schema })
    }

    fn snapshot(&self, id: &ModelId) -> Result<(Value, u64), HarnessError> {
        let target = self.target(id)?;
        let snapshot = self.block_on(self.engine.read_model(&id.model_type, &id.key))?;
        Ok((snapshot.to_json(&target.schema), snapshot.version))
    }

    fn touch(&self, id: &ModelId) {
        self.touched.lock().unwrap_or_else(PoisonError::into_inner).insert(id.clone());
    }

    /// Runs a future to completion on the harness's runtime; inside another runtime, on a
    /// helper thread (a runtime cannot block inside another).
    fn block_on<F>(&self, future: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        let Some(runtime) = &self.runtime else { unreachable!("the runtime lives until drop") };
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|scope| {
                scope.spawn(|| runtime.block_on(future)).join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
        } else {
            runtime.block_on(future)
        }
    }

    /// As [`RuleHarness::block_on`], capturing rule log records if enabled.
    fn block_on_captured<F>(&self, future: F) -> (F::Output, Vec<RuleLogRecord>)
    where
        F: Future + Send,
        F::Output: Send,
    {
        let Some(runtime) = &self.runtime else { unreachable!("the runtime lives until drop") };
        let capture = self.capture_logs;
        let run = move || {
            if capture {
                capture::Capture::run(|| runtime.block_on(future))
            } else {
                (runtime.block_on(future), Vec::new())
            }
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|scope| scope.spawn(run).join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
        } else {
            run()
        }
    }
}

/// The changes that make a model's state exactly `state` (unnamed fields at their defaults).
fn seed_changes(target: &ModelTarget, state: &Value) -> Result<Vec<FieldChange>, String> {
    let schema = &target.schema;
    let Value::Object(given) = state else {
        return Err(format!("the state must be a JSON object of fields, not {}", short(state)));
    };
    if let Some(unknown) = given.keys().find(|k| schema.field(k).is_none()) {
        let fields: Vec<&str> = schema.fields().map(|(n, _)| n).collect();
        return Err(format!("unknown field `{unknown}` (model type `{}` has: {})", schema.name(), fields.join(", ")));
    }
    let mut changes = Vec::new();
    for (name, def) in schema.fields() {
        let value = match given.get(name) {
            Some(json) => FieldValue::from_json(def.ty, json)
                .map_err(|reason| format!("field `{name}` ({}): {reason}", def.ty))?,
            None => def.default.clone(),
        };
        let field = name.to_owned();
        match value {
            FieldValue::Scalar(value) => changes.push(FieldChange::Set { field, value }),
            FieldValue::List(items) if items.is_empty() => changes.push(FieldChange::Clear { field }),
            FieldValue::List(items) => changes.push(FieldChange::ListReplace { field, items }),
            FieldValue::Dict(map) => {
                changes.push(FieldChange::Clear { field: field.clone() });
                if !map.is_empty() {
                    changes.push(FieldChange::DictSet { field, entries: map.into_iter().collect() });
                }
            }
        }
    }
    Ok(changes)
}

fn model_error(id: &ModelId, reason: String) -> HarnessError {
    HarnessError::Model { model: id.to_string(), reason }
}

/// `rule_level_up.wasm` → `rule-level-up`.
fn rule_name(path: &Path) -> String {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let name: String = stem.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).collect();
    if name.starts_with(|c: char| c.is_ascii_alphabetic()) { name } else { format!("rule-{name}") }
}

/// What one invocation through the harness did: its result, the rule's log records and the
/// time it took. Assert on it with the `assert_*` methods (they panic with a report) or the
/// `check_*` ones (they return the report).
#[derive(Debug)]
#[must_use = "a run does nothing more: assert on its output or error"]
pub struct Run {
    /// The rule's name.
    pub rule: String,
    /// The invocation.
    pub invocation: Invocation,
    /// What the engine returned.
    pub result: Result<Outcome, Error>,
    /// The rule's log records (empty if capture is off).
    pub logs: Vec<RuleLogRecord>,
    /// The wall time of the invocation.
    pub elapsed: Duration,
}

impl Run {
    fn setup_error(invocation: &Invocation, reason: &str) -> Self {
        Self {
            rule: String::new(),
            invocation: invocation.clone(),
            result: Err(Error::InvalidInput { reason: format!("harness: {reason}") }),
            logs: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }

    /// The outcome, if the invocation committed.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.result.as_ref().ok()
    }

    /// The error, if the invocation failed.
    pub fn error(&self) -> Option<&Error> {
        self.result.as_ref().err()
    }

    /// The rule's output parsed as JSON, if the invocation committed.
    pub fn output(&self) -> Option<Value> {
        self.outcome().and_then(|o| serde_json::from_str(&o.output).ok())
    }

    /// Checks that the invocation committed and its output equals `expected` (JSON; numbers by
    /// value).
    ///
    /// # Errors
    ///
    /// A [`Failure`] with the invocation, the expected and actual output (or the error) and
    /// the rule's log.
    pub fn check_output(&self, expected: &Value) -> Result<(), Failure> {
        match &self.result {
            Err(e) => Err(self
                .failure(format!("expected output {}, but the invocation failed", short(expected)))
                .line(format!("error ({}): {e}", e.kind()))),
            Ok(outcome) => {
                let actual = self.output().unwrap_or_else(|| Value::String(outcome.output.clone()));
                match compare::exact(expected, &actual).first() {
                    None => Ok(()),
                    Some(d) => Err(self.failure(format!("output differs: {d}"))),
                }
            }
        }
    }

    /// Checks that the invocation failed with an error of this kind ([`Error::kind`]:
    /// `rejected`, `invalid_input`, `access`, `trapped`, ...) whose message contains
    /// `message`, if given.
    ///
    /// # Errors
    ///
    /// A [`Failure`] saying what happened instead.
    pub fn check_error(&self, kind: &str, message: Option<&str>) -> Result<(), Failure> {
        let want = match message {
            Some(m) => format!("a `{kind}` error containing {m:?}"),
            None => format!("a `{kind}` error"),
        };
        match &self.result {
            Ok(outcome) => Err(self
                .failure(format!("expected {want}, but the invocation committed"))
                .line(format!("output: {}", outcome.output))),
            Err(e) if e.kind() != kind || message.is_some_and(|m| !e.to_string().contains(m)) => {
                Err(self.failure(format!("expected {want}, got a `{}` error: {e}", e.kind())))
            }
            Err(_) => Ok(()),
        }
    }

    /// Checks that the invocation committed.
    ///
    /// # Errors
    ///
    /// A [`Failure`] with the error.
    pub fn check_ok(&self) -> Result<&Outcome, Failure> {
        match &self.result {
            Ok(outcome) => Ok(outcome),
            Err(e) => Err(self.failure(format!("expected the invocation to commit, got a `{}` error: {e}", e.kind()))),
        }
    }

    /// Asserts that the invocation committed and returns its outcome.
    ///
    /// # Panics
    ///
    /// With a report, if it failed.
    #[track_caller]
    pub fn expect_ok(&self) -> &Outcome {
        match self.check_ok() {
            Ok(outcome) => outcome,
            Err(failure) => panic!("{failure}"),
        }
    }

    /// Asserts the output; see [`Run::check_output`].
    ///
    /// # Panics
    ///
    /// With a report, if the invocation failed or its output differs.
    #[track_caller]
    pub fn assert_output(&self, expected: Value) -> &Self {
        if let Err(failure) = self.check_output(&expected) {
            panic!("{failure}");
        }
        self
    }

    /// Asserts the error; see [`Run::check_error`].
    ///
    /// # Panics
    ///
    /// With a report, if the invocation committed or failed otherwise.
    #[track_caller]
    pub fn assert_error(&self, kind: &str) -> &Self {
        if let Err(failure) = self.check_error(kind, None) {
            panic!("{failure}");
        }
        self
    }

    /// Asserts that the rule rejected the invocation with exactly this message.
    ///
    /// # Panics
    ///
    /// With a report, otherwise.
    #[track_caller]
    pub fn assert_rejected(&self, message: &str) -> &Self {
        match &self.result {
            Err(Error::Rejected { message: got }) if got == message => self,
            _ => {
                let failure = self
                    .check_error("rejected", Some(message))
                    .err()
                    .unwrap_or_else(|| self.failure(format!("expected the rejection message {message:?} exactly")));
                panic!("{failure}")
            }
        }
    }

    /// A failure report about this run: the headline, then the invocation and the rule's log.
    pub fn failure(&self, headline: impl Into<String>) -> Failure {
        let inv = &self.invocation;
        let models: Vec<String> = inv.models.iter().map(ToString::to_string).collect();
        let mut failure = Failure::new(headline).line(format!(
            "invocation: rule `{}`, action `{}`, mode {}, models [{}], input {}",
            self.rule,
            inv.action,
            inv.mode,
            models.join(", "),
            inv.input
        ));
        if let Ok(outcome) = &self.result {
            let wrote: Vec<String> = outcome
                .changes
                .iter()
                .filter(|m| !m.changes.is_empty())
                .map(|m| {
                    let changes: Vec<String> = m.changes.iter().map(|c| shorten(&c.to_string())).collect();
                    format!("{}: {}", m.model, changes.join(", "))
                })
                .collect();
            let wrote = if wrote.is_empty() { "nothing".to_owned() } else { wrote.join("; ") };
            failure = failure.line(format!("wrote: {wrote}"));
        }
        for record in &self.logs {
            failure = failure.line(format!("rule log: {record}"));
        }
        failure
    }
}

/// A failed check: a headline and indented detail lines. Its `Display` is the report the
/// `assert_*` methods panic with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// What went wrong, in one line.
    pub headline: String,
    /// The details: differences, the invocation, the rule's log.
    pub lines: Vec<String>,
}

impl Failure {
    /// A failure with a headline and no details.
    pub fn new(headline: impl Into<String>) -> Self {
        Self { headline: headline.into(), lines: Vec::new() }
    }

    /// Adds a detail line.
    #[must_use]
    pub fn line(mut self, line: impl Into<String>) -> Self {
        self.lines.push(line.into());
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.headline)?;
        for line in &self.lines {
            write!(f, "\n    {line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Failure {}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rule_names_come_from_file_names() {
        assert_eq!(rule_name(Path::new("/t/rule_level_up.wasm")), "rule-level-up");
        assert_eq!(rule_name(Path::new("2fa.wasm")), "rule-2fa");
    }

    #[test]
    fn model_names_split_at_a_registered_type() -> Result<(), HarnessError> {
        let h = RuleHarness::new()?
            .schema_toml("name = \"ns:Thing\"\n[fields]\nn = { type = \"int\" }")?
            .schema_toml("name = \"ns\"\n[fields]\nn = { type = \"int\" }")?;
        assert_eq!(h.parse_model("ns:Thing:k:1")?, ModelId::new("ns:Thing", "k:1"));
        assert_eq!(h.parse_model("ns:k")?, ModelId::new("ns", "k"));
        assert!(h.parse_model("nothing").is_err());
        assert!(h.parse_model("Other:k").is_err());
        Ok(())
    }

    #[test]
    fn seeding_sets_the_whole_state_and_checks_it() -> Result<(), HarnessError> {
        let h = RuleHarness::new()?.schema_toml(
            "name = \"T\"\n[fields]\nn = { type = \"int\", default = 7 }\nl = { type = \"list<str>\" }\nd = { type = \"dict<int>\" }",
        )?;
        h.seed("T", "a", json!({"l": ["x"], "d": {"k": 1}}))?;
        assert_eq!(h.state("T:a")?, json!({"n": 7, "l": ["x"], "d": {"k": 1}}));
        assert_eq!(h.version("T:a")?, 1);
        h.seed_model("T:a", json!({"n": 1}))?;
        assert_eq!(h.state("T:a")?, json!({"n": 1, "l": [], "d": {}}), "unnamed fields go back to their defaults");
        let err = h.seed("T", "a", json!({"n": "x"})).expect_err("wrong type").to_string();
        assert!(err.contains("model T:a: field `n` (int)"), "{err}");
        let err = h.seed("T", "a", json!([1])).expect_err("not an object").to_string();
        assert!(err.contains("must be a JSON object"), "{err}");
        h.reset()?;
        assert_eq!(h.state("T:a")?, json!({"n": 7, "l": [], "d": {}}));
        Ok(())
    }
}
