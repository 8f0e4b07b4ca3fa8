//! Exactly once: a commit whose reply was lost (it applied, or it never arrived), a reply
//! delayed past the Redis response timeout by another client's script, a repeat of a key from a
//! second engine, concurrent repeats in one engine and inside one lock-mode group. Every test
//! counts each effect (one increment per invocation), in every mode.

use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::json;
use wasmtx::backend::BackendOptions;
use wasmtx::{Engine, Error, FieldValue, Invocation, Mode, RetryPolicy, Rule, Scalar};

use crate::gated::LostReply;
use crate::{Backend, TestEnv, compile_rules, engine_on, on_both_stores, probe_ops, redis_url, unique_prefix};

on_both_stores!(
    a_lost_commit_reply_is_resolved_and_applies_once_in_every_mode,
    a_lost_reply_of_a_commit_on_cached_state_applies_once,
    a_lost_lock_and_load_reply_does_not_lock_the_model_for_the_lease,
    the_locks_of_a_lost_lock_and_load_reply_are_released_when_the_invocation_gives_up,
    a_commit_nobody_can_resolve_is_an_unknown_outcome_and_its_key_tells_it_later,
    a_repeated_key_replays_from_a_second_engine_and_a_changed_invocation_is_refused,
    concurrent_repeats_of_one_key_apply_once,
    repeats_inside_a_lock_mode_group_are_replayed_and_the_others_commit,
    bad_idempotency_keys_are_refused_before_anything_runs,
);

fn bump(key: &str, mode: Mode) -> Invocation {
    Invocation::new("bump")
        .model("Counter", key)
        .mode(mode)
        .input(probe_ops(&[json!({"op": "increment", "field": "count", "delta": 1})]))
}

async fn count(engine: &Engine, key: &str) -> Result<i64> {
    let schema = engine.model_type("Counter")?;
    let index = schema.field_index("count").context("no count field")?;
    match &engine.read_model("Counter", key).await?.values[index] {
        FieldValue::Scalar(Scalar::Int(n)) => Ok(*n),
        other => bail!("count is {other:?}"),
    }
}

/// The commit applied and its reply was lost, or the request never arrived: either way the
/// engine asks the store before anything else, and the invocation applies exactly once, with
/// an `Ok` (the second case after a retry under the same key).
async fn a_lost_commit_reply_is_resolved_and_applies_once_in_every_mode(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend, "lost-reply").await?;
    let (engine, rules, gated) = env.gated_engine(|b| b)?;
    for mode in Mode::ALL {
        for lost in [LostReply::AfterApplying, LostReply::BeforeArriving] {
            let key = format!("{mode}-{lost:?}");
            gated.lose_reply(lost);
            let resolves = gated.resolves();
            let out = engine.invoke(&rules.probe, &bump(&key, mode)).await.with_context(|| key.clone())?;
            ensure!(gated.resolves() > resolves, "{key}: the engine did not ask whether the commit applied");
            ensure!(!out.replayed, "{key}: the first call is not a replay");
            let expected_attempts = if lost == LostReply::AfterApplying { 1 } else { 2 };
            ensure!(out.attempts == expected_attempts, "{key}: {} attempts", out.attempts);
            ensure!(count(&engine, &key).await? == 1, "{key}: applied {} times", count(&engine, &key).await?);
            ensure!(out.versions == vec![1], "{key}: versions {:?}", out.versions);
        }
    }
    ensure!(env.held_locks().await?.is_empty(), "locks left: {:?}", env.held_locks().await?);
    Ok(())
}

