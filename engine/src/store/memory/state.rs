//! The memory store's whole state and its protocol steps, as plain functions of the state and
//! the current instant (so that lease expiry is testable without waiting).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::data::{ModelData, Undecodable};
use crate::model::change::{ModelSnapshot, ModelTarget};
use crate::model::ids::{LockId, ModelId};
use crate::store::record::RecordRef;
use crate::store::{
    CommitGuard, CommitReceipt, CommitRequest, Loaded, LockAttempt, LockLease, LockRequest, MAX_WAITERS, StaleModel,
    StoreError, StoredRecord, VersionCheck, WAITER_TTL,
};

/// The shortest lease: Redis' `PX` takes whole milliseconds and at least one.
const MIN_LEASE: Duration = Duration::from_millis(1);
/// The longest lease (keeps `Instant` arithmetic far from overflow).
const MAX_LEASE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
/// Expired locks are swept once the lock table has at least this many entries.
const MIN_SWEEP: usize = 64;

/// Models, locks, fencing counters and idempotency records.
#[derive(Debug)]
pub(super) struct State {
    models: HashMap<ModelId, ModelEntry>,
    locks: HashMap<LockId, HeldLock>,
    /// The waiters of each lock, oldest first (see [`crate::Store::try_lock_and_load`]).
    lines: HashMap<LockId, Vec<Waiter>>,
    /// As `sweep_at`, for lines.
    sweep_lines_at: usize,
    /// Sweep expired locks when the lock table reaches this size (twice the live size after
    /// the last sweep), so that locks nobody touches again do not pile up.
    sweep_at: usize,
    /// Idempotency records by (anchor model, key).
    records: HashMap<(ModelId, String), Record>,
    /// As `sweep_at`, for records.
    sweep_records_at: usize,
}

/// An idempotency record: committed, or naming commit attempts declared aborted.
#[derive(Debug, Clone)]
pub(super) struct Record {
    pub state: RecordState,
    pub expires_at: Instant,
}

/// What a record says.
#[derive(Debug, Clone)]
pub(super) enum RecordState {
    Committed(StoredRecord),
    Aborted(Vec<String>),
}

/// One model: kept forever once locked or written, since its version and fencing counter
/// must never go back.
#[derive(Debug, Default)]
struct ModelEntry {
    version: u64,
    /// The last fencing token issued for any action on this model.
    fence: u64,
    data: ModelData,
}

/// A waiter's place in a lock's line.
#[derive(Debug)]
struct Waiter {
    owner: String,
    expires_at: Instant,
}

#[derive(Debug)]
struct HeldLock {
    token: u64,
    owner: String,
    expires_at: Instant,
}

impl HeldLock {
    fn is_live(&self, now: Instant) -> bool {
        now < self.expires_at
    }

    fn is_held_by(&self, lease: &LockLease) -> bool {
        self.token == lease.token && self.owner == lease.owner
    }
}

impl State {
    /// Every model's data, version and fencing counter, sorted by id (locks are left out).
    pub fn models(&self) -> Vec<(ModelId, u64, u64, ModelData)> {
        let mut models: Vec<_> =
            self.models.iter().map(|(id, e)| (id.clone(), e.version, e.fence, e.data.clone())).collect();
        models.sort_by(|a, b| a.0.cmp(&b.0));
        models
    }

    /// A state holding these models (id, version, fencing counter, data) and no locks.
    pub fn with_models(models: impl IntoIterator<Item = (ModelId, u64, u64, ModelData)>) -> Self {
        let models = models.into_iter().map(|(id, version, fence, data)| (id, ModelEntry { version, fence, data }));
        Self { models: models.collect(), ..Self::default() }
    }

    /// Every committed record still live at `now`: (anchor, key, record, time left).
    pub fn committed_records(&self, now: Instant) -> Vec<(ModelId, String, StoredRecord, Duration)> {
        let mut out: Vec<_> = self
            .records
            .iter()
            .filter_map(|((anchor, key), r)| match &r.state {
                RecordState::Committed(record) if r.expires_at > now => {
                    Some((anchor.clone(), key.clone(), record.clone(), r.expires_at - now))
                }
                RecordState::Committed(_) | RecordState::Aborted(_) => None,
            })
            .collect();
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        out
    }

