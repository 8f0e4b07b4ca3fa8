//! The checks: one function per clause of the [`Store`] contract.

use std::collections::HashSet;
use std::sync::Arc;

use super::fixture::*;
use super::{CheckError, Context as _, bail, ensure};
use crate::model::change::{FieldChange, ModelSnapshot, ModelTarget};
use crate::model::ids::ModelId;
use crate::model::value::{FieldValue, Scalar};
use crate::store::{CommitGuard, CommitRecords, CommitRequest, Store, StoreError, VersionCheck, WAITER_TTL};

type Result<T> = std::result::Result<T, CheckError>;

/// A model never written loads with every schema default and version 0, with or without a
/// lock, and taking and releasing a lock does not change that.
pub async fn unwritten_model_loads_defaults_at_version_zero(store: Arc<dyn Store>, ns: &str) -> Result<()> {
    let fx = Fx::new(store, ns)?;
    let model = fx.model("fresh");
    let defaults = ModelSnapshot::defaults(&fx.schema);
    ensure!(defaults.values.iter().any(|v| *v == int(7)), "the test schema has non-zero defaults");

    expect_eq(fx.load(&model).await?, defaults.clone(), "plain load")?;
    let held = fx.acquire(&[&model], "act", "owner").await?;
    expect_eq(held.snapshots.clone(), vec![defaults.clone()], "load under the lock")?;
    fx.store.release(&held.leases).await?;
    expect_eq(fx.load(&model).await?, defaults, "load after a lock was taken and released")
}

/// A commit under leases writes its changes, bumps the version, and releases the lock: the
/// same action can be locked again at once, and sees the writes.
pub async fn locked_commit_writes_bumps_the_version_and_releases(store: Arc<dyn Store>, ns: &str) -> Result<()> {
    let fx = Fx::new(store, ns)?;
    let model = fx.model("m");
    let held = fx.acquire(&[&model], "act", "first").await?;
    let changes = vec![vec![set("count", Scalar::Int(5)), set("label", "written".into())]];
    let receipt = fx.commit(&[&model], changes, held.guard()).await?;
    expect_eq(receipt.versions, vec![1], "versions after the first commit")?;

    let again = fx.acquire(&[&model], "act", "second").await.context("the commit released the lock")?;
    let snapshot = &again.snapshots[0];
    expect_eq(snapshot.version, 1, "version seen by the next holder")?;
    expect_eq(fx.field(snapshot, "count")?, &int(5), "count seen by the next holder")?;
    expect_eq(fx.field(snapshot, "label")?, &text("written"), "label seen by the next holder")?;
    expect_eq(fx.field(snapshot, "ratio")?, &FieldValue::Scalar(Scalar::Float(1.5)), "untouched field")?;
    expect_eq(fx.load(&model).await?, snapshot.clone(), "a plain load sees the same")
}

/// A multi-model commit bumps the versions of the models it changed only, and releases the
/// locks of all of them.
pub async fn commit_bumps_only_changed_models_and_releases_every_lock(store: Arc<dyn Store>, ns: &str) -> Result<()> {
    let fx = Fx::new(store, ns)?;
    let (a, b) = (fx.model("a"), fx.model("b"));
    fx.write(&b, vec![set("count", Scalar::Int(1))]).await?;
    let held = fx.acquire(&[&a, &b], "act", "first").await?;
    let receipt = fx.commit(&[&a, &b], vec![vec![increment("count", 2)], vec![]], held.guard()).await?;
    expect_eq(receipt.versions, vec![1, 1], "a bumped from 0, b unchanged at 1")?;
    expect_eq(fx.load(&b).await?.version, 1, "b's stored version")?;
    fx.acquire(&[&a], "act", "second").await.context("a's lock was released")?;
    fx.acquire(&[&b], "act", "third").await.context("b's lock was released although b did not change")?;
    Ok(())
}

/// `Set` of every scalar kind reads back exactly; `Increment` adds to the stored int.
pub async fn scalar_changes_apply_as_documented(store: Arc<dyn Store>, ns: &str) -> Result<()> {
    let fx = Fx::new(store, ns)?;
    let m = fx.model("m");
    let cases: [(&str, Scalar); 8] = [
        ("count", Scalar::Int(-42)),
        ("count", Scalar::Int(i64::MIN)),
        ("label", "héllo wörld: {not a tag}".into()),
        ("label", "".into()),
        ("ratio", Scalar::Float(0.1)),
        ("ratio", Scalar::Float(-1.5e300)),
        ("flag", Scalar::Bool(false)),
        ("blob", Scalar::Bytes(vec![0, 255, b'\n', b'\r', 0x80])),
    ];
    for (field, value) in cases {
        fx.expect_after(&m, set(field, value.clone()), FieldValue::Scalar(value)).await?;
    }
    fx.expect_after(&m, set("count", Scalar::Int(-42)), int(-42)).await?;
    fx.expect_after(&m, increment("count", 5), int(-37)).await?;
    fx.expect_after(&m, increment("count", -8), int(-45)).await?;
    fx.expect_after(&m, increment("other", 3), int(3)).await.context("increment of a never-written int starts at 0")
}

