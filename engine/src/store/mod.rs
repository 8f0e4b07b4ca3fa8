//! Storage backends behind one small trait.
//!
//! The engine speaks to a store only through [`Store`]: take locks and load state in one step,
//! load without locks, commit a change set under a guard (leases, versions or nothing) with its
//! idempotency records ([`record`]), resolve a commit whose reply was lost, release, and watch
//! for releases. Two implementations pass one conformance suite:
//! [`RedisStore`](redis::RedisStore), the real one, and [`MemoryStore`](memory::MemoryStore), an
//! embedded store with the same semantics for quick starts and rule unit tests.

use std::fmt;
use std::sync::Weak;
use std::time::Duration;

use async_trait::async_trait;

use crate::model::change::{FieldChange, ModelSnapshot, ModelTarget};
use crate::model::ids::{LockId, ModelId};

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod memory;
pub mod record;
pub mod redis;
mod release_bus;

pub use record::{CommitRecords, RecordEntry, RecordRef, StoredRecord};
pub use release_bus::{ReleaseBus, ReleaseWatch};

/// How long a waiter's place in a lock's line lasts after its last attempt (see
/// [`Store::try_lock_and_load`]).
pub const WAITER_TTL: Duration = Duration::from_millis(1000);

/// The most owners waiting in line for one lock; later ones wait without a place.
pub const MAX_WAITERS: usize = 64;

/// A request to take one action's locks on several models and load them, all or nothing.
#[derive(Debug, Clone)]
pub struct LockRequest {
    /// The models, sorted by id and without duplicates: the global lock order.
    pub models: Vec<ModelTarget>,
    /// The action name; one lock per (model, action).
    pub action: String,
    /// Who takes the locks (engine instance and invocation), stored in the lock. A live lock
    /// of the same owner is taken again, with a new token that fences the old lease off: that
    /// is how a retry recovers the locks of an attempt whose lock-and-load reply was lost, so
    /// an owner must name one invocation, never two that run at once. The engine makes it
    /// `<instance>-<sequence number>`; other callers should likewise not end it with `:w`,
    /// which the Redis store appends to a lock's value to flag a waiter.
    pub owner: String,
    /// How long the locks live if their holder never commits or releases them.
    pub lease: Duration,
    /// The idempotency key of the invocation, if any: when it is already recorded as committed
    /// (beside the first model), nothing is locked and the record comes back
    /// ([`LockAttempt::Recorded`]).
    pub record: Option<String>,
}

/// What one attempt to take locks gave.
#[derive(Debug, Clone)]
pub enum LockAttempt {
    /// Every lock was free and is now held; the models were loaded under the locks.
    Acquired {
        /// One lease per model, in request order.
        leases: Vec<LockLease>,
        /// One snapshot per model, in request order.
        snapshots: Vec<ModelSnapshot>,
    },
    /// At least one lock is held by someone else, or free but due to an earlier waiter;
    /// nothing was taken.
    Busy {
        /// The index (in request order) of a model whose lock is held or due to another.
        model_index: usize,
        /// When that lock's lease (or the earlier waiter's place) runs out, if the store knows.
        expires_in: Option<Duration>,
    },
    /// The request's idempotency key is recorded as committed: nothing was taken or loaded.
    Recorded(StoredRecord),
}

/// What a load that checks an idempotency record gave.
#[derive(Debug, Clone)]
pub enum Loaded {
    /// The key is not recorded: one snapshot per model, in request order.
    Snapshots(Vec<ModelSnapshot>),
    /// The key is recorded as committed: nothing was loaded.
    Recorded(StoredRecord),
}

/// A held lock: proof of ownership checked by the commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockLease {
    /// The lock.
    pub lock: LockId,
    /// The fencing token: strictly greater than every token issued before for this model.
    pub token: u64,
    /// The owner string given when taking it.
    pub owner: String,
    /// By this process's clock, the lease lasts at least until then: the store started it no
    /// earlier than when the request was sent. (A store may skip reading its own clock at
    /// commit while this instant is comfortably ahead.)
    pub held_until: std::time::Instant,
}