/// On a warm snapshot cache an optimistic or adaptive invocation sends its commit without
/// loading first (one round trip): that commit's reply is lost, after applying or before
/// arriving. The engine still asks the store before anything else, applies the increment once,
/// and what it keeps in the cache afterwards is right: the next invocation commits on the
/// cache at the first attempt and sees every increment.
async fn a_lost_reply_of_a_commit_on_cached_state_applies_once(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend, "lost-warm-reply").await?;
    let (engine, rules, gated) = env.gated_engine(|b| b)?;
    for mode in [Mode::Optimistic, Mode::Adaptive] {
        for lost in [LostReply::AfterApplying, LostReply::BeforeArriving] {
            let key = format!("warm-{mode}-{lost:?}");
            engine.invoke(&rules.probe, &bump(&key, mode)).await.with_context(|| format!("{key}: warming"))?;
            let before = engine.cache_stats();
            gated.lose_reply(lost);
            let resolves = gated.resolves();
            let out = engine.invoke(&rules.probe, &bump(&key, mode)).await.with_context(|| key.clone())?;
            let after = engine.cache_stats();
            ensure!(
                after.hits > before.hits && after.misses == before.misses,
                "{key}: not run on the cache: {after:?}"
            );
            ensure!(gated.resolves() > resolves, "{key}: the engine did not ask whether the commit applied");
            let expected_attempts = if lost == LostReply::AfterApplying { 1 } else { 2 };
            ensure!(!out.replayed && out.attempts == expected_attempts, "{key}: {out:?}");
            ensure!(
                count(&engine, &key).await? == 2,
                "{key}: count {} after 2 increments",
                count(&engine, &key).await?
            );
            ensure!(out.versions == vec![2], "{key}: versions {:?}", out.versions);
            let next = engine.invoke(&rules.probe, &bump(&key, mode)).await.with_context(|| format!("{key}: next"))?;
            let seen: Vec<serde_json::Value> = next.output_as()?;
            ensure!(next.attempts == 1 && next.versions == vec![3], "{key}: the next one: {next:?}");
            ensure!(seen.first() == Some(&json!(3)), "{key}: the next increment saw {seen:?}");
            ensure!(engine.cache_stats().stale_hits == after.stale_hits, "{key}: the cache was left stale");
        }
    }
    ensure!(env.held_locks().await?.is_empty(), "locks left: {:?}", env.held_locks().await?);
    Ok(())
}

/// The lock-and-load took the locks but its reply was lost: the engine's retry (the same
/// invocation, the same lock owner) takes them again at once and applies once, instead of
/// waiting behind its own locks for the whole lease (here 60 s, beside a 2 s acquire timeout),
/// in lock mode alone and in a group.
async fn a_lost_lock_and_load_reply_does_not_lock_the_model_for_the_lease(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend, "lost-lock-reply").await?;
    for group in [1, 8] {
        let (engine, rules, gated) = env.gated_engine(|b| {
            b.lease(Duration::from_secs(60)).acquire_timeout(Duration::from_secs(2)).max_group(group)
        })?;
        let key = format!("lost-lock-{group}");
        gated.lose_lock_replies(1);
        let out = engine.invoke(&rules.probe, &bump(&key, Mode::Lock)).await.with_context(|| key.clone())?;
        ensure!(out.attempts == 2, "{key}: {} attempts (the first lost its reply)", out.attempts);
        ensure!(count(&engine, &key).await? == 1, "{key}: applied {} times", count(&engine, &key).await?);
        let next =
            engine.invoke(&rules.probe, &bump(&key, Mode::Lock)).await.with_context(|| format!("{key}: next"))?;
        ensure!(next.attempts == 1 && count(&engine, &key).await? == 2, "{key}: the next invocation: {next:?}");
    }
    ensure!(env.held_locks().await?.is_empty(), "locks left: {:?}", env.held_locks().await?);
    Ok(())
}

