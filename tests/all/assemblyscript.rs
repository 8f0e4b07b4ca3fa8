//! AssemblyScript rules (built from source with the AssemblyScript SDK) against their Rust twins,
//! on a real Redis and on the embedded store: the same results, the same errors, nothing
//! written on a rejection, and models that either language can work on.
//!
//! - the shopping cart and the user profile (the reference's `add_items_to_cart` and
//!   `update_user_settings`) in both languages;
//! - the probe twins: one script of model operations run through the Rust probe and the
//!   AssemblyScript probe, which exercises every function of the SDK's generated glue (every
//!   WIT type crosses in both directions, strings in UTF-16) and every error path.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::{Backend, TestEnv, TwinRules, compile_twin_rules, on_both_stores};
use anyhow::{Context as _, Result, ensure};
use serde_json::{Value as Json, json};
use wasmtx::{Error, FieldValue, Invocation, Mode, Outcome, Rule, Scalar};

on_both_stores!(
    shopping_cart_twins_give_the_same_results_and_state,
    shopping_cart_rejection_writes_nothing_in_either_language,
    shopping_cart_input_is_checked_before_anything_is_added,
    user_profile_twins_give_the_same_results_and_state,
    user_profile_rejects_invalid_emails_and_writes_nothing,
    rust_and_assemblyscript_rules_take_turns_on_the_same_cart,
    rust_and_assemblyscript_rules_share_a_cart_concurrently,
    rust_and_assemblyscript_rules_take_turns_on_the_same_profile,
    probe_twins_agree_on_every_operation_and_error,
    an_assemblyscript_rule_can_take_a_failure_and_go_on,
    an_assemblyscript_trap_writes_nothing_and_names_the_functions,
);

/// A test environment with the twin rules compiled.
async fn env(backend: Backend, name: &str) -> Result<(TestEnv, TwinRules)> {
    let env = TestEnv::new(backend, name).await?;
    let twins = compile_twin_rules(&env.engine)?;
    Ok((env, twins))
}

async fn state(env: &TestEnv, model_type: &str, key: &str) -> Result<Json> {
    let schema = env.engine.model_type(model_type)?;
    Ok(env.engine.read_model(model_type, key).await?.to_json(&schema))
}

fn output(outcome: &Outcome) -> Result<Json> {
    serde_json::from_str(&outcome.output).with_context(|| format!("output {:?} is not JSON", outcome.output))
}

/// An invocation's result as one comparable value: the output JSON, or the error's variant and
/// payload (a trap's message names the language's own frames, so only the variant counts).
fn view(result: &Result<Outcome, Error>) -> Json {
    match result {
        Ok(outcome) => serde_json::from_str(&outcome.output).unwrap_or_else(|_| json!({ "raw": outcome.output })),
        Err(Error::Trapped { .. }) => json!({ "error": "trapped" }),
        Err(e) => json!({ "error": e.kind(), "debug": format!("{e:?}") }),
    }
}

/// Both languages' rules for one example.
struct Pair<'a> {
    rust: &'a Rule,
    assemblyscript: &'a Rule,
}

impl Pair<'_> {
    fn both(&self) -> [(&'static str, &Rule); 2] {
        [("rust", self.rust), ("assemblyscript", self.assemblyscript)]
    }
}

fn cart_pair(twins: &TwinRules) -> Pair<'_> {
    Pair { rust: &twins.shopping_cart, assemblyscript: &twins.shopping_cart_as }
}

fn profile_pair(twins: &TwinRules) -> Pair<'_> {
    Pair { rust: &twins.user_profile, assemblyscript: &twins.user_profile_as }
}

fn add_items(key: &str, items: Json, mode: Mode) -> Invocation {
    Invocation::new("add_items").model("ShoppingCart", key).input(json!({ "items": items }).to_string()).mode(mode)
}

fn item(id: &str, quantity: i64, price: i64) -> Json {
    json!({ "item_id": id, "quantity": quantity, "price": price })
}

// ---- shopping cart

