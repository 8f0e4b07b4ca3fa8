//! Redis Cluster (issue 12, step 1), on the binary's 3-primary cluster
//! (`support::cluster`): the URL detection, the store conformance suite, the registry, a
//! seeded bank run on co-located accounts from two engines, and cross-slot invocations refused
//! before anything is locked or written, in every mode and over HTTP, which a placement makes
//! succeed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wasmtx::backend::BackendOptions;
use wasmtx::registry::{Registry, RegistryConfig};
use wasmtx::store::redis::{KeyLayout, RedisStore};
use wasmtx::{
    Engine, Error, FieldValue, Invocation, Mode, ModelId, ModelSchema, Placement, PlacementKey, Rule, Scalar, Store,
    StoreError,
};

use crate::process::poll;
use crate::support::test_cluster::cluster;
use crate::{compile_rules, unique_prefix};

/// A store on the cluster (named by one node) under a fresh prefix, and the prefix.
async fn cluster_store(name: &str) -> Result<(Arc<dyn Store>, String)> {
    let prefix = unique_prefix(name);
    let store = wasmtx::backend::open_store(&cluster()?.url(), &BackendOptions::with_prefix(prefix.clone()))
        .await
        .context("opening a store on the test cluster")?;
    Ok((store, prefix))
}

/// The conformance suite, every check on a fresh prefix of the cluster.
mod conformance {
    wasmtx::store_conformance_tests!(super::cluster_store("conformance").await?.0);
}

/// The example `Account`, placed: every account of one ledger (the key's text before `/`) in
/// one slot.
fn ledger_account() -> Result<ModelSchema> {
    let schema = ModelSchema::from_path(wasmtx_examples::models_dir().join("account.toml"))?;
    let ledger = Placement::new("ledger", PlacementKey::Prefix { separator: "/".into() })?;
    Ok(schema.with_placement(Some(ledger)))
}

/// An engine on `store` knowing `account` as its `Account`, with the rules compiled.
fn bank_engine(store: Arc<dyn Store>, account: ModelSchema) -> Result<(Engine, Rule)> {
    let engine = Engine::builder().shared_store(store).model(account).build()?;
    let rule = compile_rules(&engine)?.bank_transfer;
    Ok((engine, rule))
}

fn transfer(from: &str, to: &str, amount: i64) -> Invocation {
    Invocation::new("transfer").model("Account", from).model("Account", to).input(format!(r#"{{"amount": {amount}}}"#))
}

async fn balance_and_count(engine: &Engine, key: &str) -> Result<(i64, i64)> {
    let snapshot = engine.read_model("Account", key).await?;
    let schema = ledger_account()?;
    let json = snapshot.to_json(&schema);
    let int = |field: &str| json[field].as_i64().with_context(|| format!("{key}.{field} in {json}"));
    Ok((int("balance")?, int("transaction_count")?))
}

/// One seed node, every node, and a dead first node all reach the cluster; a standalone URL
/// stays standalone; several nodes that are not a cluster are refused, and so is client
/// tracking on a cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_is_detected_from_one_node_several_or_a_dead_first_one() -> Result<()> {
    let cluster = cluster()?;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let urls =
        [cluster.url(), cluster.seeds_url(), format!("redis://127.0.0.1:{dead},127.0.0.1:{}", cluster.ports()[1])];
    for url in &urls {
        let store = RedisStore::builder(url.as_str()).prefix(unique_prefix("detect")).connect().await?;
        ensure!(store.is_cluster(), "{url} was not detected as a cluster");
        // It works: a model far from the seed node's slots loads.
        let target = wasmtx::ModelTarget { id: ModelId::new("Account", "probe"), schema: Arc::new(ledger_account()?) };
        store.load(std::slice::from_ref(&target)).await.with_context(|| url.clone())?;
    }
    // Client tracking needs one server: a cluster is refused before anything is written.
    match RedisStore::builder(cluster.url()).prefix(unique_prefix("detect")).client_tracking(true).connect().await {
        Err(StoreError::Incompatible { reason }) => ensure!(reason.contains("Redis Cluster"), "{reason}"),
        other => bail!("client tracking on a cluster: expected Incompatible, got {other:?}"),
    }
    let standalone = RedisStore::builder(crate::redis_url()).prefix(unique_prefix("detect")).connect().await?;
    ensure!(!standalone.is_cluster(), "the standalone server was taken for a cluster");
    let two = format!("{},127.0.0.1:{dead}", crate::redis_url());
    match RedisStore::builder(two.as_str()).connect().await {
        Err(StoreError::InvalidUrl { reason, .. }) => ensure!(reason.contains("not a Redis Cluster"), "{reason}"),
        other => bail!("several standalone nodes: expected InvalidUrl, got {other:?}"),
    }
    Ok(())
}

/// The Functions library is on every primary after a store connected (`FUNCTION LOAD` goes to
/// each one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_is_loaded_on_every_primary() -> Result<()> {
    let _store = cluster_store("library").await?;
    for mut conn in cluster()?.node_clients().await? {
        let version: String = redis::cmd("FCALL").arg("wasmtx_version").arg(0).query_async(&mut conn).await?;
        ensure!(version == wasmtx::store::redis::LIBRARY_VERSION.to_string(), "version {version}");
    }
    Ok(())
}

