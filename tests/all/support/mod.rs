//! Shared support for the integration tests: a real Redis server, the example rules built from
//! source, the example model types, and engines wired to either store.
//!
//! Tests talk to the Redis at `REDIS_URL` (default `redis://127.0.0.1:6379`). Each test gets
//! its own key prefix, so tests run in parallel on one server and leave their keys easy to
//! find; [`RedisFixture::keys`] lists them for before/after comparisons.

pub mod bank_run;
pub mod cluster_topology;
pub mod gated;
pub mod private_redis;
pub mod process;
pub mod test_cluster;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context as _, Result};
use wasmtx::backend::BackendOptions;
use wasmtx::store::redis::KeyLayout;
use wasmtx::{Engine, EngineBuilder, ModelSchema, Rule, Store};
use wasmtx_examples::rules::{RuleArtifacts, build_rules};

/// The Redis server's clock in Unix milliseconds (`TIME`): the clock lock deadlines use.
///
/// # Errors
/// If Redis fails.
pub async fn redis_now_ms(conn: &mut redis::aio::MultiplexedConnection) -> Result<u64> {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(conn).await?;
    Ok(secs * 1000 + micros / 1000)
}

/// The Redis URL tests use.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A prefix no other test (in this run or an earlier one) uses.
pub fn unique_prefix(name: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("wasmtx-test:{name}:{}:{n}:{:08x}", std::process::id(), rand::random::<u32>())
}

/// Which store a test runs on: opened by URL through `wasmtx::backend`, as every host does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded in-memory store (`memory`).
    Memory,
    /// A real Redis server (`REDIS_URL`).
    Redis,
}

impl Backend {
    /// The backend's URL.
    pub fn url(self) -> String {
        match self {
            Self::Memory => "memory".to_owned(),
            Self::Redis => redis_url(),
        }
    }

    /// A fresh store: a new embedded one, or Redis under a prefix no other test uses.
    ///
    /// # Errors
    /// If Redis is not reachable (start it: see the README).
    pub async fn open_store(self, name: &str) -> Result<Arc<dyn Store>> {
        let options = BackendOptions::with_prefix(unique_prefix(name));
        wasmtx::backend::open_store(&self.url(), &options)
            .await
            .with_context(|| format!("opening the {self:?} store at {} (is it running?)", self.url()))
    }
}

/// A Redis store under a fresh prefix, with a plain client to inspect what it wrote.
#[derive(Debug, Clone)]
pub struct RedisFixture {
    /// The store under test.
    pub store: Arc<dyn Store>,
    /// The prefix of every key the store writes.
    pub prefix: String,
    /// Where the store puts each model's keys.
    pub keys: KeyLayout,
    client: redis::Client,
}

impl RedisFixture {
    /// Connects a store under a fresh prefix.
    ///
    /// # Errors
    /// If Redis is not reachable (start it: see the README).
    pub async fn new(name: &str) -> Result<Self> {
        let prefix = unique_prefix(name);
        let store = wasmtx::backend::open_store(&redis_url(), &BackendOptions::with_prefix(prefix.clone()))
            .await
            .with_context(|| format!("connecting to Redis at {} (is it running?)", redis_url()))?;
        let client = redis::Client::open(redis_url())?;
        Ok(Self { store, keys: KeyLayout::new(prefix.clone()), prefix, client })
    }

    /// A plain connection, as any other Redis client would have.
    ///
    /// # Errors
    /// If Redis is not reachable.
    pub async fn client(&self) -> Result<redis::aio::MultiplexedConnection> {
        Ok(self.client.get_multiplexed_async_connection().await?)
    }

