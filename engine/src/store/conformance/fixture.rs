//! The fixture the checks share: one store, one namespace, one schema with a field of every
//! shape, and brief constructors of values and changes.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use super::{CHECK_TIMEOUT, CheckError, Context as _, bail, ensure};
use crate::model::change::{FieldChange, ModelSnapshot, ModelTarget};
use crate::model::ids::{LockId, ModelId};
use crate::model::placement::{Placement, PlacementKey};
use crate::model::schema::ModelSchema;
use crate::model::value::{FieldType, FieldValue, Scalar, ScalarKind};
use crate::store::{
    CommitGuard, CommitReceipt, CommitRecords, CommitRequest, LockAttempt, LockLease, LockRequest, Store, StoreError,
    VersionCheck,
};

type Result<T> = std::result::Result<T, CheckError>;

/// A lease no check outlives.
pub(super) const LONG_LEASE: Duration = Duration::from_secs(60);
/// A lease checks wait out.
pub(super) const SHORT_LEASE: Duration = Duration::from_millis(50);
/// The bound on every wait for something that should happen at once (a wake-up) or soon (a
/// lease running out).
pub(super) const WAIT_BOUND: Duration = Duration::from_secs(5);

pub(super) const MODEL_TYPE: &str = "Conformance";

/// Where the test models live: every model of one check in one placement group part (its
/// key's text before the first `:`, the check's name), so that a multi-model check runs on a
/// Redis Cluster as on one server; the suite thereby holds every store to placed layouts too.
pub(super) fn placement() -> Result<Placement> {
    Ok(Placement::new("conformance", PlacementKey::Prefix { separator: ":".into() })?)
}

/// The test model type: every scalar kind (with non-zero defaults where the type allows), a
/// list and a dict.
pub(super) fn test_schema() -> Result<ModelSchema> {
    Ok(ModelSchema::builder(MODEL_TYPE)
        .placement(placement()?)
        .field("count", FieldType::Scalar(ScalarKind::Int))
        .field("other", FieldType::Scalar(ScalarKind::Int))
        .field_with_default("level", FieldType::Scalar(ScalarKind::Int), int(7))
        .field_with_default("label", FieldType::Scalar(ScalarKind::Str), text("none"))
        .field_with_default("ratio", FieldType::Scalar(ScalarKind::Float), FieldValue::Scalar(Scalar::Float(1.5)))
        .field_with_default("flag", FieldType::Scalar(ScalarKind::Bool), FieldValue::Scalar(Scalar::Bool(true)))
        .field_with_default("blob", FieldType::Scalar(ScalarKind::Bytes), FieldValue::Scalar(Scalar::Bytes(vec![1, 2])))
        .field("items", FieldType::List(ScalarKind::Str))
        .field("tags", FieldType::Dict(ScalarKind::Int))
        .build()?)
}

/// The same model type after `label` became an int (as a re-registered schema would be).
pub(super) fn changed_schema() -> Result<ModelSchema> {
    Ok(ModelSchema::builder(MODEL_TYPE)
        .placement(placement()?)
        .field("count", FieldType::Scalar(ScalarKind::Int))
        .field("label", FieldType::Scalar(ScalarKind::Int))
        .build()?)
}

/// Locks held and models loaded by a successful attempt.
#[derive(Debug)]
pub(super) struct Held {
    pub(super) leases: Vec<LockLease>,
    pub(super) snapshots: Vec<ModelSnapshot>,
    /// The versions loaded under the leases, for the commit's guard.
    pub(super) versions: Vec<u64>,
}

impl Held {
    fn new(leases: Vec<LockLease>, snapshots: Vec<ModelSnapshot>) -> Self {
        let versions = snapshots.iter().map(|s| s.version).collect();
        Self { leases, snapshots, versions }
    }

    /// The lock-mode guard of a commit under these leases, at the versions loaded.
    pub(super) fn guard(&self) -> CommitGuard<'_> {
        CommitGuard::Leases { leases: &self.leases, versions: &self.versions, check: VersionCheck::WhenWriting }
    }
}

pub(super) fn token(held: &Held) -> u64 {
    held.leases[0].token
}

#[derive(Debug)]
pub(super) struct Fx {
    pub(super) store: Arc<dyn Store>,
    pub(super) ns: String,
    pub(super) schema: Arc<ModelSchema>,
}

impl Fx {
    pub(super) fn new(store: Arc<dyn Store>, ns: &str) -> Result<Self> {
        Ok(Self { store, ns: ns.to_owned(), schema: Arc::new(test_schema()?) })
    }

    /// The model `name` of this run's namespace.
    pub(super) fn model(&self, name: &str) -> ModelTarget {
        ModelTarget { id: ModelId::new(MODEL_TYPE, format!("{}:{name}", self.ns)), schema: Arc::clone(&self.schema) }
    }

    /// The same model read through another schema.
    pub(super) fn with_schema(&self, model: &ModelTarget, schema: ModelSchema) -> ModelTarget {
        ModelTarget { id: model.id.clone(), schema: Arc::new(schema) }
    }

