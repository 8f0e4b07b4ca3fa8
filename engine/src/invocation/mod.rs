//! What a caller asks the engine to do (an [`Invocation`], with its [`Mode`] and
//! [`RetryPolicy`]), and what it gets back (an [`Outcome`]).

mod retry;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use self::retry::{RetryOn, RetryPolicy};
use crate::model::change::ModelChanges;
use crate::model::ids::ModelId;

/// How an invocation keeps its models consistent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Mode {
    /// Exclusive lock per (model, action), fenced commit: the reference's lock context manager.
    #[default]
    Lock,
    /// No lock; changes keep their commutative intent and apply atomically in one batch.
    Pipeline,
    /// No lock; the commit applies only if no model changed since it was loaded, else the rule
    /// runs again.
    Optimistic,
    /// Optimistic on the snapshot cache (one round trip on uncontended models); a model that
    /// keeps conflicting runs in lock mode, with group commit, for a while, then optimistic
    /// again ([`AdaptiveConfig`](crate::AdaptiveConfig)). The rule sees the mode its attempt
    /// runs in (`lock` or `optimistic`).
    Adaptive,
}

impl Mode {
    /// Every mode, in the order the documentation lists them.
    pub const ALL: [Mode; 4] = [Mode::Lock, Mode::Pipeline, Mode::Optimistic, Mode::Adaptive];

    /// What the mode does, in one line (the CLI's `--mode` help).
    pub const fn summary(self) -> &'static str {
        match self {
            Self::Lock => "exclusive lock per (model, action), fenced commit",
            Self::Pipeline => "no lock; changes keep their intent (increments, appends) and apply in one batch",
            Self::Optimistic => "no lock; commit only if no model changed, else run again",
            Self::Adaptive => "optimistic, switching models that keep conflicting to lock mode for a while",
        }
    }

    /// The mode's name: `lock`, `pipeline`, `optimistic` or `adaptive` (as in JSON, metrics
    /// and the CLI).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Lock => "lock",
            Self::Pipeline => "pipeline",
            Self::Optimistic => "optimistic",
            Self::Adaptive => "adaptive",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = String;

    /// Parses a mode's name ([`Mode::as_str`]).
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|m| m.as_str() == name).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|m| m.as_str()).collect();
            format!("unknown mode {name:?}: expected one of {}", names.join(", "))
        })
    }
}

/// The action an invocation runs under when its caller names none: `run`, everywhere (the
/// `wasmtx invoke` command, the HTTP API, [`Invocation::default`], the test harness and fixture
/// files). In lock mode it is the lock name, so invocations that name no action take the same
/// per-model lock, whichever rule they run.
pub const DEFAULT_ACTION: &str = "run";

/// What a rule's `context` shows in place of the engine's own values: a fixed time, a known
/// invocation id, a later attempt number. For tests: the harness and fixture files fill it in
/// so that a rule that stamps `now_ms` or the invocation id can be checked. Only the rule's
/// view changes; the engine keeps its own invocation id (the default idempotency key, the lock
/// owner, [`Outcome::invocation_id`]) and counts its own attempts ([`Outcome::attempts`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ContextOverrides {
    /// The time the rule sees (`now_ms`), in milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub now_ms: Option<i64>,
    /// The invocation id the rule sees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation_id: Option<String>,
    /// The attempt number the rule sees on its first run (one more on each re-run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_attempt: Option<u32>,
}

impl ContextOverrides {
    /// Shows the rule this time (milliseconds since the Unix epoch).
    #[must_use]
    pub fn now_ms(mut self, now_ms: i64) -> Self {
        self.now_ms = Some(now_ms);
        self
    }

    /// Shows the rule this invocation id.
    #[must_use]
    pub fn invocation_id(mut self, id: impl Into<String>) -> Self {
        self.invocation_id = Some(id.into());
        self
    }

    /// Shows the rule this attempt number on its first run (at least 1).
    #[must_use]
    pub fn first_attempt(mut self, attempt: u32) -> Self {
        self.first_attempt = Some(attempt.max(1));
        self
    }

    /// Whether nothing is overridden.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// The invocation facts a rule sees in its `context` (besides the declared models).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunContext {
    /// A unique id for this invocation, the same on every attempt.
    pub invocation_id: String,
    /// Start time, in milliseconds since the Unix epoch.
    pub now_ms: i64,
    /// The action name.
    pub action: String,
    /// The mode.
    pub mode: Mode,
    /// 1 for the first run, more on re-runs.
    pub attempt: u32,
    /// What the rule is shown instead of `invocation_id` and `attempt` (the invocation's
    /// [`ContextOverrides`]; its time is in `now_ms` already).
    pub(crate) shown: ContextOverrides,
}

impl RunContext {
    /// The context of a first run at time 0 (set the public fields for others): for running a
    /// rule through [`RuleRuntime`](crate::runtime::RuleRuntime) directly.
    pub fn new(invocation_id: impl Into<String>, action: impl Into<String>, mode: Mode) -> Self {
        Self {
            invocation_id: invocation_id.into(),
            now_ms: 0,
            action: action.into(),
            mode,
            attempt: 1,
            shown: ContextOverrides::default(),
        }
    }

    /// The invocation id the rule sees.
    pub(crate) fn shown_invocation_id(&self) -> &str {
        self.shown.invocation_id.as_deref().unwrap_or(&self.invocation_id)
    }

