//! Generates the binding glue of the wasmtx AssemblyScript guest SDK from the project's WIT.
//!
//! No maintained tool makes components from AssemblyScript, so the SDK lowers and lifts the
//! component model's canonical ABI itself. Writing that by hand per function is how layouts
//! go wrong (a `result<s64, E>` payload sits at offset 8, a `result<string, E>` payload at
//! offset 4), and a WIT change would silently break it. This crate reads `wit/` with
//! `wit-parser`, computes every layout with its [`SizeAlign`](wit_parser::SizeAlign) and the
//! flattening rules of the canonical ABI, and writes two files of the SDK:
//!
//! - [`BINDINGS_PATH`]: AssemblyScript classes for the WIT types, one wrapper per imported
//!   function (the `@external` declaration with its flattened core signature, the lowering of
//!   its arguments, the lifting of its result), and the core export of each exported function,
//!   which lifts its arguments, calls the SDK's typed implementation and lowers its result;
//! - [`WORLD_MODULE_PATH`]: a JavaScript module for the SDK's build tool, with the
//!   `component-type` custom section to embed into the compiled module (the WIT world, with
//!   string encoding UTF-16, so AssemblyScript strings cross without a copy) and the exact core
//!   imports and exports the world allows, to check a build against.
//!
//! `cargo run --release -p wasmtx-as-bindgen` rewrites both files; `--check` only compares.
//! The tests in `src/freshness.rs` fail when they are stale.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use wit_component::StringEncoding;
use wit_parser::Resolve;

mod asgen;

pub use asgen::{CoreExport, CoreImport};

/// The world the SDK binds.
pub const WORLD: &str = "rule";
/// Where the AssemblyScript glue goes, relative to the SDK directory.
pub const BINDINGS_PATH: &str = "assembly/generated/bindings.ts";
/// Where the build tool's view of the world goes, relative to the SDK directory.
pub const WORLD_MODULE_PATH: &str = "tools/generated/world.mjs";
/// The command that regenerates the files.
pub const REGENERATE: &str = "cargo run --release -p wasmtx-as-bindgen";

/// One generated file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    /// The path relative to the SDK directory.
    pub path: &'static str,
    /// The full contents.
    pub contents: String,
}

/// The SDK directory (`guest-sdk/assemblyscript`), from this crate's location.
pub fn sdk_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The project's WIT directory (`wit/`), from this crate's location.
pub fn wit_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.ancestors().nth(3).unwrap_or(manifest).join("wit")
}

/// Generates every file from the WIT package in `wit_dir`.
///
/// # Errors
/// If the WIT does not parse, has no `rule` world, or uses a WIT feature the generator does not
/// support (flags, fixed-length lists, maps, futures, streams, resource constructors, interface
/// exports): the message names it.
pub fn generate(wit_dir: &Path) -> Result<Vec<GeneratedFile>> {
    let mut resolve = Resolve::default();
    let (package, _) =
        resolve.push_dir(wit_dir).with_context(|| format!("parsing the WIT package in {}", wit_dir.display()))?;
    let world = resolve.select_world(&[package], Some(WORLD))?;
    let generated = asgen::Generator::new(&resolve, world)?.generate()?;

    let section = component_type_section(&resolve, world)?;
    let world_module = world_module(&resolve, world, &generated, &section);
    Ok(vec![
        GeneratedFile { path: BINDINGS_PATH, contents: generated.bindings },
        GeneratedFile { path: WORLD_MODULE_PATH, contents: world_module },
    ])
}

/// Writes `files` under `sdk_dir`, returning the paths whose contents changed.
///
/// # Errors
/// If a file cannot be written.
pub fn write(files: &[GeneratedFile], sdk_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut changed = Vec::new();
    for file in files {
        let path = sdk_dir.join(file.path);
        if std::fs::read_to_string(&path).ok().as_deref() == Some(file.contents.as_str()) {
            continue;
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&path, &file.contents).with_context(|| format!("writing {}", path.display()))?;
        changed.push(path);
    }
    Ok(changed)
}

/// The files under `sdk_dir` that differ from `files` (or are missing).
pub fn stale(files: &[GeneratedFile], sdk_dir: &Path) -> Vec<PathBuf> {
    files
        .iter()
        .map(|file| (sdk_dir.join(file.path), file))
        .filter(|(path, file)| std::fs::read_to_string(path).ok().as_deref() != Some(file.contents.as_str()))
        .map(|(path, _)| path)
        .collect()
}

/// The core imports and exports of the glue [`generate`] makes for the WIT package in
/// `wit_dir`, with their core signatures.
///
/// # Errors
/// As [`generate`].
pub fn core_abi(wit_dir: &Path) -> Result<(Vec<CoreImport>, Vec<CoreExport>)> {
    let mut resolve = Resolve::default();
    let (package, _) = resolve.push_dir(wit_dir)?;
    let world = resolve.select_world(&[package], Some(WORLD))?;
    let generated = asgen::Generator::new(&resolve, world)?.generate()?;
    Ok((generated.imports, generated.exports))
}

