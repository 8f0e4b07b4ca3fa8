//! `wasmtx serve` end to end: real server processes on loopback ports, a real Redis, requests
//! over HTTP as any client would send them.

use std::time::Duration;

use crate::process::{Server, TempDir, poll};
use crate::{RedisFixture, redis_url, rules};
use anyhow::{Context as _, Result, ensure};
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};

const TOKEN: &str = "test-token-0123";

/// A Redis prefix of its own and the directory servers run in.
struct Env {
    redis: RedisFixture,
    dir: TempDir,
    http: Client,
}

impl Env {
    async fn new(name: &str) -> Result<Self> {
        Ok(Self { redis: RedisFixture::new(name).await?, dir: TempDir::new(name)?, http: Client::new() })
    }

    /// A server on this Redis prefix, with the token and any extra `serve` arguments.
    fn server(&self, extra: &[&str]) -> Result<Server> {
        let url = redis_url();
        let global = ["--redis", url.as_str(), "--prefix", self.redis.prefix.as_str()];
        let mut serve = vec!["--token", TOKEN];
        serve.extend_from_slice(extra);
        Server::start(self.dir.path(), &global, &serve)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<(StatusCode, Value)> {
        let response: Response = request.bearer_auth(TOKEN).send().await?;
        let status = response.status();
        let text = response.text().await?;
        let body = serde_json::from_str(&text).with_context(|| format!("{status}: body is not JSON: {text}"))?;
        Ok((status, body))
    }

    async fn get(&self, server: &Server, path: &str) -> Result<(StatusCode, Value)> {
        self.send(self.http.get(server.at(path))).await
    }

    async fn upload(&self, server: &Server, name: &str, bytes: Vec<u8>, activate: bool) -> Result<(StatusCode, Value)> {
        let path = format!("/v1/rules/{name}{}", if activate { "?activate=true" } else { "" });
        self.send(self.http.post(server.at(&path)).body(bytes)).await
    }

    async fn define_account(&self, server: &Server) -> Result<()> {
        let schema = std::fs::read_to_string(wasmtx_examples::models_dir().join("account.toml"))?;
        let request =
            self.http.put(server.at("/v1/models/Account")).header("content-type", "application/toml").body(schema);
        let (status, body) = self.send(request).await?;
        ensure!(status == StatusCode::OK, "{status} {body}");
        Ok(())
    }

    async fn set_balance(&self, server: &Server, key: &str, balance: i64) -> Result<()> {
        let path = format!("/v1/models/Account/{key}/fields/balance");
        let (status, body) = self.send(self.http.put(server.at(&path)).json(&json!(balance))).await?;
        ensure!(status == StatusCode::OK, "{status} {body}");
        Ok(())
    }

    async fn transfer(&self, server: &Server, amount: i64) -> Result<(StatusCode, Value)> {
        let body = json!({
            "models": ["Account:alice", {"model_type": "Account", "key": "bob"}],
            "action": "transfer",
            "input": {"amount": amount},
        });
        self.send(self.http.post(server.at("/v1/rules/bank-transfer/invoke")).json(&body)).await
    }
}

fn bank_transfer() -> Result<Vec<u8>> {
    Ok(std::fs::read(&rules()?.bank_transfer)?)
}

fn error_kind(body: &Value) -> &str {
    body["error"]["kind"].as_str().unwrap_or("<none>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_invoke_and_read_a_model_over_http() -> Result<()> {
    let env = Env::new("server-basic").await?;
    let server = env.server(&[])?;
    env.define_account(&server).await?;

    let (status, up) = env.upload(&server, "bank-transfer", bank_transfer()?, false).await?;
    ensure!(status == StatusCode::CREATED, "{status} {up}");
    ensure!(
        up["version"]["version"] == 1 && up["active"] == true && up["version"]["exports"] == json!(["run"]),
        "{up}"
    );
    let (status, again) = env.upload(&server, "bank-transfer", bank_transfer()?, false).await?;
    ensure!(status == StatusCode::OK && again["created"] == false, "{status} {again}");

    env.set_balance(&server, "alice", 100).await?;
    let (status, outcome) = env.transfer(&server, 30).await?;
    ensure!(status == StatusCode::OK, "{status} {outcome}");
    ensure!(outcome["output"] == "Transferred 30 successfully" && outcome["version"] == 1, "{outcome}");
    let alice_changes = &outcome["changes"][0];
    ensure!(alice_changes["key"] == "alice", "{outcome}");
    ensure!(
        alice_changes["changes"]
            .as_array()
            .is_some_and(|c| c.contains(&json!({"op": "set", "field": "balance", "value": 70})))
    );

    let (status, alice) = env.get(&server, "/v1/models/Account/alice").await?;
    ensure!(
        status == StatusCode::OK && alice["fields"]["balance"] == 70 && alice["fields"]["transaction_count"] == 1,
        "{alice}"
    );
    let (_, bob) = env.get(&server, "/v1/models/Account/bob").await?;
    ensure!(bob["fields"]["balance"] == 30 && bob["version"] == 1, "{bob}");

    // The model lives in Redis in its documented layout, readable by any client.
    let mut conn = env.redis.client().await?;
    let balance: String = redis::cmd("HGET")
        .arg(format!("{}:{{Account:alice}}", env.redis.prefix))
        .arg("balance")
        .query_async(&mut conn)
        .await?;
    ensure!(balance == "70");

    // Errors and their statuses.
    let (status, body) = env.transfer(&server, 1000).await?;
    ensure!(status == StatusCode::UNPROCESSABLE_ENTITY && error_kind(&body) == "rejected", "{status} {body}");
    ensure!(
        body["error"]["retryable"] == false
            && body["error"]["message"].as_str().is_some_and(|m| m.contains("Insufficient"))
    );
    let (status, body) = env.send(env.http.post(server.at("/v1/rules/nope/invoke")).json(&json!({}))).await?;
    ensure!(status == StatusCode::NOT_FOUND && error_kind(&body) == "unknown_rule", "{status} {body}");
    let (status, body) = env.get(&server, "/v1/models/Nope/x").await?;
    ensure!(status == StatusCode::NOT_FOUND && error_kind(&body) == "unknown_model_type", "{status} {body}");
    let (status, body) = env.send(env.http.post(server.at("/v1/rules/bank-transfer/invoke")).body("{not json")).await?;
    ensure!(status == StatusCode::BAD_REQUEST && error_kind(&body) == "bad_request", "{status} {body}");
    let bad_field = env.http.put(server.at("/v1/models/Account/alice/fields/balance")).json(&json!("seventy"));
    let (status, body) = env.send(bad_field).await?;
    ensure!(status == StatusCode::BAD_REQUEST, "{status} {body}");
    let (status, body) = env.send(env.http.delete(server.at("/v1/rules/bank-transfer/versions/1"))).await?;
    ensure!(status == StatusCode::CONFLICT && error_kind(&body) == "version_active", "{status} {body}");
    let (status, body) = env.send(env.http.patch(server.at("/v1/rules"))).await?;
    ensure!(status == StatusCode::METHOD_NOT_ALLOWED && error_kind(&body) == "method_not_allowed", "{status} {body}");

    // A JSON schema naming a field twice is refused as its TOML form is, and nothing is stored.
    let twice = r#"{"name": "Twice", "fields": {"n": {"type": "int"}, "n": {"type": "str"}}}"#;
    let define = env.http.put(server.at("/v1/models/Twice")).header("content-type", "application/json").body(twice);
    let (status, body) = env.send(define).await?;
    ensure!(
        status == StatusCode::BAD_REQUEST
            && error_kind(&body) == "invalid_schema"
            && body["error"]["message"].as_str().is_some_and(|m| m.contains("duplicate key `n`")),
        "{status} {body}"
    );
    let (status, body) = env.get(&server, "/v1/models/Twice").await?;
    ensure!(status == StatusCode::NOT_FOUND && error_kind(&body) == "unknown_model_type", "{status} {body}");

    let (_, listed) = env.get(&server, "/v1/rules").await?;
    ensure!(listed[0]["name"] == "bank-transfer" && listed[0]["active"] == 1, "{listed}");
    let (_, models) = env.get(&server, "/v1/models").await?;
    ensure!(models[0]["schema"]["name"] == "Account" && models[0]["revision"] == 1, "{models}");

    let metrics = env.http.get(server.at("/metrics")).send().await?.text().await?;
    for line in [
        "wasmtx_invocations_total{rule=\"bank-transfer\",mode=\"lock\",outcome=\"ok\"} 1",
        "wasmtx_invocations_total{rule=\"bank-transfer\",mode=\"lock\",outcome=\"rejected\"} 1",
        "wasmtx_invocation_duration_seconds_count{rule=\"bank-transfer\",mode=\"lock\"} 2",
        "wasmtx_lock_wait_seconds_count{rule=\"bank-transfer\"} 1",
        "# TYPE wasmtx_invocation_duration_seconds histogram",
        "wasmtx_http_requests_total{method=\"POST\",route=\"/v1/rules/{name}/invoke\",status=\"200\"} 1",
    ] {
        ensure!(metrics.contains(line), "metrics lack {line}:\n{metrics}");
    }

    // Deleting the schema: the type is unknown afterwards, the data stays for a redefinition.
    let (status, body) = env.send(env.http.delete(server.at("/v1/models/Account"))).await?;
    ensure!(
        status == StatusCode::OK && body["schema"]["name"] == "Account" && body["revision"] == 1,
        "{status} {body}"
    );
    for path in ["/v1/models/Account", "/v1/models/Account/alice"] {
        let (status, body) = env.get(&server, path).await?;
        ensure!(
            status == StatusCode::NOT_FOUND && error_kind(&body) == "unknown_model_type",
            "{path}: {status} {body}"
        );
    }
    let (status, body) = env.send(env.http.delete(server.at("/v1/models/Account"))).await?;
    ensure!(status == StatusCode::NOT_FOUND && error_kind(&body) == "unknown_model_type", "{status} {body}");
    env.define_account(&server).await?;
    let (status, alice) = env.get(&server, "/v1/models/Account/alice").await?;
    ensure!(status == StatusCode::OK && alice["fields"]["balance"] == 70, "{status} {alice}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_sharing_redis_both_run_a_newly_activated_version() -> Result<()> {
    let env = Env::new("server-swap").await?;
    let (a, b) = (env.server(&[])?, env.server(&[])?);
    env.define_account(&a).await?;
    env.upload(&a, "bank-transfer", bank_transfer()?, false).await?;
    env.set_balance(&b, "alice", 100).await?;
    let (status, first) = env.transfer(&b, 1).await?;
    ensure!(status == StatusCode::OK && first["version"] == 1, "{status} {first}");

    // Version 2: the same rule made a component ahead of time (other bytes, same behaviour).
    let v2 = wit_component::ComponentEncoder::default().module(&bank_transfer()?)?.validate(true).encode()?;
    let (status, up) = env.upload(&a, "bank-transfer", v2, true).await?;
    ensure!(status == StatusCode::CREATED && up["version"]["version"] == 2 && up["active"] == true, "{up}");
    for server in [&a, &b] {
        poll(Duration::from_secs(5), "the server runs v2", || async {
            let (status, outcome) = env.transfer(server, 1).await?;
            ensure!(status == StatusCode::OK, "{status} {outcome}");
            Ok((outcome["version"] == 2).then_some(()))
        })
        .await?;
        let (_, health) = env.get(server, "/healthz").await?;
        ensure!(health["status"] == "ok", "{health}");
    }

    // Rolling back through B reaches A too.
    let (status, body) =
        env.send(env.http.put(b.at("/v1/rules/bank-transfer/active")).json(&json!({"version": 1}))).await?;
    ensure!(status == StatusCode::OK && body["version"] == 1, "{status} {body}");
    poll(Duration::from_secs(5), "A runs v1 again", || async {
        let (_, outcome) = env.transfer(&a, 1).await?;
        Ok((outcome["version"] == 1).then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_are_refused_with_their_specific_errors() -> Result<()> {
    let env = Env::new("server-bad").await?;
    let wasi = wat::parse_str(
        r#"(component (import "wasi:cli/environment@0.2.0" (instance (export "get-arguments" (func (result (list string)))))))"#,
    )?;
    let mut huge_rule = b"\0asm\x01\0\0\0".to_vec();
    huge_rule.resize(250_000, 0);
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        ("text", b"this is not wasm".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "not_wasm"),
        ("empty", wat::parse_str("(component)")?, StatusCode::UNPROCESSABLE_ENTITY, "wrong_world"),
        ("module", wat::parse_str("(module (func (export \"run\")))")?, StatusCode::UNPROCESSABLE_ENTITY, "not_a_rule"),
        ("wasi", wasi, StatusCode::UNPROCESSABLE_ENTITY, "forbidden_import"),
        ("big", huge_rule, StatusCode::PAYLOAD_TOO_LARGE, "rule_too_large"),
        ("huge", vec![0; 400_000], StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
        ("bad name!", bank_transfer()?, StatusCode::BAD_REQUEST, "invalid_rule_name"),
    ];
    // The rule limit is below the body limit: a rule between the two gets the rule's own
    // size error, a body over both the server's.
    let small = {
        let url = redis_url();
        let global = ["--redis", url.as_str(), "--prefix", env.redis.prefix.as_str(), "--max-rule-bytes", "200000"];
        Server::start(env.dir.path(), &global, &["--token", TOKEN, "--body-limit", "300000"])?
    };
    for (name, bytes, status, kind) in cases {
        let (got, body) = env.upload(&small, &name.replace(' ', "%20"), bytes, false).await?;
        ensure!(got == status && error_kind(&body) == kind, "{name}: expected {status} {kind}, got {got} {body}");
        ensure!(
            body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()) && body["error"]["retryable"] == false
        );
    }
    let (_, listed) = env.get(&small, "/v1/rules").await?;
    ensure!(listed == json!([]), "nothing was stored: {listed}");
    ensure!(env.redis.dump().await?.is_empty(), "no Redis key was written");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_need_the_token_and_public_addresses_need_one() -> Result<()> {
    let env = Env::new("server-auth").await?;
    let server = env.server(&[])?;
    let upload = |token: Option<&str>| {
        let request = env.http.post(server.at("/v1/rules/bank-transfer")).body(bank_transfer().unwrap_or_default());
        match token {
            Some(t) => request.bearer_auth(t),
            None => request,
        }
    };
    for (token, kind) in [(None, "missing_token"), (Some("wrong"), "invalid_token"), (Some(""), "invalid_token")] {
        let response = upload(token).send().await?;
        ensure!(response.status() == StatusCode::UNAUTHORIZED, "{token:?}: {}", response.status());
        ensure!(response.headers().get("www-authenticate").is_some_and(|v| v == "Bearer"));
        let body: Value = response.json().await?;
        ensure!(error_kind(&body) == kind, "{token:?}: {body}");
    }
    let response = env.http.put(server.at("/v1/models/Account/a/fields/balance")).json(&json!(1)).send().await?;
    ensure!(response.status() == StatusCode::UNAUTHORIZED);
    // Reads need the token too (secure by default: `--public-reads` opens them); `/metrics` is
    // open on loopback; nothing was written.
    for path in ["/v1/rules", "/v1/models", "/v1/models/Account/a"] {
        let response = env.http.get(server.at(path)).send().await?;
        ensure!(response.status() == StatusCode::UNAUTHORIZED, "{path}: {}", response.status());
    }
    let (status, listed) = env.get(&server, "/v1/rules").await?;
    ensure!(status == StatusCode::OK && listed == json!([]), "{status} {listed}");
    ensure!(env.http.get(server.at("/metrics")).send().await?.status() == StatusCode::OK);
    let (status, _) = env.upload(&server, "bank-transfer", bank_transfer()?, false).await?;
    ensure!(status == StatusCode::CREATED, "the right token works");

    // No token on a non-loopback address: refused before anything starts.
    let refused =
        crate::process::wasmtx()?.current_dir(env.dir.path()).args(["serve", "--addr", "0.0.0.0:0"]).output()?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    ensure!(refused.status.code() == Some(3) && stderr.contains("without a token"), "{refused:?}");
    ensure!(stderr.trim().lines().count() == 1, "one line: {stderr}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_invocations_finish() -> Result<()> {
    let env = Env::new("server-drain").await?;
    let mut server = env.server(&[])?;
    env.define_account(&server).await?;
    env.upload(&server, "bank-transfer", bank_transfer()?, false).await?;
    env.set_balance(&server, "alice", 100).await?;

    // Another holder has alice's `transfer` lock for 800 ms: the invocation waits for it.
    // (The lock is the `~l:transfer` field of alice's data hash, with a deadline by the
    // server's clock: see the README's storage layout.)
    let mut conn = env.redis.client().await?;
    let data = format!("{}:{{Account:alice}}", env.redis.prefix);
    let held = format!("999:{}:someone-else", crate::redis_now_ms(&mut conn).await? + 800);
    let _: () = redis::cmd("HSET").arg(&data).arg("~l:transfer").arg(held).query_async(&mut conn).await?;
    let in_flight = tokio::spawn({
        let (http, url) = (env.http.clone(), server.at("/v1/rules/bank-transfer/invoke"));
        async move {
            let body =
                json!({"models": ["Account:alice", "Account:bob"], "action": "transfer", "input": {"amount": 5}});
            let response = http.post(url).bearer_auth(TOKEN).json(&body).send().await?;
            Ok::<_, anyhow::Error>((response.status(), response.json::<Value>().await?))
        }
    });
    // The waiter flags itself on the lock (a `:w` suffix to its value) once it found it busy.
    poll(Duration::from_secs(5), "the invocation waits for the lock", || {
        let (mut conn, data) = (conn.clone(), data.clone());
        async move {
            let value: Option<String> = redis::cmd("HGET").arg(&data).arg("~l:transfer").query_async(&mut conn).await?;
            Ok(value.filter(|v| v.ends_with(":w")).map(drop))
        }
    })
    .await?;

    server.terminate()?;
    let (status, outcome) = in_flight.await??;
    ensure!(status == StatusCode::OK && outcome["output"] == "Transferred 5 successfully", "{status} {outcome}");
    let code = server.wait_exit(Duration::from_secs(10))?;
    ensure!(code == Some(0), "exit code {code:?}");
    let balance: String = redis::cmd("HGET").arg(&data).arg("balance").query_async(&mut conn).await?;
    ensure!(balance == "95");
    Ok(())
}

/// The action a caller who names none gets is `run` (`wasmtx::DEFAULT_ACTION`), over HTTP and
/// from `wasmtx invoke`, whatever the rule is called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_action_is_run_over_http_and_on_the_command_line() -> Result<()> {
    let env = Env::new("default-action").await?;
    let server = env.server(&[])?;
    let (status, body) = env.upload(&server, "probe", std::fs::read(&rules()?.probe)?, false).await?;
    ensure!(status == StatusCode::CREATED, "{status} {body}");
    let schema = "name = \"Counter\"\n[fields]\ncount = { type = \"int\" }\n";
    let request = env.http.put(server.at("/v1/models/Counter")).header("content-type", "application/toml");
    let (status, body) = env.send(request.body(schema)).await?;
    ensure!(status == StatusCode::OK, "{status} {body}");

    let script = json!({"ops": [{"op": "context"}]});
    let invoke = json!({"models": ["Counter:c"], "input": script});
    let (status, body) = env.send(env.http.post(server.at("/v1/rules/probe/invoke")).json(&invoke)).await?;
    ensure!(status == StatusCode::OK, "{status} {body}");
    ensure!(body["output"][0]["action"] == wasmtx::DEFAULT_ACTION, "{body}");

    let url = redis_url();
    let args = ["--json", "--redis", &url, "--prefix", &env.redis.prefix, "invoke", "probe", "-m", "Counter:c"];
    let mut args = args.to_vec();
    let input = script.to_string();
    args.extend(["--input", &input]);
    let run = crate::process::run_in(env.dir.path(), &args)?.expect(0)?.json()?;
    ensure!(run["output"][0]["action"] == "run", "{run}");
    Ok(())
}

/// Adaptive mode over HTTP on two servers (two engines, each with its own snapshot cache) on the
/// same six accounts: 16 seeded callers send 10 transfers each, every one first to one server
/// and then again, with the same `Idempotency-Key`, to the other. Every first answer commits;
/// every repeat is a replay of it (the same invocation id and output) and writes nothing; each
/// account's balance and transaction count are exactly what the acknowledged transfers say
/// (none lost to a stale cache or a switch to lock mode, none applied twice), and no lock is
/// left. Both servers' `/metrics` show the snapshot cache's and adaptive mode's counters; the
/// first runs with `--client-tracking` and counts the entries Redis said the other changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn adaptive_transfers_over_http_on_two_servers_apply_each_key_once() -> Result<()> {
    use rand::rngs::StdRng;
    use rand::{Rng as _, SeedableRng as _};

    const ACCOUNTS: usize = 6;
    const CALLERS: u64 = 16;
    const PER_CALLER: usize = 10;
    const START: i64 = 1_000;
    let env = Env::new("http-adaptive").await?;
    // The first with client tracking (a global option, before `serve`).
    let tracked = {
        let url = redis_url();
        let global = ["--redis", url.as_str(), "--prefix", env.redis.prefix.as_str(), "--client-tracking"];
        Server::start(env.dir.path(), &global, &["--token", TOKEN])?
    };
    let servers = [tracked, env.server(&[])?];
    env.define_account(&servers[0]).await?;
    let (status, body) = env.upload(&servers[0], "bank-transfer", bank_transfer()?, true).await?;
    ensure!(status == StatusCode::CREATED, "{status} {body}");
    for i in 0..ACCOUNTS {
        env.set_balance(&servers[0], &format!("a{i}"), START).await?;
    }
    poll(Duration::from_secs(10), "the second server knows the rule", || async {
        Ok((env.get(&servers[1], "/v1/rules/bank-transfer").await?.0 == StatusCode::OK).then_some(()))
    })
    .await?;

    let seed = crate::bank_run::seed();
    let invoke_urls: Vec<String> = servers.iter().map(|s| s.at("/v1/rules/bank-transfer/invoke")).collect();
    let mut callers = Vec::new();
    for caller in 0..CALLERS {
        let (http, urls) = (env.http.clone(), invoke_urls.clone());
        callers.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed ^ caller);
            let mut acked = Vec::new();
            for n in 0..PER_CALLER {
                let from = rng.random_range(0..ACCOUNTS);
                let to = (from + rng.random_range(1..ACCOUNTS)) % ACCOUNTS;
                // At most 160 × 5 leaves any account: never refused for funds.
                let amount: i64 = rng.random_range(1..=5);
                let key = format!("t{caller}-{n}");
                let first = rng.random_range(0..2usize);
                let body = json!({
                    "models": [format!("Account:a{from}"), format!("Account:a{to}")],
                    "action": "transfer",
                    "mode": "adaptive",
                    "input": {"amount": amount},
                });
                let mut answers = Vec::new();
                for server in [first, 1 - first] {
                    let request =
                        http.post(&urls[server]).bearer_auth(TOKEN).header("Idempotency-Key", &key).json(&body);
                    let response = request.send().await?;
                    let status = response.status();
                    let answer: Value = serde_json::from_str(&response.text().await?)?;
                    ensure!(status == StatusCode::OK, "{key} on server {server}: {status} {answer}");
                    answers.push(answer);
                }
                let (applied, repeat) = (&answers[0], &answers[1]);
                ensure!(applied["replayed"] == false && repeat["replayed"] == true, "{key}: {applied} / {repeat}");
                ensure!(
                    repeat["invocation_id"] == applied["invocation_id"] && repeat["output"] == applied["output"],
                    "{key}: the repeat is not the first answer: {applied} / {repeat}"
                );
                acked.push((from, to, amount));
            }
            anyhow::Ok(acked)
        }));
    }
    let (mut balance, mut count) = ([START; ACCOUNTS], [0i64; ACCOUNTS]);
    for caller in callers {
        for (from, to, amount) in caller.await?? {
            balance[from] -= amount;
            balance[to] += amount;
            count[from] += 1;
            count[to] += 1;
        }
    }
    for i in 0..ACCOUNTS {
        let (status, model) = env.get(&servers[1], &format!("/v1/models/Account/a{i}")).await?;
        ensure!(status == StatusCode::OK, "{status} {model}");
        ensure!(
            model["fields"]["balance"] == balance[i] && model["fields"]["transaction_count"] == count[i],
            "a{i}: {model}, the acknowledged transfers say balance {} and {} transfers",
            balance[i],
            count[i]
        );
    }
    ensure!(env.redis.held_locks().await?.is_empty(), "locks left: {:?}", env.redis.held_locks().await?);

    let mut totals = [0u64; 2];
    for (i, server) in servers.iter().enumerate() {
        let text = env.http.get(server.at("/metrics")).bearer_auth(TOKEN).send().await?.text().await?;
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<u64>().ok())
                .with_context(|| format!("{name} missing:\n{text}"))
        };
        totals[0] += value("wasmtx_adaptive_optimistic_attempts_total")?;
        totals[1] += value("wasmtx_snapshot_cache_hits_total")?;
        value("wasmtx_adaptive_lock_attempts_total")?;
        value("wasmtx_snapshot_cache_stale_hits_total")?;
        let invalidations = value("wasmtx_snapshot_cache_invalidations_total")?;
        // The tracked server heard of the other's commits on the accounts it had cached.
        ensure!((i == 0) == (invalidations > 0), "server {i}: {invalidations} invalidations");
    }
    ensure!(totals[0] > 0 && totals[1] > 0, "no optimistic attempt or cache hit over {totals:?}");
    Ok(())
}
