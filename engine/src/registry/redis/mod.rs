//! The registry in Redis, shared by every engine instance connected to the same Redis and
//! prefix. Writes are functions of the store's Redis Functions library (`registry.lua`,
//! appended to the store's `library.lua`: one round trip, atomic, loaded and checked at
//! connect, surviving a failover and `SCRIPT FLUSH`); reads are plain commands; epoch bumps
//! are published on a channel one Pub/Sub listener per store forwards to
//! [`RegistryStore::changes`]. The layout is documented in [`keys`].
//!
//! The same URL reaches a standalone server or a Redis Cluster (see
//! [`connection`](crate::store::redis::connection)). On a cluster the whole registry lives in
//! one slot (every key carries the hash tag `{registry}`), every function declares every key
//! it touches, and the changes channel is subscribed to on one node (a `PUBLISH` reaches every
//! node).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use redis::Value;
use tokio::sync::watch;

pub use self::keys::RegistryKeys;
use super::error::RegistryError;
use super::record::{AddedVersion, RuleInfo, RuleVersion, SchemaRecord, Snapshot};
use super::storage::RegistryStore;
use crate::model::schema::ModelSchema;
use crate::store::redis::connection::RedisConnection;
use crate::store::redis::functions::{FunctionCall, step};
use crate::store::redis::{
    Connected, DEFAULT_PREFIX, Delivery, Subscription, Timeouts, redis_error, spawn_subscription,
};

pub mod keys;

/// How many times a whole-rule delete reads again when the rule keeps changing.
const DELETE_RULE_ATTEMPTS: usize = 5;

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

    /// Connects, makes sure the server runs this engine's version of the Functions library
    /// (loading or replacing it if needed), and subscribes to change announcements before
    /// returning.
    ///
    /// # Errors
    /// [`RegistryError::Store`]: [`StoreError::InvalidPrefix`](crate::StoreError::InvalidPrefix)
    /// for a prefix the layout cannot use, [`StoreError::InvalidUrl`](crate::StoreError::InvalidUrl)
    /// for a malformed URL, [`StoreError::Unavailable`](crate::StoreError::Unavailable) if Redis
    /// cannot be reached, [`StoreError::Incompatible`](crate::StoreError::Incompatible) for a
    /// server before Redis 7.0 or one that runs a newer library version.
    pub async fn connect(self) -> Result<RedisRegistryStore, RegistryError> {
        crate::store::redis::keys::validate_prefix(&self.prefix)?;
        let link = crate::store::redis::connection::connect(&self.url, Timeouts::default()).await?;
        link.ensure_library().await?;
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
        Ok(RedisRegistryStore { inner: Arc::new(Inner { link, keys, changes, _listener: listener }) })
    }
}

