//! The store's Redis Functions library (`library.lua`, then the registry's writes in
//! `registry/redis/registry.lua`): loading it, checking its version, and calling its
//! functions. The model store and the registry share the one library, so that both load,
//! upgrade and survive a failover together.
//!
//! The library is named `wasmtx` and states its version (`local VERSION`, also returned by
//! `FCALL wasmtx_version 0`). On connect the store reads the loaded code (`FUNCTION LIST
//! WITHCODE`): the same code is kept; a missing library is loaded (`FUNCTION LOAD`); one of an
//! older version, or of the same version from another build, is replaced (`FUNCTION LOAD
//! REPLACE`); a newer one (loaded by a newer engine) is refused, since this engine would run
//! code whose protocol it does not know. Functions are part of the dataset, so
//! unlike `EVALSHA` scripts they survive a failover to a replica and `SCRIPT FLUSH`; after a
//! `FUNCTION FLUSH` (or a restart of a server that keeps nothing on disk) the first call finds
//! no function, loads the library again and repeats the call, which did not run.
//!
//! On a Redis Cluster the library is checked and loaded on every primary, each through a
//! connection of its own (a `FUNCTION LIST` through the cluster client would ask one node at
//! random), at connect and whenever a call finds no function.
//!
//! # Notes
//! Functions need Redis 7.0 or later (as does `SET ... NX GET`, which the commit uses); an
//! older server is refused at connect with [`StoreError::Incompatible`].

use redis::aio::ConnectionLike;
use redis::{Arg, Cmd, ToRedisArgs, Value};

use super::codec::redis_error;
use super::connection::Connected;
use crate::store::StoreError;

/// The library's source: the store's protocol, then the registry's writes (one source text,
/// as Redis loads a library).
pub(super) const LIBRARY: &str =
    concat!(include_str!("library.lua"), include_str!("../../registry/redis/registry.lua"));

/// The version of the store's Redis Functions library (`wasmtx`) this build speaks; the
/// library's `VERSION` says the same (a unit test checks). Bumped on every change of the
/// library: at connect, a server holding an older version gets this one, a server holding a
/// newer one is refused ([`StoreError::Incompatible`]).
pub const LIBRARY_VERSION: u32 = 8;

/// The library's functions, one per protocol step. Their names carry [`LIBRARY_VERSION`]: an
/// engine of another version still running after an upgrade replaced the library finds no
/// function (and is refused when it reloads) rather than calling one with arguments it lays
/// out differently. Only `wasmtx_version`, which that check calls, keeps its name.
pub(crate) mod step {
    pub const LOCK_AND_LOAD: &str = "wasmtx_v8_lock_and_load";
    pub const LOAD: &str = "wasmtx_v8_load";
    pub const COMMIT: &str = "wasmtx_v8_commit";
    pub const RELEASE: &str = "wasmtx_v8_release";
    pub const RESOLVE: &str = "wasmtx_v8_resolve";
    pub const DELETE: &str = "wasmtx_v8_delete";
    pub const WITHDRAW: &str = "wasmtx_v8_withdraw";
    /// The registry's writes (see `crate::registry::redis`).
    pub const REGISTRY_ADD_VERSION: &str = "wasmtx_v8_registry_add_version";
    pub const REGISTRY_ACTIVATE: &str = "wasmtx_v8_registry_activate";
    pub const REGISTRY_DELETE_VERSION: &str = "wasmtx_v8_registry_delete_version";
    pub const REGISTRY_DELETE_RULE: &str = "wasmtx_v8_registry_delete_rule";
    pub const REGISTRY_DEFINE_SCHEMA: &str = "wasmtx_v8_registry_define_schema";
    pub const REGISTRY_DELETE_SCHEMA: &str = "wasmtx_v8_registry_delete_schema";
    /// Every step (the unit test checks the library registers them).
    #[cfg(test)]
    pub const ALL: [&str; 13] = [
        LOCK_AND_LOAD,
        LOAD,
        COMMIT,
        RELEASE,
        RESOLVE,
        DELETE,
        WITHDRAW,
        REGISTRY_ADD_VERSION,
        REGISTRY_ACTIVATE,
        REGISTRY_DELETE_VERSION,
        REGISTRY_DELETE_RULE,
        REGISTRY_DEFINE_SCHEMA,
        REGISTRY_DELETE_SCHEMA,
    ];
}

