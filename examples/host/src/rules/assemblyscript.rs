//! The AssemblyScript part of the rule builder.
//!
//! Each AssemblyScript rule is an npm project with one build script. For each one,
//! [`build_all`] runs, in the rule's directory,
//!
//! ```text
//! npm install --no-package-lock --no-audit --no-fund   # when node_modules is missing or stale
//! npm run build                                         # when the output is missing or stale
//! ```
//!
//! `npm install` runs when `node_modules` has not been installed since the rule's or the SDK's
//! `package.json` (or `.npmrc`) last changed; `npm run build` when the output is older than any
//! source of the rule or of the SDK (`guest-sdk/assemblyscript`: its AssemblyScript, its build
//! tool and its generated glue). Versions are pinned exactly in the `package.json` files and no
//! lockfile is written (each project's `.npmrc` says `package-lock=false`), so no registry
//! address ends up in the repository.
//!
//! Needs Node.js 20 or later with npm on the `PATH`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use anyhow::{Context as _, Result, bail};

/// One AssemblyScript rule: its short name, its npm project and the file its build script
/// writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsRule {
    /// The short name, as in [`super::RuleArtifacts::path`] (`shopping_cart_as`).
    pub name: &'static str,
    /// The npm project, relative to the workspace root.
    pub dir: &'static str,
    /// The output of `npm run build`, relative to `dir`.
    pub output: &'static str,
}

/// The AssemblyScript rules the builder builds.
pub const AS_RULES: [AsRule; 3] = [
    AsRule { name: "shopping_cart_as", dir: "examples/rules/shopping-cart-as", output: "build/shopping_cart.wasm" },
    AsRule { name: "user_profile_as", dir: "examples/rules/user-profile-as", output: "build/user_profile.wasm" },
    AsRule { name: "probe_as", dir: "guest-sdk/assemblyscript/tests/probe", output: "build/probe.wasm" },
];

/// The AssemblyScript guest SDK, relative to the workspace root.
pub const SDK_DIR: &str = "guest-sdk/assemblyscript";

/// Written into `node_modules` after a successful `npm install`.
const INSTALL_STAMP: &str = ".wasmtx-npm-install";

impl AsRule {
    /// Where `npm run build` writes the rule under the workspace `root`.
    pub fn output_in(&self, root: &Path) -> PathBuf {
        root.join(self.dir).join(self.output)
    }
}

/// Installs and builds every rule of [`AS_RULES`] that needs it.
///
/// # Errors
/// If npm is missing, or an install or a build fails (the error names the command and the
/// directory).
pub fn build_all(root: &Path) -> Result<()> {
    for rule in AS_RULES {
        build(root, &rule).with_context(|| format!("building the AssemblyScript rule {}", rule.dir))?;
    }
    Ok(())
}

/// Installs and builds one rule if needed.
///
/// # Errors
/// As [`build_all`].
pub fn build(root: &Path, rule: &AsRule) -> Result<()> {
    let dir = root.join(rule.dir);
    let sdk = root.join(SDK_DIR);

    let stamp = dir.join("node_modules").join(INSTALL_STAMP);
    let install_inputs = [dir.join("package.json"), dir.join(".npmrc"), sdk.join("package.json")];
    if !is_newer_than(&stamp, &install_inputs)? {
        npm(&dir, &["install", "--no-package-lock", "--no-audit", "--no-fund"])?;
        std::fs::write(&stamp, "npm install succeeded\n").with_context(|| format!("writing {}", stamp.display()))?;
    }

    let output = rule.output_in(root);
    let sources = [
        dir.join("assembly"),
        dir.join("package.json"),
        sdk.join("index.ts"),
        sdk.join("abi.ts"),
        sdk.join("package.json"),
        sdk.join("assembly"),
        sdk.join("tools"),
        stamp,
    ];
    if !is_newer_than(&output, &sources)? {
        npm(&dir, &["run", "build"])?;
        if !output.is_file() {
            bail!("`npm run build` succeeded but wrote no {}", output.display());
        }
    }
    Ok(())
}

/// Runs npm in `dir`, its output going to this process's stderr.
fn npm(dir: &Path, args: &[&str]) -> Result<()> {
    let shown = format!("npm {}", args.join(" "));
    let status = Command::new("npm")
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr()))
        .stderr(Stdio::inherit())
        .status()
        .with_context(|| {
            format!(
                "running `{shown}` in {}: the AssemblyScript rules need Node.js 20+ with npm on the PATH",
                dir.display()
            )
        })?;
    if !status.success() {
        bail!("`{shown}` failed in {} ({status})", dir.display());
    }
    Ok(())
}

/// Whether `target` exists and is newer than every file under `inputs` (files or directories,
/// which need not exist).
fn is_newer_than(target: &Path, inputs: &[PathBuf]) -> Result<bool> {
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
fn newest_mtime(path: &Path) -> Result<SystemTime> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(SystemTime::UNIX_EPOCH);
    };
    let mut newest = meta.modified().with_context(|| format!("reading the time of {}", path.display()))?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).with_context(|| format!("listing {}", path.display()))? {
            let entry = entry?;
            let name = entry.file_name();
            if name == "node_modules" || name == "build" {
                continue;
            }
            newest = newest.max(newest_mtime(&entry.path())?);
        }
    }
    Ok(newest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_is_an_npm_project_with_a_build_script_and_no_lockfile() -> Result<()> {
        let root = crate::workspace_root();
        for rule in AS_RULES {
            let dir = root.join(rule.dir);
            let manifest = std::fs::read_to_string(dir.join("package.json"))?;
            assert!(manifest.contains("\"build\""), "{} has a build script", rule.dir);
            assert!(manifest.contains(rule.output), "{}'s build writes {}", rule.dir, rule.output);
            let npmrc = std::fs::read_to_string(dir.join(".npmrc"))?;
            assert!(npmrc.contains("package-lock=false"), "{} writes no lockfile", rule.dir);
        }
        Ok(())
    }

    #[test]
    fn staleness_follows_modification_times() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("wasmtx-as-mtime-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("src"))?;
        let source = dir.join("src").join("a.ts");
        let output = dir.join("out.wasm");
        std::fs::write(&source, "1")?;
        assert!(!is_newer_than(&output, &[dir.join("src")])?, "a missing output is stale");
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&output, "x")?;
        assert!(is_newer_than(&output, &[dir.join("src"), dir.join("missing")])?);
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&source, "2")?;
        assert!(!is_newer_than(&output, &[dir.join("src")])?, "an edited source makes it stale");
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
