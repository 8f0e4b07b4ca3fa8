//! The wasmtx demo: a host program that embeds the engine and runs the example rules (the
//! reference's bank transfer, game character level-up and user progress), then a burst of
//! concurrent transfers whose total must be conserved.
//!
//! Run it on the embedded in-memory store:
//!
//! ```text
//! cargo run --release --bin demo
//! ```
//!
//! or on Redis, a standalone server or a Redis Cluster (keys under the `wasmtx-demo` prefix,
//! reset at start):
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --release --bin demo
//! ```
//!
//! The first run builds the example rules for `wasm32-unknown-unknown` (installing the target
//! with rustup if needed).

use anyhow::Result;

#[tokio::main]
async fn main() -> Result<()> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "memory".to_owned());
    wasmtx_example_host::demo::run(&url).await
}
