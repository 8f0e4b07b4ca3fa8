//! The store conformance suite (`wasmtx::store::conformance`) on both stores, each opened by
//! URL through `wasmtx::backend`: one test per check per store, each on a fresh store (memory)
//! or a fresh key prefix (Redis at `REDIS_URL`); plus what only Redis can get wrong.

mod memory {
    wasmtx::store_conformance_tests!(crate::Backend::Memory.open_store("conformance").await?);

    /// The table form of the suite, on one store shared by every check: namespaces keep the
    /// checks apart.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn every_check_passes_on_one_shared_store() -> anyhow::Result<()> {
        let store = crate::Backend::Memory.open_store("conformance").await?;
        Ok(wasmtx::store::conformance::run_all(store).await?)
    }
}

mod redis {
    use std::sync::Arc;

    use anyhow::{Result, bail, ensure};
    use wasmtx::store::redis::KeyLayout;
    use wasmtx::store::{CommitGuard, CommitRequest, LockRequest};
    use wasmtx::{FieldChange, FieldType, ModelId, ModelSchema, ModelTarget, Scalar, ScalarKind, StoreError};

    wasmtx::store_conformance_tests!(crate::Backend::Redis.open_store("conformance").await?);

    /// A model key that holds another Redis type (written by some other client) is refused as
    /// `Corrupt` by every script (loads, lock-and-load, and commits whose ops read the key as
    /// well as ones that only write it), and the refusal writes nothing: no lock, no fencing
    /// token, no partial batch.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keys_of_another_redis_type_are_corrupt_and_write_nothing() -> Result<()> {
        let fixture = crate::RedisFixture::new("wrongtype").await?;
        let store = fixture.store.clone();
        let keys = KeyLayout::new(fixture.prefix.clone());
        let mut conn = fixture.client().await?;
        let schema = Arc::new(
            ModelSchema::builder("WrongType")
                .field("count", FieldType::Scalar(ScalarKind::Int))
                .field("items", FieldType::List(ScalarKind::Str))
                .field("tags", FieldType::Dict(ScalarKind::Int))
                .build()?,
        );
        let model = |key: &str| ModelTarget { id: ModelId::new("WrongType", key), schema: Arc::clone(&schema) };
        let set = |n: i64| FieldChange::Set { field: "count".into(), value: Scalar::Int(n) };
        let lock = |models: &[&ModelTarget]| LockRequest {
            models: models.iter().map(|&m| m.clone()).collect(),
            action: "act".into(),
            owner: "o".into(),
            lease: std::time::Duration::from_secs(60),
            record: None,
        };
        let commit = |models: Vec<ModelTarget>, changes: Vec<Vec<FieldChange>>| {
            let store = Arc::clone(&store);
            async move {
                let records = wasmtx::store::CommitRecords::NONE;
                store
                    .commit(CommitRequest {
                        models: &models,
                        changes: &changes,
                        guard: CommitGuard::Unguarded,
                        records,
                    })
                    .await
            }
        };
        let expect_corrupt = |how: &str, result: Result<(), StoreError>| match result {
            Err(StoreError::Corrupt { .. }) => Ok(()),
            other => bail!("{how}: expected Corrupt, got {other:?}"),
        };

        // The scalar hash is a string: loads refuse, and so do commits that read it (an
        // increment) or only write it (a set), even after another model's change in the batch.
        let (ok, bad) = (model("ok"), model("bad"));
        commit(vec![ok.clone()], vec![vec![set(1)]]).await?;
        let _: () = redis::cmd("SET").arg(keys.data(&bad.id)).arg("not a hash").query_async(&mut conn).await?;
        let before = fixture.dump().await?;
        expect_corrupt("load", store.load(std::slice::from_ref(&bad)).await.map(drop))?;
        expect_corrupt("lock and load", store.try_lock_and_load(&lock(&[&ok, &bad])).await.map(drop))?;
        let increment = FieldChange::Increment { field: "count".into(), delta: 1 };
        for (how, change) in [("a set", set(5)), ("an increment", increment)] {
            let batch = vec![vec![set(2)], vec![change]];
            expect_corrupt(how, commit(vec![ok.clone(), bad.clone()], batch).await.map(drop))?;
        }
        ensure!(fixture.dump().await? == before, "the refused scalar changes wrote to Redis");

        // A list field's key is a hash and a dict field's key is a list.
        let colls = model("colls");
        let list_key = keys.collection(&colls.id, "items", FieldType::List(ScalarKind::Str));
        let dict_key = keys.collection(&colls.id, "tags", FieldType::Dict(ScalarKind::Int));
        let _: () = redis::cmd("HSET").arg(list_key).arg("a").arg("b").query_async(&mut conn).await?;
        let _: () = redis::cmd("RPUSH").arg(dict_key).arg("x").query_async(&mut conn).await?;
        let before_colls = fixture.dump().await?;
        expect_corrupt("load of collections", store.load(std::slice::from_ref(&colls)).await.map(drop))?;
        let changes = [
            ("an append", FieldChange::ListAppend { field: "items".into(), items: vec!["x".into()] }),
            ("a truncate", FieldChange::ListTruncate { field: "items".into(), len: 0 }),
            ("a dict set", FieldChange::DictSet { field: "tags".into(), entries: vec![("k".into(), Scalar::Int(1))] }),
            ("a dict remove", FieldChange::DictRemove { field: "tags".into(), keys: vec!["k".into()] }),
        ];
        for (how, change) in changes {
            expect_corrupt(how, commit(vec![colls.clone()], vec![vec![set(3), change]]).await.map(drop))?;
        }
        ensure!(fixture.dump().await? == before_colls, "the refused collection changes wrote to Redis");

        // The metadata hash is a list: nothing can be loaded or locked.
        let meta = model("meta");
        let _: () = redis::cmd("RPUSH").arg(keys.meta(&meta.id)).arg("x").query_async(&mut conn).await?;
        let before_meta = fixture.dump().await?;
        expect_corrupt("load with a bad meta", store.load(std::slice::from_ref(&meta)).await.map(drop))?;
        expect_corrupt("lock with a bad meta", store.try_lock_and_load(&lock(&[&meta])).await.map(drop))?;
        ensure!(fixture.dump().await? == before_meta, "the refused loads wrote to Redis");
        ensure!(fixture.held_locks().await?.is_empty(), "a refusal left a lock behind");
        Ok(())
    }
}
