//! Fixture files and the harness mean what they say: a fixed time and invocation id by default
//! (and the ones a case sets), `run` as the default action, error kinds checked when the file
//! is read, and AssemblyScript projects built like Rust crates (or a stale `.wasm` refused).
//! Everything runs on the embedded store.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::{Value, json};
use wasmtx::testing::fixtures::{self, Fixture, FixtureError};
use wasmtx::testing::{FIXED_NOW_MS, HarnessError, RuleHarness, RuleProject};
use wasmtx::{ContextOverrides, DEFAULT_ACTION, ErrorKind, Invocation, Mode};
use wasmtx_examples::rules::build_assemblyscript_rules;
use wasmtx_examples::workspace_root;

use crate::process::{TempDir, run_in};
use crate::{counter_model, rules};

fn example(name: &str) -> PathBuf {
    workspace_root().join("examples").join("rules").join(name)
}

/// A report without its timings: what must be the same on every run.
fn without_timings(report: &Value) -> Value {
    without(report, &[])
}

/// A report without its timings and the case fields named.
fn without(report: &Value, case_fields: &[&str]) -> Value {
    let mut report = report.clone();
    if let Some(object) = report.as_object_mut() {
        object.remove("elapsed_ms");
        object.remove("fixture");
    }
    for case in report["cases"].as_array_mut().into_iter().flatten() {
        if let Some(object) = case.as_object_mut() {
            object.remove("elapsed_ms");
            for field in case_fields {
                object.remove(*field);
            }
        }
    }
    report
}

#[test]
fn the_user_profile_fixtures_pass_with_a_fixed_time_in_both_languages_on_every_run() -> Result<()> {
    build_assemblyscript_rules()?;
    let mut reports = Vec::new();
    for rule in ["user-profile", "user-profile-as"] {
        let path = example(rule).join("tests").join("fixtures.toml");
        for _ in 0..2 {
            let report = fixtures::run_file(&path, None)?;
            ensure!(report.success(), "{report}");
            ensure!(report.passed == 4, "{report}");
            // The twins' messages for a missing field are each language's own.
            let json = report.to_json();
            let kinds: Vec<Value> =
                json["cases"].as_array().into_iter().flatten().map(|c| c["error"]["kind"].clone()).collect();
            reports.push((rule, json!([without(&json, &["error"]), kinds])));
        }
    }
    let first = &reports[0].1;
    for (rule, report) in &reports {
        let mut report = report.clone();
        report[0]["rule"] = first[0]["rule"].clone(); // named after the crate's library, the npm package
        ensure!(&report == first, "{rule} differs:\n{report:#}\nfrom:\n{first:#}");
    }
    Ok(())
}

/// A fixture on the probe rule, whose `context` op returns the context it sees.
fn probe_fixture(cases: &str) -> Result<Fixture> {
    let text = format!(
        "rule = {:?}\n[[schema]]\nname = \"Counter\"\nfields = {{ count = {{ type = \"int\" }} }}\n{cases}",
        rules()?.probe.display().to_string()
    );
    Ok(Fixture::from_toml(&text, "context.toml", ".")?)
}

const CONTEXT_CASES: &str = r#"
[[case]]
name = "defaults: the fixed time, inv-1, attempt 1, the default action"
when = { models = ["Counter:c"], input = { ops = [{ op = "context" }] } }
then.output = [{ invocation_id = "inv-1", now_ms = 1767225600000, action = "run", mode = "lock", attempt = 1, models = [{ model_type = "Counter", key = "c" }] }]

[[case]]
name = "what the case sets, and placeholders for it"
[case.when]
models = ["Counter:c"]
input = { ops = [{ op = "context" }] }
action = "tick"
mode = "optimistic"
now_ms = 1700000000123
invocation_id = "order-42"
attempt = 3
[case.then]
output = [{ invocation_id = "$invocation_id", now_ms = "$now_ms", action = "$action", mode = "$mode", attempt = "$attempt", models = [{ model_type = "Counter", key = "c" }] }]

[[case]]
name = "placeholders stand for the values, not for any value"
when = { models = ["Counter:c"], input = { ops = [{ op = "context" }] }, now_ms = 5 }
then.output = [{ invocation_id = "inv-1", now_ms = 6, action = "run", mode = "lock", attempt = 1, models = [{ model_type = "Counter", key = "c" }] }]
"#;

