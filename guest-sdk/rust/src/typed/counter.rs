//! [`Counter`]: an `int` field whose changes are saved as increments.

use std::cmp::Ordering;
use std::fmt;
use std::ops::{AddAssign, Deref, SubAssign};

use super::field::{FieldWrite, ModelField};
use crate::AccessError;
use crate::bindings::wasmtx::rule::types::{FieldType, Scalar, ScalarKind, Value};

/// An `int` field that saves what the rule added, not what it ended at.
///
/// A plain `i64` field that changed is saved as an assignment (`set`): in pipeline mode, where
/// invocations run without locks, the last writer wins and concurrent additions are lost. A
/// `Counter` is saved as one `increment` of the sum of what the rule added, which the engine
/// applies as `HINCRBY` in pipeline mode, so concurrent invocations all count. In lock and
/// optimistic modes both commit the same final value.
///
/// ```
/// # use wasmtx_guest::Counter;
/// let mut score = Counter::new(10); // as loaded
/// score += 5;
/// score -= 2;
/// assert_eq!(score, 13);
/// assert!(score > 12);
/// let doubled = *score * 2; // reads deref to the `i64`
/// assert_eq!(doubled, 26);
/// ```
///
/// [`Counter::set`] assigns instead; from then on the counter is saved as an assignment.
///
/// An addition that would overflow leaves the value unchanged and makes the next
/// [`Tracked::save`](crate::Tracked::save) fail with [`AccessError::LimitExceeded`] (the host's
/// own overflow error, as [`Model::increment`](crate::Model::increment) gives): a rule never
/// traps on a counter and never commits a wrapped value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Counter {
    value: i64,
    assigned: bool,
    overflow: Option<Overflow>,
}

/// An addition that did not fit, kept for the save to report.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Overflow {
    /// Adding this delta overflowed: the save sends it, and the host refuses it.
    Delta(i64),
    /// Subtracting `i64::MIN`, which no increment can express.
    SubtractMin,
}

impl Counter {
    /// A counter holding `value`, as if loaded from the model (nothing to save yet).
    pub const fn new(value: i64) -> Self {
        Self { value, assigned: false, overflow: None }
    }

    /// The current value.
    pub const fn get(&self) -> i64 {
        self.value
    }

    /// Adds `delta` (negative to subtract) and returns the new value. On overflow the value
    /// stays as it was and the next save fails (see the type's documentation).
    pub fn add(&mut self, delta: i64) -> i64 {
        match self.value.checked_add(delta) {
            Some(value) => self.value = value,
            None => {
                self.overflow.get_or_insert(Overflow::Delta(delta));
            }
        }
        self.value
    }

    /// Assigns `value`: the counter is saved as an assignment from now on (last writer wins in
    /// pipeline mode).
    pub fn set(&mut self, value: i64) {
        self.value = value;
        self.assigned = true;
        self.overflow = None;
    }

    /// Whether an addition overflowed since the counter was loaded or last assigned.
    pub fn overflowed(&self) -> bool {
        self.overflow.is_some()
    }
}

impl ModelField for Counter {
    const FIELD_TYPE: FieldType = FieldType::Scalar(ScalarKind::Int);

    fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::Scalar(Scalar::Int(v)) => Some(Self::new(v)),
            _ => None,
        }
    }

    fn writes(old: &Self, new: &Self, emit: &mut dyn FnMut(FieldWrite)) {
        if old == new {
            return;
        }
        let set = FieldWrite::Set(Value::Scalar(Scalar::Int(new.value)));
        if new.assigned && (!old.assigned || old.value != new.value) {
            emit(set);
        } else if new.value != old.value {
            emit(new.value.checked_sub(old.value).map_or(set, FieldWrite::Increment));
        }
        if new.overflow != old.overflow {
            match new.overflow {
                Some(Overflow::Delta(delta)) => emit(FieldWrite::Increment(delta)),
                Some(Overflow::SubtractMin) => emit(FieldWrite::Fail(AccessError::LimitExceeded(format!(
                    "subtracting {} from a counter overflows a 64-bit integer",
                    i64::MIN
                )))),
                None => {}
            }
        }
    }
}

impl AddAssign<i64> for Counter {
    fn add_assign(&mut self, delta: i64) {
        self.add(delta);
    }
}

impl SubAssign<i64> for Counter {
    fn sub_assign(&mut self, delta: i64) {
        match delta.checked_neg() {
            Some(delta) => {
                self.add(delta);
            }
            None => {
                self.overflow.get_or_insert(Overflow::SubtractMin);
            }
        }
    }
}

impl Deref for Counter {
    type Target = i64;

    fn deref(&self) -> &i64 {
        &self.value
    }
}

impl PartialEq<i64> for Counter {
    fn eq(&self, other: &i64) -> bool {
        self.value == *other
    }
}

impl PartialOrd<i64> for Counter {
    fn partial_cmp(&self, other: &i64) -> Option<Ordering> {
        Some(self.value.cmp(other))
    }
}

impl From<i64> for Counter {
    fn from(value: i64) -> Self {
        Self::new(value)
    }
}

impl From<Counter> for i64 {
    fn from(counter: Counter) -> Self {
        counter.value
    }
}

impl fmt::Display for Counter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.value, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(old: &Counter, new: &Counter) -> Vec<FieldWrite> {
        let mut out = Vec::new();
        Counter::writes(old, new, &mut |w| out.push(w));
        out
    }

    #[test]
    fn additions_are_saved_as_one_increment() {
        let old = Counter::new(10);
        let mut new = old.clone();
        assert_eq!(plan(&old, &new), []);
        new += 5;
        new -= 2;
        assert_eq!(new, 13);
        assert_eq!(plan(&old, &new), [FieldWrite::Increment(3)]);
        new -= 3;
        assert_eq!(plan(&old, &new), [], "back where it was: nothing to write");
    }

    #[test]
    fn an_assignment_is_saved_as_a_set() {
        let old = Counter::new(10);
        let mut new = old.clone();
        new.set(10);
        assert_eq!(plan(&old, &new), [FieldWrite::Set(Value::Scalar(Scalar::Int(10)))]);
        let saved = new.clone();
        assert_eq!(plan(&saved, &new), [], "saved already");
        new += 1;
        assert_eq!(plan(&saved, &new), [FieldWrite::Set(Value::Scalar(Scalar::Int(11)))]);
    }

    #[test]
    fn an_overflow_keeps_the_value_and_fails_the_save_through_the_host() {
        let old = Counter::new(i64::MAX - 1);
        let mut new = old.clone();
        new += 1;
        new += 5;
        new += 7;
        assert_eq!(new, i64::MAX);
        assert!(new.overflowed());
        assert_eq!(plan(&old, &new), [FieldWrite::Increment(1), FieldWrite::Increment(5)]);
        let mut min = Counter::new(0);
        min -= i64::MIN;
        assert!(matches!(plan(&Counter::new(0), &min)[..], [FieldWrite::Fail(AccessError::LimitExceeded(_))]));
        min.set(3);
        assert!(!min.overflowed());
    }

    #[test]
    fn reads_and_comparisons() {
        let c = Counter::new(4);
        assert!(c < 5 && c > 3 && c == 4);
        assert_eq!(*c + 1, 5);
        assert_eq!(c.to_string(), "4");
        assert_eq!(i64::from(c), 4);
    }
}
