//! Building AssemblyScript rule projects (npm projects whose build script runs the guest
//! SDK's `wasmtx-as build`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock, PoisonError};

use super::{Progress, is_newer_than, lock_dir, run};
use crate::testing::HarnessError;

/// Written into `node_modules` after a successful `npm install`.
const INSTALL_STAMP: &str = ".wasmtx-npm-install";

/// A build of one AssemblyScript rule: an npm project with a `build` script that writes
/// `output`. It runs, in the project,
///
/// ```text
/// npm install --no-package-lock --no-audit --no-fund   # when node_modules is missing or stale
/// npm run build                                         # when the output is missing or stale
/// ```
///
/// `npm install` runs when `node_modules` has not been installed since the project's (or the
/// SDK's) `package.json` or `.npmrc` last changed; `npm run build` when the output is older than
/// any source of the project (`assembly/`, `package.json`) or of the SDK (its AssemblyScript,
/// its build tool and its generated glue). Versions belong pinned exactly in the `package.json`
/// files with no lockfile written (`package-lock=false` in the project's `.npmrc`), so no
/// registry address ends up in a repository. Needs Node.js 20 or later with npm on the `PATH`.
#[derive(Debug, Clone)]
pub struct AssemblyScriptBuild {
    project: PathBuf,
    output: PathBuf,
    sdk: Option<PathBuf>,
    progress: Progress,
}

impl AssemblyScriptBuild {
    /// A build of the npm project in `project` whose `npm run build` writes `output` (relative
    /// to the project).
    pub fn new(project: impl Into<PathBuf>, output: impl AsRef<Path>) -> Self {
        let project = project.into();
        let output = project.join(output);
        Self { project, output, sdk: None, progress: Progress::Captured }
    }

    /// The guest SDK the project builds with (`guest-sdk/assemblyscript`, installed from a
    /// `file:` path): its changes make the rule stale too.
    #[must_use]
    pub fn sdk(mut self, dir: impl Into<PathBuf>) -> Self {
        self.sdk = Some(dir.into());
        self
    }

    /// Shows npm's output on this process's stderr as it comes (default: kept, and shown only
    /// if a step fails).
    #[must_use]
    pub fn show_progress(mut self, on: bool) -> Self {
        self.progress = if on { Progress::Shown } else { Progress::Captured };
        self
    }

    /// Where the build writes the rule.
    pub fn output(&self) -> &Path {
        &self.output
    }

    /// Installs and builds if needed (once per process for the same project), and returns the
    /// rule's path.
    ///
    /// # Errors
    ///
    /// [`HarnessError::Build`] if npm is missing, or an install or a build fails (with npm's
    /// output), or the build wrote no output. A failure is remembered like a success.
    pub fn build(&self) -> Result<PathBuf, HarnessError> {
        static BUILT: OnceLock<Mutex<HashMap<PathBuf, Result<PathBuf, String>>>> = OnceLock::new();
        let mut built = BUILT.get_or_init(Mutex::default).lock().unwrap_or_else(PoisonError::into_inner);
        let result = built.entry(self.output.clone()).or_insert_with(|| self.build_now()).clone();
        drop(built);
        result.map_err(|reason| HarnessError::Build { crate_dir: self.project.clone(), reason })
    }

    fn build_now(&self) -> Result<PathBuf, String> {
        let dir = &self.project;
        let lock = lock_dir(&dir.join("node_modules"))?;
        let stamp = dir.join("node_modules").join(INSTALL_STAMP);
        let mut install_inputs = vec![dir.join("package.json"), dir.join(".npmrc")];
        let mut sources = vec![dir.join("assembly"), dir.join("package.json")];
        if let Some(sdk) = &self.sdk {
            install_inputs.push(sdk.join("package.json"));
            sources.extend(["index.ts", "abi.ts", "package.json", "assembly", "tools"].map(|p| sdk.join(p)));
        }
        if !is_newer_than(&stamp, &install_inputs)? {
            self.npm(&["install", "--no-package-lock", "--no-audit", "--no-fund"])?;
            std::fs::write(&stamp, "npm install succeeded\n")
                .map_err(|e| format!("writing {}: {e}", stamp.display()))?;
        }
        sources.push(stamp);
        if !is_newer_than(&self.output, &sources)? {
            self.npm(&["run", "build"])?;
            if !self.output.is_file() {
                return Err(format!("`npm run build` succeeded but wrote no {}", self.output.display()));
            }
        }
        drop(lock);
        Ok(self.output.clone())
    }

    fn npm(&self, args: &[&str]) -> Result<(), String> {
        let mut command = Command::new("npm");
        command.current_dir(&self.project).args(args);
        run(&mut command, self.progress).map(drop).map_err(|e| {
            format!("{e} (in {}; AssemblyScript rules need Node.js 20+ with npm on the PATH)", self.project.display())
        })
    }
}
