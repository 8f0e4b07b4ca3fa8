//! Write wasmtx business rules in safe Rust.
//!
//! A wasmtx rule is a WebAssembly component that implements the `wasmtx:rule` WIT world: the
//! engine hands it an invocation [`Context`] and the caller's JSON input, the rule reads and
//! writes the fields of the models the caller declared, and it returns a JSON output or a
//! [`RuleError`]. The engine buffers every write and commits them only when the rule returns
//! `Ok`, so a rule never has to undo anything: returning an error (or trapping) writes nothing.
//!
//! This crate hides the generated component bindings behind a small safe API:
//!
//! - [`export_rule!`] turns an ordinary function
//!   `fn(&Context, Input) -> RuleResult<Output>` into the component's `run` export, parsing the
//!   input and serialising the output with `serde_json`;
//! - [`Context`] describes the invocation and opens models ([`Context::model`],
//!   [`Context::open`]);
//! - [`Model`](struct@Model) reads and writes fields, with typed helpers ([`Model::get_int`],
//!   [`Model::increment`], ...) and views on list and dict fields ([`ListField`],
//!   [`DictField`]);
//! - [`typed`]: `#[derive(Model)]` on a plain struct, [`Context::load`] to read the fields it
//!   names, ordinary Rust to change them, and [`Tracked::save`] to write back only what
//!   changed, keeping append intent ([`Counter`] keeps increment intent);
//! - [`log`] sends structured records to the host's log;
//! - [`RuleError`], [`reject`] and [`RuleResult`] make refusals and failed model accesses
//!   propagate with `?`.
//!
//! # A complete rule
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "rule-bank-transfer"
//! version = "0.1.0"
//! edition = "2024"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! wasmtx-guest = "0.1"
//! serde = { version = "1", features = ["derive"] }
//! ```
//!
//! `src/lib.rs`:
//!
//! ```
//! use serde::Deserialize;
//! use wasmtx_guest::prelude::*;
//!
//! #[derive(Deserialize)]
//! struct Transfer {
//!     amount: i64,
//! }
//!
//! /// Moves `amount` from the first declared account to the second one.
//! fn transfer(ctx: &Context, input: Transfer) -> RuleResult<String> {
//!     if input.amount <= 0 {
//!         return Err(invalid_input("amount must be positive"));
//!     }
//!     let from = ctx.model(0)?;
//!     let to = ctx.model(1)?;
//!     if from.get_int("balance")? < input.amount {
//!         return Err(reject("Insufficient funds"));
//!     }
//!     from.increment("balance", -input.amount)?;
//!     to.increment("balance", input.amount)?;
//!     log::info("transfer done", &[("from", &from.key()), ("to", &to.key())]);
//!     Ok(format!("Transferred {} successfully", input.amount))
//! }
//!
//! export_rule!(transfer);
//! # fn main() {}
//! ```
//!
//! Build it with `cargo build --release --target wasm32-unknown-unknown`. The resulting
//! `.wasm` is a core module that carries the component type in a custom section; the wasmtx
//! engine turns it into a component when it loads it, so no other tool is needed. The module
//! imports only the `wasmtx:rule` interfaces: no WASI, no clock, no randomness. Use
//! [`Context::now_ms`] or [`Context::utc_date`] for the time, and [`Context::invocation_id`]
//! for a unique id.
//!
//! # Errors
//!
//! Every model operation returns `Result<_, AccessError>`. `?` turns an [`AccessError`] into
//! [`RuleError::Access`], which rejects the invocation with the access error as its reason; a
//! rule that wants to recover from it (say, a missing dict key) matches on it instead.
//!
//! A panic traps the instance: the engine reports the invocation as failed and writes nothing.
//! Integer overflow panics only where overflow checks are on; prefer [`Model::increment`],
//! which the engine checks for overflow, over reading, adding and writing back.

#![deny(missing_docs)]

// The code `#[derive(Model)]` generates names `::wasmtx_guest`, this crate's tests included.
extern crate self as wasmtx_guest;

mod context;
pub mod log;
mod model;
pub mod typed;
mod types;

pub use context::{Context, UtcDate};
pub use model::{DictField, ListField, Model};
pub use typed::{Counter, ModelError, Tracked, TypedModel};
pub use types::{AccessError, RuleError, RuleResult, invalid_input, reject};

/// Derives [`TypedModel`] for a struct whose fields mirror fields of a model type: see
/// [`typed`] for the field types, the attributes (`rename`, `skip`, `model_type`, `crate`)
/// and how [`Tracked::save`] writes changes back.
///
/// The macro shares its name with the [`Model`](struct@Model) handle type (they live in
/// different namespaces): `use wasmtx_guest::Model;` imports both.
#[cfg(feature = "derive")]
pub use wasmtx_guest_derive::Model;

