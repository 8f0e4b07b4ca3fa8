//! Where a model lives in Redis. Every key of one model shares the hash tag `{Type:key}`, so a
//! model (its data, locks, fencing counter and version) sits in one Redis Cluster slot.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `<prefix>:{T:k}` | HASH | the scalar fields, one hash field each |
//! | `<prefix>:{T:k}:list:<field>` | LIST | one list field |
//! | `<prefix>:{T:k}:dict:<field>` | HASH | one dict field |
//! | `<prefix>:{T:k}:meta` | HASH | `fence` (last fencing token), `version` |
//! | `<prefix>:{T:k}:lock:<action>` | STRING, with a TTL | `<token>:<owner>` of the holder, then `:w` once someone waits |
//!
//! Releases are announced on the channel `<prefix>:released` with the lock key as message, and
//! only when someone waits (the lock value's `:w` suffix, set by a waiter that found the lock busy;
//! it expires with the lock), so uncontended commits publish nothing.

use crate::model::ids::ModelId;
use crate::model::value::FieldType;

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "wasmtx";

/// Builds the Redis keys of models under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLayout {
    prefix: String,
}

impl KeyLayout {
    /// A layout under `prefix` (no trailing colon).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into() }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The hash of scalar fields; also the common stem of the model's other keys.
    pub fn data(&self, id: &ModelId) -> String {
        format!("{}:{{{}:{}}}", self.prefix, id.model_type, id.key)
    }

    /// The key of a list or dict field; `None` for a scalar field (it lives in [`Self::data`]).
    pub fn collection(&self, id: &ModelId, field: &str, ty: FieldType) -> Option<String> {
        match ty {
            FieldType::Scalar(_) => None,
            FieldType::List(_) => Some(format!("{}:list:{field}", self.data(id))),
            FieldType::Dict(_) => Some(format!("{}:dict:{field}", self.data(id))),
        }
    }

    /// The model's metadata hash (fencing counter, version, waiter flags).
    pub fn meta(&self, id: &ModelId) -> String {
        format!("{}:meta", self.data(id))
    }

    /// The lock of one action on the model.
    pub fn lock(&self, id: &ModelId, action: &str) -> String {
        format!("{}:lock:{action}", self.data(id))
    }

    /// The Pub/Sub channel where releases are announced.
    pub fn released_channel(&self) -> String {
        format!("{}:released", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::value::ScalarKind;

    #[test]
    fn every_key_of_a_model_shares_its_hash_tag() {
        let keys = KeyLayout::new("wasmtx");
        let id = ModelId::new("Account", "alice");
        let all = [
            keys.data(&id),
            keys.meta(&id),
            keys.lock(&id, "transfer"),
            keys.collection(&id, "log", FieldType::List(ScalarKind::Str)).unwrap_or_default(),
            keys.collection(&id, "tags", FieldType::Dict(ScalarKind::Str)).unwrap_or_default(),
        ];
        for key in &all {
            assert!(key.starts_with("wasmtx:{Account:alice}"), "{key}");
        }
        assert_eq!(keys.collection(&id, "balance", FieldType::Scalar(ScalarKind::Int)), None);
    }
}
