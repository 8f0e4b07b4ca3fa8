//! Building rules from source: Rust crates for `wasm32-unknown-unknown`
//! ([`RustRuleBuild`], [`build_rule_crate`]) and AssemblyScript npm projects
//! ([`AssemblyScriptBuild`]). The one rule builder of the project: the harness, `wasmtx
//! test`, the demo, the benchmark and the integration tests all build through it.
//!
//! Both builders skip work that is done: cargo's own freshness check makes a Rust build with
//! nothing to do take well under a second, and an AssemblyScript project is installed and
//! built again only when its inputs are newer than its output. Each build holds a lock file in
//! its output directory, so parallel processes (test binaries, say) build one at a time.

mod assemblyscript;
mod rust;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

pub use self::assemblyscript::AssemblyScriptBuild;
pub use self::rust::{BuiltRules, RustRuleBuild, build_rule_crate};

/// The target Rust rules are built for.
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Where a build's tool output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Progress {
    /// Kept, and shown in the error if the tool fails (the default).
    #[default]
    Captured,
    /// Written to this process's stderr as it comes (a first build can take minutes).
    Shown,
}

/// Runs a command to completion; its stdout, or an error with the tail of its stderr.
pub(crate) fn run(command: &mut Command, progress: Progress) -> Result<Vec<u8>, String> {
    let shown = describe(command);
    command.stdin(Stdio::null());
    let output = match progress {
        Progress::Captured => command.output(),
        Progress::Shown => command.stderr(Stdio::inherit()).output(),
    }
    .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
    if output.status.success() {
        return Ok(output.stdout);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(60).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(format!("`{shown}` failed ({}){}{}", output.status, if tail.is_empty() { "" } else { ":\n" }, tail.join("\n")))
}

/// A command as a user would type it.
pub(crate) fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Holds `<dir>/.wasmtx-build.lock` until dropped: one build at a time across processes.
pub(crate) fn lock_dir(dir: &Path) -> Result<File, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let path = dir.join(".wasmtx-build.lock");
    let file = File::create(&path).map_err(|e| format!("creating the lock file {}: {e}", path.display()))?;
    file.lock().map_err(|e| format!("locking {}: {e}", path.display()))?;
    Ok(file)
}

/// Whether `target` exists and is newer than every file under `inputs` (files or directories,
/// which need not exist).
pub(crate) fn is_newer_than(target: &Path, inputs: &[PathBuf]) -> Result<bool, String> {
    let Ok(built) = std::fs::metadata(target).and_then(|m| m.modified()) else {
        return Ok(false);
    };
    let mut newest = SystemTime::UNIX_EPOCH;
    for input in inputs {
        newest = newest.max(newest_mtime(input)?);
    }
    Ok(built >= newest)
}

/// The latest modification time of `path` or, for a directory, of anything under it (skipping
/// `node_modules` and `build`).
fn newest_mtime(path: &Path) -> Result<SystemTime, String> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(SystemTime::UNIX_EPOCH);
    };
    let mut newest = meta.modified().map_err(|e| format!("reading the time of {}: {e}", path.display()))?;
    if meta.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|e| format!("listing {}: {e}", path.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("listing {}: {e}", path.display()))?;
            let name = entry.file_name();
            if name == "node_modules" || name == "build" {
                continue;
            }
            newest = newest.max(newest_mtime(&entry.path())?);
        }
    }
    Ok(newest)
}

/// The most recently modified file at or under `path` and its time (skipping `node_modules`
/// and `build`, as [`newest_mtime`] does); `None` if there is none or it cannot be read.
pub(crate) fn newest_file(path: &Path) -> Option<(SystemTime, PathBuf)> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return Some((meta.modified().ok()?, path.to_path_buf()));
    }
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(path).ok()?.flatten() {
        let name = entry.file_name();
        if name == "node_modules" || name == "build" {
            continue;
        }
        if let Some(found) = newest_file(&entry.path())
            && newest.as_ref().is_none_or(|(t, _)| found.0 > *t)
        {
            newest = Some(found);
        }
    }
    newest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staleness_follows_modification_times() -> Result<(), String> {
        let io = |e: std::io::Error| e.to_string();
        let dir = std::env::temp_dir().join(format!("wasmtx-build-mtime-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("src")).map_err(io)?;
        let source = dir.join("src").join("a.ts");
        let output = dir.join("out.wasm");
        std::fs::write(&source, "1").map_err(io)?;
        assert!(!is_newer_than(&output, &[dir.join("src")])?, "a missing output is stale");
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&output, "x").map_err(io)?;
        assert!(is_newer_than(&output, &[dir.join("src"), dir.join("missing")])?);
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&source, "2").map_err(io)?;
        assert!(!is_newer_than(&output, &[dir.join("src")])?, "an edited source makes it stale");
        std::fs::remove_dir_all(&dir).map_err(io)?;
        Ok(())
    }
}
