//! The bad-input table of `ERRORS.md` cannot rot: every test it cites exists.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail, ensure};
use wasmtx::ErrorKind;
use wasmtx_examples::workspace_root;

/// The bad-input table cites tests as `module::name` (a function of `tests/all/<module>.rs`, or
/// of `tests/all/<module>/mod.rs`), `module::sub::name` (of `tests/all/<module>/<sub>.rs`, or
/// `.../<sub>/mod.rs`) or `engine/src/<path>.rs::name` (a unit test): every one must exist,
/// every row must cite one, every kind it names must be an error kind, and every test of
/// `tests/all/bad_input/` must be cited.
#[test]
fn every_test_the_bad_input_table_cites_exists() -> Result<()> {
    let root = workspace_root();
    let text = std::fs::read_to_string(root.join("ERRORS.md"))?;
    let start = text.find("\n# Bad input").context("ERRORS.md has no `# Bad input` part")?;
    let part = &text[start..];
    let mut rows = 0;
    let mut cited = std::collections::BTreeSet::new();
    for line in part.lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if cells.len() < 5 || cells[0] == "bad input" || cells[0].starts_with("---") {
            continue;
        }
        rows += 1;
        for kind in backticked(cells[1]) {
            kind.parse::<ErrorKind>().with_context(|| format!("row {line:?}: `{kind}` is not an error kind"))?;
        }
        let tests = backticked(cells[4]);
        ensure!(!tests.is_empty(), "row {line:?} cites no test");
        for test in tests {
            let (file, name) = match test.rsplit_once("::") {
                Some((path, name)) if path.starts_with("engine/src/") && path.ends_with(".rs") => {
                    (root.join(path), name)
                }
                Some((module, name)) if module.split("::").all(is_identifier) => {
                    (test_module_file(&root, module), name)
                }
                _ => bail!(
                    "row {line:?}: `{test}` is not `module::name`, `module::sub::name` or `engine/src/<file>.rs::name`"
                ),
            };
            let source = std::fs::read_to_string(&file).with_context(|| format!("`{test}`: no {}", file.display()))?;
            ensure!(source.contains(&format!("fn {name}(")), "`{test}`: {} has no `fn {name}(`", file.display());
            cited.insert(test.to_owned());
        }
    }
    ensure!(rows >= 100, "the bad-input table has only {rows} rows");
    // Every test of `bad_input` that proves rows (the ones run on both stores, registered by
    // each submodule) is cited, by its module path.
    let dir = root.join("tests").join("all").join("bad_input");
    let mut names = Vec::new();
    for (module, file) in module_files(&dir, "bad_input")? {
        let source = std::fs::read_to_string(&file)?;
        for list in source.split("\non_both_stores!(").skip(1) {
            let list = list.split(");").next().unwrap_or_default();
            names.extend(list.split(',').map(str::trim).filter(|n| !n.is_empty()).map(|n| format!("{module}::{n}")));
        }
    }
    ensure!(names.len() >= 9, "the test lists of tests/all/bad_input/ were not found: {names:?}");
    for name in names {
        ensure!(cited.contains(&name), "ERRORS.md's bad-input table does not cite {name}");
    }
    Ok(())
}

/// Whether `s` can be a segment of a module path (a Rust identifier, ASCII).
fn is_identifier(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The file of the integration-test module `a::b` (a path of `tests/all`'s modules):
/// `tests/all/a/b.rs`, or `tests/all/a/b/mod.rs` when that is where it is.
fn test_module_file(root: &Path, module: &str) -> PathBuf {
    let mut path = root.join("tests").join("all");
    path.extend(module.split("::"));
    let file = path.with_extension("rs");
    if file.exists() { file } else { path.join("mod.rs") }
}

/// Every `.rs` file under `dir` (the directory of `module`), with its module path.
fn module_files(dir: &Path, module: &str) -> Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let path = entry.path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else { continue };
        if path.is_dir() {
            files.extend(module_files(&path, &format!("{module}::{stem}"))?);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push((if stem == "mod" { module.to_owned() } else { format!("{module}::{stem}") }, path));
        }
    }
    Ok(files)
}

/// The `backticked` spans of a table cell.
fn backticked(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).filter(|s| !s.is_empty()).collect()
}
