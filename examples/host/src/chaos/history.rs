//! What the callers learnt: one record per operation, with its place in real time (a logical
//! clock ticked before each call and after each reply) and its fate as the caller saw it.

use std::sync::atomic::{AtomicU64, Ordering};

use wasmtx::{ErrorClass, InvocationError, Origin, Outcome};

/// A logical clock shared by every caller: `a.end < b.start` means `a` was answered before
/// `b` was sent, the real-time order the checks hold the engine to.
#[derive(Debug, Default)]
pub struct Clock(AtomicU64);

impl Clock {
    /// The next tick.
    pub fn tick(&self) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst)
    }
}

/// What a caller learnt of one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// It committed: the rule's output (JSON text).
    Acked {
        /// The output.
        output: String,
        /// Whether the answer was a replay of an earlier commit of the same key.
        replayed: bool,
    },
    /// It failed with an error that promises nothing was written.
    Failed {
        /// The error kind.
        kind: String,
        /// Whether the error was classed as the server's own fault (HTTP 500) rather than bad
        /// input, a refusal or a passing outage: no fault the run injects should end so.
        internal: bool,
    },
    /// Nobody can say: the call was cancelled, the connection to the server was lost, or the
    /// engine answered `outcome_unknown`. Resolved at the end by invoking again with the key.
    Unknown {
        /// Why.
        why: String,
    },
}

impl Fate {
    /// The fate an engine call's result promises: every error but `outcome_unknown` means
    /// nothing was written (the engine's contract, which the checks hold it to).
    pub fn of(result: &Result<Outcome, InvocationError>) -> Self {
        match result {
            Ok(outcome) => Self::Acked { output: outcome.output.clone(), replayed: outcome.replayed },
            Err(e) if e.kind() == "outcome_unknown" => Self::Unknown { why: e.to_string() },
            Err(e) => Self::Failed {
                kind: e.kind().to_owned(),
                internal: e.class(Origin::Invocation) == ErrorClass::Internal,
            },
        }
    }

    /// Whether the operation is known to have committed.
    pub fn is_acked(&self) -> bool {
        matches!(self, Self::Acked { .. })
    }

    /// Whether the operation is known to have written nothing.
    pub fn is_failed(&self) -> bool {
        matches!(self, Self::Failed { .. })
    }

    /// A short label for the summary: `acked`, `replayed`, the error kind, or `unknown`.
    pub fn label(&self) -> String {
        match self {
            Self::Acked { replayed: false, .. } => "acked".to_owned(),
            Self::Acked { replayed: true, .. } => "acked (replayed)".to_owned(),
            Self::Failed { kind, internal: false } => format!("failed: {kind}"),
            Self::Failed { kind, internal: true } => format!("failed: {kind} (internal)"),
            Self::Unknown { .. } => "unknown".to_owned(),
        }
    }
}

/// One operation's record.
#[derive(Debug, Clone)]
pub struct Record<Op> {
    /// The operation's number, unique in the run (its idempotency key is derived from it).
    pub id: u64,
    /// What it asked for.
    pub op: Op,
    /// The clock before it was first sent.
    pub start: u64,
    /// The clock after its last answer (the resolution's, for one resolved at the end).
    pub end: u64,
    /// Its fate (after resolution, at the end of the run).
    pub fate: Fate,
    /// Whether its first answer was unknown and the fate came from invoking it again.
    pub resolved: bool,
}

/// The idempotency key of operation `id`.
pub fn idempotency_key(id: u64) -> String {
    format!("chaos-{id}")
}
