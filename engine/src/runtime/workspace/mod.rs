//! A model's state as a rule sees it during one run: the snapshot plus the rule's own writes.
//!
//! Copy-on-write per field: reads fall back to the snapshot until the first write clones that
//! one field. Every write is type-checked against the schema and checked against the
//! [`RuleLimits`] *before* it happens, so a refused write leaves the field as it was. Successful
//! writes are also journaled (see `journal.rs`) for pipeline mode's intent changes.
//!
//! Pure Rust, no wasm: the host (`host.rs`) only converts WIT values and calls these methods.

mod dict;
mod list;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use super::changes;
use super::config::RuleLimits;
use super::journal::{Journal, Op};
use crate::error::AccessError;
use crate::model::change::{FieldChange, ModelSnapshot, ModelTarget};
use crate::model::ids::ModelId;
use crate::model::schema::ModelSchema;
use crate::model::value::{FieldType, FieldValue, Scalar, ScalarKind};

/// What a rule did to one model in one run: the state it left and the ops that got it there.
///
/// Returned by [`RuleRuntime::run`](super::RuleRuntime::run), one per declared model. Use
/// [`state_changes`](Self::state_changes) in lock and optimistic modes and
/// [`intent_changes`](Self::intent_changes) in pipeline mode.
#[derive(Debug, Clone)]
pub struct ModelWorkspace {
    id: ModelId,
    schema: Arc<ModelSchema>,
    /// Owned because a wasmtime store's data must be `'static`, and the engine only lends its
    /// snapshots; it is also what `state_changes` diffs against.
    base: ModelSnapshot,
    /// Written fields, by schema index; `None` until the first write.
    slots: Vec<Option<Slot>>,
    /// Written fields in the order of their first successful write: the order of the changes.
    order: Vec<usize>,
    limits: RuleLimits,
}

/// A field the rule wrote: its current value, its stored size and its journal.
#[derive(Debug, Clone)]
struct Slot {
    value: FieldValue,
    /// `value.stored_len()`, kept up to date so size limits cost O(1) per write.
    bytes: usize,
    journal: Journal,
}

impl ModelWorkspace {
    /// A workspace over `snapshot`, which must have one value per schema field.
    pub(crate) fn new(target: &ModelTarget, snapshot: ModelSnapshot, limits: RuleLimits) -> Self {
        let slots = (0..target.schema.len()).map(|_| None).collect();
        Self {
            id: target.id.clone(),
            schema: Arc::clone(&target.schema),
            base: snapshot,
            slots,
            order: Vec::new(),
            limits,
        }
    }

    /// The model.
    pub fn id(&self) -> &ModelId {
        &self.id
    }

    /// The model's schema.
    pub fn schema(&self) -> &ModelSchema {
        &self.schema
    }

    /// The field's final value (the snapshot's if the rule did not write it), or `None` if the
    /// schema has no such field.
    pub fn value(&self, field: &str) -> Option<&FieldValue> {
        self.schema.field_index(field).map(|i| self.current(i))
    }

    /// The changes that turn the snapshot into the final state, for lock and optimistic modes:
    /// only fields whose final value differs from the snapshot, in the order the rule first
    /// wrote them. Scalars are `Set`; a list that grew at its end is `ListAppend`, one that
    /// lost items at its end `ListTruncate`, an emptied one `Clear`, anything else
    /// `ListReplace`; a dict gives `DictRemove` and `DictSet` of what changed, or `Clear`.
    pub fn state_changes(&self) -> Vec<FieldChange> {
        let mut out = Vec::new();
        for (i, slot) in self.written() {
            changes::diff(self.field_name(i), &self.base.values[i], &slot.value, &mut out);
        }
        out
    }

    /// The changes as the rule's ops expressed them, for pipeline mode, where they apply to
    /// whatever the store holds at commit time. A scalar field assigned at any point is one
    /// `Set` of its final value; one only incremented is one `Increment` of the sum (none if it
    /// is zero; split in two only if the sum would overflow). List and dict ops give their own
    /// changes in order, with consecutive appends, dict sets and dict removals merged; a
    /// whole-value write or a clear drops the field's earlier ops (a whole list is
    /// `ListReplace`, a whole dict `Clear` then `DictSet`, an empty one `Clear`). A `dict-pop`
    /// of a missing key changes nothing. Fields come in the order the rule first wrote them.
    pub fn intent_changes(&self) -> Vec<FieldChange> {
        let mut out = Vec::new();
        for (i, slot) in self.written() {
            changes::intent(self.field_name(i), &slot.journal, &slot.value, &mut out);
        }
        out
    }

