//! Fixture files: a rule's given/when/then cases in TOML, run on a [`RuleHarness`].
//!
//! ```toml
//! # Where the rule is, relative to this file: a Rust crate or an AssemblyScript project
//! # directory (built first), or a `.wasm` file (refused if older than its project's
//! # sources). Optional when the runner is given the rule (`wasmtx test FILE --rule R`).
//! rule = ".."
//! # Model schema files, relative to this file.
//! schemas = ["../../../models/game_character.toml"]
//!
//! # Inline schemas, same shape as a schema file (optional).
//! [[schema]]
//! name = "Counter"
//! fields = { n = { type = "int" } }
//!
//! [[case]]
//! name = "level five heals and rewards"
//!
//! # The models' state before the run: fields not named take their defaults, models not
//! # named are at their defaults. Each case starts from a clean store.
//! [case.given]
//! "GameCharacter:hero" = { level = 4, experience = 3500, health = 30, skills = { sword = 1 } }
//!
//! [case.when]
//! action = "level_up"                 # the action (lock) name; default "run" (DEFAULT_ACTION)
//! models = ["GameCharacter:hero"]     # in the order the rule sees them
//! input = { exp_gained = 500 }        # the JSON input; default null
//! mode = "lock"                       # lock (default), pipeline or optimistic
//! # rule = "rule-level-up"            # which loaded rule, when there are several
//! # What the rule's context shows (all optional):
//! # now_ms = 1767225600000            # default FIXED_NOW_MS, 2026-01-01T00:00:00Z
//! # invocation_id = "inv-1"           # default "inv-1"
//! # attempt = 1                       # the attempt number of the first run; default 1
//!
//! [case.then]
//! output = "Leveled up from 4 to 5!"  # the output, compared as JSON
//! # error = "rejected"                # or: the error kind (ERRORS.md; checked when the
//! # message = "Insufficient funds"    #     file is read), then a text the message contains
//! # wrote_nothing = true              # no model's version moved (implied by `error`)
//!
//! # Expected state after the run: only the fields named are checked, each as a whole.
//! [case.then.state]
//! "GameCharacter:hero" = { level = 5, health = 100, inventory = ["legendary_item_level_5"] }
//! ```
//!
//! In `then.output` and `then.state`, a string that is exactly `"$now_ms"`, `"$invocation_id"`,
//! `"$attempt"`, `"$action"` or `"$mode"` stands for the case's value (`now_ms` and `attempt` as
//! integers), so a rule that stamps its context can be checked without repeating it.
//!
//! A case passes when every expectation holds. When `then.error` is given, the runner also
//! checks that nothing was written: every model the case names has the state and version it
//! had before the run. [`run_file`] runs a file and returns a [`Report`], rendered for people
//! by its `Display` (ending in a `N passed, N failed` line) and for tools by
//! [`Report::to_json`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{FIXED_NOW_MS, Failure, HarnessError, RuleHarness, RuleLogRecord};
use crate::error::kind::{ErrorKind, UnknownErrorKind};
use crate::invocation::{ContextOverrides, DEFAULT_ACTION, Invocation, Mode};
use crate::model::schema::ModelSchema;

/// Why a fixture file could not be run at all (a case that fails is not an error: it is in
/// the [`Report`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FixtureError {
    /// The file could not be read.
    #[error("cannot read fixture file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid fixture.
    #[error("invalid fixture file {}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line when the TOML parser knows it.
        reason: String,
    },
    /// A case expects an error kind that does not exist (`then.error`).
    #[error("invalid fixture file {}: case {case:?}: `then.error`: {source}", path.display())]
    UnknownErrorKind {
        /// The file.
        path: PathBuf,
        /// The case.
        case: String,
        /// The kind given.
        source: UnknownErrorKind,
    },
    /// The schemas or the rule could not be loaded.
    #[error("fixture file {}: {source}", path.display())]
    Setup {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: Box<HarnessError>,
    },
}

