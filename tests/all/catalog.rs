//! The catalog of example rules (`wasmtx_examples`): names resolve to the built files, and
//! every AssemblyScript rule is an npm project that keeps registry addresses out of the
//! repository.

use anyhow::Result;
use wasmtx_examples::rules::AS_RULES;
use wasmtx_examples::{models_dir, workspace_root};

#[test]
fn rule_names_resolve_to_the_built_files() -> Result<()> {
    let artifacts = crate::rules()?;
    for name in ["bank_transfer", "bank-transfer", "rule-bank-transfer"] {
        assert_eq!(artifacts.path(name), Some(artifacts.bank_transfer.as_path()));
    }
    assert!(artifacts.bank_transfer.ends_with("wasm32-unknown-unknown/release/rule_bank_transfer.wasm"));
    assert_eq!(artifacts.path("probe"), Some(artifacts.probe.as_path()));
    assert!(artifacts.path("nope").is_none());
    for (name, path) in artifacts.iter().filter(|(name, _)| !name.ends_with("_as")) {
        assert!(path.is_file(), "{name} was built at {}", path.display());
    }
    assert!(models_dir().join("account.toml").is_file());
    Ok(())
}

#[test]
fn every_assemblyscript_rule_is_an_npm_project_with_a_build_script_and_no_lockfile() -> Result<()> {
    let root = workspace_root();
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
