//! The checks of idempotency records: what a commit records, how a repeat is refused, how a
//! lost reply is resolved, and when records expire.

use std::sync::Arc;
use std::time::Duration;

use super::fixture::*;
use super::{CheckError, bail, ensure};
use crate::model::change::ModelTarget;
use crate::store::{CommitGuard, CommitRecords, Loaded, LockAttempt, RecordEntry, Store, StoreError, StoredRecord};

type Result<T> = std::result::Result<T, CheckError>;

/// The records of one commit attempt.
fn records<'a>(commit_id: &'a str, entries: &'a [RecordEntry<'a>]) -> CommitRecords<'a> {
    CommitRecords { commit_id, retention: LONG_LEASE, entries }
}

/// What a load that checks `key` beside `models[0]` finds: the record, or `None`.
async fn recorded(fx: &Fx, models: &[&ModelTarget], key: &str) -> Result<Option<StoredRecord>> {
    let models: Vec<ModelTarget> = models.iter().map(|&m| m.clone()).collect();
    match fx.store.load_unless_recorded(&models, key).await? {
        Loaded::Snapshots(snapshots) => {
            expect_eq(snapshots.len(), models.len(), "one snapshot per model")?;
            Ok(None)
        }
        Loaded::Recorded(record) => Ok(Some(record)),
    }
}

/// A commit with a record writes it with its changes (every model's version after the commit,
/// and the payload); the load and the lock-and-load of that key then find it and load or lock
/// nothing, and a second commit of the key writes nothing.
pub async fn a_committed_key_is_found_by_every_step_and_never_applies_again(
    store: Arc<dyn Store>,
    ns: &str,
) -> Result<()> {
    let fx = Fx::new(store, ns)?;
    let (a, b) = (fx.model("a"), fx.model("b"));
    ensure!(recorded(&fx, &[&a, &b], "k").await?.is_none(), "a key no commit used is not recorded");
    let entry = [RecordEntry { key: "k", payload: Some("first {payload}\nwith a newline") }];
    let changes = vec![vec![increment("count", 1)], vec![]];
    let receipt = fx.commit_with(&[&a, &b], changes.clone(), CommitGuard::Unguarded, records("c1", &entry)).await?;
    let expected =
        StoredRecord { versions: receipt.versions.clone(), payload: "first {payload}\nwith a newline".into() };
    expect_eq(receipt.versions.clone(), vec![1, 0], "versions after the commit")?;
    expect_eq(recorded(&fx, &[&a, &b], "k").await?, Some(expected.clone()), "the load finds the record")?;

    let mut request = fx.request(&[&a, &b], "act", "holder", LONG_LEASE);
    request.record = Some("k".into());
    match fx.store.try_lock_and_load(&request).await? {
        LockAttempt::Recorded(record) => expect_eq(record, expected.clone(), "the lock-and-load finds the record")?,
        LockAttempt::Acquired { leases, .. } => {
            fx.store.release(&leases).await?;
            bail!("the lock-and-load of a recorded key took the locks")
        }
        LockAttempt::Busy { .. } => bail!("the lock-and-load of a recorded key found a lock"),
    }
    let held = fx.acquire(&[&a, &b], "act", "next").await?;
    fx.store.release(&held.leases).await?;

    let again = [RecordEntry { key: "k", payload: Some("second") }];
    match fx.commit_with(&[&a, &b], changes, CommitGuard::Unguarded, records("c2", &again)).await {
        Err(StoreError::Recorded { index: 0, record }) => expect_eq(record, expected, "the refusal's record")?,
        other => bail!("a second commit of a recorded key gave {other:?}"),
    }
    expect_eq(fx.field(&fx.load(&a).await?, "count")?, &int(1), "count after the refused repeat")
}

/// A record lives beside the commit's first model under its key: the same key beside another
/// first model, or another key, is not recorded. Entries without a payload are checked, not
/// written; the refusal names the entry that was recorded.
pub async fn records_are_per_first_model_and_key_and_checked_entries_are_not_written(
    store: Arc<dyn Store>,
    ns: &str,
) -> Result<()> {
    let fx = Fx::new(store, ns)?;
    let (a, b) = (fx.model("a"), fx.model("b"));
    let entries = [
        RecordEntry { key: "k1", payload: Some("one") },
        RecordEntry { key: "k2", payload: None },
        RecordEntry { key: "k3", payload: Some("three") },
    ];
    fx.commit_with(
        &[&a, &b],
        vec![vec![increment("count", 1)], vec![]],
        CommitGuard::Unguarded,
        records("c1", &entries),
    )
    .await?;
    ensure!(recorded(&fx, &[&a], "k1").await?.is_some(), "k1 is recorded beside a");
    ensure!(recorded(&fx, &[&a], "k3").await?.is_some(), "k3 is recorded beside a");
    ensure!(recorded(&fx, &[&a], "k2").await?.is_none(), "k2 was only checked, not recorded");
    ensure!(recorded(&fx, &[&b, &a], "k1").await?.is_none(), "k1 is not recorded beside b");
    ensure!(recorded(&fx, &[&a], "other").await?.is_none(), "another key is not recorded");

    let second = [RecordEntry { key: "k4", payload: Some("four") }, RecordEntry { key: "k3", payload: None }];
    match fx.commit_with(&[&a], vec![vec![increment("count", 1)]], CommitGuard::Unguarded, records("c2", &second)).await
    {
        Err(StoreError::Recorded { index: 1, record }) => expect_eq(record.payload.as_str(), "three", "the record")?,
        other => bail!("a commit with a recorded entry gave {other:?}"),
    }
    ensure!(recorded(&fx, &[&a], "k4").await?.is_none(), "the refused commit recorded nothing");
    expect_eq(fx.field(&fx.load(&a).await?, "count")?, &int(1), "count after the refused commit")
}

