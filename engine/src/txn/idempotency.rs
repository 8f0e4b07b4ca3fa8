//! Exactly-once invocations: the idempotency key every invocation runs under, the record its
//! commit leaves, replays, and what happens when a commit's reply is lost.
//!
//! Every invocation has a key: the caller's ([`Invocation::idempotency_key`]) or else its
//! invocation id, which stays the same across the engine's own retries. Each commit carries the
//! invocation's record (its fingerprint and what the caller gets back) and applies only if that
//! key is not recorded yet, in the same atomic step ([`crate::store::record`]). So:
//! - a repeat of a committed key writes nothing and returns the first outcome, marked as a
//!   replay (found by the lock-and-load or load step, or by the commit itself when the first
//!   one committed in between);
//! - the same key with another rule, action, model list or input is refused
//!   ([`Error::IdempotencyKeyReused`]);
//! - a repeat while the first runs in this engine waits for it ([`InFlight`]); across engines,
//!   lock mode waits on the locks, and the lock-free modes are decided by the commit;
//! - a commit whose reply is lost is resolved before anything else ([`Protocol::commit`]): a
//!   commit that landed is reported as committed; one that did not is made unable to land later,
//!   and retried or reported as not written; if the store cannot be asked either, the error is
//!   [`Error::OutcomeUnknown`], with the key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::{Plan, Protocol};
use crate::error::{Error, Result};
use crate::invocation::{Invocation, Outcome, Timings};
use crate::model::change::{ModelChanges, ModelTarget};
use crate::model::ids::ModelId;
use crate::rule::Rule;
use crate::store::{CommitReceipt, CommitRecords, CommitRequest, RecordEntry, StoreError, StoredRecord};

/// The first wait before asking the store again whether a commit landed.
const RESOLVE_FIRST_BACKOFF: Duration = Duration::from_millis(20);
/// The longest wait between two such questions.
const RESOLVE_MAX_BACKOFF: Duration = Duration::from_millis(500);

/// An invocation's idempotency key and fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Idempotency {
    /// The key: the caller's, or the invocation id.
    pub key: String,
    /// A digest of what makes the invocation what it is: rule name, action, models (in the
    /// caller's order) and input (as parsed JSON, so whitespace does not count).
    pub fingerprint: String,
    /// Whether the caller gave the key (else it is the invocation id, fresh in this process).
    pub from_caller: bool,
}

impl Idempotency {
    /// The key and fingerprint of `invocation` of `rule` with id `invocation_id`.
    pub(crate) fn of(rule: &Rule, invocation: &Invocation, invocation_id: &str) -> Self {
        let key = invocation.idempotency_key.clone().unwrap_or_else(|| invocation_id.to_owned());
        let mut hash = Sha256::new();
        let mut part = |bytes: &[u8]| {
            hash.update(u64::try_from(bytes.len()).unwrap_or(u64::MAX).to_le_bytes());
            hash.update(bytes);
        };
        part(rule.name().as_bytes());
        part(invocation.action.as_bytes());
        for model in &invocation.models {
            part(model.model_type.as_bytes());
            part(model.key.as_bytes());
        }
        let input = serde_json::from_str::<serde_json::Value>(&invocation.input)
            .map_or_else(|_| invocation.input.clone(), |v| v.to_string());
        part(input.as_bytes());
        let digest = hash.finalize();
        let fingerprint = hex::encode(&digest[..16]);
        Self { key, fingerprint, from_caller: invocation.idempotency_key.is_some() }
    }

    /// The key to look up before running attempt `attempt`: `None` when it cannot be recorded
    /// yet (the engine's own fresh invocation id, on its first attempt: nobody else knows it, and
    /// no attempt of it committed), which spares the store a read on the common path. The
    /// commit checks the record in every case.
    pub(crate) fn lookup(&self, attempt: u32) -> Option<&str> {
        (self.from_caller || attempt > 1).then_some(self.key.as_str())
    }
}

/// What a committed invocation's record keeps for a replay (its versions are the record's own).
#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    /// The fingerprint ([`Idempotency::fingerprint`]).
    f: String,
    /// The invocation id.
    i: String,
    /// The rule's output.
    o: String,
    /// The fencing tokens, caller order.
    t: Vec<u64>,
    /// The attempts.
    a: u32,
}

