//! The rule registry as a library, on a real Redis and on the embedded store: versions,
//! activation, deletion, validation of uploads, shared schemas, hot swap between engine
//! instances, the precompiled cache and the embedded stores' dumps.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail, ensure};
use async_trait::async_trait;
use tokio::sync::watch;
use wasmtx::backend::BackendOptions;
use wasmtx::registry::{
    AddedVersion, MemoryRegistryStore, Registry, RegistryConfig, RegistryError, RegistryStore, RuleInfo, RuleVersion,
    SchemaRecord, Snapshot,
};
use wasmtx::{Engine, FieldValue, Invocation, MemoryStore, ModelSchema, RuleLoadError, Scalar, Store};

use crate::process::{TempDir, poll};
use crate::{Backend, RedisFixture, engine_builder, rules};

/// How long a second instance may take to see a change (announcements make it milliseconds).
const SEE_WITHIN: Duration = Duration::from_secs(5);

macro_rules! on_both_registries {
    ($($name:ident),* $(,)?) => {
        mod on_memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    super::$name(crate::Backend::Memory).await
                }
            )*
        }
        mod on_redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    super::$name(crate::Backend::Redis).await
                }
            )*
        }
    };
}

on_both_registries!(
    versions_are_numbered_deduplicated_activated_and_deleted,
    bad_uploads_are_refused_with_their_error_and_store_nothing,
    a_second_instance_sees_activations_and_running_invocations_keep_their_version,
    schemas_defined_on_one_instance_reach_the_other,
    deleted_schemas_are_forgotten_everywhere_and_their_data_stays,
);

/// Two engine instances sharing one model store and one registry storage.
struct Shared {
    store: Arc<dyn Store>,
    registry: Arc<dyn RegistryStore>,
    redis: Option<RedisFixture>,
}

impl Shared {
    /// Both storages from the backend's URL, as `wasmtx` opens them (Redis: under a fresh
    /// prefix, with a fixture to inspect it).
    async fn new(backend: Backend, name: &str) -> Result<Self> {
        let redis = match backend {
            Backend::Memory => None,
            Backend::Redis => Some(RedisFixture::new(name).await?),
        };
        let prefix = redis.as_ref().map_or_else(|| name.to_owned(), |r| r.prefix.clone());
        let opened = wasmtx::backend::open(&backend.url(), &BackendOptions::with_prefix(prefix)).await?;
        Ok(Self { store: opened.store(), registry: opened.registry_store(), redis })
    }

    fn engine(&self, max_rule_bytes: Option<usize>) -> Result<Engine> {
        let mut builder = engine_builder()?.shared_store(self.store.clone());
        if let Some(max) = max_rule_bytes {
            let mut config = wasmtx::EngineConfig::default();
            config.runtime.max_rule_bytes = max;
            builder = builder.config(config);
        }
        Ok(builder.build()?)
    }

    async fn instance(&self, config: RegistryConfig) -> Result<Registry> {
        Ok(Registry::open(self.engine(None)?, self.registry.clone(), config).await?)
    }
}

fn bank_transfer() -> Result<Vec<u8>> {
    Ok(std::fs::read(&rules()?.bank_transfer)?)
}

/// The bank transfer made a component ahead of time: the same behaviour, other bytes.
fn bank_transfer_component() -> Result<Vec<u8>> {
    wit_component::ComponentEncoder::default().module(&bank_transfer()?)?.validate(true).encode()
}

