//! Lock-release notifications inside one process: waiters register for the locks they want
//! and are woken when a release of any of them is announced (by the memory store directly, or
//! by the Redis store's Pub/Sub listener).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

/// Routes release announcements to the watchers of each lock channel.
///
/// # Notes
/// Cheap to clone and shared by a store and its listener task. A channel name is a
/// store-specific string (the Redis lock key, for instance). Entries live while at least one
/// [`ReleaseWatch`] holds them.
#[derive(Debug, Clone, Default)]
pub struct ReleaseBus {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

#[derive(Debug)]
struct Channel {
    sender: watch::Sender<u64>,
    watchers: usize,
}

impl ReleaseBus {
    /// A bus with no watchers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Announces a release on `channel`, waking every watcher of it. Does nothing if no one
    /// watches.
    pub fn announce(&self, channel: &str) {
        let channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(ch) = channels.get(channel) {
            ch.sender.send_modify(|generation| *generation = generation.wrapping_add(1));
        }
    }

    /// Wakes every watcher: used after announcements may have been lost (a reconnect).
    pub fn announce_all(&self) {
        let channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        for ch in channels.values() {
            ch.sender.send_modify(|generation| *generation = generation.wrapping_add(1));
        }
    }

    /// Whether anyone in this process watches `channel`.
    pub fn is_watched(&self, channel: &str) -> bool {
        self.channels.lock().unwrap_or_else(PoisonError::into_inner).contains_key(channel)
    }

    /// Watches these channels from now on: a release announced after this call wakes the
    /// returned watch, even if nobody is awaiting it yet.
    pub fn watch(&self, channels: impl IntoIterator<Item = String>) -> ReleaseWatch {
        let mut map = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        let receivers = channels
            .into_iter()
            .map(|name| {
                let ch =
                    map.entry(name.clone()).or_insert_with(|| Channel { sender: watch::channel(0).0, watchers: 0 });
                ch.watchers += 1;
                let mut rx = ch.sender.subscribe();
                rx.mark_unchanged();
                (name, rx)
            })
            .collect();
        ReleaseWatch { bus: self.clone(), receivers }
    }

    fn unwatch(&self, name: &str) {
        let mut map = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(ch) = map.get_mut(name) {
            ch.watchers -= 1;
            if ch.watchers == 0 {
                map.remove(name);
            }
        }
    }
}

/// A registration for release announcements of some locks; unregisters when dropped.
#[derive(Debug)]
pub struct ReleaseWatch {
    bus: ReleaseBus,
    receivers: Vec<(String, watch::Receiver<u64>)>,
}

impl ReleaseWatch {
    /// A watch that never fires (for stores that cannot announce releases).
    pub fn never() -> Self {
        Self { bus: ReleaseBus::new(), receivers: Vec::new() }
    }

    /// Waits until any watched lock was released since the watch was made or since this last
    /// returned. Pends forever if nothing is watched: callers bound it with a timeout.
    pub async fn released(&mut self) {
        if self.receivers.is_empty() {
            return std::future::pending().await;
        }
        let changes = self.receivers.iter_mut().map(|(_, rx)| Box::pin(rx.changed()));
        // A closed sender cannot happen while we hold the entry; treat it as a wake-up anyway.
        let _ = futures_util::future::select_all(changes).await;
        for (_, rx) in &mut self.receivers {
            rx.mark_unchanged();
        }
    }
}

impl Drop for ReleaseWatch {
    fn drop(&mut self) {
        for (name, _) in &self.receivers {
            self.bus.unwatch(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_release_announced_before_waiting_is_not_missed() {
        let bus = ReleaseBus::new();
        let mut watch = bus.watch(["a".to_owned(), "b".to_owned()]);
        bus.announce("b");
        tokio::time::timeout(Duration::from_secs(5), watch.released()).await.expect("woken");
    }

    #[tokio::test]
    async fn other_channels_do_not_wake_and_entries_are_dropped() {
        let bus = ReleaseBus::new();
        let mut watch = bus.watch(["a".to_owned()]);
        bus.announce("z");
        assert!(tokio::time::timeout(Duration::from_millis(20), watch.released()).await.is_err());
        assert!(bus.is_watched("a"));
        drop(watch);
        assert!(!bus.is_watched("a"));
    }
}
