//! No lost update, whatever runs beside an invocation: other action names on the same field,
//! other modes on the same model, another engine. Each test checks an invariant per
//! acknowledged effect (a chain of versions and values, every append present or removed
//! exactly once), not only a sum. The seed of the random choices is printed; set
//! `WASMTX_TEST_SEED` to replay a run.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use wasmtx::{Engine, Error, FieldValue, Invocation, Mode, Rule, Scalar};

use crate::{Backend, TestEnv, on_both_stores, probe_ops};

on_both_stores!(
    two_actions_and_optimistic_mode_on_one_field_lose_nothing,
    an_action_never_waits_for_another_actions_lock,
    transfers_deposits_and_withdrawals_under_their_own_actions_conserve_money,
    pipeline_appends_survive_lock_mode_pops_evictions_inserts_and_clears,
    pipeline_dict_entries_and_increments_survive_lock_mode_rules,
);

fn seed() -> u64 {
    let seed = std::env::var("WASMTX_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("WASMTX_TEST_SEED={seed}");
    seed
}

fn invoke(action: &str, mode: Mode, model: &str, ops: &[Value]) -> Invocation {
    Invocation::new(action).model("Counter", model).mode(mode).input(probe_ops(ops))
}

/// The probe's result list.
fn results(output: &str) -> Result<Vec<Value>> {
    Ok(serde_json::from_str(output)?)
}

async fn int_field(env: &TestEnv, model_type: &str, key: &str, name: &str) -> Result<i64> {
    let schema = env.engine.model_type(model_type)?;
    let index = schema.field_index(name).context("no such field")?;
    match &env.engine.read_model(model_type, key).await?.values[index] {
        FieldValue::Scalar(Scalar::Int(n)) => Ok(*n),
        other => bail!("{name} is {other:?}"),
    }
}

/// Two action names (`fund` +1000, `refund` -1), 16 tasks each, read-modify-write one counter
/// of one model in lock mode, beside 4 tasks of a third action in optimistic mode (+1,000,000),
/// split over two engines. Every acknowledged increment is applied exactly once, in one serial
/// order: sorted by the version each commit produced (invocations grouped into one commit share
/// its version, and follow one another in it), each acknowledged value is the previous one plus
/// its own delta, and each commit is one version more than the one before.
async fn two_actions_and_optimistic_mode_on_one_field_lose_nothing(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend, "shared-field").await?;
    let (engine2, rules2) = env.second_engine()?;
    let mut tasks = Vec::new();
    let kinds: [(&str, Mode, i64, usize); 3] =
        [("fund", Mode::Lock, 1000, 16), ("refund", Mode::Lock, -1, 16), ("bonus", Mode::Optimistic, 1_000_000, 4)];
    for (action, mode, delta, count) in kinds {
        for task in 0..count {
            let (engine, probe) = if task % 2 == 0 {
                (env.engine.clone(), env.rules.probe.clone())
            } else {
                (engine2.clone(), rules2.probe.clone())
            };
            tasks.push(tokio::spawn(async move {
                let mut acks = Vec::new();
                for _ in 0..8 {
                    let op = json!({"op": "increment", "field": "count", "delta": delta});
                    let out =
                        engine.invoke(&probe, &invoke(action, mode, "shared", &[op])).await.map_err(Error::from)?;
                    let value = results(&out.output)?[0].as_i64().context("the new value")?;
                    acks.push((out.versions[0], value, delta));
                }
                anyhow::Ok(acks)
            }));
        }
    }
    let mut acks = Vec::new();
    for t in tasks {
        acks.extend(t.await??);
    }
    // A group runs one action (one delta), its members in the order their values move.
    acks.sort_unstable_by_key(|&(version, value, delta)| (version, value * delta.signum()));
    let (mut previous, mut previous_version) = (0, 0);
    for &(version, value, delta) in &acks {
        ensure!(
            version == previous_version || version == previous_version + 1,
            "version {version} after {previous_version}: a commit nobody acknowledged, or a version bumped twice"
        );
        ensure!(value == previous + delta, "version {version}: {previous} {delta:+} gave {value}: an update was lost");
        (previous, previous_version) = (value, version);
    }
    ensure!(int_field(&env, "Counter", "shared", "count").await? == previous, "the stored count is the last one");
    ensure!(env.held_locks().await?.is_empty(), "no lock left");
    Ok(())
}