    /// Keeps a committed record (restoring a dump).
    pub fn restore_record(&mut self, anchor: ModelId, key: String, record: StoredRecord, expires_at: Instant) {
        self.records.insert((anchor, key), Record { state: RecordState::Committed(record), expires_at });
    }
}

impl Default for State {
    fn default() -> Self {
        Self {
            models: HashMap::new(),
            locks: HashMap::new(),
            lines: HashMap::new(),
            sweep_lines_at: MIN_SWEEP,
            sweep_at: MIN_SWEEP,
            records: HashMap::new(),
            sweep_records_at: MIN_SWEEP,
        }
    }
}

impl State {
    /// Takes every lock of the request and loads every model, or takes nothing.
    pub fn try_lock_and_load(&mut self, request: &LockRequest, now: Instant) -> Result<LockAttempt, StoreError> {
        if let Some((key, anchor)) = request.record.as_deref().zip(request.models.first())
            && let Some(record) = self.committed(RecordRef { anchor: &anchor.id, key }, now)
        {
            return Ok(LockAttempt::Recorded(record));
        }
        for (model_index, target) in request.models.iter().enumerate() {
            let lock = LockId { model: target.id.clone(), action: request.action.clone() };
            // A live lock of this owner was taken by an attempt whose reply was lost: it is
            // taken again (the new token fences the old one off), whatever the line.
            let refused = match self.live_lock(&lock, now) {
                Some(held) if held.owner != request.owner => Some(held.expires_at),
                Some(_) => None,
                // A free lock is due to the oldest live waiter, if any.
                None => self
                    .live_line(&lock, now)
                    .and_then(|line| line.first())
                    .filter(|first| first.owner != request.owner)
                    .map(|first| first.expires_at),
            };
            if let Some(until) = refused {
                self.wait_in_line(request, model_index, now);
                let expires_in = until.saturating_duration_since(now);
                return Ok(LockAttempt::Busy { model_index, expires_in: Some(expires_in) });
            }
        }
        let snapshots = self.load(&request.models)?;
        self.sweep_expired_locks(now);
        for target in &request.models {
            let lock = LockId { model: target.id.clone(), action: request.action.clone() };
            self.leave_line(&lock, &request.owner, now);
        }
        let expires_at = now + request.lease.clamp(MIN_LEASE, MAX_LEASE);
        let leases = request
            .models
            .iter()
            .map(|target| {
                let entry = self.models.entry(target.id.clone()).or_default();
                entry.fence += 1;
                let lease = LockLease {
                    lock: LockId { model: target.id.clone(), action: request.action.clone() },
                    token: entry.fence,
                    owner: request.owner.clone(),
                    held_until: expires_at,
                };
                let held = HeldLock { token: lease.token, owner: lease.owner.clone(), expires_at };
                self.locks.insert(lease.lock.clone(), held);
                lease
            })
            .collect();
        Ok(LockAttempt::Acquired { leases, snapshots })
    }

    /// Every model's stored state under its schema (defaults for what is not stored).
    pub fn load(&self, models: &[ModelTarget]) -> Result<Vec<ModelSnapshot>, StoreError> {
        models.iter().map(|target| self.snapshot(target)).collect()
    }

    /// As [`State::load`], unless `key` is recorded as committed beside the first model.
    pub fn load_unless_recorded(&self, models: &[ModelTarget], key: &str, now: Instant) -> Result<Loaded, StoreError> {
        if let Some(anchor) = models.first()
            && let Some(record) = self.committed(RecordRef { anchor: &anchor.id, key }, now)
        {
            return Ok(Loaded::Recorded(record));
        }
        self.load(models).map(Loaded::Snapshots)
    }