/// One call of a library function: `FCALL name numkeys keys... args...`. Keys and arguments
/// may be added in any order (a caller often adds a model's key and its arguments together);
/// each side is kept in a [`Cmd`], one buffer each, so that a call of many arguments costs a
/// few allocations, not one per argument.
#[derive(Debug)]
pub(crate) struct FunctionCall {
    name: &'static str,
    keys: Cmd,
    args: Cmd,
}

impl FunctionCall {
    pub(crate) fn new(name: &'static str) -> Self {
        Self { name, keys: Cmd::with_capacity(8, 256), args: Cmd::with_capacity(64, 1024) }
    }

    pub(crate) fn key(&mut self, key: impl ToRedisArgs) -> &mut Self {
        key.write_redis_args(&mut self.keys);
        self
    }

    pub(crate) fn arg(&mut self, arg: impl ToRedisArgs) -> &mut Self {
        arg.write_redis_args(&mut self.args);
        self
    }

    fn command(&self) -> Cmd {
        let parts = || self.keys.args_iter().chain(self.args.args_iter());
        let bytes: usize = parts().map(|a| if let Arg::Simple(b) = a { b.len() } else { 0 }).sum();
        let mut cmd = Cmd::with_capacity(3 + self.keys.args_iter().len() + self.args.args_iter().len(), bytes + 64);
        cmd.arg("FCALL").arg(self.name).arg(self.keys.args_iter().len());
        for part in parts() {
            if let Arg::Simple(bytes) = part {
                cmd.arg(bytes);
            }
        }
        cmd
    }

    /// Runs the call; loads the library and runs it once more if the server has no such
    /// function (then the first call did not run).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] for connection trouble (the outcome of a writing call is
    /// then unknown), [`StoreError::Incompatible`] if the library cannot be loaded,
    /// [`StoreError::Backend`] for any other failure.
    pub(crate) async fn invoke<T: redis::FromRedisValue>(&self, link: &Connected) -> Result<T, StoreError> {
        let command = self.command();
        let mut conn = link.conn.clone();
        if let Some(tracker) = &link.tracker
            && let Err(e) = tracker.ensure_on(&mut conn).await
        {
            link.bump_generation();
            return Err(e);
        }
        let result = match command.query_async::<T>(&mut conn).await {
            Err(e) if is_missing_function(&e) => {
                // A restarted, flushed or failed-over server: what was read before may be gone.
                link.bump_generation();
                link.ensure_library().await?;
                command.query_async::<T>(&mut conn).await.map_err(redis_error)
            }
            other => other.map_err(redis_error),
        };
        if matches!(result, Err(StoreError::Unavailable(_))) {
            link.bump_generation();
        }
        result
    }
}

fn is_missing_function(e: &redis::RedisError) -> bool {
    e.to_string().contains("Function not found")
}

/// Makes sure the server runs this engine's library (see the module docs): the same code is
/// kept, a missing library loaded, one of an older or the same version (another build)
/// replaced, a newer one refused.
///
/// # Errors
/// [`StoreError::Incompatible`] for a server without Functions (before Redis 7.0) or a newer
/// library; [`StoreError::Unavailable`] or [`StoreError::Backend`] if the server fails.
pub(super) async fn ensure_loaded(conn: &mut (impl ConnectionLike + Send)) -> Result<(), StoreError> {
    let listed: Result<Value, _> =
        redis::cmd("FUNCTION").arg("LIST").arg("LIBRARYNAME").arg("wasmtx").arg("WITHCODE").query_async(conn).await;
    let loaded = match listed {
        Ok(value) => loaded_code(value),
        Err(e) if is_unknown_command(&e) => return Err(no_functions(&e)),
        Err(e) => return Err(redis_error(e)),
    };
    let replace = match loaded {
        None => false,
        Some(code) if code == LIBRARY => return Ok(()),
        Some(code) => match version_of(&code) {
            Some(v) if v > LIBRARY_VERSION => {
                return Err(StoreError::Incompatible {
                    reason: format!(
                        "the server runs version {v} of the wasmtx library, loaded by a newer engine; this engine \
                         speaks version {LIBRARY_VERSION}: upgrade it"
                    ),
                });
            }
            _ => true,
        },
    };
    let mut load = redis::cmd("FUNCTION");
    load.arg("LOAD");
    if replace {
        load.arg("REPLACE");
    }
    match load.arg(LIBRARY).query_async::<Value>(conn).await {
        Ok(_) => Ok(()),
        // Another engine loaded it at the same moment.
        Err(e) if e.to_string().contains("already exists") => Ok(()),
        Err(e) if is_unknown_command(&e) => Err(no_functions(&e)),
        Err(e) => Err(redis_error(e)),
    }
}

