//! # Counter: a hot counter, and an event log that keeps its last entries
//!
//! The rule of the benchmark's "hot counter" and "pipeline append" workloads
//! (`cargo run --release --bin bench`): the smallest useful transaction on one model.
//!
//! - models: `[0]` any model with an int field `count` (and a `list<str>` field `events` when
//!   the input names an event);
//! - input: `{"delta": 1}`; optionally `"limit": 1000` (refuse with `rejected("limit
//!   reached")` when `count + delta` would pass it) and `"event": "e-17"` (append it to
//!   `events`, then drop the oldest entry if the log holds more than `"keep"`, default 100);
//! - output: the new `count`.
//!
//! In lock and optimistic modes the whole rule is serialized per model: the log holds exactly
//! `keep` entries once full. In pipeline mode the increment applies as `HINCRBY` and the log as
//! `RPUSH` plus at most one `LPOP`, so concurrent runs on one model lose no increment and never
//! shrink the log; runs that all loaded a log one short of full may leave up to one extra entry
//! each (at most `keep` plus the number of concurrent callers).
//!
//! Build: `cargo build --release --target wasm32-unknown-unknown -p rule-counter` (or let
//! `wasmtx_examples::rules::build_rules` do it).

use serde::Deserialize;
use wasmtx_guest::prelude::*;

/// The caller's input.
#[derive(Debug, Deserialize)]
struct Bump {
    /// How much to add.
    delta: i64,
    /// The largest value `count` may reach.
    #[serde(default)]
    limit: Option<i64>,
    /// An entry for the `events` log.
    #[serde(default)]
    event: Option<String>,
    /// How many log entries to keep.
    #[serde(default = "default_keep")]
    keep: u32,
}

fn default_keep() -> u32 {
    100
}

fn bump(ctx: &Context, input: Bump) -> RuleResult<i64> {
    let model = ctx.model(0)?;
    let count = model.increment("count", input.delta)?;
    if input.limit.is_some_and(|limit| count > limit) {
        return Err(reject("limit reached")); // the increment above is not written
    }
    if let Some(event) = input.event {
        let events = model.list("events");
        events.append(event)?;
        // At most one eviction per append: in pipeline mode, where pops apply to the list as
        // it is at commit, an invocation never removes more than it added, so concurrent ones
        // never shrink the log below `keep`.
        if events.len()? > input.keep {
            events.pop_at(0)?;
        }
    }
    Ok(count)
}

export_rule!(bump);
