//! `wasmtx build`: a Rust crate and an AssemblyScript project are built, checked as an upload
//! would check them, and described (size, digest, exports); the artefact uploads with the same
//! digest. What is not a rule project, what does not build and what builds but is no rule are
//! refused with their kinds and exit codes.

use std::path::Path;

use anyhow::{Context as _, Result, ensure};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use wasmtx_examples::workspace_root;

use crate::process::{TempDir, run_in};

fn build_json(dir: &Path, project: &Path) -> Result<Value> {
    let project = project.to_str().context("a UTF-8 path")?;
    run_in(dir, &["--json", "build", project])?.expect(0)?.json()
}

/// Both languages: the artefact exists, its digest is the file's, it exports `run`, and
/// uploading it stores the same digest.
#[test]
fn a_rule_project_is_built_described_and_uploads_as_built() -> Result<()> {
    let dir = TempDir::new("build-cmd")?;
    let examples = workspace_root().join("examples/rules");
    for (project, language) in [("counter", "rust"), ("shopping-cart-as", "assemblyscript")] {
        let built = build_json(dir.path(), &examples.join(project))?;
        ensure!(built["language"] == language, "{project}: {built}");
        ensure!(built["exports"] == serde_json::json!(["run"]), "{project}: {built}");
        let wasm = Path::new(built["wasm"].as_str().context("no wasm path")?);
        let wasm = if wasm.is_absolute() { wasm.to_path_buf() } else { dir.path().join(wasm) };
        let bytes = std::fs::read(&wasm).with_context(|| wasm.display().to_string())?;
        ensure!(built["size"] == bytes.len(), "{project}: size {} vs {}", built["size"], bytes.len());
        ensure!(built["sha256"] == hex::encode(Sha256::digest(&bytes)), "{project}: digest");

        let rule = built["rule"].as_str().context("no rule name")?;
        let uploaded = run_in(dir.path(), &["--json", "rule", "upload", rule, wasm.to_str().context("UTF-8")?])?
            .expect(0)?
            .json()?;
        let text = uploaded.to_string();
        ensure!(text.contains(built["sha256"].as_str().unwrap_or("?")), "{project}: uploaded {text}");
    }
    // Text for people: the artefact, its size and digest, and how to upload it.
    let text = run_in(dir.path(), &["build", examples.join("counter").to_str().context("UTF-8")?])?.expect(0)?;
    for needed in ["built rule-counter (rust)", "sha256", "exports  run", "wasmtx rule upload rule-counter"] {
        ensure!(text.stdout.contains(needed), "{needed:?} not in {}", text.stdout);
    }
    Ok(())
}

/// A directory that is no rule project is bad input (exit 3); a crate that does not compile is
/// `build_failed` (exit 6) with the compiler's message; a crate that builds but exports no
/// rule is refused as an upload would be (`not_a_rule`, exit 6).
#[test]
fn what_is_not_a_rule_project_or_does_not_build_or_is_no_rule_is_refused() -> Result<()> {
    let dir = TempDir::new("build-refusals")?;
    let d = dir.path();
    let empty = d.join("empty");
    std::fs::create_dir_all(&empty)?;
    let refused = run_in(d, &["--json", "build", "empty"])?.expect(3)?;
    ensure!(
        refused.stderr.contains("\"bad_input\"") && refused.stderr.contains("not a rule project"),
        "{}",
        refused.stderr
    );

    let manifest = "[package]\nname = \"plain\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[lib]\ncrate-type = [\"cdylib\"]\n\n[workspace]\n";
    for (name, source, kind, text) in [
        ("broken", "pub fn f() -> u32 { \"not a number\" }\n", "build_failed", "mismatched types"),
        ("plain", "#[unsafe(no_mangle)]\npub extern \"C\" fn f() -> u32 { 1 }\n", "not_a_rule", ""),
    ] {
        let krate = d.join(name);
        std::fs::create_dir_all(krate.join("src"))?;
        std::fs::write(krate.join("Cargo.toml"), manifest.replace("plain", name))?;
        std::fs::write(krate.join("src/lib.rs"), source)?;
        let failed = run_in(d, &["--json", "build", name])?.expect(6)?;
        let body: Value = serde_json::from_str(failed.stderr.trim()).with_context(|| failed.stderr.clone())?;
        ensure!(body["error"]["kind"] == kind, "{name}: {body}");
        ensure!(body["error"]["message"].as_str().is_some_and(|m| m.contains(text)), "{name}: {body}");
    }
    Ok(())
}
