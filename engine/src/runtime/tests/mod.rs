//! Runtime tests with rules written in WAT: the loader's refusals, and end-to-end runs of
//! small hand-lowered rules (canonical ABI by hand, WIT metadata embedded with wit-component,
//! so they go through the same core-module wrapping as a `wasm32-unknown-unknown` guest).

mod loader;
mod probe;
mod runs;

use std::sync::Arc;
use std::time::Duration;

use super::{CompiledRule, RuleRuntime, RuntimeConfig};
use crate::invocation::{Mode, RunContext};
use crate::model::change::{ModelSnapshot, ModelTarget};
use crate::model::ids::ModelId;
use crate::model::schema::ModelSchema;
use crate::model::value::{FieldType, ScalarKind};

#[test]
fn the_public_types_can_cross_threads() {
    fn check<T: Send + Sync>() {}
    check::<RuleRuntime>();
    check::<CompiledRule>();
    check::<super::ModelWorkspace>();
    check::<super::RunOutput>();
}

/// Runs a rule to completion from a synchronous test (the runtime's `run` is a future).
trait RunBlocking {
    fn run_blocking(&self, rule: &CompiledRule, run: super::RuleRun<'_>) -> Result<super::RunOutput, crate::Error>;
}

impl RunBlocking for RuleRuntime {
    fn run_blocking(&self, rule: &CompiledRule, run: super::RuleRun<'_>) -> Result<super::RunOutput, crate::Error> {
        let executor = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("an executor");
        executor.block_on(self.run(rule, run))
    }
}

fn runtime() -> RuleRuntime {
    runtime_with(RuntimeConfig { deadline: Duration::from_millis(50), max_instances: 4, ..RuntimeConfig::default() })
}

fn runtime_with(config: RuntimeConfig) -> RuleRuntime {
    RuleRuntime::new(config).expect("runtime")
}

/// A core module for the `rule` world, with its WIT metadata embedded: what wit-bindgen
/// produces for `wasm32-unknown-unknown`.
fn core_rule(body: &str) -> Vec<u8> {
    let mut module = wat::parse_str(rule_wat(body)).expect("valid WAT");
    embed_metadata(&mut module);
    module
}

fn embed_metadata(module: &mut Vec<u8>) {
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve.push_path(concat!(env!("CARGO_MANIFEST_DIR"), "/wit")).expect("WIT");
    let world = resolve.select_world(&[package], Some("rule")).expect("world");
    wit_component::embed_component_metadata(module, &resolve, world, wit_component::StringEncoding::UTF8, false)
        .expect("embed");
}

/// A component for the `rule` world, made from [`core_rule`].
fn component_rule(body: &str) -> Vec<u8> {
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&core_rule(body))
        .and_then(|e| e.encode())
        .expect("encode")
}

fn compile(runtime: &RuleRuntime, body: &str) -> CompiledRule {
    runtime.compile(&core_rule(body)).expect("compiles")
}

/// The canonical-ABI plumbing shared by the test rules; `body` is the body of `run`, whose
/// 11 parameters are the flattened `context` (0–8) and `input` (9, 10).
///
/// Memory map: strings at 16..128, `run`'s return area at 256, `open`'s at 512, `increment`'s
/// at 576, a bump heap from 4096 for `cabi_realloc`. `result<string, rule-error>` and the host
/// results put their payload at offset 8 (the error variants contain an s64).
fn rule_wat(body: &str) -> String {
    format!(
        r#"(module
  (import "wasmtx:rule/models@0.1.0" "open" (func $open (param i32 i32)))
  (import "wasmtx:rule/models@0.1.0" "[method]model.increment" (func $increment (param i32 i32 i32 i64 i32)))
  (import "wasmtx:rule/models@0.1.0" "[resource-drop]model" (func $drop (param i32)))
  (import "wasmtx:rule/log@0.1.0" "emit" (func $emit (param i32 i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 16) "balance")
  (data (i32.const 32) "{{\"ok\":true}}")
  (data (i32.const 48) "nope")
  (data (i32.const 64) "not json")
  (data (i32.const 80) "insufficient funds")
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
  (func $ok (param $ptr i32) (param $len i32) (result i32)
    (i32.store8 (i32.const 256) (i32.const 0))
    (i32.store (i32.const 264) (local.get $ptr))
    (i32.store (i32.const 268) (local.get $len))
    (i32.const 256))
  (func $rejected (param $ptr i32) (param $len i32) (result i32)
    (i32.store8 (i32.const 256) (i32.const 1))
    (i32.store8 (i32.const 264) (i32.const 0))
    (i32.store (i32.const 272) (local.get $ptr))
    (i32.store (i32.const 276) (local.get $len))
    (i32.const 256))
  (func $access (param $error i32) (result i32)
    (i32.store8 (i32.const 256) (i32.const 1))
    (i32.store8 (i32.const 264) (i32.const 2))
    (memory.copy (i32.const 272) (local.get $error) (i32.const 32))
    (i32.const 256))
  (func (export "run") (param i32 i32 i64 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
    {body})
)"#
    )
}

/// `open(index)` then `increment(field at ptr/len, delta)`, propagating either error.
fn increment_body(index: u32, field: (u32, u32), delta: i64) -> String {
    let (ptr, len) = field;
    format!(
        r#"(call $open (i32.const {index}) (i32.const 512))
    (if (i32.load8_u (i32.const 512)) (then (return (call $access (i32.const 520)))))
    (call $increment (i32.load (i32.const 520)) (i32.const {ptr}) (i32.const {len}) (i64.const {delta}) (i32.const 576))
    (if (i32.load8_u (i32.const 576)) (then (return (call $access (i32.const 584)))))
    (call $drop (i32.load (i32.const 520)))
    (call $ok (i32.const 32) (i32.const 11))"#
    )
}

fn account() -> ModelTarget {
    let schema = ModelSchema::builder("Account")
        .field("balance", FieldType::Scalar(ScalarKind::Int))
        .field("history", FieldType::List(ScalarKind::Str))
        .build()
        .expect("schema");
    ModelTarget { id: ModelId::new("Account", "alice"), schema: Arc::new(schema) }
}

fn context(mode: Mode) -> RunContext {
    let mut context = RunContext::new("inv-1", "deposit", mode);
    context.now_ms = 1_700_000_000_000;
    context
}

fn snapshot(target: &ModelTarget) -> ModelSnapshot {
    ModelSnapshot::defaults(&target.schema)
}
