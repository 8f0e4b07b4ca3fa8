//! The example rules and the probe test rules, built from source.
//!
//! [`build_rules`] builds the Rust ones, once per process, in one cargo invocation:
//!
//! ```text
//! cargo build --release --target wasm32-unknown-unknown \
//!     -p rule-bank-transfer -p rule-level-up ... -p rule-probe \
//!     --target-dir <workspace>/target/rules
//! ```
//!
//! and [`build_assemblyscript_rules`] the AssemblyScript ones (`npm install` and `npm run build`
//! in each rule's npm project, each only when its inputs changed; needs Node.js 20+ with npm),
//! both through `wasmtx::testing`'s builders ([`RustRuleBuild`], [`AssemblyScriptBuild`]),
//! which say how flags, freshness and parallel processes are handled.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context as _, Result, anyhow};
use wasmtx::testing::{AssemblyScriptBuild, RustRuleBuild};

use crate::workspace_root;

/// The Rust rule packages [`build_rules`] builds, with their short names.
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

/// One AssemblyScript rule: its short name, its npm project and the file its build script
/// writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsRule {
    /// The short name, as in [`RuleArtifacts::path`] (`shopping_cart_as`).
    pub name: &'static str,
    /// The npm project, relative to the workspace root.
    pub dir: &'static str,
    /// The output of `npm run build`, relative to `dir`.
    pub output: &'static str,
}

/// The AssemblyScript rules [`build_assemblyscript_rules`] builds.
pub const AS_RULES: [AsRule; 3] = [
    AsRule { name: "shopping_cart_as", dir: "examples/rules/shopping-cart-as", output: "build/shopping_cart.wasm" },
    AsRule { name: "user_profile_as", dir: "examples/rules/user-profile-as", output: "build/user_profile.wasm" },
    AsRule { name: "probe_as", dir: "guest-sdk/assemblyscript/tests/probe", output: "build/probe.wasm" },
];

/// The AssemblyScript guest SDK, relative to the workspace root.
pub const SDK_DIR: &str = "guest-sdk/assemblyscript";

impl AsRule {
    /// The build of this rule under the workspace `root`.
    pub fn build_in(&self, root: &Path) -> AssemblyScriptBuild {
        AssemblyScriptBuild::new(root.join(self.dir), self.output).sdk(root.join(SDK_DIR)).show_progress(true)
    }
}

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
    /// Every rule as `(short name, path)`, short names as in [`RULE_PACKAGES`] and
    /// [`AS_RULES`].
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

/// Builds the Rust example rules and the probe (once per process; later calls return the same
/// result) and returns where every rule is (the AssemblyScript ones are built by
/// [`build_assemblyscript_rules`]). Cargo's progress goes to this process's stderr.
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
/// npm), once per process, and returns where every rule is. The Rust rules and the demo do not
/// need this.
///
/// # Errors
/// If npm or a build fails; remembered like [`build_rules`].
pub fn build_assemblyscript_rules() -> Result<&'static RuleArtifacts> {
    let artifacts = build_rules()?;
    let root = workspace_root();
    for rule in AS_RULES {
        rule.build_in(&root).build().with_context(|| format!("building the AssemblyScript rule {}", rule.dir))?;
    }
    Ok(artifacts)
}

fn build_rules_now() -> Result<RuleArtifacts> {
    let root = workspace_root();
    let mut build = RustRuleBuild::new(&root).target_dir(root.join("target").join("rules")).show_progress(true);
    for (_, package) in RULE_PACKAGES {
        build = build.package(package);
    }
    let built = build.build()?;
    let rust = |short: &str| -> Result<PathBuf> {
        let package = RULE_PACKAGES.iter().find(|(s, _)| *s == short).map(|(_, p)| *p).unwrap_or_default();
        built.get(package).map(Path::to_path_buf).ok_or_else(|| anyhow!("the build gave no {package}"))
    };
    let assemblyscript = |short: &str| -> PathBuf {
        AS_RULES.iter().find(|r| r.name == short).map(|r| r.build_in(&root).output().to_path_buf()).unwrap_or_default()
    };
    Ok(RuleArtifacts {
        bank_transfer: rust("bank_transfer")?,
        level_up: rust("level_up")?,
        user_progress: rust("user_progress")?,
        complete_level: rust("complete_level")?,
        counter: rust("counter")?,
        probe: rust("probe")?,
        shopping_cart: rust("shopping_cart")?,
        user_profile: rust("user_profile")?,
        shopping_cart_as: assemblyscript("shopping_cart_as"),
        user_profile_as: assemblyscript("user_profile_as"),
        probe_as: assemblyscript("probe_as"),
    })
}