    /// For each key: the committed record, or `None` after marking `commit_id` as aborted in
    /// it.
    pub fn resolve(
        &mut self,
        anchor: &ModelId,
        keys: &[&str],
        commit_id: &str,
        retention: Duration,
        now: Instant,
    ) -> Vec<Option<StoredRecord>> {
        let expires_at = now + retention.clamp(MIN_LEASE, MAX_LEASE);
        keys.iter()
            .map(|&key| {
                if let Some(record) = self.committed(RecordRef { anchor, key }, now) {
                    return Some(record);
                }
                let slot = self
                    .records
                    .entry((anchor.clone(), key.to_owned()))
                    .or_insert_with(|| Record { state: RecordState::Aborted(Vec::new()), expires_at });
                if slot.expires_at <= now {
                    slot.state = RecordState::Aborted(Vec::new());
                }
                slot.expires_at = expires_at;
                if let RecordState::Aborted(ids) = &mut slot.state {
                    ids.push(commit_id.to_owned());
                }
                None
            })
            .collect()
    }

    /// Checks the records and the guard, then every change, then applies them all and writes
    /// the records; returns the receipt and the locks it released (to announce).
    pub fn commit(
        &mut self,
        request: &CommitRequest<'_>,
        now: Instant,
    ) -> Result<(CommitReceipt, Vec<LockId>), StoreError> {
        check_shape(request)?;
        self.check_records(request, now)?;
        self.check_guard(request, now)?;
        let staged = self.stage_changes(request)?;
        for (id, data) in staged {
            self.models.entry(id).or_default().data = data;
        }
        let versions = self.bump_changed_versions(request);
        let released = match request.guard {
            CommitGuard::Leases { leases, .. } => leases
                .iter()
                .map(|lease| {
                    self.locks.remove(&lease.lock);
                    lease.lock.clone()
                })
                .collect(),
            CommitGuard::Versions { .. } | CommitGuard::Unguarded => Vec::new(),
        };
        self.write_records(request, &versions, now);
        Ok((CommitReceipt { versions }, released))
    }

    fn committed(&self, at: RecordRef<'_>, now: Instant) -> Option<StoredRecord> {
        let record = self.records.get(&(at.anchor.clone(), at.key.to_owned()))?;
        match &record.state {
            RecordState::Committed(stored) if record.expires_at > now => Some(stored.clone()),
            RecordState::Committed(_) | RecordState::Aborted(_) => None,
        }
    }

    fn check_records(&self, request: &CommitRequest<'_>, now: Instant) -> Result<(), StoreError> {
        let Some(anchor) = request.models.first() else { return Ok(()) };
        for (index, entry) in request.records.entries.iter().enumerate() {
            let Some(record) = self.records.get(&(anchor.id.clone(), entry.key.to_owned())) else { continue };
            if record.expires_at <= now {
                continue;
            }
            match &record.state {
                RecordState::Committed(stored) => {
                    return Err(StoreError::Recorded { index, record: stored.clone() });
                }
                RecordState::Aborted(ids) if ids.iter().any(|id| id == request.records.commit_id) => {
                    return Err(StoreError::CommitAborted { commit_id: request.records.commit_id.to_owned() });
                }
                RecordState::Aborted(_) => {}
            }
        }
        Ok(())
    }

    fn write_records(&mut self, request: &CommitRequest<'_>, versions: &[u64], now: Instant) {
        let Some(anchor) = request.models.first() else { return };
        let expires_at = now + request.records.retention.clamp(MIN_LEASE, MAX_LEASE);
        for entry in request.records.entries {
            let Some(payload) = entry.payload else { continue };
            let record = StoredRecord { versions: versions.to_vec(), payload: payload.to_owned() };
            self.records.insert(
                (anchor.id.clone(), entry.key.to_owned()),
                Record { state: RecordState::Committed(record), expires_at },
            );
        }
        if self.records.len() >= self.sweep_records_at {
            self.records.retain(|_, r| r.expires_at > now);
            self.sweep_records_at = (self.records.len() * 2).max(MIN_SWEEP);
        }
    }

    /// Drops the locks still held with these leases' tokens; returns the ones dropped.
    pub fn release(&mut self, leases: &[LockLease]) -> Vec<LockId> {
        let mut released = Vec::with_capacity(leases.len());
        for lease in leases {
            if self.locks.get(&lease.lock).is_some_and(|held| held.is_held_by(lease)) {
                self.locks.remove(&lease.lock);
                released.push(lease.lock.clone());
            }
        }
        released
    }