/// Every list change: append, truncate, replace, insert (Python-style index, clamped), pop
/// (at an index or the last), remove (the first equal item), clear.
pub async fn list_changes_apply_as_documented(store: Arc<dyn Store>, ns: &str) -> Result<()> {
    let fx = Fx::new(store, ns)?;
    let m = fx.model("m");
    let steps = [
        (append(&["a", "b", "c"]), strs(&["a", "b", "c"])),
        (append(&["d"]), strs(&["a", "b", "c", "d"])),
        (truncate(10), strs(&["a", "b", "c", "d"])),
        (truncate(2), strs(&["a", "b"])),
        (replace(&["x", "y", "z"]), strs(&["x", "y", "z"])),
        (insert(-1, "w"), strs(&["x", "y", "w", "z"])),
        (insert(1, "i"), strs(&["x", "i", "y", "w", "z"])),
        (insert(99, "end"), strs(&["x", "i", "y", "w", "z", "end"])),
        (insert(-99, "start"), strs(&["start", "x", "i", "y", "w", "z", "end"])),
        (insert(0, "w"), strs(&["w", "start", "x", "i", "y", "w", "z", "end"])),
        (pop(Some(1)), strs(&["w", "x", "i", "y", "w", "z", "end"])),
        (pop(None), strs(&["w", "x", "i", "y", "w", "z"])),
        (pop(Some(-2)), strs(&["w", "x", "i", "y", "z"])),
        (pop(Some(0)), strs(&["x", "i", "y", "z"])),
        (append(&["i"]), strs(&["x", "i", "y", "z", "i"])),
        (remove("i"), strs(&["x", "y", "z", "i"])),
        (clear("items"), strs(&[])),
        (append(&["again"]), strs(&["again"])),
        (truncate(0), strs(&[])),
        (replace(&["r"]), strs(&["r"])),
        (replace(&[]), strs(&[])),
    ];
    for (change, expected) in steps {
        fx.expect_after(&m, change, expected).await?;
    }
    Ok(())
}

/// Every dict change: set (adds and overwrites), remove (missing keys are ignored), clear.
pub async fn dict_changes_apply_as_documented(store: Arc<dyn Store>, ns: &str) -> Result<()> {
    let fx = Fx::new(store, ns)?;
    let m = fx.model("m");
    let steps = [
        (dict_set(&[("a", 1), ("b", 2)]), dict(&[("a", 1), ("b", 2)])),
        (dict_set(&[("b", 3), ("c", -4)]), dict(&[("a", 1), ("b", 3), ("c", -4)])),
        (dict_remove(&["a", "missing"]), dict(&[("b", 3), ("c", -4)])),
        (clear("tags"), dict(&[])),
        (dict_set(&[("z", 0)]), dict(&[("z", 0)])),
        (dict_remove(&["z"]), dict(&[])),
    ];
    for (change, expected) in steps {
        fx.expect_after(&m, change, expected).await?;
    }
    Ok(())
}

/// The changes of one batch apply in order, each to the result of the ones before.
pub async fn changes_in_one_batch_apply_in_order(store: Arc<dyn Store>, ns: &str) -> Result<()> {
    let fx = Fx::new(store, ns)?;
    let m = fx.model("m");
    let batch = vec![
        set("count", Scalar::Int(10)),
        increment("count", 5),
        append(&["a", "b"]),
        insert(0, "z"),
        pop(Some(-1)),
        remove("z"),
        append(&["c"]),
        dict_set(&[("k", 1)]),
        dict_remove(&["k"]),
        dict_set(&[("k", 2)]),
    ];
    let version = fx.write(&m, batch).await?;
    expect_eq(version, 1, "one batch, one version bump")?;
    let snapshot = fx.load(&m).await?;
    expect_eq(fx.field(&snapshot, "count")?, &int(15), "count")?;
    expect_eq(fx.field(&snapshot, "items")?, &strs(&["a", "c"]), "items")?;
    expect_eq(fx.field(&snapshot, "tags")?, &dict(&[("k", 2)]), "tags")
}

/// Models whose type and key only differ in where a `:` falls (type `T:x` with key `y`, type
/// `T` with key `x:y`) are distinct models: their data, versions, lists and locks never mix,
/// whatever the names hold (`:`, `%`, spaces, unicode, the layout's own words).
pub async fn models_whose_names_split_differently_are_kept_apart(store: Arc<dyn Store>, ns: &str) -> Result<()> {
    let fx = Fx::new(store, ns)?;
    let with = |model_type: String, key: String| ModelTarget {
        id: ModelId::new(model_type, key),
        schema: Arc::clone(&fx.schema),
    };
    let pairs = [
        (with(format!("{MODEL_TYPE}:{ns}:admin"), "root".into()), with(MODEL_TYPE.into(), format!("{ns}:admin:root"))),
        (with(MODEL_TYPE.into(), format!("{ns}:a%3Ab")), with(MODEL_TYPE.into(), format!("{ns}:a:b"))),
        (
            with(format!("{MODEL_TYPE}:{ns}:meta"), "lock list".into()),
            with(MODEL_TYPE.into(), format!("{ns}:meta:lock list")),
        ),
        (with(format!("{MODEL_TYPE}:{ns}:é"), "☃".into()), with(format!("{MODEL_TYPE}:{ns}"), "é:☃".into())),
    ];
    for (a, b) in &pairs {
        let what = format!("{} and {}", a.id, b.id);
        let held = fx.acquire(&[a], "act:x", "a").await?;
        fx.acquire(&[b], "act:x", "b").await.with_context(|| format!("{what}: a's lock held b's"))?;
        let changes = vec![vec![set("count", Scalar::Int(5)), append(&["only a"]), dict_set(&[("k", 1)])]];
        fx.commit(&[a], changes, held.guard()).await?;
        let (a_now, b_now) = (fx.load(a).await?, fx.load(b).await?);
        expect_eq(fx.field(&a_now, "count")?, &int(5), &format!("{what}: a's count"))?;
        expect_eq(b_now, ModelSnapshot::defaults(&fx.schema), &format!("{what}: b after a's commit"))?;
        fx.write(b, vec![increment("count", 2)]).await?;
        expect_eq(fx.load(a).await?, a_now, &format!("{what}: a after b's write"))?;
    }
    Ok(())
}

