//! A named, compiled rule: what callers hand to [`Engine::invoke`](crate::Engine::invoke).

use std::sync::Arc;

use crate::runtime::CompiledRule;

/// A compiled rule with its name. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Rule {
    name: Arc<str>,
    compiled: CompiledRule,
}

impl Rule {
    pub(crate) fn new(name: &str, compiled: CompiledRule) -> Self {
        Self { name: name.into(), compiled }
    }

    /// The rule's name (used in logs, metrics and the registry).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The compiled code.
    pub fn compiled(&self) -> &CompiledRule {
        &self.compiled
    }

    /// The SHA-256 of the bytes the rule was compiled from, in hex.
    pub fn digest(&self) -> &str {
        self.compiled.digest()
    }
}