    /// Every key under this fixture's prefix with its type and content, sorted: a full picture
    /// to compare before and after an invocation that must write nothing.
    ///
    /// # Errors
    /// If Redis fails.
    pub async fn dump(&self) -> Result<Vec<(String, String, String)>> {
        let mut conn = self.client().await?;
        let mut keys: Vec<String> = redis::cmd("KEYS").arg(format!("{}:*", self.prefix)).query_async(&mut conn).await?;
        keys.sort();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let (ty, content) = key_content(&mut conn, &key).await?;
            out.push((key, ty, content));
        }
        Ok(out)
    }

    /// As [`RedisFixture::dump`], without the lock and waiting-line fields (`~l:<action>`,
    /// `~q:<action>`) of data hashes: what the data and records are, whoever holds or waits for
    /// a lock meanwhile.
    ///
    /// # Errors
    /// If Redis fails.
    pub async fn dump_without_locks(&self) -> Result<Vec<(String, String, String)>> {
        let mut conn = self.client().await?;
        let mut out = self.dump().await?;
        for (key, ty, content) in &mut out {
            if ty == "hash" {
                let mut pairs: Vec<(String, String)> = redis::cmd("HGETALL").arg(&*key).query_async(&mut conn).await?;
                pairs.retain(|(field, _)| !field.starts_with("~l:") && !field.starts_with("~q:"));
                pairs.sort();
                *content = format!("{pairs:?}");
            }
        }
        Ok(out)
    }

    /// The locks currently held under this prefix, as `<data key> <lock field>`: the data hash
    /// fields `~l:<action>` that are set and not past their deadline (by the server's clock).
    ///
    /// # Errors
    /// If Redis fails.
    pub async fn held_locks(&self) -> Result<Vec<String>> {
        let mut conn = self.client().await?;
        let now_ms = redis_now_ms(&mut conn).await?;
        let mut held = Vec::new();
        for (key, ty, _) in self.dump().await? {
            if ty != "hash" || key.contains(":dict:") {
                continue;
            }
            let pairs: Vec<(String, String)> = redis::cmd("HGETALL").arg(&key).query_async(&mut conn).await?;
            for (field, value) in pairs {
                let deadline = value.split(':').nth(1).and_then(|d| d.parse::<u64>().ok());
                if field.starts_with("~l:") && deadline.is_some_and(|d| d > now_ms) {
                    held.push(format!("{key} {field}"));
                }
            }
        }
        Ok(held)
    }
}

/// Every example model type (`examples/models/*.toml`).
///
/// # Errors
/// If a schema file is unreadable or invalid.
pub fn example_models() -> Result<Vec<ModelSchema>> {
    let mut paths: Vec<_> = std::fs::read_dir(wasmtx_examples::models_dir())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    paths.iter().map(|p| ModelSchema::from_path(p).with_context(|| p.display().to_string())).collect()
}

/// A test model with one field of every shape, for direct checks.
///
/// # Errors
/// Never in practice (the schema is valid).
pub fn counter_model() -> Result<ModelSchema> {
    Ok(ModelSchema::from_toml(
        r#"
        name = "Counter"
        [fields]
        count = { type = "int" }
        other = { type = "int" }
        label = { type = "str" }
        ratio = { type = "float" }
        flag = { type = "bool" }
        blob = { type = "bytes" }
        items = { type = "list<str>" }
        tags = { type = "dict<int>" }
        "#,
    )?)
}

/// The example rules, built from source once per process (and cached by cargo across runs).
///
/// # Errors
/// If the wasm target cannot be installed or a rule does not build.
pub fn rules() -> Result<&'static RuleArtifacts> {
    build_rules()
}

/// An engine builder with the example models and `Counter` registered.
///
/// # Errors
/// If a schema is invalid.
pub fn engine_builder() -> Result<EngineBuilder> {
    let mut builder = Engine::builder().model(counter_model()?);
    for schema in example_models()? {
        builder = builder.model(schema);
    }
    Ok(builder)
}

/// An engine on `store` with the example models.
///
/// # Errors
/// If the engine cannot be built.
pub fn engine_on(store: Arc<dyn Store>) -> Result<Engine> {
    Ok(engine_builder()?.shared_store(store).build()?)
}

/// Compiles one of the built example rules on `engine`.
///
/// # Errors
/// If the rule cannot be read or compiled.
pub fn load_rule(engine: &Engine, name: &str, path: &std::path::Path) -> Result<Rule> {
    let bytes = std::fs::read(path).with_context(|| path.display().to_string())?;
    Ok(engine.compile_rule(name, &bytes)?)
}

/// The example rules and the probe, compiled on one engine.
#[derive(Debug, Clone)]
pub struct CompiledRules {
    /// `examples/rules/bank-transfer`.
    pub bank_transfer: Rule,
    /// `examples/rules/level-up`.
    pub level_up: Rule,
    /// `examples/rules/user-progress`.
    pub user_progress: Rule,
    /// `examples/rules/complete-level`.
    pub complete_level: Rule,
    /// `tests/rules/probe`: runs a list of operations given as input.
    pub probe: Rule,
}

/// An engine on one backend with every rule compiled: the usual start of a test.
#[derive(Debug, Clone)]
pub struct TestEnv {
    /// The engine.
    pub engine: Engine,
    /// The rules.
    pub rules: CompiledRules,
    /// The Redis fixture, on [`Backend::Redis`].
    pub redis: Option<RedisFixture>,
}

impl TestEnv {
    /// A fresh engine (fresh store or fresh Redis prefix) with default settings.
    ///
    /// # Errors
    /// If Redis is unreachable or a rule does not build.
    pub async fn new(backend: Backend, name: &str) -> Result<Self> {
        Self::with(backend, name, |b| b).await
    }

