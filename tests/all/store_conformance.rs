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
    use wasmtx::store::{CommitGuard, CommitRequest, LockRequest, VersionCheck};
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

        // The engine's version or fencing field holds text: nothing can be loaded, locked or
        // committed.
        for field in ["~v", "~f"] {
            let m = model(&format!("engine-field{field}"));
            let _: () = redis::cmd("HSET").arg(keys.data(&m.id)).arg(field).arg("x").query_async(&mut conn).await?;
            let before = fixture.dump().await?;
            expect_corrupt("load with a bad engine field", store.load(std::slice::from_ref(&m)).await.map(drop))?;
            expect_corrupt("lock with a bad engine field", store.try_lock_and_load(&lock(&[&m])).await.map(drop))?;
            if field == "~v" {
                expect_corrupt(
                    "commit with a bad version",
                    commit(vec![m.clone()], vec![vec![set(1)]]).await.map(drop),
                )?;
            }
            ensure!(fixture.dump().await? == before, "the refused steps wrote to Redis ({field})");
        }
        ensure!(fixture.held_locks().await?.is_empty(), "a refusal left a lock behind");
        Ok(())
    }

    /// The README's storage-layout table is the contract with other clients, both ways: a
    /// model written by a plain client following it (scalars as text in the data hash, a list, a
    /// dict, the version bumped in the same `MULTI`) reads back with every value and the
    /// version; and a model written by the engine reads back the same way, its lock visible as
    /// the `~l:<action>` field while held and empty once the commit released it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_layout_table_is_readable_and_writable_by_a_plain_client() -> Result<()> {
        use std::collections::BTreeMap;

        use wasmtx::FieldValue;
        use wasmtx::store::CommitRecords;

        let fixture = crate::RedisFixture::new("layout").await?;
        let (store, keys) = (fixture.store.clone(), KeyLayout::new(fixture.prefix.clone()));
        let mut conn = fixture.client().await?;
        let schema = Arc::new(
            ModelSchema::builder("Account")
                .field("balance", FieldType::Scalar(ScalarKind::Int))
                .field("holder", FieldType::Scalar(ScalarKind::Str))
                .field("rate", FieldType::Scalar(ScalarKind::Float))
                .field("open", FieldType::Scalar(ScalarKind::Bool))
                .field("log", FieldType::List(ScalarKind::Str))
                .field("limits", FieldType::Dict(ScalarKind::Int))
                .build()?,
        );
        let target = |key: &str| ModelTarget { id: ModelId::new("Account", key), schema: Arc::clone(&schema) };

        // Written by hand, exactly as the table says (the key `alice:1` is escaped).
        let alice = target("alice:1");
        let data = format!("{}:{{Account:alice%3A1}}", fixture.prefix);
        ensure!(keys.data(&alice.id) == data, "the data key is {}", keys.data(&alice.id));
        let _: () = redis::pipe()
            .atomic()
            .cmd("HSET")
            .arg(&data)
            .arg(&["balance", "70", "holder", "Alice A.", "rate", "0.25", "open", "true"])
            .ignore()
            .cmd("RPUSH")
            .arg(format!("{data}:list:log"))
            .arg(&["opened", "funded"])
            .ignore()
            .cmd("HSET")
            .arg(format!("{data}:dict:limits"))
            .arg(&["daily", "500"])
            .ignore()
            .cmd("HINCRBY")
            .arg(&data)
            .arg("~v")
            .arg(1)
            .ignore()
            .query_async(&mut conn)
            .await?;
        let loaded = store.load(std::slice::from_ref(&alice)).await?.remove(0);
        let field = |name: &str| loaded.values[schema.field_index(name).unwrap_or(usize::MAX)].clone();
        ensure!(loaded.version == 1, "version {}", loaded.version);
        ensure!(field("balance") == FieldValue::Scalar(Scalar::Int(70)), "{:?}", field("balance"));
        ensure!(field("holder") == FieldValue::Scalar(Scalar::Str("Alice A.".into())), "{:?}", field("holder"));
        ensure!(field("rate") == FieldValue::Scalar(Scalar::Float(0.25)), "{:?}", field("rate"));
        ensure!(field("open") == FieldValue::Scalar(Scalar::Bool(true)), "{:?}", field("open"));
        ensure!(field("log") == FieldValue::List(vec!["opened".into(), "funded".into()]), "{:?}", field("log"));
        let limits = BTreeMap::from([("daily".to_owned(), Scalar::Int(500))]);
        ensure!(field("limits") == FieldValue::Dict(limits), "{:?}", field("limits"));

        // Written by the engine, read by hand: the lock is the `~l:<action>` field while held.
        let bob = target("bob");
        let lock = LockRequest {
            models: vec![bob.clone()],
            action: "pay".into(),
            owner: "engine-1".into(),
            lease: std::time::Duration::from_secs(60),
            record: None,
        };
        let wasmtx::store::LockAttempt::Acquired { leases, .. } = store.try_lock_and_load(&lock).await? else {
            bail!("the lock was busy")
        };
        let held: String = redis::cmd("HGET").arg(keys.data(&bob.id)).arg("~l:pay").query_async(&mut conn).await?;
        let parts: Vec<&str> = held.splitn(3, ':').collect();
        ensure!(parts.len() == 3 && parts[0] == leases[0].token.to_string() && parts[2] == "engine-1", "lock {held}");
        let deadline: u64 = parts[1].parse()?;
        ensure!(deadline > crate::redis_now_ms(&mut conn).await?, "the deadline {deadline} is not ahead");
        let changes = vec![vec![
            FieldChange::Set { field: "holder".into(), value: Scalar::Str("Bob".into()) },
            FieldChange::Increment { field: "balance".into(), delta: 30 },
            FieldChange::ListAppend { field: "log".into(), items: vec!["paid".into()] },
        ]];
        let versions = [0];
        store
            .commit(CommitRequest {
                models: std::slice::from_ref(&bob),
                changes: &changes,
                guard: CommitGuard::Leases { leases: &leases, versions: &versions, check: VersionCheck::WhenWriting },
                records: CommitRecords::NONE,
            })
            .await?;
        let mut hash: Vec<(String, String)> =
            redis::cmd("HGETALL").arg(keys.data(&bob.id)).query_async(&mut conn).await?;
        hash.sort();
        let expected: Vec<(String, String)> =
            [("balance", "30"), ("holder", "Bob"), ("~f", "1"), ("~l:pay", ""), ("~v", "1")]
                .iter()
                .map(|(f, v)| ((*f).to_owned(), (*v).to_owned()))
                .collect();
        ensure!(hash == expected, "the data hash after the commit: {hash:?}");
        let log: Vec<String> = redis::cmd("LRANGE")
            .arg(format!("{}:list:log", keys.data(&bob.id)))
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await?;
        ensure!(log == ["paid"], "{log:?}");
        Ok(())
    }
}
