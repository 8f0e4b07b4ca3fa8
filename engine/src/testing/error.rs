//! What can go wrong setting up a harness: [`HarnessError`].

use std::path::PathBuf;

use crate::error::Error;

/// Why setting up a harness, seeding or reading a model failed. (A failed *invocation* is
/// not a harness error: it is the [`Run`](super::Run)'s result, to assert on.)
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Building a rule (a Rust crate or an AssemblyScript project) failed.
    #[error("building the rule in {}: {reason}", crate_dir.display())]
    Build {
        /// The crate's (or project's) directory.
        crate_dir: PathBuf,
        /// What failed, with the tool's output.
        reason: String,
    },
    /// The engine refused something: a schema, rule bytes, a model id.
    #[error(transparent)]
    Engine(#[from] Error),
    /// A model's seed state does not fit its schema, or a model name is malformed.
    #[error("model {model}: {reason}")]
    Model {
        /// The model, as given.
        model: String,
        /// What is wrong.
        reason: String,
    },
    /// No rule is loaded, or none of this name.
    #[error("{0}")]
    NoRule(String),
    /// A directory that is neither a Rust rule crate (`Cargo.toml`) nor an AssemblyScript rule
    /// project (`package.json` whose `build` script writes the `.wasm` with `-o`).
    #[error("{} is not a rule project: {reason}", dir.display())]
    UnknownProject {
        /// The directory.
        dir: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// A `.wasm` file older than a source of the project it was built from: testing it would
    /// test an old build. Build it again, or give the project's directory (which builds it).
    #[error(
        "{} is older than {} (a source of the project in {}): build it again, or name the project's directory as the rule",
        wasm.display(),
        newer.display(),
        project.display()
    )]
    StaleRule {
        /// The `.wasm` file.
        wasm: PathBuf,
        /// The project it belongs to.
        project: PathBuf,
        /// A source file changed after the build.
        newer: PathBuf,
    },
}
