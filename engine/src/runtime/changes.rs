//! Turning a field's writes into [`FieldChange`]s, two ways:
//! - [`diff`]: final value against the snapshot (lock and optimistic modes commit what the state
//!   became, computed as the cheapest change a store can apply);
//! - [`intent`]: the journal of ops (pipeline mode commits what the rule did, so that it
//!   composes with concurrent invocations).

use std::collections::BTreeMap;

use super::journal::{Journal, Op};
use crate::model::change::FieldChange;
use crate::model::value::{FieldValue, Scalar};

/// Appends the changes that turn `old` into `new` (nothing if they are equal).
pub(crate) fn diff(field: &str, old: &FieldValue, new: &FieldValue, out: &mut Vec<FieldChange>) {
    if old == new {
        return;
    }
    let field = || field.to_owned();
    match (old, new) {
        (FieldValue::List(old), FieldValue::List(new)) => out.push(list_diff(field(), old, new)),
        (FieldValue::Dict(old), FieldValue::Dict(new)) => dict_diff(field, old, new, out),
        (_, FieldValue::Scalar(value)) => out.push(FieldChange::Set { field: field(), value: value.clone() }),
        // A list or dict where the snapshot held another shape: write it whole.
        (_, FieldValue::List(items)) => out.push(replace_list(field(), items.clone())),
        (_, FieldValue::Dict(entries)) => {
            out.push(FieldChange::Clear { field: field() });
            if !entries.is_empty() {
                out.push(FieldChange::DictSet { field: field(), entries: to_entries(entries) });
            }
        }
    }
}

fn list_diff(field: String, old: &[Scalar], new: &[Scalar]) -> FieldChange {
    if new.is_empty() {
        FieldChange::Clear { field }
    } else if new.starts_with(old) {
        FieldChange::ListAppend { field, items: new[old.len()..].to_vec() }
    } else if old.starts_with(new) {
        FieldChange::ListTruncate { field, len: saturating_u32(new.len()) }
    } else {
        FieldChange::ListReplace { field, items: new.to_vec() }
    }
}

fn dict_diff(
    field: impl Fn() -> String,
    old: &BTreeMap<String, Scalar>,
    new: &BTreeMap<String, Scalar>,
    out: &mut Vec<FieldChange>,
) {
    if new.is_empty() {
        out.push(FieldChange::Clear { field: field() });
        return;
    }
    let removed: Vec<String> = old.keys().filter(|k| !new.contains_key(*k)).cloned().collect();
    if !removed.is_empty() {
        out.push(FieldChange::DictRemove { field: field(), keys: removed });
    }
    let set: Vec<(String, Scalar)> =
        new.iter().filter(|(k, v)| old.get(*k) != Some(*v)).map(|(k, v)| (k.clone(), v.clone())).collect();
    if !set.is_empty() {
        out.push(FieldChange::DictSet { field: field(), entries: set });
    }
}

/// Appends the changes the journal's ops stand for. `value` is the field's final value (what an
/// assigned scalar field commits).
pub(crate) fn intent(field: &str, journal: &Journal, value: &FieldValue, out: &mut Vec<FieldChange>) {
    let field = || field.to_owned();
    for op in journal.ops() {
        let change = match op {
            Op::Assign => match value {
                FieldValue::Scalar(value) => FieldChange::Set { field: field(), value: value.clone() },
                // Only scalar fields record `Assign`; anything else is a bug upstream, and
                // committing the whole value is still right.
                FieldValue::List(items) => replace_list(field(), items.clone()),
                FieldValue::Dict(_) => continue,
            },
            Op::Increment(0) => continue,
            &Op::Increment(delta) => FieldChange::Increment { field: field(), delta },
            Op::ListAppend(items) => FieldChange::ListAppend { field: field(), items: items.clone() },
            Op::ListInsert { index, item } => {
                FieldChange::ListInsert { field: field(), index: *index, item: item.clone() }
            }
            &Op::ListPop(index) => FieldChange::ListPop { field: field(), index },
            Op::ListRemove(item) => FieldChange::ListRemove { field: field(), item: item.clone() },
            Op::ListReplace(items) => replace_list(field(), items.clone()),
            Op::Clear => FieldChange::Clear { field: field() },
            Op::DictSet(entries) => FieldChange::DictSet { field: field(), entries: to_entries(entries) },
            Op::DictRemove(keys) => FieldChange::DictRemove { field: field(), keys: keys.iter().cloned().collect() },
        };
        out.push(change);
    }
}