/// What must still hold for a commit to apply.
#[derive(Debug, Clone, Copy)]
pub enum CommitGuard<'a> {
    /// Lock mode: every lease (one per model, request order) must still be held with its token,
    /// and (when the commit writes anything, or always, as `check` says) every model must still
    /// be at the version it had when the locks were taken (one per model): a lock is per
    /// (model, action), so another action, another mode or a direct write may have changed the
    /// model since, and a value computed from the older state must not overwrite that. The
    /// commit releases the leases; a refused commit releases nothing.
    Leases {
        /// The leases, one per model.
        leases: &'a [LockLease],
        /// The versions loaded under them, one per model.
        versions: &'a [u64],
        /// When the versions are checked.
        check: VersionCheck,
    },
    /// Optimistic mode: every model's version must still be this (one per model), and no lock
    /// of `action` may be held on any of them: an optimistic invocation never commits while a
    /// lock-mode invocation of the same action holds the model, so the modes mix without lost
    /// updates.
    Versions {
        /// The versions loaded, one per model.
        versions: &'a [u64],
        /// The invocation's action.
        action: &'a str,
        /// Whether a commit refused because versions moved should bring back the fresh state
        /// of every model whose version moved, read in the same atomic step
        /// ([`StoreError::Stale`] instead of [`StoreError::Conflict`]): a caller that runs on
        /// cached state then runs again at once, with no load of its own.
        refresh: bool,
    },
    /// Pipeline mode: no precondition; the changes apply to whatever is stored.
    Unguarded,
}

/// When a lease-guarded commit ([`CommitGuard::Leases`]) checks the versions loaded under its
/// leases.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum VersionCheck {
    /// Only when the commit writes. A run that writes nothing read one consistent state, the
    /// one loaded under the locks, after its invocation was sent: a later change by another
    /// writer does not make that read wrong.
    #[default]
    WhenWriting,
    /// Even when it writes nothing: some of the runs committed were sent after the load (the
    /// later members of a lock-mode group), and what they read must still be the stored state
    /// as they are answered, or a write acknowledged before they were sent would be missing.
    Always,
}

/// A change set to apply atomically: all of it or none of it.
#[derive(Debug, Clone, Copy)]
pub struct CommitRequest<'a> {
    /// Every model of the invocation, in request order (unchanged ones too: the guard covers
    /// them).
    pub models: &'a [ModelTarget],
    /// The changes, one list per model, in request order.
    pub changes: &'a [Vec<FieldChange>],
    /// The precondition.
    pub guard: CommitGuard<'a>,
    /// The idempotency records to check and write (kept beside `models[0]`):
    /// [`CommitRecords::NONE`] for none.
    pub records: CommitRecords<'a>,
}

/// The result of an applied commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitReceipt {
    /// Each model's version after the commit (bumped for models that changed).
    pub versions: Vec<u64>,
}

/// A model a version-guarded commit found moved, with its current state ([`StoreError::Stale`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StaleModel {
    /// The model's index in the commit's request order.
    pub index: usize,
    /// The model.
    pub model: ModelId,
    /// Its current state and version.
    pub snapshot: ModelSnapshot,
}

impl StaleModel {
    /// The `index`-th model of a commit, found at `snapshot`.
    pub fn new(index: usize, model: ModelId, snapshot: ModelSnapshot) -> Self {
        Self { index, model, snapshot }
    }
}