    /// Whether the final state differs from the snapshot, i.e. whether
    /// [`state_changes`](Self::state_changes) is not empty.
    pub fn is_changed(&self) -> bool {
        self.written().any(|(i, slot)| slot.value != self.base.values[i])
    }

    /// The state the rule left, as a snapshot at `version`: what the store holds once a commit
    /// of [`state_changes`](Self::state_changes) on this workspace's snapshot landed.
    pub(crate) fn final_snapshot(&self, version: u64) -> ModelSnapshot {
        ModelSnapshot { values: (0..self.base.values.len()).map(|i| self.current(i).clone()).collect(), version }
    }

    fn written(&self) -> impl Iterator<Item = (usize, &Slot)> {
        self.order.iter().filter_map(|&i| self.slots[i].as_ref().map(|s| (i, s)))
    }

    fn field_name(&self, index: usize) -> &str {
        self.schema.field_at(index).map_or("", |(name, _)| name)
    }

    /// The field's schema index and type.
    fn resolve(&self, field: &str) -> Result<(usize, FieldType), AccessError> {
        self.schema
            .field_index(field)
            .and_then(|i| self.schema.field_at(i).map(|(_, def)| (i, def.ty)))
            .ok_or_else(|| AccessError::UnknownField { field: field.to_owned() })
    }

    /// The field's current value: the rule's own write if any, else the snapshot's.
    fn current(&self, index: usize) -> &FieldValue {
        match &self.slots[index] {
            Some(slot) => &slot.value,
            None => &self.base.values[index],
        }
    }

    /// The field's slot, cloning the snapshot's value on first use. Call it only once the
    /// write is known to succeed, so a refused write never creates a slot.
    fn slot_mut(&mut self, index: usize) -> &mut Slot {
        let base = &self.base.values[index];
        self.slots[index].get_or_insert_with(|| Slot {
            bytes: base.stored_len(),
            value: base.clone(),
            journal: Journal::default(),
        })
    }

    /// Records a successful write in the field's journal.
    fn record(&mut self, index: usize, op: Op) {
        let slot = self.slot_mut(index);
        let first = slot.journal.is_empty();
        slot.journal.push(op);
        if first && !self.order.contains(&index) {
            self.order.push(index);
        }
    }

    fn bytes(&self, index: usize) -> usize {
        match &self.slots[index] {
            Some(slot) => slot.bytes,
            None => self.base.values[index].stored_len(),
        }
    }

    /// Refuses a write that would leave the field over the value-size limit.
    fn check_bytes(&self, field: &str, bytes: usize) -> Result<(), AccessError> {
        if bytes > self.limits.max_value_bytes {
            return Err(limit(format!(
                "`{field}` would take {bytes} bytes, over the limit of {} bytes per field",
                self.limits.max_value_bytes
            )));
        }
        Ok(())
    }

    // ----- any field -----

    /// The whole value of a field.
    pub(crate) fn get(&self, field: &str) -> Result<&FieldValue, AccessError> {
        let (i, _) = self.resolve(field)?;
        Ok(self.current(i))
    }

    /// Replaces the whole value of a field (scalar assignment, list or dict replacement).
    pub(crate) fn set(&mut self, field: &str, value: FieldValue) -> Result<(), AccessError> {
        let (i, ty) = self.resolve(field)?;
        check_value(field, ty, &value)?;
        self.replace(i, field, value)
    }

    /// Resets a field to its schema default.
    pub(crate) fn reset(&mut self, field: &str) -> Result<(), AccessError> {
        let (i, _) = self.resolve(field)?;
        let default = self.schema.field_at(i).map(|(_, def)| def.default.clone());
        // The schema just resolved this index, so the default is there.
        let default = default.ok_or_else(|| AccessError::UnknownField { field: field.to_owned() })?;
        self.replace(i, field, default)
    }

