//! # Complete level: the reference's pipeline example
//!
//! The reference's `complete_level`, written for **pipeline mode**: the score and the level use
//! [`Model::increment`], which the engine applies as `HINCRBY`, and the achievements use
//! [`ListField::append`] (`RPUSH`), so concurrent completions on one user never lose each
//! other's points or achievements. The level-up condition reads the score as loaded, and the
//! `stats` entries are assignments (`HSET`): under concurrency those are last-writer-wins, as
//! the README's pipeline table says. In lock mode the same rule is fully serialized.
//!
//! - models: `[0]` a `GameUser` (see `examples/models/game_user.toml`);
//! - input: `{"level_score": 1200, "level_name": "Forest"}`;
//! - output: `{"total_score": 1200, "level": 2}`.
//!
//! Build: `cargo build --release --target wasm32-unknown-unknown -p rule-complete-level` (or let
//! `wasmtx_examples::rules::build_rules` do it).

use serde::{Deserialize, Serialize};
use wasmtx_guest::prelude::*;

/// The caller's input.
#[derive(Debug, Deserialize)]
struct Completion {
    /// The score earned in the level.
    level_score: i64,
    /// The level's name.
    level_name: String,
}

/// The rule's output.
#[derive(Debug, Serialize)]
struct Progress {
    /// The user's total score after this level.
    total_score: i64,
    /// The user's level after this level.
    level: i64,
}

fn complete_level(ctx: &Context, input: Completion) -> RuleResult<Progress> {
    if input.level_score < 0 {
        return Err(invalid_input("level_score cannot be negative"));
    }
    let user = ctx.model(0)?;
    let achievements = user.list("achievements");

    let total_score = user.increment("total_score", input.level_score)?;
    let mut level = user.get_int("level")?;
    if total_score > level * 1000 {
        level = user.increment("level", 1)?;
        achievements.append(format!("Reached Level {level}"))?;
    }
    achievements.append(format!("Completed {}", input.level_name))?;

    let stats = user.dict("stats");
    let completed = stats.get_int("levels_completed")?.unwrap_or(0);
    stats.set("levels_completed", completed + 1)?;
    stats.set("last_level_score", input.level_score)?;

    Ok(Progress { total_score, level })
}

export_rule!(complete_level);