/// Rules uploaded and activated through one engine's registry resolve on a second engine with
/// its own connections, and activations reach it (Pub/Sub on the cluster).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_is_shared_by_engines_on_the_cluster() -> Result<()> {
    let prefix = unique_prefix("cluster-registry");
    let url = cluster()?.url();
    let options = BackendOptions::with_prefix(prefix.clone());
    let (first, second) = (wasmtx::backend::open(&url, &options).await?, wasmtx::backend::open(&url, &options).await?);
    let instance = |opened: &wasmtx::backend::Backend| {
        let engine = Engine::builder().shared_store(opened.store()).model(ledger_account()?).build()?;
        anyhow::Ok((engine, opened.registry_store()))
    };
    let (engine_a, registry_a) = instance(&first)?;
    let (engine_b, registry_b) = instance(&second)?;
    let a = Registry::open(engine_a, registry_a, RegistryConfig::default()).await?;
    let b = Registry::open(engine_b, registry_b, RegistryConfig::default()).await?;
    let bytes = std::fs::read(&crate::rules()?.bank_transfer)?;
    let v1 = a.upload("transfer", &bytes, true).await?;
    ensure!(v1.created && v1.active && v1.version.version == 1);
    let resolved = b.resolve("transfer").await?;
    ensure!(resolved.rule.digest() == v1.version.digest, "B resolved another rule");

    b.engine().set_field("Account", "l1/alice", "balance", FieldValue::Scalar(Scalar::Int(50))).await?;
    let outcome = b.engine().invoke(&resolved.rule, &transfer("l1/alice", "l1/bob", 20)).await.map_err(Error::from)?;
    ensure!(outcome.wrote_anything(), "the transfer wrote nothing");
    ensure!(balance_and_count(a.engine(), "l1/bob").await? == (20, 1), "A does not see B's transfer");

    // A second version, activated on A, reaches B by announcement.
    let component = wit_component::ComponentEncoder::default().module(&bytes)?.validate(true).encode()?;
    let v2 = a.upload("transfer", &component, true).await?;
    poll(Duration::from_secs(5), "B sees v2", || async {
        Ok(b.snapshot().active.get("transfer").filter(|v| v.version == 2).map(drop))
    })
    .await?;
    ensure!(b.resolve("transfer").await?.rule.digest() == v2.version.digest);
    Ok(())
}

