//! The demo behind `cargo run --release --bin demo` (see that binary for how to run it): the
//! reference's bank transfer, game character level-up and user progress, then a burst of
//! concurrent transfers whose total must be conserved. A library function so that the
//! integration tests run it too, on the embedded store and on a Redis Cluster.

use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use rand::{Rng, SeedableRng};
use wasmtx::backend::{self, BackendOptions, BackendUrl};
use wasmtx::{Engine, Error, FieldValue, Invocation, ModelSchema, Outcome, Placement, PlacementKey, Scalar};
use wasmtx_examples::models_dir;
use wasmtx_examples::rules::build_rules;

const ACCOUNTS: [&str; 4] = ["alice", "bob", "carol", "dave"];

/// Runs the demo on the store at `url` (`memory`, or a Redis URL: a standalone server or a
/// Redis Cluster), printing what it does.
///
/// # Errors
/// If the rules cannot be built, the store cannot be opened, an invocation fails unexpectedly
/// or the concurrent transfers do not conserve the total.
pub async fn run(url: &str) -> Result<()> {
    let rules = build_rules().context("building the example rules")?;
    let backend = BackendUrl::parse(url)?;
    let store = backend::open_store(url, &BackendOptions::with_prefix("wasmtx-demo"))
        .await
        .with_context(|| format!("opening the store at {backend}"))?;
    let store_name = match backend {
        BackendUrl::Memory => "the embedded in-memory store (set REDIS_URL to use Redis)".to_owned(),
        other => format!("{other} (keys under `wasmtx-demo:`)"),
    };
    println!("wasmtx demo on {store_name}\n");

    // The transfers lock two accounts at once: on a Redis Cluster their models must share a
    // slot, so the demo's accounts form one placement group (a bank with more customers would
    // place them by a ledger prefix instead; see the README, *Redis Cluster*).
    let bank = Placement::new("demo_bank", PlacementKey::Group)?;
    let mut builder = Engine::builder()
        .shared_store(store)
        .model(ModelSchema::from_path(models_dir().join("account.toml"))?.with_placement(Some(bank)));
    for name in ["game_character", "user"] {
        builder = builder.model(ModelSchema::from_path(models_dir().join(format!("{name}.toml")))?);
    }
    let engine = builder.build()?;
    let transfer = engine.compile_rule("bank-transfer", &std::fs::read(&rules.bank_transfer)?)?;
    let level_up = engine.compile_rule("level-up", &std::fs::read(&rules.level_up)?)?;
    let progress = engine.compile_rule("user-progress", &std::fs::read(&rules.user_progress)?)?;

    // Start from a known state, so the demo can run again on the same Redis.
    for key in ACCOUNTS {
        engine.delete_model("Account", key).await?;
        engine.set_field("Account", key, "balance", FieldValue::Scalar(Scalar::Int(100))).await?;
        engine.set_field("Account", key, "account_holder", FieldValue::Scalar(Scalar::Str(key.to_owned()))).await?;
    }
    engine.delete_model("GameCharacter", "hero").await?;
    engine
        .dict_set(
            "GameCharacter",
            "hero",
            "skills",
            vec![("sword".into(), Scalar::Int(3)), ("magic".into(), Scalar::Int(1))],
        )
        .await?;
    engine.delete_model("User", "u1").await?;

    println!("1. Bank transfer (lock mode, two accounts locked in one round trip)");
    let ok = engine
        .invoke(
            &transfer,
            &Invocation::new("transfer").model("Account", "alice").model("Account", "bob").input(r#"{"amount": 30}"#),
        )
        .await?;
    report(&ok);
    match engine
        .invoke(
            &transfer,
            &Invocation::new("transfer").model("Account", "bob").model("Account", "alice").input(r#"{"amount": 1000}"#),
        )
        .await
        .map_err(|failed| failed.error)
    {
        Err(Error::Rejected { message }) => {
            println!("   a transfer of 1000 from bob is rejected: {message:?}; nothing was written")
        }
        other => bail!("expected a rejection, got {other:?}"),
    }
    print_model(&engine, "Account", "alice").await?;
    print_model(&engine, "Account", "bob").await?;

    println!("\n2. Game character level-up (conditional logic, list append, dict updates)");
    for exp in [600, 600, 3000] {
        let out = engine
            .invoke(
                &level_up,
                &Invocation::new("level_up")
                    .model("GameCharacter", "hero")
                    .input(format!(r#"{{"exp_gained": {exp}}}"#)),
            )
            .await?;
        report(&out);
    }
    print_model(&engine, "GameCharacter", "hero").await?;

    println!("\n3. User progress (increment, list append, dict set)");
    for (points, achievement) in [(50, "first_steps"), (120, "speedrun")] {
        let input = serde_json::json!({ "points": points, "achievement": achievement });
        let out = engine.invoke(&progress, &Invocation::new("progress").model("User", "u1").input_json(&input)).await?;
        report(&out);
    }
    print_model(&engine, "User", "u1").await?;

    println!("\n4. 400 concurrent random transfers among {} accounts", ACCOUNTS.len());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..16u64 {
        let (engine, transfer) = (engine.clone(), transfer.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(task);
            let (mut done, mut rejected) = (0u32, 0u32);
            for _ in 0..25 {
                let from = ACCOUNTS[rng.random_range(0..ACCOUNTS.len())];
                let to = loop {
                    let to = ACCOUNTS[rng.random_range(0..ACCOUNTS.len())];
                    if to != from {
                        break to;
                    }
                };
                let amount = rng.random_range(1..60);
                let inv = Invocation::new("transfer")
                    .model("Account", from)
                    .model("Account", to)
                    .input(format!(r#"{{"amount": {amount}}}"#));
                match engine.invoke(&transfer, &inv).await.map_err(|failed| failed.error) {
                    Ok(_) => done += 1,
                    Err(Error::Rejected { .. }) => rejected += 1,
                    Err(e) => return Err(e),
                }
            }
            Ok((done, rejected))
        }));
    }
    let (mut done, mut rejected) = (0, 0);
    for t in tasks {
        let (d, r) = t.await??;
        done += d;
        rejected += r;
    }
    let elapsed = started.elapsed();
    let mut total = 0;
    for key in ACCOUNTS {
        let snap = engine.read_model("Account", key).await?;
        let balance = match &snap.values[0] {
            FieldValue::Scalar(Scalar::Int(b)) => *b,
            other => bail!("unexpected balance {other:?}"),
        };
        if balance < 0 {
            bail!("{key} went negative: {balance}");
        }
        total += balance;
    }
    println!("   {done} committed, {rejected} rejected (insufficient funds) in {elapsed:.2?}");
    println!("   total balance {total} (expected {}), no account negative", 100 * ACCOUNTS.len());
    if total != 100 * i64::try_from(ACCOUNTS.len())? {
        bail!("the total was not conserved");
    }
    println!("\ndemo finished");
    Ok(())
}

fn report(outcome: &Outcome) {
    let written: Vec<String> = outcome
        .changes
        .iter()
        .filter(|m| !m.changes.is_empty())
        .map(|m| {
            let changes: Vec<String> = m.changes.iter().map(ToString::to_string).collect();
            format!("{}: {}", m.model, changes.join(", "))
        })
        .collect();
    println!("   -> {}", outcome.output);
    println!("      wrote: {}", if written.is_empty() { "nothing".to_owned() } else { written.join("; ") });
    println!(
        "      fencing tokens {:?}, versions {:?}; lock+load {:.0?}, run {:.0?}, commit {:.0?}",
        outcome.fencing_tokens, outcome.versions, outcome.timings.load, outcome.timings.run, outcome.timings.commit
    );
}

async fn print_model(engine: &Engine, model_type: &str, key: &str) -> Result<()> {
    let schema = engine.model_type(model_type)?;
    let snapshot = engine.read_model(model_type, key).await?;
    println!("   {model_type}:{key} = {} (version {})", snapshot.to_json(&schema), snapshot.version);
    Ok(())
}