/// Holding `fund`'s lock on a model does not make `refund` on the same model wait: it commits at
/// once (and the held invocation, had it written, would run again on the fresh state).
async fn an_action_never_waits_for_another_actions_lock(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend, "no-wait").await?;
    let request = wasmtx::store::LockRequest {
        models: vec![wasmtx::ModelTarget {
            id: wasmtx::ModelId::new("Counter", "m"),
            schema: env.engine.model_type("Counter")?,
        }],
        action: "fund".into(),
        owner: "test".into(),
        lease: Duration::from_secs(30),
        record: None,
    };
    let wasmtx::store::LockAttempt::Acquired { leases, .. } = env.engine.store().try_lock_and_load(&request).await?
    else {
        bail!("the lock was busy")
    };
    let op = json!({"op": "increment", "field": "count", "delta": 1});
    let refund_invocation = invoke("refund", Mode::Lock, "m", &[op]);
    let refund = env.engine.invoke(&env.rules.probe, &refund_invocation);
    let out = tokio::time::timeout(Duration::from_secs(5), refund).await.context("refund waited for fund's lock")??;
    ensure!(out.attempts == 1, "refund ran once: {}", out.attempts);
    env.engine.store().release(&leases).await?;
    Ok(())
}

/// A bank where each kind of operation has its own action name: `pay` and `refund` transfers
/// (the bank-transfer rule, which refuses to overdraw) and `deposit`s (a plain increment), 24
/// tasks over 8 accounts on two engines. Money is conserved (the total is the start plus the
/// acknowledged deposits), no balance goes negative, and every acknowledged transfer counts
/// once on both sides.
async fn transfers_deposits_and_withdrawals_under_their_own_actions_conserve_money(backend: Backend) -> Result<()> {
    let env = TestEnv::with(backend, "bank-actions", |b| b.acquire_timeout(Duration::from_secs(60))).await?;
    let (engine2, rules2) = env.second_engine()?;
    let accounts: Arc<Vec<String>> = Arc::new((0..8).map(|i| format!("a{i}")).collect());
    for a in accounts.iter() {
        env.engine.set_field("Account", a, "balance", FieldValue::Scalar(Scalar::Int(100))).await?;
    }
    let seed = seed();
    let mut tasks = Vec::new();
    for task in 0..24u64 {
        let (engine, rules) =
            if task % 2 == 0 { (env.engine.clone(), env.rules.clone()) } else { (engine2.clone(), rules2.clone()) };
        let accounts = Arc::clone(&accounts);
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ task);
            let (mut transfers, mut deposited) = (0i64, 0i64);
            for _ in 0..20 {
                let from = rng.random_range(0..accounts.len());
                let to = (from + rng.random_range(1..accounts.len())) % accounts.len();
                let amount = rng.random_range(1..60);
                let (rule, invocation, is_transfer) = match rng.random_range(0..3) {
                    kind @ (0 | 1) => (
                        &rules.bank_transfer,
                        Invocation::new(if kind == 0 { "pay" } else { "refund" })
                            .model("Account", &accounts[from])
                            .model("Account", &accounts[to])
                            .input(json!({ "amount": amount }).to_string()),
                        true,
                    ),
                    _ => (
                        &rules.probe,
                        Invocation::new("deposit")
                            .model("Account", &accounts[to])
                            .input(probe_ops(&[json!({"op": "increment", "field": "balance", "delta": amount})])),
                        false,
                    ),
                };
                match engine.invoke(rule, &invocation).await.map_err(Error::from) {
                    Ok(_) if is_transfer => transfers += 1,
                    Ok(_) => deposited += amount,
                    Err(Error::Rejected { .. }) => {}
                    Err(e) => return Err(anyhow::Error::from(e)),
                }
            }
            Ok((transfers, deposited))
        }));
    }
    let (mut transfers, mut deposited) = (0, 0);
    for t in tasks {
        let (t, d) = t.await??;
        transfers += t;
        deposited += d;
    }
    let (mut total, mut counted) = (0, 0);
    for a in accounts.iter() {
        let balance = int_field(&env, "Account", a, "balance").await?;
        ensure!(balance >= 0, "seed {seed}: {a} went negative: {balance}");
        total += balance;
        counted += int_field(&env, "Account", a, "transaction_count").await?;
    }
    ensure!(total == 8 * 100 + deposited, "seed {seed}: total {total}, expected {}", 8 * 100 + deposited);
    ensure!(counted == 2 * transfers, "seed {seed}: {counted} counts for {transfers} transfers");
    ensure!(env.held_locks().await?.is_empty(), "no lock left");
    Ok(())
}