/// A storage backend.
///
/// # Notes
/// Implementations are shared by every invocation of an engine (and possibly by several
/// engines): every method may be called concurrently. Atomicity is the store's job: a commit
/// either applies all its changes and releases its locks, or writes nothing. So is fairness: a
/// store keeps a bounded line of waiters per lock and gives a free lock to the oldest one, so
/// that the waiters of several engines are served in about arrival order (see
/// [`Store::try_lock_and_load`] and [`Store::withdraw`]).
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// Takes every lock of `request` and loads every model, in one step (one round trip for
    /// Redis). All or nothing: if any lock is held, nothing is taken.
    ///
    /// Waiters are served in about arrival order: an attempt refused at a model leaves the
    /// owner a place in that lock's line (kept, not renewed, by its later attempts there, and
    /// taken from the lines of the request's other models), and a free lock goes to the owner
    /// of the oldest place still alive; to anyone when no place is. A place runs out
    /// [`WAITER_TTL`] after the owner's last attempt (so a waiter must try again well within
    /// that: the engine does at least every 250 ms), or when [`Store::withdraw`] removes it;
    /// at most [`MAX_WAITERS`] owners have a place in one line. A lock the owner holds itself
    /// is taken again whatever the line.
    ///
    /// # Errors
    /// [`StoreError`] if the store fails or holds data that does not fit the schema.
    async fn try_lock_and_load(&self, request: &LockRequest) -> Result<LockAttempt, StoreError>;

    /// Loads models without locks (pipeline and optimistic modes, direct reads), with their
    /// versions, as one consistent snapshot.
    ///
    /// # Errors
    /// [`StoreError`] if the store fails or holds data that does not fit the schema.
    async fn load(&self, models: &[ModelTarget]) -> Result<Vec<ModelSnapshot>, StoreError>;

    /// As [`Store::load`], unless `key` is recorded as committed beside `models[0]` (then the
    /// record comes back and nothing is loaded), in the same step. With no model there is no
    /// record to find.
    ///
    /// # Errors
    /// [`StoreError`] if the store fails or holds data that does not fit the schema.
    async fn load_unless_recorded(&self, models: &[ModelTarget], key: &str) -> Result<Loaded, StoreError>;

    /// Checks the records and the guard, then applies every change, writes the records (and
    /// releases the guard's leases), in one atomic step. Checked before anything is written:
    /// the records (none may be recorded as committed, and the attempt must not have been
    /// resolved as aborted), the guard (leases, then versions), and whether every change
    /// applies. A commit refused for several of these reasons reports one of them (which one
    /// is up to the store); in every case nothing was written.
    ///
    /// # Errors
    /// [`StoreError::Recorded`] when an invocation of the commit is recorded already,
    /// [`StoreError::CommitAborted`] when [`Store::resolve`] declared this attempt aborted,
    /// [`StoreError::LockLost`] or [`StoreError::Conflict`] when the guard fails,
    /// [`StoreError::CannotApply`] when a change does not fit the stored data: in all these
    /// cases nothing was written, and no lease was released (a lock-mode holder refused with
    /// `Conflict` still holds its locks, and may load again, recompute and commit). Any other
    /// error after the request was sent (a lost connection, a reply timeout) leaves the outcome
    /// unknown: [`Store::resolve`] tells.
    async fn commit(&self, request: CommitRequest<'_>) -> Result<CommitReceipt, StoreError>;

    /// After a commit attempt whose reply was lost, tells for each key (kept beside `anchor`)
    /// whether it is recorded as committed, and makes the answer final: a key that is not
    /// recorded gets `commit_id` marked as aborted (for `retention`), so that the attempt, if it
    /// is still on its way, writes nothing when it arrives. One atomic step.
    ///
    /// # Errors
    /// [`StoreError`] if the store fails: the outcome then stays unknown.
    async fn resolve(
        &self,
        anchor: &ModelTarget,
        keys: &[&str],
        commit_id: &str,
        retention: Duration,
    ) -> Result<Vec<Option<StoredRecord>>, StoreError>;

    /// Releases the locks of these leases that are still held with their tokens, writing
    /// nothing else, and wakes their waiters.
    ///
    /// # Errors
    /// [`StoreError`] if the store fails (the leases then run out by themselves).
    async fn release(&self, leases: &[LockLease]) -> Result<(), StoreError>;

    /// Gives up waiting for these locks: removes `owner`'s place in their lines (see
    /// [`Store::try_lock_and_load`]), so that the next waiter's turn comes at once rather than
    /// when the place would have run out. Writes nothing else; a lock where `owner` has no
    /// place is left alone.
    ///
    /// # Errors
    /// [`StoreError`] if the store fails (the place then runs out by itself).
    async fn withdraw(&self, locks: &[LockId], owner: &str) -> Result<(), StoreError>;

    /// Deletes every key of a model (its data, not its locks or fencing counter) and bumps
    /// its version.
    ///
    /// # Errors
    /// [`StoreError`] if the store fails.
    async fn delete(&self, model: &ModelTarget) -> Result<u64, StoreError>;

    /// Starts watching for releases of these locks. Call it *before* trying to take them, so
    /// that a release between the attempt and the wait is not missed.
    fn watch(&self, locks: &[LockId]) -> ReleaseWatch;

    /// Checks, before anything is locked or written, that one invocation may span these models:
    /// that the store can lock, load and commit them together atomically. A store on one server
    /// (and the memory store) always can; a sharded one (Redis Cluster) only for models in one
    /// shard (hash slot). The engine calls it first in every mode.
    ///
    /// # Errors
    /// [`StoreError::CrossSlot`] naming the models and where they live.
    fn ensure_co_located(&self, models: &[ModelTarget]) -> Result<(), StoreError>;

    /// A number that changes whenever this store may have lost track of what it served: a
    /// broken or replaced connection, a server that lost its functions (a restart, a
    /// failover). A cache of snapshots drops what it kept under an older one, since a server
    /// that lost writes can reach a version again with other data behind it. A store whose
    /// data cannot go back (the memory store) keeps it at 0.
    fn generation(&self) -> u64 {
        0
    }

    /// Starts telling `sink` which models other clients change, as far as this store can tell
    /// (a [`RedisStore`](redis::RedisStore) opened with
    /// [client tracking](redis::RedisStoreBuilder::client_tracking)); returns whether it will.
    /// A store that cannot (the default) never calls `sink`. The engine's snapshot cache
    /// watches to drop a moved model before it runs a rule on it; its correctness never
    /// depends on being told.
    ///
    /// # Notes
    /// The store holds `sink` weakly: once it is dropped it is no longer told. `sink` is
    /// called from the store's listener task and must not block.
    fn watch_changes(&self, sink: Weak<dyn ChangeSink>) -> bool {
        let _ = sink;
        false
    }
}

