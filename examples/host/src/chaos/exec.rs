//! How an operation reaches the engine: in this process ([`EngineExecutor`], one or several
//! engine instances) or over HTTP to `wasmtx serve` processes (`serve.rs`). A workload builds
//! [`Call`]s and never knows which.

use std::future::Future;
use std::time::Duration;

use rand::Rng as _;
use rand::rngs::StdRng;
use serde_json::Value;
use wasmtx::{Engine, Invocation, Mode, Rule};

use super::history::Fate;

/// One invocation of the probe rule, as a workload asks for it.
#[derive(Debug, Clone)]
pub struct Call {
    /// The models, `(type, key)`, in the order the rule sees them.
    pub models: Vec<(&'static str, String)>,
    /// The action (lock name).
    pub action: &'static str,
    /// The mode.
    pub mode: Mode,
    /// The probe's script (`{"ops": [...]}`).
    pub input: Value,
    /// The idempotency key (kept when the call is sent again to learn its outcome).
    pub key: String,
}

/// Something that runs [`Call`]s and says what became of them.
pub trait Executor: Send + Sync + 'static {
    /// Runs `call` once (the engine may retry inside) and returns its fate. `cancel_after`
    /// drops the call after that long, as a caller that gives up would (its fate is then
    /// unknown unless it had finished).
    fn invoke(
        &self,
        call: &Call,
        cancel_after: Option<Duration>,
        rng: &mut StdRng,
    ) -> impl Future<Output = Fate> + Send;
}

/// Runs calls on in-process engines (two instances: as two host processes would, each with its
/// own local lock lines), picking one at random per call.
#[derive(Debug, Clone)]
pub struct EngineExecutor {
    engines: Vec<(Engine, Rule)>,
}

impl EngineExecutor {
    /// Calls go to these engines, each with the probe rule compiled on it.
    pub fn new(engines: Vec<(Engine, Rule)>) -> Self {
        Self { engines }
    }

    /// The first engine (to read state for the checks).
    pub fn engine(&self) -> &Engine {
        &self.engines[0].0
    }
}

/// The engine invocation for `call`.
pub fn invocation(call: &Call) -> Invocation {
    let mut invocation =
        Invocation::new(call.action).mode(call.mode).input(call.input.to_string()).idempotency_key(call.key.clone());
    for (model_type, key) in &call.models {
        invocation = invocation.model(*model_type, key.clone());
    }
    invocation
}

impl Executor for EngineExecutor {
    async fn invoke(&self, call: &Call, cancel_after: Option<Duration>, rng: &mut StdRng) -> Fate {
        let (engine, rule) = &self.engines[rng.random_range(0..self.engines.len())];
        let invocation = invocation(call);
        let run = engine.invoke(rule, &invocation);
        match cancel_after {
            None => Fate::of(&run.await),
            Some(after) => match tokio::time::timeout(after, run).await {
                Ok(result) => Fate::of(&result),
                Err(_) => Fate::Unknown { why: format!("cancelled after {after:?}") },
            },
        }
    }
}
