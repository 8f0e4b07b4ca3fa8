//! One retry policy for every mode: how many attempts, how long to back off, which errors are
//! worth another attempt. It replaces the hand-written retry loop of the reference's "robust
//! cart update" example.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::error::class::RetryClass;

/// When and how to run an invocation again after a retryable failure.
///
/// Lock timeouts, lost locks, optimistic conflicts and store outages are retryable; a rule's
/// rejection, a trap, a limit and bad input never are (running them again gives the same
/// answer). Backoff is exponential with full jitter, so competing retries spread out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Total attempts, the first included (1 = no retry).
    pub max_attempts: u32,
    /// The backoff before the second attempt; doubled for each later one.
    pub base_backoff: Duration,
    /// The longest backoff.
    pub max_backoff: Duration,
    /// Which retryable errors to retry.
    pub retry_on: RetryOn,
}

/// Which kinds of retryable failure a [`RetryPolicy`] retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RetryOn {
    /// [`Error::LockTimeout`].
    pub lock_timeout: bool,
    /// [`Error::LockLost`].
    pub lock_lost: bool,
    /// An optimistic conflict (a model changed between load and commit).
    pub conflict: bool,
    /// A store outage ([`crate::StoreError::Unavailable`]).
    pub unavailable: bool,
}

impl RetryOn {
    /// Every retryable kind.
    pub const ALL: Self = Self { lock_timeout: true, lock_lost: true, conflict: true, unavailable: true };
    /// None: a policy with this retries nothing.
    pub const NONE: Self = Self { lock_timeout: false, lock_lost: false, conflict: false, unavailable: false };

    /// This set, with lock timeouts retried or not.
    #[must_use]
    pub const fn lock_timeout(mut self, on: bool) -> Self {
        self.lock_timeout = on;
        self
    }
}

impl Default for RetryPolicy {
    /// 10 attempts, 2 ms doubling to at most 100 ms; conflicts, lost locks and store outages.
    /// Lock timeouts are not retried by default: the invocation already waited the whole
    /// acquire timeout, and retrying would multiply that wait; opt in with
    /// [`RetryOn::ALL`].
    fn default() -> Self {
        Self {
            max_attempts: 10,
            base_backoff: Duration::from_millis(2),
            max_backoff: Duration::from_millis(100),
            retry_on: RetryOn { lock_timeout: false, ..RetryOn::ALL },
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub const fn never() -> Self {
        Self { max_attempts: 1, base_backoff: Duration::ZERO, max_backoff: Duration::ZERO, retry_on: RetryOn::ALL }
    }

    /// Sets the number of attempts.
    #[must_use]
    pub fn attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts.max(1);
        self
    }

    /// Sets the backoff: `base` before the second attempt, doubling up to `max`.
    #[must_use]
    pub fn backoff_between(mut self, base: Duration, max: Duration) -> Self {
        self.base_backoff = base;
        self.max_backoff = max.max(base);
        self
    }

    /// Sets which retryable errors to retry.
    #[must_use]
    pub fn retry_on(mut self, on: RetryOn) -> Self {
        self.retry_on = on;
        self
    }

    /// Whether this policy retries `error` (ignoring the attempt count): by the error's
    /// [`RetryClass`].
    pub fn retries(&self, error: &Error) -> bool {
        error.retry_class().is_some_and(|class| self.retries_class(class))
    }

    /// Whether this policy retries failures of `class` (ignoring the attempt count).
    pub fn retries_class(&self, class: RetryClass) -> bool {
        let on = &self.retry_on;
        match class {
            RetryClass::LockTimeout => on.lock_timeout,
            RetryClass::LockLost => on.lock_lost,
            RetryClass::Conflict => on.conflict,
            RetryClass::Unavailable => on.unavailable,
        }
    }

    /// The backoff after failed attempt number `attempt` (1-based): uniformly random in
    /// `[0, min(max, base * 2^(attempt-1))]`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.base_backoff.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let cap = exp.min(self.max_backoff);
        if cap.is_zero() {
            return cap;
        }
        cap.mul_f64(rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ids::{LockId, ModelId};

    #[test]
    fn only_retryable_errors_are_retried() {
        let p = RetryPolicy { retry_on: RetryOn::ALL, ..RetryPolicy::default() };
        assert!(!RetryPolicy::default().retry_on.lock_timeout, "timeouts are opt-in");
        let lock = LockId { model: ModelId::new("T", "k"), action: "a".into() };
        assert!(p.retries(&Error::LockTimeout { lock: lock.clone(), waited: Duration::ZERO }));
        assert!(p.retries(&Error::Conflict { model: ModelId::new("T", "k"), attempts: 1 }));
        assert!(p.retries(&Error::Store(crate::StoreError::Unavailable("down".into()))));
        assert!(!p.retries(&Error::Rejected { message: "no".into() }));
        assert!(!p.retries(&Error::Trapped { message: "boom".into() }));
        assert!(!p.retries(&Error::InvalidInput { reason: "bad".into() }));
        let strict = RetryPolicy { retry_on: RetryOn { lock_timeout: false, ..RetryOn::ALL }, ..p };
        assert!(!strict.retries(&Error::LockTimeout { lock, waited: Duration::ZERO }));
    }

    #[test]
    fn backoff_is_bounded_and_grows() {
        let p = RetryPolicy {
            base_backoff: Duration::from_millis(4),
            max_backoff: Duration::from_millis(50),
            ..RetryPolicy::default()
        };
        for attempt in 1..40 {
            assert!(p.backoff(attempt) <= Duration::from_millis(50));
        }
        assert!(p.backoff(1) <= Duration::from_millis(4));
        assert_eq!(RetryPolicy::never().backoff(3), Duration::ZERO);
    }
}
