//! Dict field operations.

use std::collections::{BTreeMap, BTreeSet};

use super::{ModelWorkspace, check_item, corrupt, limit, mismatch};
use crate::error::AccessError;
use crate::model::value::{FieldType, FieldValue, Scalar, ScalarKind};
use crate::runtime::changes::saturating_u32;
use crate::runtime::journal::Op;

impl ModelWorkspace {
    /// The value under `key`, if any.
    pub(crate) fn dict_get(&self, field: &str, key: &str) -> Result<Option<&Scalar>, AccessError> {
        Ok(self.entries_of(field)?.get(key))
    }

    /// Sets `key` to `value`.
    pub(crate) fn dict_set(&mut self, field: &str, key: String, value: Scalar) -> Result<(), AccessError> {
        self.dict_update(field, vec![(key, value)])
    }

    /// Sets several keys at once; later duplicates win, as in Python's `dict.update`.
    pub(crate) fn dict_update(&mut self, field: &str, entries: Vec<(String, Scalar)>) -> Result<(), AccessError> {
        let (i, kind) = self.dict_field(field)?;
        entries.iter().try_for_each(|(_, value)| check_item(field, kind, value))?;
        let entries: BTreeMap<String, Scalar> = entries.into_iter().collect();
        let current = self.entries(i, field)?;
        let mut len = current.len();
        let mut bytes = self.bytes(i);
        for (key, value) in &entries {
            match current.get(key) {
                Some(old) => bytes = bytes.saturating_sub(old.stored_len()) + value.stored_len(),
                None => {
                    len += 1;
                    bytes += key.len() + value.stored_len();
                }
            }
        }
        self.check_dict_len(field, len)?;
        self.check_bytes(field, bytes)?;
        if entries.is_empty() {
            return Ok(());
        }
        let slot = self.slot_mut(i);
        if let FieldValue::Dict(map) = &mut slot.value {
            map.extend(entries.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        slot.bytes = bytes;
        self.record(i, Op::DictSet(entries));
        Ok(())
    }

    /// Removes `key` and returns its value; `None` (and no change) if it was not there.
    pub(crate) fn dict_pop(&mut self, field: &str, key: &str) -> Result<Option<Scalar>, AccessError> {
        let (i, _) = self.dict_field(field)?;
        if !self.entries(i, field)?.contains_key(key) {
            return Ok(None);
        }
        let slot = self.slot_mut(i);
        let FieldValue::Dict(map) = &mut slot.value else {
            return Ok(None);
        };
        let value = map.remove(key);
        if let Some(value) = &value {
            slot.bytes = slot.bytes.saturating_sub(key.len() + value.stored_len());
        }
        self.record(i, Op::DictRemove(BTreeSet::from([key.to_owned()])));
        Ok(value)
    }

    /// Removes every entry.
    pub(crate) fn dict_clear(&mut self, field: &str) -> Result<(), AccessError> {
        let (i, _) = self.dict_field(field)?;
        self.entries(i, field)?;
        let slot = self.slot_mut(i);
        slot.value = FieldValue::Dict(BTreeMap::new());
        slot.bytes = 0;
        self.record(i, Op::Clear);
        Ok(())
    }

    /// The keys, sorted.
    pub(crate) fn dict_keys(&self, field: &str) -> Result<Vec<String>, AccessError> {
        Ok(self.entries_of(field)?.keys().cloned().collect())
    }

    /// The number of entries.
    pub(crate) fn dict_len(&self, field: &str) -> Result<u32, AccessError> {
        Ok(saturating_u32(self.entries_of(field)?.len()))
    }

    pub(super) fn check_dict_len(&self, field: &str, len: usize) -> Result<(), AccessError> {
        if len > self.limits.max_dict_len {
            return Err(limit(format!(
                "dict `{field}` would hold {len} entries, over the limit of {}",
                self.limits.max_dict_len
            )));
        }
        Ok(())
    }

    fn entries_of(&self, field: &str) -> Result<&BTreeMap<String, Scalar>, AccessError> {
        let (i, _) = self.dict_field(field)?;
        self.entries(i, field)
    }

    fn dict_field(&self, field: &str) -> Result<(usize, ScalarKind), AccessError> {
        match self.resolve(field)? {
            (i, FieldType::Dict(kind)) => Ok((i, kind)),
            (_, ty) => Err(mismatch(field, "dict field", format!("{ty} field"))),
        }
    }

    fn entries(&self, index: usize, field: &str) -> Result<&BTreeMap<String, Scalar>, AccessError> {
        match self.current(index) {
            FieldValue::Dict(map) => Ok(map),
            other => Err(corrupt(field, other)),
        }
    }
}