/// A seeded bank run on the cluster: accounts of 4 ledgers (each ledger co-located by its
/// placement, the ledgers spread over the nodes), 16 tasks on two engines with their own
/// connections making transfers inside a ledger in lock and optimistic modes. Checked per
/// effect: every account's balance and transaction count are exactly what the acknowledged
/// transfers make them (each applied once, none of the failed ones applied), the total is
/// conserved, and no lock is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bank_of_co_located_ledgers_keeps_every_acknowledged_transfer_once() -> Result<()> {
    const LEDGERS: usize = 4;
    const ACCOUNTS: usize = 5;
    const TASKS: u64 = 16;
    const TRANSFERS: u64 = 25;
    const INITIAL: i64 = 1_000;
    let seed = std::env::var("WASMTX_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random::<u64>);
    println!("WASMTX_TEST_SEED={seed}");
    let (store_a, prefix) = cluster_store("cluster-bank").await?;
    let store_b =
        wasmtx::backend::open_store(&cluster()?.seeds_url(), &BackendOptions::with_prefix(prefix.clone())).await?;
    let (engine_a, rule_a) = bank_engine(store_a, ledger_account()?)?;
    let (engine_b, rule_b) = bank_engine(store_b, ledger_account()?)?;
    let key = |ledger: usize, account: usize| format!("l{ledger}/a{account}");
    let layout = KeyLayout::new(prefix.clone());
    layout.place("Account", ledger_account()?.placement());
    let slots: std::collections::BTreeSet<u16> =
        (0..LEDGERS).map(|l| layout.slot(&ModelId::new("Account", key(l, 0)))).collect();
    ensure!(slots.len() > 1, "the ledgers should spread over slots: {slots:?}");
    for l in 0..LEDGERS {
        for a in 0..ACCOUNTS {
            engine_a.set_field("Account", &key(l, a), "balance", FieldValue::Scalar(Scalar::Int(INITIAL))).await?;
        }
    }

    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (engine, rule) =
            if task % 2 == 0 { (engine_a.clone(), rule_a.clone()) } else { (engine_b.clone(), rule_b.clone()) };
        let mut rng = StdRng::seed_from_u64(seed ^ task.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for _ in 0..TRANSFERS {
                let ledger = rng.random_range(0..LEDGERS);
                let from = rng.random_range(0..ACCOUNTS);
                let to = (from + rng.random_range(1..ACCOUNTS)) % ACCOUNTS;
                let amount = rng.random_range(1..=50);
                let mode = if rng.random_bool(0.5) { Mode::Lock } else { Mode::Optimistic };
                let invocation = transfer(&key(ledger, from), &key(ledger, to), amount).mode(mode);
                match engine.invoke(&rule, &invocation).await {
                    Ok(_) => acknowledged.push((key(ledger, from), key(ledger, to), amount)),
                    Err(e)
                        if matches!(
                            *e,
                            Error::Rejected { .. } | Error::LockTimeout { .. } | Error::Conflict { .. }
                        ) => {}
                    Err(e) => return Err(anyhow::anyhow!("seed {seed}: transfer failed: {e}")),
                }
            }
            anyhow::Ok(acknowledged)
        }));
    }
    let mut expected: HashMap<String, (i64, i64)> = HashMap::new();
    for l in 0..LEDGERS {
        for a in 0..ACCOUNTS {
            expected.insert(key(l, a), (INITIAL, 0));
        }
    }
    let mut acknowledged = 0;
    for task in tasks {
        for (from, to, amount) in task.await?? {
            acknowledged += 1;
            let payer = expected.get_mut(&from).context("payer")?;
            *payer = (payer.0 - amount, payer.1 + 1);
            let payee = expected.get_mut(&to).context("payee")?;
            *payee = (payee.0 + amount, payee.1 + 1);
        }
    }
    ensure!(acknowledged > TASKS * TRANSFERS / 2, "seed {seed}: only {acknowledged} transfers were acknowledged");
    let mut total = 0;
    for (account, want) in &expected {
        let got = balance_and_count(&engine_b, account).await?;
        ensure!(
            got == *want,
            "seed {seed}: {account} has (balance, count) {got:?}, the acknowledged transfers make {want:?}"
        );
        total += got.0;
    }
    ensure!(total == INITIAL * i64::try_from(LEDGERS * ACCOUNTS)?, "seed {seed}: the total is {total}");
    let held = cluster()?.held_locks(&prefix).await?;
    ensure!(held.is_empty(), "seed {seed}: locks left: {held:?}");
    Ok(())
}