pub use bindings::wasmtx::rule::types::{
    FieldType, IndexOutOfRange, Mode, ModelRef, Scalar, ScalarKind, TypeMismatch, Value,
};

/// The `serde` crate this SDK is built with, for rules that want no direct dependency on it
/// beyond the derive macros.
pub use serde;
/// The `serde_json` crate the SDK parses inputs and writes outputs with; use it for rules whose
/// input or output is free-form JSON (`serde_json::Value`).
pub use serde_json;

/// The names most rules need: `use wasmtx_guest::prelude::*;`.
pub mod prelude {
    pub use crate::{
        AccessError, Context, Counter, DictField, ListField, Model, ModelError, RuleError, RuleResult, Scalar, Tracked,
        Value, export_rule, invalid_input, log, reject,
    };
}

/// The bindings generated from `wit/wasmtx.wit`. Not part of the API: use the safe wrappers.
#[doc(hidden)]
#[allow(unsafe_code, missing_docs, unused_qualifications, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "rule",
        // The export macro is invoked from the rule's crate through `export_rule!`.
        pub_export_macro: true,
        export_macro_name: "__export_rule_world",
        default_bindings_module: "wasmtx_guest::bindings",
        // The SDK's own error types, with readable `Display` impls, stand in for the generated
        // ones. They must keep the exact shape of the WIT variants.
        with: {
            "wasmtx:rule/types@0.1.0/access-error": crate::AccessError,
            "wasmtx:rule/types@0.1.0/rule-error": crate::RuleError,
        },
        additional_derives: [PartialEq, Clone],
    });
}

/// Glue used by [`export_rule!`]. Not part of the API.
#[doc(hidden)]
pub mod __private {
    use crate::{Context, RuleError};

    pub use crate::bindings::Guest;
    /// The generated context record.
    pub type WitContext = crate::bindings::wasmtx::rule::types::Context;
    pub use std::string::String;

    /// Runs `rule` on the raw `run` arguments: parses the input, wraps the context, serialises
    /// the output.
    pub fn run<I, O, F>(context: WitContext, input: &str, rule: F) -> Result<String, RuleError>
    where
        I: serde::de::DeserializeOwned,
        O: serde::Serialize,
        F: FnOnce(&Context, I) -> Result<O, RuleError>,
    {
        let input: I = serde_json::from_str(input).map_err(|e| RuleError::InvalidInput(e.to_string()))?;
        let ctx = Context::from_wit(context);
        let output = rule(&ctx, input)?;
        match serde_json::to_string(&output) {
            Ok(json) => Ok(json),
            Err(e) => {
                // A bug in the rule, not a business refusal: log why, then trap.
                let message = format!("rule output cannot be serialised as JSON: {e}");
                crate::log::error(&message, &[]);
                panic!("{message}");
            }
        }
    }
}

/// Exports a rule function as the component's `run` function.
///
/// The function has the shape `fn(&Context, Input) -> RuleResult<Output>` where `Input`
/// implements [`serde::de::DeserializeOwned`] and `Output` implements [`serde::Serialize`]
/// (use `serde_json::Value` for free-form JSON, `()` for a `null` output). The macro
///
/// - parses the caller's input text as JSON into `Input`; a parse error becomes
///   [`RuleError::InvalidInput`] with serde's message, and the function is not called;
/// - calls the function;
/// - serialises its `Ok` value as JSON text, the invocation's output. A value that cannot be
///   serialised (a map with non-string keys, say) is a bug in the rule: it is logged at
///   `error` level and the rule traps.
///
/// Invoke it once per crate, at module level:
///
/// ```
/// use wasmtx_guest::prelude::*;
///
/// fn echo(_ctx: &Context, input: serde_json::Value) -> RuleResult<serde_json::Value> {
///     Ok(input)
/// }
///
/// export_rule!(echo);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_rule {
    ($rule:expr) => {
        const _: () = {
            struct __WasmtxRule;

            impl $crate::__private::Guest for __WasmtxRule {
                fn run(
                    context: $crate::__private::WitContext,
                    input: $crate::__private::String,
                ) -> ::core::result::Result<$crate::__private::String, $crate::RuleError> {
                    $crate::__private::run(context, &input, $rule)
                }
            }

    $crate::bindings::__export_rule_world!(__WasmtxRule with_types_in $crate::bindings);
        };
    };
}
