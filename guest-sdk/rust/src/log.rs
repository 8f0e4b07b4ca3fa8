//! Structured logging into the host's log.
//!
//! Each record carries a message and key/value fields; the engine tags it with the rule name
//! and invocation id, and caps the number and size of records per invocation.
//!
//! ```
//! use wasmtx_guest::log;
//!
//! # fn demo(key: &str) {
//! log::info("balance checked", &[("account", key), ("outcome", "ok")]);
//! # }
//! ```

use crate::bindings::wasmtx::rule::log as wit;

pub use wit::Level;

/// Emits one record at `level`.
pub fn emit(level: Level, message: &str, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields.iter().map(|&(k, v)| (k.to_owned(), v.to_owned())).collect();
    wit::emit(level, message, &fields);
}

/// Emits a `trace` record: very detailed diagnostics.
pub fn trace(message: &str, fields: &[(&str, &str)]) {
    emit(Level::Trace, message, fields);
}

/// Emits a `debug` record: diagnostics.
pub fn debug(message: &str, fields: &[(&str, &str)]) {
    emit(Level::Debug, message, fields);
}

/// Emits an `info` record: a normal event.
pub fn info(message: &str, fields: &[(&str, &str)]) {
    emit(Level::Info, message, fields);
}

/// Emits a `warn` record: something unexpected that the rule handled.
pub fn warn(message: &str, fields: &[(&str, &str)]) {
    emit(Level::Warn, message, fields);
}

/// Emits an `error` record: a failure.
pub fn error(message: &str, fields: &[(&str, &str)]) {
    emit(Level::Error, message, fields);
}
