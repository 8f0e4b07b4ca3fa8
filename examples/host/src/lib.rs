//! Code the wasmtx example host's programs share with the integration tests: the demo behind
//! `cargo run --release --bin demo`, the chaos suite behind `cargo run --release --bin chaos`, listing keys under a prefix, and a `wasmtx serve`
//! process (the benchmark's modules stay private to `bench`).

#![deny(missing_docs)]

pub mod chaos;
pub mod demo;
pub mod scan;
pub mod serve;
