//! One end-to-end run of the real Rust probe rule (`tests/rules/probe`, built with
//! wit-bindgen for `wasm32-unknown-unknown`), when it has been built. Set `WASMTX_PROBE_WASM`
//! to use another build.

use std::path::PathBuf;

use super::*;
use crate::error::{AccessError, Error};
use crate::model::change::FieldChange;
use crate::model::value::Scalar;
use crate::runtime::RuleRun;

fn probe_path() -> PathBuf {
    std::env::var_os("WASMTX_PROBE_WASM").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/rules/wasm32-unknown-unknown/release/rule_probe.wasm")
        },
        PathBuf::from,
    )
}

#[test]
fn the_probe_rule_runs_its_script() {
    let path = probe_path();
    let Ok(bytes) = std::fs::read(&path) else {
        eprintln!("skipped: no probe build at {}", path.display());
        return;
    };
    let rt = runtime();
    let rule = rt.compile(&bytes).expect("the probe compiles");
    assert!(rule.from_core_module());
    assert!(rule.wit_version().starts_with("0.1."), "{}", rule.wit_version());

    let target = account();
    let snapshots = [snapshot(&target)];
    let context = context(Mode::Pipeline);
    let run = |input: &str| {
        rt.run_blocking(
            &rule,
            RuleRun {
                rule_name: "probe",
                context: &context,
                models: std::slice::from_ref(&target),
                snapshots: &snapshots,
                input,
            },
        )
    };

    let script = r#"{"ops": [
        {"op": "increment", "field": "balance", "delta": 7},
        {"op": "get", "field": "balance"},
        {"op": "append", "field": "history", "item": "deposit"},
        {"op": "list_extend", "field": "history", "items": ["a", "b"]},
        {"op": "list_pop", "field": "history"},
        {"op": "list_len", "field": "history"},
        {"op": "log", "message": "hello from the probe"},
        {"op": "context"}
    ]}"#;
    let out = run(script).expect("the script runs");
    let results: serde_json::Value = serde_json::from_str(&out.output).expect("JSON output");
    assert_eq!(results[0], 7);
    assert_eq!(results[1], 7);
    assert_eq!(results[5], 2);
    assert_eq!(results[7]["invocation_id"], "inv-1", "{}", results[7]);
    let history = || "history".to_owned();
    assert_eq!(
        out.workspaces[0].intent_changes(),
        [
            FieldChange::Increment { field: "balance".into(), delta: 7 },
            FieldChange::ListAppend { field: history(), items: vec!["deposit".into(), "a".into(), "b".into()] },
            FieldChange::ListPop { field: history(), index: None },
        ]
    );
    assert_eq!(
        out.workspaces[0].state_changes(),
        [
            FieldChange::Set { field: "balance".into(), value: Scalar::Int(7) },
            FieldChange::ListAppend { field: history(), items: vec!["deposit".into(), "a".into()] },
        ]
    );

    let unknown = run(r#"{"ops": [{"op": "get", "field": "nope"}]}"#);
    assert!(
        matches!(&unknown, Err(Error::Access { model: Some(_), error: AccessError::UnknownField { field } }) if field == "nope"),
        "{unknown:?}"
    );
    assert!(matches!(run(r#"{"ops": [{"op": "trap"}]}"#), Err(Error::Trapped { .. })));
    assert!(matches!(run(r#"{"ops": [{"op": "loop"}]}"#), Err(Error::DeadlineExceeded { .. })));
    let big = run(r#"{"ops": [{"op": "alloc", "bytes": 67108864}]}"#);
    assert!(matches!(big, Err(Error::MemoryLimitExceeded { .. })), "{big:?}");
}