/// One (model, action) lock is exclusive; another action on the same model, or the same
/// action on another model, is independent. (Its own owner may take it again: see
/// [`a_lock_whose_reply_was_lost_is_taken_again_by_its_owner_and_fences_the_lost_lease`].)
pub async fn same_model_and_action_is_exclusive_other_pairs_are_not(store: Arc<dyn Store>, ns: &str) -> Result<()> {
    let fx = Fx::new(store, ns)?;
    let (a, b) = (fx.model("a"), fx.model("b"));
    fx.acquire(&[&a], "act", "holder").await?;

    let (index, expires_in) = fx.expect_busy(&[&a], "act", "other").await?;
    expect_eq(index, 0, "busy model index")?;
    ensure!(expires_in.is_none_or(|left| left <= LONG_LEASE), "expires_in {expires_in:?} is longer than the lease");
    fx.acquire(&[&a], "other-act", "other").await.context("another action on the same model")?;
    fx.acquire(&[&b], "act", "other").await.context("the same action on another model")?;
    Ok(())
}

/// Taking several locks is all or nothing: one held lock makes the attempt `Busy` with that
/// model's index, and the free locks are not taken.
pub async fn multi_model_lock_is_all_or_nothing(store: Arc<dyn Store>, ns: &str) -> Result<()> {
    let fx = Fx::new(store, ns)?;
    let (a, b) = (fx.model("a"), fx.model("b"));

    let b_held = fx.acquire(&[&b], "act", "holder").await?;
    let (index, _) = fx.expect_busy(&[&a, &b], "act", "both").await?;
    expect_eq(index, 1, "index of the held model")?;
    let a_held = fx.acquire(&[&a], "act", "third").await.context("a stayed free after the refused attempt")?;
    fx.store.release(&b_held.leases).await?;

    let (index, _) = fx.expect_busy(&[&a, &b], "act", "both").await?;
    expect_eq(index, 0, "index of the held model")?;
    fx.acquire(&[&b], "act", "fourth").await.context("b stayed free after the refused attempt")?;
    fx.store.release(&a_held.leases).await?;
    Ok(())
}

/// Fencing tokens strictly increase per model, whatever the action, and across releases,
/// commits, expiry and deletes.
pub async fn fencing_tokens_increase_per_model_across_actions_release_expiry_and_delete(
    store: Arc<dyn Store>,
    ns: &str,
) -> Result<()> {
    let fx = Fx::new(store, ns)?;
    let m = fx.model("m");
    let mut tokens = Vec::new();

    let first = fx.acquire(&[&m], "one", "o").await?;
    let second = fx.acquire(&[&m], "two", "o").await?;
    tokens.extend([token(&first), token(&second)]);
    fx.store.release(&first.leases).await?;
    let third = fx.acquire(&[&m], "one", "o").await?;
    tokens.push(token(&third));
    fx.commit(&[&m], vec![vec![increment("count", 1)]], third.guard()).await?;
    fx.store.release(&second.leases).await?;

    let short = fx.acquire_with_lease(&[&m], "one", "short", SHORT_LEASE).await?;
    tokens.push(token(&short));
    tokens.push(token(&fx.acquire_after_expiry(&[&m], "one", "taker").await?));
    fx.store.delete(&m).await?;
    tokens.push(token(&fx.acquire(&[&m], "three", "o").await?));

    ensure!(tokens.windows(2).all(|w| w[0] < w[1]), "tokens are not strictly increasing: {tokens:?}");
    Ok(())
}

/// A lease that ran out frees the lock for another owner; the first holder's commit is then
/// `LockLost` and writes nothing, while the new holder's commit applies.
pub async fn expired_lease_is_taken_over_and_its_late_commit_writes_nothing(
    store: Arc<dyn Store>,
    ns: &str,
) -> Result<()> {
    let fx = Fx::new(store, ns)?;
    let m = fx.model("m");
    let first = fx.acquire_with_lease(&[&m], "act", "first", SHORT_LEASE).await?;
    let second = fx.acquire_after_expiry(&[&m], "act", "second").await?;
    ensure!(token(&second) > token(&first), "the new holder's token is not newer");

    let late = fx.commit(&[&m], vec![vec![set("count", Scalar::Int(1))]], first.guard()).await;
    match late {
        Err(StoreError::LockLost { lock }) => expect_eq(lock, first.leases[0].lock.clone(), "lost lock")?,
        other => bail!("the late commit should be LockLost, got {other:?}"),
    }
    expect_eq(fx.load(&m).await?, ModelSnapshot::defaults(&fx.schema), "state after the lost commit")?;

    let receipt = fx.commit(&[&m], vec![vec![set("count", Scalar::Int(2))]], second.guard()).await?;
    expect_eq(receipt.versions, vec![1], "version after the new holder's commit")?;
    let snapshot = fx.load(&m).await?;
    expect_eq(fx.field(&snapshot, "count")?, &int(2), "the new holder's write")
}

/// A lease that ran out cannot commit even when nobody took its lock meanwhile (`LockLost`,
/// nothing written), and the lock is free.
pub async fn expired_lease_cannot_commit_even_if_nobody_took_the_lock(store: Arc<dyn Store>, ns: &str) -> Result<()> {
    let fx = Fx::new(store, ns)?;
    let m = fx.model("m");
    let taken_at = tokio::time::Instant::now();
    let held = fx.acquire_with_lease(&[&m], "act", "slow", SHORT_LEASE).await?;
    // Waiting out the lease is the point here; nothing else could signal it.
    tokio::time::sleep_until(taken_at + SHORT_LEASE * 2).await;

    let late = fx.commit(&[&m], vec![vec![set("count", Scalar::Int(1))]], held.guard()).await;
    ensure!(matches!(late, Err(StoreError::LockLost { .. })), "expected LockLost, got {late:?}");
    expect_eq(fx.load(&m).await?, ModelSnapshot::defaults(&fx.schema), "state after the expired commit")?;
    fx.acquire(&[&m], "act", "next").await.context("the expired lock is free")?;
    Ok(())
}

