//! `wasmtx new`: every template is filled (no placeholder left) and names the SDK by path (a
//! checkout) or by version (`--published`). That the projects build and pass their tests is
//! walked by `guides` (both guides start with `wasmtx new`); bad names and directories are in
//! `bad_input::cli`.

use anyhow::{Context as _, Result, ensure};
use wasmtx_examples::workspace_root;

use crate::process::{TempDir, run_in};

/// Every file of the project under `dir`, with its text.
fn files(dir: &std::path::Path) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
                out.push((path.strip_prefix(dir)?.display().to_string(), text));
            }
        }
    }
    out.sort();
    Ok(out)
}

#[test]
fn every_template_is_filled_and_names_the_sdk_by_path_or_by_version() -> Result<()> {
    let dir = TempDir::new("new-command")?;
    let root = workspace_root().display().to_string();
    for (language, published) in [("rust", false), ("rust", true), ("assemblyscript", false), ("assemblyscript", true)]
    {
        let name = format!("{}-{}", &language[..2], if published { "pub" } else { "path" });
        let mut args = vec!["--json", "new", language, name.as_str()];
        if published {
            args.push("--published");
        }
        let created = run_in(dir.path(), &args)?.expect(0)?.json()?;
        ensure!(created["sdk"] == if published { "version" } else { "path" }, "{created}");
        let project = dir.path().join(&name);
        let listed: Vec<&str> =
            created["files"].as_array().context("files")?.iter().filter_map(|f| f.as_str()).collect();
        let on_disk = files(&project)?;
        ensure!(
            listed.len() == on_disk.len(),
            "{language}: listed {listed:?}, wrote {:?}",
            on_disk.iter().map(|f| &f.0)
        );
        for (path, text) in &on_disk {
            ensure!(!text.contains("{{"), "{language} {path} keeps a placeholder:\n{text}");
        }
        let text_of = |file: &str| on_disk.iter().find(|(p, _)| p == file).map(|(_, t)| t.as_str()).unwrap_or_default();
        match (language, published) {
            ("rust", false) => {
                let cargo = text_of("Cargo.toml");
                ensure!(cargo.contains(&format!("name = \"{name}\"")), "{cargo}");
                ensure!(cargo.contains(&format!("wasmtx-guest = {{ path = \"{root}/guest-sdk/rust\" }}")), "{cargo}");
                ensure!(cargo.contains(&format!("[profile.release.package.{name}]")), "{cargo}");
            }
            ("rust", true) => {
                let cargo = text_of("Cargo.toml");
                ensure!(cargo.contains("wasmtx-guest = \"0.1\"") && !cargo.contains("path ="), "{cargo}");
            }
            (_, false) => {
                let package = text_of("package.json");
                ensure!(
                    package.contains(&format!("\"wasmtx-guest\": \"file:{root}/guest-sdk/assemblyscript\"")),
                    "{package}"
                );
            }
            (_, true) => {
                let package: serde_json::Value = serde_json::from_str(text_of("package.json"))?;
                ensure!(package["devDependencies"]["wasmtx-guest"] == "0.1.0", "{package}");
                ensure!(package["name"] == name.as_str(), "{package}");
            }
        }
    }
    Ok(())
}
