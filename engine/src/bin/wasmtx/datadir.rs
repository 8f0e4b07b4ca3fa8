//! The embedded store's data directory: models, rules and schemas kept in one JSON file
//! (`state.json`) between commands, written atomically after each command; a lock file keeps
//! two processes from using the directory at once.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use wasmtx::registry::{MemoryRegistryStore, RegistryDump};
use wasmtx::store::memory::MemoryDump;
use wasmtx::{ErrorClass, MemoryStore};

use crate::failure::Failure;
use wasmtx::ErrorKind;

/// How long a command waits for another process to let go of the directory.
const LOCK_WAIT: Duration = Duration::from_secs(10);
const STATE_FILE: &str = "state.json";
const FORMAT: u32 = 1;

/// The file's content.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    format: u32,
    registry: RegistryDump,
    models: MemoryDump,
}

/// An open data directory: its stores, and the lock held until it is dropped.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    _lock: File,
    models: MemoryStore,
    registry: MemoryRegistryStore,
    last_saved: Option<Vec<u8>>,
}

impl DataDir {
    /// Opens (creating it if needed) and locks the directory, and loads its state into the
    /// embedded stores (just opened, still empty) it then keeps saving.
    pub fn open(path: &Path, models: MemoryStore, registry: MemoryRegistryStore) -> Result<Self, Failure> {
        let io = |what: &str, e: std::io::Error| {
            Failure::new(ErrorClass::Internal, ErrorKind::DataDir, format!("{what} {}: {e}", path.display()))
        };
        std::fs::create_dir_all(path).map_err(|e| io("cannot create the data directory", e))?;
        let lock = File::create(path.join("lock")).map_err(|e| io("cannot create the lock file in", e))?;
        let started = Instant::now();
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if started.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(Failure::new(
                        ErrorClass::Conflict,
                        ErrorKind::DataDirBusy,
                        format!(
                            "the data directory {} is in use by another wasmtx process (a running `wasmtx serve`?)",
                            path.display()
                        ),
                    ));
                }
                Err(TryLockError::Error(e)) => return Err(io("cannot lock the data directory", e)),
            }
        }
        let file = path.join(STATE_FILE);
        let state = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice::<State>(&bytes).map_err(|e| {
                Failure::new(ErrorClass::Internal, ErrorKind::DataDir, format!("cannot read {}: {e}", file.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State { format: FORMAT, ..State::default() },
            Err(e) => return Err(io("cannot read the state in", e)),
        };
        if state.format != FORMAT {
            return Err(Failure::new(
                ErrorClass::Internal,
                ErrorKind::DataDir,
                format!("{} has format {}, this wasmtx reads format {FORMAT}", file.display(), state.format),
            ));
        }
        models.restore(state.models);
        registry.restore(state.registry);
        Ok(Self { path: path.to_owned(), _lock: lock, models, registry, last_saved: None })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the stores' state if it changed since the last save (atomically: a temporary
    /// file renamed over the old one).
    pub fn save(&mut self) -> Result<(), Failure> {
        let state = State { format: FORMAT, registry: self.registry.dump(), models: self.models.dump() };
        let bytes = serde_json::to_vec(&state).map_err(|e| {
            Failure::new(ErrorClass::Internal, ErrorKind::DataDir, format!("cannot encode the state: {e}"))
        })?;
        if self.last_saved.as_ref() == Some(&bytes) {
            return Ok(());
        }
        let tmp = self.path.join(format!(".{STATE_FILE}.tmp"));
        let file = self.path.join(STATE_FILE);
        std::fs::write(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, &file)).map_err(|e| {
            Failure::new(ErrorClass::Internal, ErrorKind::DataDir, format!("cannot write {}: {e}", file.display()))
        })?;
        self.last_saved = Some(bytes);
        Ok(())
    }
}
