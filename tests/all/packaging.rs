//! The SDKs and the engine could be published as they are: each crate has the metadata a
//! registry asks for and its package holds every file its build reads (the WIT contract, the
//! Functions library), and the AssemblyScript SDK's `npm pack` holds its sources and tools.
//! (`cargo package -p wasmtx-guest-derive -p wasmtx-guest` also builds the two SDK packages,
//! and `cargo package -p wasmtx` the engine's: minutes of compiling, so not here.)

use std::process::Command;

use anyhow::{Context as _, Result, ensure};
use serde_json::Value;
use wasmtx_examples::workspace_root;

/// The crates meant for a registry, and files each package must hold.
const CRATES: [(&str, &[&str]); 3] = [
    (
        "wasmtx",
        &[
            "wit/wasmtx.wit",
            "src/store/redis/library.lua",
            "README.md",
            "Cargo.toml",
            // `wasmtx new`'s templates (a `Cargo.toml` there would make cargo leave the folder out).
            "src/bin/wasmtx/templates/rust/Cargo.toml.in",
            "src/bin/wasmtx/templates/assemblyscript/package.json",
        ],
    ),
    ("wasmtx-guest", &["wit/wasmtx.wit", "README.md", "src/lib.rs"]),
    ("wasmtx-guest-derive", &["src/lib.rs", "Cargo.toml"]),
];

fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(workspace_root());
    command
}

/// Each crate has a description, license, repository, keywords and categories, is not marked
/// `publish = false`, and every dependency it would publish with has a version.
#[test]
fn the_crates_carry_registry_metadata() -> Result<()> {
    let out = cargo().args(["metadata", "--no-deps", "--format-version", "1"]).output()?;
    ensure!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let metadata: Value = serde_json::from_slice(&out.stdout)?;
    let packages = metadata["packages"].as_array().context("no packages")?;
    for (name, _) in CRATES {
        let package = packages.iter().find(|p| p["name"] == name).with_context(|| format!("no crate {name}"))?;
        for field in ["description", "license", "repository"] {
            ensure!(package[field].as_str().is_some_and(|v| !v.is_empty()), "{name}: no {field}");
        }
        for field in ["keywords", "categories"] {
            ensure!(package[field].as_array().is_some_and(|v| !v.is_empty()), "{name}: no {field}");
        }
        ensure!(package["publish"].as_array().is_none_or(|r| !r.is_empty()), "{name} is marked publish = false");
        for dep in package["dependencies"].as_array().into_iter().flatten().filter(|d| d["kind"] != "dev") {
            ensure!(
                dep["path"].is_null() || dep["req"] != "*",
                "{name}: dependency {} is by path only (no version)",
                dep["name"]
            );
        }
    }
    Ok(())
}

/// `cargo package --list` of each crate holds the files its build reads from outside `src/`
/// (the WIT is a link to the top-level `wit/`, followed when packaging).
#[test]
fn each_crate_package_holds_what_its_build_reads() -> Result<()> {
    for (name, files) in CRATES {
        let out = cargo().args(["package", "--list", "--allow-dirty", "-p", name]).output()?;
        ensure!(out.status.success(), "cargo package --list -p {name}: {}", String::from_utf8_lossy(&out.stderr));
        let listed = String::from_utf8(out.stdout)?;
        for file in files {
            ensure!(listed.lines().any(|l| l == *file), "{name}: {file} is not in the package:\n{listed}");
        }
    }
    Ok(())
}

/// `npm pack --dry-run` of the AssemblyScript SDK: not private, and holds its sources, the
/// generated glue and the `wasmtx-as` tool its `bin` names.
#[test]
fn the_assemblyscript_sdk_packs() -> Result<()> {
    let dir = workspace_root().join("guest-sdk/assemblyscript");
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("package.json"))?)?;
    ensure!(manifest["private"].is_null(), "package.json is private");
    for field in ["name", "version", "description", "license"] {
        ensure!(manifest[field].as_str().is_some_and(|v| !v.is_empty()), "package.json: no {field}");
    }
    ensure!(manifest["repository"]["url"].is_string(), "package.json: no repository");
    let out = Command::new("npm")
        .args(["pack", "--dry-run", "--json", "--ignore-scripts"])
        .current_dir(&dir)
        .output()
        .context("running npm (see the README: Node.js and npm)")?;
    ensure!(out.status.success(), "npm pack: {}", String::from_utf8_lossy(&out.stderr));
    let packed: Value = serde_json::from_slice(&out.stdout)?;
    let files: Vec<&str> =
        packed[0]["files"].as_array().context("no files")?.iter().filter_map(|f| f["path"].as_str()).collect();
    let bin = manifest["bin"]["wasmtx-as"].as_str().context("no wasmtx-as bin")?;
    for needed in [
        bin,
        "tools/generated/world.mjs",
        "index.ts",
        "assembly/index.ts",
        "assembly/generated/bindings.ts",
        "README.md",
    ] {
        ensure!(files.contains(&needed), "npm pack leaves out {needed}: {files:?}");
    }
    ensure!(!files.iter().any(|f| f.starts_with("tests/") || f.starts_with("node_modules/")), "{files:?}");
    Ok(())
}
