//! Code the wasmtx example host's programs share with the integration tests: the chaos suite
//! behind `cargo run --release --bin chaos`, and listing keys under a prefix (the benchmark's
//! modules stay private to `bench`).

#![deny(missing_docs)]

pub mod chaos;
pub mod scan;
