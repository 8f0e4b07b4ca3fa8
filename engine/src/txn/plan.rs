//! An invocation checked and resolved: schemas found, models in caller and lock order.

use crate::model::change::ModelTarget;

/// An invocation checked and resolved: schemas found, models in caller and lock order.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Models in the caller's order (what the rule sees).
    pub targets: Vec<ModelTarget>,
    /// `order[i]` is the caller index of the i-th model in lock order.
    pub order: Vec<usize>,
    /// Models in the global lock order (what the store sees).
    pub sorted: Vec<ModelTarget>,
}

impl Plan {
    pub(crate) fn new(targets: Vec<ModelTarget>, order: Vec<usize>) -> Self {
        let sorted = order.iter().map(|&i| targets[i].clone()).collect();
        Self { targets, order, sorted }
    }

    /// Per-model values from lock order to caller order.
    pub(crate) fn to_caller_order<T: Clone>(&self, sorted: &[T]) -> Vec<T> {
        let mut out: Vec<Option<T>> = vec![None; sorted.len()];
        for (pos, &caller) in self.order.iter().enumerate() {
            out[caller] = sorted.get(pos).cloned();
        }
        out.into_iter().flatten().collect()
    }

    /// Per-model values from caller order to lock order.
    pub(crate) fn to_lock_order<T: Clone>(&self, caller: &[T]) -> Vec<T> {
        self.order.iter().filter_map(|&i| caller.get(i).cloned()).collect()
    }
}
