//! The HTTP API under attack and under load: slow clients are cut off within their timeout, an
//! oversized head is refused, and a saturated server sheds load with 503 + `Retry-After` while
//! `/healthz` still answers. Cut-offs are checked against bounds generous enough for a loaded
//! CI machine; nothing waits on a timer to synchronise.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use crate::process::{Server, TempDir, poll};
use crate::{RedisFixture, redis_url, rules};

const TOKEN: &str = "limits-token-1";
/// The longest a cut-off may take past its timeout on a loaded machine.
const SLACK: Duration = Duration::from_secs(8);

/// What became of a connection a client kept feeding.
#[derive(Debug)]
enum Ended {
    /// The server closed it (or reset it) without an answer.
    Closed,
    /// The server answered (the status line) and closed it.
    Answered(String),
}

/// Connects and sends `head`, then one byte of `trickle` (if any) every `every` until the server
/// answers or closes the connection, or `give_up` passes; returns what happened and when.
fn feed_slowly(
    server: &Server,
    head: &[u8],
    trickle: Option<u8>,
    every: Duration,
    give_up: Duration,
) -> Result<(Ended, Duration)> {
    let address = server.url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(every))?;
    let started = Instant::now();
    let mut answer = Vec::new();
    if !head.is_empty() && stream.write_all(head).is_err() {
        return Ok((Ended::Closed, started.elapsed()));
    }
    while started.elapsed() < give_up {
        let mut buf = [0_u8; 4096];
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
        if !answer.is_empty() {
            continue;
        }
        if let Some(byte) = trickle
            && stream.write_all(&[byte]).is_err()
        {
            break;
        }
    }
    let elapsed = started.elapsed();
    if elapsed >= give_up {
        bail!("the server kept the connection for {elapsed:?}");
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    Ok(if text.is_empty() { (Ended::Closed, elapsed) } else { (Ended::Answered(text), elapsed) })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_oversized_clients_are_cut_off_within_the_timeout() -> Result<()> {
    let dir = TempDir::new("api-slow")?;
    let timeout = Duration::from_millis(1500);
    let ms = timeout.as_millis().to_string();
    let server = Server::start(
        dir.path(),
        &[],
        &["--token", TOKEN, "--header-timeout-ms", &ms, "--body-timeout-ms", &ms, "--header-bytes", "16384"],
    )?;
    let give_up = timeout + SLACK;
    let every = Duration::from_millis(100);
    let slow = |head: Vec<u8>, trickle: u8| feed_slowly(&server, &head, Some(trickle), every, give_up);
    let http = Client::new();
    let healthz = async || -> Result<()> {
        let status = http.get(server.at("/healthz")).send().await?.status();
        ensure!(status == StatusCode::OK, "/healthz: {status}");
        Ok(())
    };

    // Headers that never end, one byte at a time: the connection is closed.
    let (head_slow, body_slow, idle, oversized) = std::thread::scope(|s| {
        let a = s.spawn(|| slow(b"GET /v1/rules HTTP/1.1\r\nHost: x\r\nX-Slow: ".to_vec(), b'a'));
        // A body that trickles in: 408 once the body timeout runs out.
        let b = s.spawn(|| {
            let head = format!(
                "PUT /v1/models/Slow HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 100000\r\n\r\n"
            );
            slow(head.into_bytes(), b' ')
        });
        // A connection that says nothing.
        let c = s.spawn(|| feed_slowly(&server, b"", None, every, give_up));
        // A head over the limit, sent at once.
        let d = s.spawn(|| {
            let mut head = b"GET /v1/rules HTTP/1.1\r\nHost: x\r\n".to_vec();
            for i in 0..400 {
                head.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "f".repeat(60)).as_bytes());
            }
            head.extend_from_slice(b"\r\n");
            feed_slowly(&server, &head, None, every, give_up)
        });
        (a.join(), b.join(), c.join(), d.join())
    });
    let head_slow = head_slow.map_err(|_| anyhow::anyhow!("panicked"))?.context("slow headers")?;
    ensure!(
        matches!(&head_slow.0, Ended::Closed)
            || matches!(&head_slow.0, Ended::Answered(t) if t.starts_with("HTTP/1.1 408")),
        "slow headers: {head_slow:?}"
    );
    let body_slow = body_slow.map_err(|_| anyhow::anyhow!("panicked"))?.context("slow body")?;
    match &body_slow.0 {
        Ended::Answered(text) => {
            ensure!(text.starts_with("HTTP/1.1 408") && text.contains("request_timeout"), "slow body: {text}")
        }
        Ended::Closed => bail!("the slow body got no answer"),
    }
    ensure!(body_slow.1 >= timeout, "the body timeout is {timeout:?}, cut at {:?}", body_slow.1);
    let idle = idle.map_err(|_| anyhow::anyhow!("panicked"))?.context("idle")?.1;
    let oversized = oversized.map_err(|_| anyhow::anyhow!("panicked"))?.context("oversized head")?;
    match &oversized.0 {
        Ended::Answered(text) => ensure!(text.starts_with("HTTP/1.1 431"), "oversized head: {text}"),
        Ended::Closed => {}
    }
    eprintln!(
        "cut off after: slow head {:?}, slow body {:?}, idle {idle:?}, oversized head {:?}",
        head_slow.1, body_slow.1, oversized.1
    );
    // The server is fine, and nothing of the slow body was stored.
    healthz().await?;
    let response = http.get(server.at("/v1/models")).bearer_auth(TOKEN).send().await?;
    ensure!(response.status() == StatusCode::OK && response.json::<Value>().await? == json!([]));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_server_sheds_load_with_503_and_still_answers_healthz() -> Result<()> {
    let redis = RedisFixture::new("api-saturated").await?;
    let dir = TempDir::new("api-saturated")?;
    let url = redis_url();
    let global = ["--store", url.as_str(), "--prefix", redis.prefix.as_str()];
    // A: one request at a time; B: one invocation per rule at a time.
    let a = Server::start(dir.path(), &global, &["--token", TOKEN, "--max-in-flight", "1"])?;
    let b = Server::start(dir.path(), &global, &["--token", TOKEN, "--max-invocations-per-rule", "1"])?;
    let http = Client::new();
    let account = std::fs::read_to_string(wasmtx_examples::models_dir().join("account.toml"))?;
    let put = http.put(a.at("/v1/models/Account")).bearer_auth(TOKEN).header("content-type", "application/toml");
    ensure!(put.body(account).send().await?.status() == StatusCode::OK);
    let upload = http.post(a.at("/v1/rules/bank-transfer")).bearer_auth(TOKEN);
    ensure!(upload.body(std::fs::read(&rules()?.bank_transfer)?).send().await?.status() == StatusCode::CREATED);
    for key in ["alice", "carol"] {
        let set = http.put(b.at(&format!("/v1/models/Account/{key}/fields/balance"))).bearer_auth(TOKEN);
        ensure!(set.json(&json!(100)).send().await?.status() == StatusCode::OK);
    }
    let transfer = |from: &str, to: &str| json!({"models": [format!("Account:{from}"), format!("Account:{to}")], "action": "transfer", "input": {"amount": 1}});
    // Both servers see the rule before their invocations are held.
    for server in [&a, &b] {
        poll(Duration::from_secs(10), "the server knows the rule", || async {
            let response = http.get(server.at("/v1/rules/bank-transfer")).bearer_auth(TOKEN).send().await?;
            Ok(response.status().is_success().then_some(()))
        })
        .await?;
    }

    // Someone else holds alice's and carol's `transfer` locks (for a minute, unless released
    // below): one invocation on each server waits for them.
    let mut conn = redis.client().await?;
    let now = crate::redis_now_ms(&mut conn).await?;
    for key in ["alice", "carol"] {
        let data = format!("{}:{{Account:{key}}}", redis.prefix);
        let held = format!("999:{}:someone-else", now + 60_000);
        let _: () = redis::cmd("HSET").arg(&data).arg("~l:transfer").arg(held).query_async(&mut conn).await?;
    }
    let transfer_on = |server: &Server, from: &str, to: &str| {
        http.post(server.at("/v1/rules/bank-transfer/invoke")).bearer_auth(TOKEN).json(&transfer(from, to))
    };
    let held = |server: &Server, from: &str, to: &str| {
        let request = transfer_on(server, from, to);
        tokio::spawn(async move {
            let response = request.send().await?;
            let status = response.status();
            let body: Value = response.json().await?;
            anyhow::Ok((status, body["error"]["kind"].as_str().map(str::to_owned)))
        })
    };
    let on_a = held(&a, "alice", "bob");
    let on_b = held(&b, "carol", "dave");
    for key in ["alice", "carol"] {
        let data = format!("{}:{{Account:{key}}}", redis.prefix);
        poll(Duration::from_secs(5), "the invocation waits for the lock", || {
            let (mut conn, data) = (conn.clone(), data.clone());
            async move {
                let value: Option<String> =
                    redis::cmd("HGET").arg(&data).arg("~l:transfer").query_async(&mut conn).await?;
                Ok(value.filter(|v| v.ends_with(":w")).map(drop))
            }
        })
        .await?;
    }
    // Without the lock and line fields: a waiter that ran out of its acquire timeout on a slow
    // machine withdraws its place there, which is not a write of a refused invocation.
    let before = redis.dump_without_locks().await?;
    let expect_busy = async |request: reqwest::RequestBuilder, what: &str| -> Result<()> {
        let response = request.bearer_auth(TOKEN).send().await?;
        let status = response.status();
        let retry_after = response.headers().get("retry-after").cloned();
        let body: Value = response.json().await?;
        ensure!(
            status == StatusCode::SERVICE_UNAVAILABLE
                && body["error"]["kind"] == "server_busy"
                && body["error"]["retryable"] == true
                && retry_after.is_some_and(|v| v == "1"),
            "{what}: {status} {body}"
        );
        Ok(())
    };
    // A is full: every other request is refused at once, whatever it is; /healthz answers.
    expect_busy(http.get(a.at("/v1/rules")), "a read on A").await?;
    expect_busy(
        http.post(a.at("/v1/rules/bank-transfer/invoke")).json(&transfer("erin", "frank")),
        "an invocation on A",
    )
    .await?;
    // B takes other requests, but no second invocation of the rule.
    expect_busy(
        http.post(b.at("/v1/rules/bank-transfer/invoke")).json(&transfer("erin", "frank")),
        "a second invocation on B",
    )
    .await?;
    let status = http.get(b.at("/v1/rules")).bearer_auth(TOKEN).send().await?.status();
    ensure!(status == StatusCode::OK, "B reads: {status}");
    for server in [&a, &b] {
        let health: Value = http.get(server.at("/healthz")).send().await?.json().await?;
        ensure!(health["status"] == "ok", "{health}");
    }
    ensure!(redis.dump_without_locks().await? == before, "the refused invocations wrote nothing");
    // The holder lets go (waiters try again at least every 250 ms). The held invocations then
    // commit, or, where they ran out of their 5 s acquire timeout first (a slow machine: the
    // steps above have no deadline), were refused with a typed retryable lock timeout and are
    // sent again. Either way each transfer commits once, and the servers take requests again.
    for key in ["alice", "carol"] {
        let data = format!("{}:{{Account:{key}}}", redis.prefix);
        let _: () = redis::cmd("HDEL").arg(&data).arg("~l:transfer").query_async(&mut conn).await?;
    }
    for (held, server, from, to) in [(on_a, &a, "alice", "bob"), (on_b, &b, "carol", "dave")] {
        let (mut status, kind) = held.await??;
        if status == StatusCode::CONFLICT && kind.as_deref() == Some("lock_timeout") {
            status = transfer_on(server, from, to).send().await?.status();
        }
        ensure!(status == StatusCode::OK, "the transfer from {from} after the release: {status}");
    }
    for (key, balance) in [("alice", 99), ("bob", 1), ("carol", 99), ("dave", 1)] {
        let read: Value =
            http.get(a.at(&format!("/v1/models/Account/{key}"))).bearer_auth(TOKEN).send().await?.json().await?;
        ensure!(read["fields"]["balance"] == balance, "each transfer applied once: {key} {read}");
    }
    let status = http.get(a.at("/v1/rules")).bearer_auth(TOKEN).send().await?.status();
    ensure!(status == StatusCode::OK, "A reads again: {status}");
    let response =
        http.post(b.at("/v1/rules/bank-transfer/invoke")).bearer_auth(TOKEN).json(&transfer("erin", "frank"));
    let status = response.send().await?.status();
    ensure!(status == StatusCode::UNPROCESSABLE_ENTITY, "B invokes again (erin has no money): {status}");
    Ok(())
}
