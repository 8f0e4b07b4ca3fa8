//! Error kinds are a contract: `ERRORS.md` lists every [`ErrorKind`] exactly as the code does,
//! the WIT's `rule-error` cases are engine kinds, and the guides spell kinds as the code does.
//!
//! `WASMTX_BLESS=1 cargo test --release --test all -- error_kinds::` rewrites the table in
//! `ERRORS.md` from the code.

use anyhow::{Context as _, Result, bail, ensure};
use wasmtx::{ErrorKind, KindSource};
use wasmtx_examples::workspace_root;

const BEGIN: &str = "<!-- begin kinds: generated from wasmtx::ErrorKind (tests/all/error_kinds.rs) -->";
const END: &str = "<!-- end kinds -->";

/// The table `ERRORS.md` carries, rendered from the code.
fn table() -> String {
    let mut out = String::from("| kind | reported by | what happened |\n|---|---|---|\n");
    for kind in ErrorKind::ALL {
        let sources: Vec<&str> = kind.sources().iter().map(|s| s.as_str()).collect();
        out.push_str(&format!("| `{kind}` | {} | {} |\n", sources.join(", "), kind.summary()));
    }
    out
}

#[test]
fn errors_md_lists_every_kind_as_the_code_does() -> Result<()> {
    let path = workspace_root().join("ERRORS.md");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let (Some(begin), Some(end)) = (text.find(BEGIN), text.find(END)) else {
        bail!("{} lacks the markers {BEGIN:?} and {END:?}", path.display());
    };
    let current = &text[begin + BEGIN.len()..end];
    let expected = format!("\n{}", table());
    if current != expected {
        if std::env::var_os("WASMTX_BLESS").is_some() {
            let updated = format!("{}{BEGIN}{expected}{}", &text[..begin], &text[end..]);
            std::fs::write(&path, updated)?;
            return Ok(());
        }
        bail!(
            "ERRORS.md is stale: rewrite it with `WASMTX_BLESS=1 cargo test --release --test all -- error_kinds::`\n\
             expected:\n{expected}\nfound:\n{current}"
        );
    }
    Ok(())
}

/// The cases of `variant <name> { ... }` in the WIT.
fn wit_cases(wit: &str, variant: &str) -> Result<Vec<String>> {
    let start = wit.find(&format!("variant {variant} {{")).with_context(|| format!("no variant {variant}"))?;
    let body = &wit[start..];
    let body = &body[body.find('{').unwrap_or(0) + 1..body.find("\n    }").unwrap_or(body.len())];
    Ok(body
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("///") && !l.is_empty())
        .filter_map(|l| l.split(['(', ',']).next())
        .map(|c| c.trim_start_matches('%').to_owned())
        .collect())
}

#[test]
fn every_rule_error_of_the_wit_is_an_engine_kind_its_docs_name() -> Result<()> {
    let wit = std::fs::read_to_string(workspace_root().join("wit").join("wasmtx.wit"))?;
    let cases = wit_cases(&wit, "rule-error")?;
    ensure!(cases == ["rejected", "invalid-input", "access"], "{cases:?}");
    for case in &cases {
        let kind: ErrorKind = case.replace('-', "_").parse()?;
        ensure!(kind.sources().contains(&KindSource::Engine), "{kind}");
        ensure!(
            wit.contains(&format!("error kind `{kind}`")),
            "the WIT's docs of `rule-error::{case}` do not name `{kind}`"
        );
    }
    // Every access error is named in the `access` kind's summary, as the WIT spells it.
    for case in wit_cases(&wit, "access-error")? {
        ensure!(ErrorKind::Access.summary().contains(&format!("`{case}`")), "`access` does not list `{case}`");
    }
    Ok(())
}

#[test]
fn the_guides_spell_error_kinds_as_the_code_does() -> Result<()> {
    let root = workspace_root();
    for guide in ["guest-sdk/rust/README.md", "guest-sdk/assemblyscript/README.md", "README.md"] {
        let text = std::fs::read_to_string(root.join(guide))?;
        for kind in ErrorKind::ALL {
            let kebab = kind.as_str().replace('_', "-");
            if kebab != kind.as_str() {
                ensure!(
                    !text.contains(&format!("`{kebab}` error")) && !text.contains(&format!("an `{kebab}`")),
                    "{guide} writes the kind `{kind}` as `{kebab}`"
                );
            }
        }
        ensure!(text.contains("ERRORS.md"), "{guide} does not point to the list of error kinds");
    }
    Ok(())
}
