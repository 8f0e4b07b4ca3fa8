//! What one invocation through the harness did ([`Run`]), its checks, and the report a failed
//! check gives ([`Failure`]).

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::RuleLogRecord;
use super::compare::{self, short, shorten};
use crate::error::Error;
use crate::invocation::{Invocation, Outcome};

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
    pub(super) fn setup_error(invocation: &Invocation, reason: &str) -> Self {
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
