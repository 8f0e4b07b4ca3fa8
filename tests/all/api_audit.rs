//! The audit trail: every registry change (upload, activation, rollback, deletions, schema
//! changes) is recorded with who made it (the token's name over HTTP, `cli:<user>` from a
//! command), in the store (a stream beside the registry on Redis, `audit.jsonl` in the data
//! directory for the embedded store), and listed by `GET /v1/audit` and `wasmtx audit`; refused
//! requests and commands record nothing.

use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use reqwest::{Client, Method, StatusCode};
use serde_json::Value;

use crate::process::{Server, TEST_USER, TempDir, run_in};
use crate::{Backend, RedisFixture, on_both_stores, redis_url, rules};

on_both_stores!(every_registry_change_is_audited_with_its_token, every_registry_command_is_audited_as_its_user,);

const ADMIN: &str = "audit-admin-secret";
const READER: &str = "audit-reader-secret";

/// The entries both walks leave, newest first: (action, target, version). Over HTTP and from
/// the commands the same changes are made in the same order, so they record the same trail.
const EXPECTED: [(&str, &str, Option<u64>); 9] = [
    ("delete_schema", "Account", None),
    ("delete_rule", "scratch", None),
    ("upload", "scratch", Some(1)),
    ("delete_version", "bank-transfer", Some(2)),
    ("rollback", "bank-transfer", Some(1)),
    ("activate", "bank-transfer", Some(2)),
    ("upload", "bank-transfer", Some(2)),
    ("upload", "bank-transfer", Some(1)),
    ("define_schema", "Account", None),
];

