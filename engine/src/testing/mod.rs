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
mod error;
pub mod fixtures;
mod project;
mod run;
mod seed;

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use serde_json::Value;

pub use self::build::{AssemblyScriptBuild, BuiltRules, RustRuleBuild, WASM_TARGET, build_rule_crate};
pub use self::capture::RuleLogRecord;
pub use self::compare::Difference;
use self::compare::short;
pub use self::error::HarnessError;
pub use self::project::RuleProject;
pub use self::run::{Failure, Run};
use self::seed::seed_changes;
use crate::engine::{Engine, EngineBuilder};
use crate::error::Error;
use crate::invocation::{Invocation, Mode};
use crate::model::change::ModelTarget;
use crate::model::ids::ModelId;
use crate::model::schema::ModelSchema;
use crate::rule::Rule;
use crate::store::{CommitGuard, CommitRequest};

/// The time a rule's context shows in the harness unless the invocation sets one
/// ([`ContextOverrides::now_ms`](crate::ContextOverrides::now_ms), a fixture case's `now_ms`): 2026-01-01T00:00:00Z, so a rule
/// that stamps the time gives the same state on every run. [`RuleHarness::now_ms`] changes it.
pub const FIXED_NOW_MS: i64 = 1_767_225_600_000;

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
    /// The time rules see, unless an invocation sets its own.
    now_ms: i64,
    /// Invocations since the harness was made or last reset: the `n` of the `inv-<n>` id
    /// rules see.
    invocations: AtomicU64,
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
            now_ms: FIXED_NOW_MS,
            invocations: AtomicU64::new(0),
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

    /// Builds or loads the rule at `path`, whatever it is: a Rust crate or an AssemblyScript
    /// project directory (built, see [`RuleProject`]), or a `.wasm` file, refused if it is older
    /// than a source of the project it lies in. This is how fixture files and `wasmtx test`
    /// load their rule.
    ///
    /// # Errors
    ///
    /// [`HarnessError::UnknownProject`] for a directory that is neither kind of project,
    /// [`HarnessError::StaleRule`] for an old `.wasm`, [`HarnessError::Build`], or as
    /// [`RuleHarness::rule_file`].
    pub fn rule_path(self, path: impl AsRef<Path>) -> Result<Self, HarnessError> {
        let path = path.as_ref();
        if path.is_dir() {
            let project = RuleProject::detect(path)?;
            let wasm = project.build()?;
            return match project.rule_name() {
                Some(name) => {
                    let bytes =
                        std::fs::read(&wasm).map_err(|source| HarnessError::Io { path: wasm.clone(), source })?;
                    self.rule_bytes(name, &bytes)
                }
                None => self.rule_file(wasm),
            };
        }
        project::check_fresh(path)?;
        self.rule_file(path)
    }

    /// The time rules see in their context unless the invocation sets one (default
    /// [`FIXED_NOW_MS`]).
    #[must_use]
    pub fn now_ms(mut self, now_ms: i64) -> Self {
        self.now_ms = now_ms;
        self
    }

    /// The time rules see in their context unless the invocation sets one.
    pub fn context_now_ms(&self) -> i64 {
        self.now_ms
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
    /// the rule sees them) with `input` as its JSON input, in lock mode. Pass
    /// [`DEFAULT_ACTION`](crate::DEFAULT_ACTION) (`run`) for what a caller gets who names no
    /// action.
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
    /// (their versions still go up), and invocation ids start again from `inv-1`. Fixture files
    /// reset between cases.
    ///
    /// # Errors
    ///
    /// A store error.
    pub fn reset(&self) -> Result<(), HarnessError> {
        self.invocations.store(0, Ordering::Relaxed);
        let touched = std::mem::take(&mut *self.touched.lock().unwrap_or_else(PoisonError::into_inner));
        for id in touched {
            self.block_on(self.engine.delete_model(&id.model_type, &id.key))?;
        }
        Ok(())
    }

    /// Runs `rule` with the harness's fixed context: what the invocation does not set, the rule
    /// sees as the harness's time and the id `inv-<n>` (the n-th invocation since the last
    /// reset), so the same test gives the same state on every run.
    fn invoke_with(&self, rule: &Rule, invocation: &Invocation) -> Run {
        for id in &invocation.models {
            self.touch(id);
        }
        let n = self.invocations.fetch_add(1, Ordering::Relaxed) + 1;
        let mut invocation = invocation.clone();
        let shown = &mut invocation.context;
        shown.now_ms = shown.now_ms.or(Some(self.now_ms));
        shown.invocation_id = shown.invocation_id.take().or_else(|| Some(format!("inv-{n}")));
        let started = Instant::now();
        let (result, logs) = self.block_on_captured(self.engine.invoke(rule, &invocation));
        let result = result.map_err(Error::from);
        Run { rule: rule.name().to_owned(), invocation, result, logs, elapsed: started.elapsed() }
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

fn model_error(id: &ModelId, reason: String) -> HarnessError {
    HarnessError::Model { model: id.to_string(), reason }
}

/// `rule_level_up.wasm` → `rule-level-up`.
fn rule_name(path: &Path) -> String {
    rule_name_of(&path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default())
}

/// A usable rule name made of `name`: `-` for anything but ASCII letters, digits and `-`, and
/// `rule-` before it unless it starts with a letter.
fn rule_name_of(name: &str) -> String {
    let name: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).collect();
    if name.starts_with(|c: char| c.is_ascii_alphabetic()) { name } else { format!("rule-{name}") }
}

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
