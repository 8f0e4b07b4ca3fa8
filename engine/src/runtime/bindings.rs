//! Host bindings generated from `wit/wasmtx.wit` (world `rule`).
//!
//! Kept in their own module so the generated names (`Scalar`, `Value`, `AccessError`, ...) do
//! not clash with the engine's own model types; conversions live in `convert.rs`.

// The generated code has no docs of its own; the WIT file documents every item.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    world: "rule",
    path: "wit",
    with: {
        "wasmtx:rule/models.model": crate::runtime::host::ModelHandle,
    },
    // Every host call may trap: a handle that is not in the resource table is a guest bug that
    // must stop the rule, not an `access-error` it could ignore.
    imports: { default: trappable },
    // `run` is called as a future: the store yields to the executor at every epoch tick (see
    // `run.rs`), so a rule never holds a host thread for longer than a tick.
    exports: { default: async },
});
