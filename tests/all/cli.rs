//! The `wasmtx` command as a user runs it: in a fresh directory with the embedded store (kept
//! in `.wasmtx/` between commands), and on a real Redis.

use std::path::Path;
use std::time::Duration;

use crate::process::{Run, Server, TempDir, run_in, wasmtx};
use crate::{RedisFixture, redis_url, rules};
use anyhow::{Result, ensure};
use serde_json::{Value, json};

fn account_schema() -> String {
    wasmtx_examples::models_dir().join("account.toml").display().to_string()
}

fn bank_transfer() -> Result<String> {
    Ok(rules()?.bank_transfer.display().to_string())
}

fn transfer_args(amount: i64) -> Vec<String> {
    ["invoke", "bank-transfer", "-m", "Account:alice", "-m", "Account:bob", "--action", "transfer", "--input"]
        .iter()
        .map(|s| (*s).to_owned())
        .chain([format!("{{\"amount\": {amount}}}")])
        .collect()
}

fn run(dir: &Path, args: &[&str]) -> Result<Run> {
    run_in(dir, args)
}

fn run_owned(dir: &Path, args: &[String]) -> Result<Run> {
    run_in(dir, &args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn every_command_works_on_a_fresh_machine_and_state_persists_between_commands() -> Result<()> {
    let dir = TempDir::new("cli-fresh")?;
    let d = dir.path();
    let defined = run(d, &["model", "define", &account_schema()])?.expect(0)?;
    ensure!(defined.stdout.contains("defined Account (revision 1, 3 fields)"), "{}", defined.stdout);
    let uploaded = run(d, &["rule", "upload", "bank-transfer", &bank_transfer()?])?.expect(0)?;
    ensure!(
        uploaded.stdout.starts_with("uploaded bank-transfer v1") && uploaded.stdout.contains("active"),
        "{}",
        uploaded.stdout
    );
    run(d, &["model", "set", "Account", "alice", "balance", "100"])?.expect(0)?;
    run(d, &["model", "set", "Account", "alice", "account_holder", "Alice Liddell"])?.expect(0)?;

    let invoked = run_owned(d, &transfer_args(30))?.expect(0)?;
    let out = &invoked.stdout;
    ensure!(out.starts_with("\"Transferred 30 successfully\""), "{out}");
    ensure!(out.contains("Account:alice (version 3):") && out.contains("  balance = 70"), "{out}");
    ensure!(out.contains("Account:bob (version 1):") && out.contains("  transaction_count = 1"), "{out}");

    let alice = run(d, &["--json", "model", "get", "Account", "alice"])?.expect(0)?.json()?;
    ensure!(
        alice["fields"] == json!({"balance": 70, "transaction_count": 1, "account_holder": "Alice Liddell"}),
        "{alice}"
    );
    ensure!(alice["version"] == 3);
    let human = run(d, &["model", "get", "Account", "bob"])?.expect(0)?;
    ensure!(
        human.stdout.contains("Account:bob (version 1)") && human.stdout.contains("balance: 30"),
        "{}",
        human.stdout
    );

    let listed = run(d, &["rule", "list"])?.expect(0)?;
    ensure!(
        listed.stdout.lines().nth(1).is_some_and(|l| l.starts_with("bank-transfer") && l.contains("v1")),
        "{}",
        listed.stdout
    );
    let shown = run(d, &["--json", "rule", "show", "bank-transfer"])?.expect(0)?.json()?;
    let size = std::fs::metadata(rules()?.bank_transfer.as_path())?.len();
    ensure!(shown["active"] == 1 && shown["versions"][0]["size"] == size, "{shown}");
    ensure!(
        shown["versions"][0]["exports"] == json!(["run"])
            && shown["versions"][0]["digest"].as_str().is_some_and(|d| d.len() == 64)
    );
    let models = run(d, &["model", "show", "Account"])?.expect(0)?;
    ensure!(models.stdout.contains("balance") && models.stdout.contains("int"), "{}", models.stdout);

    run(d, &["model", "delete", "Account", "alice"])?.expect(0)?;
    let gone = run(d, &["--json", "model", "get", "Account", "alice"])?.expect(0)?.json()?;
    ensure!(gone["fields"]["balance"] == 0 && gone["version"] == 4, "{gone}");

    // Undefining the type keeps the data: defining it again finds bob's balance.
    let bob_before = run(d, &["--json", "model", "get", "Account", "bob"])?.expect(0)?.json()?;
    let undefined = run(d, &["model", "undefine", "Account"])?.expect(0)?;
    ensure!(undefined.stdout.contains("undefined Account"), "{}", undefined.stdout);
    let refused = run(d, &["model", "get", "Account", "bob"])?.expect(4)?;
    ensure!(refused.stderr.contains("unknown model type `Account`"), "{}", refused.stderr);
    run(d, &["model", "undefine", "Account"])?.expect(4)?;
    run(d, &["model", "define", &account_schema()])?.expect(0)?;
    let bob = run(d, &["--json", "model", "get", "Account", "bob"])?.expect(0)?.json()?;
    ensure!(bob["fields"] == bob_before["fields"] && bob["fields"]["balance"] != 0, "{bob} / {bob_before}");
    ensure!(d.join(".wasmtx").join("state.json").is_file(), "the default data directory is .wasmtx");
    ensure!(d.join(".wasmtx").join("cache").is_dir(), "precompiled rules are cached there too");
    Ok(())
}

#[test]
fn errors_are_one_line_on_stderr_with_an_exit_code_per_class() -> Result<()> {
    let dir = TempDir::new("cli-errors")?;
    let data = dir.path().join("data");
    let data = data.to_str().unwrap_or_default();
    let d = dir.path();
    let with = |args: &[&str]| -> Result<Run> {
        let mut all = vec!["--data-dir", data];
        all.extend_from_slice(args);
        run(d, &all)
    };
    with(&["model", "define", &account_schema()])?.expect(0)?;
    with(&["rule", "upload", "bank-transfer", &bank_transfer()?])?.expect(0)?;
    let not_wasm = d.join("notes.txt");
    std::fs::write(&not_wasm, "not wasm")?;

    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["invoke", "nope"], 4, "unknown rule `nope`"),
        (vec!["rule", "upload", "bad", not_wasm.to_str().unwrap_or_default()], 6, "not a WebAssembly module"),
        (vec!["rule", "upload", "bad", "/no/such/file.wasm"], 3, "cannot read /no/such/file.wasm"),
        (vec!["invoke", "bank-transfer", "-m", "Account:alice", "--input", "{oops"], 3, "invalid input"),
        (
            vec!["invoke", "bank-transfer", "-m", "Account:alice", "-m", "Account:bob", "--input", "{\"amount\": 5}"],
            6,
            "Insufficient funds",
        ),
        (vec!["model", "set", "Account", "alice", "balance", "lots"], 3, "bad value for `balance`"),
        (vec!["model", "get", "Nope", "x"], 4, "unknown model type `Nope`"),
        (vec!["rule", "delete", "bank-transfer", "1"], 5, "is active"),
        (vec!["rule", "activate", "bank-transfer", "9"], 4, "has no version 9"),
        (vec!["rule", "frobnicate"], 2, "unrecognized subcommand"),
    ];
    for (args, code, message) in cases {
        let r = with(&args)?;
        ensure!(r.code == Some(code), "{args:?}: expected {code}, got {:?}: {}", r.code, r.stderr);
        ensure!(r.stderr.contains(message), "{args:?}: stderr lacks {message:?}: {}", r.stderr);
        if code != 2 {
            ensure!(r.stdout.is_empty() && r.stderr.trim_end().lines().count() == 1, "{args:?}: {r:?}");
            ensure!(r.stderr.starts_with("wasmtx: error: "), "{args:?}: {}", r.stderr);
        }
    }
    let json_error = with(&["--json", "invoke", "nope"])?.expect(4)?;
    let body: Value = serde_json::from_str(&json_error.stderr)?;
    ensure!(body["error"]["kind"] == "unknown_rule" && body["error"]["retryable"] == false, "{body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_versions_roll_forward_and_back() -> Result<()> {
    let redis = RedisFixture::new("cli-redis").await?;
    let dir = TempDir::new("cli-redis")?;
    let url = redis_url();
    let d = dir.path().to_owned();
    let prefix = redis.prefix.clone();
    let with = move |args: &[&str]| -> Result<Run> {
        let mut all = vec!["--redis", url.as_str(), "--prefix", prefix.as_str()];
        all.extend_from_slice(args);
        run(&d, &all)
    };
    let v2_path = dir.path().join("bank_transfer_component.wasm");
    let core = std::fs::read(&rules()?.bank_transfer)?;
    std::fs::write(&v2_path, wit_component::ComponentEncoder::default().module(&core)?.validate(true).encode()?)?;
    let v2_path = v2_path.to_str().unwrap_or_default();

    with(&["model", "define", &account_schema()])?.expect(0)?;
    with(&["rule", "upload", "bank-transfer", &bank_transfer()?])?.expect(0)?;
    let second = with(&["--json", "rule", "upload", "bank-transfer", v2_path])?.expect(0)?.json()?;
    ensure!(second["version"]["version"] == 2 && second["active"] == false, "{second}");
    with(&["model", "set", "Account", "alice", "balance", "50"])?.expect(0)?;
    let args = transfer_args(10);
    let mut json_args = vec!["--json"];
    json_args.extend(args.iter().map(String::as_str));
    let first = with(&json_args)?.expect(0)?.json()?;
    ensure!(first["version"] == 1 && first["output"] == "Transferred 10 successfully", "{first}");

    with(&["rule", "activate", "bank-transfer", "2"])?.expect(0)?;
    let after = with(&json_args)?.expect(0)?.json()?;
    ensure!(after["version"] == 2, "{after}");
    let shown = with(&["--json", "rule", "show", "bank-transfer"])?.expect(0)?.json()?;
    ensure!(shown["active"] == 2 && shown["versions"].as_array().map(Vec::len) == Some(2), "{shown}");

    with(&["rule", "activate", "bank-transfer", "1"])?.expect(0)?;
    with(&["rule", "delete", "bank-transfer", "2"])?.expect(0)?;
    let balance: String = redis::cmd("HGET")
        .arg(format!("{}:{{Account:alice}}", redis.prefix))
        .arg("balance")
        .query_async(&mut redis.client().await?)
        .await?;
    ensure!(balance == "30", "two transfers of 10 from 50");
    let deleted = with(&["rule", "delete", "bank-transfer", "--all"])?.expect(0)?;
    ensure!(deleted.stdout.contains("deleted bank-transfer (1 version)"), "{}", deleted.stdout);
    let empty = with(&["rule", "list"])?.expect(0)?;
    ensure!(empty.stdout.starts_with("no rules"), "{}", empty.stdout);
    ensure!(!dir.path().join(".wasmtx").exists(), "Redis mode writes no data directory");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_server_saves_its_state_for_later_commands() -> Result<()> {
    let dir = TempDir::new("cli-serve")?;
    let mut server = Server::start(dir.path(), &[], &[])?;
    let http = reqwest::Client::new();
    let bytes = std::fs::read(&rules()?.bank_transfer)?;
    let response = http.post(server.at("/v1/rules/bank-transfer")).body(bytes).send().await?;
    ensure!(response.status() == reqwest::StatusCode::CREATED, "{}", response.status());
    server.terminate()?;
    ensure!(server.wait_exit(Duration::from_secs(10))? == Some(0));
    let listed = run(dir.path(), &["--json", "rule", "list"])?.expect(0)?.json()?;
    ensure!(listed[0]["name"] == "bank-transfer", "{listed}");
    Ok(())
}

#[test]
fn help_has_examples() -> Result<()> {
    for args in [vec!["--help"], vec!["invoke", "--help"], vec!["rule", "upload", "--help"], vec!["serve", "--help"]] {
        let out = wasmtx()?.args(&args).output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        ensure!(out.status.success() && text.contains("Example"), "{args:?}: {text}");
    }
    let out = wasmtx()?.arg("--help").output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    for word in ["rule", "model", "invoke", "serve", "--redis", "--data-dir", "--json", "Exit codes"] {
        ensure!(text.contains(word), "--help lacks {word}: {text}");
    }
    Ok(())
}