fn transfer(amount: i64) -> Invocation {
    Invocation::new("transfer")
        .model("Account", "alice")
        .model("Account", "bob")
        .input(format!(r#"{{"amount": {amount}}}"#))
}

async fn versions_are_numbered_deduplicated_activated_and_deleted(backend: Backend) -> Result<()> {
    let shared = Shared::new(backend, "registry-versions").await?;
    let registry = shared.instance(RegistryConfig::default()).await?;
    let (v1_bytes, v2_bytes) = (bank_transfer()?, bank_transfer_component()?);

    let first = registry.upload("transfer", &v1_bytes, false).await?;
    ensure!(first.created && first.active && first.version.version == 1, "the first version is active: {first:?}");
    ensure!(first.version.from_core_module && first.version.exports == ["run"], "{first:?}");
    ensure!(first.version.size == v1_bytes.len() as u64 && first.version.wit_version.starts_with("0.1."));
    let again = registry.upload("transfer", &v1_bytes, true).await?;
    ensure!(!again.created && again.version == first.version, "same bytes, same version: {again:?}");

    let second = registry.upload("transfer", &v2_bytes, false).await?;
    ensure!(second.created && !second.active && second.version.version == 2, "{second:?}");
    ensure!(!second.version.from_core_module && second.version.digest != first.version.digest);
    ensure!(registry.resolve("transfer").await?.version.version == 1, "v2 is not active yet");

    registry.activate("transfer", 2).await?;
    let active = registry.resolve("transfer").await?;
    ensure!(active.version.version == 2 && active.rule.digest() == second.version.digest);
    registry.engine().set_field("Account", "alice", "balance", FieldValue::Scalar(Scalar::Int(50))).await?;
    let outcome = registry.engine().invoke(&active.rule, &transfer(20)).await.map_err(wasmtx::Error::from)?;
    ensure!(outcome.output == "\"Transferred 20 successfully\"", "{}", outcome.output);

    let info = registry.rule("transfer").await?;
    ensure!(info.active == 2 && info.versions.len() == 2, "{info:?}");
    match registry.delete_version("transfer", 2).await {
        Err(RegistryError::VersionActive { version: 2, .. }) => {}
        other => bail!("deleting the active version must be refused, got {other:?}"),
    }
    match registry.activate("transfer", 7).await {
        Err(e @ RegistryError::UnknownVersion { version: 7, .. }) => ensure!(e.kind() == "unknown_version"),
        other => bail!("expected UnknownVersion, got {other:?}"),
    }
    registry.delete_version("transfer", 1).await?;
    ensure!(registry.rule("transfer").await?.versions.len() == 1);

    let removed = registry.delete_rule("transfer").await?;
    ensure!(removed.len() == 1 && removed[0].version == 2);
    ensure!(registry.rules().await?.is_empty());
    ensure!(matches!(registry.resolve("transfer").await, Err(RegistryError::UnknownRule { .. })));
    ensure!(matches!(registry.delete_rule("transfer").await, Err(RegistryError::UnknownRule { .. })));

    let reborn = registry.upload("transfer", &v1_bytes, false).await?;
    ensure!(reborn.version.version == 3 && reborn.active, "numbers are never reused: {reborn:?}");
    if let Some(redis) = &shared.redis {
        // Only the live version's bytes are stored.
        let pattern = format!("{}:{{registry}}:wasm:*", redis.prefix);
        let blobs: Vec<String> = redis::cmd("KEYS").arg(pattern).query_async(&mut redis.client().await?).await?;
        ensure!(blobs.len() == 1, "{blobs:?}");
    }
    Ok(())
}

async fn bad_uploads_are_refused_with_their_error_and_store_nothing(backend: Backend) -> Result<()> {
    let shared = Shared::new(backend, "registry-bad").await?;
    let registry =
        Registry::open(shared.engine(Some(64 << 10))?, shared.registry.clone(), RegistryConfig::default()).await?;
    let wasi = wat::parse_str(
        r#"(component (import "wasi:cli/environment@0.2.0" (instance (export "get-arguments" (func (result (list string)))))))"#,
    )?;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("not-wasm", b"hello, world".to_vec(), "not_wasm"),
        ("wrong-world", wat::parse_str("(component)")?, "wrong_world"),
        ("plain-module", wat::parse_str("(module (func (export \"run\")))")?, "not_a_rule"),
        ("wasi", wasi, "forbidden_import"),
        ("too-large", bank_transfer()?, "rule_too_large"),
        ("malformed", b"\0asm\x01\0\0\0\xff\xff".to_vec(), "malformed_wasm"),
    ];
    for (name, bytes, kind) in cases {
        match registry.upload(name, &bytes, false).await {
            Err(e @ RegistryError::InvalidRule { .. }) => {
                ensure!(e.kind() == kind, "{name}: expected {kind}, got {} ({e})", e.kind());
                ensure!(!e.is_retryable());
            }
            other => bail!("{name}: expected a refusal, got {other:?}"),
        }
    }
    match registry.upload("too-large", &bank_transfer()?, false).await {
        Err(RegistryError::InvalidRule { error: RuleLoadError::TooLarge { limit, .. }, .. }) => {
            ensure!(limit == 64 << 10)
        }
        other => bail!("expected TooLarge, got {other:?}"),
    }
    ensure!(matches!(registry.upload("bad name!", b"x", false).await, Err(RegistryError::InvalidName { .. })));
    ensure!(registry.rules().await?.is_empty(), "nothing was stored");
    ensure!(shared.registry.snapshot().await? == Snapshot::default(), "not even an epoch bump");
    if let Some(redis) = &shared.redis {
        ensure!(redis.dump().await?.is_empty(), "no Redis key was written");
    }
    Ok(())
}

async fn a_second_instance_sees_activations_and_running_invocations_keep_their_version(backend: Backend) -> Result<()> {
    let shared = Shared::new(backend, "registry-swap").await?;
    let a = shared.instance(RegistryConfig::default()).await?;
    let b = shared.instance(RegistryConfig::default()).await?;
    let v1 = a.upload("transfer", &bank_transfer()?, false).await?;
    // B learns of the rule on its first use.
    let running = b.resolve("transfer").await?;
    ensure!(running.version.version == 1);

    let v2 = a.upload("transfer", &bank_transfer_component()?, true).await?;
    ensure!(v2.active && v2.version.version == 2);
    let seen = poll(SEE_WITHIN, "B sees v2", || async {
        Ok(b.snapshot().active.get("transfer").filter(|v| v.version == 2).cloned())
    })
    .await?;
    ensure!(seen.digest == v2.version.digest);
    ensure!(b.resolve("transfer").await?.rule.digest() == v2.version.digest);

    // An invocation that resolved v1 before the swap finishes on v1.
    b.engine().set_field("Account", "alice", "balance", FieldValue::Scalar(Scalar::Int(10))).await?;
    let outcome = b.engine().invoke(&running.rule, &transfer(10)).await.map_err(wasmtx::Error::from)?;
    ensure!(outcome.wrote_anything() && running.rule.digest() == v1.version.digest);

    // Rolling back is an activation like any other.
    a.activate("transfer", 1).await?;
    poll(SEE_WITHIN, "B sees the roll back", || async {
        Ok(b.snapshot().active.get("transfer").filter(|v| v.version == 1).map(drop))
    })
    .await?;
    ensure!(b.resolve("transfer").await?.rule.digest() == v1.version.digest);
    Ok(())
}

async fn schemas_defined_on_one_instance_reach_the_other(backend: Backend) -> Result<()> {
    let shared = Shared::new(backend, "registry-schemas").await?;
    let a = shared.instance(RegistryConfig::default()).await?;
    let b = shared.instance(RegistryConfig::default()).await?;
    let schema = ModelSchema::from_toml("name = \"Wallet\"\n[fields]\ncoins = { type = \"int\", default = 3 }\n")?;
    let record = a.define_model(schema.clone()).await?;
    ensure!(record.revision == 1);
    ensure!(a.define_model(schema).await?.revision == 1, "an identical definition is not a new revision");
    poll(SEE_WITHIN, "B knows Wallet", || async { Ok(b.engine().model_type("Wallet").ok().map(drop)) }).await?;
    let snapshot = b.engine().read_model("Wallet", "w").await?;
    ensure!(snapshot.values == [FieldValue::Scalar(Scalar::Int(3))]);

    let changed = ModelSchema::from_toml("name = \"Wallet\"\n[fields]\ncoins = { type = \"int\", default = 5 }\n")?;
    ensure!(a.define_model(changed).await?.revision == 2);
    poll(SEE_WITHIN, "B has revision 2", || async {
        Ok(b.snapshot().schemas.get("Wallet").filter(|r| r.revision == 2).map(drop))
    })
    .await?;
    let models = b.models().await?;
    ensure!(models.len() == 1 && models[0].schema.name() == "Wallet");
    ensure!(matches!(b.model("Nope").await, Err(RegistryError::UnknownModelType { .. })));
    Ok(())
}

async fn deleted_schemas_are_forgotten_everywhere_and_their_data_stays(backend: Backend) -> Result<()> {
    let shared = Shared::new(backend, "registry-undefine").await?;
    let a = shared.instance(RegistryConfig::default()).await?;
    let b = shared.instance(RegistryConfig::default()).await?;
    let wallet = || ModelSchema::from_toml("name = \"Wallet\"\n[fields]\ncoins = { type = \"int\", default = 3 }\n");
    a.define_model(wallet()?).await?;
    a.define_model(ModelSchema::from_toml("name = \"Purse\"\n[fields]\ncoins = { type = \"int\" }\n")?).await?;
    a.engine().set_field("Wallet", "w", "coins", FieldValue::Scalar(Scalar::Int(7))).await?;
    poll(SEE_WITHIN, "B knows Wallet", || async { Ok(b.engine().model_type("Wallet").ok().map(drop)) }).await?;

    let deleted = a.delete_model("Wallet").await?;
    ensure!(deleted.schema.name() == "Wallet" && deleted.revision == 1, "{deleted:?}");
    for (who, registry) in [("A", &a), ("B", &b)] {
        poll(SEE_WITHIN, &format!("{who} forgets Wallet"), || async {
            Ok(registry.engine().model_type("Wallet").is_err().then_some(()))
        })
        .await?;
        match registry.engine().read_model("Wallet", "w").await {
            Err(wasmtx::Error::UnknownModelType { .. }) => {}
            other => bail!("{who}: reading a model of a deleted type: expected UnknownModelType, got {other:?}"),
        }
        ensure!(registry.engine().model_type("Purse").is_ok(), "{who} forgot the other schema too");
    }
    let names: Vec<String> = b.models().await?.iter().map(|r| r.schema.name().to_owned()).collect();
    ensure!(names == ["Purse"], "schemas left: {names:?}");
    ensure!(matches!(a.delete_model("Wallet").await, Err(RegistryError::UnknownModelType { .. })));
    ensure!(matches!(b.model("Wallet").await, Err(RegistryError::UnknownModelType { .. })));

    // Defining the type again starts a new history and finds the data where it was.
    ensure!(b.define_model(wallet()?).await?.revision == 1);
    poll(SEE_WITHIN, "A knows Wallet again", || async { Ok(a.engine().model_type("Wallet").ok().map(drop)) }).await?;
    let snapshot = a.engine().read_model("Wallet", "w").await?;
    ensure!(snapshot.values == [FieldValue::Scalar(Scalar::Int(7))], "{:?}", snapshot.values);
    Ok(())
}

/// A registry storage whose change announcements are all lost: only the periodic epoch check
/// is left.
#[derive(Debug)]
struct Deaf(Arc<dyn RegistryStore>, watch::Sender<u64>);

#[async_trait]
impl RegistryStore for Deaf {
    async fn add_version(&self, n: &str, b: &[u8], v: &RuleVersion, a: bool) -> Result<AddedVersion, RegistryError> {
        self.0.add_version(n, b, v, a).await
    }
    async fn rules(&self) -> Result<Vec<RuleInfo>, RegistryError> {
        self.0.rules().await
    }
    async fn rule(&self, name: &str) -> Result<Option<RuleInfo>, RegistryError> {
        self.0.rule(name).await
    }
    async fn activate(&self, name: &str, version: u64) -> Result<RuleVersion, RegistryError> {
        self.0.activate(name, version).await
    }
    async fn delete_version(&self, name: &str, version: u64) -> Result<RuleVersion, RegistryError> {
        self.0.delete_version(name, version).await
    }
    async fn delete_rule(&self, name: &str) -> Result<Vec<RuleVersion>, RegistryError> {
        self.0.delete_rule(name).await
    }
    async fn rule_bytes(&self, digest: &str) -> Result<Option<Vec<u8>>, RegistryError> {
        self.0.rule_bytes(digest).await
    }
    async fn define_schema(&self, s: &ModelSchema, now: i64) -> Result<(SchemaRecord, bool), RegistryError> {
        self.0.define_schema(s, now).await
    }
    async fn delete_schema(&self, name: &str) -> Result<SchemaRecord, RegistryError> {
        self.0.delete_schema(name).await
    }
    async fn snapshot(&self) -> Result<Snapshot, RegistryError> {
        self.0.snapshot().await
    }
    async fn epoch(&self) -> Result<u64, RegistryError> {
        self.0.epoch().await
    }
    fn changes(&self) -> watch::Receiver<u64> {
        self.1.subscribe()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_announcements_the_periodic_check_bounds_the_delay() -> Result<()> {
    let shared = Shared::new(Backend::Redis, "registry-deaf").await?;
    let a = shared.instance(RegistryConfig::default()).await?;
    let refresh = Duration::from_millis(100);
    let deaf: Arc<dyn RegistryStore> = Arc::new(Deaf(shared.registry.clone(), watch::channel(0).0));
    let b = Registry::open(shared.engine(None)?, deaf, RegistryConfig::default().refresh_interval(refresh)).await?;
    a.upload("transfer", &bank_transfer()?, false).await?;
    let started = tokio::time::Instant::now();
    a.upload("transfer", &bank_transfer_component()?, true).await?;
    poll(SEE_WITHIN, "B sees v2 by polling", || async {
        Ok(b.snapshot().active.get("transfer").filter(|v| v.version == 2).map(drop))
    })
    .await?;
    // One interval, plus scheduling slack on a loaded machine.
    ensure!(started.elapsed() < refresh * 20, "took {:?}", started.elapsed());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_instance_loads_precompiled_rules_from_disk() -> Result<()> {
    let shared = Shared::new(Backend::Memory, "registry-disk").await?;
    let dir = TempDir::new("registry-cache")?;
    let config = RegistryConfig::default().cache_dir(dir.path());
    let first = shared.instance(config.clone()).await?;
    let uploaded = first.upload("transfer", &bank_transfer()?, false).await?;
    drop(first);

    let second = shared.instance(config.clone()).await?;
    let active = second.resolve("transfer").await?;
    ensure!(active.rule.digest() == uploaded.version.digest);
    let stats = second.stats();
    ensure!(stats.loaded_precompiled == 1 && stats.compiled == 0, "{stats:?}");
    second.engine().set_field("Account", "alice", "balance", FieldValue::Scalar(Scalar::Int(10))).await?;
    second.engine().invoke(&active.rule, &transfer(5)).await.map_err(wasmtx::Error::from)?;

    // A damaged file is dropped and the rule compiled again.
    let files: Vec<_> = walk(dir.path())?.into_iter().filter(|p| p.extension().is_some_and(|e| e == "cwasm")).collect();
    ensure!(files.len() == 1, "{files:?}");
    std::fs::write(&files[0], b"not a precompiled component")?;
    let third = shared.instance(config).await?;
    third.resolve("transfer").await?;
    let stats = third.stats();
    ensure!(stats.loaded_precompiled == 0 && stats.compiled == 1, "{stats:?}");
    Ok(())
}

fn walk(dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(walk(&path)?);
        } else {
            out.push(path);
        }
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_stores_round_trip_through_their_dumps() -> Result<()> {
    let (store, reg) = (MemoryStore::new(), MemoryRegistryStore::new());
    let engine = engine_builder()?.store(store.clone()).build()?;
    let registry = Registry::open(engine.clone(), Arc::new(reg.clone()), RegistryConfig::default()).await?;
    registry.upload("transfer", &bank_transfer()?, false).await?;
    engine.set_field("Account", "alice", "balance", FieldValue::Scalar(Scalar::Int(40))).await?;
    let outcome =
        engine.invoke(&registry.resolve("transfer").await?.rule, &transfer(15)).await.map_err(wasmtx::Error::from)?;

    // Both dumps go through JSON, as the command-line tool keeps them.
    let models_json = serde_json::to_string(&store.dump())?;
    let registry_json = serde_json::to_string(&reg.dump())?;
    let store2 = MemoryStore::from_dump(serde_json::from_str(&models_json)?);
    let reg2 = MemoryRegistryStore::from_dump(serde_json::from_str(&registry_json)?);
    let engine2 = engine_builder()?.store(store2).build()?;
    let restored = Registry::open(engine2.clone(), Arc::new(reg2), RegistryConfig::default()).await?;
    ensure!(restored.rules().await? == registry.rules().await?);
    let alice = engine2.read_model("Account", "alice").await?;
    ensure!(alice == engine.read_model("Account", "alice").await?, "same values and version: {alice:?}");
    // Fencing tokens never go back: the next lock on alice gets a larger one.
    let again =
        engine2.invoke(&restored.resolve("transfer").await?.rule, &transfer(5)).await.map_err(wasmtx::Error::from)?;
    ensure!(
        again.fencing_tokens[0] > outcome.fencing_tokens[0],
        "{:?} then {:?}",
        outcome.fencing_tokens,
        again.fencing_tokens
    );
    Ok(())
}
