//! Least privilege over HTTP: every route × every kind of caller (no token, an unknown one,
//! each scope) gets in or gets its 401/403, and a refused request writes nothing; tokens are
//! reloaded on SIGHUP and when their file changes, without a restart.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use crate::process::{Server, TempDir, poll};
use crate::{RedisFixture, redis_url, rules};

const READER: &str = "reader-secret-1";
const INVOKER: &str = "invoker-secret-1";
const ADMIN: &str = "admin-secret-1";

/// Who sends a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Nobody,
    Stranger,
    Reader,
    Invoker,
    Admin,
}

impl Who {
    const ALL: [Who; 5] = [Who::Nobody, Who::Stranger, Who::Reader, Who::Invoker, Who::Admin];

    fn secret(self) -> Option<&'static str> {
        match self {
            Who::Nobody => None,
            Who::Stranger => Some("not-a-token-of-this-server"),
            Who::Reader => Some(READER),
            Who::Invoker => Some(INVOKER),
            Who::Admin => Some(ADMIN),
        }
    }

    /// The rank of its scope (`None` for no valid token).
    fn rank(self) -> Option<u8> {
        match self {
            Who::Nobody | Who::Stranger => None,
            Who::Reader => Some(0),
            Who::Invoker => Some(1),
            Who::Admin => Some(2),
        }
    }
}

/// What a route needs: nothing, or a scope's rank (read 0, invoke 1, admin 2).
const OPEN: Option<u8> = None;
const READ: Option<u8> = Some(0);
const INVOKE: Option<u8> = Some(1);
const ADMIN_SCOPE: Option<u8> = Some(2);

async fn send(
    http: &Client,
    server: &Server,
    who: Who,
    method: &Method,
    path: &str,
    body: &[u8],
) -> Result<(StatusCode, String)> {
    let mut request = http.request(method.clone(), server.at(path)).body(body.to_vec());
    if path.starts_with("/v1/models/Account") && *method == Method::PUT && !path.contains("/fields/") {
        request = request.header("content-type", "application/toml");
    }
    if let Some(secret) = who.secret() {
        request = request.bearer_auth(secret);
    }
    let response = request.send().await?;
    Ok((response.status(), response.text().await?))
}

