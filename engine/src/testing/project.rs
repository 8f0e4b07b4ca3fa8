//! What kind of rule project a directory is (a Rust crate or an AssemblyScript npm project),
//! building it, and refusing a `.wasm` that is older than the sources of its project.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::HarnessError;
use super::build::{AssemblyScriptBuild, build_rule_crate, newest_file};

/// A rule project: the directory of a Rust rule crate or of an AssemblyScript rule.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RuleProject {
    /// A directory with a `Cargo.toml`: built for `wasm32-unknown-unknown`
    /// ([`build_rule_crate`]).
    Rust {
        /// The crate's directory.
        dir: PathBuf,
    },
    /// A directory with a `package.json` whose `build` script writes the rule with `-o`
    /// (`wasmtx-as build assembly/index.ts -o build/rule.wasm`): built with `npm install` and
    /// `npm run build` when its sources are newer than the output ([`AssemblyScriptBuild`]).
    AssemblyScript {
        /// The project's directory.
        dir: PathBuf,
        /// The `.wasm` its build script writes, relative to `dir`.
        output: PathBuf,
        /// The rule's name: the package's `name` (or the directory's).
        name: String,
    },
}

impl RuleProject {
    /// The kind of project in `dir`: a `Cargo.toml` makes it Rust, else a `package.json` with a
    /// `build` script naming its output makes it AssemblyScript.
    ///
    /// # Errors
    ///
    /// [`HarnessError::UnknownProject`] if it is neither, or its `package.json` cannot be read
    /// or names no output.
    pub fn detect(dir: impl AsRef<Path>) -> Result<Self, HarnessError> {
        let dir = dir.as_ref();
        let unknown = |reason: String| HarnessError::UnknownProject { dir: dir.to_path_buf(), reason };
        if dir.join("Cargo.toml").is_file() {
            return Ok(Self::Rust { dir: dir.to_path_buf() });
        }
        let manifest = dir.join("package.json");
        if !manifest.is_file() {
            return Err(unknown(
                "it has neither a Cargo.toml (a Rust rule crate) nor a package.json (an AssemblyScript rule)".into(),
            ));
        }
        let text = std::fs::read_to_string(&manifest).map_err(|e| unknown(format!("cannot read package.json: {e}")))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| unknown(format!("package.json is not JSON: {e}")))?;
        let Some(script) = json["scripts"]["build"].as_str() else {
            return Err(unknown(
                "its package.json has no `build` script (`wasmtx-as build assembly/index.ts -o build/rule.wasm`)"
                    .into(),
            ));
        };
        let output = output_of(script).ok_or_else(|| {
            unknown(format!("its `build` script ({script:?}) does not name the .wasm it writes with `-o <file>`"))
        })?;
        let name = json["name"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        Ok(Self::AssemblyScript { dir: dir.to_path_buf(), output, name: super::rule_name_of(&name) })
    }

    /// Builds the rule if needed and returns its `.wasm` file.
    ///
    /// # Errors
    ///
    /// [`HarnessError::Build`] with the tool's output.
    pub fn build(&self) -> Result<PathBuf, HarnessError> {
        match self {
            Self::Rust { dir } => build_rule_crate(dir),
            Self::AssemblyScript { dir, output, .. } => {
                let mut build = AssemblyScriptBuild::new(dir, output);
                // A `file:` dependency on the SDK is a link to its sources: their changes count.
                let sdk = dir.join("node_modules").join("wasmtx-guest");
                if sdk.is_dir() {
                    build = build.sdk(sdk);
                }
                build.build()
            }
        }
    }

    /// The name the harness gives the rule: an AssemblyScript project's package name (its
    /// `.wasm` is usually `build/rule.wasm`); `None` for a Rust crate, named after its library.
    pub fn rule_name(&self) -> Option<&str> {
        match self {
            Self::Rust { .. } => None,
            Self::AssemblyScript { name, .. } => Some(name),
        }
    }

    /// The name the harness (and `wasmtx build`) gives the rule built to `wasm`: an
    /// AssemblyScript project's package name, a Rust crate's library name (`-` for `_`).
    pub fn rule_name_for(&self, wasm: &Path) -> String {
        match self {
            Self::Rust { .. } => super::rule_name(wasm),
            Self::AssemblyScript { name, .. } => name.clone(),
        }
    }