    /// The attempt number the rule sees.
    pub(crate) fn shown_attempt(&self) -> u32 {
        self.shown.first_attempt.map_or(self.attempt, |first| first.saturating_add(self.attempt - 1))
    }
}

/// A request to run a rule: which models, under which action, with which input, in which mode.
///
/// ```
/// use wasmtx::{Invocation, Mode};
/// let transfer = Invocation::new("transfer")
///     .model("Account", "alice")
///     .model("Account", "bob")
///     .input(r#"{"amount": 10}"#)
///     .mode(Mode::Lock);
/// assert_eq!(transfer.models.len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Invocation {
    /// The models, in the order the rule sees them (`context.models`).
    pub models: Vec<ModelId>,
    /// The action name: in lock mode, the lock name.
    pub action: String,
    /// The input, JSON text.
    pub input: String,
    /// The mode.
    #[serde(default)]
    pub mode: Mode,
    /// The retry policy; `None` uses the engine's.
    #[serde(default)]
    pub retry: Option<RetryPolicy>,
    /// The caller's idempotency key: invocations with the same key (and the same first model
    /// in lock order) apply at most once within the engine's record retention; a repeat gets
    /// the first one's outcome ([`Outcome::replayed`]). `None`: the engine uses the invocation
    /// id, which protects its own retries.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// What the rule's context shows instead of the engine's time, invocation id and attempt
    /// (for tests; empty by default).
    #[serde(default, skip_serializing_if = "ContextOverrides::is_empty")]
    pub context: ContextOverrides,
}

impl Default for Invocation {
    /// An invocation under the [`DEFAULT_ACTION`] with no models yet, input `null`, in lock
    /// mode.
    fn default() -> Self {
        Self::new(DEFAULT_ACTION)
    }
}

impl Invocation {
    /// An invocation of `action` with no models yet, input `null`, in lock mode.
    pub fn new(action: impl Into<String>) -> Self {
        Self {
            models: Vec::new(),
            action: action.into(),
            input: "null".into(),
            mode: Mode::Lock,
            retry: None,
            idempotency_key: None,
            context: ContextOverrides::default(),
        }
    }

    /// Declares one more model.
    #[must_use]
    pub fn model(mut self, model_type: impl Into<String>, key: impl Into<String>) -> Self {
        self.models.push(ModelId::new(model_type, key));
        self
    }

    /// Sets the input JSON text (checked when the invocation runs).
    #[must_use]
    pub fn input(mut self, json: impl Into<String>) -> Self {
        self.input = json.into();
        self
    }

    /// Sets the input from any serialisable value.
    #[must_use]
    pub fn input_json(mut self, value: &impl Serialize) -> Self {
        self.input = serde_json::to_string(value).unwrap_or_else(|_| "null".into());
        self
    }

    /// Sets the mode.
    #[must_use]
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets this invocation's retry policy.
    #[must_use]
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Sets the caller's idempotency key (checked when the invocation runs: 1 to 256 bytes, no
    /// whitespace or control characters). Send the same key again after a failure whose
    /// outcome you do not know (a timeout, a dropped connection): the invocation applies at
    /// most once, and the repeat returns its outcome.
    #[must_use]
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Sets what the rule's context shows instead of the engine's own time, invocation id and
    /// attempt number (see [`ContextOverrides`]).
    #[must_use]
    pub fn context(mut self, overrides: ContextOverrides) -> Self {
        self.context = overrides;
        self
    }
}

/// Where an invocation's time went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Timings {
    /// Waiting for locks (local queue and busy retries), before the attempt that succeeded.
    pub wait: Duration,
    /// The store round trip that took the locks and loaded the models (or only loaded them).
    pub load: Duration,
    /// Instantiating and running the rule, and computing the diff.
    pub run: Duration,
    /// The commit round trip.
    pub commit: Duration,
}

impl Timings {
    /// The sum of all phases.
    pub fn total(&self) -> Duration {
        self.wait + self.load + self.run + self.commit
    }
}

/// A committed invocation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Outcome {
    /// The invocation's unique id (also given to the rule; the same on every attempt).
    pub invocation_id: String,
    /// The idempotency key it was recorded under: the caller's, or else the invocation id.
    pub idempotency_key: String,
    /// Whether this call applied nothing because the key was committed before: the outcome is
    /// then the first commit's (its invocation id, output, fencing tokens, versions and
    /// attempts), and `changes` is empty, since this call wrote nothing.
    pub replayed: bool,
    /// The rule's output (JSON text).
    pub output: String,
    /// What was written, per model in invocation order (empty lists for unchanged models).
    pub changes: Vec<ModelChanges>,
    /// The fencing token of each model's lock, in invocation order (lock mode only).
    pub fencing_tokens: Vec<u64>,
    /// Each model's version after the commit, in invocation order.
    pub versions: Vec<u64>,
    /// How many times the invocation ran (more than 1 after retried conflicts or timeouts).
    pub attempts: u32,
    /// Where the time went (for the last attempt; `wait` covers all earlier ones).
    pub timings: Timings,
}

impl Outcome {
    /// Parses the output JSON into `T`.
    ///
    /// # Errors
    /// The JSON error if the output does not fit `T`.
    pub fn output_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.output)
    }

    /// Whether this call wrote anything (never for a replay).
    pub fn wrote_anything(&self) -> bool {
        self.changes.iter().any(|m| !m.changes.is_empty())
    }
}
