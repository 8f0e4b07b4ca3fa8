//! Bad input to the engine: invocations refused before they start, inputs the rule refuses and
//! output it cannot return, direct field operations, rule writes over a limit, and engine
//! settings that cannot work.

use std::time::Duration;

use anyhow::{Result, bail, ensure};
use serde_json::json;
use wasmtx::{AccessError, EngineBuilder, EngineConfig, Error, FieldValue, Invocation, Mode, Origin, Rule, Scalar};

use super::fixtures::{Env, hand_rule, int, writes, writes_both};
use super::{
    ACCESS_BY_RULE, ACCESS_DIRECT, CANNOT_APPLY, DUPLICATE_MODEL, Expect, Held, INVALID_ACTION,
    INVALID_IDEMPOTENCY_KEY, INVALID_INPUT, INVALID_KEY, INVALID_OUTPUT, REJECTED, UNKNOWN_MODEL_TYPE, What,
    check_engine,
};
use crate::{Backend, engine_builder, on_both_stores, probe_ops};

on_both_stores!(
    invocations_refused_before_they_start_touch_no_store,
    inputs_the_rule_refuses_and_output_it_cannot_return_write_nothing,
    direct_field_operations_on_bad_input_write_nothing,
    rule_writes_over_a_limit_are_refused_and_write_nothing,
    settings_that_cannot_work_are_refused_before_the_store_is_used,
);

/// Bad action names, model keys, model lists, inputs and idempotency keys are refused before
/// the invocation starts, in every mode: it has no invocation id, and the store, fencing
/// counters and locks included, is exactly as it was.
async fn invocations_refused_before_they_start_touch_no_store(backend: Backend) -> Result<()> {
    let env = Env::new(backend, "bad-invocations", |b| b).await?;
    let (probe, _) = env.rules()?;
    env.seed(&probe).await?;
    let before = env.everything().await?;
    let long = "x".repeat(257);
    let key = |key: &str| Invocation::new("probe").model("Counter", key).input(probe_ops(&writes()));
    let action = |action: &str| {
        let mut invocation = writes_both();
        action.clone_into(&mut invocation.action);
        invocation
    };
    let input = |text: &str| writes_both().input(text);
    let idempotency_key = |key: &str| writes_both().idempotency_key(key);
    let cases: Vec<(&str, Invocation, Expect)> = vec![
        ("an unknown model type", writes_both().model("Nope", "k"), UNKNOWN_MODEL_TYPE),
        ("a model type spelled in another case", key("k").model("counter", "k"), UNKNOWN_MODEL_TYPE),
        ("an empty key", key(""), INVALID_KEY),
        ("a key over 256 bytes", key(&long), INVALID_KEY),
        ("a key with `{`", key("a{b"), INVALID_KEY),
        ("a key with `}`", key("a}b"), INVALID_KEY),
        ("a key with a newline", key("a\nb"), INVALID_KEY),
        ("a key with a NUL", key("a\0b"), INVALID_KEY),
        ("a key with DEL", key("a\u{7f}b"), INVALID_KEY),
        ("an empty action", action(""), INVALID_ACTION),
        ("an action starting with a digit", action("1abc"), INVALID_ACTION),
        ("an action with a space", action("a b"), INVALID_ACTION),
        ("an action with `/`", action("a/b"), INVALID_ACTION),
        ("an action with braces", action("a{b}"), INVALID_ACTION),
        ("an action with a non-ASCII letter", action("é"), INVALID_ACTION),
        ("an action starting with `~`", action("~l"), INVALID_ACTION),
        ("an action over 256 bytes", action(&long), INVALID_ACTION),
        ("the same model twice", writes_both().model("Counter", "k"), DUPLICATE_MODEL),
        ("input that is not JSON", input("{not json"), INVALID_INPUT),
        ("an empty input", input(""), INVALID_INPUT),
        ("input with text after the JSON", input("{} x"), INVALID_INPUT),
        ("unfinished JSON input", input("[1, 2"), INVALID_INPUT),
        ("NaN as input", input("NaN"), INVALID_INPUT),
        ("an empty idempotency key", idempotency_key(""), INVALID_IDEMPOTENCY_KEY),
        ("an idempotency key over 256 bytes", idempotency_key(&long), INVALID_IDEMPOTENCY_KEY),
        ("an idempotency key with a space", idempotency_key("a b"), INVALID_IDEMPOTENCY_KEY),
        ("an idempotency key with a tab", idempotency_key("a\tb"), INVALID_IDEMPOTENCY_KEY),
        ("an idempotency key with a newline", idempotency_key("a\nb"), INVALID_IDEMPOTENCY_KEY),
        ("an idempotency key with a control character", idempotency_key("a\u{1}b"), INVALID_IDEMPOTENCY_KEY),
        ("an idempotency key with a no-break space", idempotency_key("a\u{a0}b"), INVALID_IDEMPOTENCY_KEY),
    ];
    for mode in Mode::ALL {
        for (label, invocation, want) in &cases {
            let label = format!("{label} ({mode})");
            let error = match env.engine.invoke(&probe, &invocation.clone().mode(mode)).await {
                Ok(outcome) => bail!("{label}: accepted: {outcome:?}"),
                Err(e) => e,
            };
            check_engine(&label, &error, Origin::Invocation, *want)?;
            ensure!(
                error.invocation_id.is_none() && error.idempotency_key.is_none(),
                "{label}: refused before it started, yet it names an invocation"
            );
            ensure!(env.everything().await? == before, "{label}: the store changed");
        }
    }
    // The same invocation without the mistakes is accepted: the cases were refused for them.
    env.engine.invoke(&probe, &writes_both()).await?;
    ensure!(env.everything().await? != before, "a good invocation writes");
    Ok(())
}

