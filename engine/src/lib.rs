//! # wasmtx
//!
//! A transaction engine whose business rules are sandboxed WebAssembly components.
//!
//! A host asks the engine to run rule R on models M1..Mn under an action name. In lock mode the
//! engine takes the models' locks and loads their state in one store round trip, runs the rule
//! in a fresh wasmtime instance against that state, diffs what the rule changed and writes it
//! back, fenced and field by field, releasing the locks in a second round trip.
//!
//! The pieces, one module each:
//! - [`model`]: values, schemas, ids, snapshots and field changes;
//! - [`runtime`]: compiling rules and running them in the sandbox (the WIT host);
//! - [`store`]: the [`Store`] trait and its Redis and in-memory backends;
//! - `txn` (private): the transaction protocol (lock waits, the three modes, group commit,
//!   retries), one object per engine;
//! - [`invocation`]: what a caller asks for ([`Invocation`], [`Mode`], [`RetryPolicy`]) and
//!   gets back ([`Outcome`]);
//! - [`Engine`]: the entry point tying them together;
//! - [`registry`]: named, versioned rules and model schemas shared by engine instances;
//! - [`backend`]: the store and registry storage a URL names (`memory`, `redis://...`);
//! - [`error`]: every failure as a typed variant, and how each is classed ([`error::class`]);
//! - [`views`]: the JSON shapes the HTTP API answers with and `wasmtx --json` prints;
//! - `server` (feature `server`): the HTTP API of `wasmtx serve`;
//! - [`testing`]: testing rules without Redis, from `cargo test` ([`testing::RuleHarness`]) or
//!   from fixture files of given/when/then cases ([`testing::fixtures`], `wasmtx test`);
//!   `store::conformance` (feature `conformance`): the contract every [`Store`] must keep.
#![deny(missing_docs)]

pub mod backend;
pub mod engine;
pub mod error;
pub mod invocation;
pub mod model;
pub mod registry;
pub mod rule;
pub mod runtime;
#[cfg(feature = "server")]
pub mod server;
pub mod store;
pub mod testing;
mod txn;
pub mod views;

pub use engine::{Engine, EngineBuilder, EngineConfig};
pub use error::class::{ErrorBody, ErrorClass, Origin, RetryClass};
pub use error::kind::{ErrorKind, KindSource, UnknownErrorKind};
pub use error::{AccessError, Error, InvocationError, Result, RuleLoadError, SchemaError};
pub use invocation::{ContextOverrides, DEFAULT_ACTION, Invocation, Mode, Outcome, RetryOn, RetryPolicy, Timings};
pub use model::change::{FieldChange, ModelChanges, ModelSnapshot, ModelTarget};
pub use model::ids::{LockId, ModelId};
pub use model::placement::{Placement, PlacementKey};
pub use model::schema::{FieldDef, ModelSchema, ModelTypes};
pub use model::value::{FieldType, FieldValue, Scalar, ScalarKind};
pub use registry::{Registry, RegistryError};
pub use rule::Rule;
pub use runtime::{CompiledRule, RuleLimits, RuntimeConfig};
pub use store::memory::MemoryStore;
pub use store::redis::RedisStore;
pub use store::{Store, StoreError};
pub use txn::{AdaptiveConfig, AdaptiveStats, CacheStats, SnapshotCacheConfig};
