//! Bad input to the registry: uploads it refuses, and operations on rules, versions and schemas
//! that do not exist.

use anyhow::{Result, bail, ensure};
use wasmtx::registry::RegistryError;
use wasmtx::{Error, ModelSchema, Origin};

use super::fixtures::{Env, WASI_COMPONENT, hand_rule, int, with_rule_metadata};
use super::{Expect, UNKNOWN_MODEL_TYPE, check_engine, check_registry, expect};
use crate::{Backend, on_both_stores};

on_both_stores!(
    bad_uploads_leave_a_registry_in_use_as_it_was,
    registry_operations_on_what_does_not_exist_change_nothing,
);

const MISTYPED_RUN: &str = r#"(component
  (core module $m (func (export "run") (result i32) i32.const 0))
  (core instance $i (instantiate $m))
  (func (export "run") (result u32) (canon lift (core func $i "run"))))"#;

/// A valid component whose linear memory is larger than the engine's instance pool allows:
/// wasmtime refuses to compile it for this configuration.
const OVERSIZED_MEMORY: &str = "(component (core module (memory 1000)))";

/// Bad uploads, to a name in use and to a new one, are refused with their precise reason and
/// store nothing: the registry's storage is byte for byte what it was (no epoch bump, no
/// version number used up, no bytes kept), and the next good upload is version 2.
async fn bad_uploads_leave_a_registry_in_use_as_it_was(backend: Backend) -> Result<()> {
    let env = Env::new(backend, "bad-uploads", |b| b.max_rule_bytes(64 << 10)).await?;
    let good = hand_rule(true, "")?;
    ensure!(env.registry.upload("transfer", &good, false).await?.version.version == 1);
    env.registry
        .define_model(ModelSchema::from_toml("name = \"Wallet\"\n[fields]\ncoins = { type = \"int\" }\n")?)
        .await?;
    env.engine.set_field("Account", "a", "balance", int(10)).await?;
    let before = env.everything().await?;
    let epoch = env.registry.snapshot().epoch;

    let wasi_core = hand_rule(
        true,
        "  (import \"wasi_snapshot_preview1\" \"fd_write\" (func (param i32 i32 i32 i32) (result i32)))",
    )?;
    let without_run = with_rule_metadata(wat::parse_str("(module (memory (export \"memory\") 1))")?)?;
    let uploads: Vec<(&str, Vec<u8>, Expect)> = vec![
        ("bytes that are not WebAssembly", b"hello, world".to_vec(), expect("not_wasm", 422, 6)),
        ("no bytes at all", Vec::new(), expect("not_wasm", 422, 6)),
        ("garbage after the magic number", b"\0asm\x01\0\0\0\xff\xff".to_vec(), expect("malformed_wasm", 422, 6)),
        ("an invalid component", b"\0asm\x0d\0\x01\0garbage".to_vec(), expect("malformed_wasm", 422, 6)),
        (
            "a core module without WIT metadata",
            wat::parse_str("(module (func (export \"run\")))")?,
            expect("not_a_rule", 422, 6),
        ),
        ("a core module whose exports do not match its metadata", without_run, expect("not_a_rule", 422, 6)),
        ("a core module importing WASI", wasi_core, expect("forbidden_import", 422, 6)),
        ("a component importing WASI", wat::parse_str(WASI_COMPONENT)?, expect("forbidden_import", 422, 6)),
        ("a component without `run`", wat::parse_str("(component)")?, expect("wrong_world", 422, 6)),
        ("a component whose `run` has another type", wat::parse_str(MISTYPED_RUN)?, expect("wrong_world", 422, 6)),
        ("a component this engine cannot compile", wat::parse_str(OVERSIZED_MEMORY)?, expect("compile_failed", 422, 6)),
        ("bytes over the rule size limit", vec![0; 70_000], expect("rule_too_large", 413, 6)),
    ];
    for (label, bytes, want) in &uploads {
        // The library's own compile: the same refusal, as `invalid_rule` with the reason.
        match env.engine.compile_rule("fresh", bytes) {
            Ok(_) => bail!("{label}: compiled"),
            Err(error) => {
                check_engine(label, &error, Origin::Direct, expect("invalid_rule", want.status, want.exit))?;
                ensure!(matches!(&error, Error::InvalidRule(_)), "{label}: {error:?}");
            }
        }
        for name in ["transfer", "fresh"] {
            let label = format!("{label} (to `{name}`)");
            match env.registry.upload(name, bytes, true).await {
                Ok(up) => bail!("{label}: accepted: {up:?}"),
                Err(error) => check_registry(&label, &error, *want)?,
            }
            ensure!(env.everything().await? == before, "{label}: the storage changed");
        }
    }
    let long = "x".repeat(257);
    let names = ["", "bad name!", "1rule", "a/b", "é", long.as_str()];
    for name in names {
        let label = format!("the rule name {name:?}");
        match env.engine.compile_rule(name, &good) {
            Ok(_) => bail!("{label}: compiled"),
            Err(error) => check_engine(&label, &error, Origin::Direct, expect("invalid_rule_name", 400, 3))?,
        }
        match env.registry.upload(name, &good, true).await {
            Ok(up) => bail!("{label}: accepted: {up:?}"),
            Err(error) => check_registry(&label, &error, expect("invalid_rule_name", 400, 3))?,
        }
        ensure!(env.everything().await? == before, "{label}: the storage changed");
    }
    ensure!(env.registry.snapshot().epoch == epoch, "a refused upload bumped the epoch");
    match env.registry.rule("fresh").await {
        Err(RegistryError::UnknownRule { .. }) => {}
        other => bail!("a refused first upload created the rule: {other:?}"),
    }
    let component = wit_component::ComponentEncoder::default().module(&good)?.validate(true).encode()?;
    let next = env.registry.upload("transfer", &component, false).await?;
    ensure!(next.created && next.version.version == 2 && !next.active, "no version number was used up: {next:?}");
    Ok(())
}