/// A release wakes a watch made before the refused attempt, and the lock can then be taken.
pub async fn release_wakes_a_watch_registered_before_the_attempt(store: Arc<dyn Store>, ns: &str) -> Result<()> {
    let fx = Fx::new(store, ns)?;
    let m = fx.model("m");
    let held = fx.acquire(&[&m], "act", "holder").await?;
    let mut watch = fx.store.watch(&[lock_id(&m, "act")]);
    fx.expect_busy(&[&m], "act", "waiter").await?;

    fx.store.release(&held.leases).await?;
    tokio::time::timeout(WAIT_BOUND, watch.released()).await.context("the release did not wake the watch")?;
    fx.acquire(&[&m], "act", "waiter").await.context("the lock after the wake-up")?;
    Ok(())
}

/// A commit under leases releases them and wakes a watch made before the refused attempt.
pub async fn commit_wakes_a_watch_registered_before_the_attempt(store: Arc<dyn Store>, ns: &str) -> Result<()> {
    let fx = Fx::new(store, ns)?;
    let m = fx.model("m");
    let held = fx.acquire(&[&m], "act", "holder").await?;
    let mut watch = fx.store.watch(&[lock_id(&m, "act")]);
    fx.expect_busy(&[&m], "act", "waiter").await?;

    fx.commit(&[&m], vec![vec![increment("count", 1)]], held.guard()).await?;
    tokio::time::timeout(WAIT_BOUND, watch.released()).await.context("the commit did not wake the watch")?;
    let next = fx.acquire(&[&m], "act", "waiter").await.context("the lock after the wake-up")?;
    expect_eq(fx.field(&next.snapshots[0], "count")?, &int(1), "count seen by the waiter")
}

/// Waiters are served in arrival order: a free lock goes to the oldest waiter (every other
/// owner, one that never waited included, finds it busy until then, with a bound no later than
/// the place's life), the owner that took it leaves the line, and a waiter that withdraws
/// passes its turn on at once, waking the others; once nobody waits, anyone takes it.
pub async fn a_free_lock_goes_to_its_oldest_waiter_and_a_withdrawn_one_passes_its_turn(
    store: Arc<dyn Store>,
    ns: &str,
) -> Result<()> {
    let fx = Fx::new(store, ns)?;
    let m = fx.model("m");
    let held = fx.acquire(&[&m], "act", "holder").await?;
    fx.expect_busy(&[&m], "act", "first").await?;
    fx.expect_busy(&[&m], "act", "second").await?;
    fx.store.release(&held.leases).await?;

    let (index, expires_in) = fx.expect_busy(&[&m], "act", "second").await.context("the lock is due to `first`")?;
    expect_eq(index, 0, "busy model index")?;
    ensure!(expires_in.is_some_and(|left| left <= WAITER_TTL), "a place outlives its life: {expires_in:?}");
    fx.expect_busy(&[&m], "act", "late").await.context("an owner that never waited queues too")?;
    let other = fx.acquire(&[&m], "other", "late").await.context("another action has a line of its own")?;
    fx.store.release(&other.leases).await?;
    let first = fx.acquire(&[&m], "act", "first").await.context("the oldest waiter takes the free lock")?;
    fx.store.release(&first.leases).await?;

    // `second` is next, then `late`: `second` withdraws, which wakes the others at once.
    fx.expect_busy(&[&m], "act", "late").await.context("the lock is due to `second`")?;
    let mut watch = fx.store.watch(&[lock_id(&m, "act")]);
    fx.store.withdraw(&[lock_id(&m, "act")], "second").await?;
    tokio::time::timeout(WAIT_BOUND, watch.released()).await.context("the withdrawal did not wake the line")?;
    let late = fx.acquire(&[&m], "act", "late").await.context("the next waiter's turn")?;
    fx.store.release(&late.leases).await?;
    fx.store.withdraw(&[lock_id(&m, "act")], "nobody").await.context("withdrawing no place")?;
    let anyone = fx.acquire(&[&m], "act", "anyone").await.context("nobody waits: anyone takes the lock")?;
    fx.store.release(&anyone.leases).await?;
    Ok(())
}

/// Releasing with a lease whose lock was taken over (its lease ran out) leaves the new
/// holder's lock in place.
pub async fn release_with_a_stale_token_keeps_the_new_holders_lock(store: Arc<dyn Store>, ns: &str) -> Result<()> {
    let fx = Fx::new(store, ns)?;
    let m = fx.model("m");
    let stale = fx.acquire_with_lease(&[&m], "act", "stale", SHORT_LEASE).await?;
    let current = fx.acquire_after_expiry(&[&m], "act", "current").await?;

    fx.store.release(&stale.leases).await?;
    fx.expect_busy(&[&m], "act", "third").await.context("the stale release dropped the new holder's lock")?;
    fx.commit(&[&m], vec![vec![increment("count", 1)]], current.guard())
        .await
        .context("the new holder still commits")?;
    Ok(())
}

