//! A memory store's models as plain data, to persist an embedded store between processes (the
//! `wasmtx` command keeps it in its data directory).

use serde::{Deserialize, Serialize};

use super::data::ModelData;
use super::state::State;
use crate::model::ids::ModelId;

/// Every model of a [`MemoryStore`](super::MemoryStore): its stored fields, version and fencing
/// counter. Locks are not part of it: a restored store holds none.
///
/// Serialisable (serde), so it can be written to a file and read back.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MemoryDump {
    models: Vec<DumpedModel>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct DumpedModel {
    id: ModelId,
    version: u64,
    fence: u64,
    data: ModelData,
}

impl MemoryDump {
    /// The number of models in the dump.
    pub fn len(&self) -> usize {
        self.models.len()
    }

    /// Whether the dump holds no model.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    pub(super) fn of(state: &State) -> Self {
        let models =
            state.models().into_iter().map(|(id, version, fence, data)| DumpedModel { id, version, fence, data });
        Self { models: models.collect() }
    }

    pub(super) fn into_state(self) -> State {
        State::with_models(self.models.into_iter().map(|m| (m.id, m.version, m.fence, m.data)))
    }
}