/// Activating, deleting and reading rules, versions and schemas that do not exist (or a
/// version that is active) is refused and changes nothing.
async fn registry_operations_on_what_does_not_exist_change_nothing(backend: Backend) -> Result<()> {
    let env = Env::new(backend, "bad-registry-ops", |b| b).await?;
    let good = hand_rule(true, "")?;
    env.registry.upload("transfer", &good, false).await?;
    let component = wit_component::ComponentEncoder::default().module(&good)?.validate(true).encode()?;
    env.registry.upload("transfer", &component, false).await?;
    env.registry
        .define_model(ModelSchema::from_toml("name = \"Wallet\"\n[fields]\ncoins = { type = \"int\" }\n")?)
        .await?;
    let before = env.everything().await?;
    let epoch = env.registry.snapshot().epoch;
    let r = &env.registry;
    let unknown_rule = expect("unknown_rule", 404, 4);
    let unknown_version = expect("unknown_version", 404, 4);
    let results: Vec<(&str, Result<(), RegistryError>, Expect)> = vec![
        ("activate an unknown rule", r.activate("nope", 1).await.map(drop), unknown_rule),
        ("activate version 0", r.activate("transfer", 0).await.map(drop), unknown_version),
        ("activate a version never uploaded", r.activate("transfer", 99).await.map(drop), unknown_version),
        (
            "delete the active version",
            r.delete_version("transfer", 1).await.map(drop),
            expect("version_active", 409, 5),
        ),
        ("delete a version never uploaded", r.delete_version("transfer", 99).await.map(drop), unknown_version),
        ("delete a version of an unknown rule", r.delete_version("nope", 1).await.map(drop), unknown_rule),
        ("delete an unknown rule", r.delete_rule("nope").await.map(drop), unknown_rule),
        ("run an unknown rule", r.resolve("nope").await.map(drop), unknown_rule),
        ("show an unknown rule", r.rule("nope").await.map(drop), unknown_rule),
        ("delete an unknown schema", r.delete_model("Nope").await.map(drop), UNKNOWN_MODEL_TYPE),
        ("show an unknown schema", r.model("Nope").await.map(drop), UNKNOWN_MODEL_TYPE),
    ];
    for (label, result, want) in &results {
        match result {
            Ok(()) => bail!("{label}: accepted"),
            Err(error) => check_registry(label, error, *want)?,
        }
    }
    ensure!(env.everything().await? == before, "a refused registry operation changed the storage");
    ensure!(env.registry.snapshot().epoch == epoch, "a refused registry operation bumped the epoch");
    Ok(())
}
