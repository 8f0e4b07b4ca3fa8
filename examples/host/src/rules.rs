//! Builds the example rules and the probe test rule from source for `wasm32-unknown-unknown`.
//!
//! [`build_rules`] runs, once per process,
//!
//! ```text
//! cargo build --release --target wasm32-unknown-unknown \
//!     -p rule-bank-transfer -p rule-level-up -p rule-user-progress -p rule-probe \
//!     --target-dir <workspace>/target/rules
//! ```
//!
//! in the workspace root, after installing the `wasm32-unknown-unknown` target with rustup if
//! the toolchain lacks it. The separate target directory keeps the guest build from waiting on
//! (or invalidating) the host build's lock. Cargo's own freshness checks make a repeated build
//! cost well under a second, and a lock file makes concurrent processes (parallel test binaries)
//! build one at a time.
//!
//! The guest build takes its flags from the workspace's `.cargo/config.toml`
//! (`[target.wasm32-unknown-unknown] rustflags`, a 64 KiB shadow stack): `RUSTFLAGS` and
//! `CARGO_ENCODED_RUSTFLAGS` are meant for the host and are removed from its environment. Set
//! `CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS` to change the guest flags.
//!
//! Then, under the same lock, it builds the AssemblyScript rules ([`assemblyscript`]): `npm
//! install` and `npm run build` in each rule's npm project, each only when its inputs changed
//! or its output is missing. That part needs Node.js 20+ with npm.

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{Context as _, Result, anyhow, bail};

use crate::workspace_root;

pub mod assemblyscript;

/// The target the rules are built for.
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// The rule packages [`build_rules`] builds, with their short names.
pub const RULE_PACKAGES: [(&str, &str); 8] = [
    ("bank_transfer", "rule-bank-transfer"),
    ("level_up", "rule-level-up"),
    ("user_progress", "rule-user-progress"),
    ("shopping_cart", "rule-shopping-cart"),
    ("user_profile", "rule-user-profile"),
    ("complete_level", "rule-complete-level"),
    ("counter", "rule-counter"),
    ("probe", "rule-probe"),
];

/// The built rules: paths to core WebAssembly modules that carry their component type in a
/// custom section (the engine wraps them into components when it compiles them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleArtifacts {
    /// `examples/rules/bank-transfer`.
    pub bank_transfer: PathBuf,
    /// `examples/rules/level-up`.
    pub level_up: PathBuf,
    /// `examples/rules/user-progress`.
    pub user_progress: PathBuf,
    /// `examples/rules/complete-level`.
    pub complete_level: PathBuf,
    /// `examples/rules/counter`, the benchmark's hot counter and event log.
    pub counter: PathBuf,
    /// `tests/rules/probe`, the scriptable test rule.
    pub probe: PathBuf,
    /// `examples/rules/shopping-cart`, the Rust twin of `shopping_cart_as`.
    pub shopping_cart: PathBuf,
    /// `examples/rules/user-profile`, the Rust twin of `user_profile_as`.
    pub user_profile: PathBuf,
    /// `examples/rules/shopping-cart-as`, in AssemblyScript.
    pub shopping_cart_as: PathBuf,
    /// `examples/rules/user-profile-as`, in AssemblyScript.
    pub user_profile_as: PathBuf,
    /// `guest-sdk/assemblyscript/tests/probe`, the AssemblyScript twin of the probe.
    pub probe_as: PathBuf,
}

impl RuleArtifacts {
    /// The artifacts of a build into `target_dir` (which need not have run yet).
    pub fn in_target_dir(target_dir: &Path) -> Self {
        let out = target_dir.join(WASM_TARGET).join("release");
        let path = |package: &str| out.join(format!("{}.wasm", package.replace('-', "_")));
        // The AssemblyScript rules are built in their own npm projects, not in `target_dir`.
        let root = workspace_root();
        let as_path = |name: &str| {
            assemblyscript::AS_RULES
                .iter()
                .find(|rule| rule.name == name)
                .map(|rule| rule.output_in(&root))
                .unwrap_or_default()
        };
        Self {
            bank_transfer: path("rule-bank-transfer"),
            level_up: path("rule-level-up"),
            user_progress: path("rule-user-progress"),
            complete_level: path("rule-complete-level"),
            counter: path("rule-counter"),
            probe: path("rule-probe"),
            shopping_cart: path("rule-shopping-cart"),
            user_profile: path("rule-user-profile"),
            shopping_cart_as: as_path("shopping_cart_as"),
            user_profile_as: as_path("user_profile_as"),
            probe_as: as_path("probe_as"),
        }
    }

    /// Every rule as `(short name, path)`, short names as in [`RULE_PACKAGES`] and
    /// [`assemblyscript::AS_RULES`].
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Path)> {
        [
            ("bank_transfer", self.bank_transfer.as_path()),
            ("level_up", self.level_up.as_path()),
            ("user_progress", self.user_progress.as_path()),
            ("complete_level", self.complete_level.as_path()),
            ("counter", self.counter.as_path()),
            ("probe", self.probe.as_path()),
            ("shopping_cart", self.shopping_cart.as_path()),
            ("user_profile", self.user_profile.as_path()),
            ("shopping_cart_as", self.shopping_cart_as.as_path()),
            ("user_profile_as", self.user_profile_as.as_path()),
            ("probe_as", self.probe_as.as_path()),
        ]
        .into_iter()
    }

    /// The path of a rule by name: `bank_transfer`, `bank-transfer` and `rule-bank-transfer`
    /// all name the same rule.
    pub fn path(&self, name: &str) -> Option<&Path> {
        let name = name.strip_prefix("rule-").unwrap_or(name).replace('-', "_");
        self.iter().find(|(n, _)| *n == name).map(|(_, p)| p)
    }

    /// The bytes of a rule by name (see [`RuleArtifacts::path`]).
    ///
    /// # Errors
    /// If there is no rule of that name or its file cannot be read.
    pub fn read(&self, name: &str) -> Result<Vec<u8>> {
        let path = self.path(name).ok_or_else(|| anyhow!("no example rule named `{name}`"))?;
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    }
}