/// The lock-and-load took the locks but its reply was lost, and the invocation is not retried
/// (retries off): it fails as the store's outage, and the locks it never heard of are released
/// once it ends, so the next invocation (another owner) takes them at once instead of waiting
/// out the 60 s lease (beyond its 2 s acquire timeout), in lock mode alone and in a group.
async fn the_locks_of_a_lost_lock_and_load_reply_are_released_when_the_invocation_gives_up(
    backend: Backend,
) -> Result<()> {
    let env = TestEnv::new(backend, "lost-lock-no-retry").await?;
    for group in [1, 8] {
        let (engine, rules, gated) = env.gated_engine(|b| {
            b.lease(Duration::from_secs(60))
                .acquire_timeout(Duration::from_secs(2))
                .max_group(group)
                .retry(RetryPolicy::never())
        })?;
        let key = format!("lost-lock-once-{group}");
        gated.lose_lock_replies(1);
        match engine.invoke(&rules.probe, &bump(&key, Mode::Lock)).await {
            Ok(out) => bail!("{key}: a lost lock-and-load reply came back Ok without a retry: {out:?}"),
            Err(err) => ensure!(matches!(*err, Error::Store(_)), "{key}: {err}"),
        }
        ensure!(count(&engine, &key).await? == 0, "{key}: nothing was committed");
        let next =
            engine.invoke(&rules.probe, &bump(&key, Mode::Lock)).await.with_context(|| format!("{key}: next"))?;
        ensure!(next.attempts == 1 && count(&engine, &key).await? == 1, "{key}: the next invocation: {next:?}");
    }
    ensure!(env.held_locks().await?.is_empty(), "locks left: {:?}", env.held_locks().await?);
    Ok(())
}

/// The reply was lost and the store cannot be asked either: the error says the outcome is
/// unknown, carries the key, and is not retried; invoking again with that key is safe and tells
/// the outcome (here: it had applied, so the repeat is a replay and the count stays 1).
async fn a_commit_nobody_can_resolve_is_an_unknown_outcome_and_its_key_tells_it_later(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend, "unknown-outcome").await?;
    let (engine, rules, gated) = env.gated_engine(|b| b.lease(Duration::from_millis(1500)))?;
    gated.lose_reply(LostReply::AfterApplying);
    gated.fail_resolves(u32::MAX);
    let err = match engine.invoke(&rules.probe, &bump("m", Mode::Lock)).await {
        Ok(out) => bail!("an unresolvable commit came back Ok: {out:?}"),
        Err(err) => err,
    };
    ensure!(matches!(*err, Error::OutcomeUnknown { .. }), "{err}");
    ensure!(!err.is_retryable(), "an unknown outcome is not retried blindly");
    let key = err.idempotency_key.clone().context("the error carries the key")?;
    ensure!(err.invocation_id.as_deref() == Some(key.as_str()), "without a caller key, the key is the invocation id");
    ensure!(err.body().idempotency_key.as_deref() == Some(key.as_str()), "the JSON body names the key");
    ensure!(count(&engine, "m").await? == 1, "the commit had applied once");

    gated.fail_resolves(0);
    let again = engine.invoke(&rules.probe, &bump("m", Mode::Lock).idempotency_key(key.clone())).await?;
    ensure!(again.replayed, "the repeat with the key is a replay");
    ensure!(again.invocation_id == key, "the replay names the first invocation");
    ensure!(!again.wrote_anything(), "a replay writes nothing");
    ensure!(count(&engine, "m").await? == 1, "still applied once");
    Ok(())
}

/// A caller's key used again from another engine returns the first outcome (same invocation
/// id, output and versions) and writes nothing, in every mode; the same key for a different
/// input is refused and writes nothing.
async fn a_repeated_key_replays_from_a_second_engine_and_a_changed_invocation_is_refused(
    backend: Backend,
) -> Result<()> {
    let env = TestEnv::new(backend, "repeat-key").await?;
    let (engine2, rules2) = env.second_engine()?;
    for mode in Mode::ALL {
        let model = format!("m-{mode}");
        let invocation = bump(&model, mode).idempotency_key(format!("order-{mode}"));
        let first = env.engine.invoke(&env.rules.probe, &invocation).await?;
        let again = engine2.invoke(&rules2.probe, &invocation).await?;
        ensure!(!first.replayed && again.replayed, "{mode}: replayed {} then {}", first.replayed, again.replayed);
        ensure!(again.invocation_id == first.invocation_id, "{mode}: the replay names the first invocation");
        ensure!(again.output == first.output && again.versions == first.versions, "{mode}: {again:?} vs {first:?}");
        ensure!(again.fencing_tokens == first.fencing_tokens, "{mode}: tokens");
        ensure!(!again.wrote_anything(), "{mode}: the replay lists no change");
        ensure!(count(&env.engine, &model).await? == 1, "{mode}: applied once");

        let changed = Invocation::new("bump")
            .model("Counter", &model)
            .mode(mode)
            .input(probe_ops(&[json!({"op": "increment", "field": "count", "delta": 5})]))
            .idempotency_key(format!("order-{mode}"));
        let before = env.fingerprint(&[("Counter", &model)]).await?;
        match engine2.invoke(&rules2.probe, &changed).await {
            Err(e) if matches!(*e, Error::IdempotencyKeyReused { .. }) => {}
            other => bail!("{mode}: the same key for another input gave {other:?}"),
        }
        ensure!(env.fingerprint(&[("Counter", &model)]).await? == before, "{mode}: the refusal wrote something");
    }
    Ok(())
}

