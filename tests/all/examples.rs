//! The example rules do what the reference's examples do, on both stores.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::{Backend, TestEnv, on_both_stores};
use anyhow::Result;
use serde_json::json;
use wasmtx::{FieldValue, Invocation, Scalar};

on_both_stores!(
    level_up_at_level_five_heals_rewards_and_trains,
    level_up_above_ten_trains_twice_as_fast,
    user_progress_scores_and_stamps_the_date
);

fn int(v: i64) -> FieldValue {
    FieldValue::Scalar(Scalar::Int(v))
}

async fn state(env: &TestEnv, model_type: &str, key: &str) -> Result<serde_json::Value> {
    let schema = env.engine.model_type(model_type)?;
    Ok(env.engine.read_model(model_type, key).await?.to_json(&schema))
}

async fn level_up(env: &TestEnv, key: &str, exp: i64) -> Result<String> {
    let inv = Invocation::new("level_up").model("GameCharacter", key).input(json!({ "exp_gained": exp }).to_string());
    Ok(env.engine.invoke(&env.rules.level_up, &inv).await.map_err(wasmtx::Error::from)?.output_as()?)
}

async fn level_up_at_level_five_heals_rewards_and_trains(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend, "level5").await?;
    let e = &env.engine;
    e.set_field("GameCharacter", "hero", "level", int(4)).await?;
    e.set_field("GameCharacter", "hero", "experience", int(3_500)).await?;
    e.set_field("GameCharacter", "hero", "health", int(30)).await?;
    e.dict_set(
        "GameCharacter",
        "hero",
        "skills",
        vec![("sword".into(), Scalar::Int(1)), ("magic".into(), Scalar::Int(2))],
    )
    .await?;

    assert_eq!(level_up(&env, "hero", 100).await?, "Need 400 more experience to level up");
    assert_eq!(level_up(&env, "hero", 500).await?, "Leveled up from 4 to 5!");
    let hero = state(&env, "GameCharacter", "hero").await?;
    assert_eq!(hero["level"], 5);
    assert_eq!(hero["experience"], 4_100);
    assert_eq!(hero["health"], 100);
    assert_eq!(hero["inventory"], json!(["legendary_item_level_5"]));
    assert_eq!(hero["skills"], json!({"magic": 3, "sword": 2}));
    Ok(())
}

async fn level_up_above_ten_trains_twice_as_fast(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend, "level11").await?;
    let e = &env.engine;
    e.set_field("GameCharacter", "vet", "level", int(10)).await?;
    e.dict_set("GameCharacter", "vet", "skills", vec![("bow".into(), Scalar::Int(7))]).await?;
    assert_eq!(level_up(&env, "vet", 10_000).await?, "Leveled up from 10 to 11!");
    let vet = state(&env, "GameCharacter", "vet").await?;
    assert_eq!(vet["level"], 11);
    assert_eq!(vet["skills"], json!({"bow": 9}));
    assert_eq!(vet["inventory"], json!([]), "11 is not a multiple of 5: no item");
    Ok(())
}

fn today_utc() -> String {
    let ms =
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    crate::iso_utc(ms)[..10].to_owned()
}

async fn user_progress_scores_and_stamps_the_date(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend, "progress").await?;
    let before = today_utc();
    for (points, achievement) in [(50, "first_steps"), (70, "explorer")] {
        let inv = Invocation::new("progress")
            .model("User", "u")
            .input(json!({ "points": points, "achievement": achievement }).to_string());
        env.engine.invoke(&env.rules.user_progress, &inv).await.map_err(wasmtx::Error::from)?;
    }
    let after = today_utc();
    let user = state(&env, "User", "u").await?;
    assert_eq!(user["score"], 120);
    assert_eq!(user["achievements"], json!(["first_steps", "explorer"]));
    let stamped = user["metadata"]["last_update"].as_str().unwrap_or_default().to_owned();
    assert!(stamped == before || stamped == after, "last_update {stamped} should be today ({before})");
    Ok(())
}

/// The README's demo (`cargo run --release --bin demo`) on the embedded store, and with
/// `REDIS_URL` naming one node of a Redis Cluster: its two-account transfers are co-located by
/// the placement the demo gives its accounts, so none is refused as cross-slot, and the burst
/// of concurrent transfers conserves the total (the demo fails otherwise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_on_the_embedded_store_and_on_a_redis_cluster() -> Result<()> {
    wasmtx_example_host::demo::run("memory").await?;
    wasmtx_example_host::demo::run(&crate::support::test_cluster::cluster()?.url()).await?;
    Ok(())
}
