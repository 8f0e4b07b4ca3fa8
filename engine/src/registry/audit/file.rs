//! [`FileAuditLog`]: the embedded store's audit trail, in memory and in a JSON-lines file.

use std::collections::VecDeque;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;

use super::{AuditEntry, AuditError, AuditLog};

/// The newest entries in memory, and each one appended to a file when it has a path (see the
/// [module documentation](super)).
#[derive(Debug)]
pub struct FileAuditLog {
    path: Option<PathBuf>,
    retention: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    entries: VecDeque<AuditEntry>,
    next_id: u64,
    /// Lines in the file.
    lines: usize,
}

impl FileAuditLog {
    /// A log in memory only, keeping the newest `retention` entries.
    pub fn in_memory(retention: usize) -> Self {
        Self { path: None, retention: retention.max(1), state: Mutex::default() }
    }

    /// A log kept in `path` (created when missing), keeping the newest `retention` entries.
    ///
    /// # Errors
    /// [`AuditError::Io`] if the file cannot be read, [`AuditError::Corrupt`] for a line that is
    /// not an entry.
    pub fn open(path: &Path, retention: usize) -> Result<Self, AuditError> {
        let retention = retention.max(1);
        let mut state = State::default();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    let entry: AuditEntry = serde_json::from_str(line)
                        .map_err(|e| AuditError::Corrupt(format!("{}: {e}", path.display())))?;
                    state.next_id = state.next_id.max(entry.id.parse::<u64>().unwrap_or(0));
                    state.entries.push_back(entry);
                    state.lines += 1;
                    if state.entries.len() > retention {
                        state.entries.pop_front();
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(path, &e)),
        }
        Ok(Self { path: Some(path.to_owned()), retention, state: Mutex::new(state) })
    }

    fn write(&self, state: &mut State, entry: &AuditEntry) -> Result<(), AuditError> {
        let Some(path) = &self.path else { return Ok(()) };
        if state.lines >= self.retention.saturating_mul(2) {
            let mut text = String::new();
            for kept in &state.entries {
                text.push_str(&serde_json::to_string(kept).map_err(|e| AuditError::Corrupt(e.to_string()))?);
                text.push('\n');
            }
            let tmp = path.with_extension("jsonl.tmp");
            std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path)).map_err(|e| io(path, &e))?;
            state.lines = state.entries.len();
            return Ok(());
        }
        let line = serde_json::to_string(entry).map_err(|e| AuditError::Corrupt(e.to_string()))?;
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| io(path, &e))?;
        file.write_all(format!("{line}\n").as_bytes()).map_err(|e| io(path, &e))?;
        state.lines += 1;
        Ok(())
    }
}

fn io(path: &Path, e: &std::io::Error) -> AuditError {
    AuditError::Io { path: path.display().to_string(), reason: e.to_string() }
}

#[async_trait]
impl AuditLog for FileAuditLog {
    async fn record(&self, mut entry: AuditEntry) -> Result<AuditEntry, AuditError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.next_id += 1;
        entry.id = state.next_id.to_string();
        state.entries.push_back(entry.clone());
        if state.entries.len() > self.retention {
            state.entries.pop_front();
        }
        self.write(&mut state, &entry)?;
        Ok(entry)
    }

    async fn list(&self, limit: usize) -> Result<Vec<AuditEntry>, AuditError> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(state.entries.iter().rev().take(limit).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::audit::AuditAction;

    #[tokio::test]
    async fn the_file_keeps_the_newest_entries_across_opens() {
        let dir = std::env::temp_dir().join(format!("wasmtx-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("audit.jsonl");
        let _ = std::fs::remove_file(&path);
        let log = FileAuditLog::open(&path, 3).expect("open");
        for i in 0..8_u64 {
            log.record(AuditEntry::new("ops", AuditAction::Upload, "r").version(i, "ab")).await.expect("record");
        }
        let reopened = FileAuditLog::open(&path, 3).expect("reopen");
        let listed = reopened.list(10).await.expect("list");
        let versions: Vec<_> = listed.iter().map(|e| e.version).collect();
        assert_eq!(versions, [Some(7), Some(6), Some(5)]);
        assert_eq!(listed[0].id, "8");
        let lines = std::fs::read_to_string(&path).expect("read").lines().count();
        assert!(lines <= 6, "the file is bounded: {lines} lines");
        let next = reopened.record(AuditEntry::new("ops", AuditAction::DeleteRule, "r")).await.expect("record");
        assert_eq!(next.id, "9");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
