//! The rule registry: named, versioned rules and model schemas shared by every engine instance
//! connected to the same storage.
//!
//! - An upload is validated by compiling it ([`Engine::compile_rule`](crate::Engine::compile_rule):
//!   WebAssembly, this project's WIT world at a compatible version, no other import, under the
//!   size limit) before anything is stored, and stored as an immutable version: a per-name
//!   number and the SHA-256 of its bytes.
//! - Each rule has one active version; activating another rolls forward or back for every
//!   engine sharing the storage. A [`Registry`] sees an activation at once when it made it,
//!   on the change announcement otherwise, and at the latest after its refresh interval;
//!   an invocation keeps the [`ActiveRule`] it resolved, so it finishes on its version.
//! - Compiled rules are cached per instance by digest, and optionally on disk as precompiled
//!   components keyed by wasmtime's compatibility hash.
//!
//! Storage follows the model store's split: the small [`RegistryStore`] trait, implemented by
//! [`RedisRegistryStore`] (keys under the model store's prefix, see [`redis::keys`]) and
//! [`MemoryRegistryStore`] (embedded, same semantics, with a dump to persist it).
//!
//! Files, one job each: `error` (failures and their classes), `record` (what is stored),
//! `storage` (the trait), `memory` and `redis` (the backends), `instance` (the per-engine
//! view), `refresh` (its background task), `cache` and `disk` (compiled rules), `audit` (who
//! changed what).

pub mod audit;
mod cache;
mod disk;
mod error;
mod instance;
mod memory;
mod record;
pub mod redis;
mod refresh;
mod storage;

pub use self::error::RegistryError;
pub use self::instance::{ActiveRule, Registry, RegistryConfig, RegistryStats};
pub use self::memory::{MemoryRegistryStore, RegistryDump};
pub use self::record::{AddedVersion, RuleInfo, RuleVersion, SchemaRecord, Snapshot, Uploaded};
pub use self::redis::{RedisRegistryStore, RedisRegistryStoreBuilder};
pub use self::storage::RegistryStore;