async fn shopping_cart_twins_give_the_same_results_and_state(backend: Backend) -> Result<()> {
    let (env, twins) = env(backend, "cart-twins").await?;
    let mut finals = Vec::new();
    for (language, rule) in cart_pair(&twins).both() {
        let key = format!("cart-{language}");
        env.engine.set_field("ShoppingCart", &key, "user_id", FieldValue::Scalar(Scalar::Str("u1".into()))).await?;

        // The reference runs it in a pipeline; lock mode must give the same.
        let first =
            add_items(&key, json!([item("apple", 2, 30), item("pear", 1, 5), item("apple", 1, 30)]), Mode::Pipeline);
        let out = env
            .engine
            .invoke(rule, &first)
            .await
            .map_err(Error::from)
            .with_context(|| format!("{language}: first add"))?;
        assert_eq!(output(&out)?, json!({"items": 3, "total_price": 95}), "{language}");

        let second = add_items(&key, json!([item("kiwi", 4, 10), item("pear", 2, 5)]), Mode::Lock);
        let out = env
            .engine
            .invoke(rule, &second)
            .await
            .map_err(Error::from)
            .with_context(|| format!("{language}: second add"))?;
        assert_eq!(output(&out)?, json!({"items": 5, "total_price": 145}), "{language}");

        let empty = add_items(&key, json!([]), Mode::Lock);
        let out = env.engine.invoke(rule, &empty).await.map_err(Error::from)?;
        assert_eq!(output(&out)?, json!({"items": 5, "total_price": 145}), "{language}: an empty order");
        assert!(!out.wrote_anything(), "{language}: an empty order writes nothing");

        let cart = state(&env, "ShoppingCart", &key).await?;
        assert_eq!(
            cart,
            json!({
                "user_id": "u1",
                "items": ["apple", "pear", "apple", "kiwi", "pear"],
                "quantities": {"apple": 3, "kiwi": 4, "pear": 3},
                "total_price": 145,
            }),
            "{language}"
        );
        finals.push(cart);
    }
    assert_eq!(finals[0], finals[1]);
    Ok(())
}

async fn shopping_cart_rejection_writes_nothing_in_either_language(backend: Backend) -> Result<()> {
    let (env, twins) = env(backend, "cart-reject").await?;
    let mut errors = Vec::new();
    for (language, rule) in cart_pair(&twins).both() {
        let key = format!("cart-{language}");
        env.engine
            .invoke(rule, &add_items(&key, json!([item("apple", 2, 30)]), Mode::Lock))
            .await
            .map_err(Error::from)?;
        let models = [("ShoppingCart", key.as_str())];
        let before = env.fingerprint(&models).await?;

        // The first item is added (buffered), the second is refused: neither is written.
        for (items, message) in [
            (json!([item("pear", 1, 5), item("kiwi", 0, 10)]), "invalid quantity 0 for kiwi: must be 1 to 1000000"),
            (
                json!([item("pear", 1, 5), item("kiwi", 2_000_000, 10)]),
                "invalid quantity 2000000 for kiwi: must be 1 to 1000000",
            ),
            (json!([item("pear", 1, -5)]), "invalid price -5 for pear: must be 0 to 1000000000000"),
        ] {
            for mode in [Mode::Lock, Mode::Pipeline, Mode::Optimistic] {
                let result = env.engine.invoke(rule, &add_items(&key, items.clone(), mode)).await.map_err(Error::from);
                match &result {
                    Err(Error::Rejected { message: got }) => assert_eq!(got, message, "{language} {mode:?}"),
                    other => panic!("{language} {mode:?}: expected a rejection, got {other:?}"),
                }
                errors.push((language, view(&result)));
                assert_eq!(env.fingerprint(&models).await?, before, "{language} {mode:?}: a rejection wrote something");
                assert!(env.held_locks().await?.is_empty(), "{language} {mode:?}: a rejection left a lock");
            }
        }
    }
    let (rust, assemblyscript): (Vec<_>, Vec<_>) = errors.into_iter().partition(|(language, _)| *language == "rust");
    let strip = |v: Vec<(&str, Json)>| v.into_iter().map(|(_, e)| e).collect::<Vec<_>>();
    assert_eq!(strip(rust), strip(assemblyscript), "the same errors from both languages");
    Ok(())
}