/// Every acknowledged item is present exactly once or was removed exactly once, and nothing
/// unacknowledged is present.
fn each_acknowledged_item_once(
    seed: u64,
    acked: &[String],
    present: &HashMap<String, usize>,
    removed: &HashMap<String, usize>,
) -> Result<()> {
    for item in acked {
        let (kept, gone) = (present.get(item).copied().unwrap_or(0), removed.get(item).copied().unwrap_or(0));
        ensure!(kept + gone == 1, "seed {seed}: {item} is there {kept} times and was removed {gone} times");
    }
    let unknown: Vec<&String> = present.keys().filter(|item| !acked.contains(item)).collect();
    ensure!(unknown.is_empty(), "seed {seed}: items nobody acknowledged: {unknown:?}");
    Ok(())
}

/// What the lock-mode rules of the list test removed, by item.
fn removed_items(results: &[Value], removed: &mut HashMap<String, usize>) {
    for value in results {
        match value {
            Value::String(item) => *removed.entry(item.clone()).or_default() += 1,
            Value::Array(items) => {
                for item in items.iter().filter_map(Value::as_str) {
                    *removed.entry(item.to_owned()).or_default() += 1;
                }
            }
            _ => {}
        }
    }
}

/// Pipeline appends of distinct items from one engine while lock-mode rules on another pop
/// from the end, evict the oldest, insert at the front and clear (each saying what it removed):
/// every acknowledged item (appended or inserted) is in the final list exactly once, or was
/// removed exactly once by an acknowledged rule; nothing unacknowledged is there.
async fn pipeline_appends_survive_lock_mode_pops_evictions_inserts_and_clears(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend, "list-mixed").await?;
    let (engine2, rules2) = env.second_engine()?;
    let seed = seed();
    let mut appenders = Vec::new();
    for task in 0..8 {
        let (engine, probe) = (env.engine.clone(), env.rules.probe.clone());
        appenders.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..40 {
                let item = format!("p{task}-{i}");
                let op = json!({"op": "append", "field": "items", "item": item});
                engine.invoke(&probe, &invoke("log", Mode::Pipeline, "list", &[op])).await.map_err(Error::from)?;
                acked.push(item);
            }
            anyhow::Ok(acked)
        }));
    }
    let mut editors = Vec::new();
    for task in 0..6u64 {
        let (engine, probe): (Engine, Rule) = (engine2.clone(), rules2.probe.clone());
        editors.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ task);
            let (mut inserted, mut removed) = (Vec::new(), HashMap::new());
            for i in 0..40 {
                // Each kind of edit under its own action name; each reads the list first (its
                // length), as a rule deciding what to do would. A pop from an empty list fails.
                let len = json!({"op": "list_len", "field": "items"});
                let (action, edit) = match rng.random_range(0..10) {
                    0..=3 => ("trim", json!({"op": "list_pop", "field": "items", "index": null})),
                    4..=6 => ("evict", json!({"op": "list_pop", "field": "items", "index": 0})),
                    7 | 8 => (
                        "prepend",
                        json!({"op": "list_insert", "field": "items", "index": 0, "item": format!("l{task}-{i}")}),
                    ),
                    _ => ("reset", json!({"op": "list_items", "field": "items"})),
                };
                let mut ops = vec![len, edit.clone()];
                if action == "reset" {
                    ops.push(json!({"op": "list_clear", "field": "items"}));
                }
                match engine.invoke(&probe, &invoke(action, Mode::Lock, "list", &ops)).await.map_err(Error::from) {
                    Ok(out) => {
                        let results = results(&out.output)?;
                        if edit["op"] == "list_insert" {
                            inserted.push(edit["item"].as_str().unwrap_or_default().to_owned());
                        } else {
                            removed_items(&results[1..2], &mut removed);
                        }
                    }
                    // A pop from an empty list: the rule's access error, nothing written.
                    Err(Error::Access { .. }) => {}
                    Err(e) => return Err(anyhow::Error::from(e)),
                }
            }
            anyhow::Ok((inserted, removed))
        }));
    }
    let mut acked = Vec::new();
    for t in appenders {
        acked.extend(t.await??);
    }
    let mut removed: HashMap<String, usize> = HashMap::new();
    for t in editors {
        let (inserted, r) = t.await??;
        acked.extend(inserted);
        for (item, n) in r {
            *removed.entry(item).or_default() += n;
        }
    }
    let schema = env.engine.model_type("Counter")?;
    let snapshot = env.engine.read_model("Counter", "list").await?;
    let FieldValue::List(items) = &snapshot.values[schema.field_index("items").context("items")?] else {
        bail!("items is not a list")
    };
    let mut present: HashMap<String, usize> = HashMap::new();
    for item in items {
        let Scalar::Str(item) = item else { bail!("an item that is not text") };
        *present.entry(item.clone()).or_default() += 1;
    }
    each_acknowledged_item_once(seed, &acked, &present, &removed)?;
    ensure!(env.held_locks().await?.is_empty(), "no lock left");
    Ok(())
}

