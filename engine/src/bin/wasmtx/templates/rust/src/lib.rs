use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wasmtx_guest::prelude::*;

/// The fields of a `Player` this rule uses.
#[derive(Debug, Model)]
struct Player {
    score: Counter,
    level: i64,
    badges: Vec<String>,
    stats: BTreeMap<String, i64>,
}

/// The caller's input: `{"points": 20, "badge": "first_win"}`.
#[derive(Deserialize)]
struct Award {
    points: i64,
    badge: Option<String>,
}

/// The output: the player's new score and level.
#[derive(Serialize)]
struct Standing {
    score: i64,
    level: i64,
}

/// Awards points to models[0]; every 100 points is a level.
fn award(ctx: &Context, input: Award) -> RuleResult<Standing> {
    if input.points <= 0 {
        return Err(invalid_input("points must be positive"));
    }
    if input.points > 1000 {
        return Err(reject("at most 1000 points at once"));
    }
    let mut player = ctx.load::<Player>(0)?;
    player.score += input.points;
    player.level = player.score.get() / 100 + 1;
    if let Some(badge) = input.badge {
        if !player.badges.contains(&badge) {
            player.badges.push(badge);
        }
    }
    *player.stats.entry("awards".into()).or_insert(0) += 1;
    player.save()?;
    Ok(Standing { score: player.score.get(), level: player.level })
}

export_rule!(award);
