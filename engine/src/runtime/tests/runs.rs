//! End-to-end runs of hand-lowered rules: outputs, rule errors, sandbox stops, changes.

use std::time::{Duration, Instant};

use super::*;
use crate::error::{AccessError, Error};
use crate::model::change::FieldChange;
use crate::model::value::Scalar;
use crate::runtime::{RuleRun, RunOutput};

const BALANCE: (u32, u32) = (16, 7);
const NOPE: (u32, u32) = (48, 4);

fn run_rule(rt: &RuleRuntime, rule: &CompiledRule, input: &str) -> Result<RunOutput, Error> {
    let target = account();
    let snapshots = [snapshot(&target)];
    let context = context(Mode::Lock);
    rt.run_blocking(
        rule,
        RuleRun { rule_name: "test", context: &context, models: &[target], snapshots: &snapshots, input },
    )
}

#[test]
fn a_rule_writes_through_its_handle() {
    let rt = runtime();
    let rule = compile(&rt, &increment_body(0, BALANCE, 5));
    let out = run_rule(&rt, &rule, "{}").expect("runs");
    assert_eq!(out.output, r#"{"ok":true}"#);
    assert_eq!(out.workspaces.len(), 1);
    assert_eq!(
        out.workspaces[0].state_changes(),
        [FieldChange::Set { field: "balance".into(), value: Scalar::Int(5) }]
    );
    assert_eq!(out.workspaces[0].intent_changes(), [FieldChange::Increment { field: "balance".into(), delta: 5 }]);

    // A fresh instance per run: the second run starts from the snapshot again.
    let again = run_rule(&rt, &rule, "{}").expect("runs again");
    assert_eq!(again.workspaces[0].value("balance"), Some(&crate::model::value::FieldValue::Scalar(Scalar::Int(5))));
}

#[test]
fn the_input_reaches_the_rule() {
    let rt = runtime();
    let rule = compile(&rt, "(call $ok (local.get 9) (local.get 10))");
    let out = run_rule(&rt, &rule, r#"{"amount": 10}"#).expect("runs");
    assert_eq!(out.output, r#"{"amount": 10}"#);
    assert!(!out.workspaces[0].is_changed());
}

#[test]
fn output_that_is_not_json_is_refused() {
    let rt = runtime();
    let rule = compile(&rt, "(call $ok (i32.const 64) (i32.const 8))");
    assert!(matches!(run_rule(&rt, &rule, "{}"), Err(Error::InvalidOutput { .. })));
}

#[test]
fn a_rejection_carries_its_message() {
    let rt = runtime();
    let rule = compile(&rt, "(call $rejected (i32.const 80) (i32.const 18))");
    match run_rule(&rt, &rule, "{}") {
        Err(Error::Rejected { message }) => assert_eq!(message, "insufficient funds"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_propagated_access_error_names_its_model() {
    let rt = runtime();
    let rule = compile(&rt, &increment_body(0, NOPE, 1));
    match run_rule(&rt, &rule, "{}") {
        Err(Error::Access { model, error }) => {
            assert_eq!(model, Some(ModelId::new("Account", "alice")));
            assert_eq!(error, AccessError::UnknownField { field: "nope".into() });
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn opening_an_undeclared_model_is_denied() {
    let rt = runtime();
    let rule = compile(&rt, &increment_body(5, BALANCE, 1));
    match run_rule(&rt, &rule, "{}") {
        Err(Error::Access { model: None, error: AccessError::Denied { reason } }) => {
            assert!(reason.contains("index 5"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_trap_is_reported() {
    let rt = runtime();
    let rule = compile(&rt, "unreachable");
    match run_rule(&rt, &rule, "{}") {
        Err(Error::Trapped { message }) => assert!(message.contains("unreachable"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_recursion_too_deep_is_a_stack_overflow() {
    let rt = runtime();
    let body = "(drop (call $deep (i64.const 0))) (call $ok (i32.const 32) (i32.const 11))";
    let wat = rule_wat(body).replacen(
        "  (func (export \"run\")",
        "  (func $deep (param i64) (result i64) (i64.add (call $deep (local.get 0)) (i64.const 1)))\n  \
         (func (export \"run\")",
        1,
    );
    let mut module = wat::parse_str(&wat).expect("wat");
    embed_metadata(&mut module);
    let rule = rt.compile(&module).expect("compiles");
    match run_rule(&rt, &rule, "{}") {
        Err(Error::Trapped { message }) => assert!(message.starts_with("stack overflow"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_endless_loop_hits_the_deadline() {
    let rt = runtime();
    let rule = compile(&rt, "(loop $forever (br $forever)) unreachable");
    let start = Instant::now();
    let result = run_rule(&rt, &rule, "{}");
    let took = start.elapsed();
    assert!(
        matches!(result, Err(Error::DeadlineExceeded { limit }) if limit == Duration::from_millis(50)),
        "{result:?}"
    );
    assert!(took >= Duration::from_millis(50) && took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn growing_past_the_memory_cap_is_reported_as_such() {
    let rt = runtime();
    // 1024 pages = 64 MiB, over the 16 MiB default.
    let rule = compile(&rt, "(drop (memory.grow (i32.const 1024))) (call $ok (i32.const 32) (i32.const 11))");
    assert!(
        matches!(run_rule(&rt, &rule, "{}"), Err(Error::MemoryLimitExceeded { limit_bytes }) if limit_bytes == 16 << 20)
    );
    // Under the cap is fine.
    let rule = compile(&rt, "(drop (memory.grow (i32.const 16))) (call $ok (i32.const 32) (i32.const 11))");
    run_rule(&rt, &rule, "{}").expect("within the cap");
}

#[test]
fn log_records_past_the_cap_do_not_fail_the_run() {
    let rt = runtime();
    let rule = compile(
        &rt,
        r#"(local $i i32)
    (loop $again
      (call $emit (i32.const 2) (i32.const 80) (i32.const 18) (i32.const 0) (i32.const 0))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (i32.const 500))))
    (call $ok (i32.const 32) (i32.const 11))"#,
    );
    run_rule(&rt, &rule, "{}").expect("runs");
}

#[test]
fn mismatched_snapshots_and_foreign_rules_are_refused() {
    let rt = runtime();
    let rule = compile(&rt, "(call $ok (i32.const 32) (i32.const 11))");
    let target = account();
    let context = context(Mode::Pipeline);
    let no_snapshots = rt.run_blocking(
        &rule,
        RuleRun {
            rule_name: "t",
            context: &context,
            models: std::slice::from_ref(&target),
            snapshots: &[],
            input: "{}",
        },
    );
    assert!(matches!(no_snapshots, Err(Error::InvalidInput { .. })));

    let mut wrong = snapshot(&target);
    wrong.values.swap(0, 1);
    let run = RuleRun { rule_name: "t", context: &context, models: &[target], snapshots: &[wrong], input: "{}" };
    assert!(matches!(rt.run_blocking(&rule, run), Err(Error::InvalidInput { .. })));

    let other = runtime();
    assert!(
        matches!(run_rule(&other, &rule, "{}"), Err(Error::InvalidInput { reason }) if reason.contains("another runtime"))
    );
}

#[test]
fn runs_from_many_threads_share_the_pool() {
    let rt = runtime_with(RuntimeConfig { max_instances: 2, ..RuntimeConfig::default() });
    let rule = compile(&rt, &increment_body(0, BALANCE, 1));
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..20 {
                    run_rule(&rt, &rule, "{}").expect("runs");
                }
            });
        }
    });
}

/// A rule that grows its memory by 4 pages, then with a one-byte input writes a marker in the
/// last page, and with a longer one reads it (trapping if it finds the marker);
/// `reader_grows` says whether the reader grows its memory before reading.
fn marker_rule(reader_grows: bool) -> String {
    let read = "(if (i32.load (i32.const 0x40000)) (then unreachable))";
    let reader = if reader_grows { format!("(drop (memory.grow (i32.const 4))) {read}") } else { read.to_owned() };
    format!(
        "(if (i32.eq (local.get 10) (i32.const 1))
           (then (drop (memory.grow (i32.const 4))) (i32.store (i32.const 0x40000) (i32.const 0x5ec2e7)))
           (else {reader}))
         (call $ok (i32.const 32) (i32.const 11))"
    )
}

#[test]
fn a_reused_pool_slot_starts_zeroed() {
    // A pool of one instance: the rule gets back the memory slot it used last (the pool's
    // module affinity). Slots stay mapped read/write between instances, so only the reset of
    // their contents keeps one run from seeing the previous one's data.
    let rt = runtime_with(RuntimeConfig { max_instances: 1, ..RuntimeConfig::default() });
    let rule = compile(&rt, &marker_rule(true));
    for round in 0..20 {
        run_rule(&rt, &rule, "1").unwrap_or_else(|e| panic!("round {round}: the writer failed: {e}"));
        run_rule(&rt, &rule, "{}").unwrap_or_else(|e| panic!("round {round}: the reader saw the marker: {e}"));
    }
}

#[test]
fn memory_past_the_current_size_is_out_of_bounds_even_in_a_used_slot() {
    let rt = runtime_with(RuntimeConfig { max_instances: 1, ..RuntimeConfig::default() });
    let rule = compile(&rt, &marker_rule(false));
    run_rule(&rt, &rule, "1").expect("the writer runs");
    match run_rule(&rt, &rule, "{}") {
        Err(Error::Trapped { message }) => {
            assert!(message.starts_with("wasm trap: out of bounds memory access"), "{message}");
            // The one thing the trap alone cannot rule out is said, not claimed.
            assert!(message.contains("or a stack overflow"), "{message}");
        }
        other => panic!("a read past the memory's size must trap, got {other:?}"),
    }
}

/// What one run leaves in linear memory (a data segment overwritten, a zero page written, a
/// page grown and written) is gone in the next run on the same pool slot: the pool resets
/// memory between instances, with `PAGEMAP_SCAN` where the kernel has it (only the pages the
/// run touched) and `memset` elsewhere. A rule that finds a trace of an earlier run rejects.
#[test]
fn no_run_sees_what_an_earlier_run_left_in_memory() {
    // One slot, so every run reuses the memory of the one before.
    let rt = runtime_with(RuntimeConfig { max_instances: 1, ..RuntimeConfig::default() });
    // "insu", the first word of the data segment at 80, little-endian.
    let body = r#"(if (i32.ne (i32.load (i32.const 80)) (i32.const 0x75736e69))
        (then (return (call $rejected (i32.const 16) (i32.const 7)))))
    (if (i32.ne (i32.load (i32.const 60000)) (i32.const 0))
        (then (return (call $rejected (i32.const 16) (i32.const 7)))))
    (if (i32.ne (memory.size) (i32.const 1))
        (then (return (call $rejected (i32.const 16) (i32.const 7)))))
    (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1))
        (then (return (call $rejected (i32.const 16) (i32.const 7)))))
    (if (i32.ne (i32.load (i32.const 70000)) (i32.const 0))
        (then (return (call $rejected (i32.const 16) (i32.const 7)))))
    (i32.store (i32.const 80) (i32.const 7))
    (i32.store (i32.const 60000) (i32.const 7))
    (i32.store (i32.const 70000) (i32.const 7))
    (call $ok (i32.const 32) (i32.const 11))"#;
    let rule = compile(&rt, body);
    for run in 0..5 {
        let out = run_rule(&rt, &rule, "{}").unwrap_or_else(|e| panic!("run {run} saw an earlier run's memory: {e}"));
        assert_eq!(out.output, r#"{"ok":true}"#);
    }
}