async fn every_registry_change_is_audited_with_its_token(backend: Backend) -> Result<()> {
    let redis = match backend {
        Backend::Memory => None,
        Backend::Redis => Some(RedisFixture::new("api-audit").await?),
    };
    let dir = TempDir::new("api-audit")?;
    let url = redis_url();
    let mut global: Vec<&str> = Vec::new();
    if let Some(redis) = &redis {
        global.extend(["--store", url.as_str(), "--prefix", redis.prefix.as_str()]);
    }
    let tokens = format!("deployer:admin:{ADMIN},viewer:read:{READER}");
    let mut server = Server::start(dir.path(), &global, &["--tokens", &tokens])?;
    let http = Client::new();
    let send = async |secret: &str, method: Method, path: &str, body: Vec<u8>| -> Result<(StatusCode, Value)> {
        let mut request = http.request(method, server.at(path)).bearer_auth(secret).body(body);
        if path == "/v1/models/Account" {
            request = request.header("content-type", "application/toml");
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        Ok((status, serde_json::from_str(&text).with_context(|| format!("{status} {text}"))?))
    };
    let v1 = std::fs::read(&rules()?.bank_transfer)?;
    let v2 = wit_component::ComponentEncoder::default().module(&v1)?.validate(true).encode()?;
    let account = std::fs::read(wasmtx_examples::models_dir().join("account.toml"))?;

    // A refused change records nothing.
    let (status, _) = send(READER, Method::POST, "/v1/rules/bank-transfer", v1.clone()).await?;
    ensure!(status == StatusCode::FORBIDDEN);

    let steps: Vec<(Method, &str, Vec<u8>)> = vec![
        (Method::PUT, "/v1/models/Account", account),
        (Method::POST, "/v1/rules/bank-transfer", v1.clone()),
        (Method::POST, "/v1/rules/bank-transfer?activate=true", v2),
        (Method::PUT, "/v1/rules/bank-transfer/active", br#"{"version": 1}"#.to_vec()),
        (Method::DELETE, "/v1/rules/bank-transfer/versions/2", Vec::new()),
        (Method::POST, "/v1/rules/scratch", v1),
        (Method::DELETE, "/v1/rules/scratch", Vec::new()),
        (Method::DELETE, "/v1/models/Account", Vec::new()),
    ];
    for (method, path, body) in steps {
        let (status, answer) = send(ADMIN, method.clone(), path, body).await?;
        ensure!(status.is_success(), "{method} {path}: {status} {answer}");
    }
    // (action, target, version) newest first: the upload with `?activate=true` is an upload
    // and an activation; the first upload of a rule activates it without an entry of its own.
    let expected = EXPECTED;
    let check = |entries: &Value, whence: &str| -> Result<()> {
        let entries = entries.as_array().with_context(|| format!("{whence}: {entries}"))?;
        ensure!(entries.len() == expected.len(), "{whence}: {} entries: {entries:?}", entries.len());
        for (entry, (action, target, version)) in entries.iter().zip(expected) {
            ensure!(
                entry["action"] == action
                    && entry["target"] == target
                    && entry["actor"] == "deployer"
                    && entry["at_ms"].as_i64().is_some_and(|t| t > 0)
                    && entry["id"].as_str().is_some_and(|id| !id.is_empty()),
                "{whence}: expected {action} {target} by deployer: {entry}"
            );
            if let Some(version) = version {
                ensure!(entry["version"] == version, "{whence}: {entry}");
                ensure!(entry["digest"].as_str().is_some_and(|d| d.len() == 64), "{whence}: {entry}");
            }
        }
        ensure!(entries[0]["revision"] == 1 && entries[4]["detail"] == "was v2", "{whence}: {entries:?}");
        Ok(())
    };
    let (status, listed) = send(ADMIN, Method::GET, "/v1/audit", Vec::new()).await?;
    ensure!(status == StatusCode::OK, "{status} {listed}");
    check(&listed, "GET /v1/audit")?;
    let (_, two) = send(ADMIN, Method::GET, "/v1/audit?limit=2", Vec::new()).await?;
    ensure!(two.as_array().map(Vec::len) == Some(2) && two[0] == listed[0], "{two}");
    let (status, _) = send(READER, Method::GET, "/v1/audit", Vec::new()).await?;
    ensure!(status == StatusCode::FORBIDDEN, "the audit trail is the admin's: {status}");

    // In the store: the stream beside the registry on Redis; the data directory's file, which
    // `wasmtx audit` reads once the server stopped.
    if let Some(redis) = &redis {
        let mut conn = redis.client().await?;
        let key = format!("{}:{{registry}}:audit", redis.prefix);
        let len: usize = redis::cmd("XLEN").arg(&key).query_async(&mut conn).await?;
        ensure!(len == expected.len(), "{key} holds {len} entries");
    }
    server.terminate()?;
    ensure!(server.wait_exit(Duration::from_secs(20))? == Some(0));
    if redis.is_none() {
        let lines = std::fs::read_to_string(dir.path().join(".wasmtx").join("audit.jsonl"))?;
        ensure!(lines.lines().count() == expected.len(), "{lines}");
    }
    let mut args = vec!["--json"];
    args.extend(&global);
    args.push("audit");
    let run = run_in(dir.path(), &args)?.expect(0)?;
    check(&run.json()?, "wasmtx audit")?;
    let mut args = global.clone();
    args.extend(["audit", "--limit", "1"]);
    let text = run_in(dir.path(), &args)?.expect(0)?;
    ensure!(text.stdout.contains("deployer delete_schema Account") && text.stdout.lines().count() == 1, "{text:?}");
    Ok(())
}

/// The same changes made with `wasmtx rule` and `wasmtx model`: each recorded as the user's
/// (`cli:<user>`), in the same trail the server writes; commands that are refused, that change
/// nothing or only read record nothing.
async fn every_registry_command_is_audited_as_its_user(backend: Backend) -> Result<()> {
    let redis = match backend {
        Backend::Memory => None,
        Backend::Redis => Some(RedisFixture::new("cli-audit").await?),
    };
    let dir = TempDir::new("cli-audit")?;
    let url = redis_url();
    let mut global: Vec<&str> = vec!["--json"];
    if let Some(redis) = &redis {
        global.extend(["--store", url.as_str(), "--prefix", redis.prefix.as_str()]);
    }
    let run = |args: &[&str]| run_in(dir.path(), &[&global[..], args].concat());
    let v1 = rules()?.bank_transfer.clone();
    let v2 = dir.path().join("v2.wasm");
    std::fs::write(
        &v2,
        wit_component::ComponentEncoder::default().module(&std::fs::read(&v1)?)?.validate(true).encode()?,
    )?;
    let account = wasmtx_examples::models_dir().join("account.toml");
    let (v1, v2, account) = (v1.display().to_string(), v2.display().to_string(), account.display().to_string());

    let steps: [(&[&str], i32); 13] = [
        (&["model", "define", &account], 0),
        // The same schema again changes nothing.
        (&["model", "define", &account], 0),
        (&["rule", "upload", "bank-transfer", &v1], 0),
        // The same bytes again store nothing.
        (&["rule", "upload", "bank-transfer", &v1], 0),
        (&["rule", "upload", "bank-transfer", &v2, "--activate"], 0),
        // Refused: the active version cannot be deleted; version 9 was never uploaded.
        (&["rule", "delete", "bank-transfer", "2"], 5),
        (&["rule", "activate", "bank-transfer", "9"], 4),
        (&["rule", "activate", "bank-transfer", "1"], 0),
        (&["rule", "delete", "bank-transfer", "2"], 0),
        (&["rule", "upload", "scratch", &v1], 0),
        (&["rule", "list"], 0),
        (&["rule", "delete", "scratch", "--all"], 0),
        (&["model", "undefine", "Account"], 0),
    ];
    for (args, code) in steps {
        run(args)?.expect(code).with_context(|| format!("{args:?}"))?;
    }
    let actor = format!("cli:{TEST_USER}");
    let expected = EXPECTED;
    let listed = run(&["audit"])?.expect(0)?.json()?;
    let entries = listed.as_array().context("a list")?;
    ensure!(entries.len() == expected.len(), "{} entries: {entries:#?}", entries.len());
    for (entry, (action, target, version)) in entries.iter().zip(expected) {
        ensure!(
            entry["action"] == action && entry["target"] == target && entry["actor"] == actor.as_str(),
            "expected {action} {target} by {actor}: {entry}"
        );
        if let Some(version) = version {
            ensure!(entry["version"] == version && entry["digest"].as_str().is_some_and(|d| d.len() == 64), "{entry}");
        }
    }
    ensure!(entries[4]["detail"] == "was v2", "{entries:?}");
    if let Some(redis) = &redis {
        let mut conn = redis.client().await?;
        let key = format!("{}:{{registry}}:audit", redis.prefix);
        let len: usize = redis::cmd("XLEN").arg(&key).query_async(&mut conn).await?;
        ensure!(len == expected.len(), "{key} holds {len} entries");
    } else {
        let lines = std::fs::read_to_string(dir.path().join(".wasmtx").join("audit.jsonl"))?;
        ensure!(lines.lines().count() == expected.len(), "{lines}");
    }
    Ok(())
}