/// The `component-type` custom section [`generate`] embeds in [`WORLD_MODULE_PATH`] for the
/// WIT package in `wit_dir`.
///
/// # Errors
/// As [`generate`].
pub fn component_type_section_for(wit_dir: &Path) -> Result<Vec<u8>> {
    let mut resolve = Resolve::default();
    let (package, _) = resolve.push_dir(wit_dir)?;
    let world = resolve.select_world(&[package], Some(WORLD))?;
    component_type_section(&resolve, world)
}

/// The whole `component-type` custom section (id, size, name, payload) that
/// `wit_component::embed_component_metadata` would append for this world, with string encoding
/// UTF-16.
fn component_type_section(resolve: &Resolve, world: wit_parser::WorldId) -> Result<Vec<u8>> {
    let payload = wit_component::metadata::encode(resolve, world, StringEncoding::UTF16, None, false)
        .context("encoding the component type of the world")?;
    let name = b"component-type";
    let mut body = Vec::new();
    leb128(&mut body, name.len());
    body.extend_from_slice(name);
    body.extend_from_slice(&payload);
    let mut section = vec![0_u8];
    leb128(&mut section, body.len());
    section.extend_from_slice(&body);
    Ok(section)
}

fn leb128(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn world_module(resolve: &Resolve, world: wit_parser::WorldId, generated: &asgen::Generated, section: &[u8]) -> String {
    let w = &resolve.worlds[world];
    let world_id = w.package.map(|p| resolve.id_of_name(p, &w.name)).unwrap_or_else(|| w.name.clone());
    let mut out = String::new();
    out.push_str(&format!(
        "// Generated by wasmtx-as-bindgen from the project's WIT: do not edit.\n\
         // Regenerate with `{REGENERATE}`.\n\
         //\n\
         // The build tool (tools/wasmtx-as.mjs) embeds COMPONENT_TYPE_SECTION into the compiled core\n\
         // module and checks the module's imports and exports against IMPORTS and EXPORTS.\n\n"
    ));
    out.push_str(&format!("/** The WIT world the SDK binds. */\nexport const WORLD = {world_id:?};\n\n"));
    out.push_str("/** The string encoding the glue lowers and lifts strings with. */\nexport const STRING_ENCODING = \"utf16\";\n\n");
    out.push_str(
        "/** The core imports the world allows: [module, name, core signature]. */\nexport const IMPORTS = [\n",
    );
    for import in &generated.imports {
        let _ = writeln!(out, "  [{:?}, {:?}, {:?}],", import.module, import.name, import.signature);
    }
    out.push_str("];\n\n");
    out.push_str(
        "/** The core exports the world needs besides `memory` and `cabi_realloc`: [name, core signature]. */\n\
         export const EXPORTS = [\n",
    );
    for export in &generated.exports {
        let _ = writeln!(out, "  [{:?}, {:?}],", export.name, export.signature);
    }
    out.push_str("];\n\n");
    out.push_str(&format!(
        "/** The `component-type` custom section (id, size, name and payload), base64: {} bytes. */\n\
         export const COMPONENT_TYPE_SECTION =\n",
        section.len()
    ));
    let encoded = base64(section);
    let lines: Vec<&str> =
        encoded.as_bytes().chunks(96).map(|chunk| std::str::from_utf8(chunk).unwrap_or_default()).collect();
    for (i, line) in lines.iter().enumerate() {
        let end = if i + 1 == lines.len() { ";" } else { " +" };
        let _ = writeln!(out, "  \"{line}\"{end}");
    }
    out
}

/// Checks that `bytes` (a whole custom section as made by [`component_type_section`]) decodes:
/// used by the tests.
#[doc(hidden)]
pub fn decode_section_name(bytes: &[u8]) -> Result<(String, usize)> {
    fn read_leb(bytes: &[u8], pos: &mut usize) -> Result<usize> {
        let mut value = 0_usize;
        let mut shift = 0;
        loop {
            let Some(&byte) = bytes.get(*pos) else { bail!("truncated LEB128") };
            *pos += 1;
            value |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
            shift += 7;
        }
    }
    if bytes.first() != Some(&0) {
        bail!("not a custom section");
    }
    let mut pos = 1;
    let size = read_leb(bytes, &mut pos)?;
    if pos + size != bytes.len() {
        bail!("section size {size} does not match the {} bytes after its header", bytes.len() - pos);
    }
    let name_len = read_leb(bytes, &mut pos)?;
    let name = std::str::from_utf8(&bytes[pos..pos + name_len])?.to_owned();
    Ok((name, bytes.len() - pos - name_len))
}

#[cfg(test)]
mod freshness;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected, "{input}");
        }
    }

    #[test]
    fn leb128_encodes_multi_byte_values() {
        let mut out = Vec::new();
        leb128(&mut out, 624_485);
        assert_eq!(out, [0xe5, 0x8e, 0x26]);
    }

    #[test]
    fn the_section_is_a_well_formed_component_type_section() -> Result<()> {
        let mut resolve = Resolve::default();
        let (package, _) = resolve.push_dir(wit_dir())?;
        let world = resolve.select_world(&[package], Some(WORLD))?;
        let section = component_type_section(&resolve, world)?;
        let (name, payload) = decode_section_name(&section)?;
        assert_eq!(name, "component-type");
        assert!(payload > 100);
        Ok(())
    }
}
