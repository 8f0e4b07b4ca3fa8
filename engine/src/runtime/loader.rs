//! Turning rule bytes into a [`CompiledRule`]: checks, core-module wrapping, compilation,
//! the import allow-list and pre-instantiation.

use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmparser::{Parser, Payload, Validator, WasmFeatures};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use super::bindings::RulePre;
use super::host::HostState;
use crate::error::RuleLoadError;

/// The WIT package rules import, and the version this host implements.
const PACKAGE: &str = "wasmtx:rule";
const HOST_VERSION: &str = "0.1.0";
/// Rules built against any `0.1.x` of the package are accepted (semver: same minor for 0.x).
const COMPATIBLE_PREFIX: &str = "0.1.";
const INTERFACES: [&str; 3] = ["types", "models", "log"];

/// A compiled, pre-linked rule, ready to instantiate. Cheap to clone (an `Arc` inside).
///
/// Made by [`RuleRuntime::compile`](super::RuleRuntime::compile) and only usable with the
/// runtime that compiled it.
#[derive(Clone)]
pub struct CompiledRule {
    inner: Arc<Inner>,
}

struct Inner {
    pre: RulePre<HostState>,
    digest: String,
    size: usize,
    wit_version: String,
    from_core_module: bool,
}

impl CompiledRule {
    /// The SHA-256 of the bytes given to `compile` (before any wrapping), in lowercase hex.
    pub fn digest(&self) -> &str {
        &self.inner.digest
    }

    /// The size of the bytes given to `compile`.
    pub fn size(&self) -> usize {
        self.inner.size
    }

    /// The version of the `wasmtx:rule` package the rule imports (the highest if it imports
    /// several, the host's own if it imports none), for example `0.1.0`.
    pub fn wit_version(&self) -> &str {
        &self.inner.wit_version
    }

    /// Whether the rule was given as a core module and wrapped into a component by the host.
    pub fn from_core_module(&self) -> bool {
        self.inner.from_core_module
    }

    pub(crate) fn pre(&self) -> &RulePre<HostState> {
        &self.inner.pre
    }
}

impl fmt::Debug for CompiledRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledRule")
            .field("digest", &self.inner.digest)
            .field("size", &self.inner.size)
            .field("wit_version", &self.inner.wit_version)
            .field("from_core_module", &self.inner.from_core_module)
            .finish_non_exhaustive()
    }
}

/// Compiles rule bytes (a component, or a core module with wit-bindgen metadata).
pub(crate) fn compile(
    engine: &Engine,
    linker: &Linker<HostState>,
    max_bytes: usize,
    bytes: &[u8],
) -> Result<CompiledRule, RuleLoadError> {
    if bytes.len() > max_bytes {
        return Err(RuleLoadError::TooLarge { size: bytes.len(), limit: max_bytes });
    }
    if !bytes.starts_with(b"\0asm") {
        return Err(RuleLoadError::NotWasm);
    }
    let digest = hex::encode(Sha256::digest(bytes));
    let from_core_module = Parser::is_core_wasm(bytes);
    let wrapped;
    let component_bytes = if from_core_module {
        wrapped = wrap_core_module(bytes)?;
        &wrapped[..]
    } else if Parser::is_component(bytes) {
        bytes
    } else {
        return Err(RuleLoadError::Malformed("unknown WebAssembly version or layer in the header".into()));
    };
    validate(component_bytes)?;

    let component = Component::new(engine, component_bytes).map_err(|e| RuleLoadError::Compile(format!("{e:#}")))?;
    link(engine, linker, &component, digest, bytes.len(), from_core_module)
}

/// Checks a compiled component's imports and pre-links it: the last step of [`compile`], also
/// used for components loaded from a precompiled cache. `digest`, `size` and
/// `from_core_module` describe the bytes the component was compiled from.
pub(crate) fn link(
    engine: &Engine,
    linker: &Linker<HostState>,
    component: &Component,
    digest: String,
    size: usize,
    from_core_module: bool,
) -> Result<CompiledRule, RuleLoadError> {
    let wit_version = check_imports(engine, component)?;
    let pre = linker.instantiate_pre(component).map_err(|e| {
        RuleLoadError::WrongWorld(format!("its imports do not match this host's wasmtx:rule@{HOST_VERSION}: {e:#}"))
    })?;
    let pre = RulePre::new(pre).map_err(|e| RuleLoadError::WrongWorld(format!("{e:#}")))?;
    Ok(CompiledRule { inner: Arc::new(Inner { pre, digest, size, wit_version, from_core_module }) })
}

/// Validates with wasmparser first, so that invalid bytes are `Malformed` and only what is valid
/// but unsupported by this engine's configuration is a `Compile` error.
fn validate(bytes: &[u8]) -> Result<(), RuleLoadError> {
    Validator::new_with_features(WasmFeatures::default())
        .validate_all(bytes)
        .map(drop)
        .map_err(|e| RuleLoadError::Malformed(e.to_string()))
}

