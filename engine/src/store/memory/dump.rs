//! A memory store's models as plain data, to persist an embedded store between processes (the
//! `wasmtx` command keeps it in its data directory).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::data::ModelData;
use super::state::State;
use crate::model::ids::ModelId;
use crate::store::StoredRecord;

/// Every model of a [`MemoryStore`](super::MemoryStore): its stored fields, version and fencing
/// counter; and every committed idempotency record with its expiry time. Locks are not part of
/// it: a restored store holds none.
///
/// Serialisable (serde), so it can be written to a file and read back.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MemoryDump {
    models: Vec<DumpedModel>,
    #[serde(default)]
    records: Vec<DumpedRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct DumpedRecord {
    anchor: ModelId,
    key: String,
    versions: Vec<u64>,
    payload: String,
    /// When it expires, in milliseconds since the Unix epoch.
    expires_at_ms: u64,
}

fn unix_ms_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
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
        let now_ms = unix_ms_now();
        let records = state.committed_records(Instant::now()).into_iter().map(|(anchor, key, record, left)| {
            let left_ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
            DumpedRecord {
                anchor,
                key,
                versions: record.versions,
                payload: record.payload,
                expires_at_ms: now_ms.saturating_add(left_ms),
            }
        });
        Self { models: models.collect(), records: records.collect() }
    }

    pub(super) fn into_state(self) -> State {
        let mut state = State::with_models(self.models.into_iter().map(|m| (m.id, m.version, m.fence, m.data)));
        let (now, now_ms) = (Instant::now(), unix_ms_now());
        for r in self.records {
            // Records that expired while the dump was on disk stay expired.
            let Some(left) = r.expires_at_ms.checked_sub(now_ms).filter(|&ms| ms > 0) else { continue };
            let record = StoredRecord { versions: r.versions, payload: r.payload };
            state.restore_record(r.anchor, r.key, record, now + Duration::from_millis(left));
        }
        state
    }
}
