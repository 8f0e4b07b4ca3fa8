//! # User progress: counters, lists, dicts and the invocation's time
//!
//! Shows [`Model::increment`] returning the new value, a list field used as a log
//! ([`ListField::append`], [`ListField::len`]), a dict field as free-form metadata
//! ([`DictField::set`]), a structured output, and the time taken from the invocation context
//! ([`Context::utc_date`]): a rule imports no clock, so re-running it gives the same result.
//!
//! - models: `[0]` a `User` (see `examples/models/user.toml`);
//! - input: `{"points": 10, "achievement": "first_login"}`;
//! - output: `{"score": 110, "achievements": 3}`, the new score and number of achievements.
//!
//! Build: `cargo build --release --target wasm32-unknown-unknown -p rule-user-progress` (or let
//! `wasmtx_examples::rules::build_rules` do it).

use serde::{Deserialize, Serialize};
use wasmtx_guest::prelude::*;

/// The caller's input.
#[derive(Debug, Deserialize)]
struct Progress {
    /// Points to add to the score.
    points: i64,
    /// The achievement to record.
    achievement: String,
}

/// The rule's output.
#[derive(Debug, Serialize)]
struct Summary {
    /// The new score.
    score: i64,
    /// How many achievements the user has now.
    achievements: u32,
}

fn update_user_progress(ctx: &Context, input: Progress) -> RuleResult<Summary> {
    let user = ctx.model(0)?;

    let score = user.increment("score", input.points)?;
    let achievements = user.list("achievements");
    achievements.append(input.achievement)?;
    user.dict("metadata").set("last_update", ctx.utc_date().to_string())?;

    Ok(Summary { score, achievements: achievements.len()? })
}

export_rule!(update_user_progress);