/// After a lost reply: resolving an attempt that did not apply makes sure it never does (it is
/// refused when it arrives), while a new attempt of the key still applies; resolving once it
/// applied finds the record.
pub async fn a_resolved_attempt_never_applies_and_the_next_attempt_does(store: Arc<dyn Store>, ns: &str) -> Result<()> {
    let fx = Fx::new(store, ns)?;
    let a = fx.model("a");
    let entry = [RecordEntry { key: "k", payload: Some("p") }];
    let resolved = fx.store.resolve(&a, &["k"], "lost", LONG_LEASE).await?;
    expect_eq(resolved, vec![None], "resolving an attempt that never arrived")?;
    match fx
        .commit_with(&[&a], vec![vec![increment("count", 1)]], CommitGuard::Unguarded, records("lost", &entry))
        .await
    {
        Err(StoreError::CommitAborted { commit_id }) => expect_eq(commit_id.as_str(), "lost", "the aborted attempt")?,
        other => bail!("the late arrival of a resolved attempt gave {other:?}"),
    }
    expect_eq(fx.load(&a).await?.version, 0, "the resolved attempt wrote nothing")?;
    // A second lost attempt is remembered beside the first.
    expect_eq(fx.store.resolve(&a, &["k"], "lost-too", LONG_LEASE).await?, vec![None], "a second resolve")?;

    let receipt = fx
        .commit_with(&[&a], vec![vec![increment("count", 1)]], CommitGuard::Unguarded, records("next", &entry))
        .await?;
    let found = fx.store.resolve(&a, &["k"], "next", LONG_LEASE).await?;
    let expected = StoredRecord { versions: receipt.versions, payload: "p".into() };
    expect_eq(found, vec![Some(expected)], "resolving an attempt that applied")?;
    for late in ["lost", "lost-too"] {
        let outcome = fx
            .commit_with(&[&a], vec![vec![increment("count", 1)]], CommitGuard::Unguarded, records(late, &entry))
            .await;
        ensure!(matches!(outcome, Err(StoreError::Recorded { .. })), "late attempt {late} gave {outcome:?}");
    }
    expect_eq(fx.field(&fx.load(&a).await?, "count")?, &int(1), "count: one attempt applied")
}

/// A refused commit (its guard failed) records nothing: the key can still commit.
pub async fn a_refused_commit_records_nothing(store: Arc<dyn Store>, ns: &str) -> Result<()> {
    let fx = Fx::new(store, ns)?;
    let a = fx.model("a");
    fx.write(&a, vec![increment("count", 1)]).await?;
    let entry = [RecordEntry { key: "k", payload: Some("p") }];
    let stale = CommitGuard::Versions { versions: &[0], action: "act", refresh: false };
    let refused = fx.commit_with(&[&a], vec![vec![increment("count", 1)]], stale, records("c1", &entry)).await;
    ensure!(matches!(refused, Err(StoreError::Conflict { .. })), "a stale version gave {refused:?}");
    ensure!(recorded(&fx, &[&a], "k").await?.is_none(), "the refused commit recorded its key");
    let current = CommitGuard::Versions { versions: &[1], action: "act", refresh: false };
    fx.commit_with(&[&a], vec![vec![increment("count", 1)]], current, records("c2", &entry)).await?;
    ensure!(recorded(&fx, &[&a], "k").await?.is_some(), "the applied commit recorded its key");
    Ok(())
}

/// A record is forgotten once its retention ran out: the key may then commit again.
pub async fn records_expire_after_their_retention(store: Arc<dyn Store>, ns: &str) -> Result<()> {
    let fx = Fx::new(store, ns)?;
    let a = fx.model("a");
    let entry = [RecordEntry { key: "k", payload: Some("p") }];
    let short = CommitRecords { commit_id: "c1", retention: SHORT_LEASE, entries: &entry };
    fx.commit_with(&[&a], vec![vec![increment("count", 1)]], CommitGuard::Unguarded, short).await?;
    let deadline = tokio::time::Instant::now() + WAIT_BOUND;
    while recorded(&fx, &[&a], "k").await?.is_some() {
        ensure!(tokio::time::Instant::now() < deadline, "the record outlived its retention by {WAIT_BOUND:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    fx.commit_with(&[&a], vec![vec![increment("count", 1)]], CommitGuard::Unguarded, records("c2", &entry)).await?;
    expect_eq(fx.field(&fx.load(&a).await?, "count")?, &int(2), "count after the expired key committed again")
}
