//! `wasmtx-as-bindgen`: regenerates (or, with `--check`, checks) the AssemblyScript SDK's glue.
//!
//! ```text
//! cargo run --release -p wasmtx-as-bindgen            # rewrite the generated files
//! cargo run --release -p wasmtx-as-bindgen -- --check # exit 1 if they are stale
//! ```
//!
//! Options: `--wit <dir>` (default: the project's `wit/`), `--sdk <dir>` (default:
//! `guest-sdk/assemblyscript`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wasmtx-as-bindgen: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<ExitCode> {
    let mut check = false;
    let mut wit = wasmtx_as_bindgen::wit_dir();
    let mut sdk = wasmtx_as_bindgen::sdk_dir();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--check" => check = true,
            "--wit" => wit = PathBuf::from(args.next().unwrap_or_default()),
            "--sdk" => sdk = PathBuf::from(args.next().unwrap_or_default()),
            "-h" | "--help" => {
                println!("usage: wasmtx-as-bindgen [--check] [--wit <dir>] [--sdk <dir>]");
                return Ok(ExitCode::SUCCESS);
            }
            other => bail!("unknown argument `{other}` (see --help)"),
        }
    }
    let files = wasmtx_as_bindgen::generate(&wit)?;
    if check {
        let stale = wasmtx_as_bindgen::stale(&files, &sdk);
        if stale.is_empty() {
            println!("the generated glue is up to date with {}", wit.display());
            return Ok(ExitCode::SUCCESS);
        }
        for path in &stale {
            eprintln!("stale: {}", path.display());
        }
        eprintln!("regenerate with `{}`", wasmtx_as_bindgen::REGENERATE);
        return Ok(ExitCode::FAILURE);
    }
    let changed = wasmtx_as_bindgen::write(&files, &sdk)?;
    if changed.is_empty() {
        println!("the generated glue was already up to date");
    }
    for path in changed {
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