/// The registry in Redis. Cheap to clone; clones share one connection and one listener.
#[derive(Debug, Clone)]
pub struct RedisRegistryStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The connection, and the nodes on which to load the library when a call finds none.
    link: Connected,
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
        self.inner.link.conn.clone()
    }

    /// Runs a call of the library (loading it first if the server has none).
    async fn call<T: redis::FromRedisValue>(&self, call: &FunctionCall) -> Result<T, RegistryError> {
        Ok(call.invoke(&self.inner.link).await?)
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
        let mut call = FunctionCall::new(step::REGISTRY_DELETE_RULE);
        call.key(&rule_key).key(keys.active()).key(keys.refs()).key(keys.epoch());
        call.arg(name).arg(keys.changed_channel());
        call.arg(fields.get("next").map_or("", String::as_str)).arg(fields.len());
        for v in &versions {
            call.key(keys.wasm(&v.digest));
            call.arg(v.version).arg(&v.digest);
        }
        let reply: Vec<Value> = self.call(&call).await?;
        match status(&reply)?.as_str() {
            "OK" => reply[1..].iter().map(|v| RuleVersion::parse(&text(v)?)).collect::<Result<_, _>>().map(Some),
            "NORULE" => Err(RegistryError::UnknownRule { name: name.to_owned() }),
            "BUSY" => Ok(None),
            other => Err(RegistryError::Corrupt(format!("unexpected reply {other} from the delete function"))),
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
        let mut call = FunctionCall::new(step::REGISTRY_ADD_VERSION);
        call.key(keys.rule(name)).key(keys.active()).key(keys.wasm(&version.digest)).key(keys.refs()).key(keys.epoch());
        call.arg(name).arg(&version.digest).arg(version.meta_json()).arg(if activate { "1" } else { "0" });
        call.arg(keys.changed_channel()).arg(bytes);
        let (created, record, active): (i64, String, i64) = self.call(&call).await?;
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
        let mut call = FunctionCall::new(step::REGISTRY_ACTIVATE);
        call.key(keys.rule(name)).key(keys.active()).key(keys.epoch());
        call.arg(name).arg(version).arg(keys.changed_channel());
        let reply: Vec<Value> = self.call(&call).await?;
        match status(&reply)?.as_str() {
            "OK" => RuleVersion::parse(&text(reply.get(1).unwrap_or(&Value::Nil))?),
            "NORULE" => Err(RegistryError::UnknownRule { name: name.to_owned() }),
            "NOVERSION" => Err(RegistryError::UnknownVersion { name: name.to_owned(), version }),
            other => Err(RegistryError::Corrupt(format!("unexpected reply {other} from the activate function"))),
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
        let mut call = FunctionCall::new(step::REGISTRY_DELETE_VERSION);
        call.key(&rule_key).key(keys.refs()).key(keys.wasm(&record.digest));
        call.arg(version).arg(&record.digest);
        let reply: Vec<Value> = self.call(&call).await?;
        match status(&reply)?.as_str() {
            "OK" => Ok(record),
            "NORULE" => Err(RegistryError::UnknownRule { name: name.to_owned() }),
            "NOVERSION" | "MOVED" => Err(unknown_version()),
            "ACTIVE" => Err(RegistryError::VersionActive { name: name.to_owned(), version }),
            other => Err(RegistryError::Corrupt(format!("unexpected reply {other} from the delete function"))),
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
        let mut call = FunctionCall::new(step::REGISTRY_DEFINE_SCHEMA);
        call.key(keys.schemas()).key(keys.epoch());
        call.arg(schema.name()).arg(SchemaRecord::schema_json(schema)).arg(now_ms).arg(keys.changed_channel());
        let (changed, record): (i64, String) = self.call(&call).await?;
        Ok((SchemaRecord::parse(&record)?, changed == 1))
    }

    async fn delete_schema(&self, name: &str) -> Result<SchemaRecord, RegistryError> {
        let keys = &self.inner.keys;
        let mut call = FunctionCall::new(step::REGISTRY_DELETE_SCHEMA);
        call.key(keys.schemas()).key(keys.epoch()).arg(name).arg(keys.changed_channel());
        let record: Option<String> = self.call(&call).await?;
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

#[cfg(test)]
mod tests {
    /// The registry's functions (appended to the store's library).
    const SOURCE: &str = include_str!("registry.lua");

    /// The locals the functions bind to entries of `keys` (`local a, b = keys[1], keys[2]`).
    fn key_locals() -> Vec<&'static str> {
        let mut names = Vec::new();
        for line in SOURCE.lines().map(str::trim).filter(|l| l.starts_with("local ") && l.contains("keys[")) {
            let Some((lhs, rhs)) = line["local ".len()..].split_once(" = ") else { continue };
            for (name, value) in lhs.split(',').zip(rhs.split(',')) {
                if value.trim().starts_with("keys[") {
                    names.push(name.trim());
                }
            }
        }
        names
    }

    /// On a Redis Cluster a function may touch only the keys it declares (an undeclared key of
    /// another node fails after the earlier writes applied): every `redis.call` names a key
    /// from `keys` (through a local bound to one), except `PUBLISH`, whose first argument is a
    /// channel.
    #[test]
    fn every_function_touches_only_keys_it_declares() {
        let locals = key_locals();
        assert!(locals.contains(&"rule") && locals.contains(&"schemas") && locals.contains(&"wasm"), "{locals:?}");
        let calls = SOURCE.split("redis.call('").skip(1).collect::<Vec<_>>();
        assert!(calls.len() > 30, "the functions' calls are found");
        for call in calls {
            let (command, rest) = call.split_once('\'').expect("a quoted command");
            if command == "PUBLISH" {
                continue;
            }
            let key = rest.trim_start_matches([',', ' ']).split([',', ')']).next().unwrap_or_default().trim();
            assert!(locals.contains(&key), "{command} touches {key:?}, which is not a declared key");
        }
    }
}