/// The payload a commit records for an invocation that ran as `invocation_id` and returned
/// `output`.
pub(super) fn payload(idem: &Idempotency, invocation_id: &str, output: &str, tokens: &[u64], attempts: u32) -> String {
    let payload = Payload {
        f: idem.fingerprint.clone(),
        i: invocation_id.to_owned(),
        o: output.to_owned(),
        t: tokens.to_vec(),
        a: attempts,
    };
    serde_json::to_string(&payload).unwrap_or_default()
}

/// The outcome a repeat of a committed key gets: the first commit's, marked as a replay.
///
/// # Errors
/// [`Error::IdempotencyKeyReused`] when the record was left by a different invocation;
/// [`Error::Store`] for a record this engine cannot read.
pub(super) fn replay(plan: &Plan, idem: &Idempotency, record: &StoredRecord, timings: Timings) -> Result<Outcome> {
    let payload: Payload = serde_json::from_str(&record.payload).map_err(|e| {
        Error::Store(StoreError::Backend(format!("unreadable idempotency record of {:?}: {e}", idem.key)))
    })?;
    if payload.f != idem.fingerprint || record.versions.len() != plan.targets.len() {
        return Err(Error::IdempotencyKeyReused { key: idem.key.clone() });
    }
    debug!(key = %idem.key, "replaying a committed invocation");
    Ok(Outcome {
        invocation_id: payload.i,
        idempotency_key: idem.key.clone(),
        replayed: true,
        output: payload.o,
        changes: plan.targets.iter().map(|t| ModelChanges { model: t.id.clone(), changes: Vec::new() }).collect(),
        fencing_tokens: payload.t,
        versions: plan.to_caller_order(&record.versions),
        attempts: payload.a,
        timings,
    })
}

/// How a commit with records ended.
pub(super) enum Committed {
    /// It applied (or, after a lost reply, is known to have applied).
    Applied(CommitReceipt),
    /// Entry `index` of its records was committed before: nothing was written.
    Recorded {
        /// The entry.
        index: usize,
        /// Its record.
        record: StoredRecord,
    },
}

impl Protocol {
    /// A fresh commit attempt id: unique in this process and across engines.
    pub(super) fn commit_id(&self) -> String {
        let seq = self.sequence.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{}-c{seq}", self.instance)
    }