/// A parsed fixture file.
#[derive(Debug, Clone)]
pub struct Fixture {
    path: PathBuf,
    base: PathBuf,
    file: FixtureFile,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureFile {
    rule: Option<String>,
    #[serde(default)]
    schemas: Vec<String>,
    #[serde(default, rename = "schema")]
    inline_schemas: Vec<Value>,
    #[serde(default, rename = "case")]
    cases: Vec<Case>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    given: IndexMap<String, Value>,
    when: When,
    #[serde(default)]
    then: Then,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct When {
    #[serde(default = "default_action")]
    action: String,
    #[serde(default)]
    models: Vec<String>,
    #[serde(default)]
    input: Value,
    #[serde(default)]
    mode: Mode,
    rule: Option<String>,
    now_ms: Option<i64>,
    invocation_id: Option<String>,
    attempt: Option<u32>,
}

fn default_action() -> String {
    DEFAULT_ACTION.to_owned()
}

/// The invocation id a case's rule sees unless the case sets one.
const CASE_INVOCATION_ID: &str = "inv-1";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Then {
    output: Option<Value>,
    error: Option<String>,
    message: Option<String>,
    #[serde(default)]
    state: IndexMap<String, Value>,
    wrote_nothing: Option<bool>,
}

impl Fixture {
    /// Reads and checks a fixture file.
    ///
    /// # Errors
    ///
    /// [`FixtureError::Read`] or [`FixtureError::Invalid`].
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, FixtureError> {
        let path = path.as_ref();
        let text =
            std::fs::read_to_string(path).map_err(|source| FixtureError::Read { path: path.to_path_buf(), source })?;
        let base = path.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        Self::from_toml(&text, path, base)
    }

    /// Parses fixture text; `path` names it in messages and reports, and relative paths in it
    /// are resolved against `base`.
    ///
    /// # Errors
    ///
    /// [`FixtureError::Invalid`].
    pub fn from_toml(text: &str, path: impl Into<PathBuf>, base: impl Into<PathBuf>) -> Result<Self, FixtureError> {
        let path = path.into();
        let invalid = |reason: String| FixtureError::Invalid { path: path.clone(), reason };
        let file: FixtureFile = toml::from_str(text).map_err(|e| invalid(e.to_string().trim_end().to_owned()))?;
        if file.cases.is_empty() {
            return Err(invalid("it has no `[[case]]`".into()));
        }
        for case in &file.cases {
            let then = &case.then;
            if let Some(kind) = &then.error {
                let kind = kind.parse::<ErrorKind>().map_err(|source| FixtureError::UnknownErrorKind {
                    path: path.clone(),
                    case: case.name.clone(),
                    source,
                })?;
                if !ErrorKind::of_invocations().any(|k| k == kind) {
                    let kinds: Vec<&str> = ErrorKind::of_invocations().map(ErrorKind::as_str).collect();
                    return Err(invalid(format!(
                        "case {:?}: `then.error`: an invocation never fails with `{kind}` (it can: {})",
                        case.name,
                        kinds.join(", ")
                    )));
                }
            }
            if case.when.attempt == Some(0) {
                return Err(invalid(format!("case {:?}: `when.attempt` counts from 1", case.name)));
            }
            if then.error.is_some() && then.output.is_some() {
                return Err(invalid(format!("case {:?}: `then` gives both `output` and `error`", case.name)));
            }
            if then.message.is_some() && then.error.is_none() {
                return Err(invalid(format!(
                    "case {:?}: `then.message` needs `then.error` (the error kind the message belongs to)",
                    case.name
                )));
            }
        }
        Ok(Self { path, base: base.into(), file })
    }

    /// The file's path, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The case names, in file order.
    pub fn case_names(&self) -> Vec<&str> {
        self.file.cases.iter().map(|c| c.name.as_str()).collect()
    }

    /// A harness with the file's schemas and a rule: `rule` if given (relative to the working
    /// directory), else the file's `rule` (relative to the file); either a project directory
    /// or a `.wasm` file, loaded by [`RuleHarness::rule_path`].
    ///
    /// # Errors
    ///
    /// [`FixtureError::Setup`] if a schema or the rule cannot be loaded or built (a `.wasm`
    /// older than its project's sources is [`HarnessError::StaleRule`]), or if no rule is named
    /// anywhere.
    pub fn harness(&self, rule: Option<&Path>) -> Result<RuleHarness, FixtureError> {
        let setup = |source: HarnessError| FixtureError::Setup { path: self.path.clone(), source: Box::new(source) };
        let mut harness = RuleHarness::new().map_err(setup)?;
        for schema in &self.file.schemas {
            harness = harness.schema_file(self.base.join(schema)).map_err(setup)?;
        }
        for schema in &self.file.inline_schemas {
            let schema =
                ModelSchema::from_json(&schema.to_string()).map_err(|e| setup(crate::Error::Schema(e).into()))?;
            harness = harness.schema(schema);
        }
        let rule = match (rule, &self.file.rule) {
            (Some(rule), _) => rule.to_path_buf(),
            (None, Some(rule)) => self.base.join(rule),
            (None, None) => {
                return Err(setup(HarnessError::NoRule(
                    "no rule: name one in the file (`rule = \"..\"`) or give it to the runner".into(),
                )));
            }
        };
        harness.rule_path(&rule).map_err(setup)
    }

    /// Runs every case on `harness` (which [`Fixture::harness`] makes), each from a clean
    /// state ([`RuleHarness::reset`]).
    pub fn run_on(&self, harness: &RuleHarness) -> Report {
        self.run_matching(harness, None)
    }

    /// As [`Fixture::run_on`], only the cases whose name contains `filter` (all if `None`).
    pub fn run_matching(&self, harness: &RuleHarness, filter: Option<&str>) -> Report {
        let started = Instant::now();
        let cases: Vec<CaseReport> = self
            .file
            .cases
            .iter()
            .filter(|c| filter.is_none_or(|f| c.name.contains(f)))
            .map(|case| run_case(harness, case))
            .collect();
        let passed = cases.iter().filter(|c| c.passed).count();
        Report {
            fixture: self.path.display().to_string(),
            rule: harness.rules().last().map(|r| r.name().to_owned()).unwrap_or_default(),
            passed,
            failed: cases.len() - passed,
            elapsed: started.elapsed(),
            cases,
        }
    }
}

/// Reads the fixture file at `path`, loads its schemas and the rule (`rule`, a `.wasm` file or
/// a crate directory; else the file's own `rule`), and runs every case. This is what
/// `wasmtx test` does.
///
/// # Errors
///
/// A [`FixtureError`] if the file cannot be read or parsed, or the schemas or rule cannot be
/// loaded. Failing cases are not errors: see [`Report::success`].
pub fn run_file(path: impl AsRef<Path>, rule: Option<&Path>) -> Result<Report, FixtureError> {
    let fixture = Fixture::from_path(path)?;
    let harness = fixture.harness(rule)?;
    Ok(fixture.run_on(&harness))
}

fn run_case(harness: &RuleHarness, case: &Case) -> CaseReport {
    let started = Instant::now();
    let mut report = CaseReport {
        name: case.name.clone(),
        passed: false,
        elapsed: Duration::ZERO,
        failures: Vec::new(),
        output: None,
        error: None,
        logs: Vec::new(),
    };
    if let Err(failure) = check_case(harness, case, &mut report) {
        report.failures.push(failure);
    }
    report.passed = report.failures.is_empty();
    report.elapsed = started.elapsed();
    report
}

/// Runs one case, pushing each failed expectation into the report; `Err` for a case that
/// could not run at all.
fn check_case(harness: &RuleHarness, case: &Case, report: &mut CaseReport) -> Result<(), Failure> {
    harness.reset().map_err(|e| Failure::new(format!("cannot reset the store: {e}")))?;
    for (model, state) in &case.given {
        harness.seed_model(model, state.clone()).map_err(|e| Failure::new(format!("given: {e}")))?;
    }
    let when = &case.when;
    let shown = ContextOverrides::default()
        .now_ms(when.now_ms.unwrap_or(harness.context_now_ms()))
        .invocation_id(when.invocation_id.as_deref().unwrap_or(CASE_INVOCATION_ID))
        .first_attempt(when.attempt.unwrap_or(1));
    let vars = CaseValues::of(when, &shown);
    let mut invocation = Invocation::new(&when.action).input(when.input.to_string()).mode(when.mode).context(shown);
    for model in &when.models {
        invocation.models.push(harness.parse_model(model).map_err(|e| Failure::new(format!("when.models: {e}")))?);
    }

    // Every model the case names, with its state and version before the run.
    let mut named: Vec<&str> = Vec::new();
    for model in case.given.keys().chain(&when.models).chain(case.then.state.keys()) {
        if !named.contains(&model.as_str()) {
            named.push(model);
        }
    }
    let before = named.iter().map(|m| observe(harness, m)).collect::<Result<Vec<_>, _>>()?;

    let run = match &when.rule {
        Some(rule) => harness.invoke_rule(rule, &invocation),
        None => harness.invoke(&invocation),
    };
    report.output = run.output();
    report.error = run.error().map(|e| ErrorReport { kind: e.kind().to_owned(), message: e.to_string() });
    report.logs.clone_from(&run.logs);

    let then = &case.then;
    match &then.error {
        Some(kind) => {
            if let Err(failure) = run.check_error(kind, then.message.as_deref()) {
                report.failures.push(failure);
            }
        }
        None => match (run.check_ok(), &then.output) {
            (Err(failure), _) => report.failures.push(failure),
            (Ok(_), Some(output)) => {
                if let Err(failure) = run.check_output(&vars.substitute(output)) {
                    report.failures.push(failure);
                }
            }
            (Ok(_), None) => {}
        },
    }
    // A run that was expected to fail but committed already has its failure.
    if (then.error.is_some() && run.error().is_some()) || then.wrote_nothing == Some(true) {
        let after = named.iter().map(|m| observe(harness, m)).collect::<Result<Vec<_>, _>>()?;
        for ((model, (state_before, v_before)), (state_after, v_after)) in named.iter().zip(&before).zip(&after) {
            if v_before != v_after || state_before != state_after {
                let why = if then.error.is_some() { "although the invocation was expected to fail" } else { "" };
                report.failures.push(
                    Failure::new(format!("{model} was written {why}").trim_end().to_owned())
                        .line(format!("version {v_before} → {v_after}"))
                        .line(format!("before: {state_before}"))
                        .line(format!("after:  {state_after}")),
                );
            }
        }
    }
    if run.outcome().is_some() || then.error.is_none() {
        for (model, expected) in &then.state {
            if let Err(failure) = harness.check_state(model, vars.substitute(expected)) {
                report.failures.push(failure);
            }
        }
    }
    Ok(())
}

/// What a case's rule sees, for the `"$now_ms"`-style placeholders of its expectations.
struct CaseValues {
    now_ms: i64,
    invocation_id: String,
    attempt: u32,
    action: String,
    mode: Mode,
}

impl CaseValues {
    fn of(when: &When, shown: &ContextOverrides) -> Self {
        Self {
            now_ms: shown.now_ms.unwrap_or(FIXED_NOW_MS),
            invocation_id: shown.invocation_id.clone().unwrap_or_default(),
            attempt: shown.first_attempt.unwrap_or(1),
            action: when.action.clone(),
            mode: when.mode,
        }
    }

    /// `expected` with each placeholder string replaced by its value.
    fn substitute(&self, expected: &Value) -> Value {
        match expected {
            Value::String(text) => match text.as_str() {
                "$now_ms" => Value::from(self.now_ms),
                "$invocation_id" => Value::from(self.invocation_id.clone()),
                "$attempt" => Value::from(self.attempt),
                "$action" => Value::from(self.action.clone()),
                "$mode" => Value::from(self.mode.as_str()),
                _ => expected.clone(),
            },
            Value::Array(items) => Value::Array(items.iter().map(|v| self.substitute(v)).collect()),
            Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), self.substitute(v))).collect()),
            _ => expected.clone(),
        }
    }
}

