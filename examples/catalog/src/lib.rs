//! The catalog of the wasmtx example rules: where the example rules, the example model schemas
//! and the probe test rules are, and how to build them ([`rules`], with
//! `wasmtx::testing`'s rule builders).
//!
//! The demo and the benchmark (`examples/host`) and the integration tests (`tests/`) all take
//! their rules from here; none of them depends on another.

use std::path::{Path, PathBuf};

pub mod rules;

/// The root of the wasmtx workspace (the directory of its `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    // This crate lives at `<root>/examples/catalog`.
    manifest_dir.ancestors().nth(2).unwrap_or(manifest_dir).to_path_buf()
}

/// The directory of the example model schemas (`examples/models`): `account.toml`,
/// `game_character.toml` and `user.toml`.
pub fn models_dir() -> PathBuf {
    workspace_root().join("examples").join("models")
}