#[test]
fn a_case_sees_a_fixed_context_by_default_and_the_one_it_sets() -> Result<()> {
    let fixture = probe_fixture(CONTEXT_CASES)?;
    let harness = fixture.harness(None)?;
    let report = fixture.run_on(&harness);
    ensure!((report.passed, report.failed) == (2, 1), "{report}");
    ensure!(report.cases[0].passed && report.cases[1].passed && !report.cases[2].passed, "{report}");
    let output = &report.cases[1].output;
    ensure!(
        output.as_ref().is_some_and(|o| o[0]["now_ms"] == 1_700_000_000_123_i64 && o[0]["attempt"] == 3),
        "{output:?}"
    );
    let text = report.to_string();
    ensure!(text.contains(r#""now_ms":6"#) && text.contains(r#""now_ms":5}"#), "{text}");
    // The same file, run again: the same outputs.
    let again = fixture.run_on(&harness);
    ensure!(without_timings(&again.to_json()) == without_timings(&report.to_json()));
    Ok(())
}

#[test]
fn the_harness_shows_rules_a_fixed_time_and_numbered_ids() -> Result<()> {
    let h = RuleHarness::new()?.schema(counter_model()?).rule_file(&rules()?.probe)?;
    let context = |run: wasmtx::testing::Run| -> Result<Value> {
        run.output().map(|o| o[0].clone()).context("the probe returned nothing")
    };
    let script = json!({"ops": [{"op": "context"}]});
    let first = context(h.run(DEFAULT_ACTION, &["Counter:c"], script.clone()))?;
    ensure!(first["now_ms"] == FIXED_NOW_MS && first["invocation_id"] == "inv-1" && first["action"] == "run");
    let second = context(h.run("other", &["Counter:c"], script.clone()))?;
    ensure!(second["invocation_id"] == "inv-2" && second["action"] == "other", "{second}");
    h.reset()?;
    ensure!(context(h.run("x", &["Counter:c"], script.clone()))?["invocation_id"] == "inv-1");

    // An invocation's own overrides win; the engine still counts its own attempts.
    let invocation = Invocation::default()
        .model("Counter", "c")
        .input(script.to_string())
        .mode(Mode::Pipeline)
        .context(ContextOverrides::default().now_ms(7).invocation_id("mine").first_attempt(4));
    let run = h.invoke(&invocation);
    ensure!(run.expect_ok().attempts == 1, "{run:?}");
    let seen = context(run)?;
    ensure!(seen["now_ms"] == 7 && seen["invocation_id"] == "mine" && seen["attempt"] == 4, "{seen}");
    ensure!(seen["action"] == DEFAULT_ACTION && seen["mode"] == "pipeline", "{seen}");

    let later = RuleHarness::new()?.schema(counter_model()?).rule_file(&rules()?.probe)?.now_ms(42);
    ensure!(context(later.run("x", &["Counter:c"], script))?["now_ms"] == 42);
    Ok(())
}

#[test]
fn an_unknown_error_kind_is_refused_when_the_file_is_read() -> Result<()> {
    let case = |kind: &str| format!("[[case]]\nname = \"a\"\nwhen = {{}}\nthen = {{ error = {kind:?} }}\n");
    match Fixture::from_toml(&case("invalid-input"), "kebab.toml", ".") {
        Err(FixtureError::UnknownErrorKind { case, source, .. }) => {
            ensure!(case == "a" && source.name == "invalid-input");
            ensure!(source.to_string().contains("kinds are snake_case: `invalid_input`"), "{source}");
        }
        other => bail!("expected UnknownErrorKind, got {other:?}"),
    }
    let err = Fixture::from_toml(&case("unknown_rule"), "registry.toml", ".").expect_err("not an invocation kind");
    ensure!(matches!(err, FixtureError::Invalid { .. }), "{err:?}");
    ensure!(err.to_string().contains("an invocation never fails with `unknown_rule`"), "{err}");
    ensure!(err.error_kind() == ErrorKind::BadInput);
    for kind in ErrorKind::of_invocations() {
        Fixture::from_toml(&case(kind.as_str()), "ok.toml", ".")?;
    }

    // `wasmtx test` refuses the file before running anything: exit code 3, kind `bad_input`.
    let dir = TempDir::new("fixture-kind")?;
    let file = dir.path().join("fixtures.toml");
    let probe = rules()?.probe.display().to_string();
    std::fs::write(&file, format!("rule = {probe:?}\n{}", case("invalid-input")))?;
    let run = run_in(dir.path(), &["test", "fixtures.toml"])?.expect(3)?;
    ensure!(run.stdout.is_empty(), "no case ran: {}", run.stdout);
    ensure!(run.stderr.starts_with("wasmtx: error: invalid fixture file fixtures.toml: case \"a\""), "{}", run.stderr);
    let run = run_in(dir.path(), &["--json", "test", "fixtures.toml"])?.expect(3)?;
    let body: Value = serde_json::from_str(&run.stderr)?;
    ensure!(body["error"]["kind"] == "bad_input", "{body}");
    Ok(())
}

/// Copies the files of the AssemblyScript project `from` that a build reads (not its
/// `node_modules`, which is linked) into `to`, keeping their modification times.
fn copy_project(from: &Path, to: &Path) -> Result<()> {
    for relative in ["package.json", "assembly/index.ts", "tests/fixtures.toml"] {
        let target = to.join(relative);
        std::fs::create_dir_all(target.parent().context("a parent")?)?;
        std::fs::copy(from.join(relative), &target)?;
        let modified = std::fs::metadata(from.join(relative))?.modified()?;
        File::options().write(true).open(&target)?.set_modified(modified)?;
    }
    std::os::unix::fs::symlink(from.join("node_modules"), to.join("node_modules"))?;
    Ok(())
}

fn set_modified(path: &Path, time: SystemTime) -> Result<()> {
    File::options().write(true).open(path)?.set_modified(time)?;
    Ok(())
}

#[test]
fn an_assemblyscript_project_is_built_and_a_stale_wasm_refused() -> Result<()> {
    let artifacts = build_assemblyscript_rules()?;
    let example = example("user-profile-as");
    ensure!(
        RuleProject::detect(&example)?
            == RuleProject::AssemblyScript {
                dir: example.clone(),
                output: "build/user_profile.wasm".into(),
                name: "rule-user-profile-as".into()
            }
    );

    // `wasmtx test --rule .` in the project: detected and built, then tested.
    let run = run_in(&example, &["test", "tests/fixtures.toml", "--rule", "."])?.expect(0)?;
    ensure!(
        run.stdout.contains("(rule rule-user-profile-as, 4 cases)") && run.stdout.ends_with("4 passed, 0 failed\n")
    );

    // A copy whose source is newer than its `.wasm`: the `.wasm` is refused, typed.
    // As in the workspace: the fixture's schema is `../../../models/user_profile.toml`.
    let dir = TempDir::new("as-stale")?;
    let project = dir.path().join("rules").join("user-profile-as");
    copy_project(&example, &project)?;
    std::fs::create_dir_all(dir.path().join("models"))?;
    std::fs::copy(
        wasmtx_examples::models_dir().join("user_profile.toml"),
        dir.path().join("models").join("user_profile.toml"),
    )?;
    let wasm = project.join("build").join("user_profile.wasm");
    std::fs::create_dir_all(project.join("build"))?;
    std::fs::copy(&artifacts.user_profile_as, &wasm)?;
    let now = SystemTime::now();
    set_modified(&wasm, now - Duration::from_secs(60))?;
    set_modified(&project.join("assembly").join("index.ts"), now)?;
    let fixture = Fixture::from_path(project.join("tests").join("fixtures.toml"))?;
    match fixture.harness(Some(&wasm)) {
        Err(FixtureError::Setup { source, .. }) => match *source {
            HarnessError::StaleRule { newer, .. } => ensure!(newer.ends_with("assembly/index.ts"), "{newer:?}"),
            other => bail!("expected StaleRule, got {other}"),
        },
        other => bail!("expected a setup error, got {other:?}"),
    }
    let wasm_arg = wasm.display().to_string();
    let run = run_in(&project, &["--json", "test", "tests/fixtures.toml", "--rule", &wasm_arg])?.expect(6)?;
    let body: Value = serde_json::from_str(&run.stderr)?;
    ensure!(body["error"]["kind"] == "stale_rule", "{body}");
    ensure!(run.stdout.is_empty(), "nothing ran: {}", run.stdout);

    // The project itself is rebuilt (its fixture names `rule = ".."`), and then passes.
    let run = run_in(&project, &["test", "tests/fixtures.toml"])?.expect(0)?;
    ensure!(run.stdout.ends_with("4 passed, 0 failed\n"), "{}", run.stdout);
    let rebuilt = std::fs::metadata(&wasm)?.modified()?;
    ensure!(rebuilt >= now, "the build did not run again");
    fixture.harness(Some(&wasm))?;
    Ok(())
}

#[test]
fn a_directory_that_is_no_rule_project_is_a_typed_error() -> Result<()> {
    let dir = TempDir::new("not-a-project")?;
    let err = RuleHarness::new()?.rule_path(dir.path()).expect_err("empty directory");
    ensure!(matches!(err, HarnessError::UnknownProject { .. }), "{err}");
    std::fs::write(dir.path().join("f.toml"), "[[case]]\nname = \"a\"\nwhen = {}\n")?;
    let run = run_in(dir.path(), &["--json", "test", "f.toml", "--rule", "."])?.expect(6)?;
    let body: Value = serde_json::from_str(&run.stderr)?;
    ensure!(body["error"]["kind"] == "fixture_setup", "{body}");
    ensure!(body["error"]["message"].as_str().is_some_and(|m| m.contains("is not a rule project")), "{body}");
    Ok(())
}
