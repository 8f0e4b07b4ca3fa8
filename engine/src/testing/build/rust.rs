//! Building Rust rule crates for `wasm32-unknown-unknown`.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock, PoisonError};

use super::{Progress, WASM_TARGET, describe, lock_dir, run};
use crate::testing::HarnessError;

/// Builds the rule crate whose `Cargo.toml` is in `crate_dir` and returns the path of its
/// `.wasm` file. From a test in the rule's own crate:
///
/// ```no_run
/// let wasm = wasmtx::testing::build_rule_crate(env!("CARGO_MANIFEST_DIR"))?;
/// # Ok::<(), wasmtx::testing::HarnessError>(())
/// ```
///
/// As `RustRuleBuild::new(crate_dir).build()` (see [`RustRuleBuild`]).
///
/// # Errors
///
/// As [`RustRuleBuild::build`].
pub fn build_rule_crate(crate_dir: impl AsRef<Path>) -> Result<PathBuf, HarnessError> {
    let dir = crate_dir.as_ref();
    let built = RustRuleBuild::new(dir).build()?;
    built.wasm.into_values().next().ok_or_else(|| HarnessError::Build {
        crate_dir: dir.to_path_buf(),
        reason: "the build gave no .wasm file".into(),
    })
}

/// A build of Rust rule crates for `wasm32-unknown-unknown`: one crate, or several packages
/// of a workspace in one `cargo build`.
///
/// It runs, in `dir` (so its `.cargo/config.toml` applies: a small shadow stack, say),
///
/// ```text
/// cargo build --release --target wasm32-unknown-unknown --manifest-path <dir>/Cargo.toml \
///     -p <package>... --target-dir <target>/rules
/// ```
///
/// where `<target>` is the crate's (workspace's) target directory: a directory of its own, so
/// the build neither waits for the lock of a `cargo test` running in the same target directory
/// nor invalidates its artifacts. It installs the wasm target with `rustup` first if the
/// toolchain lacks it, and drops `RUSTFLAGS` and `CARGO_ENCODED_RUSTFLAGS`, which are meant for
/// the host (set `CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS` to change the guest flags).
/// Each build is done once per process: later calls return the first one's result.
#[derive(Debug, Clone)]
pub struct RustRuleBuild {
    dir: PathBuf,
    packages: Vec<String>,
    target_dir: Option<PathBuf>,
    progress: Progress,
}

/// What a [`RustRuleBuild`] built: the `.wasm` file of each package.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BuiltRules {
    /// Package name → its core module (carrying its component type; the engine wraps it).
    pub wasm: BTreeMap<String, PathBuf>,
}

impl BuiltRules {
    /// The `.wasm` file of a package.
    pub fn get(&self, package: &str) -> Option<&Path> {
        self.wasm.get(package).map(PathBuf::as_path)
    }
}

impl RustRuleBuild {
    /// A build of the crate (or workspace) whose `Cargo.toml` is in `dir`. Without
    /// [`RustRuleBuild::package`], it builds the package of that `Cargo.toml`.
    pub fn new(dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref();
        Self {
            dir: dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf()),
            packages: Vec::new(),
            target_dir: None,
            progress: Progress::Captured,
        }
    }

    /// Builds this package of the workspace too (repeat for several).
    #[must_use]
    pub fn package(mut self, name: impl Into<String>) -> Self {
        self.packages.push(name.into());
        self
    }

    /// Builds into this target directory (default: `<the crate's target directory>/rules`).
    #[must_use]
    pub fn target_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.target_dir = Some(dir.into());
        self
    }

    /// Shows cargo's progress on this process's stderr as it comes (default: kept, and shown
    /// only if the build fails).
    #[must_use]
    pub fn show_progress(mut self, on: bool) -> Self {
        self.progress = if on { Progress::Shown } else { Progress::Captured };
        self
    }

    /// Builds (once per process for the same crate, packages and target directory).
    ///
    /// # Errors
    ///
    /// [`HarnessError::Build`] if `cargo metadata` or the build fails (with cargo's output), if
    /// a package is not in the workspace or has no `cdylib` target, or if a `.wasm` is missing
    /// after the build. A failure is remembered like a success.
    pub fn build(&self) -> Result<BuiltRules, HarnessError> {
        type Builds = Mutex<HashMap<(PathBuf, Vec<String>, Option<PathBuf>), Result<BuiltRules, String>>>;
        static BUILT: OnceLock<Builds> = OnceLock::new();
        let key = (self.dir.clone(), self.packages.clone(), self.target_dir.clone());
        let mut built = BUILT.get_or_init(Mutex::default).lock().unwrap_or_else(PoisonError::into_inner);
        let result = built.entry(key).or_insert_with(|| self.build_now()).clone();
        drop(built);
        result.map_err(|reason| HarnessError::Build { crate_dir: self.dir.clone(), reason })
    }

    fn build_now(&self) -> Result<BuiltRules, String> {
        let manifest = self.dir.join("Cargo.toml");
        if !manifest.is_file() {
            return Err(format!(
                "{} does not exist: give the directory of the rule crate's Cargo.toml",
                manifest.display()
            ));
        }
        let metadata = Metadata::read(&self.dir, &manifest)?;
        let packages = if self.packages.is_empty() {
            vec![metadata.package_of(&manifest)?.name.clone()]
        } else {
            self.packages.clone()
        };
        let libs: Vec<(String, String)> = packages
            .iter()
            .map(|name| Ok((name.clone(), metadata.package(name)?.cdylib()?.to_owned())))
            .collect::<Result<_, String>>()?;
        let target_dir = self.target_dir.clone().unwrap_or_else(|| metadata.target_dir.join("rules"));
        let lock = lock_dir(&target_dir)?;
        ensure_wasm_target(&self.dir, self.progress)?;
        let mut command = Command::new(cargo());
        command
            .current_dir(&self.dir)
            .args(["build", "--release", "--target", WASM_TARGET, "--manifest-path"])
            .arg(&manifest);
        for package in &packages {
            command.args(["-p", package]);
        }
        command.arg("--target-dir").arg(&target_dir).env_remove("RUSTFLAGS").env_remove("CARGO_ENCODED_RUSTFLAGS");
        run(&mut command, self.progress)?;
        let out = target_dir.join(WASM_TARGET).join("release");
        let mut wasm = BTreeMap::new();
        for (package, lib) in libs {
            let path = out.join(format!("{}.wasm", lib.replace('-', "_")));
            if !path.is_file() {
                return Err(format!("`{}` succeeded but {} is missing", describe(&command), path.display()));
            }
            // Cargo leaves an output it found fresh untouched, so after an edit that does not
            // change the rule (a workspace manifest's other dependencies) the file stays older
            // than its project's sources, and the harness's staleness check would refuse what
            // cargo has just confirmed current. Stamped now, they agree.
            std::fs::File::options()
                .write(true)
                .open(&path)
                .and_then(|file| file.set_modified(std::time::SystemTime::now()))
                .map_err(|e| format!("cannot stamp {} as built: {e}", path.display()))?;
            wasm.insert(package, path);
        }
        drop(lock);
        Ok(BuiltRules { wasm })
    }
}

