//! Where the registry lives in Redis: every key under the model store's prefix, with the hash
//! tag `{registry}`, so the whole registry sits in one Redis Cluster slot and each operation
//! is one script over its keys.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `<prefix>:{registry}:rule:<name>` (name escaped as in the model layout) | HASH | `next` (highest version number given), `active` (active version), `v:<n>` (version record, JSON), `d:<digest>` (version of these bytes) |
//! | `<prefix>:{registry}:active` | HASH | rule name → active version record (JSON) |
//! | `<prefix>:{registry}:wasm:<digest>` | STRING | the uploaded bytes |
//! | `<prefix>:{registry}:refs` | HASH | digest → number of versions with these bytes |
//! | `<prefix>:{registry}:schemas` | HASH | model type → schema record (JSON: `revision`, `defined_at_ms`, `schema`) |
//! | `<prefix>:{registry}:epoch` | STRING | bumped by each activation, rule deletion and schema change |
//! | `<prefix>:{registry}:audit` | STREAM | the audit trail ([`crate::registry::audit`]), capped |
//!
//! Each epoch bump is published on the channel `<prefix>:{registry}:changed`.

/// Builds the registry's Redis keys under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryKeys {
    stem: String,
}

impl RegistryKeys {
    /// The keys under `prefix` (the model store's prefix, no trailing colon).
    pub fn new(prefix: &str) -> Self {
        Self { stem: format!("{prefix}:{{registry}}") }
    }

    /// The hash of one rule's versions (the name [escaped](crate::store::redis::keys::escape)
    /// as model names are).
    pub fn rule(&self, name: &str) -> String {
        format!("{}:rule:{}", self.stem, crate::store::redis::keys::escape(name))
    }

    /// The hash of every rule's active version.
    pub fn active(&self) -> String {
        format!("{}:active", self.stem)
    }

    /// The bytes with this digest.
    pub fn wasm(&self, digest: &str) -> String {
        format!("{}:wasm:{digest}", self.stem)
    }

    /// The reference counts of stored bytes.
    pub fn refs(&self) -> String {
        format!("{}:refs", self.stem)
    }

    /// The hash of model schemas.
    pub fn schemas(&self) -> String {
        format!("{}:schemas", self.stem)
    }

    /// The epoch counter.
    pub fn epoch(&self) -> String {
        format!("{}:epoch", self.stem)
    }

    /// The audit trail's stream.
    pub fn audit(&self) -> String {
        format!("{}:audit", self.stem)
    }

    /// The channel epoch bumps are published on.
    pub fn changed_channel(&self) -> String {
        format!("{}:changed", self.stem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_shares_the_registry_hash_tag() {
        let keys = RegistryKeys::new("wasmtx");
        for key in [keys.rule("r"), keys.active(), keys.wasm("ab"), keys.refs(), keys.schemas(), keys.epoch()] {
            assert!(key.starts_with("wasmtx:{registry}:"), "{key}");
        }
        assert_eq!(keys.rule("bank-transfer"), "wasmtx:{registry}:rule:bank-transfer");
    }
}