/// Two accounts in different slots: in every mode the invocation is refused with `cross_slot`,
/// naming both models and the placement, before anything is locked or written (the cluster's
/// keys under the prefix are the same before and after); placed in one ledger, the same
/// transfer succeeds in every mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_slot_invocation_is_refused_in_every_mode_and_a_placement_makes_it_succeed() -> Result<()> {
    let (store, prefix) = cluster_store("cross-slot").await?;
    let plain = ModelSchema::from_path(wasmtx_examples::models_dir().join("account.toml"))?;
    let (engine, rule) = bank_engine(Arc::clone(&store), plain)?;
    let layout = KeyLayout::new(prefix.clone());
    let (alice, bob) = (ModelId::new("Account", "alice"), ModelId::new("Account", "bob"));
    ensure!(layout.slot(&alice) != layout.slot(&bob), "alice and bob should be in two slots");
    engine.set_field("Account", "alice", "balance", FieldValue::Scalar(Scalar::Int(100))).await?;
    let before = cluster()?.dump(&prefix).await?;
    for mode in Mode::ALL {
        let refused = engine.invoke(&rule, &transfer("alice", "bob", 10).mode(mode)).await;
        let Err(error) = refused else { bail!("{mode:?}: a cross-slot transfer was not refused") };
        ensure!(error.kind() == "cross_slot", "{mode:?}: kind {} ({error})", error.kind());
        ensure!(!error.is_retryable(), "{mode:?}: a cross-slot refusal is not retryable");
        let message = error.to_string();
        for needle in ["Account:alice", "Account:bob", "placement"] {
            ensure!(message.contains(needle), "{mode:?}: the message does not name {needle}: {message}");
        }
        ensure!(cluster()?.dump(&prefix).await? == before, "{mode:?}: the refusal wrote to the cluster");
    }
    ensure!(cluster()?.held_locks(&prefix).await?.is_empty(), "a refusal left a lock");

    // Standalone Redis runs the same invocation (one server holds every slot).
    let standalone =
        wasmtx::backend::open_store(&crate::redis_url(), &BackendOptions::with_prefix(unique_prefix("x"))).await?;
    let plain = ModelSchema::from_path(wasmtx_examples::models_dir().join("account.toml"))?;
    let (on_one, rule_one) = bank_engine(standalone, plain)?;
    on_one.set_field("Account", "alice", "balance", FieldValue::Scalar(Scalar::Int(100))).await?;
    on_one.invoke(&rule_one, &transfer("alice", "bob", 10)).await.map_err(Error::from)?;

    // Placed in one group, the two accounts share a slot: every mode commits.
    let group = Placement::new("bank", PlacementKey::Group)?;
    let placed =
        ModelSchema::from_path(wasmtx_examples::models_dir().join("account.toml"))?.with_placement(Some(group));
    let (engine, rule) = bank_engine(store, placed)?;
    engine.set_field("Account", "alice", "balance", FieldValue::Scalar(Scalar::Int(100))).await?;
    for mode in Mode::ALL {
        engine
            .invoke(&rule, &transfer("alice", "bob", 10).mode(mode))
            .await
            .map_err(Error::from)
            .with_context(|| format!("{mode:?}"))?;
    }
    let bob = engine.read_model("Account", "bob").await?;
    let expected = u64::try_from(Mode::ALL.len())?;
    ensure!(bob.version == expected, "bob's version after {expected} transfers (one per mode): {}", bob.version);
    Ok(())
}

/// Over HTTP: `wasmtx serve` on the cluster answers a cross-slot invocation with 422 and kind
/// `cross_slot`, and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasmtx_serve_on_the_cluster_answers_a_cross_slot_invocation_with_422() -> Result<()> {
    use reqwest::StatusCode;
    use serde_json::json;

    use crate::process::{Server, TempDir};

    let prefix = unique_prefix("cross-slot-http");
    let (dir, http) = (TempDir::new("cross-slot-http")?, reqwest::Client::new());
    let url = cluster()?.seeds_url();
    let server = Server::start(dir.path(), &["--store", &url, "--prefix", &prefix], &[])?;
    let send = |request: reqwest::RequestBuilder| async move {
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        let body: serde_json::Value = serde_json::from_str(&text).with_context(|| text.clone())?;
        anyhow::Ok((status, body))
    };
    let schema = std::fs::read_to_string(wasmtx_examples::models_dir().join("account.toml"))?;
    let define = http.put(server.at("/v1/models/Account")).header("content-type", "application/toml").body(schema);
    ensure!(send(define).await?.0 == StatusCode::OK);
    let rule = std::fs::read(&crate::rules()?.bank_transfer)?;
    let (status, body) = send(http.post(server.at("/v1/rules/bank-transfer?activate=true")).body(rule)).await?;
    ensure!(status == StatusCode::CREATED, "{status} {body}");
    let (status, body) = send(http.put(server.at("/v1/models/Account/alice/fields/balance")).json(&json!(100))).await?;
    ensure!(status == StatusCode::OK, "{status} {body}");
    let before = cluster()?.dump(&prefix).await?;
    let body = json!({"models": ["Account:alice", "Account:bob"], "action": "transfer", "input": {"amount": 10}});
    let (status, refused) = send(http.post(server.at("/v1/rules/bank-transfer/invoke")).json(&body)).await?;
    ensure!(status == StatusCode::UNPROCESSABLE_ENTITY, "{status} {refused}");
    ensure!(refused["error"]["kind"] == "cross_slot" && refused["error"]["retryable"] == false, "{refused}");
    ensure!(cluster()?.dump(&prefix).await? == before, "the refusal wrote to the cluster");
    Ok(())
}