/// 24 concurrent calls share 3 keys on one model (lock mode: the calls also share a group
/// line), over two engines: each key applies once, its other calls are replays of it.
async fn concurrent_repeats_of_one_key_apply_once(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend, "concurrent-repeats").await?;
    let (engine2, rules2) = env.second_engine()?;
    for mode in Mode::ALL {
        let model = format!("hot-{mode}");
        let calls = (0..24).map(|i| {
            let (engine, probe) = if i % 2 == 0 {
                (env.engine.clone(), env.rules.probe.clone())
            } else {
                (engine2.clone(), rules2.probe.clone())
            };
            let invocation = bump(&model, mode).idempotency_key(format!("k{}", i % 3));
            tokio::spawn(async move { engine.invoke(&probe, &invocation).await })
        });
        let mut applied = std::collections::HashMap::new();
        for call in futures_util::future::join_all(calls).await {
            let out = call??;
            if !out.replayed {
                *applied.entry(out.idempotency_key.clone()).or_insert(0) += 1;
            }
        }
        ensure!(applied.len() == 3 && applied.values().all(|&n| n == 1), "{mode}: applied {applied:?}");
        ensure!(count(&env.engine, &model).await? == 3, "{mode}: count {}", count(&env.engine, &model).await?);
    }
    Ok(())
}

/// A hot model, 32 committed keys; then 32 concurrent calls in one engine (so lock mode
/// groups them), every other one a repeat of a committed key: the repeats are replays (found
/// by the group's commit, or by its lock-and-load), the new ones commit, each exactly once.
async fn repeats_inside_a_lock_mode_group_are_replayed_and_the_others_commit(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend, "group-repeats").await?;
    let call = |key: String| {
        let (engine, probe): (Engine, Rule) = (env.engine.clone(), env.rules.probe.clone());
        tokio::spawn(async move { engine.invoke(&probe, &bump("hot", Mode::Lock).idempotency_key(key)).await })
    };
    for result in futures_util::future::join_all((0..32).map(|i| call(format!("old{i}")))).await {
        ensure!(!result??.replayed, "a first call is not a replay");
    }
    let mixed = (0..32).map(|i| call(if i % 2 == 0 { format!("old{i}") } else { format!("new{i}") }));
    for result in futures_util::future::join_all(mixed).await {
        let out = result??;
        ensure!(
            out.replayed == out.idempotency_key.starts_with("old"),
            "{}: replayed {}",
            out.idempotency_key,
            out.replayed
        );
    }
    ensure!(count(&env.engine, "hot").await? == 48, "count {}", count(&env.engine, "hot").await?);
    Ok(())
}

/// Keys that are empty, too long or hold whitespace are refused with a typed error, before
/// anything is loaded or written.
async fn bad_idempotency_keys_are_refused_before_anything_runs(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend, "bad-keys").await?;
    let before = env.fingerprint(&[("Counter", "m")]).await?;
    for bad in [String::new(), "a b".into(), "tab\there".into(), "x".repeat(300)] {
        match env.engine.invoke(&env.rules.probe, &bump("m", Mode::Lock).idempotency_key(bad.clone())).await {
            Err(e) if matches!(*e, Error::InvalidIdempotencyKey { .. }) => {
                ensure!(e.invocation_id.is_none(), "a refused invocation never started");
                ensure!(e.class(wasmtx::Origin::Invocation).http_status() == 400, "bad input");
            }
            other => bail!("key {bad:?} gave {other:?}"),
        }
    }
    ensure!(env.fingerprint(&[("Counter", "m")]).await? == before, "a refused key wrote something");
    Ok(())
}