/// The versions guard refuses a commit when a model's version moved (`Conflict`, nothing
/// written, on any of the models) and applies it when the versions match.
pub async fn versions_guard_refuses_a_stale_version_and_applies_the_current_one(
    store: Arc<dyn Store>,
    ns: &str,
) -> Result<()> {
    let fx = Fx::new(store, ns)?;
    let (a, b) = (fx.model("a"), fx.model("b"));
    fx.write(&a, vec![set("count", Scalar::Int(1))]).await?;
    let loaded = fx.store.load(&[a.clone(), b.clone()]).await?;
    let seen = [loaded[0].version, loaded[1].version];
    expect_eq(seen, [1, 0], "versions loaded")?;
    fx.write(&a, vec![increment("count", 1)]).await?;
    let before = fx.store.load(&[a.clone(), b.clone()]).await?;

    let changes = || vec![vec![set("count", Scalar::Int(100))], vec![set("count", Scalar::Int(100))]];
    match fx
        .commit(&[&a, &b], changes(), CommitGuard::Versions { versions: &seen, action: "opt", refresh: false })
        .await
    {
        Err(StoreError::Conflict { model, expected: 1, found: 2 }) => {
            expect_eq(model, a.id.clone(), "conflicting model")?
        }
        other => bail!("a stale version should conflict (expected 1, found 2), got {other:?}"),
    }
    expect_eq(fx.store.load(&[a.clone(), b.clone()]).await?, before.clone(), "state after the conflict")?;

    let current = [before[0].version, before[1].version];
    let receipt = fx
        .commit(&[&a, &b], changes(), CommitGuard::Versions { versions: &current, action: "opt", refresh: false })
        .await?;
    expect_eq(receipt.versions, vec![3, 1], "versions after the guarded commit")?;
    let after = fx.store.load(&[a.clone(), b.clone()]).await?;
    expect_eq(fx.field(&after[0], "count")?, &int(100), "a's count")?;
    expect_eq(fx.field(&after[1], "count")?, &int(100), "b's count")
}

/// An optimistic commit does not go through while a lock-mode holder of the same action holds
/// the model (it would be overwritten by that holder's commit); another action's lock does not
/// stop it.
pub async fn versions_guard_refuses_while_a_lock_of_its_action_is_held(store: Arc<dyn Store>, ns: &str) -> Result<()> {
    let fx = Fx::new(store, ns)?;
    let a = fx.model("a");
    let seen = [fx.store.load(std::slice::from_ref(&a)).await?[0].version];
    let held = fx.acquire(&[&a], "opt", "holder").await?;
    let changes = || vec![vec![set("count", Scalar::Int(7))]];
    match fx.commit(&[&a], changes(), CommitGuard::Versions { versions: &seen, action: "opt", refresh: false }).await {
        Err(StoreError::Conflict { model, .. }) => expect_eq(model, a.id.clone(), "conflicting model")?,
        other => bail!("a commit under a held lock of its action should conflict, got {other:?}"),
    }
    let other_held = fx.acquire(&[&a], "other", "holder").await?;
    fx.commit(&[&a], changes(), CommitGuard::Versions { versions: &seen, action: "elsewhere", refresh: false }).await?;
    fx.store.release(&held.leases).await?;
    fx.store.release(&other_held.leases).await?;
    let after = fx.store.load(std::slice::from_ref(&a)).await?;
    expect_eq(fx.field(&after[0], "count")?, &int(7), "count after the unblocked commit")
}

/// A version-guarded commit with a refresh, refused because versions moved, brings back the
/// current state (collections included) of exactly the models whose version moved, in request
/// order, and writes nothing; a held lock of its action is still a plain `Conflict` (nothing
/// moved); on the refreshed versions the commit applies.
pub async fn versions_guard_with_a_refresh_brings_back_the_moved_models_state(
    store: Arc<dyn Store>,
    ns: &str,
) -> Result<()> {
    let fx = Fx::new(store, ns)?;
    let (a, b, c) = (fx.model("a"), fx.model("b"), fx.model("c"));
    fx.write(&a, vec![set("count", Scalar::Int(1)), append(&["x"])]).await?;
    fx.write(&c, vec![set("count", Scalar::Int(5))]).await?;
    let seen: Vec<u64> = fx.store.load(&[a.clone(), b.clone(), c.clone()]).await?.iter().map(|s| s.version).collect();
    fx.write(&a, vec![increment("count", 1), append(&["y"])]).await?;
    fx.write(&c, vec![FieldChange::DictSet { field: "tags".into(), entries: vec![("t".into(), Scalar::Int(3))] }])
        .await?;
    let before = fx.store.load(&[a.clone(), b.clone(), c.clone()]).await?;
    let changes = || vec![vec![set("count", Scalar::Int(100))], vec![set("count", Scalar::Int(100))], vec![]];
    let refreshing = |versions| CommitGuard::Versions { versions, action: "opt", refresh: true };
    match fx.commit(&[&a, &b, &c], changes(), refreshing(&seen)).await {
        Err(StoreError::Stale { models }) => {
            let found: Vec<(usize, ModelId)> = models.iter().map(|m| (m.index, m.model.clone())).collect();
            expect_eq(found, vec![(0, a.id.clone()), (2, c.id.clone())], "the models reported as moved")?;
            expect_eq(&models[0].snapshot, &before[0], "a's state as the refusal brought it")?;
            expect_eq(&models[1].snapshot, &before[2], "c's state as the refusal brought it")?;
        }
        other => bail!("a commit on moved versions with a refresh should be Stale, got {other:?}"),
    }
    expect_eq(fx.store.load(&[a.clone(), b.clone(), c.clone()]).await?, before.clone(), "state after the refusal")?;

    let current: Vec<u64> = before.iter().map(|s| s.version).collect();
    let held = fx.acquire(&[&b], "opt", "holder").await?;
    match fx.commit(&[&a, &b, &c], changes(), refreshing(&current)).await {
        Err(StoreError::Conflict { model, .. }) => expect_eq(model, b.id.clone(), "the model under a lock")?,
        other => bail!("a refreshing commit under a held lock of its action should conflict, got {other:?}"),
    }
    fx.store.release(&held.leases).await?;
    let receipt = fx.commit(&[&a, &b, &c], changes(), refreshing(&current)).await?;
    expect_eq(receipt.versions, vec![current[0] + 1, current[1] + 1, current[2]], "versions after the commit")?;
    expect_eq(fx.field(&fx.load(&a).await?, "count")?, &int(100), "a's count")
}

