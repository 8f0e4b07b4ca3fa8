//! The background task that keeps a [`Registry`]'s snapshot current: it refreshes on every
//! change announcement and, every refresh interval, checks the epoch in case an announcement
//! was lost. It holds only a weak reference, so it ends when the registry is dropped.

use std::sync::Weak;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tracing::warn;

use super::instance::{Inner, Registry};

pub(super) async fn run(registry: Weak<Inner>, mut changes: watch::Receiver<u64>, interval: Duration) {
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick.tick().await;
    let mut announced = true;
    loop {
        let notified = tokio::select! {
            changed = changes.changed(), if announced => {
                // A closed channel (the storage is gone) leaves only the periodic check.
                announced = changed.is_ok();
                announced
            }
            _ = tick.tick() => false,
        };
        let Some(inner) = registry.upgrade() else { return };
        let registry = Registry::from_inner(inner);
        let result = if notified { registry.refresh().await.map(drop) } else { registry.check_epoch().await };
        if let Err(e) = result {
            warn!(error = %e, "cannot refresh the registry snapshot; will try again");
        }
    }
}
