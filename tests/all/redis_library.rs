//! The Redis store's Functions library, on a private server (these tests replace and flush the
//! server's functions, which the shared one must keep): loaded at connect, loaded again after a
//! `FUNCTION FLUSH`, an older version replaced, a newer one refused with a typed error; the
//! registry's writes are functions of the same library (no `EVAL`/`EVALSHA`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail, ensure};
use wasmtx::registry::{RedisRegistryStore, RegistryStore, RuleVersion};
use wasmtx::store::redis::{LIBRARY_VERSION, RedisStore};
use wasmtx::store::{CommitGuard, CommitRecords, CommitRequest, LockAttempt, LockRequest, VersionCheck};
use wasmtx::{
    FieldChange, FieldType, FieldValue, ModelId, ModelSchema, ModelTarget, Scalar, ScalarKind, Store, StoreError,
};

use crate::private_redis::PrivateRedis;

/// A stand-in library under the engine's name, stating `version`, with a commit function under
/// the unversioned name the engines of library version 2 call.
fn fake_library(version: u32) -> String {
    format!(
        "#!lua name=wasmtx\nlocal VERSION = '{version}'\nredis.register_function('wasmtx_version', function() return \
         VERSION end)\nredis.register_function('wasmtx_commit', function() return 'OLD' end)\n"
    )
}

async fn loaded_version(conn: &mut redis::aio::MultiplexedConnection) -> Result<String> {
    Ok(redis::cmd("FCALL").arg("wasmtx_version").arg(0).query_async(conn).await?)
}

fn counter() -> Result<ModelTarget> {
    let schema = ModelSchema::builder("Counter").field("count", FieldType::Scalar(ScalarKind::Int)).build()?;
    Ok(ModelTarget { id: ModelId::new("Counter", "c"), schema: Arc::new(schema) })
}

/// One lock-mode increment through the store, as an engine does it.
async fn increment(store: &RedisStore, target: &ModelTarget) -> Result<()> {
    let request = LockRequest {
        models: vec![target.clone()],
        action: "bump".into(),
        owner: "test".into(),
        lease: Duration::from_secs(30),
        record: None,
    };
    let LockAttempt::Acquired { leases, snapshots } = store.try_lock_and_load(&request).await? else {
        bail!("the lock was busy")
    };
    let versions = [snapshots[0].version];
    let changes = vec![vec![FieldChange::Increment { field: "count".into(), delta: 1 }]];
    store
        .commit(CommitRequest {
            models: std::slice::from_ref(target),
            changes: &changes,
            guard: CommitGuard::Leases { leases: &leases, versions: &versions, check: VersionCheck::WhenWriting },
            records: CommitRecords::NONE,
        })
        .await?;
    Ok(())
}