/// A lock-mode commit that writes is refused with `Conflict` when the model changed since the
/// locks were taken (another action's lock commit, or any other writer): the lock is per
/// (model, action), and a value computed from the older state must not overwrite the newer one.
/// The refusal writes nothing and keeps the locks held; after loading again, the same leases
/// commit at the fresh version, and release.
pub async fn lock_mode_commits_are_refused_after_another_writer_and_keep_their_locks(
    store: Arc<dyn Store>,
    ns: &str,
) -> Result<()> {
    let fx = Fx::new(store, ns)?;
    let m = fx.model("m");
    let fund = fx.acquire(&[&m], "fund", "funder").await?;
    let refund = fx.acquire(&[&m], "refund", "refunder").await?;
    fx.commit(&[&m], vec![vec![set("count", Scalar::Int(-3))]], refund.guard()).await.context("the first commit")?;
    let after_refund = fx.load(&m).await?;

    let stale = fx.commit(&[&m], vec![vec![set("count", Scalar::Int(10))]], fund.guard()).await;
    match &stale {
        Err(StoreError::Conflict { model, expected, found }) => {
            expect_eq((model, *expected, *found), (&m.id, fund.versions[0], after_refund.version), "the conflict")?;
        }
        other => bail!("a commit computed from a state another action changed since: expected Conflict, got {other:?}"),
    }
    expect_eq(fx.load(&m).await?, after_refund.clone(), "the model after the refused commit")?;
    fx.expect_busy(&[&m], "fund", "other").await.context("the refused commit kept its lock")?;
    // `other` stops waiting: the lock is nobody's due once released.
    fx.store.withdraw(&[lock_id(&m, "fund")], "other").await?;

    // An unguarded write (a pipeline, a direct operation) counts too.
    fx.write(&m, vec![append(&["kept"])]).await?;
    let stale = fx.commit(&[&m], vec![vec![set("count", Scalar::Int(10))]], fund.guard()).await;
    ensure!(matches!(stale, Err(StoreError::Conflict { .. })), "after an unguarded write: {stale:?}");

    let fresh = fx.load(&m).await?;
    let versions = [fresh.version];
    let guard = CommitGuard::Leases { leases: &fund.leases, versions: &versions, check: VersionCheck::WhenWriting };
    let receipt =
        fx.commit(&[&m], vec![vec![set("count", Scalar::Int(7))]], guard).await.context("at the fresh version")?;
    expect_eq(receipt.versions, vec![fresh.version + 1], "versions after the commit at the fresh version")?;
    let last = fx.load(&m).await?;
    expect_eq(fx.field(&last, "count")?, &int(7), "count")?;
    expect_eq(fx.field(&last, "items")?, &strs(&["kept"]), "the unguarded append survives")?;
    fx.acquire(&[&m], "fund", "next").await.context("the commit released the lock")?;
    Ok(())
}

/// A lock-mode commit that writes nothing only releases: its run read one consistent state (the
/// one loaded under the locks), so a later change by another writer does not refuse it.
pub async fn read_only_lock_mode_commits_release_whatever_changed_since(store: Arc<dyn Store>, ns: &str) -> Result<()> {
    let fx = Fx::new(store, ns)?;
    let m = fx.model("m");
    let held = fx.acquire(&[&m], "read", "reader").await?;
    fx.write(&m, vec![increment("count", 1)]).await?;
    let receipt = fx.commit(&[&m], vec![vec![]], held.guard()).await.context("a read-only commit")?;
    expect_eq(receipt.versions, vec![held.versions[0] + 1], "the version reported is the stored one")?;
    fx.acquire(&[&m], "read", "next").await.context("the read-only commit released the lock")?;
    Ok(())
}

/// A lease commit that checks its versions always ([`VersionCheck::Always`], a lock-mode group
/// whose later members joined after the load) is refused after another writer even when it
/// writes nothing, keeps its locks and writes nothing; at the fresh version it releases.
pub async fn lease_commits_that_always_check_versions_refuse_a_moved_read(
    store: Arc<dyn Store>,
    ns: &str,
) -> Result<()> {
    let fx = Fx::new(store, ns)?;
    let m = fx.model("m");
    let held = fx.acquire(&[&m], "read", "group").await?;
    fx.write(&m, vec![increment("count", 1)]).await?;
    let moved = fx.load(&m).await?;
    let guard = CommitGuard::Leases { leases: &held.leases, versions: &held.versions, check: VersionCheck::Always };
    let stale = fx.commit(&[&m], vec![vec![]], guard).await;
    match &stale {
        Err(StoreError::Conflict { model, expected, found }) => {
            expect_eq((model, *expected, *found), (&m.id, held.versions[0], moved.version), "the conflict")?;
        }
        other => bail!("a read-only commit checking moved versions: expected Conflict, got {other:?}"),
    }
    expect_eq(fx.load(&m).await?, moved.clone(), "the model after the refused commit")?;
    fx.expect_busy(&[&m], "read", "other").await.context("the refused commit kept its lock")?;
    fx.store.withdraw(&[lock_id(&m, "read")], "other").await?;

    let versions = [moved.version];
    let guard = CommitGuard::Leases { leases: &held.leases, versions: &versions, check: VersionCheck::Always };
    let receipt = fx.commit(&[&m], vec![vec![]], guard).await.context("at the fresh version")?;
    expect_eq(receipt.versions, vec![moved.version], "a commit that writes nothing keeps the version")?;
    fx.acquire(&[&m], "read", "next").await.context("the commit released the lock")?;
    Ok(())
}