/// The target directory of the rule builds: `<workspace>/target/rules`.
pub fn rules_target_dir() -> PathBuf {
    workspace_root().join("target").join("rules")
}

/// Builds the Rust example rules and the probe (once per process; later calls return the same
/// result) and returns where every rule is (the AssemblyScript ones are built by
/// [`build_assemblyscript_rules`]).
///
/// Cargo's progress goes to this process's stderr.
///
/// # Errors
/// If the wasm target cannot be installed, the build fails (the error names the command), or
/// a rule is missing after the build. A failure is remembered: later calls fail the same way
/// without building again.
pub fn build_rules() -> Result<&'static RuleArtifacts> {
    static BUILT: OnceLock<Result<RuleArtifacts, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build_rules_now().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("building the example rules failed: {e}"))
}

/// Builds the AssemblyScript rules (installing their npm packages first: needs Node.js and
/// npm), once per process; their paths are in [`RuleArtifacts`]. The Rust rules and the demo
/// do not need this.
///
/// # Errors
/// If npm or a build fails; remembered like [`build_rules`].
pub fn build_assemblyscript_rules() -> Result<&'static RuleArtifacts> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let artifacts = build_rules()?;
    BUILT
        .get_or_init(|| {
            let lock_path = rules_target_dir().join(".wasmtx-build-rules.lock");
            let lock = File::create(&lock_path).map_err(|e| format!("creating {}: {e}", lock_path.display()))?;
            lock.lock().map_err(|e| format!("locking {}: {e}", lock_path.display()))?;
            assemblyscript::build_all(&workspace_root()).map_err(|e| format!("{e:#}"))
        })
        .as_ref()
        .map_err(|e| anyhow!("building the AssemblyScript rules failed: {e}"))?;
    Ok(artifacts)
}

/// Builds the Rust rules now, whether or not this process built them before.
///
/// # Errors
/// As [`build_rules`].
pub fn build_rules_now() -> Result<RuleArtifacts> {
    let root = workspace_root();
    let target_dir = rules_target_dir();
    std::fs::create_dir_all(&target_dir).with_context(|| format!("creating {}", target_dir.display()))?;

    // One build at a time across processes; released when the file is dropped.
    let lock_path = target_dir.join(".wasmtx-build-rules.lock");
    let lock = File::create(&lock_path).with_context(|| format!("creating the lock file {}", lock_path.display()))?;
    lock.lock().with_context(|| format!("locking {}", lock_path.display()))?;

    ensure_wasm_target(&root)?;

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(&cargo);
    command.current_dir(&root).args(["build", "--release", "--target", WASM_TARGET]);
    for (_, package) in RULE_PACKAGES {
        command.args(["-p", package]);
    }
    command
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .stdin(Stdio::null())
        // Cargo writes nothing useful to stdout; keep this process's stdout clean for its own
        // output.
        .stdout(Stdio::from(std::io::stderr()))
        .stderr(Stdio::inherit());
    let shown = describe(&command);
    let status = command.status().with_context(|| format!("running `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }

    let artifacts = RuleArtifacts::in_target_dir(&target_dir);
    let rust_rules = artifacts.iter().filter(|(name, _)| RULE_PACKAGES.iter().any(|(short, _)| short == name));
    for (name, path) in rust_rules {
        if !path.is_file() {
            bail!("`{shown}` succeeded but the {name} rule is missing at {}", path.display());
        }
    }
    drop(lock);
    Ok(artifacts)
}

/// Installs the wasm target with rustup unless the active toolchain has it.
fn ensure_wasm_target(root: &Path) -> Result<()> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"));
    let output = Command::new(&rustc)
        .current_dir(root)
        .args(["--print", "sysroot"])
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running `{} --print sysroot`", rustc.to_string_lossy()))?;
    if !output.status.success() {
        bail!("`{} --print sysroot` failed ({})", rustc.to_string_lossy(), output.status);
    }
    let sysroot = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    if sysroot.join("lib").join("rustlib").join(WASM_TARGET).is_dir() {
        return Ok(());
    }

    let mut command = Command::new("rustup");
    command
        .current_dir(root)
        .args(["target", "add", WASM_TARGET])
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr()))
        .stderr(Stdio::inherit());
    let shown = describe(&command);
    let status = command.status().with_context(|| {
        format!("running `{shown}`: the toolchain at {} lacks the {WASM_TARGET} target; install it", sysroot.display())
    })?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// A command as a user would type it.
fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_names() {
        let artifacts = RuleArtifacts::in_target_dir(Path::new("/t"));
        assert_eq!(artifacts.bank_transfer, Path::new("/t/wasm32-unknown-unknown/release/rule_bank_transfer.wasm"));
        for name in ["bank_transfer", "bank-transfer", "rule-bank-transfer"] {
            assert_eq!(artifacts.path(name), Some(artifacts.bank_transfer.as_path()));
        }
        assert_eq!(artifacts.path("probe"), Some(artifacts.probe.as_path()));
        assert!(artifacts.path("nope").is_none());
        assert!(crate::models_dir().join("account.toml").is_file());
    }
}