    pub(super) fn request(&self, models: &[&ModelTarget], action: &str, owner: &str, lease: Duration) -> LockRequest {
        LockRequest {
            models: models.iter().map(|&m| m.clone()).collect(),
            action: action.to_owned(),
            owner: owner.to_owned(),
            lease,
            record: None,
        }
    }

    pub(super) async fn acquire(&self, models: &[&ModelTarget], action: &str, owner: &str) -> Result<Held> {
        self.acquire_with_lease(models, action, owner, LONG_LEASE).await
    }

    pub(super) async fn acquire_with_lease(
        &self,
        models: &[&ModelTarget],
        action: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<Held> {
        match self.store.try_lock_and_load(&self.request(models, action, owner, lease)).await? {
            LockAttempt::Acquired { leases, snapshots } => {
                expect_eq(leases.len(), models.len(), "one lease per model")?;
                expect_eq(snapshots.len(), models.len(), "one snapshot per model")?;
                for (lease, model) in leases.iter().zip(models) {
                    expect_eq(&lease.lock, &lock_id(model, action), "lease order")?;
                    expect_eq(lease.owner.as_str(), owner, "lease owner")?;
                }
                Ok(Held::new(leases, snapshots))
            }
            LockAttempt::Busy { model_index, .. } => bail!("`{action}` on model #{model_index} is busy"),
            LockAttempt::Recorded(record) => bail!("a request without a record key found {record:?}"),
        }
    }

    /// Retries until the lock is free (a previous holder's lease runs out), within a bound.
    pub(super) async fn acquire_after_expiry(
        &self,
        models: &[&ModelTarget],
        action: &str,
        owner: &str,
    ) -> Result<Held> {
        let request = self.request(models, action, owner, LONG_LEASE);
        let deadline = tokio::time::Instant::now() + WAIT_BOUND;
        loop {
            match self.store.try_lock_and_load(&request).await? {
                LockAttempt::Acquired { leases, snapshots } => return Ok(Held::new(leases, snapshots)),
                LockAttempt::Recorded(record) => bail!("a request without a record key found {record:?}"),
                LockAttempt::Busy { expires_in, .. } => {
                    ensure!(tokio::time::Instant::now() < deadline, "the lock was still held after {WAIT_BOUND:?}");
                    let left = expires_in.unwrap_or(SHORT_LEASE).min(SHORT_LEASE);
                    tokio::time::sleep(left + Duration::from_millis(1)).await;
                }
            }
        }
    }

    /// Expects the attempt to be refused; gives the busy model's index and expiry.
    pub(super) async fn expect_busy(
        &self,
        models: &[&ModelTarget],
        action: &str,
        owner: &str,
    ) -> Result<(usize, Option<Duration>)> {
        match self.store.try_lock_and_load(&self.request(models, action, owner, LONG_LEASE)).await? {
            LockAttempt::Busy { model_index, expires_in } => Ok((model_index, expires_in)),
            LockAttempt::Acquired { leases, .. } => {
                self.store.release(&leases).await?;
                bail!("`{action}` was taken by {owner} although it should be busy")
            }
            LockAttempt::Recorded(record) => bail!("a request without a record key found {record:?}"),
        }
    }

    pub(super) async fn commit(
        &self,
        models: &[&ModelTarget],
        changes: Vec<Vec<FieldChange>>,
        guard: CommitGuard<'_>,
    ) -> std::result::Result<CommitReceipt, StoreError> {
        self.commit_with(models, changes, guard, CommitRecords::NONE).await
    }

    /// As [`Fx::commit`], with records.
    pub(super) async fn commit_with(
        &self,
        models: &[&ModelTarget],
        changes: Vec<Vec<FieldChange>>,
        guard: CommitGuard<'_>,
        records: CommitRecords<'_>,
    ) -> std::result::Result<CommitReceipt, StoreError> {
        let models: Vec<ModelTarget> = models.iter().map(|&m| m.clone()).collect();
        self.store.commit(CommitRequest { models: &models, changes: &changes, guard, records }).await
    }

    /// An unguarded commit to one model; returns its new version.
    pub(super) async fn write(&self, model: &ModelTarget, changes: Vec<FieldChange>) -> Result<u64> {
        let receipt = self.commit(&[model], vec![changes], CommitGuard::Unguarded).await?;
        receipt.versions.first().copied().context("a receipt without versions")
    }

    pub(super) async fn load(&self, model: &ModelTarget) -> Result<ModelSnapshot> {
        let mut snapshots = self.store.load(std::slice::from_ref(model)).await?;
        expect_eq(snapshots.len(), 1, "one snapshot per model")?;
        Ok(snapshots.remove(0))
    }

    pub(super) fn field<'s>(&self, snapshot: &'s ModelSnapshot, name: &str) -> Result<&'s FieldValue> {
        let index = self.schema.field_index(name).with_context(|| format!("no field {name}"))?;
        snapshot.values.get(index).with_context(|| format!("snapshot without field {name}"))
    }

    /// Applies one change in a lock-load-commit cycle and checks the field reads back as
    /// `expected` and the version moved by one.
    pub(super) async fn expect_after(
        &self,
        model: &ModelTarget,
        change: FieldChange,
        expected: FieldValue,
    ) -> Result<()> {
        let what = format!("after {change:?}");
        let field = change.field().to_owned();
        let held = self.acquire(&[model], "write", "writer").await?;
        let before = held.snapshots[0].version;
        let receipt = self.commit(&[model], vec![vec![change]], held.guard()).await?;
        expect_eq(receipt.versions, vec![before + 1], &format!("versions {what}"))?;
        let snapshot = self.load(model).await?;
        expect_eq(self.field(&snapshot, &field)?, &expected, &what)?;
        expect_eq(snapshot.version, before + 1, &format!("stored version {what}"))
    }

    /// One lock-load-`Set(count + 1)`-commit cycle, waiting for the lock as an engine does;
    /// returns the fencing token it used.
    pub(super) async fn increment_under_lock(&self, model: &ModelTarget, owner: &str) -> Result<u64> {
        let request = self.request(&[model], "bump", owner, LONG_LEASE);
        let deadline = tokio::time::Instant::now() + CHECK_TIMEOUT;
        let mut releases = self.store.watch(&[lock_id(model, "bump")]);
        loop {
            match self.store.try_lock_and_load(&request).await? {
                LockAttempt::Acquired { leases, snapshots } => {
                    let FieldValue::Scalar(Scalar::Int(count)) = self.field(&snapshots[0], "count")? else {
                        bail!("count is not an int")
                    };
                    let changes = vec![vec![set("count", Scalar::Int(count + 1))]];
                    let versions = [snapshots[0].version];
                    self.commit(
                        &[model],
                        changes,
                        CommitGuard::Leases { leases: &leases, versions: &versions, check: VersionCheck::WhenWriting },
                    )
                    .await?;
                    return Ok(leases[0].token);
                }
                LockAttempt::Recorded(record) => bail!("a request without a record key found {record:?}"),
                LockAttempt::Busy { .. } => {
                    ensure!(tokio::time::Instant::now() < deadline, "{owner} never got the lock");
                    // Releases wake us at once; the bound only covers a lost wake-up.
                    let _ = tokio::time::timeout(Duration::from_millis(250), releases.released()).await;
                }
            }
        }
    }
}