/// A failed guard is reported as such even when a change could not apply either.
pub async fn guard_is_checked_before_the_changes(store: Arc<dyn Store>, ns: &str) -> Result<()> {
    let fx = Fx::new(store, ns)?;
    let m = fx.model("m");
    fx.write(&m, vec![set("count", Scalar::Int(1))]).await?;
    let bad = || vec![vec![pop(None)]];
    let stale = fx.commit(&[&m], bad(), CommitGuard::Versions { versions: &[0], action: "opt", refresh: false }).await;
    ensure!(matches!(stale, Err(StoreError::Conflict { .. })), "expected Conflict, got {stale:?}");

    let lost = fx.acquire_with_lease(&[&m], "act", "short", SHORT_LEASE).await?;
    fx.acquire_after_expiry(&[&m], "act", "taker").await?;
    let late = fx.commit(&[&m], bad(), lost.guard()).await;
    ensure!(matches!(late, Err(StoreError::LockLost { .. })), "expected LockLost, got {late:?}");
    Ok(())
}

/// Unguarded increments and appends keep their intent: concurrent ones all count.
pub async fn unguarded_increments_and_appends_all_count(store: Arc<dyn Store>, ns: &str) -> Result<()> {
    const WRITERS: i64 = 16;
    let fx = Fx::new(store, ns)?;
    let m = fx.model("m");
    let stale = fx.load(&m).await?;
    let writers = (0..WRITERS).map(|i| {
        let (store, m) = (Arc::clone(&fx.store), m.clone());
        tokio::spawn(async move {
            let changes = [vec![increment("count", 1), append(&[&format!("w{i}")])]];
            store
                .commit(CommitRequest {
                    models: &[m],
                    changes: &changes,
                    guard: CommitGuard::Unguarded,
                    records: CommitRecords::NONE,
                })
                .await
        })
    });
    for writer in futures_util::future::join_all(writers).await {
        writer??;
    }
    let snapshot = fx.load(&m).await?;
    expect_eq(fx.field(&snapshot, "count")?, &int(WRITERS), "count after the unguarded increments")?;
    let FieldValue::List(items) = fx.field(&snapshot, "items")? else { bail!("items is not a list") };
    let appended: HashSet<&str> = items.iter().filter_map(Scalar::as_str).collect();
    let expected: Vec<String> = (0..WRITERS).map(|i| format!("w{i}")).collect();
    expect_eq(appended, expected.iter().map(String::as_str).collect(), "appended items")?;
    expect_eq(items.len(), expected.len(), "number of appended items")?;
    expect_eq(snapshot.version, stale.version + u64::try_from(WRITERS)?, "one version per commit")
}

/// A batch with one change that cannot apply (here or in another model of the commit) writes
/// none of its changes, keeps every version, and names the model and field.
pub async fn batch_with_a_change_that_cannot_apply_writes_nothing(store: Arc<dyn Store>, ns: &str) -> Result<()> {
    let fx = Fx::new(store, ns)?;
    let (a, b) = (fx.model("a"), fx.model("b"));
    fx.write(&a, vec![set("count", Scalar::Int(1)), append(&["x"])]).await?;
    let good = || vec![set("label", "changed".into()), increment("count", 1), append(&["y"]), dict_set(&[("k", 1)])];
    let refused: [(&str, Vec<Vec<FieldChange>>, &ModelTarget, &str); 5] = [
        ("pop at an index past the end", vec![[good(), vec![pop(Some(5))]].concat(), vec![]], &a, "items"),
        (
            "pop from a list emptied earlier in the batch",
            vec![[good(), vec![clear("items"), pop(None)]].concat(), vec![]],
            &a,
            "items",
        ),
        ("pop from a never-written list", vec![good(), vec![pop(Some(0))]], &b, "items"),
        ("remove of an item not in the list", vec![[good(), vec![remove("absent")]].concat(), vec![]], &a, "items"),
        (
            "increment past i64::MAX",
            vec![good(), vec![set("count", Scalar::Int(i64::MAX)), increment("count", 1)]],
            &b,
            "count",
        ),
    ];
    for (case, changes, culprit, culprit_field) in refused {
        let before = fx.store.load(&[a.clone(), b.clone()]).await?;
        match fx.commit(&[&a, &b], changes, CommitGuard::Unguarded).await {
            Err(StoreError::CannotApply { model, field, .. }) => {
                expect_eq(model, culprit.id.clone(), case)?;
                expect_eq(field.as_str(), culprit_field, case)?;
            }
            other => bail!("{case}: expected CannotApply, got {other:?}"),
        }
        expect_eq(fx.store.load(&[a.clone(), b.clone()]).await?, before, &format!("state after the refused {case}"))?;
    }
    Ok(())
}

/// An increment of a field whose stored value is not an int (written under an earlier
/// schema) is `CannotApply`, and its batch writes nothing.
pub async fn increment_of_a_stored_non_int_writes_nothing(store: Arc<dyn Store>, ns: &str) -> Result<()> {
    let fx = Fx::new(store, ns)?;
    let m = fx.model("m");
    fx.write(&m, vec![set("label", "not a number".into())]).await?;
    let as_int = fx.with_schema(&m, changed_schema()?);
    let before = fx.load(&m).await?;

    let batch = vec![vec![set("count", Scalar::Int(9)), increment("label", 1)]];
    match fx.commit(&[&as_int], batch, CommitGuard::Unguarded).await {
        Err(StoreError::CannotApply { model, field, .. }) => {
            expect_eq(model, m.id.clone(), "model")?;
            expect_eq(field.as_str(), "label", "field")?;
        }
        other => bail!("expected CannotApply, got {other:?}"),
    }
    expect_eq(fx.load(&m).await?, before, "state after the refused increment")
}