/// Waits until Redis is busy running another client's script: a `PING` no longer answers
/// within 50 ms.
async fn wait_until_redis_is_busy(conn: &mut redis::aio::MultiplexedConnection) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let ping = redis::cmd("PING");
        if tokio::time::timeout(Duration::from_millis(50), ping.query_async::<String>(conn)).await.is_err() {
            return Ok(());
        }
        ensure!(tokio::time::Instant::now() < deadline, "Redis never became busy");
    }
}

/// Another client runs a script for 1.2 s while the engine's commit waits behind it, far past
/// the store's 200 ms response timeout (before protocol v2 a retry then applied the transfer a
/// second time): the engine asks the store until it can answer, finds the commit's record,
/// and reports one applied invocation, in every mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reply_delayed_past_the_response_timeout_applies_once() -> Result<()> {
    // A server of its own: the blocking script stalls every client of the server it runs on,
    // and the other tests share theirs.
    let server = crate::private_redis::PrivateRedis::start().await?;
    let options =
        BackendOptions::with_prefix(unique_prefix("delayed-reply")).response_timeout(Duration::from_millis(200));
    let store = wasmtx::backend::open_store(&server.url(), &options).await?;
    let engine = engine_on(store)?;
    let env = TestEnv { rules: compile_rules(&engine)?, engine, redis: None };
    let (engine, rules, gated) = env.gated_engine(|b| b)?;
    let client = redis::Client::open(server.url())?;
    // Opened before Redis is busy: a new connection's handshake would wait for the script.
    let mut probe_conn = client.get_multiplexed_async_connection().await?;
    for mode in Mode::ALL {
        let model = format!("m-{mode}");
        let mut gate = gated.arm();
        let call = {
            let (engine, probe, invocation) = (engine.clone(), rules.probe.clone(), bump(&model, mode));
            tokio::spawn(async move { engine.invoke(&probe, &invocation).await })
        };
        gate.wait_reached().await?;
        let blocker = {
            // This client waits as long as its own script runs.
            let patient = redis::AsyncConnectionConfig::new().set_response_timeout(None);
            let mut conn = client.get_multiplexed_async_connection_with_config(&patient).await?;
            tokio::spawn(async move {
                let script = "local t = redis.call('TIME') local start = t[1] * 1000000 + t[2] \
                              repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - start > 1200000 return 1";
                let _: i64 = redis::cmd("EVAL")
                    .arg(script)
                    .arg(0)
                    .query_async(&mut conn)
                    .await
                    .context("the blocking script")?;
                anyhow::Ok(())
            })
        };
        wait_until_redis_is_busy(&mut probe_conn).await?;
        gate.open();
        let out = call.await?.with_context(|| format!("{mode}: the delayed commit"))?;
        blocker.await??;
        ensure!(!out.replayed && out.attempts == 1, "{mode}: {out:?}");
        ensure!(count(&engine, &model).await? == 1, "{mode}: applied {} times", count(&engine, &model).await?);
    }
    Ok(())
}

