//! # Level up: game logic on a typed model
//!
//! Shows a rule working on a plain struct ([`wasmtx_guest::typed`]): `#[derive(Model)]` names
//! the fields of `GameCharacter` the rule uses, [`Context::load`] checks them against the schema
//! and reads them, the rule changes them with ordinary Rust, and [`Tracked::save`] writes back
//! only what changed: the experience and the level as increments ([`Counter`]), the health as
//! an assignment, the inventory as an append, the skills entry by entry.
//!
//! - models: `[0]` a `GameCharacter` (see `examples/models/game_character.toml`);
//! - input: `{"exp_gained": 1500}`;
//! - the character gains the experience; once its experience reaches `level * 1000` it gains a
//!   level, its health is restored to 100, every fifth level brings a
//!   `legendary_item_level_{level}` into its inventory, and every skill improves by 1 (by 2
//!   above level 10);
//! - output: `"Leveled up from 1 to 2!"` or `"Need 500 more experience to level up"`.
//!
//! Build: `cargo build --release --target wasm32-unknown-unknown -p rule-level-up` (or let
//! `wasmtx_examples::rules::build_rules` do it). Test: `tests/fixtures.toml` holds
//! given/when/then cases, run by `wasmtx test` and by the workspace's `tests/harness.rs`.

use std::collections::BTreeMap;

use serde::Deserialize;
use wasmtx_guest::prelude::*;

/// The caller's input.
#[derive(Debug, Deserialize)]
struct Gain {
    /// Experience points earned.
    exp_gained: i64,
}

/// The fields of a `GameCharacter` this rule uses (it leaves `name` alone).
#[derive(Debug, Model)]
struct GameCharacter {
    /// Saved as an increment, like the experience: concurrent level-ups in pipeline mode add up.
    level: Counter,
    experience: Counter,
    health: i64,
    inventory: Vec<String>,
    skills: BTreeMap<String, i64>,
}

fn level_up_character(ctx: &Context, input: Gain) -> RuleResult<String> {
    let mut character = ctx.load::<GameCharacter>(0)?;

    character.experience += input.exp_gained;
    let level = character.level.get();
    let threshold = level * 1000;
    if character.experience < threshold {
        let needed = threshold - character.experience.get();
        character.save()?; // the experience gained counts even without a new level
        return Ok(format!("Need {needed} more experience to level up"));
    }

    character.level += 1;
    let new_level = character.level.get();
    character.health = 100;
    if new_level % 5 == 0 {
        character.inventory.push(format!("legendary_item_level_{new_level}"));
    }
    let bonus = if new_level > 10 { 2 } else { 1 };
    for points in character.skills.values_mut() {
        *points += bonus;
    }
    character.save()?;

    Ok(format!("Leveled up from {level} to {new_level}!"))
}

export_rule!(level_up_character);