async fn shopping_cart_input_is_checked_before_anything_is_added(backend: Backend) -> Result<()> {
    let (env, twins) = env(backend, "cart-input").await?;
    for (language, rule) in cart_pair(&twins).both() {
        let key = format!("cart-{language}");
        let models = [("ShoppingCart", key.as_str())];
        let before = env.fingerprint(&models).await?;
        for input in [
            json!({}),
            json!({"items": "apple"}),
            json!({"items": [{"item_id": "apple", "quantity": 1}]}),
            json!({"items": [{"item_id": "apple", "quantity": "2", "price": 3}]}),
            json!({"items": [{"item_id": "apple", "quantity": 2.0, "price": 3}]}),
            json!({"items": [{"item_id": 7, "quantity": 2, "price": 3}]}),
            // A refusable first item, then a malformed one: the shape is checked first.
            json!({"items": [item("apple", 0, 1), {"item_id": "pear"}]}),
            json!(null),
            json!([1, 2]),
        ] {
            let invocation = Invocation::new("add_items").model("ShoppingCart", &key).input(input.to_string());
            let result = env.engine.invoke(rule, &invocation).await.map_err(Error::from);
            assert!(
                matches!(result, Err(Error::InvalidInput { .. })),
                "{language}: {input} should be invalid input, got {result:?}"
            );
        }
        assert_eq!(env.fingerprint(&models).await?, before, "{language}: invalid input wrote something");
    }
    Ok(())
}

// ---- user profile

