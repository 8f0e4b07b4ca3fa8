//! The store conformance suite (`support/conformance.rs`) on both stores: one test per check
//! per store, each on a fresh store (memory) or a fresh key prefix (Redis at `REDIS_URL`).

mod memory {
    wasmtx_tests::store_conformance_tests!(std::sync::Arc::new(wasmtx::MemoryStore::new()));

    /// The table form of the suite, on one store shared by every check: namespaces keep the
    /// checks apart.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn every_check_passes_on_one_shared_store() -> anyhow::Result<()> {
        wasmtx_tests::conformance::run_all(std::sync::Arc::new(wasmtx::MemoryStore::new())).await
    }
}

mod redis {
    wasmtx_tests::store_conformance_tests!(wasmtx_tests::redis_store().await?);

    /// Redis only: keys holding another Redis type than the layout needs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keys_of_another_redis_type_are_corrupt_and_write_nothing() -> anyhow::Result<()> {
        let fixture = wasmtx_tests::RedisFixture::new("wrongtype").await?;
        wasmtx_tests::conformance::redis_keys_of_another_type_are_corrupt_and_write_nothing(&fixture).await
    }
}