    /// As [`TestEnv::new`], with the engine builder adjusted by `configure`.
    ///
    /// # Errors
    /// If Redis is unreachable, a rule does not build or the configuration is refused.
    pub async fn with(
        backend: Backend,
        name: &str,
        configure: impl FnOnce(EngineBuilder) -> EngineBuilder,
    ) -> Result<Self> {
        let (store, redis) = match backend {
            Backend::Memory => (backend.open_store(name).await?, None),
            Backend::Redis => {
                let fixture = RedisFixture::new(name).await?;
                (fixture.store.clone(), Some(fixture))
            }
        };
        let engine = configure(engine_builder()?.shared_store(store)).build()?;
        let rules = compile_rules(&engine)?;
        Ok(Self { engine, rules, redis })
    }

    /// Another engine instance on the same store (as a second host process would be), with
    /// its own local lock lines.
    ///
    /// # Errors
    /// If the engine cannot be built.
    pub fn second_engine(&self) -> Result<(Engine, CompiledRules)> {
        let engine = engine_builder()?.shared_store(self.engine.store().clone()).build()?;
        let rules = compile_rules(&engine)?;
        Ok((engine, rules))
    }

    /// Another engine on a gated view of the same store: its commits can be held at a gate
    /// (see [`gated::GatedStore`]), with the engine builder adjusted by `configure`.
    ///
    /// # Errors
    /// If the engine cannot be built.
    pub fn gated_engine(
        &self,
        configure: impl FnOnce(EngineBuilder) -> EngineBuilder,
    ) -> Result<(Engine, CompiledRules, Arc<gated::GatedStore>)> {
        let gated = gated::GatedStore::new(self.engine.store().clone());
        let engine = configure(engine_builder()?.shared_store(gated.clone())).build()?;
        let rules = compile_rules(&engine)?;
        Ok((engine, rules, gated))
    }

    /// Everything stored about these models except protocol counters: on Redis every key
    /// under the prefix, data hashes without their lock and fencing fields (taking a lock
    /// writes them by design; the version `~v` stays); on the memory store each model's loaded
    /// state and version.
    ///
    /// # Errors
    /// If the store fails.
    pub async fn fingerprint(&self, models: &[(&str, &str)]) -> Result<String> {
        let mut out = String::new();
        if let Some(redis) = &self.redis {
            let mut conn = redis.client().await?;
            for (key, ty, content) in redis.dump().await? {
                if ty == "hash" && !key.contains(":dict:") {
                    // A data hash: its fields without the lock and fencing fields.
                    let mut pairs: Vec<(String, String)> =
                        redis::cmd("HGETALL").arg(&key).query_async(&mut conn).await?;
                    pairs.retain(|(field, _)| !field.starts_with("~l:") && field != "~f");
                    pairs.sort();
                    if !pairs.is_empty() {
                        out.push_str(&format!("{key} hash {pairs:?}\n"));
                    }
                    continue;
                }
                out.push_str(&format!("{key} {ty} {content}\n"));
            }
        }
        for (model_type, key) in models {
            let snapshot = self.engine.read_model(model_type, key).await?;
            out.push_str(&format!("{model_type}:{key} {:?} v{}\n", snapshot.values, snapshot.version));
        }
        Ok(out)
    }

    /// Locks currently held (Redis only; the memory store is checked through the store API).
    ///
    /// # Errors
    /// If Redis fails.
    pub async fn held_locks(&self) -> Result<Vec<String>> {
        match &self.redis {
            Some(r) => r.held_locks().await,
            None => Ok(Vec::new()),
        }
    }
}

/// Compiles every built rule on `engine`.
///
/// # Errors
/// If a rule does not build or compile.
pub fn compile_rules(engine: &Engine) -> Result<CompiledRules> {
    let built = rules()?;
    Ok(CompiledRules {
        bank_transfer: load_rule(engine, "bank-transfer", &built.bank_transfer)?,
        level_up: load_rule(engine, "level-up", &built.level_up)?,
        user_progress: load_rule(engine, "user-progress", &built.user_progress)?,
        complete_level: load_rule(engine, "complete-level", &built.complete_level)?,
        probe: load_rule(engine, "probe", &built.probe)?,
    })
}

/// The AssemblyScript rules and their Rust twins, compiled on one engine (see
/// `tests/assemblyscript.rs`). Kept apart from [`CompiledRules`] so that only the tests that use
/// them pay for compiling them.
#[derive(Debug, Clone)]
pub struct TwinRules {
    /// `examples/rules/shopping-cart` (Rust).
    pub shopping_cart: Rule,
    /// `examples/rules/shopping-cart-as` (AssemblyScript).
    pub shopping_cart_as: Rule,
    /// `examples/rules/user-profile` (Rust).
    pub user_profile: Rule,
    /// `examples/rules/user-profile-as` (AssemblyScript).
    pub user_profile_as: Rule,
    /// `guest-sdk/assemblyscript/tests/probe` (AssemblyScript), the twin of
    /// [`CompiledRules::probe`].
    pub probe_as: Rule,
}

