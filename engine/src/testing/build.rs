//! Building a rule crate for `wasm32-unknown-unknown` from a test.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError};

use super::HarnessError;

/// The target rules are built for.
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Builds the rule crate whose `Cargo.toml` is in `crate_dir` and returns the path of its
/// `.wasm` file. From a test in the rule's own crate:
///
/// ```no_run
/// let wasm = wasmtx::testing::build_rule_crate(env!("CARGO_MANIFEST_DIR"))?;
/// # Ok::<(), wasmtx::testing::HarnessError>(())
/// ```
///
/// It runs `cargo build --release --target wasm32-unknown-unknown --manifest-path
/// <crate_dir>/Cargo.toml --target-dir <target>/rules`, where `<target>` is the crate's
/// (workspace's) target directory: a directory of its own, so the build neither waits for
/// the lock of a `cargo test` running in the same target directory nor invalidates its
/// artifacts. It installs the wasm target with `rustup` first if the toolchain lacks it, runs
/// in `crate_dir` (so the crate's `.cargo/config.toml` applies), and drops `RUSTFLAGS` and
/// `CARGO_ENCODED_RUSTFLAGS`, which are meant for the host. Cargo's output is kept for the
/// error message. Each crate is built once per process; cargo's own freshness check makes a
/// build with nothing to do take well under a second.
///
/// # Errors
///
/// [`HarnessError::Build`] if `cargo metadata` or the build fails (with cargo's output), if
/// the crate has no `cdylib` target, or if the `.wasm` is missing after the build.
pub fn build_rule_crate(crate_dir: impl AsRef<Path>) -> Result<PathBuf, HarnessError> {
    static BUILT: OnceLock<Mutex<HashMap<PathBuf, Result<PathBuf, String>>>> = OnceLock::new();
    let dir = crate_dir.as_ref();
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mut built = BUILT.get_or_init(Mutex::default).lock().unwrap_or_else(PoisonError::into_inner);
    let result = built.entry(dir.clone()).or_insert_with(|| build_now(&dir)).clone();
    drop(built);
    result.map_err(|reason| HarnessError::Build { crate_dir: dir, reason })
}

/// What the build needs to know about the crate.
struct CrateInfo {
    /// The package name.
    package: String,
    /// The `cdylib` target's name (the `.wasm` file's stem, with `-` as `_`).
    lib_name: String,
    /// Cargo's target directory for the crate.
    target_dir: PathBuf,
}

fn build_now(dir: &Path) -> Result<PathBuf, String> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(format!(
            "{} does not exist: give the directory of the rule crate's Cargo.toml",
            manifest.display()
        ));
    }
    let info = crate_info(dir, &manifest)?;
    ensure_wasm_target(dir)?;
    let target_dir = info.target_dir.join("rules");
    let mut command = Command::new(cargo());
    command
        .current_dir(dir)
        .args(["build", "--release", "--target", WASM_TARGET, "--manifest-path"])
        .arg(&manifest)
        .args(["-p", &info.package])
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .stdin(Stdio::null());
    run(&mut command)?;
    let wasm = target_dir.join(WASM_TARGET).join("release").join(format!("{}.wasm", info.lib_name.replace('-', "_")));
    if !wasm.is_file() {
        return Err(format!("`{}` succeeded but {} is missing", describe(&command), wasm.display()));
    }
    Ok(wasm)
}

fn crate_info(dir: &Path, manifest: &Path) -> Result<CrateInfo, String> {
    let mut command = Command::new(cargo());
    command
        .current_dir(dir)
        .args(["metadata", "--no-deps", "--format-version", "1", "--manifest-path"])
        .arg(manifest)
        .stdin(Stdio::null());
    let stdout = run(&mut command)?;
    let metadata: serde_json::Value = serde_json::from_slice(&stdout)
        .map_err(|e| format!("`{}` printed something that is not JSON: {e}", describe(&command)))?;
    let target_dir = metadata["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| "`cargo metadata` gave no target directory".to_owned())?;
    let manifest = manifest.canonicalize().unwrap_or_else(|_| manifest.to_path_buf());
    let package = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["manifest_path"].as_str().is_some_and(|m| Path::new(m) == manifest))
        .ok_or_else(|| format!("`cargo metadata` does not list the package of {}", manifest.display()))?;
    let name = package["name"].as_str().unwrap_or_default().to_owned();
    let lib_name = package["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["kind"].as_array().is_some_and(|kinds| kinds.iter().any(|k| k == "cdylib")))
        .and_then(|t| t["name"].as_str())
        .ok_or_else(|| {
            format!(
                "package `{name}` has no cdylib target: a rule crate needs `[lib] crate-type = [\"cdylib\"]` in {}",
                manifest.display()
            )
        })?
        .to_owned();
    Ok(CrateInfo { package: name, lib_name, target_dir })
}

/// Installs the wasm target with rustup unless the active toolchain has it.
fn ensure_wasm_target(dir: &Path) -> Result<(), String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"));
    let mut command = Command::new(&rustc);
    command.current_dir(dir).args(["--print", "sysroot"]).stdin(Stdio::null());
    let sysroot = PathBuf::from(String::from_utf8_lossy(&run(&mut command)?).trim());
    if sysroot.join("lib").join("rustlib").join(WASM_TARGET).is_dir() {
        return Ok(());
    }
    let mut command = Command::new("rustup");
    command.current_dir(dir).args(["target", "add", WASM_TARGET]).stdin(Stdio::null());
    run(&mut command).map(drop).map_err(|e| {
        format!("the toolchain at {} lacks the {WASM_TARGET} target, and installing it failed: {e}", sysroot.display())
    })
}

fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"))
}

/// Runs a command to completion; its stdout, or an error with its stderr.
fn run(command: &mut Command) -> Result<Vec<u8>, String> {
    let shown = describe(command);
    let output = command.output().map_err(|e| format!("cannot run `{shown}`: {e}"))?;
    if output.status.success() {
        return Ok(output.stdout);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(60).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(format!("`{shown}` failed ({}):\n{}", output.status, tail.join("\n")))
}

/// A command as a user would type it.
fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