    /// Removes `owner` from the lines of these locks; returns the free ones someone else still
    /// waits for (to announce: the next waiter's turn has come).
    pub fn withdraw(&mut self, locks: &[LockId], owner: &str, now: Instant) -> Vec<LockId> {
        let mut announce = Vec::new();
        for lock in locks {
            if self.leave_line(lock, owner, now) && self.lines.contains_key(lock) && self.live_lock(lock, now).is_none()
            {
                announce.push(lock.clone());
            }
        }
        announce
    }

    /// The line of `lock` without its expired places (forgotten when empty).
    fn live_line(&mut self, lock: &LockId, now: Instant) -> Option<&[Waiter]> {
        let line = self.lines.get_mut(lock)?;
        line.retain(|w| w.expires_at > now);
        if line.is_empty() {
            self.lines.remove(lock);
            return None;
        }
        self.lines.get(lock).map(Vec::as_slice)
    }

    /// Removes `owner`'s place in the line of `lock`; returns whether it had one.
    fn leave_line(&mut self, lock: &LockId, owner: &str, now: Instant) -> bool {
        let Some(line) = self.lines.get_mut(lock) else { return false };
        let before = line.len();
        line.retain(|w| w.owner != owner);
        let left = line.len() < before;
        line.retain(|w| w.expires_at > now);
        if line.is_empty() {
            self.lines.remove(lock);
        }
        left
    }

    /// `request` was refused at model `index`: its owner keeps (or takes) a place in that
    /// lock's line, and leaves the lines of its other models.
    fn wait_in_line(&mut self, request: &LockRequest, index: usize, now: Instant) {
        for (i, target) in request.models.iter().enumerate() {
            let lock = LockId { model: target.id.clone(), action: request.action.clone() };
            if i != index {
                self.leave_line(&lock, &request.owner, now);
                continue;
            }
            let line = self.lines.entry(lock).or_default();
            line.retain(|w| w.expires_at > now);
            let expires_at = now + WAITER_TTL;
            if let Some(place) = line.iter_mut().find(|w| w.owner == request.owner) {
                place.expires_at = expires_at;
            } else if line.len() < MAX_WAITERS {
                line.push(Waiter { owner: request.owner.clone(), expires_at });
            }
        }
        if self.lines.len() >= self.sweep_lines_at {
            self.lines.retain(|_, line| {
                line.retain(|w| w.expires_at > now);
                !line.is_empty()
            });
            self.sweep_lines_at = (self.lines.len() * 2).max(MIN_SWEEP);
        }
    }

    /// Forgets a model's data and bumps its version (its locks and fencing counter stay).
    pub fn delete(&mut self, model: &ModelId) -> u64 {
        let entry = self.models.entry(model.clone()).or_default();
        entry.data = ModelData::default();
        entry.version += 1;
        entry.version
    }

    fn snapshot(&self, target: &ModelTarget) -> Result<ModelSnapshot, StoreError> {
        let Some(entry) = self.models.get(&target.id) else { return Ok(ModelSnapshot::defaults(&target.schema)) };
        let values = entry.data.read(&target.schema).map_err(|Undecodable { field, reason }| StoreError::Corrupt {
            model: target.id.clone(),
            field,
            reason,
        })?;
        Ok(ModelSnapshot { values, version: entry.version })
    }

    fn live_lock(&self, lock: &LockId, now: Instant) -> Option<&HeldLock> {
        self.locks.get(lock).filter(|held| held.is_live(now))
    }

    fn version_of(&self, model: &ModelId) -> u64 {
        self.models.get(model).map_or(0, |entry| entry.version)
    }

