//! The checks of a lock's owner: an attempt whose lock-and-load reply was lost took its locks,
//! and the retry of the same invocation (the same owner) must get them back at once instead of
//! waiting out its own lease.

use std::sync::Arc;

use super::fixture::*;
use super::{CheckError, Context, ensure};
use crate::model::change::ModelSnapshot;
use crate::model::value::Scalar;
use crate::store::{Store, StoreError};

type Result<T> = std::result::Result<T, CheckError>;

/// The owner of a live lock takes it again with a new token (its first lease, whose reply was
/// lost, can then neither commit nor release it); every other owner still finds it busy, and
/// a waiter that flagged itself on the first lease is still woken by the commit of the second.
pub async fn a_lock_whose_reply_was_lost_is_taken_again_by_its_owner_and_fences_the_lost_lease(
    store: Arc<dyn Store>,
    ns: &str,
) -> Result<()> {
    let fx = Fx::new(store, ns)?;
    let (a, b) = (fx.model("a"), fx.model("b"));
    // The first attempt: the store took both locks, the caller never heard of it.
    let lost = fx.acquire(&[&a, &b], "act", "inv-1").await?;
    let mut watch = fx.store.watch(&[lock_id(&a, "act")]);
    fx.expect_busy(&[&a], "act", "inv-2").await.context("another owner waits")?;

    let retry = fx.acquire(&[&a, &b], "act", "inv-1").await.context("the owner's retry takes its locks again")?;
    for (old, new) in lost.leases.iter().zip(&retry.leases) {
        ensure!(new.token > old.token, "a new token fences the lost lease off: {} then {}", old.token, new.token);
    }
    fx.expect_busy(&[&b], "act", "inv-2").await.context("the retaken lock is still exclusive")?;

    // The lost lease cannot free or use what the retry holds. (Only `b` is tried again: the
    // waiter's flag on `a` must have come through the retake for the commit to wake it.)
    fx.store.release(&lost.leases).await?;
    fx.expect_busy(&[&b], "act", "inv-2").await.context("a release with the lost lease frees nothing")?;
    let late = fx.commit(&[&a, &b], vec![vec![set("count", Scalar::Int(9))], vec![]], lost.guard()).await;
    ensure!(
        matches!(late, Err(StoreError::LockLost { .. })),
        "the lost lease's commit: expected LockLost, got {late:?}"
    );
    expect_eq(fx.load(&a).await?, ModelSnapshot::defaults(&fx.schema), "state after the lost lease's commit")?;

    fx.commit(&[&a, &b], vec![vec![increment("count", 1)], vec![]], retry.guard()).await?;
    tokio::time::timeout(WAIT_BOUND, watch.released()).await.context("the waiter was not woken")?;
    let next = fx.acquire(&[&a, &b], "act", "inv-2").await.context("both locks are free after the commit")?;
    expect_eq(fx.field(&next.snapshots[0], "count")?, &int(1), "count after the retry's commit")
}
