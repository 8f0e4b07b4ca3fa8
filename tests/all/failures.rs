//! Everything that must write nothing: rule rejections, traps, deadlines, memory caps, bad
//! input of every kind, and a commit fenced off after its lease ran out.

use std::time::Duration;

use crate::gated::GatedStore;
use crate::{Backend, TestEnv, on_both_stores, probe_ops};
use anyhow::{Result, bail};
use serde_json::json;
use wasmtx::{AccessError, Error, FieldValue, Invocation, RetryPolicy, RuleLoadError, Scalar};

on_both_stores!(
    rule_failures_write_nothing_and_release_their_locks,
    bad_invocations_get_typed_errors_and_write_nothing,
    rule_access_errors_are_typed_and_write_nothing,
    bad_rule_bytes_are_refused_with_precise_errors,
    a_stale_holder_is_fenced_off_and_the_new_holder_write_survives,
);

const MODELS: [(&str, &str); 2] = [("Counter", "k"), ("Account", "a")];

/// Whether an error is the one a case expects.
type ErrorCheck = fn(&Error) -> bool;
/// Whether an access error is the one a case expects.
type AccessErrorCheck = fn(&AccessError) -> bool;

fn seed_ops() -> Vec<serde_json::Value> {
    vec![
        json!({"op": "increment", "model": 0, "field": "count", "delta": 5}),
        json!({"op": "append", "model": 0, "field": "items", "item": "kept"}),
    ]
}

fn probe(ops: &[serde_json::Value]) -> Invocation {
    Invocation::new("probe").model("Counter", "k").model("Account", "a").input(probe_ops(ops))
}

async fn rule_failures_write_nothing_and_release_their_locks(backend: Backend) -> Result<()> {
    let env =
        TestEnv::with(backend, "failures", |b| b.deadline(Duration::from_millis(200)).memory_limit(8 << 20)).await?;
    env.engine.invoke(&env.rules.probe, &probe(&seed_ops())).await.map_err(Error::from)?;
    let before = env.fingerprint(&MODELS).await?;
    // Each failure comes after writes, so "nothing written" is a real check.
    let writes = seed_ops();
    let cases: Vec<(serde_json::Value, ErrorCheck)> = vec![
        (json!({"op": "reject", "message": "no"}), |e| matches!(e, Error::Rejected { message } if message == "no")),
        (json!({"op": "trap"}), |e| matches!(e, Error::Trapped { .. })),
        (
            json!({"op": "loop"}),
            |e| matches!(e, Error::DeadlineExceeded { limit } if *limit == Duration::from_millis(200)),
        ),
        (
            json!({"op": "alloc", "bytes": 64 << 20}),
            |e| matches!(e, Error::MemoryLimitExceeded { limit_bytes } if *limit_bytes == 8 << 20),
        ),
        // Deep enough to exhaust the wasm call stack long before the deadline.
        (
            json!({"op": "recurse", "depth": 1_000_000_000_u64}),
            |e| matches!(e, Error::Trapped { message } if message.starts_with("stack overflow")),
        ),
        // The guest's own 64 KiB stack in linear memory runs out first: the trap is an
        // out-of-bounds access, which the message says may be a stack overflow.
        (json!({"op": "recurse", "depth": 1_000_000, "shadow": true}), |e| {
            matches!(e, Error::Trapped { message }
                if message.contains("out of bounds memory access") && message.contains("stack overflow"))
        }),
    ];
    for (failure, expected) in cases {
        let mut ops = writes.clone();
        ops.push(failure.clone());
        let err = env.engine.invoke(&env.rules.probe, &probe(&ops)).await.map_err(Error::from).expect_err("must fail");
        assert!(expected(&err), "{failure}: unexpected error {err:?}");
        assert!(!err.is_retryable(), "{failure}: a rule failure is not retryable");
        assert_eq!(env.fingerprint(&MODELS).await?, before, "{failure} wrote something");
        assert!(env.held_locks().await?.is_empty(), "{failure} left a lock");
    }
    // The engine still works after all that, and the locks are free.
    env.engine.invoke(&env.rules.probe, &probe(&seed_ops())).await.map_err(Error::from)?;
    Ok(())
}

