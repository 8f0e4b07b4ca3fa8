//! The embedded in-memory store: the Redis store's semantics without a server, for quick
//! starts and rule unit tests.
//!
//! Locks are per (model, action) with an owner, a fencing token and a lease; a lock whose
//! lease ran out counts as free. Every model has a version (bumped by each commit that changed
//! it, and by [`Store::delete`]) and a fencing counter shared by all its actions. Values are
//! kept as the text Redis would store, so a model reads back the same from both stores, even
//! after its schema changed. Releases wake watchers through a [`ReleaseBus`] whose channels are
//! the locks' [`LockId`] `Display` forms. Each lock has a line of waiters, served in arrival
//! order as in the Redis store (see [`Store::try_lock_and_load`]).

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use async_trait::async_trait;

use self::state::State;
use super::{
    CommitReceipt, CommitRequest, Loaded, LockAttempt, LockLease, LockRequest, ReleaseBus, ReleaseWatch, Store,
    StoreError, StoredRecord,
};
use crate::model::change::{ModelSnapshot, ModelTarget};
use crate::model::ids::LockId;

mod data;
mod dump;
mod state;

pub use self::dump::MemoryDump;

/// A [`Store`] held in this process's memory.
///
/// ```
/// use wasmtx::{MemoryStore, Store};
/// let store = MemoryStore::new();
/// let shared = store.clone(); // same data, same locks
/// # let _: &dyn Store = &shared;
/// ```
///
/// # Notes
/// Cheap to clone: clones share one state. Every method may be called from many tasks at
/// once; each takes one mutex for the whole step (never across an `.await`), so each step is
/// atomic, as a Redis script is. Nothing survives the process.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    bus: ReleaseBus,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of every model's stored data, version and fencing counter, and of every live
    /// committed idempotency record (not the locks), to persist the store; [`MemoryStore::from_dump`] makes a store from it again.
    pub fn dump(&self) -> MemoryDump {
        MemoryDump::of(&self.state())
    }

    /// A store holding the models of a [`MemoryStore::dump`], with no lock held.
    pub fn from_dump(dump: MemoryDump) -> Self {
        let inner = Inner { state: Mutex::new(dump.into_state()), bus: ReleaseBus::default() };
        Self { inner: Arc::new(inner) }
    }

    /// Replaces everything this store holds with the models of a [`MemoryStore::dump`] (no
    /// lock held afterwards): loads a persisted state into a store that was just opened.
    ///
    /// # Notes
    /// Meant for a store no invocation uses yet: locks held at the time are dropped.
    pub fn restore(&self, dump: MemoryDump) {
        *self.state() = dump.into_state();
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every step validates before it writes, so a panic cannot leave a half-applied step.
        self.inner.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn announce(&self, released: &[LockId]) {
        for lock in released {
            self.inner.bus.announce(&lock.to_string());
        }
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn try_lock_and_load(&self, request: &LockRequest) -> Result<LockAttempt, StoreError> {
        self.state().try_lock_and_load(request, Instant::now())
    }

    async fn load(&self, models: &[ModelTarget]) -> Result<Vec<ModelSnapshot>, StoreError> {
        self.state().load(models)
    }

    async fn load_unless_recorded(&self, models: &[ModelTarget], key: &str) -> Result<Loaded, StoreError> {
        self.state().load_unless_recorded(models, key, Instant::now())
    }

    async fn commit(&self, request: CommitRequest<'_>) -> Result<CommitReceipt, StoreError> {
        let (receipt, released) = self.state().commit(&request, Instant::now())?;
        self.announce(&released);
        Ok(receipt)
    }

    async fn resolve(
        &self,
        anchor: &ModelTarget,
        keys: &[&str],
        commit_id: &str,
        retention: std::time::Duration,
    ) -> Result<Vec<Option<StoredRecord>>, StoreError> {
        Ok(self.state().resolve(&anchor.id, keys, commit_id, retention, Instant::now()))
    }

    async fn release(&self, leases: &[LockLease]) -> Result<(), StoreError> {
        let released = self.state().release(leases);
        self.announce(&released);
        Ok(())
    }

    async fn withdraw(&self, locks: &[LockId], owner: &str) -> Result<(), StoreError> {
        let due = self.state().withdraw(locks, owner, Instant::now());
        self.announce(&due);
        Ok(())
    }

    async fn delete(&self, model: &ModelTarget) -> Result<u64, StoreError> {
        Ok(self.state().delete(&model.id))
    }

    fn watch(&self, locks: &[LockId]) -> ReleaseWatch {
        self.inner.bus.watch(locks.iter().map(LockId::to_string))
    }

    /// One process holds every model: any models commit together.
    fn ensure_co_located(&self, _models: &[ModelTarget]) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::state::State;
    use super::*;
    use crate::model::change::FieldChange;
    use crate::model::ids::ModelId;
    use crate::model::schema::ModelSchema;
    use crate::model::value::{FieldType, FieldValue, Scalar, ScalarKind};
    use crate::store::{CommitGuard, CommitRecords, VersionCheck};

    fn target(key: &str) -> ModelTarget {
        let schema = ModelSchema::builder("Counter")
            .field("n", FieldType::Scalar(ScalarKind::Int))
            .field("log", FieldType::List(ScalarKind::Str))
            .build()
            .expect("valid schema");
        ModelTarget { id: ModelId::new("Counter", key), schema: Arc::new(schema) }
    }

    fn request(models: &[&ModelTarget], owner: &str, lease: Duration) -> LockRequest {
        LockRequest {
            models: models.iter().map(|&t| t.clone()).collect(),
            action: "bump".into(),
            owner: owner.into(),
            lease,
            record: None,
        }
    }

    fn acquired(attempt: LockAttempt) -> (Vec<LockLease>, Vec<ModelSnapshot>) {
        match attempt {
            LockAttempt::Acquired { leases, snapshots } => (leases, snapshots),
            LockAttempt::Busy { model_index, .. } => panic!("model {model_index} was busy"),
            LockAttempt::Recorded(record) => panic!("unexpected record {record:?}"),
        }
    }

    fn set_n(value: i64) -> Vec<FieldChange> {
        vec![FieldChange::Set { field: "n".into(), value: Scalar::Int(value) }]
    }

    #[test]
    fn a_lock_is_free_exactly_when_its_lease_runs_out() -> Result<(), StoreError> {
        let mut state = State::default();
        let a = target("a");
        let t0 = Instant::now();
        let lease = Duration::from_millis(50);
        let (first, _) = acquired(state.try_lock_and_load(&request(&[&a], "one", lease), t0)?);

        let just_before = t0 + lease - Duration::from_nanos(1);
        match state.try_lock_and_load(&request(&[&a], "two", lease), just_before)? {
            LockAttempt::Busy { model_index: 0, expires_in: Some(left) } => assert_eq!(left, Duration::from_nanos(1)),
            other => panic!("expected busy, got {other:?}"),
        }
        let (second, _) = acquired(state.try_lock_and_load(&request(&[&a], "two", lease), t0 + lease)?);
        assert!(second[0].token > first[0].token);

        let changes = [set_n(1)];
        let guard = CommitGuard::Leases { leases: &first, versions: &[0], check: VersionCheck::WhenWriting };
        let late =
            CommitRequest { models: std::slice::from_ref(&a), changes: &changes, guard, records: CommitRecords::NONE };
        assert!(matches!(state.commit(&late, t0 + lease), Err(StoreError::LockLost { .. })));
        assert_eq!(state.load(std::slice::from_ref(&a))?[0].version, 0, "the lost commit wrote nothing");
        Ok(())
    }

    /// A free lock is due to the oldest waiter until its place runs out, [`WAITER_TTL`] after
    /// its last attempt; a waiter refused at one model of a request keeps no place elsewhere.
    #[test]
    fn a_free_lock_waits_for_its_oldest_waiter_until_the_place_runs_out() -> Result<(), StoreError> {
        use crate::store::WAITER_TTL;
        let mut state = State::default();
        let (a, b) = (target("a"), target("b"));
        let t0 = Instant::now();
        let lease = Duration::from_secs(60);
        let (held, _) = acquired(state.try_lock_and_load(&request(&[&a], "holder", lease), t0)?);
        let busy = state.try_lock_and_load(&request(&[&a], "waiter", lease), t0)?;
        assert!(matches!(busy, LockAttempt::Busy { model_index: 0, .. }), "{busy:?}");
        state.release(&held);

        let later = t0 + Duration::from_millis(1);
        match state.try_lock_and_load(&request(&[&a], "late", lease), later)? {
            LockAttempt::Busy { model_index: 0, expires_in: Some(left) } => {
                assert_eq!(left, WAITER_TTL - Duration::from_millis(1));
            }
            other => panic!("expected the lock to wait for its waiter, got {other:?}"),
        }
        // `b` is free and nobody waits for it: `late` keeps its place at `a` only.
        let busy = state.try_lock_and_load(&request(&[&a, &b], "late", lease), later)?;
        assert!(matches!(busy, LockAttempt::Busy { model_index: 0, .. }), "{busy:?}");
        acquired(state.try_lock_and_load(&request(&[&b], "third", lease), later)?);
        // The waiter never came back: its place ran out, and `late`, next in line, gets `a`.
        acquired(state.try_lock_and_load(&request(&[&a], "late", lease), t0 + WAITER_TTL)?);
        Ok(())
    }

    #[test]
    fn an_expired_lease_cannot_commit_even_if_nobody_took_the_lock() -> Result<(), StoreError> {
        let mut state = State::default();
        let a = target("a");
        let t0 = Instant::now();
        let (leases, _) = acquired(state.try_lock_and_load(&request(&[&a], "one", Duration::from_millis(5)), t0)?);
        let changes = [set_n(1)];
        let guard = CommitGuard::Leases { leases: &leases, versions: &[0], check: VersionCheck::WhenWriting };
        let commit =
            CommitRequest { models: std::slice::from_ref(&a), changes: &changes, guard, records: CommitRecords::NONE };
        assert!(matches!(state.commit(&commit, t0 + Duration::from_millis(5)), Err(StoreError::LockLost { .. })));
        Ok(())
    }

    #[test]
    fn a_busy_model_makes_the_whole_attempt_take_nothing() -> Result<(), StoreError> {
        let mut state = State::default();
        let (a, b) = (target("a"), target("b"));
        let now = Instant::now();
        let lease = Duration::from_secs(10);
        acquired(state.try_lock_and_load(&request(&[&b], "holder", lease), now)?);
        let attempt = state.try_lock_and_load(&request(&[&a, &b], "other", lease), now)?;
        assert!(matches!(attempt, LockAttempt::Busy { model_index: 1, .. }), "{attempt:?}");
        assert_eq!(state.lock_count(), 1, "`a` was not taken");
        acquired(state.try_lock_and_load(&request(&[&a], "third", lease), now)?);
        Ok(())
    }

    #[test]
    fn a_refused_change_in_a_later_model_leaves_every_model_untouched() -> Result<(), StoreError> {
        let mut state = State::default();
        let (a, b) = (target("a"), target("b"));
        let models = [a.clone(), b.clone()];
        let changes = [set_n(5), vec![FieldChange::ListPop { field: "log".into(), index: None }]];
        let commit = CommitRequest {
            models: &models,
            changes: &changes,
            guard: CommitGuard::Unguarded,
            records: CommitRecords::NONE,
        };
        let err = state.commit(&commit, Instant::now()).expect_err("pop from an empty list");
        assert!(
            matches!(&err, StoreError::CannotApply { model, field, .. } if *model == b.id && field == "log"),
            "{err}"
        );
        let snapshots = state.load(&models)?;
        assert_eq!(snapshots, [ModelSnapshot::defaults(&a.schema), ModelSnapshot::defaults(&b.schema)]);
        Ok(())
    }

    #[test]
    fn a_model_named_twice_in_one_commit_gets_both_change_lists() -> Result<(), StoreError> {
        let mut state = State::default();
        let a = target("a");
        let models = [a.clone(), a.clone()];
        let inc = |delta| vec![FieldChange::Increment { field: "n".into(), delta }];
        let changes = [inc(2), inc(3)];
        let commit = CommitRequest {
            models: &models,
            changes: &changes,
            guard: CommitGuard::Unguarded,
            records: CommitRecords::NONE,
        };
        state.commit(&commit, Instant::now())?;
        assert_eq!(state.load(std::slice::from_ref(&a))?[0].values[0], FieldValue::Scalar(Scalar::Int(5)));
        Ok(())
    }

    #[test]
    fn malformed_guards_are_refused() {
        let mut state = State::default();
        let a = target("a");
        let changes = [set_n(1)];
        let commit = CommitRequest {
            models: std::slice::from_ref(&a),
            changes: &changes,
            guard: CommitGuard::Versions { versions: &[], action: "a", refresh: false },
            records: CommitRecords::NONE,
        };
        assert!(matches!(state.commit(&commit, Instant::now()), Err(StoreError::Backend(_))));
    }

    #[test]
    fn expired_locks_nobody_touches_again_are_swept() -> Result<(), StoreError> {
        let mut state = State::default();
        let t0 = Instant::now();
        let lease = Duration::from_millis(1);
        for i in 0..200 {
            let t = target(&format!("k{i}"));
            acquired(state.try_lock_and_load(&request(&[&t], "o", lease), t0 + Duration::from_secs(i))?);
        }
        assert!(state.lock_count() < 100, "{} locks left", state.lock_count());
        Ok(())
    }

    #[tokio::test]
    async fn clones_share_data_locks_and_release_announcements() -> Result<(), StoreError> {
        let store = MemoryStore::new();
        let clone = store.clone();
        let a = target("a");
        let (leases, _) = acquired(store.try_lock_and_load(&request(&[&a], "one", Duration::from_secs(10))).await?);
        let attempt = clone.try_lock_and_load(&request(&[&a], "two", Duration::from_secs(10))).await?;
        assert!(matches!(attempt, LockAttempt::Busy { .. }));
        let mut watch = clone.watch(&[leases[0].lock.clone()]);
        store.release(&leases).await?;
        tokio::time::timeout(Duration::from_secs(5), watch.released()).await.expect("the release was announced");
        assert!(format!("{store:?}").starts_with("MemoryStore"));
        Ok(())
    }
}
