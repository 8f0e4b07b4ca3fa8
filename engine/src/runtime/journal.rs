//! The per-field journal of a rule's writes: what pipeline mode commits as intent.
//!
//! The journal keeps only what can still matter once the run ends: ops before a whole-value
//! overwrite are dropped, and consecutive ops of one kind are merged as they are recorded, so a
//! rule appending in a loop leaves one `ListAppend`, not one per item.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::value::Scalar;

/// One successful write, as the rule expressed it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Op {
    /// A scalar field was assigned (`set`, `set-scalar`, `reset`): its final value is the intent.
    Assign,
    /// An int field was incremented by this much.
    Increment(i64),
    /// Items were appended to a list.
    ListAppend(Vec<Scalar>),
    /// An item was inserted before a Python-style index.
    ListInsert {
        /// The index as the rule gave it.
        index: i64,
        /// The item.
        item: Scalar,
    },
    /// An item was popped (`None`: the last one).
    ListPop(Option<i64>),
    /// The first item equal to this one was removed.
    ListRemove(Scalar),
    /// The whole list was replaced.
    ListReplace(Vec<Scalar>),
    /// The list or dict was emptied.
    Clear,
    /// Dict entries were set.
    DictSet(BTreeMap<String, Scalar>),
    /// Dict entries that existed were removed.
    DictRemove(BTreeSet<String>),
}

/// The ops of one field, compacted as they are recorded.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Journal {
    ops: Vec<Op>,
}

impl Journal {
    /// Records one successful write.
    pub(crate) fn push(&mut self, op: Op) {
        match (self.ops.last_mut(), op) {
            // A whole-value overwrite makes every earlier op of the field irrelevant.
            (_, op @ (Op::Assign | Op::Clear | Op::ListReplace(_))) => {
                self.ops.clear();
                self.ops.push(op);
            }
            // After an assignment the final value is committed as a `Set`: increments are in it.
            (Some(Op::Assign), Op::Increment(_)) => {}
            (Some(Op::Increment(sum)), Op::Increment(delta)) if sum.checked_add(delta).is_some() => {
                *sum += delta;
            }
            (Some(Op::ListAppend(items)), Op::ListAppend(more)) => items.extend(more),
            (Some(Op::DictSet(entries)), Op::DictSet(more)) => entries.extend(more),
            (Some(Op::DictRemove(keys)), Op::DictRemove(more)) => keys.extend(more),
            (_, op) => self.ops.push(op),
        }
    }

    /// The recorded ops, oldest first.
    pub(crate) fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Whether nothing was recorded.
    pub(crate) fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_ops_of_one_kind_merge() {
        let mut j = Journal::default();
        j.push(Op::ListAppend(vec![1.into()]));
        j.push(Op::ListAppend(vec![2.into(), 3.into()]));
        j.push(Op::ListPop(None));
        j.push(Op::ListAppend(vec![4.into()]));
        assert_eq!(
            j.ops(),
            [Op::ListAppend(vec![1.into(), 2.into(), 3.into()]), Op::ListPop(None), Op::ListAppend(vec![4.into()])]
        );
    }

    #[test]
    fn overwrites_drop_earlier_ops() {
        let mut j = Journal::default();
        j.push(Op::ListAppend(vec![1.into()]));
        j.push(Op::Clear);
        assert_eq!(j.ops(), [Op::Clear]);

        let mut j = Journal::default();
        j.push(Op::Increment(5));
        j.push(Op::Assign);
        j.push(Op::Increment(1));
        assert_eq!(j.ops(), [Op::Assign]);
    }

    #[test]
    fn increments_sum_without_overflowing() {
        let mut j = Journal::default();
        j.push(Op::Increment(i64::MAX));
        j.push(Op::Increment(1));
        j.push(Op::Increment(-1));
        assert_eq!(j.ops(), [Op::Increment(i64::MAX), Op::Increment(0)]);
    }
}