/// Inputs the rule refuses (it cannot use them, or rejects them) and an output that is not
/// JSON: the engine locked and loaded the models, the rule ran and wrote, and nothing of it is
/// stored; the locks are released.
async fn inputs_the_rule_refuses_and_output_it_cannot_return_write_nothing(backend: Backend) -> Result<()> {
    let env = Env::new(backend, "rule-refusals", |b| b).await?;
    let (probe, bank_transfer) = env.rules()?;
    env.seed(&probe).await?;
    let not_json = env.engine.compile_rule("not-json", &hand_rule(false, "")?)?;
    let before = env.data().await?;
    let script = |text: &str| writes_both().input(text);
    let transfer = |text: &str| Invocation::new("transfer").model("Account", "a").model("Account", "b").input(text);
    let mut invalid_after_writes = writes();
    invalid_after_writes.push(json!({"op": "invalid_input", "message": "cannot use it"}));
    let cases: Vec<(&str, &Rule, Invocation, Expect)> = vec![
        ("a script whose ops are not a list", &probe, script(r#"{"ops": 7}"#), INVALID_INPUT),
        ("a script without ops", &probe, script("{}"), INVALID_INPUT),
        ("null for a rule that needs an object", &probe, script("null"), INVALID_INPUT),
        (
            "an input the rule calls invalid after it wrote",
            &probe,
            script(&probe_ops(&invalid_after_writes)),
            INVALID_INPUT,
        ),
        ("a negative amount", &bank_transfer, transfer(r#"{"amount": -5}"#), INVALID_INPUT),
        ("an amount that is text", &bank_transfer, transfer(r#"{"amount": "ten"}"#), INVALID_INPUT),
        ("an amount that is not an integer", &bank_transfer, transfer(r#"{"amount": 1.5}"#), INVALID_INPUT),
        ("an amount over the balance", &bank_transfer, transfer(r#"{"amount": 1000}"#), REJECTED),
        (
            "output that is not JSON, after a write",
            &not_json,
            Invocation::new("deposit").model("Account", "a"),
            INVALID_OUTPUT,
        ),
    ];
    for mode in Mode::ALL {
        for (label, rule, invocation, want) in &cases {
            let label = format!("{label} ({mode})");
            let error = match env.engine.invoke(rule, &invocation.clone().mode(mode)).await {
                Ok(outcome) => bail!("{label}: accepted: {outcome:?}"),
                Err(e) => e,
            };
            check_engine(&label, &error, Origin::Invocation, *want)?;
            ensure!(env.data().await? == before, "{label}: something was written");
            ensure!(env.held.held_locks().await?.is_empty(), "{label}: a lock is still held");
        }
    }
    // The rule that returns JSON instead writes: the output alone was the reason.
    let json_rule = env.engine.compile_rule("json", &hand_rule(true, "")?)?;
    env.engine.invoke(&json_rule, &Invocation::new("deposit").model("Account", "a")).await?;
    ensure!(env.data().await? != before, "the same rule with JSON output writes");
    Ok(())
}

/// Direct field operations (no rule) check the schema and the key before the store sees
/// anything; an increment the stored value cannot take is refused by the store, whole.
async fn direct_field_operations_on_bad_input_write_nothing(backend: Backend) -> Result<()> {
    let env = Env::new(backend, "bad-direct", |b| b).await?;
    let (probe, _) = env.rules()?;
    env.seed(&probe).await?;
    let before = env.everything().await?;
    let e = &env.engine;
    let text = |s: &str| Scalar::Str(s.into());
    let float = |f: f64| FieldValue::Scalar(Scalar::Float(f));
    let results: Vec<(&str, wasmtx::Result<()>, Expect)> = vec![
        ("set: an unknown field", e.set_field("Counter", "k", "nope", int(1)).await.map(drop), ACCESS_DIRECT),
        (
            "set: a value of another type",
            e.set_field("Counter", "k", "count", FieldValue::Scalar(text("x"))).await.map(drop),
            ACCESS_DIRECT,
        ),
        (
            "set: a list for a scalar",
            e.set_field("Counter", "k", "count", FieldValue::List(vec![])).await.map(drop),
            ACCESS_DIRECT,
        ),
        ("set: NaN", e.set_field("Counter", "k", "ratio", float(f64::NAN)).await.map(drop), ACCESS_DIRECT),
        ("set: infinity", e.set_field("Counter", "k", "ratio", float(f64::INFINITY)).await.map(drop), ACCESS_DIRECT),
        (
            "set: a list item of another type",
            e.set_field("Counter", "k", "items", FieldValue::List(vec![Scalar::Int(1)])).await.map(drop),
            ACCESS_DIRECT,
        ),
        (
            "set: a dict value of another type",
            e.set_field("Counter", "k", "tags", FieldValue::Dict([("a".to_owned(), text("x"))].into())).await.map(drop),
            ACCESS_DIRECT,
        ),
        (
            "append: an item of another type",
            e.list_append("Counter", "k", "items", vec![Scalar::Int(1)]).await.map(drop),
            ACCESS_DIRECT,
        ),
        (
            "append: to a field that is not a list",
            e.list_append("Counter", "k", "count", vec![text("x")]).await.map(drop),
            ACCESS_DIRECT,
        ),
        (
            "dict set: a value of another type",
            e.dict_set("Counter", "k", "tags", vec![("a".into(), text("x"))]).await.map(drop),
            ACCESS_DIRECT,
        ),
        (
            "dict set: on a field that is not a dict",
            e.dict_set("Counter", "k", "label", vec![("a".into(), Scalar::Int(1))]).await.map(drop),
            ACCESS_DIRECT,
        ),
        (
            "increment: a field that is not an int",
            e.increment("Counter", "k", "label", 1).await.map(drop),
            ACCESS_DIRECT,
        ),
        ("increment: an unknown field", e.increment("Counter", "k", "nope", 1).await.map(drop), ACCESS_DIRECT),
        ("increment: past i64::MAX", e.increment("Counter", "k", "count", i64::MAX).await.map(drop), CANNOT_APPLY),
        ("set: an invalid key", e.set_field("Counter", "a{b", "count", int(1)).await.map(drop), INVALID_KEY),
        ("set: an unknown model type", e.set_field("Nope", "k", "count", int(1)).await.map(drop), UNKNOWN_MODEL_TYPE),
        ("read: an empty key", e.read_model("Counter", "").await.map(drop), INVALID_KEY),
        ("read: an unknown model type", e.read_model("Nope", "k").await.map(drop), UNKNOWN_MODEL_TYPE),
        ("delete: an invalid key", e.delete_model("Counter", "a}b").await.map(drop), INVALID_KEY),
        ("delete: an unknown model type", e.delete_model("Nope", "k").await.map(drop), UNKNOWN_MODEL_TYPE),
    ];
    for (label, result, want) in &results {
        match result {
            Ok(()) => bail!("{label}: accepted"),
            Err(error) => check_engine(label, error, Origin::Direct, *want)?,
        }
    }
    ensure!(env.everything().await? == before, "a refused direct operation changed the store");
    e.increment("Counter", "k", "count", 1).await?;
    ensure!(env.everything().await? != before, "a good increment writes");
    Ok(())
}

/// A rule's writes over the list, dict and value-size limits, and an increment that would
/// overflow, fail the run with a typed access error: nothing of the run is stored.
async fn rule_writes_over_a_limit_are_refused_and_write_nothing(backend: Backend) -> Result<()> {
    let env = Env::new(backend, "limits", |b| {
        let mut config = EngineConfig::default();
        config.runtime.limits.max_list_len = 3;
        config.runtime.limits.max_dict_len = 2;
        config.runtime.limits.max_value_bytes = 64;
        b.config(config)
    })
    .await?;
    let (probe, _) = env.rules()?;
    env.seed(&probe).await?; // `items` holds 2 items now
    let before = env.data().await?;
    let cases = [
        ("a list over max_list_len", json!({"op": "list_extend", "field": "items", "items": ["a", "b"]})),
        (
            "a dict over max_dict_len",
            json!({"op": "dict_update", "field": "tags", "entries": {"a": 1, "b": 2, "c": 3}}),
        ),
        ("a value over max_value_bytes", json!({"op": "set", "field": "label", "value": "x".repeat(65)})),
        ("an increment past i64::MAX", json!({"op": "increment", "field": "count", "delta": i64::MAX})),
    ];
    for mode in Mode::ALL {
        for (label, op) in &cases {
            let label = format!("{label} ({mode})");
            let mut ops = writes();
            ops.push(op.clone());
            let error = match env.engine.invoke(&probe, &writes_both().input(probe_ops(&ops)).mode(mode)).await {
                Ok(outcome) => bail!("{label}: accepted: {outcome:?}"),
                Err(e) => e,
            };
            check_engine(&label, &error, Origin::Invocation, ACCESS_BY_RULE)?;
            ensure!(
                matches!(&*error, Error::Access { error: AccessError::LimitExceeded { .. }, .. }),
                "{label}: {error:?}"
            );
            ensure!(env.data().await? == before, "{label}: something was written");
        }
    }
    Ok(())
}

/// Settings that cannot work are refused when the engine is built, before it uses the store,
/// naming the setting.
async fn settings_that_cannot_work_are_refused_before_the_store_is_used(backend: Backend) -> Result<()> {
    let (held, store, _) = Held::open(backend, "bad-settings").await?;
    let seeded = engine_builder()?.shared_store(store.clone()).build()?;
    seeded.set_field("Counter", "k", "count", int(5)).await?;
    let before = held.text(What::Everything).await?;
    let with = |tweak: fn(&mut EngineConfig)| {
        let mut config = EngineConfig::default();
        tweak(&mut config);
        config
    };
    let cases: Vec<(&str, EngineBuilder, &str)> = vec![
        ("a lease no longer than the rule deadline", engine_builder()?.lease(Duration::from_millis(100)), "lease"),
        ("a zero acquire timeout", engine_builder()?.acquire_timeout(Duration::ZERO), "acquire timeout"),
        ("a group size of 0", engine_builder()?.max_group(0), "max_group"),
        ("a group size over 10 000", engine_builder()?.max_group(10_001), "max_group"),
        (
            "an idempotency retention under 1 s",
            engine_builder()?.idempotency_retention(Duration::from_millis(999)),
            "retention",
        ),
        ("a zero rule deadline", engine_builder()?.deadline(Duration::ZERO), "deadline"),
        (
            "a rule deadline over an hour",
            engine_builder()?.deadline(Duration::from_secs(7200)).lease(Duration::from_secs(10_800)),
            "deadline",
        ),
        ("a memory cap under one page", engine_builder()?.memory_limit(1000), "memory_limit"),
        ("a memory cap over 4 GiB", engine_builder()?.memory_limit(5 << 30), "memory_limit"),
        ("a rule size limit of 0", engine_builder()?.max_rule_bytes(0), "max_rule_bytes"),
        (
            "a yield interval under 100 µs",
            engine_builder()?.config(with(|c| c.runtime.yield_interval = Duration::from_micros(50))),
            "yield_interval",
        ),
        ("no rule thread", engine_builder()?.config(with(|c| c.runtime.rule_threads = 0)), "rule_threads"),
        ("no instance slot", engine_builder()?.config(with(|c| c.runtime.max_instances = 0)), "max_instances"),
        (
            "a yield interval over 100 ms",
            engine_builder()?.config(with(|c| c.runtime.yield_interval = Duration::from_millis(101))),
            "yield_interval",
        ),
        ("a list limit of 0", engine_builder()?.config(with(|c| c.runtime.limits.max_list_len = 0)), "max_list_len"),
        ("a dict limit of 0", engine_builder()?.config(with(|c| c.runtime.limits.max_dict_len = 0)), "max_dict_len"),
        (
            "a value-size limit of 0",
            engine_builder()?.config(with(|c| c.runtime.limits.max_value_bytes = 0)),
            "max_value_bytes",
        ),
    ];
    for (label, builder, needle) in cases {
        match builder.shared_store(store.clone()).build() {
            Ok(_) => bail!("{label}: accepted"),
            Err(error) => {
                check_engine(label, &error, Origin::Direct, INVALID_INPUT)?;
                ensure!(error.to_string().contains(needle), "{label}: the message does not name {needle:?}: {error}");
            }
        }
    }
    ensure!(held.text(What::Everything).await? == before, "building refused engines changed the store");
    Ok(())
}