/// Told by a store which models other clients changed ([`Store::watch_changes`]).
pub trait ChangeSink: Send + Sync {
    /// These models changed, or may have, since this client last read them. (Lost
    /// notifications are not sent again: the store moves its [generation](Store::generation)
    /// instead.)
    fn changed(&self, models: &[ModelId]);
}

/// A failure of a store operation.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A lease was no longer held with its token at commit time (it ran out, and maybe another
    /// holder took the lock). Nothing was written.
    #[error("lock {lock} was lost before the commit (lease expired or taken over); nothing was written")]
    LockLost {
        /// The lock.
        lock: LockId,
    },
    /// An invocation of the commit (`index` in its records) is already recorded as committed:
    /// it was applied before. Nothing was written.
    #[error("invocation {index} of the commit is already recorded as committed; nothing was written")]
    Recorded {
        /// The entry's index in [`CommitRecords::entries`].
        index: usize,
        /// The record.
        record: StoredRecord,
    },
    /// The commit attempt was declared aborted by [`Store::resolve`] before it arrived.
    /// Nothing was written.
    #[error("commit attempt {commit_id} was declared aborted before it arrived; nothing was written")]
    CommitAborted {
        /// The attempt's id.
        commit_id: String,
    },
    /// A model's version changed since it was loaded. Nothing was written.
    #[error("model {model} changed since it was loaded (version {expected} is now {found}); nothing was written")]
    Conflict {
        /// The model.
        model: ModelId,
        /// The version the commit expected.
        expected: u64,
        /// The version found.
        found: u64,
    },
    /// A version-guarded commit that asked for fresh state
    /// ([`CommitGuard::Versions::refresh`]) found models whose version moved: here is their
    /// current state, read in the same atomic step as the check. Nothing was written.
    #[error("{} model(s) changed since they were read (first {}); nothing was written", models.len(), models.first().map_or_else(String::new, |m| m.model.to_string()))]
    Stale {
        /// The models whose version moved, in request order (at least one).
        models: Vec<StaleModel>,
    },
    /// A change does not fit the stored data (for example a pipeline increment of a field that
    /// another client set to text, or a pop from an empty list). Nothing was written.
    #[error("cannot apply the change to {model}.{field}: {reason}; nothing was written")]
    CannotApply {
        /// The model.
        model: ModelId,
        /// The field.
        field: String,
        /// Why.
        reason: String,
    },
    /// Stored data does not fit the model's schema (written by another client, or by an older
    /// schema).
    #[error("stored data of {model}.{field} does not fit the schema: {reason}")]
    Corrupt {
        /// The model.
        model: ModelId,
        /// The field.
        field: String,
        /// Why.
        reason: String,
    },
    /// The models of one invocation live in different Redis Cluster hash slots, where no
    /// atomic commit spans them. Refused before anything was locked or written.
    #[error(
        "models {} live in different Redis Cluster hash slots ({}), and one invocation commits atomically only within one slot; nothing was locked or written. Co-locate them: give their schemas one placement group (`placement = {{ group = \"...\", by = \"key\" }}` or `by = \"prefix\"`; see the README, *Redis Cluster*)",
        models.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
        slots.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
    )]
    CrossSlot {
        /// The models, in the order given.
        models: Vec<ModelId>,
        /// Each model's hash slot, in the same order.
        slots: Vec<u16>,
    },
    /// The store could not be reached or the connection broke. Retrying may succeed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A key prefix the Redis layout cannot use (empty, or with a brace). Nothing was opened.
    #[error("invalid key prefix {prefix:?}: {reason}")]
    InvalidPrefix {
        /// The prefix given.
        prefix: String,
        /// Why it is refused.
        reason: String,
    },
    /// A backend URL that names no known backend, or a malformed one. Nothing was opened.
    #[error("invalid store URL {url}: {reason}")]
    InvalidUrl {
        /// The URL, any password hidden.
        url: String,
        /// Why it is refused.
        reason: String,
    },
    /// The server cannot run this engine's store protocol: a Redis before 7.0 (no Functions),
    /// or a newer version of the wasmtx library loaded by a newer engine. Nothing was written.
    #[error("incompatible store server: {reason}")]
    Incompatible {
        /// Why.
        reason: String,
    },
    /// Any other backend failure.
    #[error("store failure: {0}")]
    Backend(String),
}