    /// Overwrites a field with a type-checked value, with the length and size limits.
    fn replace(&mut self, i: usize, field: &str, value: FieldValue) -> Result<(), AccessError> {
        match &value {
            FieldValue::List(items) => self.check_list_len(field, items.len())?,
            FieldValue::Dict(entries) => self.check_dict_len(field, entries.len())?,
            FieldValue::Scalar(_) => {}
        }
        let bytes = value.stored_len();
        self.check_bytes(field, bytes)?;
        let ops = match &value {
            FieldValue::Scalar(_) => vec![Op::Assign],
            FieldValue::List(items) => vec![Op::ListReplace(items.clone())],
            FieldValue::Dict(entries) if entries.is_empty() => vec![Op::Clear],
            FieldValue::Dict(entries) => vec![Op::Clear, Op::DictSet(entries.clone())],
        };
        let slot = self.slot_mut(i);
        slot.value = value;
        slot.bytes = bytes;
        for op in ops {
            self.record(i, op);
        }
        Ok(())
    }

    // ----- scalar fields -----

    /// The value of a scalar field.
    pub(crate) fn get_scalar(&self, field: &str) -> Result<&Scalar, AccessError> {
        let (i, _) = self.scalar_field(field)?;
        match self.current(i) {
            FieldValue::Scalar(s) => Ok(s),
            other => Err(corrupt(field, other)),
        }
    }

    /// Assigns a scalar field.
    pub(crate) fn set_scalar(&mut self, field: &str, value: Scalar) -> Result<(), AccessError> {
        let (i, kind) = self.scalar_field(field)?;
        check_item(field, kind, &value)?;
        self.replace(i, field, FieldValue::Scalar(value))
    }

    /// Adds `delta` to an int field and returns the new value.
    pub(crate) fn increment(&mut self, field: &str, delta: i64) -> Result<i64, AccessError> {
        let (i, kind) = self.scalar_field(field)?;
        if kind != ScalarKind::Int {
            return Err(mismatch(field, "int field", format!("{kind} field")));
        }
        let old = match self.current(i) {
            FieldValue::Scalar(Scalar::Int(v)) => *v,
            other => return Err(corrupt(field, other)),
        };
        let new = old
            .checked_add(delta)
            .ok_or_else(|| limit(format!("incrementing `{field}` ({old}) by {delta} overflows a 64-bit integer")))?;
        self.slot_mut(i).value = FieldValue::Scalar(Scalar::Int(new));
        self.record(i, Op::Increment(delta));
        Ok(new)
    }

    fn scalar_field(&self, field: &str) -> Result<(usize, ScalarKind), AccessError> {
        match self.resolve(field)? {
            (i, FieldType::Scalar(kind)) => Ok((i, kind)),
            (_, ty) => Err(mismatch(field, "scalar field", format!("{ty} field"))),
        }
    }
}

/// Checks a whole value against a field type.
fn check_value(field: &str, ty: FieldType, value: &FieldValue) -> Result<(), AccessError> {
    match (ty, value) {
        (FieldType::Scalar(kind), FieldValue::Scalar(s)) => check_item(field, kind, s),
        (FieldType::List(kind), FieldValue::List(items)) => items.iter().try_for_each(|s| check_item(field, kind, s)),
        (FieldType::Dict(kind), FieldValue::Dict(map)) => map.values().try_for_each(|s| check_item(field, kind, s)),
        (ty, value) => Err(mismatch(field, ty.to_string(), describe(value))),
    }
}

/// Checks one scalar (a scalar field's value, a list item or a dict value) against its kind.
fn check_item(field: &str, kind: ScalarKind, item: &Scalar) -> Result<(), AccessError> {
    if item.kind() != kind {
        return Err(mismatch(field, kind.name(), item.kind().name()));
    }
    item.check_finite(field)
}

/// A value's shape, in words, for `type-mismatch`.
fn describe(value: &FieldValue) -> String {
    match value {
        FieldValue::Scalar(s) => format!("{} value", s.kind()),
        FieldValue::List(_) => "list value".to_owned(),
        FieldValue::Dict(_) => "dict value".to_owned(),
    }
}

fn mismatch(field: &str, expected: impl Into<String>, found: impl Into<String>) -> AccessError {
    AccessError::TypeMismatch { field: field.to_owned(), expected: expected.into(), found: found.into() }
}

fn limit(limit: String) -> AccessError {
    AccessError::LimitExceeded { limit }
}

/// A snapshot value whose shape does not match the schema. The runtime checks snapshots before
/// a run, so this is defensive: the rule gets an error, never a panic.
fn corrupt(field: &str, found: &FieldValue) -> AccessError {
    mismatch(field, "the schema's type (the stored value has another shape)", describe(found))
}