/// Over HTTP: the `Idempotency-Key` header makes a repeated transfer a replay (200,
/// `"replayed": true`, the balance moved once); the same key for another amount is a 422
/// `idempotency_key_reused`; a key with a space is a 400; nothing is written by either refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idempotency_key_header_makes_a_repeated_http_invocation_a_replay() -> Result<()> {
    use reqwest::StatusCode;

    use crate::process::{Server, TempDir};

    const TOKEN: &str = "exactly-once-token";
    let (redis, dir, http) =
        (crate::RedisFixture::new("http-replay").await?, TempDir::new("http-replay")?, reqwest::Client::new());
    let url = redis_url();
    let server = Server::start(dir.path(), &["--store", &url, "--prefix", &redis.prefix], &["--token", TOKEN])?;
    let send = |request: reqwest::RequestBuilder| async move {
        let response = request.bearer_auth(TOKEN).send().await?;
        let status = response.status();
        let body: serde_json::Value = serde_json::from_str(&response.text().await?)?;
        anyhow::Ok((status, body))
    };
    let schema = std::fs::read_to_string(wasmtx_examples::models_dir().join("account.toml"))?;
    let define = http.put(server.at("/v1/models/Account")).header("content-type", "application/toml").body(schema);
    ensure!(send(define).await?.0 == StatusCode::OK);
    let rule = std::fs::read(&crate::rules()?.bank_transfer)?;
    ensure!(
        send(http.post(server.at("/v1/rules/bank-transfer?activate=true")).body(rule)).await?.0 == StatusCode::CREATED
    );
    ensure!(
        send(http.put(server.at("/v1/models/Account/alice/fields/balance")).json(&json!(100))).await?.0
            == StatusCode::OK
    );

    let transfer = |amount: i64, key: &str| {
        let body =
            json!({"models": ["Account:alice", "Account:bob"], "action": "transfer", "input": {"amount": amount}});
        http.post(server.at("/v1/rules/bank-transfer/invoke")).header("Idempotency-Key", key).json(&body)
    };
    let (status, first) = send(transfer(30, "payment-17")).await?;
    ensure!(
        status == StatusCode::OK && first["replayed"] == false && first["idempotency_key"] == "payment-17",
        "{first}"
    );
    let (status, again) = send(transfer(30, "payment-17")).await?;
    ensure!(status == StatusCode::OK && again["replayed"] == true, "{status} {again}");
    ensure!(again["invocation_id"] == first["invocation_id"] && again["output"] == first["output"], "{again}");
    let (status, reused) = send(transfer(20, "payment-17")).await?;
    ensure!(status == StatusCode::UNPROCESSABLE_ENTITY, "{status} {reused}");
    ensure!(reused["error"]["kind"] == "idempotency_key_reused", "{reused}");
    let (status, bad) = send(transfer(30, "has space")).await?;
    ensure!(status == StatusCode::BAD_REQUEST && bad["error"]["kind"] == "invalid_idempotency_key", "{status} {bad}");
    let (_, alice) = send(http.get(server.at("/v1/models/Account/alice"))).await?;
    ensure!(alice["fields"]["balance"] == 70 && alice["fields"]["transaction_count"] == 1, "{alice}");
    Ok(())
}

/// On the command line with the embedded store: the record is kept in the data directory with
/// the models, so a second `wasmtx invoke --idempotency-key` (another process) is a replay.
#[test]
fn the_cli_idempotency_key_survives_between_commands() -> Result<()> {
    use crate::process::{TempDir, run_in};

    let dir = TempDir::new("cli-replay")?;
    let d = dir.path();
    let schema = wasmtx_examples::models_dir().join("account.toml").display().to_string();
    run_in(d, &["model", "define", &schema])?.expect(0)?;
    run_in(d, &["rule", "upload", "bank-transfer", &crate::rules()?.bank_transfer.display().to_string()])?.expect(0)?;
    run_in(d, &["model", "set", "Account", "alice", "balance", "100"])?.expect(0)?;
    let transfer = [
        "invoke",
        "bank-transfer",
        "-m",
        "Account:alice",
        "-m",
        "Account:bob",
        "--action",
        "transfer",
        "--input",
        r#"{"amount": 30}"#,
        "--idempotency-key",
        "cli-payment-1",
    ];
    let first = run_in(d, &transfer)?.expect(0)?;
    ensure!(!first.stdout.contains("replayed"), "{}", first.stdout);
    let again = run_in(d, &transfer)?.expect(0)?;
    ensure!(again.stdout.contains("replayed: committed before, nothing written now"), "{}", again.stdout);
    let json = run_in(d, &[&["--json"][..], &transfer[..]].concat())?.expect(0)?.json()?;
    ensure!(json["replayed"] == true && json["idempotency_key"] == "cli-payment-1", "{json}");
    let alice = run_in(d, &["--json", "model", "get", "Account", "alice"])?.expect(0)?.json()?;
    ensure!(alice["fields"]["balance"] == 70, "{alice}");
    Ok(())
}
