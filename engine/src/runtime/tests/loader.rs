//! What `compile` refuses, and what it tells about what it accepts.

use super::*;
use crate::error::RuleLoadError;

#[test]
fn bytes_without_the_magic_are_not_wasm() {
    assert_eq!(runtime().compile(b"hello, world").expect_err("refused"), RuleLoadError::NotWasm);
    assert_eq!(runtime().compile(b"").expect_err("refused"), RuleLoadError::NotWasm);
}

#[test]
fn garbage_after_the_magic_is_malformed() {
    let rt = runtime();
    for bytes in [&b"\0asm\x01\0\0\0\xff\xff\xff"[..], b"\0asm\x0d\0\x01\0garbage", b"\0asm\x07\0\0\0"] {
        assert!(matches!(rt.compile(bytes), Err(RuleLoadError::Malformed(_))), "{bytes:?}");
    }
}

#[test]
fn rules_over_the_size_limit_are_too_large() {
    let rt = runtime_with(RuntimeConfig { max_rule_bytes: 16, ..RuntimeConfig::default() });
    assert_eq!(rt.compile(&[0; 17]).expect_err("refused"), RuleLoadError::TooLarge { size: 17, limit: 16 });
}

#[test]
fn a_core_module_without_metadata_is_not_a_rule() {
    let module = wat::parse_str("(module (func (export \"run\")))").expect("wat");
    match runtime().compile(&module) {
        Err(RuleLoadError::NotARule(reason)) => {
            assert!(reason.contains("component-type"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_core_module_with_metadata_for_another_shape_is_not_a_rule() {
    // The metadata promises `run`, the module does not export it.
    let mut module = wat::parse_str("(module (memory (export \"memory\") 1))").expect("wat");
    embed_metadata(&mut module);
    assert!(matches!(runtime().compile(&module), Err(RuleLoadError::NotARule(_))));
}

#[test]
fn wasi_imports_are_forbidden_and_named() {
    let component = wat::parse_str(
        r#"(component
             (import "wasi:cli/environment@0.2.0" (instance
               (export "get-arguments" (func (result (list string)))))))"#,
    )
    .expect("wat");
    assert_eq!(
        runtime().compile(&component).expect_err("refused"),
        RuleLoadError::ForbiddenImport { name: "wasi:cli/environment@0.2.0".into() }
    );
}

#[test]
fn a_core_module_importing_wasi_is_forbidden_and_names_the_import() {
    // What Rust's std for `wasm32-wasip1` links into a rule: WASI preview 1 imports beside the
    // contract's (here after one of them, so the check must look past the allowed ones).
    let body = "(call $ok (i32.const 32) (i32.const 11))";
    let wat = rule_wat(body).replacen(
        "  (import \"wasmtx:rule/log@0.1.0\"",
        "  (import \"wasi_snapshot_preview1\" \"fd_write\" (func (param i32 i32 i32 i32) (result i32)))\n  \
         (import \"env\" \"abort\" (func (param i32 i32 i32 i32)))\n  \
         (import \"wasmtx:rule/log@0.1.0\"",
        1,
    );
    assert_ne!(wat, rule_wat(body), "the imports were inserted");
    let mut module = wat::parse_str(&wat).expect("wat");
    embed_metadata(&mut module);
    assert_eq!(
        runtime().compile(&module).expect_err("refused"),
        RuleLoadError::ForbiddenImport { name: "wasi_snapshot_preview1::fd_write".into() }
    );
    // The same module without them is a rule: the imports are the only reason.
    runtime().compile(&core_rule(body)).expect("compiles without the WASI import");
}

#[test]
fn a_component_without_run_is_the_wrong_world() {
    let component = wat::parse_str("(component)").expect("wat");
    match runtime().compile(&component) {
        Err(RuleLoadError::WrongWorld(reason)) => assert!(reason.contains("run"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_component_with_a_mistyped_run_is_the_wrong_world() {
    let component = wat::parse_str(
        r#"(component
             (core module $m (func (export "run") (result i32) i32.const 0))
             (core instance $i (instantiate $m))
             (func (export "run") (result u32) (canon lift (core func $i "run"))))"#,
    )
    .expect("wat");
    assert!(matches!(runtime().compile(&component), Err(RuleLoadError::WrongWorld(_))));
}

#[test]
fn core_modules_and_components_both_compile() {
    let rt = runtime();
    let module = core_rule("(call $ok (i32.const 32) (i32.const 11))");
    let from_module = rt.compile(&module).expect("core module");
    assert!(from_module.from_core_module());
    assert_eq!(from_module.size(), module.len());
    assert_eq!(from_module.wit_version(), "0.1.0");
    assert_eq!(from_module.digest().len(), 64);

    let component = component_rule("(call $ok (i32.const 32) (i32.const 11))");
    let from_component = rt.compile(&component).expect("component");
    assert!(!from_component.from_core_module());
    assert_ne!(from_component.digest(), from_module.digest(), "the digest is of the bytes given");
    let debug = format!("{from_component:?}");
    assert!(debug.contains("digest"), "{debug}");
}