fn kind(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v["error"]["kind"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_needs_its_scope_and_refusals_write_nothing() -> Result<()> {
    let redis = RedisFixture::new("api-scopes").await?;
    let dir = TempDir::new("api-scopes")?;
    let url = redis_url();
    let tokens = format!("reader:read:{READER},invoker:invoke:{INVOKER},deployer:admin:{ADMIN}");
    let global = ["--store", url.as_str(), "--prefix", redis.prefix.as_str()];
    let server = Server::start(dir.path(), &global, &["--tokens", &tokens])?;
    let http = Client::new();
    let bank_transfer = std::fs::read(&rules()?.bank_transfer)?;
    let account = std::fs::read(wasmtx_examples::models_dir().join("account.toml"))?;
    // Seed, as the admin.
    for (method, path, body) in [
        (Method::PUT, "/v1/models/Account", account.clone()),
        (Method::POST, "/v1/rules/bank-transfer", bank_transfer.clone()),
        (Method::PUT, "/v1/models/Account/alice/fields/balance", b"1000".to_vec()),
    ] {
        let (status, text) = send(&http, &server, Who::Admin, &method, path, &body).await?;
        ensure!(status.is_success(), "seeding {path}: {status} {text}");
    }
    let transfer = json!({"models": ["Account:alice", "Account:bob"], "action": "transfer", "input": {"amount": 1}});
    let transfer = transfer.to_string().into_bytes();
    let none = Vec::new();
    // (method, path, body, what it needs); the server's whole route table, and two misses.
    let routes: Vec<(Method, &str, Vec<u8>, Option<u8>)> = vec![
        (Method::GET, "/healthz", none.clone(), OPEN),
        (Method::GET, "/metrics", none.clone(), OPEN),
        (Method::GET, "/openapi.json", none.clone(), OPEN),
        (Method::GET, "/v1/rules", none.clone(), READ),
        (Method::GET, "/v1/rules/bank-transfer", none.clone(), READ),
        (Method::POST, "/v1/rules/scratch", bank_transfer.clone(), ADMIN_SCOPE),
        (Method::PUT, "/v1/rules/bank-transfer/active", br#"{"version": 1}"#.to_vec(), ADMIN_SCOPE),
        (Method::DELETE, "/v1/rules/bank-transfer/versions/9", none.clone(), ADMIN_SCOPE),
        (Method::POST, "/v1/rules/bank-transfer/invoke", transfer.clone(), INVOKE),
        (Method::GET, "/v1/models", none.clone(), READ),
        (Method::PUT, "/v1/models/Account", account.clone(), ADMIN_SCOPE),
        (Method::GET, "/v1/models/Account", none.clone(), READ),
        (Method::GET, "/v1/models/Account/alice", none.clone(), READ),
        (Method::PUT, "/v1/models/Account/alice/fields/balance", b"999".to_vec(), ADMIN_SCOPE),
        (Method::DELETE, "/v1/models/Account/zed", none.clone(), ADMIN_SCOPE),
        (Method::DELETE, "/v1/models/Nope", none.clone(), ADMIN_SCOPE),
        (Method::GET, "/v1/audit", none.clone(), ADMIN_SCOPE),
        (Method::DELETE, "/v1/rules/scratch", none.clone(), ADMIN_SCOPE),
        (Method::GET, "/v1/nowhere", none.clone(), READ),
        (Method::PATCH, "/v1/rules", none.clone(), ADMIN_SCOPE),
    ];
    let mut checked = 0;
    for (method, path, body, needs) in &routes {
        // The refused first, each compared with the store as it was; then the allowed.
        let mut callers = Who::ALL.to_vec();
        callers.sort_by_key(|who| needs.is_some_and(|n| who.rank().is_some_and(|r| r >= n)));
        for who in callers {
            let label = format!("{who:?} {method} {path}");
            let before = redis.dump().await?;
            let (status, text) = send(&http, &server, who, method, path, body).await.context(label.clone())?;
            let expected = match (needs, who.rank()) {
                (None, _) => None,
                (Some(_), None) if who == Who::Nobody => Some((StatusCode::UNAUTHORIZED, "missing_token")),
                (Some(_), None) => Some((StatusCode::UNAUTHORIZED, "invalid_token")),
                (Some(n), Some(r)) if r < *n => Some((StatusCode::FORBIDDEN, "insufficient_scope")),
                (Some(_), Some(_)) => None,
            };
            match expected {
                Some((code, expected_kind)) => {
                    ensure!(
                        status == code && kind(&text) == expected_kind,
                        "{label}: expected {code} {expected_kind}, got {status} {text}"
                    );
                    ensure!(redis.dump().await? == before, "{label}: refused, yet the store changed");
                }
                None => ensure!(
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN && !status.is_server_error(),
                    "{label}: expected to get in, got {status} {text}"
                ),
            }
            checked += 1;
        }
    }
    ensure!(checked == routes.len() * Who::ALL.len());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_public_only_by_opt_in_and_metrics_can_need_a_token() -> Result<()> {
    let dir = TempDir::new("api-public")?;
    let tokens = format!("reader:read:{READER},deployer:admin:{ADMIN}");
    let http = Client::new();
    let open = Server::start(
        dir.path(),
        &["--data-dir", "a"],
        &["--tokens", &tokens, "--public-reads", "--metrics", "token"],
    )?;
    for (path, status) in [
        ("/v1/rules", StatusCode::OK),
        ("/v1/models", StatusCode::OK),
        ("/v1/audit", StatusCode::UNAUTHORIZED),
        ("/metrics", StatusCode::UNAUTHORIZED),
    ] {
        let (got, text) = send(&http, &open, Who::Nobody, &Method::GET, path, &[]).await?;
        ensure!(got == status, "{path}: {got} {text}");
    }
    let (got, _) = send(&http, &open, Who::Reader, &Method::GET, "/metrics", &[]).await?;
    ensure!(got == StatusCode::OK, "a token of any scope reads /metrics: {got}");
    let (got, text) = send(&http, &open, Who::Nobody, &Method::DELETE, "/v1/models/Account/a", &[]).await?;
    ensure!(got == StatusCode::UNAUTHORIZED, "public reads are only reads: {got} {text}");
    Ok(())
}

/// Whether `secret` gets into `GET /v1/rules` (200) or is refused (401).
async fn status_of(http: &Client, server: &Server, secret: &str) -> Result<StatusCode> {
    Ok(http.get(server.at("/v1/rules")).bearer_auth(secret).send().await?.status())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_rotate_on_sighup_and_on_a_file_change_without_a_restart() -> Result<()> {
    let dir = TempDir::new("api-rotate")?;
    let file = dir.path().join("tokens");
    std::fs::write(&file, "# the first set\nold:admin:old-secret-1\n")?;
    let file_arg = file.display().to_string();
    let server = Server::start(dir.path(), &[], &["--tokens-file", &file_arg])?;
    let http = Client::new();
    ensure!(status_of(&http, &server, "old-secret-1").await? == StatusCode::OK);
    ensure!(status_of(&http, &server, "new-secret-1").await? == StatusCode::UNAUTHORIZED);

    // Rotation: the new token is added, then the old one dropped; SIGHUP reloads.
    std::fs::write(&file, "old:admin:old-secret-1\nnew:read:new-secret-1\n")?;
    let hup = Command::new("kill").args(["-HUP", &server.pid().to_string()]).status()?;
    ensure!(hup.success());
    poll(Duration::from_secs(10), "the new token works", || async {
        Ok((status_of(&http, &server, "new-secret-1").await? == StatusCode::OK).then_some(()))
    })
    .await?;
    ensure!(status_of(&http, &server, "old-secret-1").await? == StatusCode::OK, "both work during the rotation");
    // The new token has scope read: a write is 403 naming it.
    let response = http.delete(server.at("/v1/rules/x")).bearer_auth("new-secret-1").send().await?;
    ensure!(response.status() == StatusCode::FORBIDDEN);
    let body: Value = response.json().await?;
    ensure!(body["error"]["message"].as_str().is_some_and(|m| m.contains("`new`")), "{body}");

    // A file change alone (no signal) is seen too.
    std::fs::write(&file, "new:admin:new-secret-1\n")?;
    poll(Duration::from_secs(10), "the old token stops working", || async {
        Ok((status_of(&http, &server, "old-secret-1").await? == StatusCode::UNAUTHORIZED).then_some(()))
    })
    .await?;
    let response = http.delete(server.at("/v1/rules/x")).bearer_auth("new-secret-1").send().await?;
    ensure!(response.status() == StatusCode::NOT_FOUND, "the new scope applies: {}", response.status());

    // A broken file keeps the current tokens.
    std::fs::write(&file, "this is not a token file\n")?;
    let hup = Command::new("kill").args(["-HUP", &server.pid().to_string()]).status()?;
    ensure!(hup.success());
    // The next request is served after the reload attempt (the signal is handled before the
    // file's check, and both run on the server's runtime): poll a little for it anyway.
    poll(Duration::from_secs(3), "the server still answers", || async {
        Ok((status_of(&http, &server, "new-secret-1").await? == StatusCode::OK).then_some(()))
    })
    .await?;
    ensure!(status_of(&http, &server, "new-secret-1").await? == StatusCode::OK, "a broken file changes nothing");
    Ok(())
}
