//! Bad command lines: each gets its exit code and (with `--json`) its kind, and leaves the store
//! as it was.

use std::path::Path;

use anyhow::{Context as _, Result, ensure};
use serde_json::Value;

use super::{What, redis_text, state_file_text};
use crate::process::{Run, TempDir, run_in};
use crate::{Backend, RedisFixture, on_both_stores, redis_url, rules};

on_both_stores!(bad_command_lines_get_their_exit_code_and_kind_and_write_nothing,);

/// Bad command lines get their exit code and (with `--json`) their kind, and leave the store
/// as it was: the embedded store's data directory, or the Redis prefix.
async fn bad_command_lines_get_their_exit_code_and_kind_and_write_nothing(backend: Backend) -> Result<()> {
    let redis = match backend {
        Backend::Memory => None,
        Backend::Redis => Some(RedisFixture::new("bad-cli").await?),
    };
    let dir = TempDir::new("bad-cli")?;
    let d = dir.path();
    let url = redis_url();
    let mut global: Vec<String> = vec!["--json".into()];
    if let Some(redis) = &redis {
        global.extend(["--store".into(), url.clone(), "--prefix".into(), redis.prefix.clone()]);
    }
    let run = |args: &[&str]| -> Result<Run> {
        let mut all: Vec<&str> = global.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        run_in(d, &all)
    };
    let data_dir = d.join(".wasmtx");
    let snapshot = async |redis: &Option<RedisFixture>| -> Result<String> {
        match redis {
            Some(redis) => redis_text(redis, What::Data).await,
            None => state_file_text(&data_dir, What::Data),
        }
    };
    let account = wasmtx_examples::models_dir().join("account.toml").display().to_string();
    let bank_transfer = rules()?.bank_transfer.display().to_string();
    run(&["model", "define", &account])?.expect(0)?;
    run(&["rule", "upload", "bank-transfer", &bank_transfer])?.expect(0)?;
    run(&["model", "set", "Account", "alice", "balance", "100"])?.expect(0)?;
    let transfer = |amount: &str| -> Vec<String> {
        ["invoke", "bank-transfer", "-m", "Account:alice", "-m", "Account:bob", "--action", "transfer", "--input"]
            .iter()
            .map(|s| (*s).to_owned())
            .chain([format!("{{\"amount\": {amount}}}")])
            .collect()
    };
    let seed: Vec<String> = transfer("10").into_iter().chain(["--idempotency-key".into(), "seed-key".into()]).collect();
    run(&seed.iter().map(String::as_str).collect::<Vec<_>>())?.expect(0)?;
    let before = snapshot(&redis).await?;

    let not_wasm = d.join("notes.txt");
    std::fs::write(&not_wasm, "not wasm")?;
    let bad_schema = d.join("bad.toml");
    std::fs::write(&bad_schema, "name = \"A\"\n[fields]\nx = { type = \"integer\" }\n")?;
    let bad_fixture = d.join("fixtures.toml");
    std::fs::write(&bad_fixture, "[[case]]\nname = \"a\"\nwhen = {}\nthen = { error = \"invalid-input\" }\n")?;
    let occupied = d.join("occupied");
    std::fs::create_dir_all(&occupied)?;
    std::fs::write(occupied.join("keep.txt"), "mine")?;
    let not_a_checkout = d.join("elsewhere");
    std::fs::create_dir_all(&not_a_checkout)?;
    let (occupied, not_a_checkout) = (occupied.display().to_string(), not_a_checkout.display().to_string());
    let busy = std::net::TcpListener::bind("127.0.0.1:0")?;
    let busy_addr = busy.local_addr()?.to_string();
    let (not_wasm, bad_schema, bad_fixture) =
        (not_wasm.display().to_string(), bad_schema.display().to_string(), bad_fixture.display().to_string());
    let reused: Vec<String> =
        transfer("20").into_iter().chain(["--idempotency-key".into(), "seed-key".into()]).collect();
    let negative = transfer("-5");
    let with =
        |base: &[&str], extra: &[&str]| -> Vec<String> { base.iter().chain(extra).map(|s| (*s).to_owned()).collect() };
    let alice = ["invoke", "bank-transfer", "-m", "Account:alice"];
    // (label, arguments, exit code, kind; `None` for a usage error, which clap reports itself)
    let cases: Vec<(&str, Vec<String>, i32, Option<&str>)> = vec![
        ("an unknown subcommand", with(&["rule", "frobnicate"], &[]), 2, None),
        ("a missing argument", with(&["invoke"], &[]), 2, None),
        ("an unknown mode", with(&alice, &["--mode", "fast"]), 2, None),
        ("max attempts of 0", with(&alice, &["--max-attempts", "0"]), 2, None),
        ("a version that is not a number", with(&["rule", "activate", "bank-transfer", "one"], &[]), 2, None),
        ("an address that is not one", with(&["serve", "--addr", "nowhere"], &[]), 2, None),
        ("invoke an unknown rule", with(&["invoke", "nope"], &[]), 4, Some("unknown_rule")),
        ("a model without `:`", with(&["invoke", "bank-transfer", "-m", "Account"], &[]), 3, Some("bad_input")),
        (
            "a model of an unknown type",
            with(&["invoke", "bank-transfer", "-m", "Nope:x"], &[]),
            4,
            Some("unknown_model_type"),
        ),
        ("a key with a brace", with(&["invoke", "bank-transfer", "-m", "Account:a{b"], &[]), 3, Some("invalid_key")),
        ("the same model twice", with(&alice, &["-m", "Account:alice"]), 3, Some("duplicate_model")),
        ("an action with a space", with(&alice, &["--action", "a b"]), 3, Some("invalid_action")),
        ("input that is not JSON", with(&alice, &["--input", "{oops"]), 3, Some("invalid_input")),
        (
            "an input file that cannot be read",
            with(&alice, &["--input-file", "/no/such/input.json"]),
            3,
            Some("bad_input"),
        ),
        (
            "an idempotency key with a space",
            with(&alice, &["--idempotency-key", "a b"]),
            3,
            Some("invalid_idempotency_key"),
        ),
        ("an idempotency key used for another input", reused, 6, Some("idempotency_key_reused")),
        ("an input the rule cannot use", negative, 3, Some("invalid_input")),
        (
            "an upload under a bad name",
            with(&["rule", "upload", "bad name!", &bank_transfer], &[]),
            3,
            Some("invalid_rule_name"),
        ),
        ("an upload that is not wasm", with(&["rule", "upload", "notes", &not_wasm], &[]), 6, Some("not_wasm")),
        (
            "an upload file that cannot be read",
            with(&["rule", "upload", "x", "/no/such/file.wasm"], &[]),
            3,
            Some("bad_input"),
        ),
        (
            "an upload over --max-rule-bytes",
            with(&["--max-rule-bytes", "1000", "rule", "upload", "bank-transfer", &bank_transfer], &[]),
            6,
            Some("rule_too_large"),
        ),
        (
            "activate a version never uploaded",
            with(&["rule", "activate", "bank-transfer", "9"], &[]),
            4,
            Some("unknown_version"),
        ),
        ("activate an unknown rule", with(&["rule", "activate", "nope", "1"], &[]), 4, Some("unknown_rule")),
        ("delete the active version", with(&["rule", "delete", "bank-transfer", "1"], &[]), 5, Some("version_active")),
        (
            "a schema file that cannot be read",
            with(&["model", "define", "/no/such/schema.toml"], &[]),
            3,
            Some("bad_input"),
        ),
        ("a schema file that is invalid", with(&["model", "define", &bad_schema], &[]), 3, Some("bad_input")),
        (
            "a field value of another type",
            with(&["model", "set", "Account", "alice", "balance", "lots"], &[]),
            3,
            Some("bad_input"),
        ),
        ("an unknown field", with(&["model", "set", "Account", "alice", "nope", "1"], &[]), 3, Some("bad_input")),
        (
            "set a field under a bad key",
            with(&["model", "set", "Account", "a{b", "balance", "1"], &[]),
            3,
            Some("invalid_key"),
        ),
        (
            "set a field of an unknown type",
            with(&["model", "set", "Nope", "x", "n", "1"], &[]),
            4,
            Some("unknown_model_type"),
        ),
        ("read a model under an empty key", with(&["model", "get", "Account", ""], &[]), 3, Some("invalid_key")),
        ("delete a model under a bad key", with(&["model", "delete", "Account", "a}b"], &[]), 3, Some("invalid_key")),
        ("undefine an unknown type", with(&["model", "undefine", "Nope"], &[]), 4, Some("unknown_model_type")),
        ("a rule size limit of 0", with(&["--max-rule-bytes", "0", "model", "list"], &[]), 3, Some("invalid_input")),
        (
            "serve on a public address without a token",
            with(&["serve", "--addr", "0.0.0.0:0"], &[]),
            3,
            Some("insecure_bind"),
        ),
        (
            "serve with an empty token",
            with(&["serve", "--addr", "127.0.0.1:0", "--token", ""], &[]),
            3,
            Some("insecure_bind"),
        ),
        (
            "serve with a malformed token entry",
            with(&["serve", "--addr", "127.0.0.1:0", "--tokens", "ops:root:a-long-secret"], &[]),
            3,
            Some("bad_input"),
        ),
        (
            "serve with a token file that is missing",
            with(&["serve", "--addr", "127.0.0.1:0", "--tokens-file", "/no/such/tokens"], &[]),
            3,
            Some("bad_input"),
        ),
        ("serve on an address in use", with(&["serve", "--addr", &busy_addr], &[]), 3, Some("cannot_listen")),
        ("a fixture file that cannot be read", with(&["test", "/no/such/fixtures.toml"], &[]), 3, Some("bad_input")),
        ("a project of an unknown language", with(&["new", "cobol", "fresh"], &[]), 2, None),
        (
            "a project name that is not a package name",
            with(&["new", "rust", "Fresh_Rule"], &[]),
            3,
            Some("invalid_rule_name"),
        ),
        (
            "a project in a directory that is not empty",
            with(&["new", "rust", "fresh", "--dir", &occupied], &[]),
            3,
            Some("bad_input"),
        ),
        (
            "a project on a folder that is not a wasmtx checkout",
            with(&["new", "assemblyscript", "fresh", "--wasmtx-dir", &not_a_checkout], &[]),
            3,
            Some("bad_input"),
        ),
        (
            "a fixture file that expects an unknown kind",
            with(&["test", &bad_fixture, "--rule", &bank_transfer], &[]),
            3,
            Some("bad_input"),
        ),
    ];
    for (label, args, code, kind) in &cases {
        let result = run(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
        ensure!(
            result.code == Some(*code),
            "{label}: expected exit code {code}, got {:?}: {}",
            result.code,
            result.stderr
        );
        if let Some(kind) = kind {
            let body: Value = serde_json::from_str(result.stderr.trim())
                .with_context(|| format!("{label}: stderr is not one JSON error: {}", result.stderr))?;
            ensure!(body["error"]["kind"] == *kind, "{label}: expected {kind}, got {body}");
            ensure!(result.stdout.is_empty(), "{label}: printed {}", result.stdout);
        }
        ensure!(snapshot(&redis).await? == before, "{label}: the store changed");
    }
    drop(busy);
    // `wasmtx new` refused: no project was started, the occupied directory is as it was.
    ensure!(!d.join("fresh").exists() && !d.join("Fresh_Rule").exists(), "a refused `wasmtx new` wrote a project");
    ensure!(std::fs::read_dir(&occupied)?.count() == 1, "a refused `wasmtx new` wrote into {occupied}");
    ensure!(std::fs::read_dir(&not_a_checkout)?.count() == 0, "a refused `wasmtx new` wrote into {not_a_checkout}");

    // Store URLs and prefixes that cannot be used (their own `--store`/`--prefix`).
    let store_cases: [(&str, [&str; 4]); 3] = [
        ("a store URL of no known scheme", ["--store", "postgres://h/db", "--prefix", "p"]),
        ("a prefix with a brace", ["--store", url.as_str(), "--prefix", "a{b"]),
        ("an empty prefix", ["--store", url.as_str(), "--prefix", ""]),
    ];
    for (label, store) in store_cases {
        let result = run_in(d, &[&["--json"][..], &store[..], &["model", "list"][..]].concat())?;
        ensure!(result.code == Some(3), "{label}: expected exit code 3, got {:?}: {}", result.code, result.stderr);
        let body: Value =
            serde_json::from_str(result.stderr.trim()).with_context(|| format!("{label}: {}", result.stderr))?;
        ensure!(body["error"]["kind"] == "store", "{label}: {body}");
        ensure!(snapshot(&redis).await? == before, "{label}: the store changed");
    }

    if redis.is_none() {
        // Data directories the command cannot use: refused before anything is loaded or saved.
        let not_a_dir = d.join("file");
        std::fs::write(&not_a_dir, "a file")?;
        let corrupt = d.join("corrupt");
        std::fs::create_dir_all(&corrupt)?;
        std::fs::write(corrupt.join("state.json"), "{ not json")?;
        let newer = d.join("newer");
        std::fs::create_dir_all(&newer)?;
        std::fs::write(newer.join("state.json"), r#"{"format": 99, "registry": {}, "models": {}}"#)?;
        for (label, path) in [
            ("a data directory that is a file", &not_a_dir),
            ("a corrupt state file", &corrupt),
            ("a state file of a newer format", &newer),
        ] {
            let path = path.display().to_string();
            let contents = |p: &str| std::fs::read(Path::new(p).join("state.json")).ok();
            let had = contents(&path);
            let result = run_in(d, &["--json", "--data-dir", &path, "model", "list"])?;
            ensure!(result.code == Some(1), "{label}: expected exit code 1, got {:?}: {}", result.code, result.stderr);
            let body: Value =
                serde_json::from_str(result.stderr.trim()).with_context(|| format!("{label}: {}", result.stderr))?;
            ensure!(body["error"]["kind"] == "data_dir", "{label}: {body}");
            ensure!(contents(&path) == had, "{label}: the state file was rewritten");
        }
        ensure!(std::fs::read_to_string(&not_a_dir)? == "a file", "the file is untouched");
    }
    // A good command writes, and the comparison sees it.
    run(&["model", "set", "Account", "alice", "balance", "5"])?.expect(0)?;
    ensure!(snapshot(&redis).await? != before, "a good command writes");
    Ok(())
}