/// Wraps a core module built for `wasm32-unknown-unknown` with wit-bindgen into a component,
/// using the `component-type` custom section wit-bindgen embeds.
fn wrap_core_module(bytes: &[u8]) -> Result<Vec<u8>, RuleLoadError> {
    validate(bytes)?;
    check_core_imports(bytes)?;
    if !has_component_type_section(bytes) {
        return Err(RuleLoadError::NotARule(
            "it has no `component-type` custom section: build it with wit-bindgen against the \
             wasmtx:rule world (the guest SDK does), or pass a component"
                .into(),
        ));
    }
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(bytes)
        .and_then(|encoder| encoder.encode())
        .map_err(|e| RuleLoadError::NotARule(format!("{e:#}")))
}

/// Refuses a core module importing anything but the contract's interfaces, naming the first
/// such import as `module::name` (`wasi_snapshot_preview1::fd_write` for a `wasm32-wasip1`
/// build). Checked before wrapping because wit-component would refuse such a module with its
/// own wording (a missing import interface), which says neither that the import is forbidden
/// nor which one it is.
fn check_core_imports(bytes: &[u8]) -> Result<(), RuleLoadError> {
    let malformed = |e: wasmparser::BinaryReaderError| RuleLoadError::Malformed(e.to_string());
    for payload in Parser::new(0).parse_all(bytes) {
        let Payload::ImportSection(section) = payload.map_err(malformed)? else { continue };
        for import in section.into_imports() {
            let import = import.map_err(malformed)?;
            if !allowed_core_import(import.module) {
                return Err(RuleLoadError::ForbiddenImport { name: format!("{}::{}", import.module, import.name) });
            }
        }
    }
    Ok(())
}

/// Whether a core module may import from `module`: the contract's interfaces, or the
/// component-model intrinsics wit-bindgen imports from `$root` and `[export]...` modules, which
/// wit-component turns into canonical built-ins rather than imports of the component.
fn allowed_core_import(module: &str) -> bool {
    allowed_import(module).is_some() || module == "$root" || module.starts_with("[export]")
}

fn has_component_type_section(bytes: &[u8]) -> bool {
    Parser::new(0).parse_all(bytes).any(|payload| {
        matches!(payload, Ok(Payload::CustomSection(section)) if section.name().starts_with("component-type"))
    })
}

/// Refuses any import outside `wasmtx:rule/{types,models,log}@0.1.x`, naming it, and returns
/// the highest package version imported.
fn check_imports(engine: &Engine, component: &Component) -> Result<String, RuleLoadError> {
    let mut version: Option<(u64, String)> = None;
    for (name, _) in component.component_type().imports(engine) {
        let v = allowed_import(name).ok_or_else(|| RuleLoadError::ForbiddenImport { name: name.to_owned() })?;
        let patch = v[COMPATIBLE_PREFIX.len()..].split(['-', '+']).next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if version.as_ref().is_none_or(|(best, _)| patch > *best) {
            version = Some((patch, v.to_owned()));
        }
    }
    Ok(version.map_or_else(|| HOST_VERSION.to_owned(), |(_, v)| v))
}

/// The version of an allowed import name such as `wasmtx:rule/models@0.1.2`.
fn allowed_import(name: &str) -> Option<&str> {
    let rest = name.strip_prefix(PACKAGE)?.strip_prefix('/')?;
    let (interface, version) = rest.split_once('@')?;
    let patch = version.strip_prefix(COMPATIBLE_PREFIX)?;
    let digits = patch.split(['-', '+']).next()?;
    let valid = INTERFACES.contains(&interface) && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    valid.then_some(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_version_is_the_wit_files() {
        let wit = include_str!("../../wit/wasmtx.wit");
        assert!(wit.contains(&format!("package {PACKAGE}@{HOST_VERSION};")), "update HOST_VERSION with the WIT");
    }

    #[test]
    fn only_the_contract_interfaces_are_allowed() {
        assert_eq!(allowed_import("wasmtx:rule/models@0.1.0"), Some("0.1.0"));
        assert_eq!(allowed_import("wasmtx:rule/log@0.1.12"), Some("0.1.12"));
        for name in [
            "wasmtx:rule/models",
            "wasmtx:rule/models@0.2.0",
            "wasmtx:rule/models@0.1.",
            "wasmtx:rule/secrets@0.1.0",
            "wasmtx:rules/models@0.1.0",
            "wasi:cli/environment@0.2.0",
        ] {
            assert_eq!(allowed_import(name), None, "{name}");
        }
    }

    #[test]
    fn core_modules_may_import_the_contract_and_component_model_intrinsics_only() {
        for module in ["wasmtx:rule/models@0.1.0", "wasmtx:rule/log@0.1.3", "$root", "[export]$root"] {
            assert!(allowed_core_import(module), "{module}");
        }
        for module in ["wasi_snapshot_preview1", "env", "wasi:cli/environment@0.2.0", "wasmtx:rule/models@0.2.0", ""] {
            assert!(!allowed_core_import(module), "{module}");
        }
    }
}
