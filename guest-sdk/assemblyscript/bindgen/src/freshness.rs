//! The AssemblyScript SDK's generated files match the project's WIT: a WIT change that is not
//! followed by `cargo run --release -p wasmtx-as-bindgen` fails here.

use std::fmt::Write as _;

use anyhow::Result;
use wit_component::ComponentEncoder;

use crate as wasmtx_as_bindgen;

#[test]
fn the_generated_glue_matches_the_wit() -> Result<()> {
    let files = wasmtx_as_bindgen::generate(&wasmtx_as_bindgen::wit_dir())?;
    let stale = wasmtx_as_bindgen::stale(&files, &wasmtx_as_bindgen::sdk_dir());
    assert!(
        stale.is_empty(),
        "the AssemblyScript SDK's generated files are stale for wit/: {stale:?}\nregenerate them with `{}`",
        wasmtx_as_bindgen::REGENERATE
    );
    Ok(())
}

/// A core module with exactly the glue's imports and exports, plus the embedded section, is
/// accepted by wit-component as the world (the engine does this when it loads an
/// AssemblyScript rule): the generator's core signatures and the section agree with the WIT.
#[test]
fn the_glue_signatures_and_the_embedded_section_make_a_component() -> Result<()> {
    let wit = wasmtx_as_bindgen::wit_dir();
    let (imports, exports) = wasmtx_as_bindgen::core_abi(&wit)?;
    let mut wat = String::from("(module\n");
    for (i, import) in imports.iter().enumerate() {
        let _ = writeln!(
            wat,
            "  (import {:?} {:?} (func $i{i} {}))",
            import.module,
            import.name,
            wat_signature(&import.signature)
        );
    }
    wat.push_str("  (memory (export \"memory\") 1)\n");
    wat.push_str("  (func (export \"cabi_realloc\") (param i32 i32 i32 i32) (result i32) unreachable)\n");
    for export in &exports {
        let _ = writeln!(wat, "  (func (export {:?}) {} unreachable)", export.name, wat_signature(&export.signature));
    }
    wat.push(')');
    let mut module = wat::parse_str(&wat)?;
    module.extend(wasmtx_as_bindgen::component_type_section_for(&wit)?);
    let component = ComponentEncoder::default().validate(true).module(&module)?.encode()?;
    assert!(wasmparser::Parser::is_component(&component));
    Ok(())
}

/// `(i32, i64) -> (i32)` as `(param i32 i64) (result i32)`.
fn wat_signature(signature: &str) -> String {
    let (params, results) = signature.split_once(" -> ").unwrap_or((signature, "()"));
    let list = |s: &str| s.trim_matches(|c| c == '(' || c == ')').replace(',', "");
    let (params, results) = (list(params), list(results));
    let mut out = String::new();
    if !params.is_empty() {
        let _ = write!(out, "(param {params})");
    }
    if !results.is_empty() {
        let _ = write!(out, " (result {results})");
    }
    out
}
