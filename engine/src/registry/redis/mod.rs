//! The registry in Redis, shared by every engine instance connected to the same Redis and
//! prefix. Writes are Lua scripts (one round trip, atomic); reads are plain commands; epoch
//! bumps are published on a channel one Pub/Sub listener per store forwards to
//! [`RegistryStore::changes`]. The layout is documented in [`keys`].
//!
//! The same URL reaches a standalone server or a Redis Cluster (see
//! [`connection`](crate::store::redis::connection)). On a cluster the whole registry lives in
//! one slot (every key carries the hash tag `{registry}`), every script declares every key it
//! touches, and the changes channel is subscribed to on one node (a `PUBLISH` reaches every
//! node).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use redis::{Script, Value};
use tokio::sync::watch;

pub use self::keys::RegistryKeys;
use super::error::RegistryError;
use super::record::{AddedVersion, RuleInfo, RuleVersion, SchemaRecord, Snapshot};
use super::storage::RegistryStore;
use crate::model::schema::ModelSchema;
use crate::store::redis::connection::RedisConnection;
use crate::store::redis::{DEFAULT_PREFIX, Delivery, Subscription, Timeouts, redis_error, spawn_subscription};

pub mod keys;
mod scripts;

/// How many times a whole-rule delete reads again when the rule keeps changing.
const DELETE_RULE_ATTEMPTS: usize = 5;

struct Scripts {
    add_version: Script,
    activate: Script,
    delete_version: Script,
    delete_rule: Script,
    define_schema: Script,
    delete_schema: Script,
}

fn scripts() -> &'static Scripts {
    static SCRIPTS: OnceLock<Scripts> = OnceLock::new();
    SCRIPTS.get_or_init(|| Scripts {
        add_version: Script::new(scripts::ADD_VERSION),
        activate: Script::new(scripts::ACTIVATE),
        delete_version: Script::new(scripts::DELETE_VERSION),
        delete_rule: Script::new(scripts::DELETE_RULE),
        define_schema: Script::new(scripts::DEFINE_SCHEMA),
        delete_schema: Script::new(scripts::DELETE_SCHEMA),
    })
}

/// Configures and connects a [`RedisRegistryStore`].
#[derive(Debug, Clone)]
pub struct RedisRegistryStoreBuilder {
    url: String,
    prefix: String,
}

impl RedisRegistryStoreBuilder {
    /// Puts every key under `prefix` instead of `wasmtx`: use the model store's
    /// ([`RedisStore::keys`](crate::RedisStore::keys)).
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Connects, and subscribes to change announcements before returning.
    ///
    /// # Errors
    /// [`RegistryError::Store`]: [`StoreError::InvalidPrefix`](crate::StoreError::InvalidPrefix)
    /// for a prefix the layout cannot use, [`StoreError::InvalidUrl`](crate::StoreError::InvalidUrl)
    /// for a malformed URL, [`StoreError::Unavailable`](crate::StoreError::Unavailable) if Redis
    /// cannot be reached.
    pub async fn connect(self) -> Result<RedisRegistryStore, RegistryError> {
        crate::store::redis::keys::validate_prefix(&self.prefix)?;
        let link = crate::store::redis::connection::connect(&self.url, Timeouts::default()).await?;
        let conn = link.conn.clone();
        let keys = RegistryKeys::new(&self.prefix);
        let (changes, _) = watch::channel(0);
        let listener = {
            let changes = changes.clone();
            spawn_subscription(link.nodes.clients()?, keys.changed_channel(), move |delivery| match delivery {
                // The payload is the registry's epoch after the change.
                Delivery::Message(payload) => {
                    let epoch = String::from_utf8_lossy(payload).parse::<u64>().ok();
                    changes.send_modify(|seen| *seen = epoch.unwrap_or(*seen).max(*seen));
                }
                Delivery::MaybeMissed => changes.send_modify(|_| {}),
            })
            .await?
        };
        Ok(RedisRegistryStore { inner: Arc::new(Inner { conn, keys, changes, _listener: listener }) })
    }
}

/// The registry in Redis. Cheap to clone; clones share one connection and one listener.
#[derive(Debug, Clone)]
pub struct RedisRegistryStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    conn: RedisConnection,
    keys: RegistryKeys,
    changes: watch::Sender<u64>,
    /// Stopped when the last clone goes.
    _listener: Subscription,
}

impl RedisRegistryStore {
    /// Starts configuring a registry store for the Redis at `url`.
    pub fn builder(url: impl Into<String>) -> RedisRegistryStoreBuilder {
        RedisRegistryStoreBuilder { url: url.into(), prefix: DEFAULT_PREFIX.to_owned() }
    }

    /// The keys this store uses.
    pub fn keys(&self) -> &RegistryKeys {
        &self.inner.keys
    }

    fn conn(&self) -> RedisConnection {
        self.inner.conn.clone()
    }