fn update_settings(key: &str, email: &str, theme: &str) -> Invocation {
    Invocation::new("update_settings")
        .model("UserProfile", key)
        .input(json!({ "new_email": email, "theme": theme }).to_string())
        .mode(Mode::Pipeline)
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[test]
fn iso_time_formats_utc_with_milliseconds() {
    assert_eq!(crate::iso_utc(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(crate::iso_utc(951_825_600_123), "2000-02-29T12:00:00.123Z");
    assert_eq!(crate::iso_utc(-1), "1969-12-31T23:59:59.999Z");
}

/// Checks `last_login` lies between two instants and removes it (it differs between runs).
fn take_last_login(profile: &mut Json, before: i64, after: i64) -> Result<()> {
    let stamp = profile
        .as_object_mut()
        .and_then(|p| p.remove("last_login"))
        .and_then(|v| v.as_str().map(str::to_owned))
        .context("last_login")?;
    ensure!(stamp.len() == 24 && stamp.ends_with('Z'), "last_login {stamp:?} is not ISO 8601 with milliseconds");
    ensure!(
        crate::iso_utc(before) <= stamp && stamp <= crate::iso_utc(after),
        "last_login {stamp} is not between {} and {}",
        crate::iso_utc(before),
        crate::iso_utc(after)
    );
    Ok(())
}

async fn user_profile_twins_give_the_same_results_and_state(backend: Backend) -> Result<()> {
    let (env, twins) = env(backend, "profile-twins").await?;
    let mut finals = Vec::new();
    for (language, rule) in profile_pair(&twins).both() {
        let key = format!("ada-{language}");
        let e = &env.engine;
        e.set_field("UserProfile", &key, "username", FieldValue::Scalar(Scalar::Str("ada".into()))).await?;
        e.set_field("UserProfile", &key, "email", FieldValue::Scalar(Scalar::Str("ada@old.example".into()))).await?;
        e.dict_set("UserProfile", &key, "preferences", vec![("language".into(), Scalar::Str("en".into()))]).await?;

        let before = now_ms();
        let out = e.invoke(rule, &update_settings(&key, "ada@new.example", "dark")).await.map_err(Error::from)?;
        assert_eq!(
            output(&out)?,
            json!({"username": "ada", "previous_email": "ada@old.example", "email": "ada@new.example"}),
            "{language}"
        );
        let out = e
            .invoke(rule, &update_settings(&key, "lovelace+ü@analytical.engine", "sépia 🌅"))
            .await
            .map_err(Error::from)?;
        let after = now_ms();
        assert_eq!(
            output(&out)?,
            json!({"username": "ada", "previous_email": "ada@new.example", "email": "lovelace+ü@analytical.engine"}),
            "{language}"
        );

        let mut profile = state(&env, "UserProfile", &key).await?;
        take_last_login(&mut profile, before, after).with_context(|| language)?;
        assert_eq!(
            profile,
            json!({
                "username": "ada",
                "email": "lovelace+ü@analytical.engine",
                "preferences": {"email_notifications": "enabled", "language": "en", "theme": "sépia 🌅"},
                "activity_log": [
                    "Email changed from ada@old.example to ada@new.example",
                    "Theme changed to dark",
                    "Email changed from ada@new.example to lovelace+ü@analytical.engine",
                    "Theme changed to sépia 🌅",
                ],
            }),
            "{language}"
        );
        finals.push(profile);
    }
    assert_eq!(finals[0], finals[1]);
    Ok(())
}

async fn user_profile_rejects_invalid_emails_and_writes_nothing(backend: Backend) -> Result<()> {
    let (env, twins) = env(backend, "profile-reject").await?;
    let mut seen = Vec::new();
    for (language, rule) in profile_pair(&twins).both() {
        let key = format!("bob-{language}");
        env.engine.invoke(rule, &update_settings(&key, "bob@example.com", "light")).await.map_err(Error::from)?;
        let models = [("UserProfile", key.as_str())];
        let before = env.fingerprint(&models).await?;
        for email in [
            "",
            "bob",
            "@example.com",
            "bob@",
            "bob@example",
            "bob@.com",
            "bob@example.",
            "b@b@example.com",
            "bob smith@example.com",
        ] {
            let result = env.engine.invoke(rule, &update_settings(&key, email, "dark")).await.map_err(Error::from);
            match &result {
                Err(Error::Rejected { message }) => {
                    assert_eq!(message, &format!("invalid email address: {email}"), "{language}");
                }
                other => panic!("{language}: {email:?} should be rejected, got {other:?}"),
            }
            seen.push(view(&result));
        }
        for input in [
            json!({"new_email": "bob@example.com"}),
            json!({"theme": "dark"}),
            json!({"new_email": 5, "theme": "dark"}),
        ] {
            let invocation = Invocation::new("update_settings").model("UserProfile", &key).input(input.to_string());
            let result = env.engine.invoke(rule, &invocation).await.map_err(Error::from);
            assert!(matches!(result, Err(Error::InvalidInput { .. })), "{language}: {input} gave {result:?}");
        }
        assert_eq!(env.fingerprint(&models).await?, before, "{language}: a refusal wrote something");
        assert!(env.held_locks().await?.is_empty());
    }
    let (rust, assemblyscript) = seen.split_at(seen.len() / 2);
    assert_eq!(rust, assemblyscript, "the same errors from both languages");
    Ok(())
}

// ---- one model, both languages

async fn rust_and_assemblyscript_rules_take_turns_on_the_same_cart(backend: Backend) -> Result<()> {
    let (env, twins) = env(backend, "cart-shared").await?;
    let pair = cart_pair(&twins);
    let orders = [
        (pair.rust, json!([item("apple", 2, 30)])),
        (pair.assemblyscript, json!([item("apple", 1, 30), item("pear", 3, 5)])),
        (pair.rust, json!([item("pear", 1, 5)])),
        (pair.assemblyscript, json!([item("kiwi", 2, 12)])),
    ];
    let mut total = 0;
    let mut count = 0;
    for (i, (rule, items)) in orders.iter().enumerate() {
        for line in items.as_array().into_iter().flatten() {
            total += line["quantity"].as_i64().unwrap_or_default() * line["price"].as_i64().unwrap_or_default();
            count += 1;
        }
        let out =
            env.engine.invoke(rule, &add_items("shared", items.clone(), Mode::Lock)).await.map_err(Error::from)?;
        assert_eq!(output(&out)?, json!({"items": count, "total_price": total}), "order {i}");
    }
    assert_eq!(
        state(&env, "ShoppingCart", "shared").await?,
        json!({
            "user_id": "",
            "items": ["apple", "apple", "pear", "pear", "kiwi"],
            "quantities": {"apple": 3, "kiwi": 2, "pear": 4},
            "total_price": 2 * 30 + 30 + 3 * 5 + 5 + 2 * 12,
        })
    );

    // A refusal from either language leaves the other's writes alone.
    let before = env.fingerprint(&[("ShoppingCart", "shared")]).await?;
    for (_, rule) in pair.both() {
        let result = env
            .engine
            .invoke(rule, &add_items("shared", json!([item("fig", 1, 1), item("fig", 0, 1)]), Mode::Lock))
            .await
            .map_err(Error::from);
        assert!(matches!(result, Err(Error::Rejected { .. })), "{result:?}");
    }
    assert_eq!(env.fingerprint(&[("ShoppingCart", "shared")]).await?, before);
    Ok(())
}

async fn rust_and_assemblyscript_rules_share_a_cart_concurrently(backend: Backend) -> Result<()> {
    let (env, twins) = env(backend, "cart-concurrent").await?;
    const ORDERS: i64 = 24;
    let mut tasks = Vec::new();
    for i in 0..ORDERS {
        let engine = env.engine.clone();
        let rule = if i % 2 == 0 { twins.shopping_cart.clone() } else { twins.shopping_cart_as.clone() };
        tasks.push(tokio::spawn(async move {
            let id = if i % 2 == 0 { "rust-item" } else { "as-item" };
            // Lock mode: `quantities[id] = quantities.get(id, 0) + n` is a read-modify-write,
            // which a pipeline would apply without the lock.
            engine
                .invoke(&rule, &add_items("busy", json!([item(id, i + 1, 10)]), Mode::Lock))
                .await
                .map_err(Error::from)
        }));
    }
    for task in tasks {
        task.await??;
    }
    let cart = state(&env, "ShoppingCart", "busy").await?;
    let rust_quantity: i64 = (0..ORDERS).filter(|i| i % 2 == 0).map(|i| i + 1).sum();
    let as_quantity: i64 = (0..ORDERS).filter(|i| i % 2 == 1).map(|i| i + 1).sum();
    assert_eq!(cart["total_price"], json!((rust_quantity + as_quantity) * 10));
    assert_eq!(cart["items"].as_array().map(Vec::len), Some(usize::try_from(ORDERS)?));
    assert_eq!(cart["quantities"], json!({"as-item": as_quantity, "rust-item": rust_quantity}));
    Ok(())
}

async fn rust_and_assemblyscript_rules_take_turns_on_the_same_profile(backend: Backend) -> Result<()> {
    let (env, twins) = env(backend, "profile-shared").await?;
    let pair = profile_pair(&twins);
    env.engine.set_field("UserProfile", "cy", "email", FieldValue::Scalar(Scalar::Str("cy@a.example".into()))).await?;
    let before = now_ms();
    env.engine
        .invoke(pair.assemblyscript, &update_settings("cy", "cy@b.example", "dark"))
        .await
        .map_err(Error::from)?;
    env.engine.invoke(pair.rust, &update_settings("cy", "cy@c.example", "light")).await.map_err(Error::from)?;
    let out = env
        .engine
        .invoke(pair.assemblyscript, &update_settings("cy", "cy@d.example", "dark"))
        .await
        .map_err(Error::from)?;
    let after = now_ms();
    assert_eq!(
        output(&out)?["previous_email"],
        "cy@c.example",
        "the AssemblyScript rule reads what the Rust rule wrote"
    );
    let mut profile = state(&env, "UserProfile", "cy").await?;
    take_last_login(&mut profile, before, after)?;
    assert_eq!(profile["email"], "cy@d.example");
    assert_eq!(
        profile["activity_log"],
        json!([
            "Email changed from cy@a.example to cy@b.example",
            "Theme changed to dark",
            "Email changed from cy@b.example to cy@c.example",
            "Theme changed to light",
            "Email changed from cy@c.example to cy@d.example",
            "Theme changed to dark",
        ])
    );
    Ok(())
}

// ---- the probes: every glue function, every error

/// Scripts for the probes (see `tests/rules/probe`), run in order on one `Counter` and one
/// `Account`. Each is one invocation.
fn probe_scripts() -> Vec<Json> {
    let long = format!("{}é🎉", "x".repeat(20_000));
    let tricky = "héllo \"wörld\" \\ 🎉 日本 \u{1} \n\t end";
    vec![
        // Scalars of every kind, in and out.
        json!([
            {"op": "set", "field": "count", "value": 41},
            {"op": "increment", "field": "count", "delta": 1},
            {"op": "increment", "field": "count", "delta": -100},
            {"op": "get", "field": "count"},
            {"op": "set", "field": "other", "value": i64::MIN},
            {"op": "get", "field": "other"},
            {"op": "set", "field": "label", "value": tricky},
            {"op": "get", "field": "label"},
            {"op": "set", "field": "ratio", "value": 2.5},
            {"op": "get", "field": "ratio"},
            {"op": "set", "field": "ratio", "value": -1.0e-300},
            {"op": "get", "field": "ratio"},
            {"op": "set", "field": "flag", "value": true},
            {"op": "get", "field": "flag"},
            {"op": "set", "field": "blob", "value": {"$bytes": [0, 1, 127, 128, 254, 255]}},
            {"op": "get", "field": "blob"},
            {"op": "fields"},
        ]),
        // Lists.
        json!([
            {"op": "append", "field": "items", "item": "a"},
            {"op": "list_extend", "field": "items", "items": ["b", "c", "🎉", ""]},
            {"op": "list_extend", "field": "items", "items": []},
            {"op": "list_insert", "field": "items", "index": 0, "item": "first"},
            {"op": "list_insert", "field": "items", "index": -1, "item": "penultimate"},
            {"op": "list_insert", "field": "items", "index": 100, "item": "last"},
            {"op": "list_len", "field": "items"},
            {"op": "list_get", "field": "items", "index": -1},
            {"op": "list_get", "field": "items", "index": 0},
            {"op": "list_pop", "field": "items"},
            {"op": "list_pop", "field": "items", "index": 0},
            {"op": "list_pop", "field": "items", "index": -2},
            {"op": "list_remove", "field": "items", "item": "b"},
            {"op": "list_items", "field": "items"},
            {"op": "get", "field": "items"},
        ]),
        // Dicts.
        json!([
            {"op": "dict_set", "field": "tags", "key": "x", "value": 1},
            {"op": "dict_update", "field": "tags", "entries": {"b": 2, "a": 3, "ü": 4, "": 5}},
            {"op": "dict_update", "field": "tags", "entries": {}},
            {"op": "dict_get", "field": "tags", "key": "a"},
            {"op": "dict_get", "field": "tags", "key": "missing"},
            {"op": "dict_pop", "field": "tags", "key": "x"},
            {"op": "dict_pop", "field": "tags", "key": "x"},
            {"op": "dict_keys", "field": "tags"},
            {"op": "dict_len", "field": "tags"},
            {"op": "dict_entries", "field": "tags"},
            {"op": "get", "field": "tags"},
        ]),
        // Whole values, resets, clears.
        json!([
            {"op": "set", "field": "items", "value": ["p", "q"]},
            {"op": "set", "field": "tags", "value": {"k": 9, "j": 8}},
            {"op": "get", "field": "tags"},
            {"op": "list_clear", "field": "items"},
            {"op": "dict_clear", "field": "tags"},
            {"op": "reset", "field": "label"},
            {"op": "get", "field": "label"},
            {"op": "get", "field": "items"},
            {"op": "get", "field": "tags"},
            {"op": "set", "field": "label", "value": long},
            {"op": "get", "field": "label"},
        ]),
        // The context, opening models, logging, a second model.
        json!([
            {"op": "context"},
            {"op": "open_index", "index": 0},
            {"op": "open_index", "index": 1},
            {"op": "open", "model_type": "Account", "key": "probe-account"},
            {"op": "get", "model": 1, "field": "balance"},
            {"op": "increment", "model": 1, "field": "balance", "delta": 7},
            {"op": "fields", "model": 1},
            {"op": "log", "message": "hello from the probe ✓", "level": "warn"},
            {"op": "log", "message": "default level"},
            {"op": "alloc", "bytes": 100_000},
        ]),
        // Errors: each stops its script, and nothing of the script is written.
        json!([{"op": "increment", "field": "count", "delta": 1}, {"op": "get", "field": "nope"}]),
        json!([{"op": "increment", "field": "label", "delta": 1}]),
        json!([{"op": "append", "field": "items", "item": 5}]),
        json!([{"op": "dict_set", "field": "tags", "key": "k", "value": "not an int"}]),
        json!([{"op": "set", "field": "items", "value": "not a list"}]),
        json!([{"op": "list_clear", "field": "items"}, {"op": "list_pop", "field": "items"}]),
        json!([{"op": "list_get", "field": "items", "index": 3}]),
        json!([{"op": "list_pop", "field": "items", "index": -9}]),
        json!([{"op": "list_remove", "field": "items", "item": "absent"}]),
        json!([{"op": "open_index", "index": 5}]),
        json!([{"op": "open", "model_type": "Account", "key": "undeclared"}]),
        json!([{"op": "set", "field": "count", "value": i64::MAX}, {"op": "increment", "field": "count", "delta": 1}]),
        json!([{"op": "increment", "field": "count", "delta": 1}, {"op": "reject", "message": "no thanks ✋"}]),
        json!([{"op": "invalid_input", "message": "bad"}]),
        json!([{"op": "log", "message": "x", "level": "loud"}]),
        json!([{"op": "increment", "field": "count", "delta": 1}, {"op": "trap"}]),
        // And the state is still usable afterwards.
        json!([{"op": "get", "field": "count"}, {"op": "list_items", "field": "items"}, {"op": "dict_entries", "field": "tags"}]),
    ]
}

/// Removes what differs between two runs of the `context` op (the id and the time).
fn normalise(mut result: Json) -> Json {
    if let Some(results) = result.as_array_mut() {
        for r in results {
            if let Some(object) = r.as_object_mut()
                && object.contains_key("invocation_id")
            {
                let id = object.remove("invocation_id");
                let now = object.remove("now_ms");
                object.insert("has_id".into(), json!(id.and_then(|v| v.as_str().map(|s| !s.is_empty()))));
                object.insert("has_time".into(), json!(now.and_then(|v| v.as_i64()).map(|t| t > 1_600_000_000_000)));
            }
        }
    }
    result
}

async fn probe_twins_agree_on_every_operation_and_error(backend: Backend) -> Result<()> {
    // Two environments (two stores, or two Redis prefixes), so both probes see the same keys.
    let rust_env = TestEnv::new(backend, "probe-rs").await?;
    let (as_env, as_twins) = env(backend, "probe-as").await?;
    for (i, script) in probe_scripts().into_iter().enumerate() {
        let invocation = Invocation::new("probe")
            .model("Counter", "probe-counter")
            .model("Account", "probe-account")
            .input(json!({ "ops": script }).to_string());
        let rust = rust_env.engine.invoke(&rust_env.rules.probe, &invocation).await.map_err(Error::from);
        let assemblyscript = as_env.engine.invoke(&as_twins.probe_as, &invocation).await.map_err(Error::from);
        let (rust, assemblyscript) = (normalise(view(&rust)), normalise(view(&assemblyscript)));
        assert_eq!(assemblyscript, rust, "script {i}: {script}");
        for (model_type, key) in [("Counter", "probe-counter"), ("Account", "probe-account")] {
            assert_eq!(
                state(&as_env, model_type, key).await?,
                state(&rust_env, model_type, key).await?,
                "script {i}: {model_type} state"
            );
        }
    }
    Ok(())
}

/// The AssemblyScript error model: a failed operation is the invocation's pending failure; a
/// rule that takes it (`ctx.takeError()`) goes on, and its later writes are committed.
async fn an_assemblyscript_rule_can_take_a_failure_and_go_on(backend: Backend) -> Result<()> {
    let (env, twins) = env(backend, "recover").await?;
    let script = json!([
        {"op": "recover", "ops": [
            {"op": "list_pop", "field": "items"},
            {"op": "get", "field": "nope"},
            {"op": "increment", "field": "label", "delta": 1},
            {"op": "increment", "field": "count", "delta": 2},
        ]},
        {"op": "append", "field": "items", "item": "after"},
    ]);
    let invocation = Invocation::new("probe").model("Counter", "c").input(json!({ "ops": script }).to_string());
    let out = env.engine.invoke(&twins.probe_as, &invocation).await.map_err(Error::from)?;
    let results = output(&out)?;
    let recovered = &results[0];
    assert!(
        recovered[0]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("model access failed: index ") && e.contains("out of range")),
        "{recovered}"
    );
    assert_eq!(recovered[1], json!({"error": "model access failed: unknown field `nope`"}));
    assert_eq!(
        recovered[2],
        json!({"error": "model access failed: type mismatch on field `label`: expected int field, found str field"})
    );
    assert_eq!(recovered[3], json!(2));
    let counter = state(&env, "Counter", "c").await?;
    assert_eq!(counter["count"], 2);
    assert_eq!(counter["items"], json!(["after"]));
    Ok(())
}

/// A bug in an AssemblyScript rule (here `abort()`) traps: nothing is written, no lock is left,
/// and the backtrace names the rule's functions (the build keeps the name section).
async fn an_assemblyscript_trap_writes_nothing_and_names_the_functions(backend: Backend) -> Result<()> {
    let (env, twins) = env(backend, "as-trap").await?;
    let models = [("Counter", "c")];
    let before = env.fingerprint(&models).await?;
    let script = json!([{"op": "increment", "field": "count", "delta": 1}, {"op": "trap"}]);
    let invocation = Invocation::new("probe").model("Counter", "c").input(json!({ "ops": script }).to_string());
    match env.engine.invoke(&twins.probe_as, &invocation).await.map_err(Error::from) {
        Err(Error::Trapped { message }) => {
            assert!(message.contains("wasmtxAbort") && message.contains("runOp"), "{message}");
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    assert_eq!(env.fingerprint(&models).await?, before);
    assert!(env.held_locks().await?.is_empty());
    Ok(())
}
