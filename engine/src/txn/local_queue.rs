//! A FIFO queue per lock inside one engine instance.
//!
//! Invocations of the same (model, action) in one process line up here first, so only the head
//! of each line contends for the lock in the store: no thundering herd on every release, and
//! local callers are served in arrival order. Multi-model invocations enter their lines in the
//! global lock order ([`LockId`]'s `Ord`), so two opposite transfers cannot deadlock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use crate::model::ids::LockId;

/// The per-lock lines of one engine.
#[derive(Debug, Default)]
pub(super) struct LocalLockQueue {
    lines: Arc<Mutex<HashMap<LockId, Weak<AsyncMutex<()>>>>>,
}

/// A turn at the head of one or more lines; leaving them when dropped.
#[derive(Debug)]
pub(super) struct LocalTurn {
    lines: Arc<Mutex<HashMap<LockId, Weak<AsyncMutex<()>>>>>,
    held: Vec<HeldLine>,
}

/// One line of a turn: the lock, the line, and its guard once at the head.
type HeldLine = (LockId, Arc<AsyncMutex<()>>, Option<OwnedMutexGuard<()>>);

impl LocalLockQueue {
    /// Waits for the head of the line of every lock in `locks` (sorted, unique), in order.
    /// Cancel-safe: dropping the future leaves every line it entered.
    pub(super) async fn enter(&self, locks: &[LockId]) -> LocalTurn {
        let mut turn = LocalTurn { lines: Arc::clone(&self.lines), held: Vec::with_capacity(locks.len()) };
        for lock in locks {
            let line = {
                let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
                match lines.get(lock).and_then(Weak::upgrade) {
                    Some(line) => line,
                    None => {
                        let line = Arc::new(AsyncMutex::new(()));
                        lines.insert(lock.clone(), Arc::downgrade(&line));
                        line
                    }
                }
            };
            // Hold the Arc in the turn before awaiting, so a cancelled wait still cleans up.
            turn.held.push((lock.clone(), Arc::clone(&line), None));
            let guard = line.lock_owned().await;
            if let Some(last) = turn.held.last_mut() {
                last.2 = Some(guard);
            }
        }
        turn
    }

    /// The number of lines in use (for tests and metrics).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lines.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

impl Drop for LocalTurn {
    fn drop(&mut self) {
        let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        for (lock, line, guard) in self.held.drain(..).rev() {
            drop(guard);
            // Upgrades happen under the same mutex, so a count of 1 means nobody else queues.
            if Arc::strong_count(&line) == 1 {
                lines.remove(&lock);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::FutureExt as _;

    use super::*;
    use crate::model::ids::ModelId;

    fn lock(key: &str) -> LockId {
        LockId { model: ModelId::new("T", key), action: "a".into() }
    }

    #[tokio::test]
    async fn same_lock_waits_other_lock_does_not_and_lines_are_cleaned_up() {
        let queue = LocalLockQueue::default();
        let first = queue.enter(&[lock("x")]).await;
        let other = tokio::time::timeout(Duration::from_secs(5), queue.enter(&[lock("y")])).await;
        assert!(other.is_ok(), "a different lock must not wait");
        let x = [lock("x")];
        let mut same = Box::pin(queue.enter(&x));
        assert!((&mut same).now_or_never().is_none(), "the same lock must wait");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), same).await.expect("woken after release");
        drop(second);
        drop(other);
        assert_eq!(queue.len(), 0);
    }

    #[tokio::test]
    async fn a_cancelled_wait_leaves_no_line_behind() {
        let queue = LocalLockQueue::default();
        let first = queue.enter(&[lock("x")]).await;
        let x = [lock("x")];
        {
            let mut waiting = Box::pin(queue.enter(&x));
            assert!((&mut waiting).now_or_never().is_none());
        }
        drop(first);
        assert_eq!(queue.len(), 0);
    }
}
