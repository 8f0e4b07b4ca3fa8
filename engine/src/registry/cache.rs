//! The compiled rules of one engine instance, by digest: each digest compiles once, even when
//! many invocations ask for it at the same moment (after an activation, for instance).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OnceCell;

use super::error::RegistryError;
use crate::runtime::CompiledRule;

/// Compiled rules by digest, with one compilation at a time per digest.
#[derive(Debug)]
pub(crate) struct CompiledCache {
    entries: Mutex<HashMap<String, Arc<OnceCell<CompiledRule>>>>,
    /// How many compiled rules to keep at most beyond the active ones.
    capacity: usize,
}

impl CompiledCache {
    pub fn new(capacity: usize) -> Self {
        Self { entries: Mutex::new(HashMap::new()), capacity }
    }

    fn cell(&self, digest: &str) -> Arc<OnceCell<CompiledRule>> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.entry(digest.to_owned()).or_default().clone()
    }

    /// The compiled rule of `digest`, made by `init` if it is not cached yet. Concurrent
    /// callers for one digest wait for a single `init`; if it fails, the next caller tries
    /// again.
    pub async fn get_or_try_init<F, Fut>(&self, digest: &str, init: F) -> Result<CompiledRule, RegistryError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<CompiledRule, RegistryError>>,
    {
        self.cell(digest).get_or_try_init(init).await.cloned()
    }

    /// Whether `digest` is compiled and cached.
    pub fn contains(&self, digest: &str) -> bool {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.get(digest).is_some_and(|cell| cell.initialized())
    }

    /// Caches a rule compiled elsewhere (by an upload).
    pub fn insert(&self, compiled: CompiledRule) {
        let cell = self.cell(compiled.digest());
        let _ = cell.set(compiled);
    }

    /// Drops rules that are not active once more than `capacity` others are kept (those that
    /// are still running keep their own reference).
    pub fn trim(&self, active: &HashSet<&str>) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let inactive = entries.keys().filter(|d| !active.contains(d.as_str())).count();
        if inactive > self.capacity {
            entries.retain(|digest, _| active.contains(digest.as_str()));
        }
    }

    /// The number of digests cached.
    pub fn len(&self) -> usize {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.values().filter(|cell| cell.initialized()).count()
    }
}