/// A whole-list write; an empty list is a `Clear` (stores have no empty list to write).
fn replace_list(field: String, items: Vec<Scalar>) -> FieldChange {
    if items.is_empty() { FieldChange::Clear { field } } else { FieldChange::ListReplace { field, items } }
}

fn to_entries(map: &BTreeMap<String, Scalar>) -> Vec<(String, Scalar)> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Lengths go to the guest and into changes as `u32`; limits keep them far below `u32::MAX`.
pub(crate) fn saturating_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[i64]) -> FieldValue {
        FieldValue::List(items.iter().map(|&i| Scalar::Int(i)).collect())
    }

    fn dict(entries: &[(&str, i64)]) -> FieldValue {
        FieldValue::Dict(entries.iter().map(|&(k, v)| (k.to_owned(), Scalar::Int(v))).collect())
    }

    fn diffed(old: &FieldValue, new: &FieldValue) -> Vec<FieldChange> {
        let mut out = Vec::new();
        diff("f", old, new, &mut out);
        out
    }

    #[test]
    fn equal_values_give_no_change() {
        assert!(diffed(&list(&[1, 2]), &list(&[1, 2])).is_empty());
        assert!(diffed(&FieldValue::Scalar(Scalar::Float(0.0)), &FieldValue::Scalar(Scalar::Float(-0.0))).is_empty());
    }

    #[test]
    fn scalars_are_set() {
        let changes = diffed(&FieldValue::Scalar(1.into()), &FieldValue::Scalar(2.into()));
        assert_eq!(changes, [FieldChange::Set { field: "f".into(), value: 2.into() }]);
    }

    #[test]
    fn list_diffs_pick_the_cheapest_change() {
        let f = || "f".to_owned();
        assert_eq!(
            diffed(&list(&[1]), &list(&[1, 2, 3])),
            [FieldChange::ListAppend { field: f(), items: vec![2.into(), 3.into()] }]
        );
        assert_eq!(diffed(&list(&[]), &list(&[7])), [FieldChange::ListAppend { field: f(), items: vec![7.into()] }]);
        assert_eq!(diffed(&list(&[1, 2, 3]), &list(&[1])), [FieldChange::ListTruncate { field: f(), len: 1 }]);
        assert_eq!(diffed(&list(&[1, 2]), &list(&[])), [FieldChange::Clear { field: f() }]);
        assert_eq!(
            diffed(&list(&[1, 2]), &list(&[2, 1])),
            [FieldChange::ListReplace { field: f(), items: vec![2.into(), 1.into()] }]
        );
    }

    #[test]
    fn dict_diffs_remove_and_set_only_what_changed() {
        let f = || "f".to_owned();
        let changes = diffed(&dict(&[("a", 1), ("b", 2), ("c", 3)]), &dict(&[("a", 1), ("b", 20), ("d", 4)]));
        assert_eq!(
            changes,
            [
                FieldChange::DictRemove { field: f(), keys: vec!["c".into()] },
                FieldChange::DictSet { field: f(), entries: vec![("b".into(), 20.into()), ("d".into(), 4.into())] },
            ]
        );
        assert_eq!(diffed(&dict(&[("a", 1)]), &dict(&[])), [FieldChange::Clear { field: f() }]);
    }

    #[test]
    fn intent_follows_the_journal() {
        let f = || "f".to_owned();
        let mut j = Journal::default();
        j.push(Op::ListAppend(vec![1.into()]));
        j.push(Op::ListInsert { index: -1, item: 2.into() });
        j.push(Op::ListPop(Some(0)));
        j.push(Op::ListRemove(9.into()));
        let mut out = Vec::new();
        intent("f", &j, &list(&[]), &mut out);
        assert_eq!(
            out,
            [
                FieldChange::ListAppend { field: f(), items: vec![1.into()] },
                FieldChange::ListInsert { field: f(), index: -1, item: 2.into() },
                FieldChange::ListPop { field: f(), index: Some(0) },
                FieldChange::ListRemove { field: f(), item: 9.into() },
            ]
        );
    }

    #[test]
    fn intent_of_scalars_is_a_set_or_a_sum() {
        let mut assigned = Journal::default();
        assigned.push(Op::Increment(3));
        assigned.push(Op::Assign);
        let mut out = Vec::new();
        intent("f", &assigned, &FieldValue::Scalar(10.into()), &mut out);
        assert_eq!(out, [FieldChange::Set { field: "f".into(), value: 10.into() }]);

        let mut summed = Journal::default();
        summed.push(Op::Increment(3));
        summed.push(Op::Increment(-3));
        out.clear();
        intent("f", &summed, &FieldValue::Scalar(10.into()), &mut out);
        assert!(out.is_empty(), "a zero sum is no change: {out:?}");
    }
}