async fn count(store: &RedisStore, target: &ModelTarget) -> Result<FieldValue> {
    Ok(store.load(std::slice::from_ref(target)).await?.remove(0).values.remove(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_loads_the_library_and_a_function_flush_is_survived() -> Result<()> {
    let server = PrivateRedis::start().await?;
    let mut conn = server.client().await?;
    let libraries: Vec<redis::Value> = redis::cmd("FUNCTION").arg("LIST").query_async(&mut conn).await?;
    ensure!(libraries.is_empty(), "a fresh server has no functions: {libraries:?}");

    let store = RedisStore::builder(server.url()).prefix("lib").connect().await?;
    ensure!(loaded_version(&mut conn).await? == LIBRARY_VERSION.to_string(), "connect loaded the library");
    let target = counter()?;
    increment(&store, &target).await?;

    // Flushed (or lost with a restart of a server that keeps nothing): the next call loads the
    // library again and runs; the flushed call had not run, so nothing is applied twice.
    let _: () = redis::cmd("FUNCTION").arg("FLUSH").query_async(&mut conn).await?;
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut conn).await?;
    increment(&store, &target).await?;
    ensure!(count(&store, &target).await? == FieldValue::Scalar(Scalar::Int(2)), "two increments, each once");
    ensure!(loaded_version(&mut conn).await? == LIBRARY_VERSION.to_string(), "the call loaded the library again");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_library_is_replaced_and_a_newer_one_is_refused() -> Result<()> {
    let server = PrivateRedis::start().await?;
    let mut conn = server.client().await?;
    let _: String =
        redis::cmd("FUNCTION").arg("LOAD").arg(fake_library(LIBRARY_VERSION - 1)).query_async(&mut conn).await?;
    let store = RedisStore::builder(server.url()).prefix("lib").connect().await?;
    ensure!(loaded_version(&mut conn).await? == LIBRARY_VERSION.to_string(), "the older library was replaced");
    increment(&store, &counter()?).await?;
    // An older engine still running calls its own step names: they are gone, so it writes
    // nothing (and its reload is refused as the newer library is there).
    let old_call: redis::RedisResult<String> =
        redis::cmd("FCALL").arg("wasmtx_commit").arg(0).query_async(&mut conn).await;
    ensure!(
        old_call.as_ref().is_err_and(|e| e.to_string().contains("Function not found")),
        "an older engine's commit must find no function: {old_call:?}"
    );

    let _: String =
        redis::cmd("FUNCTION").arg("LOAD").arg("REPLACE").arg(fake_library(99)).query_async(&mut conn).await?;
    match RedisStore::builder(server.url()).prefix("lib").connect().await {
        Err(StoreError::Incompatible { reason }) => {
            ensure!(reason.contains("version 99") && reason.contains("upgrade"), "{reason}");
        }
        other => bail!("a newer library must be refused, got {other:?}"),
    }
    ensure!(loaded_version(&mut conn).await? == "99", "the newer library was left in place");
    Ok(())
}

/// How many times the server ran each of `commands` (`INFO commandstats`).
async fn calls_of(conn: &mut redis::aio::MultiplexedConnection, commands: &[&str]) -> Result<Vec<u64>> {
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(conn).await?;
    Ok(commands
        .iter()
        .map(|command| {
            let line = info.lines().find(|l| l.starts_with(&format!("cmdstat_{command}:")));
            line.and_then(|l| l.split("calls=").nth(1)?.split(',').next()?.parse().ok()).unwrap_or(0)
        })
        .collect())
}

/// A registry connected alone (as `wasmtx rule upload` does) loads the library; its writes are
/// `FCALL`s, never scripts, and they go on after a `FUNCTION FLUSH` and a `SCRIPT FLUSH` (which
/// `EVALSHA` scripts do not survive on a failover: the script cache is not replicated).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_writes_through_the_library_and_survives_a_function_flush() -> Result<()> {
    let server = PrivateRedis::start().await?;
    let mut conn = server.client().await?;
    let registry = RedisRegistryStore::builder(server.url()).prefix("lib").connect().await?;
    ensure!(loaded_version(&mut conn).await? == LIBRARY_VERSION.to_string(), "connect loaded the library");
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(&mut conn).await?;

    let schema = counter()?.schema;
    let (_, changed) = registry.define_schema(&schema, 1).await?;
    ensure!(changed, "a new schema is a change");
    let version = RuleVersion {
        version: 0,
        digest: "ab".repeat(32),
        size: 3,
        wit_version: "0.1.0".into(),
        from_core_module: false,
        exports: vec!["run".into()],
        uploaded_at_ms: 1,
    };
    let added = registry.add_version("bump", b"\0as", &version, true).await?;
    ensure!(added.created && added.active && added.version.version == 1, "{added:?}");

    let _: () = redis::cmd("FUNCTION").arg("FLUSH").query_async(&mut conn).await?;
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut conn).await?;
    let again =
        registry.add_version("bump", b"\0as2", &RuleVersion { digest: "cd".repeat(32), ..version }, false).await?;
    ensure!(again.created && !again.active && again.version.version == 2, "{again:?}");
    ensure!(registry.activate("bump", 2).await?.version == 2, "version 2 is active");
    registry.delete_version("bump", 1).await?;
    registry.delete_schema("Counter").await?;
    ensure!(registry.delete_rule("bump").await?.len() == 1, "the rule's one version left is deleted");
    ensure!(registry.snapshot().await?.active.is_empty(), "nothing is active");

    let [eval, evalsha, fcall] = calls_of(&mut conn, &["eval", "evalsha", "fcall"]).await?[..] else {
        bail!("three counts")
    };
    ensure!(eval == 0 && evalsha == 0, "the registry ran scripts: {eval} EVAL, {evalsha} EVALSHA");
    ensure!(fcall >= 7, "every registry write is a function call: {fcall} FCALLs");
    Ok(())
}