    /// Commits `request` with `entries` as its records. A refusal because a record exists is
    /// [`Committed::Recorded`]. A failure that leaves the outcome unknown (the request was
    /// sent, no reply came) is resolved first: a commit that landed is [`Committed::Applied`]
    /// (with the versions it left); one that did not is made unable to land later and
    /// reported as the store's error (nothing was written, so it may be retried).
    ///
    /// # Errors
    /// The store's refusals ([`StoreError::LockLost`], [`StoreError::Conflict`],
    /// [`StoreError::CannotApply`]: nothing was written), [`Error::Store`] when the commit
    /// surely did not apply, or [`Error::OutcomeUnknown`] when the store could not tell.
    pub(super) async fn commit(
        &self,
        request: CommitRequest<'_>,
        entries: &[RecordEntry<'_>],
        idem: &Idempotency,
    ) -> std::result::Result<Committed, CommitFailure> {
        let commit_id = self.commit_id();
        let records = CommitRecords { commit_id: &commit_id, retention: self.settings.record_retention, entries };
        let sent = Instant::now();
        match self.store.commit(CommitRequest { records, ..request }).await {
            Ok(receipt) => Ok(Committed::Applied(receipt)),
            Err(StoreError::Recorded { index, record }) => Ok(Committed::Recorded { index, record }),
            Err(StoreError::Unavailable(reason)) => {
                let Some(anchor) = request.models.first() else {
                    return Err(CommitFailure::Store(StoreError::Unavailable(reason)));
                };
                warn!(key = %idem.key, %reason, "a commit's reply was lost: asking the store whether it applied");
                let written: Vec<&str> = entries.iter().filter(|e| e.payload.is_some()).map(|e| e.key).collect();
                match self.resolve(anchor, &written, &commit_id, sent).await {
                    Ok(Some(record)) => Ok(Committed::Applied(CommitReceipt { versions: record.versions })),
                    Ok(None) => Err(CommitFailure::Store(StoreError::Unavailable(format!(
                        "{reason} (the commit did not apply, and now cannot)"
                    )))),
                    Err(last) => Err(CommitFailure::Unknown(Error::OutcomeUnknown {
                        key: idem.key.clone(),
                        reason: format!("{reason}; then, asking whether it applied: {last}"),
                    })),
                }
            }
            Err(other) => Err(CommitFailure::Store(other)),
        }
    }

    /// Asks the store, until half a lease has gone since the commit was sent, whether commit
    /// `commit_id` left the records of `keys` (all or none: one commit): `Some` of one of
    /// them if it did; `None` once it surely did not and never will.
    async fn resolve(
        &self,
        anchor: &ModelTarget,
        keys: &[&str],
        commit_id: &str,
        sent: Instant,
    ) -> std::result::Result<Option<StoredRecord>, StoreError> {
        let deadline = sent + (self.settings.lease / 2).max(Duration::from_secs(1));
        let mut backoff = RESOLVE_FIRST_BACKOFF;
        loop {
            match self.store.resolve(anchor, keys, commit_id, self.settings.record_retention).await {
                Ok(found) => return Ok(found.into_iter().flatten().next()),
                Err(e) if Instant::now() + backoff < deadline => {
                    debug!(error = %e, "could not ask whether the commit applied yet; asking again");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RESOLVE_MAX_BACKOFF);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Why a commit with records did not apply, or may have.
pub(super) enum CommitFailure {
    /// The store refused it, or it surely did not apply: nothing was written.
    Store(StoreError),
    /// It may have applied ([`Error::OutcomeUnknown`]).
    Unknown(Error),
}

impl From<CommitFailure> for Error {
    fn from(failure: CommitFailure) -> Self {
        match failure {
            CommitFailure::Store(e) => e.into(),
            CommitFailure::Unknown(e) => e,
        }
    }
}

/// The idempotency keys running in one engine: a second invocation with the key of one still
/// running waits for it (then finds its record), so that the two never run side by side here,
/// not even in one lock-mode group.
#[derive(Debug, Default)]
pub(super) struct InFlight {
    keys: Mutex<KeyLocks>,
}

/// One lock per (first model, idempotency key) running in this engine.
type KeyLocks = HashMap<(ModelId, String), Arc<tokio::sync::Mutex<()>>>;

/// A running invocation's hold on its key; dropping it lets the next one with the key go.
pub(super) struct KeyHold {
    protocol: Arc<Protocol>,
    slot: (ModelId, String),
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for KeyHold {
    fn drop(&mut self) {
        let mut keys = self.protocol.inflight.keys.lock().unwrap_or_else(PoisonError::into_inner);
        // Only this hold and the map refer to the line: nobody waits.
        if keys.get(&self.slot).is_some_and(|line| Arc::strong_count(line) <= 2) {
            keys.remove(&self.slot);
        }
    }
}

impl Protocol {
    /// Waits until no other invocation of this engine runs with `key` beside `anchor`, until
    /// `deadline`.
    ///
    /// # Errors
    /// [`Error::InProgress`] when one still runs at the deadline.
    pub(super) async fn hold_key(self: &Arc<Self>, anchor: &ModelId, key: &str, deadline: Instant) -> Result<KeyHold> {
        let slot = (anchor.clone(), key.to_owned());
        let line = {
            let mut keys = self.inflight.keys.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(keys.entry(slot.clone()).or_default())
        };
        let started = Instant::now();
        match tokio::time::timeout_at(deadline, Arc::clone(&line).lock_owned()).await {
            Ok(turn) => {
                drop(line);
                Ok(KeyHold { protocol: Arc::clone(self), slot, _turn: turn })
            }
            Err(_) => {
                drop(line);
                let mut keys = self.inflight.keys.lock().unwrap_or_else(PoisonError::into_inner);
                if keys.get(&slot).is_some_and(|line| Arc::strong_count(line) <= 1) {
                    keys.remove(&slot);
                }
                Err(Error::InProgress { key: key.to_owned(), waited: started.elapsed() })
            }
        }
    }
}
