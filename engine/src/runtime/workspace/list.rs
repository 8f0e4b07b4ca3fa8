//! List field operations, with Python's index semantics.

use super::{ModelWorkspace, check_item, corrupt, limit, mismatch};
use crate::error::AccessError;
use crate::model::value::{FieldType, FieldValue, Scalar, ScalarKind};
use crate::runtime::changes::saturating_u32;
use crate::runtime::journal::Op;

impl ModelWorkspace {
    /// The items of a list field.
    pub(crate) fn list(&self, field: &str) -> Result<&[Scalar], AccessError> {
        let (i, _) = self.list_field(field)?;
        self.items(i, field)
    }

    /// Appends one item.
    pub(crate) fn list_append(&mut self, field: &str, item: Scalar) -> Result<(), AccessError> {
        self.list_extend(field, vec![item])
    }

    /// Appends items, in order.
    pub(crate) fn list_extend(&mut self, field: &str, items: Vec<Scalar>) -> Result<(), AccessError> {
        let (i, kind) = self.list_field(field)?;
        items.iter().try_for_each(|item| check_item(field, kind, item))?;
        let len = self.items(i, field)?.len();
        self.check_list_len(field, len.saturating_add(items.len()))?;
        let bytes = self.bytes(i) + items.iter().map(Scalar::stored_len).sum::<usize>();
        self.check_bytes(field, bytes)?;
        if items.is_empty() {
            return Ok(());
        }
        let slot = self.slot_mut(i);
        if let FieldValue::List(list) = &mut slot.value {
            list.extend_from_slice(&items);
        }
        slot.bytes = bytes;
        self.record(i, Op::ListAppend(items));
        Ok(())
    }

    /// Inserts an item before `index` (negative counts from the end; out of range clamps).
    pub(crate) fn list_insert(&mut self, field: &str, index: i64, item: Scalar) -> Result<(), AccessError> {
        let (i, kind) = self.list_field(field)?;
        check_item(field, kind, &item)?;
        let len = self.items(i, field)?.len();
        self.check_list_len(field, len.saturating_add(1))?;
        let bytes = self.bytes(i) + item.stored_len();
        self.check_bytes(field, bytes)?;
        let at = insert_position(index, len);
        let slot = self.slot_mut(i);
        if let FieldValue::List(list) = &mut slot.value {
            list.insert(at, item.clone());
        }
        slot.bytes = bytes;
        self.record(i, Op::ListInsert { index, item });
        Ok(())
    }

    /// Removes and returns the item at `index`, or the last one for `None`.
    pub(crate) fn list_pop(&mut self, field: &str, index: Option<i64>) -> Result<Scalar, AccessError> {
        let (i, _) = self.list_field(field)?;
        let len = self.items(i, field)?.len();
        let given = index.unwrap_or(-1);
        let at = resolve_index(given, len).ok_or_else(|| out_of_range(field, given, len))?;
        let slot = self.slot_mut(i);
        let FieldValue::List(list) = &mut slot.value else {
            return Err(out_of_range(field, given, len));
        };
        let item = list.remove(at);
        slot.bytes = slot.bytes.saturating_sub(item.stored_len());
        self.record(i, Op::ListPop(index));
        Ok(item)
    }

    /// Removes the first item equal to `item`.
    pub(crate) fn list_remove(&mut self, field: &str, item: Scalar) -> Result<(), AccessError> {
        let (i, kind) = self.list_field(field)?;
        check_item(field, kind, &item)?;
        let at = self
            .items(i, field)?
            .iter()
            .position(|x| *x == item)
            .ok_or_else(|| AccessError::NotFound { what: format!("{item} in list `{field}`") })?;
        let slot = self.slot_mut(i);
        if let FieldValue::List(list) = &mut slot.value {
            list.remove(at);
        }
        slot.bytes = slot.bytes.saturating_sub(item.stored_len());
        self.record(i, Op::ListRemove(item));
        Ok(())
    }

    /// Removes every item.
    pub(crate) fn list_clear(&mut self, field: &str) -> Result<(), AccessError> {
        let (i, _) = self.list_field(field)?;
        self.items(i, field)?;
        let slot = self.slot_mut(i);
        slot.value = FieldValue::List(Vec::new());
        slot.bytes = 0;
        self.record(i, Op::Clear);
        Ok(())
    }

    /// The number of items.
    pub(crate) fn list_len(&self, field: &str) -> Result<u32, AccessError> {
        self.list(field).map(|items| saturating_u32(items.len()))
    }

    /// The item at `index` (negative counts from the end).
    pub(crate) fn list_get(&self, field: &str, index: i64) -> Result<&Scalar, AccessError> {
        let items = self.list(field)?;
        resolve_index(index, items.len()).map(|at| &items[at]).ok_or_else(|| out_of_range(field, index, items.len()))
    }

    pub(super) fn check_list_len(&self, field: &str, len: usize) -> Result<(), AccessError> {
        if len > self.limits.max_list_len {
            return Err(limit(format!(
                "list `{field}` would hold {len} items, over the limit of {}",
                self.limits.max_list_len
            )));
        }
        Ok(())
    }

    fn list_field(&self, field: &str) -> Result<(usize, ScalarKind), AccessError> {
        match self.resolve(field)? {
            (i, FieldType::List(kind)) => Ok((i, kind)),
            (_, ty) => Err(mismatch(field, "list field", format!("{ty} field"))),
        }
    }

    fn items(&self, index: usize, field: &str) -> Result<&[Scalar], AccessError> {
        match self.current(index) {
            FieldValue::List(items) => Ok(items),
            other => Err(corrupt(field, other)),
        }
    }
}

/// A Python index into a list of `len` items: negative counts from the end.
fn resolve_index(index: i64, len: usize) -> Option<usize> {
    let at = if index < 0 { index.checked_add(i64::try_from(len).ok()?)? } else { index };
    usize::try_from(at).ok().filter(|&at| at < len)
}

/// Where Python's `list.insert(index, x)` puts `x`: negative counts from the end, and indices
/// outside the list clamp to its ends.
pub(super) fn insert_position(index: i64, len: usize) -> usize {
    let len_i = i64::try_from(len).unwrap_or(i64::MAX);
    let at = if index < 0 { index.saturating_add(len_i).max(0) } else { index.min(len_i) };
    usize::try_from(at).unwrap_or(len)
}

fn out_of_range(field: &str, index: i64, len: usize) -> AccessError {
    AccessError::IndexOutOfRange { field: field.to_owned(), index, len: saturating_u32(len) }
}
