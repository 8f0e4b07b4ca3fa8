//! The wasmtx examples, host side: the builder that compiles the example rules to WebAssembly
//! ([`rules`]), and where the example model schemas live ([`models_dir`]).
//!
//! The `demo` binary of this package runs the example rules on an engine.

use std::path::{Path, PathBuf};

pub mod rules;

/// The root of the wasmtx workspace (the directory of its `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    // This crate lives at `<root>/examples/host`.
    manifest_dir.ancestors().nth(2).unwrap_or(manifest_dir).to_path_buf()
}

/// The directory of the example model schemas (`examples/models`): `account.toml`,
/// `game_character.toml` and `user.toml`.
pub fn models_dir() -> PathBuf {
    workspace_root().join("examples").join("models")
}
