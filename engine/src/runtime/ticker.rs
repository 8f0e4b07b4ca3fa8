//! The epoch ticker: a background thread that advances the engine's epoch, which is how a
//! running rule is made to yield to the host's executor (and notices its deadline).

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use wasmtime::Engine;

/// Ticks an engine's epoch every `period` until dropped.
#[derive(Debug)]
pub(crate) struct EpochTicker {
    period: Duration,
    /// Dropping the sender wakes the thread with `Disconnected`, which stops it: no join (and no
    /// blocking) in `Drop`.
    _stop: Sender<()>,
    /// Kept (not joined) so tests can wait for the thread to exit.
    _thread: JoinHandle<()>,
}

impl EpochTicker {
    /// Starts the ticker thread.
    ///
    /// # Errors
    /// The OS error if the thread cannot be spawned.
    pub(crate) fn start(engine: Engine, period: Duration) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = thread::Builder::new().name("wasmtx-epoch".into()).spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(period) {
                engine.increment_epoch();
            }
        })?;
        Ok(Self { period, _stop: stop, _thread: thread })
    }

    /// Stops the thread and waits for it (tests only: `Drop` does not wait).
    #[cfg(test)]
    fn stop_and_join(self) -> thread::Result<()> {
        drop(self._stop);
        self._thread.join()
    }

    /// The time between ticks.
    pub(crate) fn period(&self) -> Duration {
        self.period
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_the_sender_stops_the_thread_at_once() {
        let ticker = EpochTicker::start(Engine::default(), Duration::from_secs(3600)).expect("thread");
        let start = std::time::Instant::now();
        ticker.stop_and_join().expect("the thread exits cleanly");
        assert!(start.elapsed() < Duration::from_secs(1), "it did not wait for a tick");
    }
}