pub(super) fn lock_id(model: &ModelTarget, action: &str) -> LockId {
    LockId { model: model.id.clone(), action: action.to_owned() }
}

pub(super) fn expect_eq<T: PartialEq + Debug>(found: T, expected: T, what: &str) -> Result<()> {
    ensure!(found == expected, "{what}: found {found:?}, expected {expected:?}");
    Ok(())
}

// Values and changes, briefly.

pub(super) fn int(v: i64) -> FieldValue {
    FieldValue::Scalar(Scalar::Int(v))
}

pub(super) fn text(v: &str) -> FieldValue {
    FieldValue::Scalar(Scalar::Str(v.to_owned()))
}

pub(super) fn strs(items: &[&str]) -> FieldValue {
    FieldValue::List(items.iter().map(|&s| Scalar::from(s)).collect())
}

pub(super) fn dict(entries: &[(&str, i64)]) -> FieldValue {
    FieldValue::Dict(entries.iter().map(|&(k, v)| (k.to_owned(), Scalar::Int(v))).collect::<BTreeMap<_, _>>())
}

pub(super) fn set(field: &str, value: Scalar) -> FieldChange {
    FieldChange::Set { field: field.into(), value }
}

pub(super) fn increment(field: &str, delta: i64) -> FieldChange {
    FieldChange::Increment { field: field.into(), delta }
}

pub(super) fn append(items: &[&str]) -> FieldChange {
    FieldChange::ListAppend { field: "items".into(), items: items.iter().map(|&s| Scalar::from(s)).collect() }
}

pub(super) fn truncate(len: u32) -> FieldChange {
    FieldChange::ListTruncate { field: "items".into(), len }
}

pub(super) fn replace(items: &[&str]) -> FieldChange {
    FieldChange::ListReplace { field: "items".into(), items: items.iter().map(|&s| Scalar::from(s)).collect() }
}

pub(super) fn insert(index: i64, item: &str) -> FieldChange {
    FieldChange::ListInsert { field: "items".into(), index, item: item.into() }
}

pub(super) fn pop(index: Option<i64>) -> FieldChange {
    FieldChange::ListPop { field: "items".into(), index }
}

pub(super) fn remove(item: &str) -> FieldChange {
    FieldChange::ListRemove { field: "items".into(), item: item.into() }
}

pub(super) fn dict_set(entries: &[(&str, i64)]) -> FieldChange {
    FieldChange::DictSet {
        field: "tags".into(),
        entries: entries.iter().map(|&(k, v)| (k.to_owned(), Scalar::Int(v))).collect(),
    }
}

pub(super) fn dict_remove(keys: &[&str]) -> FieldChange {
    FieldChange::DictRemove { field: "tags".into(), keys: keys.iter().map(|&k| k.to_owned()).collect() }
}

pub(super) fn clear(field: &str) -> FieldChange {
    FieldChange::Clear { field: field.into() }
}