fn observe(harness: &RuleHarness, model: &str) -> Result<(Value, u64), Failure> {
    let state = harness.state(model).map_err(|e| Failure::new(format!("cannot read {model}: {e}")))?;
    let version = harness.version(model).map_err(|e| Failure::new(format!("cannot read {model}: {e}")))?;
    Ok((state, version))
}

/// The result of running a fixture file.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The fixture file, as given.
    pub fixture: String,
    /// The rule the cases ran (the last one loaded).
    pub rule: String,
    /// One report per case run, in file order.
    pub cases: Vec<CaseReport>,
    /// How many cases passed.
    pub passed: usize,
    /// How many cases failed.
    pub failed: usize,
    /// The wall time of all cases.
    #[serde(rename = "elapsed_ms", serialize_with = "millis")]
    pub elapsed: Duration,
}

/// The result of one case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseReport {
    /// The case's name.
    pub name: String,
    /// Whether every expectation held.
    pub passed: bool,
    /// The wall time of the case (reset, seeding, the run, the checks).
    #[serde(rename = "elapsed_ms", serialize_with = "millis")]
    pub elapsed: Duration,
    /// Every expectation that did not hold.
    pub failures: Vec<Failure>,
    /// The rule's output, if the invocation committed.
    pub output: Option<Value>,
    /// The error, if the invocation failed.
    pub error: Option<ErrorReport>,
    /// The rule's log records.
    pub logs: Vec<RuleLogRecord>,
}

