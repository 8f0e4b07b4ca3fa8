//! What the bad-input tests set up: an engine and a registry on one backend with something in
//! every part of the store, the probe's writes, and rules lowered by hand.

use anyhow::Result;
use serde_json::{Value, json};
use wasmtx::registry::{Registry, RegistryConfig};
use wasmtx::{Engine, EngineBuilder, FieldValue, Invocation, Rule, Scalar};
use wasmtx_examples::workspace_root;

use super::{Held, What};
use crate::{Backend, engine_builder, load_rule, probe_ops, rules};

/// An engine with the example models and `Counter`, and a registry, on one backend.
pub(super) struct Env {
    pub(super) engine: Engine,
    pub(super) registry: Registry,
    pub(super) held: Held,
}

impl Env {
    pub(super) async fn new(
        backend: Backend,
        name: &str,
        configure: impl FnOnce(EngineBuilder) -> EngineBuilder,
    ) -> Result<Self> {
        let (held, store, registry_store) = Held::open(backend, name).await?;
        let engine = configure(engine_builder()?.shared_store(store)).build()?;
        let registry = Registry::open(engine.clone(), registry_store, RegistryConfig::default()).await?;
        Ok(Self { engine, registry, held })
    }

    pub(super) async fn everything(&self) -> Result<String> {
        self.held.text(What::Everything).await
    }

    pub(super) async fn data(&self) -> Result<String> {
        self.held.text(What::Data).await
    }

    /// The probe and the bank transfer, compiled on this engine.
    pub(super) fn rules(&self) -> Result<(Rule, Rule)> {
        let built = rules()?;
        Ok((
            load_rule(&self.engine, "probe", &built.probe)?,
            load_rule(&self.engine, "bank-transfer", &built.bank_transfer)?,
        ))
    }

    /// Something in every part of the store, so that "nothing changed" compares real data:
    /// scalars, a list, two models, a committed invocation with its idempotency record.
    pub(super) async fn seed(&self, probe: &Rule) -> Result<()> {
        self.engine.set_field("Counter", "k", "count", int(5)).await?;
        self.engine.list_append("Counter", "k", "items", vec![Scalar::Str("kept".into())]).await?;
        self.engine.set_field("Account", "a", "balance", int(10)).await?;
        self.engine.invoke(probe, &writes_both().idempotency_key("seed")).await?;
        Ok(())
    }
}

pub(super) fn int(n: i64) -> FieldValue {
    FieldValue::Scalar(Scalar::Int(n))
}

/// Writes to `Counter:k` (model 0): what every refused invocation would have written.
pub(super) fn writes() -> Vec<Value> {
    vec![
        json!({"op": "increment", "model": 0, "field": "count", "delta": 1}),
        json!({"op": "append", "model": 0, "field": "items", "item": "written"}),
    ]
}

/// An invocation of the probe on `Counter:k` and `Account:a` that writes.
pub(super) fn writes_both() -> Invocation {
    Invocation::new("probe").model("Counter", "k").model("Account", "a").input(probe_ops(&writes()))
}

/// A rule that increments `balance` of its first model, then returns `not json`: hand-lowered
/// to the canonical ABI (as `engine/src/runtime/tests` does), with the WIT metadata embedded.
const HAND_RULE: &str = r#"(module
  (import "wasmtx:rule/models@0.1.0" "open" (func $open (param i32 i32)))
  (import "wasmtx:rule/models@0.1.0" "[method]model.increment" (func $increment (param i32 i32 i32 i64 i32)))
  (import "wasmtx:rule/models@0.1.0" "[resource-drop]model" (func $drop (param i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 16) "balance")
  (data (i32.const 32) "{\"ok\":true}")
  (data (i32.const 64) "not json")
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $ptr i32)
    (local.set $ptr (i32.and (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
                             (i32.sub (i32.const 0) (local.get 2))))
    (global.set $heap (i32.add (local.get $ptr) (local.get 3)))
    (block $fits
      (br_if $fits (i32.le_u (global.get $heap) (i32.shl (memory.size) (i32.const 16))))
      (drop (memory.grow (i32.add (i32.shr_u (i32.sub (global.get $heap) (i32.shl (memory.size) (i32.const 16)))
                                             (i32.const 16))
                                  (i32.const 1)))))
    (local.get $ptr))
  (func (export "run") (param i32 i32 i64 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
    (call $open (i32.const 0) (i32.const 512))
    (if (i32.load8_u (i32.const 512)) (then unreachable))
    (call $increment (i32.load (i32.const 520)) (i32.const 16) (i32.const 7) (i64.const 5) (i32.const 576))
    (if (i32.load8_u (i32.const 576)) (then unreachable))
    (call $drop (i32.load (i32.const 520)))
    (i32.store8 (i32.const 256) (i32.const 0))
    (i32.store (i32.const 264) (i32.const OUTPUT))
    (i32.store (i32.const 268) (i32.const OUTPUT_LEN))
    (i32.const 256))
)"#;

/// A core module of the `rule` world from [`HAND_RULE`]: returning `not json`, or with
/// `json` the valid `{"ok":true}`; `extra_import` goes after the contract's imports.
pub(super) fn hand_rule(json: bool, extra_import: &str) -> Result<Vec<u8>> {
    let (output, len) = if json { ("32", "11") } else { ("64", "8") };
    let wat = HAND_RULE
        .replace("(i32.const OUTPUT)", &format!("(i32.const {output})"))
        .replace("(i32.const OUTPUT_LEN)", &format!("(i32.const {len})"))
        .replacen("  (memory (export", &format!("{extra_import}\n  (memory (export"), 1);
    with_rule_metadata(wat::parse_str(wat)?)
}

/// Embeds the `wasmtx:rule` world's metadata, as wit-bindgen does for `wasm32-unknown-unknown`.
pub(super) fn with_rule_metadata(mut module: Vec<u8>) -> Result<Vec<u8>> {
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve.push_path(workspace_root().join("wit"))?;
    let world = resolve.select_world(&[package], Some("rule"))?;
    wit_component::embed_component_metadata(&mut module, &resolve, world, wit_component::StringEncoding::UTF8, false)?;
    Ok(module)
}

/// A component importing WASI, which no rule may.
pub(super) const WASI_COMPONENT: &str = r#"(component
  (import "wasi:cli/environment@0.2.0" (instance (export "get-arguments" (func (result (list string)))))))"#;