/// The code of the library named `wasmtx` in a `FUNCTION LIST ... WITHCODE` reply (the name
/// filter is a pattern: other libraries may match it too).
fn loaded_code(value: Value) -> Option<String> {
    let Value::Array(libraries) = value else { return None };
    libraries.into_iter().find_map(|library| {
        let mut fields = match library {
            Value::Array(items) => items.into_iter().collect::<Vec<_>>(),
            Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
            _ => return None,
        }
        .into_iter();
        let (mut name, mut code) = (None, None);
        while let (Some(key), Some(value)) = (fields.next(), fields.next()) {
            let text = |v: Value| redis::from_redis_value::<String>(v).ok();
            match text(key).as_deref() {
                Some("library_name") => name = text(value),
                Some("library_code") => code = text(value),
                _ => {}
            }
        }
        (name.as_deref() == Some("wasmtx")).then_some(code).flatten()
    })
}

/// The version a library's code states (`local VERSION = '<n>'`).
fn version_of(code: &str) -> Option<u32> {
    let rest = code.split_once("local VERSION = '")?.1;
    rest.split_once('\'')?.0.parse().ok()
}

fn is_unknown_command(e: &redis::RedisError) -> bool {
    e.to_string().contains("unknown command")
}

fn no_functions(e: &redis::RedisError) -> StoreError {
    StoreError::Incompatible {
        reason: format!("the server has no Redis Functions (Redis 7.0 or later is needed): {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_lays_out_its_keys_before_its_arguments_whatever_the_order_they_came_in() {
        let mut call = FunctionCall::new(step::COMMIT);
        call.key("k1").arg("a1").arg(2_u64).key(&["k2", "k3"][..]).arg(b"".as_slice()).arg("a3");
        let parts: Vec<Vec<u8>> = call
            .command()
            .args_iter()
            .map(|a| if let Arg::Simple(bytes) = a { bytes.to_vec() } else { b"<cursor>".to_vec() })
            .collect();
        let expected: Vec<&[u8]> =
            vec![b"FCALL", step::COMMIT.as_bytes(), b"3", b"k1", b"k2", b"k3", b"a1", b"2", b"", b"a3"];
        assert_eq!(parts, expected);
    }

    #[test]
    fn the_library_names_itself_and_states_the_version_the_engine_speaks() {
        assert!(LIBRARY.starts_with("#!lua name=wasmtx\n"));
        assert_eq!(version_of(LIBRARY), Some(LIBRARY_VERSION));
        for name in step::ALL {
            assert!(name.starts_with(&format!("wasmtx_v{LIBRARY_VERSION}_")), "{name} carries the version");
            assert!(LIBRARY.contains(&format!("'{name}'")), "{name} is registered");
        }
        assert!(LIBRARY.contains("'wasmtx_version'"));
        let ttl = crate::store::WAITER_TTL.as_millis();
        assert!(LIBRARY.contains(&format!("\nlocal TICKET_TTL_MS = {ttl}\n")), "the waiters' place life is {ttl} ms");
        let most = crate::store::MAX_WAITERS;
        assert!(LIBRARY.contains(&format!("\nlocal MAX_TICKETS = {most}\n")), "a line holds {most} waiters");
        assert_eq!(LIBRARY.matches("redis.register_function").count(), step::ALL.len() + 1, "no other function");
    }
}
