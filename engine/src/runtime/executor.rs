//! Where rules run: on the caller's task while they are short, on threads of their own once
//! they run past one epoch tick.
//!
//! Nearly every rule finishes within its first tick (tens of microseconds), and runs inline,
//! with no hand-off. A rule still running at its first yield is moved, future and all, to the
//! rule threads (a Tokio runtime of `RuntimeConfig::rule_threads` workers), where long-running
//! rules take turns at every tick. So rules that spin never occupy more host threads than there
//! are rule threads, and the host's own threads stay free for its tasks, timers and I/O.

use std::future::Future;
use std::task::Poll;

use tracing::Instrument as _;
use tracing::instrument::WithSubscriber as _;

use crate::error::Error;

/// The rule threads (see the module documentation).
#[derive(Debug)]
pub(crate) struct RuleExecutor {
    /// `Some` until dropped.
    runtime: Option<tokio::runtime::Runtime>,
}

impl RuleExecutor {
    /// Starts `threads` rule threads.
    ///
    /// # Errors
    /// The OS error if the threads cannot be started.
    pub(crate) fn start(threads: u32) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::try_from(threads).unwrap_or(1).max(1))
            .thread_name("wasmtx-rule")
            .enable_time()
            .build()?;
        Ok(Self { runtime: Some(runtime) })
    }

    /// Runs `execution`: polled once on the caller's task, then, if it is not done, on the
    /// rule threads. Dropping the returned future stops the execution wherever it runs.
    ///
    /// # Errors
    /// Never in practice: [`Error::Overloaded`] if the rule threads are gone (only while the
    /// runtime is being dropped). A panic of the execution is resumed on the caller.
    pub(crate) async fn run<F>(&self, execution: F) -> Result<F::Output, Error>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        // The caller's span and subscriber go with the execution: a rule's log records keep
        // their invocation's span, and land where the caller's records land, on whichever
        // thread it runs (the test harness captures them per call).
        let mut execution = Box::pin(execution.in_current_span().with_current_subscriber());
        if let Poll::Ready(output) = std::future::poll_fn(|cx| Poll::Ready(execution.as_mut().poll(cx))).await {
            return Ok(output);
        }
        let Some(runtime) = &self.runtime else { return Err(Error::Overloaded { waited: Default::default() }) };
        let mut task = AbortOnDrop(runtime.spawn(execution));
        match (&mut task.0).await {
            Ok(output) => Ok(output),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(Error::Overloaded { waited: Default::default() }),
        }
    }
}

impl Drop for RuleExecutor {
    fn drop(&mut self) {
        // Non-blocking, so an engine may be dropped inside a task: running rules are dropped
        // at their next yield.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Aborts a spawned execution whose caller stopped waiting for it.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
