//! # Level up: game logic over scalar, list and dict fields
//!
//! Shows reads and writes of every field shape on one model: scalar fields ([`Model::increment`],
//! [`Model::get_int`], [`Model::set_int`]), a list field ([`ListField::append`]) and a dict
//! field ([`DictField::entries`], [`DictField::update`]).
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
//! `wasmtx_examples::rules::build_rules` do it).

use serde::Deserialize;
use wasmtx_guest::prelude::*;

/// The caller's input.
#[derive(Debug, Deserialize)]
struct Gain {
    /// Experience points earned.
    exp_gained: i64,
}

fn level_up_character(ctx: &Context, input: Gain) -> RuleResult<String> {
    let character = ctx.model(0)?;

    let experience = character.increment("experience", input.exp_gained)?;
    let level = character.get_int("level")?;
    let threshold = level * 1000;
    if experience < threshold {
        let needed = threshold - experience;
        return Ok(format!("Need {needed} more experience to level up"));
    }

    let new_level = character.increment("level", 1)?;
    character.set_int("health", 100)?;
    if new_level % 5 == 0 {
        character
            .list("inventory")
            .append(format!("legendary_item_level_{new_level}"))?;
    }

    let skills = character.dict("skills");
    let bonus = if new_level > 10 { 2 } else { 1 };
    let improved = skills
        .entries()?
        .into_iter()
        // The schema makes `skills` a `dict<int>`: the engine stores nothing else in it.
        .map(|(skill, points)| (skill, points.as_int().unwrap_or_default() + bonus))
        .collect::<Vec<_>>();
    if !improved.is_empty() {
        skills.update(improved)?;
    }

    Ok(format!("Leveled up from {level} to {new_level}!"))
}

export_rule!(level_up_character);
