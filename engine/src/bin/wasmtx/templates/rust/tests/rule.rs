use serde_json::json;
use wasmtx::testing::{HarnessError, RuleHarness};

/// The `Player` schema and this crate's rule, built for wasm32.
fn harness() -> Result<RuleHarness, HarnessError> {
    RuleHarness::new()?
        .schema_file("models/player.toml")?
        .rule_crate(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn points_add_up_to_a_new_level() -> Result<(), HarnessError> {
    let h = harness()?;
    h.seed_model("Player:ada", json!({ "name": "Ada", "score": 90 }))?;

    h.run("award", &["Player:ada"], json!({ "points": 20, "badge": "first_win" }))
        .assert_output(json!({ "score": 110, "level": 2 }));

    h.assert_state(
        "Player:ada",
        json!({ "name": "Ada", "score": 110, "level": 2, "badges": ["first_win"], "stats": { "awards": 1 } }),
    );
    Ok(())
}

#[test]
fn too_many_points_are_refused_and_nothing_is_written() -> Result<(), HarnessError> {
    let h = harness()?;
    h.seed_model("Player:ada", json!({ "score": 90 }))?;

    h.run("award", &["Player:ada"], json!({ "points": 5000 }))
        .assert_rejected("at most 1000 points at once");

    h.assert_state("Player:ada", json!({ "score": 90, "level": 1, "stats": {} }));
    Ok(())
}
