//! `wasmtx build`: build the rule project in a directory (a Rust crate for
//! `wasm32-unknown-unknown`, or an AssemblyScript project with its `build` script), check the
//! result the way an upload would, and say what was made.

use serde::Serialize;
use wasmtx::registry::RegistryError;
use wasmtx::testing::{HarnessError, RuleProject};
use wasmtx::{Engine, ErrorClass, ErrorKind};

use crate::args::BuildArgs;
use crate::failure::Failure;
use crate::output::Output;

/// What `wasmtx build` made.
#[derive(Debug, Serialize)]
struct Built {
    /// The rule's name (what the harness and the guides upload it as).
    rule: String,
    /// `rust` or `assemblyscript`.
    language: &'static str,
    /// The `.wasm` file.
    wasm: String,
    size: usize,
    sha256: String,
    /// The `wasmtx:rule` package version it imports.
    wit_version: String,
    /// Whether it is a core module the engine wraps into a component on upload.
    core_module: bool,
    /// What it exports (the world's `run`).
    exports: Vec<&'static str>,
}

pub fn run(args: &BuildArgs, out: Output) -> Result<(), Failure> {
    let project = RuleProject::detect(&args.dir).map_err(|e| Failure::input(e.to_string()))?;
    let language = match &project {
        RuleProject::Rust { .. } => "rust",
        RuleProject::AssemblyScript { .. } => "assemblyscript",
        _ => "unknown",
    };
    let wasm = project.build().map_err(|e| build_failure(&e))?;
    let bytes = std::fs::read(&wasm).map_err(|e| {
        Failure::new(ErrorClass::Refused, ErrorKind::BuildFailed, format!("reading {}: {e}", wasm.display()))
    })?;
    let rule = project.rule_name_for(&wasm);
    // Checked as an upload is: the same size limit, import allow-list, world and compile.
    let engine = Engine::builder().build().map_err(|e| Failure::engine(&e))?;
    let compiled = engine.compile_rule(&rule, &bytes).map_err(|e| match e {
        // The kinds an upload of these bytes would be refused with (`not_a_rule`, ...).
        wasmtx::Error::InvalidRule(error) => Failure::from(RegistryError::InvalidRule { name: rule.clone(), error }),
        other => Failure::engine(&other),
    })?;
    let built = Built {
        rule,
        language,
        wasm: shown(&wasm),
        size: compiled.compiled().size(),
        sha256: compiled.compiled().digest().to_owned(),
        wit_version: compiled.compiled().wit_version().to_owned(),
        core_module: compiled.compiled().from_core_module(),
        exports: vec!["run"],
    };
    out.show(&built, || text(&built));
    Ok(())
}

/// `path` as a user would type it from here: relative to the current directory when under it.
fn shown(path: &std::path::Path) -> String {
    let relative = std::env::current_dir().ok().and_then(|cwd| path.strip_prefix(cwd).ok().map(ToOwned::to_owned));
    let path = relative.as_deref().unwrap_or(path);
    let path = path.strip_prefix(".").unwrap_or(path);
    path.display().to_string()
}

fn text(b: &Built) -> String {
    let form = if b.core_module { "core module (wrapped into a component on upload)" } else { "component" };
    format!(
        "built {} ({}): {}\n  size     {} bytes\n  sha256   {}\n  form     {form}, wasmtx:rule@{}\n  exports  {}\nupload it with: wasmtx rule upload {} {} --activate",
        b.rule,
        b.language,
        b.wasm,
        b.size,
        b.sha256,
        b.wit_version,
        b.exports.join(", "),
        b.rule,
        b.wasm,
    )
}

/// A failed build: the tool's output, with a hint when the toolchain or the target is missing.
fn build_failure(error: &HarnessError) -> Failure {
    let message = error.to_string();
    let hint = if message.contains("wasm32-unknown-unknown") && message.contains("target may not be installed") {
        "\nhint: rustup target add wasm32-unknown-unknown"
    } else if message.contains("cannot run `cargo") {
        "\nhint: install Rust with rustup (the README says how)"
    } else if message.contains("cannot run `npm") {
        "\nhint: install Node.js 20 or later, with npm"
    } else {
        ""
    };
    Failure::new(ErrorClass::Refused, ErrorKind::BuildFailed, format!("{message}{hint}"))
}
