//! The rule test harness (`wasmtx::testing`): the level-up fixture file, the harness API on the
//! typed bank transfer, typed-model schema mismatches, and the harness's own failure reports.
//! Everything runs on the embedded store: no Redis.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail, ensure};
use serde_json::json;
use wasmtx::testing::fixtures::{self, Fixture, FixtureError};
use wasmtx::testing::{RuleHarness, build_rule_crate};
use wasmtx::{AccessError, Error, FieldChange, Mode, Scalar};
use wasmtx_examples::{models_dir, workspace_root};

fn example(name: &str) -> PathBuf {
    workspace_root().join("examples").join("rules").join(name)
}

fn bank() -> Result<RuleHarness> {
    Ok(RuleHarness::new()?.schema_file(models_dir().join("account.toml"))?.rule_crate(example("bank-transfer"))?)
}

/// The panic message of `f`, which must panic.
fn panic_message(f: impl FnOnce()) -> String {
    let Err(payload) = catch_unwind(AssertUnwindSafe(f)) else { return "did not panic".into() };
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

#[test]
fn the_level_up_fixture_file_passes() -> Result<()> {
    let path = example("level-up").join("tests").join("fixtures.toml");
    let report = fixtures::run_file(&path, None)?;
    ensure!(report.success(), "{report}");
    assert_eq!(report.passed, 7);
    assert_eq!(report.rule, "rule-level-up");
    let text = report.to_string();
    assert!(text.ends_with("7 passed, 0 failed"), "{text}");
    assert!(text.contains("ok    level five heals"), "{text}");
    let json = report.to_json();
    assert_eq!(json["passed"], 7);
    assert_eq!(json["cases"][1]["output"], "Leveled up from 4 to 5!");
    assert_eq!(json["cases"][5]["error"]["kind"], "invalid_input");
    assert!(json["cases"][0]["elapsed_ms"].as_f64().is_some());
    Ok(())
}

#[test]
fn the_harness_runs_the_typed_bank_transfer_in_every_mode() -> Result<()> {
    let h = bank()?;
    h.seed("Account", "alice", json!({"balance": 100, "account_holder": "Alice"}))?;

    let run = h.run("transfer", &["Account:alice", "Account:bob"], json!({"amount": 30}));
    run.assert_output(json!("Transferred 30 successfully"));
    assert!(run.elapsed < Duration::from_secs(1), "an invocation takes milliseconds, took {:?}", run.elapsed);
    h.assert_state("Account:alice", json!({"balance": 70, "transaction_count": 1, "account_holder": "Alice"}));
    h.assert_state("Account:bob", json!({"balance": 30, "transaction_count": 1}));
    // Lock mode commits the diff: the balance as its new value.
    let alice = &run.expect_ok().changes[0].changes;
    assert!(alice.contains(&FieldChange::Set { field: "balance".into(), value: Scalar::Int(70) }), "{alice:?}");

    // A refusal writes nothing.
    let before = (h.state("Account:alice")?, h.version("Account:alice")?);
    h.run("transfer", &["Account:alice", "Account:bob"], json!({"amount": 1000})).assert_rejected("Insufficient funds");
    assert_eq!((h.state("Account:alice")?, h.version("Account:alice")?), before);
    h.run("transfer", &["Account:alice", "Account:bob"], json!({"amount": -1})).assert_error("invalid_input");

    // Pipeline mode commits intent: the typed `Counter` fields are saved as increments.
    let run = h.run_in(Mode::Pipeline, "transfer", &["Account:alice", "Account:bob"], json!({"amount": 20}));
    run.assert_output(json!("Transferred 20 successfully"));
    let alice = &run.expect_ok().changes[0].changes;
    assert_eq!(
        alice,
        &[
            FieldChange::Increment { field: "balance".into(), delta: -20 },
            FieldChange::Increment { field: "transaction_count".into(), delta: 1 },
        ]
    );
    h.assert_state("Account:alice", json!({"balance": 50, "transaction_count": 2}));

    h.run_in(Mode::Optimistic, "transfer", &["Account:bob", "Account:alice"], json!({"amount": 50}))
        .assert_output(json!("Transferred 50 successfully"));
    h.assert_state("Account:alice", json!({"balance": 100}));
    h.assert_state("Account:bob", json!({"balance": 0, "transaction_count": 3}));

    // Reset: every model the harness touched reads as its defaults again.
    h.reset()?;
    h.assert_state("Account:alice", json!({"balance": 0, "transaction_count": 0, "account_holder": ""}));
    Ok(())
}

/// A `GameCharacter` schema whose fields do not fit the level-up rule's struct.
fn mismatched_character(fields: &str) -> Result<RuleHarness> {
    let schema = format!("name = \"GameCharacter\"\n[fields]\n{fields}");
    Ok(RuleHarness::new()?.schema_toml(&schema)?.rule_crate(example("level-up"))?)
}

#[test]
fn a_struct_that_does_not_fit_the_schema_is_a_clear_typed_error() -> Result<()> {
    // `level` is a str where the struct has `level: Counter` (an int).
    let h = mismatched_character(
        r#"level = { type = "str" }
        experience = { type = "int" }
        health = { type = "int" }
        inventory = { type = "list<str>" }
        skills = { type = "dict<int>" }"#,
    )?;
    let run = h.run("level_up", &["GameCharacter:x"], json!({"exp_gained": 1}));
    match run.error() {
        Some(Error::Access { error: AccessError::TypeMismatch { field, expected, found }, .. }) => {
            assert_eq!(field, "level");
            assert_eq!(expected, "str");
            assert_eq!(found, "`level: Counter` in struct `GameCharacter`, which holds int");
        }
        other => bail!("expected a type mismatch, got {other:?}"),
    }
    assert_eq!(h.version("GameCharacter:x")?, 0, "nothing was written");

    // No `skills` field: the host's unknown-field error, attributed to the model, and a log
    // record naming the struct and the fields the schema has.
    let h = mismatched_character(
        r#"level = { type = "int" }
        experience = { type = "int" }
        health = { type = "int" }
        inventory = { type = "list<str>" }"#,
    )?;
    let run = h.run("level_up", &["GameCharacter:x"], json!({"exp_gained": 1}));
    match run.error() {
        Some(Error::Access { model: Some(model), error: AccessError::UnknownField { field } }) => {
            assert_eq!(field, "skills");
            assert_eq!(model.to_string(), "GameCharacter:x");
        }
        other => bail!("expected an unknown field, got {other:?}"),
    }
    let log = run.logs.iter().find(|r| r.level == "error").map(ToString::to_string).unwrap_or_default();
    assert!(
        log.contains("struct `GameCharacter` on model GameCharacter:x, field `skills`: unknown field `skills`"),
        "{log}"
    );
    assert!(log.contains("has: level, experience, health, inventory"), "{log}");
    // The report of a failed expectation shows the rule's log.
    let report = run.check_output(&json!("anything")).expect_err("the run failed").to_string();
    assert!(report.contains("rule log: error struct `GameCharacter`"), "{report}");
    Ok(())
}

const WRONG_EXPECTATIONS: &str = r#"
rule = "../bank-transfer"
schemas = ["../../models/account.toml"]

[[case]]
name = "wrong output"
given."Account:a" = { balance = 10 }
when = { action = "t", models = ["Account:a", "Account:b"], input = { amount = 5 } }
then = { output = "Transferred 6 successfully" }

[[case]]
name = "wrong state"
given."Account:a" = { balance = 10 }
when = { action = "t", models = ["Account:a", "Account:b"], input = { amount = 5 } }
then.state."Account:a" = { balance = 4, transaction_count = 1 }
then.state."Account:b" = { bogus = 1 }

[[case]]
name = "expected a rejection"
given."Account:a" = { balance = 10 }
when = { action = "t", models = ["Account:a", "Account:b"], input = { amount = 5 } }
then = { error = "rejected", message = "Insufficient funds" }

[[case]]
name = "expected success"
when = { action = "t", models = ["Account:a", "Account:b"], input = { amount = 5 } }
then = { output = "Transferred 5 successfully" }

[[case]]
name = "bad given"
given."Account:a" = { balance = "ten" }
when = { action = "t", models = ["Account:a", "Account:b"], input = { amount = 5 } }

[[case]]
name = "right"
given."Account:a" = { balance = 10 }
when = { action = "t", models = ["Account:a", "Account:b"], input = { amount = 5 } }
then = { output = "Transferred 5 successfully", state."Account:a" = { balance = 5 } }
"#;

#[test]
fn wrong_expectations_give_a_readable_report_not_a_panic() -> Result<()> {
    let fixture = Fixture::from_toml(WRONG_EXPECTATIONS, "wrong.toml", example("level-up"))?;
    let report = fixture.run_on(&fixture.harness(None)?);
    assert!(!report.success());
    assert_eq!((report.passed, report.failed), (1, 5));
    let text = report.to_string();
    for expected in [
        "FAIL  wrong output",
        r#"output differs: expected "Transferred 6 successfully", got "Transferred 5 successfully""#,
        "invocation: rule `rule-bank-transfer`, action `t`, mode lock, models [Account:a, Account:b], input {\"amount\":5}",
        "wrote: Account:a: balance = 5, transaction_count = 1; Account:b: balance = 5, transaction_count = 1",
        "state of Account:a differs",
        "Account:a.balance: expected 4, got 5",
        "Account:b.bogus: expected 1, but there is no such field",
        r#"expected a `rejected` error containing "Insufficient funds", but the invocation committed"#,
        "expected the invocation to commit, got a `rejected` error: rule rejected the invocation: Insufficient funds",
        "given: model Account:a: field `balance` (int): expected int, found JSON `\"ten\"`",
        "ok    right",
        "1 passed, 5 failed",
    ] {
        assert!(text.contains(expected), "the report lacks {expected:?}:\n{text}");
    }
    let json = report.to_json();
    assert_eq!(
        json["cases"][0]["failures"][0]["headline"],
        "output differs: expected \"Transferred 6 successfully\", got \"Transferred 5 successfully\""
    );
    assert_eq!(json["cases"][3]["error"]["kind"], "rejected");
    assert_eq!(json["cases"][5]["passed"], true);

    // A filter runs only the matching cases.
    let only = fixture.run_matching(&fixture.harness(None)?, Some("right"));
    assert_eq!((only.passed, only.failed), (1, 0));
    Ok(())
}

#[test]
fn a_broken_fixture_file_is_an_error_that_says_where() -> Result<()> {
    let typo = "rule = \"x.wasm\"\n[[case]]\nname = \"a\"\nwhen = { models = [] }\nthen = { outptu = 1 }\n";
    let err = Fixture::from_toml(typo, "typo.toml", ".").expect_err("unknown key");
    let text = err.to_string();
    assert!(matches!(err, FixtureError::Invalid { .. }));
    assert!(text.contains("typo.toml") && text.contains("outptu") && text.contains("line 5"), "{text}");

    let both = "[[case]]\nname = \"a\"\nwhen = {}\nthen = { output = 1, error = \"rejected\" }\n";
    let text = Fixture::from_toml(both, "both.toml", ".").expect_err("contradiction").to_string();
    assert!(text.contains("both `output` and `error`"), "{text}");

    let no_rule = Fixture::from_toml("[[case]]\nname = \"a\"\nwhen = {}\n", "none.toml", ".")?;
    let text = no_rule.harness(None).expect_err("no rule").to_string();
    assert!(text.contains("no rule"), "{text}");

    let text = fixtures::run_file("/nonexistent/fixtures.toml", None).expect_err("missing").to_string();
    assert!(text.contains("/nonexistent/fixtures.toml"), "{text}");
    Ok(())
}

#[test]
fn assertions_panic_with_the_invocation_and_what_happened() -> Result<()> {
    let h = bank()?;
    h.seed("Account", "a", json!({"balance": 10}))?;
    let run = h.run("transfer", &["Account:a", "Account:b"], json!({"amount": 50}));
    let message = panic_message(|| {
        run.assert_output(json!("Transferred 50 successfully"));
    });
    assert!(
        message.starts_with("expected output \"Transferred 50 successfully\", but the invocation failed"),
        "{message}"
    );
    assert!(message.contains("error (rejected): rule rejected the invocation: Insufficient funds"), "{message}");
    assert!(message.contains("input {\"amount\":50}"), "{message}");

    let message = panic_message(|| h.assert_state("Account:a", json!({"balance": 11})));
    assert!(message.contains("Account:a.balance: expected 11, got 10"), "{message}");
    assert!(
        message.contains("whole state: {\"balance\":10,\"transaction_count\":0,\"account_holder\":\"\"}"),
        "{message}"
    );

    let message = panic_message(|| {
        h.run("transfer", &["Account:a", "Account:b"], json!({"amount": 5})).assert_error("rejected");
    });
    assert!(message.contains("expected a `rejected` error, but the invocation committed"), "{message}");
    assert!(message.contains("output: \"Transferred 5 successfully\""), "{message}");

    // Setup mistakes are errors or runs that say what is wrong, never a bare panic.
    let err = h.seed("Account", "a", json!({"balanse": 1})).expect_err("unknown field");
    assert!(
        err.to_string()
            .contains("unknown field `balanse` (model type `Account` has: balance, transaction_count, account_holder)"),
        "{err}"
    );
    let run = h.run("transfer", &["Acount:a"], json!({}));
    assert!(
        run.error().is_some_and(|e| e.to_string().contains("unknown model type `Acount` (registered: Account)")),
        "{run:?}"
    );
    let run = h.invoke_rule("nope", &wasmtx::Invocation::new("x"));
    assert!(
        run.error().is_some_and(|e| e.to_string().contains("no rule named `nope` (loaded: rule-bank-transfer)")),
        "{run:?}"
    );
    let err = RuleHarness::new()?.rule_crate("/nonexistent/rule").expect_err("no crate");
    assert!(err.to_string().contains("/nonexistent/rule/Cargo.toml does not exist"), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harness_works_inside_an_async_test() -> Result<()> {
    let wasm = build_rule_crate(example("bank-transfer"))?;
    let h = RuleHarness::new()?.schema_file(models_dir().join("account.toml"))?.rule_file(&wasm)?;
    h.seed_model("Account:a", json!({"balance": 3}))?;
    h.run("transfer", &["Account:a", "Account:b"], json!({"amount": 3}))
        .assert_output(json!("Transferred 3 successfully"));
    h.assert_state("Account:b", json!({"balance": 3}));
    drop(h); // dropping the harness's runtime inside this one does not panic
    Ok(())
}

/// A rule that runs past one tick moves to the engine's rule threads; the records it logs there
/// are still the harness call's, as are those it logged before the move.
#[test]
fn records_of_a_rule_that_moved_to_the_rule_threads_are_captured() -> Result<()> {
    let h = RuleHarness::new()?.schema(crate::counter_model()?).rule_file(&crate::rules()?.probe)?;
    let mut ops = vec![json!({"op": "log", "message": "before"})];
    // Some milliseconds of work: far past the first 250 µs tick.
    ops.extend((0..6).map(|_| json!({"op": "alloc", "bytes": 8_000_000})));
    ops.push(json!({"op": "log", "message": "after"}));
    let run = h.run("spin", &["Counter:x"], json!({ "ops": ops }));
    run.expect_ok();
    let messages: Vec<&str> = run.logs.iter().map(|r| r.message.as_str()).collect();
    assert_eq!(messages, ["before", "after"]);
    Ok(())
}