/// Stored data that the schema's types cannot read (it was written under another schema) is
/// reported as `Corrupt` with the field, by plain loads and by lock-and-load.
pub async fn stored_data_that_does_not_fit_a_changed_schema_is_corrupt(store: Arc<dyn Store>, ns: &str) -> Result<()> {
    let fx = Fx::new(store, ns)?;
    let m = fx.model("m");
    fx.write(&m, vec![set("label", "not a number".into())]).await?;
    let as_int = fx.with_schema(&m, changed_schema()?);
    for (how, result) in [
        ("load", fx.store.load(std::slice::from_ref(&as_int)).await.map(|_| ())),
        (
            "lock and load",
            fx.store.try_lock_and_load(&fx.request(&[&as_int], "act", "o", LONG_LEASE)).await.map(|_| ()),
        ),
    ] {
        match result {
            Err(StoreError::Corrupt { model, field, .. }) => {
                expect_eq(model, m.id.clone(), how)?;
                expect_eq(field.as_str(), "label", how)?;
            }
            other => bail!("{how}: expected Corrupt, got {other:?}"),
        }
    }
    Ok(())
}

/// Changes the schema does not allow (a value of another kind, an op for another shape of
/// field, an unknown field) are `CannotApply`, and write nothing.
pub async fn changes_that_do_not_fit_the_schema_are_refused(store: Arc<dyn Store>, ns: &str) -> Result<()> {
    let fx = Fx::new(store, ns)?;
    let m = fx.model("m");
    fx.write(&m, vec![set("count", Scalar::Int(1)), append(&["x"])]).await?;
    let refused = [
        ("a str set on an int field", set("count", "one".into())),
        (
            "an int appended to a list<str>",
            FieldChange::ListAppend { field: "items".into(), items: vec![Scalar::Int(1)] },
        ),
        (
            "a float set in a dict<int>",
            FieldChange::DictSet { field: "tags".into(), entries: vec![("k".into(), 1.5.into())] },
        ),
        ("an increment of a str field", increment("label", 1)),
        ("a scalar set on a list field", set("items", "x".into())),
        ("a list op on a dict field", FieldChange::ListAppend { field: "tags".into(), items: vec![] }),
        ("a field the schema does not have", set("no_such_field", Scalar::Int(1))),
    ];
    for (case, change) in refused {
        let field = change.field().to_owned();
        let before = fx.load(&m).await?;
        match fx.commit(&[&m], vec![vec![increment("count", 1), change]], CommitGuard::Unguarded).await {
            Err(StoreError::CannotApply { field: refused_field, .. }) => expect_eq(refused_field, field, case)?,
            other => bail!("{case}: expected CannotApply, got {other:?}"),
        }
        expect_eq(fx.load(&m).await?, before, &format!("state after {case}"))?;
    }
    Ok(())
}

/// `delete` resets a model to its defaults and bumps its version; a lock held across it
/// stays held, and commits once its holder has seen the state after the delete.
pub async fn delete_resets_to_defaults_bumps_the_version_and_keeps_locks(
    store: Arc<dyn Store>,
    ns: &str,
) -> Result<()> {
    let fx = Fx::new(store, ns)?;
    let m = fx.model("m");
    fx.write(&m, vec![set("count", Scalar::Int(5)), append(&["a"]), dict_set(&[("k", 1)]), set("flag", false.into())])
        .await?;
    let held = fx.acquire(&[&m], "act", "holder").await?;

    expect_eq(fx.store.delete(&m).await?, 2, "version returned by delete")?;
    let snapshot = fx.load(&m).await?;
    expect_eq(snapshot.values, ModelSnapshot::defaults(&fx.schema).values, "values after delete")?;
    expect_eq(snapshot.version, 2, "version after delete")?;

    fx.expect_busy(&[&m], "act", "other").await.context("delete kept the lock")?;
    // The holder loaded version 1: its commit is stale now, and refused.
    let stale = fx.commit(&[&m], vec![vec![increment("count", 1)]], held.guard()).await;
    ensure!(matches!(stale, Err(StoreError::Conflict { .. })), "a commit loaded before the delete: {stale:?}");
    let guard = CommitGuard::Leases { leases: &held.leases, versions: &[2], check: VersionCheck::WhenWriting };
    let receipt = fx.commit(&[&m], vec![vec![increment("count", 1)]], guard).await?;
    expect_eq(receipt.versions, vec![3], "version after a commit following delete")?;
    expect_eq(fx.field(&fx.load(&m).await?, "count")?, &int(1), "count after delete and increment")
}

/// 32 tasks each run lock-load-`Set(loaded + 1)`-commit cycles on one model, retrying on
/// `Busy` (woken by a watch, with a bound): no update is lost, every token is distinct, and
/// no lock is left behind.
pub async fn concurrent_lock_commit_cycles_lose_no_update(store: Arc<dyn Store>, ns: &str) -> Result<()> {
    const TASKS: u64 = 32;
    const CYCLES: u64 = 10;
    let fx = Arc::new(Fx::new(store, ns)?);
    let m = fx.model("hot");
    let tasks = (0..TASKS).map(|task| {
        let (fx, m) = (Arc::clone(&fx), m.clone());
        tokio::spawn(async move {
            let mut tokens = Vec::new();
            for cycle in 0..CYCLES {
                tokens.push(fx.increment_under_lock(&m, &format!("task{task}-{cycle}")).await?);
            }
            Ok::<_, CheckError>(tokens)
        })
    });
    let mut tokens = HashSet::new();
    for task in futures_util::future::join_all(tasks).await {
        tokens.extend(task??);
    }
    let total = i64::try_from(TASKS * CYCLES)?;
    let snapshot = fx.load(&m).await?;
    expect_eq(fx.field(&snapshot, "count")?, &int(total), "count after every cycle")?;
    expect_eq(snapshot.version, TASKS * CYCLES, "one version per cycle")?;
    expect_eq(tokens.len(), usize::try_from(TASKS * CYCLES)?, "distinct fencing tokens")?;
    fx.acquire(&[&m], "bump", "final").await.context("a lock was left behind")?;
    Ok(())
}
