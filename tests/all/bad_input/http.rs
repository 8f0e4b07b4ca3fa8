//! Bad HTTP requests to `wasmtx serve`: each gets its status and JSON error, and the server's
//! store holds what it held. The requests themselves are the table in [`cases`].

use std::io::{Read as _, Write as _};
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use reqwest::header::HeaderValue;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{What, redis_text, state_file_text};
use crate::process::{Server, TempDir};
use crate::{Backend, RedisFixture, on_both_stores, redis_url, rules};

mod cases;

on_both_stores!(bad_http_requests_get_their_status_and_kind_and_write_nothing,);

const TOKEN: &str = "bad-input-token";

/// How a request authenticates.
#[derive(Debug, Clone, Copy)]
enum Auth {
    /// `Authorization: Bearer <the server's token>`.
    Token,
    /// No `Authorization` header.
    None,
    /// This `Authorization` header.
    Header(&'static str),
}

/// One bad request and the answer it must get.
struct Request {
    label: String,
    method: Method,
    path: String,
    headers: Vec<(&'static str, HeaderValue)>,
    body: Vec<u8>,
    auth: Auth,
    status: u16,
    kind: &'static str,
}

fn request(
    label: &str,
    method: Method,
    path: &str,
    body: impl Into<Vec<u8>>,
    status: u16,
    kind: &'static str,
) -> Request {
    Request {
        label: label.to_owned(),
        method,
        path: path.to_owned(),
        headers: Vec::new(),
        body: body.into(),
        auth: Auth::Token,
        status,
        kind,
    }
}

impl Request {
    /// Adds a header; its value may be any bytes HTTP allows (not only visible ASCII).
    fn header(mut self, name: &'static str, value: impl AsRef<[u8]>) -> Self {
        let value = HeaderValue::from_bytes(value.as_ref()).expect("bytes HTTP allows in a header value");
        self.headers.push((name, value));
        self
    }

    fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }
}

/// A raw HTTP/1.1 request over a fresh connection (for bodies a client library will not send:
/// cut short, or chunked without a length); returns the status and the JSON body.
fn raw_http(server: &Server, head: &str, body: &[u8], close_write: bool) -> Result<(u16, Value)> {
    let address = server.url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let head = head.replace('\n', "\r\n");
    let host = format!("Host: {address}\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(host.as_bytes())?;
    stream.write_all(body)?;
    if close_write {
        stream.shutdown(std::net::Shutdown::Write)?;
    }
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").with_context(|| format!("no HTTP answer: {answer:?}"))?;
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).with_context(|| head.to_owned())?;
    let json = serde_json::from_str(body.trim()).with_context(|| format!("{head}: body is not JSON: {body}"))?;
    Ok((status, json))
}

/// The bank transfer's invocation route.
const INVOKE: &str = "/v1/rules/bank-transfer/invoke";

/// The body of a transfer of `amount` from `Account:alice` to `Account:bob`.
fn transfer(amount: i64) -> String {
    json!({"models": ["Account:alice", "Account:bob"], "action": "transfer", "input": {"amount": amount}}).to_string()
}

/// Bad requests to `wasmtx serve` (routes, methods, tokens, sizes, bodies, queries, paths,
/// headers, schemas, invocations, model reads and writes) get their status and JSON error; the
/// server's store holds what it held (on Redis compared after every request; on the embedded
/// store through the data directory the server saves when it stops).
async fn bad_http_requests_get_their_status_and_kind_and_write_nothing(backend: Backend) -> Result<()> {
    let redis = match backend {
        Backend::Memory => None,
        Backend::Redis => Some(RedisFixture::new("bad-http").await?),
    };
    let dir = TempDir::new("bad-http")?;
    let bank_transfer = std::fs::read(&rules()?.bank_transfer)?;
    // The rule limit just above the bank transfer, the body limit above that.
    let rule_limit = bank_transfer.len() + 10_000;
    let body_limit = rule_limit + 100_000;
    let (rule_limit_arg, body_limit_arg) = (rule_limit.to_string(), body_limit.to_string());
    let url = redis_url();
    let mut global = vec!["--max-rule-bytes", rule_limit_arg.as_str()];
    if let Some(redis) = &redis {
        global.extend(["--store", url.as_str(), "--prefix", redis.prefix.as_str()]);
    }
    let serve = ["--token", TOKEN, "--tokens", "viewer:read:bad-input-reader", "--body-limit", body_limit_arg.as_str()];
    let http = reqwest::Client::new();
    let send = |server: &Server, request: &Request| {
        let mut builder = http.request(request.method.clone(), server.at(&request.path)).body(request.body.clone());
        for (name, value) in &request.headers {
            builder = builder.header(*name, value.clone());
        }
        builder = match request.auth {
            Auth::Token => builder.bearer_auth(TOKEN),
            Auth::None => builder,
            Auth::Header(value) => builder.header("authorization", value),
        };
        async move {
            let response = builder.send().await?;
            let status = response.status();
            let text = response.text().await?;
            let body: Value =
                serde_json::from_str(&text).with_context(|| format!("{status}: body is not JSON: {text}"))?;
            anyhow::Ok((status, body))
        }
    };
    let data_dir = dir.path().join(".wasmtx");
    let snapshot = async |redis: &Option<RedisFixture>| -> Result<String> {
        match redis {
            Some(redis) => redis_text(redis, What::Data).await,
            None => state_file_text(&data_dir, What::Data),
        }
    };

    // Seed: a schema, a rule, a balance and a committed invocation with an idempotency key; then
    // stop the server, so that the embedded store's state is on disk.
    let mut server = Server::start(dir.path(), &global, &serve)?;
    let account = std::fs::read_to_string(wasmtx_examples::models_dir().join("account.toml"))?;
    for seed in [
        request("define Account", Method::PUT, "/v1/models/Account", account.clone(), 200, "")
            .header("content-type", "application/toml"),
        request("upload bank-transfer", Method::POST, "/v1/rules/bank-transfer", bank_transfer.clone(), 201, ""),
        request("set a balance", Method::PUT, "/v1/models/Account/alice/fields/balance", "100", 200, ""),
        request("transfer", Method::POST, "/v1/rules/bank-transfer/invoke", transfer(10), 200, "")
            .header("idempotency-key", "seed-key"),
    ] {
        let (got, body) = send(&server, &seed).await?;
        ensure!(got.as_u16() == seed.status, "seeding: {}: {got} {body}", seed.label);
    }
    server.terminate()?;
    ensure!(server.wait_exit(Duration::from_secs(20))? == Some(0), "the seeding server stopped cleanly");
    let before = snapshot(&redis).await?;
    let mut server = Server::start(dir.path(), &global, &serve)?;

    let invoke = INVOKE;
    let requests = cases::requests(&bank_transfer, &account, rule_limit, body_limit)?;
    for request in &requests {
        let (status, body) = send(&server, request).await.with_context(|| request.label.clone())?;
        let label = &request.label;
        ensure!(
            status.as_u16() == request.status && body["error"]["kind"] == request.kind,
            "{label}: expected {} {}, got {status} {body}",
            request.status,
            request.kind
        );
        ensure!(
            body["error"]["retryable"] == false && body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{label}: {body}"
        );
        if redis.is_some() {
            ensure!(snapshot(&redis).await? == before, "{label}: the store changed");
        }
    }
    // Bodies a client library will not send: cut short, or chunked past the limit.
    let over_limit = {
        let mut body = Vec::new();
        for _ in 0..body_limit.div_ceil(60_000) + 1 {
            body.extend_from_slice(format!("{:x}\r\n", 60_000).as_bytes());
            body.resize(body.len() + 60_000, 0);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"0\r\n\r\n");
        body
    };
    // (label, request line and headers, body, whether the client stops sending, status, kind)
    let raw_requests = [
        (
            "a chunked body over the limit",
            "POST /v1/rules/chunked HTTP/1.1\nTransfer-Encoding: chunked\n",
            over_limit,
            false,
            (413, "body_too_large"),
        ),
        (
            "a body shorter than its Content-Length",
            "PUT /v1/models/A HTTP/1.1\nContent-Length: 100\n",
            br#"{"name": "A""#.to_vec(),
            true,
            (400, "bad_body"),
        ),
        (
            "a chunked body with a bad chunk size",
            "PUT /v1/models/A HTTP/1.1\nTransfer-Encoding: chunked\n",
            b"zz\r\nabc\r\n0\r\n\r\n".to_vec(),
            false,
            (400, "bad_body"),
        ),
    ];
    for (label, head, body, close_write, (status, kind)) in raw_requests {
        let (got, answer) = raw_http(&server, head, &body, close_write).with_context(|| label.to_owned())?;
        ensure!(
            got == status && answer["error"]["kind"] == kind,
            "{label}: expected {status} {kind}, got {got} {answer}"
        );
        if redis.is_some() {
            ensure!(snapshot(&redis).await? == before, "{label}: the store changed");
        }
    }
    server.terminate()?;
    ensure!(server.wait_exit(Duration::from_secs(20))? == Some(0), "the server stopped cleanly");
    ensure!(snapshot(&redis).await? == before, "the bad requests changed the store");
    // The same server takes a good request, and the comparison sees what it writes.
    let mut server = Server::start(dir.path(), &global, &serve)?;
    let (status, body) = send(&server, &request("", Method::POST, invoke, transfer(1), 200, "")).await?;
    ensure!(status == StatusCode::OK, "{status} {body}");
    server.terminate()?;
    ensure!(server.wait_exit(Duration::from_secs(20))? == Some(0), "the last server stopped cleanly");
    ensure!(snapshot(&redis).await? != before, "a good invocation writes");
    Ok(())
}
