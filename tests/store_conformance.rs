//! The store conformance suite (`support/conformance.rs`) on both stores: one test per check
//! per store, each on a fresh store (memory) or a fresh key prefix (Redis at `REDIS_URL`).

mod memory {
    wasmtx_tests::store_conformance_tests!(std::sync::Arc::new(wasmtx::MemoryStore::new()));
}

mod redis {
    wasmtx_tests::store_conformance_tests!(wasmtx_tests::redis_store().await?);
}