    /// The project's directory.
    pub fn dir(&self) -> &Path {
        match self {
            Self::Rust { dir } | Self::AssemblyScript { dir, .. } => dir,
        }
    }

    /// The files and directories a build reads: a change to any of them makes the output stale.
    fn sources(&self) -> Vec<PathBuf> {
        match self {
            Self::Rust { dir } => vec![dir.join("src"), dir.join("Cargo.toml")],
            Self::AssemblyScript { dir, .. } => {
                vec![dir.join("assembly"), dir.join("package.json"), dir.join("asconfig.json")]
            }
        }
    }
}

/// The argument of `-o` (or `--out`/`--output`) in a build script.
fn output_of(script: &str) -> Option<PathBuf> {
    let mut words = script.split_whitespace();
    while let Some(word) = words.next() {
        if matches!(word, "-o" | "--out" | "--output") {
            return words.next().map(PathBuf::from);
        }
        if let Some(path) = word.strip_prefix("--out=").or_else(|| word.strip_prefix("--output=")) {
            return Some(PathBuf::from(path));
        }
    }
    None
}

/// Refuses a `.wasm` file older than a source of the nearest project directory above it (the
/// first ancestor with a `Cargo.toml` or a `package.json`). A file in no project passes.
///
/// # Errors
///
/// [`HarnessError::StaleRule`] naming a newer source; [`HarnessError::Io`] if the file's time
/// cannot be read.
pub(super) fn check_fresh(wasm: &Path) -> Result<(), HarnessError> {
    let absolute = std::path::absolute(wasm).unwrap_or_else(|_| wasm.to_path_buf());
    let Some(project) = absolute.ancestors().skip(1).find_map(|dir| RuleProject::detect(dir).ok()) else {
        return Ok(());
    };
    let built = std::fs::metadata(wasm)
        .and_then(|m| m.modified())
        .map_err(|source| HarnessError::Io { path: wasm.to_path_buf(), source })?;
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for source in project.sources() {
        if let Some((time, path)) = newest_file(&source)
            && newest.as_ref().is_none_or(|(t, _)| time > *t)
        {
            newest = Some((time, path));
        }
    }
    match newest {
        Some((time, newer)) if time > built => {
            Err(HarnessError::StaleRule { wasm: wasm.to_path_buf(), project: project.dir().to_path_buf(), newer })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_output_is_read_from_the_build_script() {
        assert_eq!(output_of("wasmtx-as build assembly/index.ts -o build/rule.wasm"), Some("build/rule.wasm".into()));
        assert_eq!(output_of("asc a.ts --outFile x --out=b.wasm"), Some("b.wasm".into()));
        assert_eq!(output_of("wasmtx-as build assembly/index.ts"), None);
    }

    #[test]
    fn a_directory_is_a_rust_crate_an_assemblyscript_project_or_refused() -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("wasmtx-project-kind-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let err = RuleProject::detect(&dir).expect_err("empty");
        assert!(matches!(err, HarnessError::UnknownProject { .. }), "{err}");
        assert!(err.to_string().contains("neither a Cargo.toml"), "{err}");
        std::fs::write(dir.join("package.json"), r#"{"scripts": {"build": "wasmtx-as build a.ts"}}"#)?;
        let err = RuleProject::detect(&dir).expect_err("no output").to_string();
        assert!(err.contains("does not name the .wasm it writes"), "{err}");
        std::fs::write(dir.join("package.json"), r#"{"scripts": {"build": "wasmtx-as build a.ts -o build/r.wasm"}}"#)?;
        assert_eq!(
            RuleProject::detect(&dir)?,
            RuleProject::AssemblyScript {
                dir: dir.clone(),
                output: "build/r.wasm".into(),
                name: format!("wasmtx-project-kind-{}", std::process::id())
            }
        );
        std::fs::write(dir.join("Cargo.toml"), "[package]\nname = \"r\"\n")?;
        assert_eq!(RuleProject::detect(&dir)?, RuleProject::Rust { dir: dir.clone() });
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