/// Compiles the AssemblyScript rules and their Rust twins on `engine` (building them first if
/// needed: the AssemblyScript ones need Node.js and npm).
///
/// # Errors
/// If a rule does not build or compile.
pub fn compile_twin_rules(engine: &Engine) -> Result<TwinRules> {
    let built = wasmtx_examples::rules::build_assemblyscript_rules()?;
    Ok(TwinRules {
        shopping_cart: load_rule(engine, "shopping-cart", &built.shopping_cart)?,
        shopping_cart_as: load_rule(engine, "shopping-cart-as", &built.shopping_cart_as)?,
        user_profile: load_rule(engine, "user-profile", &built.user_profile)?,
        user_profile_as: load_rule(engine, "user-profile-as", &built.user_profile_as)?,
        probe_as: load_rule(engine, "probe-as", &built.probe_as)?,
    })
}

/// The probe rule's input for a list of operations (see `tests/rules/probe`).
pub fn probe_ops(ops: &[serde_json::Value]) -> String {
    serde_json::json!({ "ops": ops }).to_string()
}

/// Takes the (model, action) locks of `keys` through the store API, as another process would
/// hold them (for a minute, unless released).
///
/// # Errors
/// If the store refuses or the locks are taken already.
pub async fn hold_lock(
    engine: &Engine,
    model_type: &str,
    keys: &[&str],
    action: &str,
) -> Result<Vec<wasmtx::store::LockLease>> {
    let mut models: Vec<wasmtx::ModelTarget> = keys
        .iter()
        .map(|k| {
            Ok(wasmtx::ModelTarget { id: wasmtx::ModelId::new(model_type, *k), schema: engine.model_type(model_type)? })
        })
        .collect::<Result<_>>()?;
    models.sort_by(|a, b| a.id.cmp(&b.id));
    let request = wasmtx::store::LockRequest {
        models,
        action: action.into(),
        owner: "test-holder".into(),
        lease: std::time::Duration::from_secs(60),
        record: None,
    };
    match engine.store().try_lock_and_load(&request).await? {
        wasmtx::store::LockAttempt::Acquired { leases, .. } => Ok(leases),
        other => anyhow::bail!("could not take the test lock: {other:?}"),
    }
}

/// Generates one `#[tokio::test]` per [`Backend`] for an
/// `async fn(Backend) -> anyhow::Result<()>`: a module per backend, a test per function.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod on_memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() -> anyhow::Result<()> {
                    super::$name($crate::Backend::Memory).await
                }
            )*
        }
        mod on_redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() -> anyhow::Result<()> {
                    super::$name($crate::Backend::Redis).await
                }
            )*
        }
    };
}

/// `ms` (Unix milliseconds) as `2024-03-01T12:34:56.789Z`, computed independently of the rules'
/// code (Howard Hinnant's civil-from-days algorithm), to check their dates and times.
pub fn iso_utc(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1_000 % 60,
        in_day % 1_000
    )
}

/// A key's type and its content as text, for comparing what a store holds before and after:
/// hashes sorted, lists in order, strings as text (or their bytes), streams by length.
///
/// # Errors
/// If Redis fails.
pub async fn key_content<C: redis::aio::ConnectionLike + Send>(conn: &mut C, key: &str) -> Result<(String, String)> {
    let ty: String = redis::cmd("TYPE").arg(key).query_async(conn).await?;
    let content = match ty.as_str() {
        "hash" => {
            let mut pairs: Vec<(String, String)> = redis::cmd("HGETALL").arg(key).query_async(conn).await?;
            pairs.sort();
            format!("{pairs:?}")
        }
        "list" => {
            let items: Vec<String> = redis::cmd("LRANGE").arg(key).arg(0).arg(-1).query_async(conn).await?;
            format!("{items:?}")
        }
        "string" => {
            // Stored rules are bytes, not text.
            let v: Vec<u8> = redis::cmd("GET").arg(key).query_async(conn).await?;
            String::from_utf8(v).unwrap_or_else(|e| format!("{:?}", e.into_bytes()))
        }
        "stream" => {
            let n: u64 = redis::cmd("XLEN").arg(key).query_async(conn).await?;
            format!("{n} entries")
        }
        other => other.to_owned(),
    };
    Ok((ty, content))
}