    async fn delete_rule_once(&self, name: &str) -> Result<Option<Vec<RuleVersion>>, RegistryError> {
        let keys = &self.inner.keys;
        let rule_key = keys.rule(name);
        let fields: HashMap<String, String> =
            redis::cmd("HGETALL").arg(&rule_key).query_async(&mut self.conn()).await.map_err(redis_error)?;
        if !fields.contains_key("active") {
            return Err(RegistryError::UnknownRule { name: name.to_owned() });
        }
        let versions = parse_versions(&fields)?;
        let mut inv = scripts().delete_rule.prepare_invoke();
        inv.key(&rule_key).key(keys.active()).key(keys.refs()).key(keys.epoch());
        inv.arg(name).arg(keys.changed_channel());
        inv.arg(fields.get("next").map_or("", String::as_str)).arg(fields.len());
        for v in &versions {
            inv.key(keys.wasm(&v.digest));
            inv.arg(v.version).arg(&v.digest);
        }
        let reply: Vec<Value> = inv.invoke_async(&mut self.conn()).await.map_err(redis_error)?;
        match status(&reply)?.as_str() {
            "OK" => reply[1..].iter().map(|v| RuleVersion::parse(&text(v)?)).collect::<Result<_, _>>().map(Some),
            "NORULE" => Err(RegistryError::UnknownRule { name: name.to_owned() }),
            "BUSY" => Ok(None),
            other => Err(RegistryError::Corrupt(format!("unexpected reply {other} from the delete script"))),
        }
    }
}

#[async_trait]
impl RegistryStore for RedisRegistryStore {
    async fn add_version(
        &self,
        name: &str,
        bytes: &[u8],
        version: &RuleVersion,
        activate: bool,
    ) -> Result<AddedVersion, RegistryError> {
        let keys = &self.inner.keys;
        let mut inv = scripts().add_version.prepare_invoke();
        inv.key(keys.rule(name)).key(keys.active()).key(keys.wasm(&version.digest)).key(keys.refs()).key(keys.epoch());
        inv.arg(name).arg(&version.digest).arg(version.meta_json()).arg(if activate { "1" } else { "0" });
        inv.arg(keys.changed_channel()).arg(bytes);
        let (created, record, active): (i64, String, i64) =
            inv.invoke_async(&mut self.conn()).await.map_err(redis_error)?;
        Ok(AddedVersion { version: RuleVersion::parse(&record)?, created: created == 1, active: active == 1 })
    }

    async fn rules(&self) -> Result<Vec<RuleInfo>, RegistryError> {
        let mut names: Vec<String> = redis::cmd("HKEYS")
            .arg(self.inner.keys.active())
            .query_async(&mut self.conn())
            .await
            .map_err(redis_error)?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        names.sort();
        let mut pipe = redis::pipe();
        for name in &names {
            pipe.cmd("HGETALL").arg(self.inner.keys.rule(name));
        }
        let all: Vec<HashMap<String, String>> = pipe.query_async(&mut self.conn()).await.map_err(redis_error)?;
        let mut out = Vec::with_capacity(names.len());
        for (name, fields) in names.into_iter().zip(all) {
            if let Some(info) = rule_info(name, &fields)? {
                out.push(info);
            }
        }
        Ok(out)
    }