/// An invocation's error, in a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorReport {
    /// [`Error::kind`](crate::Error::kind): `rejected`, `access`, ...
    pub kind: String,
    /// The error's message.
    pub message: String,
}

/// `1 case`, `2 cases`: a count and its noun, in the right number.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `serialize_with` signature
fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e3)
}

impl Report {
    /// Whether every case passed (and there was at least one).
    pub fn success(&self) -> bool {
        self.failed == 0 && !self.cases.is_empty()
    }

    /// The report as JSON: `{fixture, rule, passed, failed, elapsed_ms, cases: [{name,
    /// passed, elapsed_ms, failures: [{headline, lines}], output, error: {kind, message},
    /// logs: [{level, message, fields}]}]}`.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

impl fmt::Display for Report {
    /// For people: one line per case, the failures indented under their case, and a last
    /// line `N passed, N failed`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} (rule {}, {})", self.fixture, self.rule, count(self.cases.len(), "case"))?;
        for case in &self.cases {
            let status = if case.passed { "ok  " } else { "FAIL" };
            writeln!(f, "  {status}  {} ({:.1} ms)", case.name, case.elapsed.as_secs_f64() * 1e3)?;
            for failure in &case.failures {
                writeln!(f, "        {}", failure.headline)?;
                for line in &failure.lines {
                    writeln!(f, "            {line}")?;
                }
            }
        }
        write!(f, "{} passed, {} failed", self.passed, self.failed)
    }
}