    fn check_guard(&self, request: &CommitRequest<'_>, now: Instant) -> Result<(), StoreError> {
        match request.guard {
            CommitGuard::Leases { leases, versions, check } => {
                for (target, lease) in request.models.iter().zip(leases) {
                    let held = lease.lock.model == target.id
                        && self.live_lock(&lease.lock, now).is_some_and(|held| held.is_held_by(lease));
                    if !held {
                        return Err(StoreError::LockLost { lock: lease.lock.clone() });
                    }
                }
                // Another action, mode or writer changed a model since the load: a state diff
                // computed from the older state must not land.
                if check == VersionCheck::Always || request.changes.iter().any(|c| !c.is_empty()) {
                    for (target, &expected) in request.models.iter().zip(versions) {
                        let found = self.version_of(&target.id);
                        if found != expected {
                            return Err(StoreError::Conflict { model: target.id.clone(), expected, found });
                        }
                    }
                }
            }
            CommitGuard::Versions { versions, action, refresh } => {
                if refresh {
                    let mut stale = Vec::new();
                    for (index, (target, &expected)) in request.models.iter().zip(versions).enumerate() {
                        if self.version_of(&target.id) != expected {
                            stale.push(StaleModel::new(index, target.id.clone(), self.snapshot(target)?));
                        }
                    }
                    if !stale.is_empty() {
                        return Err(StoreError::Stale { models: stale });
                    }
                }
                for (target, &expected) in request.models.iter().zip(versions) {
                    let found = self.version_of(&target.id);
                    let lock = LockId { model: target.id.clone(), action: action.to_owned() };
                    // A lock-mode holder of the same action counts as a change in progress.
                    if found != expected || self.live_lock(&lock, now).is_some() {
                        return Err(StoreError::Conflict { model: target.id.clone(), expected, found });
                    }
                }
            }
            CommitGuard::Unguarded => {}
        }
        Ok(())
    }

    /// Applies every change to copies of the models it touches, failing on the first one that
    /// cannot apply; the store is untouched either way.
    fn stage_changes(&self, request: &CommitRequest<'_>) -> Result<HashMap<ModelId, ModelData>, StoreError> {
        let mut staged: HashMap<ModelId, ModelData> = HashMap::new();
        for (target, changes) in request.models.iter().zip(request.changes) {
            if changes.is_empty() {
                continue;
            }
            let data = staged
                .entry(target.id.clone())
                .or_insert_with(|| self.models.get(&target.id).map(|entry| entry.data.clone()).unwrap_or_default());
            for change in changes {
                data.apply(&target.schema, change).map_err(|reason| StoreError::CannotApply {
                    model: target.id.clone(),
                    field: change.field().to_owned(),
                    reason,
                })?;
            }
        }
        Ok(staged)
    }

    /// Bumps the version of every model with changes; returns every model's version.
    fn bump_changed_versions(&mut self, request: &CommitRequest<'_>) -> Vec<u64> {
        request
            .models
            .iter()
            .enumerate()
            .map(|(i, target)| {
                if request.changes.get(i).is_some_and(|changes| !changes.is_empty()) {
                    let entry = self.models.entry(target.id.clone()).or_default();
                    entry.version += 1;
                    entry.version
                } else {
                    self.version_of(&target.id)
                }
            })
            .collect()
    }

    fn sweep_expired_locks(&mut self, now: Instant) {
        if self.locks.len() >= self.sweep_at {
            self.locks.retain(|_, held| held.is_live(now));
            self.sweep_at = (self.locks.len() * 2).max(MIN_SWEEP);
        }
    }

    #[cfg(test)]
    pub fn lock_count(&self) -> usize {
        self.locks.len()
    }
}

/// Refuses requests that do not give one guard entry per model, or more change lists than
/// models (missing change lists count as empty).
fn check_shape(request: &CommitRequest<'_>) -> Result<(), StoreError> {
    let models = request.models.len();
    let guard_entries = match request.guard {
        CommitGuard::Leases { leases, versions, .. } => vec![leases.len(), versions.len()],
        CommitGuard::Versions { versions, .. } => vec![versions.len()],
        CommitGuard::Unguarded => Vec::new(),
    };
    if let Some(n) = guard_entries.into_iter().find(|&n| n != models) {
        return Err(StoreError::Backend(format!("commit guard has {n} entries for {models} models")));
    }
    if request.changes.len() > models {
        return Err(StoreError::Backend(format!(
            "commit has {} change lists for {models} models",
            request.changes.len()
        )));
    }
    Ok(())
}
