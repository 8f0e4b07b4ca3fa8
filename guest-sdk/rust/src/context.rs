//! The invocation context.

use std::fmt;

use crate::bindings::wasmtx::rule::models;
use crate::bindings::wasmtx::rule::types::{Mode, ModelRef};
use crate::{AccessError, Model};

/// Everything a rule may know about its invocation besides the input, and the door to the
/// models the caller declared.
///
/// The context is the rule's only source of time and identity: a rule imports no clock and no
/// randomness, so running it again on the same state, input and context gives the same result.
#[derive(Debug, Clone)]
pub struct Context {
    inner: crate::bindings::wasmtx::rule::types::Context,
}

impl Context {
    pub(crate) fn from_wit(inner: crate::bindings::wasmtx::rule::types::Context) -> Self {
        Self { inner }
    }

    /// A unique id for this invocation, for logs. It stays the same on every run of the
    /// invocation: when the rule runs again on fresh state under the same locks, and on every
    /// attempt the engine makes after a lock timeout, a lost lock or a conflict (see
    /// [`Context::attempt`]). Unless the caller gave its own idempotency key, it is also the key
    /// the engine records the commit under.
    pub fn invocation_id(&self) -> &str {
        &self.inner.invocation_id
    }

    /// The time the invocation started, in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        self.inner.now_ms
    }

    /// The UTC calendar date of [`Context::now_ms`]; its `Display` is `YYYY-MM-DD`.
    pub fn utc_date(&self) -> UtcDate {
        UtcDate::from_unix_ms(self.inner.now_ms)
    }

    /// The action name the invocation runs under (the lock name in lock mode).
    pub fn action(&self) -> &str {
        &self.inner.action
    }

    /// The mode the engine runs this invocation in.
    pub fn mode(&self) -> Mode {
        self.inner.mode
    }

    /// 1 for the first run; more when the engine re-runs the rule after a conflict.
    pub fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// The models the invocation declared, in the caller's order.
    pub fn models(&self) -> &[ModelRef] {
        &self.inner.models
    }

    /// Opens the declared model at `index` in [`Context::models`].
    ///
    /// # Errors
    ///
    /// [`AccessError::Denied`] if the invocation declared fewer models.
    pub fn model(&self, index: u32) -> Result<Model, AccessError> {
        models::open(index).map(Model::from_wit)
    }

    /// Opens a declared model by type and key.
    ///
    /// # Errors
    ///
    /// [`AccessError::Denied`] if the invocation did not declare that model: a rule can only
    /// touch what its caller locked or loaded for it.
    pub fn open(&self, model_type: &str, key: &str) -> Result<Model, AccessError> {
        models::open_by_key(model_type, key).map(Model::from_wit)
    }
}

/// A proleptic Gregorian calendar date in UTC, computed without any clock import.
///
/// Its `Display` is ISO 8601, `YYYY-MM-DD` (`2024-03-01`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UtcDate {
    /// The year (astronomical numbering: year 0 is 1 BC).
    pub year: i64,
    /// The month, 1 to 12.
    pub month: u8,
    /// The day of the month, 1 to 31.
    pub day: u8,
}

impl UtcDate {
    /// The UTC date of an instant given in milliseconds since the Unix epoch.
    pub fn from_unix_ms(ms: i64) -> Self {
        Self::from_days(ms.div_euclid(86_400_000))
    }

    /// The date `days` days after 1970-01-01 (Howard Hinnant's `civil_from_days`).
    pub fn from_days(days: i64) -> Self {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097); // day of era, [0, 146096]
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1, [0, 365]
        let mp = (5 * doy + 2) / 153; // month from March, [0, 11]
        let day = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
        let month = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
        let year = yoe + era * 400 + i64::from(month <= 2);
        // Both are in range by construction.
        Self { year, month: u8::try_from(month).unwrap_or(1), day: u8::try_from(day).unwrap_or(1) }
    }
}

impl fmt::Display for UtcDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

#[cfg(test)]
mod tests {
    use super::UtcDate;

    #[test]
    fn dates() {
        assert_eq!(UtcDate::from_unix_ms(0).to_string(), "1970-01-01");
        assert_eq!(UtcDate::from_unix_ms(86_399_999).to_string(), "1970-01-01");
        assert_eq!(UtcDate::from_unix_ms(-1).to_string(), "1969-12-31");
        // 2000-02-29T12:00:00Z, a leap day in a century leap year.
        assert_eq!(UtcDate::from_unix_ms(951_825_600_000).to_string(), "2000-02-29");
        // 2024-03-01T00:00:00Z.
        assert_eq!(UtcDate::from_unix_ms(1_709_251_200_000).to_string(), "2024-03-01");
        // 2100-03-01: 2100 is not a leap year.
        assert_eq!(UtcDate::from_days(47_541).to_string(), "2100-03-01");
        assert_eq!(UtcDate::from_days(47_540).to_string(), "2100-02-28");
        let extreme = UtcDate::from_unix_ms(i64::MIN);
        assert!(extreme.year < 0);
        let extreme = UtcDate::from_unix_ms(i64::MAX);
        assert!(extreme.year > 0);
    }
}