/// What the build needs from `cargo metadata`.
struct Metadata {
    target_dir: PathBuf,
    packages: Vec<PackageInfo>,
}

struct PackageInfo {
    name: String,
    manifest: PathBuf,
    /// The `cdylib` target's name (the `.wasm` file's stem, with `-` as `_`).
    cdylib: Option<String>,
}

impl PackageInfo {
    fn cdylib(&self) -> Result<&str, String> {
        self.cdylib.as_deref().ok_or_else(|| {
            format!(
                "package `{}` has no cdylib target: a rule crate needs `[lib] crate-type = [\"cdylib\"]` in {}",
                self.name,
                self.manifest.display()
            )
        })
    }
}

impl Metadata {
    fn read(dir: &Path, manifest: &Path) -> Result<Self, String> {
        let mut command = Command::new(cargo());
        command
            .current_dir(dir)
            .args(["metadata", "--no-deps", "--format-version", "1", "--manifest-path"])
            .arg(manifest);
        let stdout = run(&mut command, Progress::Captured)?;
        let metadata: serde_json::Value = serde_json::from_slice(&stdout)
            .map_err(|e| format!("`{}` printed something that is not JSON: {e}", describe(&command)))?;
        let target_dir = metadata["target_directory"]
            .as_str()
            .map(PathBuf::from)
            .ok_or_else(|| "`cargo metadata` gave no target directory".to_owned())?;
        let packages = metadata["packages"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| PackageInfo {
                name: p["name"].as_str().unwrap_or_default().to_owned(),
                manifest: PathBuf::from(p["manifest_path"].as_str().unwrap_or_default()),
                cdylib: p["targets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|t| t["kind"].as_array().is_some_and(|kinds| kinds.iter().any(|k| k == "cdylib")))
                    .and_then(|t| t["name"].as_str())
                    .map(str::to_owned),
            })
            .collect();
        Ok(Self { target_dir, packages })
    }

    fn package(&self, name: &str) -> Result<&PackageInfo, String> {
        self.packages.iter().find(|p| p.name == name).ok_or_else(|| format!("the workspace has no package `{name}`"))
    }

    fn package_of(&self, manifest: &Path) -> Result<&PackageInfo, String> {
        let manifest = manifest.canonicalize().unwrap_or_else(|_| manifest.to_path_buf());
        self.packages.iter().find(|p| p.manifest == manifest).ok_or_else(|| {
            format!(
                "`cargo metadata` does not list the package of {} (a workspace root? name its packages)",
                manifest.display()
            )
        })
    }
}

/// Installs the wasm target with rustup unless the active toolchain has it.
fn ensure_wasm_target(dir: &Path, progress: Progress) -> Result<(), String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"));
    let mut command = Command::new(&rustc);
    command.current_dir(dir).args(["--print", "sysroot"]);
    let sysroot = PathBuf::from(String::from_utf8_lossy(&run(&mut command, Progress::Captured)?).trim());
    if sysroot.join("lib").join("rustlib").join(WASM_TARGET).is_dir() {
        return Ok(());
    }
    let mut command = Command::new("rustup");
    command.current_dir(dir).args(["target", "add", WASM_TARGET]);
    run(&mut command, progress).map(drop).map_err(|e| {
        format!("the toolchain at {} lacks the {WASM_TARGET} target, and installing it failed: {e}", sysroot.display())
    })
}

fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"))
}