/// The same for a dict and a counter: pipeline `dict_set`s of distinct keys and increments
/// from one engine, lock-mode rules on another that pop a key, clear the dict, or set the
/// counter to what they read plus 1000 (each saying what it removed or read): every
/// acknowledged entry is there once or was removed once, and the counter is the sum of every
/// acknowledged delta.
async fn pipeline_dict_entries_and_increments_survive_lock_mode_rules(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend, "dict-mixed").await?;
    let (engine2, rules2) = env.second_engine()?;
    let seed = seed();
    let mut writers = Vec::new();
    for task in 0..8 {
        let (engine, probe) = (env.engine.clone(), env.rules.probe.clone());
        writers.push(tokio::spawn(async move {
            let mut keys = Vec::new();
            for i in 0..40 {
                let key = format!("p{task}-{i}");
                let ops = [
                    json!({"op": "dict_set", "field": "tags", "key": key, "value": 1}),
                    json!({"op": "increment", "field": "count", "delta": 1}),
                ];
                engine.invoke(&probe, &invoke("tag", Mode::Pipeline, "dict", &ops)).await.map_err(Error::from)?;
                keys.push(key);
            }
            anyhow::Ok(keys)
        }));
    }
    let mut editors = Vec::new();
    for task in 0..6u64 {
        let (engine, probe) = (engine2.clone(), rules2.probe.clone());
        editors.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ task);
            let (mut removed, mut bumps) = (Vec::<String>::new(), 0i64);
            for i in 0..40 {
                let (action, ops) = match rng.random_range(0..3) {
                    0 => ("untag", vec![json!({"op": "dict_keys", "field": "tags"})]),
                    1 => (
                        "wipe",
                        vec![json!({"op": "dict_keys", "field": "tags"}), json!({"op": "dict_clear", "field": "tags"})],
                    ),
                    _ => ("bump", vec![json!({"op": "increment", "field": "count", "delta": 1000})]),
                };
                let out =
                    engine.invoke(&probe, &invoke(action, Mode::Lock, "dict", &ops)).await.map_err(Error::from)?;
                match action {
                    // Pop the first key the rule saw, in a second invocation of the same action
                    // (the key may be gone by then: a pop of a missing key removes nothing).
                    "untag" => {
                        let keys = results(&out.output)?;
                        if let Some(key) =
                            keys[0].as_array().and_then(|k| k.get(i % k.len().max(1))).and_then(Value::as_str)
                        {
                            let pop = json!({"op": "dict_pop", "field": "tags", "key": key});
                            let popped = engine
                                .invoke(&probe, &invoke(action, Mode::Lock, "dict", &[pop]))
                                .await
                                .map_err(Error::from)?;
                            if !results(&popped.output)?[0].is_null() {
                                removed.push(key.to_owned());
                            }
                        }
                    }
                    "wipe" => {
                        let keys = results(&out.output)?;
                        removed.extend(
                            keys[0].as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_owned),
                        );
                    }
                    _ => bumps += 1000,
                }
            }
            anyhow::Ok((removed, bumps))
        }));
    }
    let mut acked = Vec::new();
    for t in writers {
        acked.extend(t.await??);
    }
    let (mut removed, mut bumps): (HashMap<String, usize>, i64) = (HashMap::new(), 0);
    for t in editors {
        let (r, b) = t.await??;
        bumps += b;
        for key in r {
            *removed.entry(key).or_default() += 1;
        }
    }
    let schema = env.engine.model_type("Counter")?;
    let snapshot = env.engine.read_model("Counter", "dict").await?;
    let FieldValue::Dict(tags) = &snapshot.values[schema.field_index("tags").context("tags")?] else {
        bail!("tags is not a dict")
    };
    let present: HashMap<String, usize> = tags.keys().map(|key| (key.clone(), 1)).collect();
    each_acknowledged_item_once(seed, &acked, &present, &removed)?;
    let count = int_field(&env, "Counter", "dict", "count").await?;
    ensure!(count == acked.len() as i64 + bumps, "seed {seed}: count {count}, expected {}", acked.len() as i64 + bumps);
    ensure!(env.held_locks().await?.is_empty(), "no lock left");
    Ok(())
}