    async fn rule(&self, name: &str) -> Result<Option<RuleInfo>, RegistryError> {
        let fields: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.inner.keys.rule(name))
            .query_async(&mut self.conn())
            .await
            .map_err(redis_error)?;
        rule_info(name.to_owned(), &fields)
    }

    async fn activate(&self, name: &str, version: u64) -> Result<RuleVersion, RegistryError> {
        let keys = &self.inner.keys;
        let mut inv = scripts().activate.prepare_invoke();
        inv.key(keys.rule(name)).key(keys.active()).key(keys.epoch());
        inv.arg(name).arg(version).arg(keys.changed_channel());
        let reply: Vec<Value> = inv.invoke_async(&mut self.conn()).await.map_err(redis_error)?;
        match status(&reply)?.as_str() {
            "OK" => RuleVersion::parse(&text(reply.get(1).unwrap_or(&Value::Nil))?),
            "NORULE" => Err(RegistryError::UnknownRule { name: name.to_owned() }),
            "NOVERSION" => Err(RegistryError::UnknownVersion { name: name.to_owned(), version }),
            other => Err(RegistryError::Corrupt(format!("unexpected reply {other} from the activate script"))),
        }
    }

    async fn delete_version(&self, name: &str, version: u64) -> Result<RuleVersion, RegistryError> {
        let keys = &self.inner.keys;
        let rule_key = keys.rule(name);
        let (active, record): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(&rule_key)
            .arg("active")
            .arg(format!("v:{version}"))
            .query_async(&mut self.conn())
            .await
            .map_err(redis_error)?;
        let unknown_version = || RegistryError::UnknownVersion { name: name.to_owned(), version };
        if active.is_none() {
            return Err(RegistryError::UnknownRule { name: name.to_owned() });
        }
        let record = RuleVersion::parse(&record.ok_or_else(unknown_version)?)?;
        let mut inv = scripts().delete_version.prepare_invoke();
        inv.key(&rule_key).key(keys.refs()).key(keys.wasm(&record.digest));
        inv.arg(version).arg(&record.digest);
        let reply: Vec<Value> = inv.invoke_async(&mut self.conn()).await.map_err(redis_error)?;
        match status(&reply)?.as_str() {
            "OK" => Ok(record),
            "NORULE" => Err(RegistryError::UnknownRule { name: name.to_owned() }),
            "NOVERSION" | "MOVED" => Err(unknown_version()),
            "ACTIVE" => Err(RegistryError::VersionActive { name: name.to_owned(), version }),
            other => Err(RegistryError::Corrupt(format!("unexpected reply {other} from the delete script"))),
        }
    }

    async fn delete_rule(&self, name: &str) -> Result<Vec<RuleVersion>, RegistryError> {
        for _ in 0..DELETE_RULE_ATTEMPTS {
            if let Some(removed) = self.delete_rule_once(name).await? {
                return Ok(removed);
            }
        }
        Err(RegistryError::Busy { name: name.to_owned() })
    }

    async fn rule_bytes(&self, digest: &str) -> Result<Option<Vec<u8>>, RegistryError> {
        Ok(redis::cmd("GET")
            .arg(self.inner.keys.wasm(digest))
            .query_async(&mut self.conn())
            .await
            .map_err(redis_error)?)
    }

    async fn define_schema(&self, schema: &ModelSchema, now_ms: i64) -> Result<(SchemaRecord, bool), RegistryError> {
        let keys = &self.inner.keys;
        let mut inv = scripts().define_schema.prepare_invoke();
        inv.key(keys.schemas()).key(keys.epoch());
        inv.arg(schema.name()).arg(SchemaRecord::schema_json(schema)).arg(now_ms).arg(keys.changed_channel());
        let (changed, record): (i64, String) = inv.invoke_async(&mut self.conn()).await.map_err(redis_error)?;
        Ok((SchemaRecord::parse(&record)?, changed == 1))
    }

    async fn delete_schema(&self, name: &str) -> Result<SchemaRecord, RegistryError> {
        let keys = &self.inner.keys;
        let mut inv = scripts().delete_schema.prepare_invoke();
        inv.key(keys.schemas()).key(keys.epoch()).arg(name).arg(keys.changed_channel());
        let record: Option<String> = inv.invoke_async(&mut self.conn()).await.map_err(redis_error)?;
        match record {
            Some(record) => SchemaRecord::parse(&record),
            None => Err(RegistryError::UnknownModelType { name: name.to_owned() }),
        }
    }

    async fn snapshot(&self) -> Result<Snapshot, RegistryError> {
        let keys = &self.inner.keys;
        let (epoch, active, schemas): (Option<u64>, HashMap<String, String>, HashMap<String, String>) = redis::pipe()
            .atomic()
            .cmd("GET")
            .arg(keys.epoch())
            .cmd("HGETALL")
            .arg(keys.active())
            .cmd("HGETALL")
            .arg(keys.schemas())
            .query_async(&mut self.conn())
            .await
            .map_err(redis_error)?;
        let active = active
            .into_iter()
            .map(|(name, record)| Ok((name, RuleVersion::parse(&record)?)))
            .collect::<Result<BTreeMap<_, _>, RegistryError>>()?;
        let schemas = schemas
            .into_iter()
            .map(|(name, record)| Ok((name, SchemaRecord::parse(&record)?)))
            .collect::<Result<BTreeMap<_, _>, RegistryError>>()?;
        Ok(Snapshot { epoch: epoch.unwrap_or_default(), active, schemas })
    }

    async fn epoch(&self) -> Result<u64, RegistryError> {
        let epoch: Option<u64> =
            redis::cmd("GET").arg(self.inner.keys.epoch()).query_async(&mut self.conn()).await.map_err(redis_error)?;
        Ok(epoch.unwrap_or_default())
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }
}

/// Every `v:<n>` record of a rule hash, oldest first.
fn parse_versions(fields: &HashMap<String, String>) -> Result<Vec<RuleVersion>, RegistryError> {
    let mut versions = fields
        .iter()
        .filter(|(k, _)| k.starts_with("v:"))
        .map(|(_, record)| RuleVersion::parse(record))
        .collect::<Result<Vec<_>, _>>()?;
    versions.sort_by_key(|v| v.version);
    Ok(versions)
}

fn rule_info(name: String, fields: &HashMap<String, String>) -> Result<Option<RuleInfo>, RegistryError> {
    let Some(active) = fields.get("active") else { return Ok(None) };
    let active =
        active.parse().map_err(|_| RegistryError::Corrupt(format!("rule {name} has active version {active:?}")))?;
    Ok(Some(RuleInfo { versions: parse_versions(fields)?, name, active }))
}

fn text(value: &Value) -> Result<String, RegistryError> {
    match value {
        Value::BulkString(bytes) => Ok(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(s) => Ok(s.clone()),
        other => Err(RegistryError::Corrupt(format!("expected text from Redis, got {other:?}"))),
    }
}

fn status(reply: &[Value]) -> Result<String, RegistryError> {
    text(reply.first().unwrap_or(&Value::Nil))
}
