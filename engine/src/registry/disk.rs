//! The optional on-disk cache of precompiled rules: each compiled component serialized once
//! into `<dir>/<compatibility hash>/<digest>.cwasm`, so that a restarted engine instance loads
//! its rules in a fraction of a millisecond instead of compiling them again.
//!
//! The compatibility hash is wasmtime's
//! [`precompile_compatibility_hash`](wasmtime::Engine::precompile_compatibility_hash) of the
//! engine's configuration (wasmtime version, target, settings), hashed with SHA-256: an engine
//! only ever reads files written by an engine it can run them with.

use std::hash::Hasher;
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tracing::{debug, warn};
use wasmtime::component::Component;

use super::record::RuleVersion;
use crate::runtime::{CompiledRule, RuleRuntime};

/// A directory of precompiled rules for one engine configuration.
#[derive(Debug, Clone)]
pub(crate) struct DiskCache {
    dir: PathBuf,
}

/// Feeds what `Hash` writes into SHA-256 (`finish` is unused: the digest is read directly).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        0
    }
}

impl DiskCache {
    /// The cache under `base` for this runtime's engine configuration (created if missing).
    pub fn open(base: &Path, runtime: &RuleRuntime) -> io::Result<Self> {
        let mut hasher = Sha256Hasher(Sha256::new());
        std::hash::Hash::hash(&runtime.wasm_engine().precompile_compatibility_hash(), &mut hasher);
        let compat = hex::encode(&hasher.0.finalize()[..12]);
        let dir = base.join(compat);
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    /// The directory files are read from and written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}.cwasm"))
    }

    /// The precompiled rule of `version`, if this cache has a usable one. A file that cannot
    /// be loaded is removed (it will be written again after the next compile).
    pub fn load(&self, runtime: &RuleRuntime, version: &RuleVersion) -> Option<CompiledRule> {
        if !is_digest(&version.digest) {
            return None;
        }
        let path = self.path(&version.digest);
        let bytes = std::fs::read(&path).ok()?;
        // SAFETY: `Component::deserialize` trusts its input to be the output of
        // `Component::serialize` from a compatible engine; arbitrary bytes could run arbitrary
        // code. These files are trusted: only `DiskCache::store` writes them, from components
        // this process's engine compiled, atomically (a temporary file renamed into place, so
        // never half-written), into a directory the operator owns and chose
        // (`RegistryConfig::cache_dir`), under a subdirectory named by the engine's
        // compatibility hash (so only engines with the same configuration read them), and named
        // by the SHA-256 of the rule bytes they were compiled from. Wasmtime also checks the
        // header's version and settings and refuses a mismatch with an error.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(runtime.wasm_engine(), &bytes) };
        let size = usize::try_from(version.size).unwrap_or(usize::MAX);
        let loaded = component.map_err(|e| format!("{e:#}")).and_then(|component| {
            runtime.link(&component, version.digest.clone(), size, version.from_core_module).map_err(|e| e.to_string())
        });
        match loaded {
            Ok(compiled) => {
                debug!(path = %path.display(), "loaded a precompiled rule");
                Some(compiled)
            }
            Err(e) => {
                warn!(path = %path.display(), error = %e, "cannot load a precompiled rule; removing it");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Writes a compiled rule's precompiled form, unless it is there already.
    pub fn store(&self, compiled: &CompiledRule) {
        let path = self.path(compiled.digest());
        if !is_digest(compiled.digest()) || path.exists() {
            return;
        }
        let written = compiled
            .pre()
            .instance_pre()
            .component()
            .serialize()
            .map_err(|e| io::Error::other(format!("{e:#}")))
            .and_then(|bytes| {
                let tmp = self.dir.join(format!(".{}.{:016x}.tmp", compiled.digest(), rand::random::<u64>()));
                std::fs::write(&tmp, bytes)?;
                std::fs::rename(&tmp, &path).inspect_err(|_| {
                    let _ = std::fs::remove_file(&tmp);
                })
            });
        if let Err(e) = written {
            warn!(path = %path.display(), error = %e, "cannot write a precompiled rule");
        }
    }
}

/// A SHA-256 digest in lowercase hex: the only names this cache reads or writes.
fn is_digest(digest: &str) -> bool {
    digest.len() == 64 && digest.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