async fn bad_invocations_get_typed_errors_and_write_nothing(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend, "bad-input").await?;
    let ok_ops = probe_ops(&seed_ops());
    let before = env.fingerprint(&MODELS).await?;
    let rule = &env.rules.probe;
    let run = |inv: Invocation| {
        let env = env.clone();
        let rule = rule.clone();
        async move { env.engine.invoke(&rule, &inv).await.map_err(Error::from).expect_err("must be refused") }
    };

    let e = run(Invocation::new("probe").model("Nope", "k").input(ok_ops.clone())).await;
    assert!(matches!(&e, Error::UnknownModelType { model_type } if model_type == "Nope"), "{e:?}");
    let e = run(Invocation::new("probe").model("Counter", "k").input("{not json")).await;
    assert!(matches!(&e, Error::InvalidInput { reason } if reason.contains("not valid JSON")), "{e:?}");
    let e = run(Invocation::new("probe").model("Counter", "a{b}").input(ok_ops.clone())).await;
    assert!(matches!(&e, Error::InvalidKey { .. }), "{e:?}");
    let e = run(Invocation::new("bad action!").model("Counter", "k").input(ok_ops.clone())).await;
    assert!(matches!(&e, Error::InvalidAction { .. }), "{e:?}");
    let e = run(Invocation::new("probe").model("Counter", "k").model("Counter", "k").input(ok_ops.clone())).await;
    assert!(matches!(&e, Error::DuplicateModel { .. }), "{e:?}");
    // Well-formed JSON that the rule cannot use: the rule's own typed refusal.
    let e = run(Invocation::new("probe").model("Counter", "k").input(r#"{"ops": 7}"#)).await;
    assert!(matches!(&e, Error::InvalidInput { .. }), "{e:?}");
    let e = env
        .engine
        .invoke(
            &env.rules.bank_transfer,
            &Invocation::new("transfer").model("Account", "a").model("Account", "b").input(r#"{"amount": -5}"#),
        )
        .await
        .map_err(Error::from)
        .expect_err("negative amount");
    assert!(matches!(&e, Error::InvalidInput { .. }), "{e:?}");

    // Direct field operations check the schema too.
    let e = env
        .engine
        .set_field("Counter", "k", "nope", FieldValue::Scalar(Scalar::Int(1)))
        .await
        .expect_err("unknown field");
    assert!(matches!(&e, Error::Access { error: AccessError::UnknownField { .. }, .. }), "{e:?}");
    let e = env
        .engine
        .set_field("Counter", "k", "count", FieldValue::Scalar(Scalar::Str("x".into())))
        .await
        .expect_err("wrong type");
    assert!(matches!(&e, Error::Access { error: AccessError::TypeMismatch { .. }, .. }), "{e:?}");
    let e = env.engine.list_append("Counter", "k", "items", vec![Scalar::Int(1)]).await.expect_err("wrong item");
    assert!(matches!(&e, Error::Access { error: AccessError::TypeMismatch { .. }, .. }), "{e:?}");
    let e = env.engine.increment("Counter", "k", "label", 1).await.expect_err("not an int");
    assert!(matches!(&e, Error::Access { error: AccessError::TypeMismatch { .. }, .. }), "{e:?}");

    // A NaN or infinite float is one mistake with one kind, whether a rule or a direct
    // operation writes it: the same access error, naming the same model and field.
    for (text, value) in [("NaN", f64::NAN), ("inf", f64::INFINITY), ("-inf", f64::NEG_INFINITY)] {
        let direct = env
            .engine
            .set_field("Counter", "k", "ratio", FieldValue::Scalar(Scalar::Float(value)))
            .await
            .expect_err("non-finite");
        let ops = [
            json!({"op": "increment", "model": 0, "field": "count", "delta": 5}),
            json!({"op": "set", "model": 0, "field": "ratio", "value": {"$float": text}}),
        ];
        let by_rule = run(probe(&ops)).await;
        match (&direct, &by_rule) {
            (
                Error::Access { model: Some(direct_model), error: direct_error },
                Error::Access { model: Some(rule_model), error: rule_error },
            ) => {
                assert!(
                    matches!(direct_error, AccessError::TypeMismatch { field, .. } if field == "ratio"),
                    "{text}: {direct_error:?}"
                );
                assert_eq!(direct_error, rule_error, "{text}: the same error both ways");
                assert_eq!(direct_model, rule_model, "{text}");
            }
            _ => bail!("{text}: expected two access errors, got {direct:?} and {by_rule:?}"),
        }
    }

    assert_eq!(env.fingerprint(&MODELS).await?, before);
    assert!(env.held_locks().await?.is_empty());
    Ok(())
}

async fn rule_access_errors_are_typed_and_write_nothing(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend, "access").await?;
    env.engine.invoke(&env.rules.probe, &probe(&seed_ops())).await.map_err(Error::from)?;
    let before = env.fingerprint(&MODELS).await?;
    let cases: Vec<(serde_json::Value, AccessErrorCheck)> = vec![
        (
            json!({"op": "get", "model": 0, "field": "nope"}),
            |e| matches!(e, AccessError::UnknownField { field } if field == "nope"),
        ),
        (
            json!({"op": "set", "model": 0, "field": "count", "value": "text"}),
            |e| matches!(e, AccessError::TypeMismatch { field, .. } if field == "count"),
        ),
        (json!({"op": "append", "model": 0, "field": "items", "item": 3}), |e| {
            matches!(e, AccessError::TypeMismatch { .. })
        }),
        (json!({"op": "increment", "model": 0, "field": "label", "delta": 1}), |e| {
            matches!(e, AccessError::TypeMismatch { .. })
        }),
        (json!({"op": "list_pop", "model": 0, "field": "items", "index": 9}), |e| {
            matches!(e, AccessError::IndexOutOfRange { index: 9, len: 2, .. })
        }),
        (json!({"op": "list_remove", "model": 0, "field": "items", "item": "absent"}), |e| {
            matches!(e, AccessError::NotFound { .. })
        }),
        (json!({"op": "open", "model_type": "Counter", "key": "undeclared"}), |e| {
            matches!(e, AccessError::Denied { .. })
        }),
        (json!({"op": "open_index", "index": 7}), |e| matches!(e, AccessError::Denied { .. })),
        (json!({"op": "increment", "model": 0, "field": "count", "delta": i64::MAX}), |e| {
            matches!(e, AccessError::LimitExceeded { .. })
        }),
    ];
    for (op, expected) in cases {
        let mut ops = seed_ops();
        ops.push(op.clone());
        let err = env.engine.invoke(&env.rules.probe, &probe(&ops)).await.map_err(Error::from).expect_err("must fail");
        match &err {
            Error::Access { error, .. } => assert!(expected(error), "{op}: unexpected {error:?}"),
            other => bail!("{op}: expected an access error, got {other:?}"),
        }
        assert_eq!(env.fingerprint(&MODELS).await?, before, "{op} wrote something");
    }
    Ok(())
}

async fn bad_rule_bytes_are_refused_with_precise_errors(backend: Backend) -> Result<()> {
    let env = TestEnv::new(backend, "bad-rules").await?;
    let compile = |bytes: &[u8]| env.engine.compile_rule("bad", bytes).expect_err("must be refused");

    assert!(matches!(compile(b"definitely not wasm"), Error::InvalidRule(RuleLoadError::NotWasm)));
    assert!(matches!(compile(b"\0asm\x01\0\0\0\xff\xff"), Error::InvalidRule(RuleLoadError::Malformed(_))));
    let wasi = wat::parse_str(
        r#"(component
            (import "wasi:cli/environment@0.2.0" (instance
                (export "get-arguments" (func (result (list string))))))
        )"#,
    )?;
    match compile(&wasi) {
        Error::InvalidRule(RuleLoadError::ForbiddenImport { name }) => assert_eq!(name, "wasi:cli/environment@0.2.0"),
        other => bail!("expected ForbiddenImport, got {other:?}"),
    }
    let plain_module = wat::parse_str("(module (func (export \"run\")))")?;
    assert!(matches!(compile(&plain_module), Error::InvalidRule(RuleLoadError::NotARule(_))));
    let empty_component = wat::parse_str("(component)")?;
    assert!(matches!(compile(&empty_component), Error::InvalidRule(RuleLoadError::WrongWorld(_))));
    let name_err = env.engine.compile_rule("bad name!", &empty_component).expect_err("bad name");
    assert!(matches!(name_err, Error::InvalidRuleName { .. }));

    // A component made ahead of time (not only a core module) is accepted too.
    let core = std::fs::read(&crate::rules()?.bank_transfer)?;
    let component = wit_component::ComponentEncoder::default().module(&core)?.validate(true).encode()?;
    let rule = env.engine.compile_rule("bank-transfer-component", &component)?;
    env.engine.set_field("Account", "x", "balance", FieldValue::Scalar(Scalar::Int(5))).await?;
    let out = env
        .engine
        .invoke(
            &rule,
            &Invocation::new("transfer").model("Account", "x").model("Account", "y").input(r#"{"amount": 5}"#),
        )
        .await
        .map_err(Error::from)?;
    assert_eq!(out.output_as::<String>()?, "Transferred 5 successfully");
    Ok(())
}

/// The fencing guarantee Rapyer lacks: holder A's lease runs out while it is between its rule
/// and its commit; holder B takes the lock and commits; A's late commit is refused with
/// `LockLost`, writes nothing, and B's write survives.
async fn a_stale_holder_is_fenced_off_and_the_new_holder_write_survives(backend: Backend) -> Result<()> {
    let base = TestEnv::new(backend, "fencing").await?;
    let gated = GatedStore::new(base.engine.store().clone());
    let mut gate = gated.arm();
    let lease = Duration::from_millis(400);
    let stale = crate::engine_builder()?
        .shared_store(gated)
        .lease(lease)
        .deadline(Duration::from_millis(100))
        .retry(RetryPolicy::never()) // observe the refusal instead of a successful re-run
        .build()?;
    let stale_rule = crate::compile_rules(&stale)?.probe;

    let set = |value: i64| {
        Invocation::new("write")
            .model("Counter", "f")
            .input(probe_ops(&[json!({"op": "set", "model": 0, "field": "count", "value": value})]))
    };
    let a = tokio::spawn({
        let stale = stale.clone();
        async move { stale.invoke(&stale_rule, &set(111)).await.map_err(Error::from) }
    });
    gate.wait_reached().await?; // A ran its rule and waits at the commit gate, holding the lock.

    // B (another engine on the same store) waits for the lock until A's lease runs out.
    let b = base.engine.invoke(&base.rules.probe, &set(222)).await.map_err(Error::from)?;
    assert!(b.timings.wait > Duration::ZERO);
    gate.open();
    match a.await? {
        Err(Error::LockLost { lock }) => {
            assert_eq!(lock.model.key, "f");
            assert_eq!(lock.action, "write");
        }
        other => bail!("expected LockLost, got {other:?}"),
    }
    let count = base.engine.read_model("Counter", "f").await?.values[0].clone();
    assert_eq!(count, FieldValue::Scalar(Scalar::Int(222)), "B's write must survive");
    assert!(base.held_locks().await?.is_empty());
    Ok(())
}
