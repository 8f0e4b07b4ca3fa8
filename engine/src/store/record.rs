//! Idempotency records: what a commit leaves behind so that one invocation never applies
//! twice, however often it is sent again.
//!
//! A commit that carries [`CommitRecords`] checks, in the same atomic step as its guard and its
//! writes, that none of its records exists yet, and writes them with its changes. Each record
//! lives beside the first model of the commit (request order, which is the lock order), so in
//! Redis it shares that model's hash tag and slot, and expires after the commit's retention.
//! A record is *committed* (it holds the model versions the commit left and the engine's
//! payload) or *aborted*: after a commit whose reply was lost, [`Store::resolve`] either finds
//! the committed record or marks that commit attempt's id as aborted, so that the attempt can
//! never apply later (a request still in flight in the network or in Redis' input buffer), and
//! the caller learns for certain whether it was written.
//!
//! [`Store::resolve`]: super::Store::resolve

use std::time::Duration;

use crate::model::ids::ModelId;

/// A committed idempotency record, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// Each model's version after the commit that wrote the record, in the commit's request
    /// (lock) order.
    pub versions: Vec<u64>,
    /// What the engine asked the store to keep with it (its encoding of the caller's outcome;
    /// opaque to the store).
    pub payload: String,
}

/// One invocation's record in a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordEntry<'a> {
    /// The invocation's idempotency key.
    pub key: &'a str,
    /// What to keep when the commit applies; `None` only checks that the key is not recorded
    /// yet (a group member whose run failed: it writes nothing, but must learn that it was
    /// committed before).
    pub payload: Option<&'a str>,
}

/// The idempotency records one commit checks, then writes with its changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitRecords<'a> {
    /// This commit attempt's id, unique per attempt (no spaces): an attempt that
    /// [`Store::resolve`](super::Store::resolve) declared aborted never applies.
    pub commit_id: &'a str,
    /// How long the records stay (at least one millisecond).
    pub retention: Duration,
    /// At most one entry per invocation in the commit; empty for a commit without records.
    pub entries: &'a [RecordEntry<'a>],
}

impl CommitRecords<'static> {
    /// No record: a plain commit (direct writes, tests).
    pub const NONE: CommitRecords<'static> = CommitRecords { commit_id: "", retention: Duration::ZERO, entries: &[] };
}

/// Where an invocation's record lives: the first model of its commit (lock order), and its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// The model the record is kept beside.
    pub anchor: &'a ModelId,
    /// The idempotency key.
    pub key: &'a str,
}

/// The longest idempotency key, in bytes.
pub const MAX_KEY_LEN: usize = 256;

/// Checks an idempotency key: 1 to [`MAX_KEY_LEN`] bytes, no whitespace or control characters.
///
/// # Errors
/// Why the key is refused.
pub fn validate_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("an idempotency key cannot be empty".into());
    }
    if key.len() > MAX_KEY_LEN {
        return Err(format!("an idempotency key is at most {MAX_KEY_LEN} bytes, this one has {}", key.len()));
    }
    if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("an idempotency key cannot contain whitespace or control characters".into());
    }
    Ok(())
}

/// The retention as whole milliseconds, at least one (Redis' `PX`).
pub(crate) fn retention_ms(retention: Duration) -> u64 {
    u64::try_from(retention.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::validate_key;

    #[test]
    fn keys_are_short_printable_words() {
        for good in ["a", "order-17", "550e8400-e29b-41d4-a716-446655440000", "é:{}%"] {
            assert!(validate_key(good).is_ok(), "{good:?}");
        }
        for bad in [String::new(), "a b".into(), "a\nb".into(), "x".repeat(257)] {
            assert!(validate_key(&bad).is_err(), "{bad:?}");
        }
    }
}
