//! The snapshot cache: the last state and version this engine loaded or committed of each
//! model, so that an optimistic invocation can run its rule at once and send one commit.
//!
//! Correctness never depends on it: an optimistic commit checks the version of every model it
//! ran on (read or written), and a refused one brings the fresh state back in the same reply
//! ([`StoreError::Stale`](crate::store::StoreError::Stale)). A stale entry costs one extra
//! round trip, never a wrong commit. What the cache must never do is serve a version that the
//! store could reach again with other data behind it, so it drops everything when the store's
//! [generation](crate::store::Store::generation) moves (a reconnect, a server that lost its
//! functions), and an entry whose schema is not the one the invocation resolved.
//!
//! A store that can tell which models other clients changed ([`Store::watch_changes`], Redis
//! client-side tracking) has the cache drop those entries at once, so that the next invocation
//! loads instead of running on a stale state and being refused. A notice can overtake the
//! reply of a read that happened before the change: a snapshot is kept only if no notice for
//! its model arrived since the [`CacheEpoch`] taken before the store call that read it.
//!
//! Bounded by entries and by bytes, least recently used first out.
//!
//! [`Store::watch_changes`]: crate::store::Store::watch_changes

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::model::change::{ModelSnapshot, ModelTarget};
use crate::model::ids::ModelId;
use crate::model::schema::ModelSchema;
use crate::store::ChangeSink;

/// What an entry costs beyond its values' stored size (its id, schema pointer, bookkeeping).
const ENTRY_OVERHEAD: usize = 96;

/// How many change notices the cache remembers (to refuse a snapshot read before one of
/// them): a store call overtaken by more than this many keeps nothing.
const RECENT_CHANGES: usize = 4096;

/// When a store call began, for the cache: the store's generation and the change notices
/// seen so far. Taken before the call; a snapshot the call read or wrote is kept only if
/// both are still current for its model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CacheEpoch {
    generation: u64,
    changes: u64,
}

impl CacheEpoch {
    /// The store generation this epoch was taken under.
    pub(crate) fn generation(self) -> u64 {
        self.generation
    }

    /// The epoch under which to keep what a commit that began at `self` wrote, on a state
    /// read under store generation `read_generation`: that generation (a generation change
    /// since the read may hide lost data, which the commit's version check cannot see), and
    /// the change notices since the commit began (a change between the read and the commit is
    /// one the commit's version check decided on).
    pub(crate) fn with_read_generation(self, read_generation: u64) -> CacheEpoch {
        CacheEpoch { generation: read_generation, changes: self.changes }
    }
}

/// The snapshot cache's settings ([`EngineConfig::snapshot_cache`](crate::EngineConfig::snapshot_cache)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SnapshotCacheConfig {
    /// Whether the engine keeps snapshots at all. Off, every optimistic invocation loads its
    /// models first (two round trips). Default on.
    pub enabled: bool,
    /// The most models kept. Default 10,000.
    pub max_entries: usize,
    /// The most bytes kept, counted as the values' stored size plus about 100 bytes per
    /// entry. Default 64 MiB.
    pub max_bytes: usize,
}

impl Default for SnapshotCacheConfig {
    fn default() -> Self {
        Self { enabled: true, max_entries: 10_000, max_bytes: 64 << 20 }
    }
}

impl SnapshotCacheConfig {
    /// No cache: every optimistic invocation loads its models.
    pub fn disabled() -> Self {
        Self { enabled: false, ..Self::default() }
    }

    /// A cache of at most `max_entries` models and `max_bytes` bytes.
    pub fn bounded(max_entries: usize, max_bytes: usize) -> Self {
        Self { enabled: true, max_entries, max_bytes }
    }
}

/// What the snapshot cache did since the engine started ([`Engine::cache_stats`](crate::Engine::cache_stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Invocations that found every model in the cache (and ran without loading).
    pub hits: u64,
    /// Invocations that had to load (a model missing, its schema changed, the cache off or
    /// dropped).
    pub misses: u64,
    /// Commits on cached state refused because a model had moved (another engine, another
    /// mode, a plain client): each cost one extra round trip.
    pub stale_hits: u64,
    /// Entries pushed out by the bounds.
    pub evictions: u64,
    /// Times the whole cache was dropped because the store's generation moved.
    pub drops: u64,
    /// Models kept now.
    pub entries: u64,
    /// Bytes kept now (as counted against the bound).
    pub bytes: u64,
    /// Entries dropped because the store said another client changed their model (client
    /// tracking on).
    pub invalidations: u64,
}

/// One engine's snapshot cache.
///
/// # Notes
/// Shared by every invocation of the engine; one short mutex section per lookup or update.
#[derive(Debug)]
pub(crate) struct SnapshotCache {
    config: SnapshotCacheConfig,
    state: Mutex<State>,
    hits: AtomicU64,
    misses: AtomicU64,
    stale_hits: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<ModelId, Entry>,
    /// Every entry once, under the tick it was queued at (its `queued`), oldest first. A use
    /// only moves the entry's `used` forward: the queue catches up when eviction reaches the
    /// entry (it goes back in at its `used`), so a lookup costs no reordering and eviction is
    /// still least recently used first.
    by_use: BTreeMap<u64, ModelId>,
    tick: u64,
    bytes: usize,
    /// The store generation the entries were read under.
    generation: u64,
    evictions: u64,
    drops: u64,
    invalidations: u64,
    /// Change notices seen (one per model named).
    changes: u64,
    /// The last notice of each recently changed model, and the same in order, oldest first,
    /// at most [`RECENT_CHANGES`].
    changed_at: HashMap<ModelId, u64>,
    recent: VecDeque<(u64, ModelId)>,
    /// Notices up to this one are forgotten.
    forgotten: u64,
}

#[derive(Debug)]
struct Entry {
    schema: Arc<ModelSchema>,
    snapshot: ModelSnapshot,
    bytes: usize,
    /// The tick of its last use.
    used: u64,
    /// Its key in `by_use` (at most `used`).
    queued: u64,
}

impl SnapshotCache {
    pub(crate) fn new(config: SnapshotCacheConfig) -> Self {
        Self {
            config,
            state: Mutex::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            stale_hits: AtomicU64::new(0),
        }
    }

    /// Whether the cache keeps anything.
    pub(crate) fn enabled(&self) -> bool {
        self.config.enabled && self.config.max_entries > 0
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached snapshots of every model (in the order given), if every one is cached
    /// under `generation` with the schema it has in `models`; counted as a hit or a miss.
    pub(crate) fn get_all(&self, models: &[ModelTarget], generation: u64) -> Option<Vec<ModelSnapshot>> {
        if !self.enabled() {
            return None;
        }
        let found = {
            let mut state = self.state();
            state.follow(generation);
            let mut found = Vec::with_capacity(models.len());
            for target in models {
                match state.touch(target) {
                    Some(snapshot) => found.push(snapshot),
                    None => break,
                }
            }
            found
        };
        if found.len() == models.len() {
            self.hits.fetch_add(1, Ordering::Relaxed);
            Some(found)
        } else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            None
        }
    }

    /// The epoch to take before a store call whose snapshots may be kept, under the store's
    /// current `generation`.
    pub(crate) fn epoch(&self, generation: u64) -> CacheEpoch {
        let changes = if self.enabled() { self.state().changes } else { 0 };
        CacheEpoch { generation, changes }
    }

    /// Keeps `snapshot` as `target`'s state, read or written by a store call that began at
    /// `epoch` (a snapshot from before a generation change, or from before a change notice of
    /// its model, is not kept), unless a newer version is kept already.
    pub(crate) fn put(&self, target: &ModelTarget, snapshot: &ModelSnapshot, epoch: CacheEpoch) {
        if !self.enabled() {
            return;
        }
        let bytes =
            ENTRY_OVERHEAD + snapshot.values.iter().map(crate::model::value::FieldValue::stored_len).sum::<usize>();
        let mut state = self.state();
        state.follow(epoch.generation);
        if epoch.generation != state.generation || state.changed_since(&target.id, epoch.changes) {
            return;
        }
        if let Some(old) = state.entries.get(&target.id)
            && old.snapshot.version > snapshot.version
            && Arc::ptr_eq(&old.schema, &target.schema)
        {
            return;
        }
        if bytes > self.config.max_bytes {
            state.remove(&target.id);
            return;
        }
        state.tick += 1;
        let used = state.tick;
        if let Some(kept) = state.entries.get_mut(&target.id) {
            // Updated in place, marked as just used: eviction makes room around it.
            let kept_bytes = std::mem::replace(&mut kept.bytes, bytes);
            kept.used = used;
            kept.schema = Arc::clone(&target.schema);
            kept.snapshot = snapshot.clone();
            state.bytes = state.bytes - kept_bytes + bytes;
            let max_bytes = self.config.max_bytes;
            state.evict_while(|s| s.bytes > max_bytes && s.entries.len() > 1);
            return;
        }
        let (max_entries, max_bytes) = (self.config.max_entries, self.config.max_bytes);
        state.evict_while(|s| s.entries.len() >= max_entries || s.bytes + bytes > max_bytes);
        state.by_use.insert(used, target.id.clone());
        state.bytes += bytes;
        state.entries.insert(
            target.id.clone(),
            Entry { schema: Arc::clone(&target.schema), snapshot: snapshot.clone(), bytes, used, queued: used },
        );
    }

    /// Forgets these models (written in a way whose result this engine does not know exactly).
    pub(crate) fn forget(&self, models: &[ModelTarget]) {
        self.forget_ids(models.iter().map(|target| &target.id));
    }

    /// Forgets the models of these ids.
    pub(crate) fn forget_ids<'a>(&self, ids: impl IntoIterator<Item = &'a ModelId>) {
        if !self.enabled() {
            return;
        }
        let mut state = self.state();
        for id in ids {
            state.remove(id);
        }
    }

    /// Counts a commit on cached state that found a model moved.
    pub(crate) fn count_stale(&self) {
        self.stale_hits.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters and the current size.
    pub(crate) fn stats(&self) -> CacheStats {
        let state = self.state();
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            stale_hits: self.stale_hits.load(Ordering::Relaxed),
            evictions: state.evictions,
            drops: state.drops,
            entries: state.entries.len() as u64,
            bytes: state.bytes as u64,
            invalidations: state.invalidations,
        }
    }
}

impl ChangeSink for SnapshotCache {
    fn changed(&self, models: &[ModelId]) {
        if !self.enabled() {
            return;
        }
        let mut state = self.state();
        for id in models {
            if state.entries.contains_key(id) {
                state.remove(id);
                state.invalidations += 1;
            }
            state.note_change(id);
        }
    }
}

impl State {
    /// Drops every entry when the store moved on to a newer generation than they were read in.
    fn follow(&mut self, generation: u64) {
        if generation > self.generation {
            if !self.entries.is_empty() {
                self.drops += 1;
            }
            self.entries.clear();
            self.by_use.clear();
            self.bytes = 0;
            self.generation = generation;
        }
    }

    /// The entry of `target` if its schema is the one given (marked as just used); an entry
    /// of another schema goes.
    fn touch(&mut self, target: &ModelTarget) -> Option<ModelSnapshot> {
        let entry = self.entries.get(&target.id)?;
        if !Arc::ptr_eq(&entry.schema, &target.schema) && *entry.schema != *target.schema {
            self.remove(&target.id);
            return None;
        }
        self.tick += 1;
        let tick = self.tick;
        let entry = self.entries.get_mut(&target.id)?;
        entry.used = tick;
        Some(entry.snapshot.clone())
    }

    /// Whether a change notice of `id` came after the first `seen` notices (or may have: it is
    /// forgotten already).
    fn changed_since(&self, id: &ModelId, seen: u64) -> bool {
        if seen == self.changes {
            return false;
        }
        seen < self.forgotten || self.changed_at.get(id).is_some_and(|&at| at > seen)
    }

    /// Remembers a change notice of `id`.
    fn note_change(&mut self, id: &ModelId) {
        self.changes += 1;
        let at = self.changes;
        self.changed_at.insert(id.clone(), at);
        self.recent.push_back((at, id.clone()));
        while self.recent.len() > RECENT_CHANGES {
            let Some((old, id)) = self.recent.pop_front() else { break };
            self.forgotten = old;
            if self.changed_at.get(&id) == Some(&old) {
                self.changed_at.remove(&id);
            }
        }
    }

    fn remove(&mut self, id: &ModelId) {
        if let Some(old) = self.entries.remove(id) {
            self.by_use.remove(&old.queued);
            self.bytes -= old.bytes;
        }
    }

    /// Evicts least recently used entries while `over` holds and there are any.
    fn evict_while(&mut self, over: impl Fn(&Self) -> bool) {
        while over(self) && self.evict_oldest() {}
    }

    /// Evicts the least recently used entry; false when there is none.
    fn evict_oldest(&mut self) -> bool {
        while let Some((queued, id)) = self.by_use.pop_first() {
            let Some(entry) = self.entries.get_mut(&id) else { continue };
            if entry.used != queued {
                // Used since it was queued: back in at its last use.
                entry.queued = entry.used;
                self.by_use.insert(entry.used, id);
                continue;
            }
            if let Some(old) = self.entries.remove(&id) {
                self.bytes -= old.bytes;
                self.evictions += 1;
            }
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::value::{FieldType, FieldValue, Scalar, ScalarKind};

    fn schema(name: &str) -> Arc<ModelSchema> {
        Arc::new(
            ModelSchema::builder(name).field("n", FieldType::Scalar(ScalarKind::Int)).build().expect("a valid schema"),
        )
    }

    fn target(schema: &Arc<ModelSchema>, key: &str) -> ModelTarget {
        ModelTarget { id: ModelId::new(schema.name(), key), schema: Arc::clone(schema) }
    }

    /// An epoch of store generation `generation`, before any change notice.
    fn at(generation: u64) -> CacheEpoch {
        CacheEpoch { generation, changes: 0 }
    }

    /// A change notice drops the model's entry (counted) and only its; a snapshot read by a
    /// call that began before a notice of its model is not kept, one of another model is, and
    /// one read after the notice is. A call overtaken by more notices than are remembered
    /// keeps nothing.
    #[test]
    fn a_change_notice_drops_the_entry_and_refuses_a_snapshot_read_before_it() {
        let s = schema("T");
        let (a, b) = (target(&s, "a"), target(&s, "b"));
        let cache = SnapshotCache::new(SnapshotCacheConfig::default());
        cache.put(&a, &snap(1, 1), cache.epoch(0));
        cache.put(&b, &snap(1, 1), cache.epoch(0));
        let before = cache.epoch(0);
        cache.changed(std::slice::from_ref(&a.id));
        assert!(cache.get_all(std::slice::from_ref(&a), 0).is_none(), "a was dropped");
        assert!(cache.get_all(std::slice::from_ref(&b), 0).is_some(), "b was not named");
        assert_eq!(cache.stats().invalidations, 1);
        cache.put(&a, &snap(2, 2), before);
        cache.put(&b, &snap(2, 2), before);
        assert!(cache.get_all(std::slice::from_ref(&a), 0).is_none(), "read before a's notice: not kept");
        assert_eq!(cache.get_all(std::slice::from_ref(&b), 0).map(|v| v[0].version), Some(2), "b's is kept");
        cache.put(&a, &snap(3, 3), cache.epoch(0));
        assert_eq!(cache.get_all(std::slice::from_ref(&a), 0).map(|v| v[0].version), Some(3), "read after it");

        let overtaken = cache.epoch(0);
        for i in 0..=RECENT_CHANGES {
            cache.changed(&[ModelId::new("T", format!("other-{i}"))]);
        }
        cache.put(&b, &snap(4, 4), overtaken);
        assert_eq!(cache.get_all(std::slice::from_ref(&b), 0).map(|v| v[0].version), Some(2), "too old to tell");
        assert!(cache.state().changed_at.len() <= RECENT_CHANGES && cache.state().recent.len() <= RECENT_CHANGES);
    }

    /// A commit's snapshot is kept under the generation of the read its rule ran on: a
    /// generation change between the read and the commit drops it; a notice of the model
    /// after the commit began does too, one before it does not.
    #[test]
    fn a_commit_keeps_its_snapshot_only_under_the_generation_of_its_read() {
        let s = schema("T");
        let a = target(&s, "a");
        let cache = SnapshotCache::new(SnapshotCacheConfig::default());
        let read = cache.epoch(0);
        let commit = cache.epoch(1);
        cache.put(&a, &snap(1, 1), commit.with_read_generation(read.generation()));
        assert!(cache.get_all(std::slice::from_ref(&a), 1).is_none(), "read under generation 0, cached in 1");

        let read = cache.epoch(1);
        cache.changed(std::slice::from_ref(&a.id));
        let commit = cache.epoch(1);
        cache.put(&a, &snap(2, 2), commit.with_read_generation(read.generation()));
        assert_eq!(
            cache.get_all(std::slice::from_ref(&a), 1).map(|v| v[0].version),
            Some(2),
            "a notice before the commit began is the version check's to decide"
        );
        let commit = cache.epoch(1);
        cache.changed(std::slice::from_ref(&a.id));
        cache.put(&a, &snap(3, 3), commit.with_read_generation(read.generation()));
        assert!(cache.get_all(std::slice::from_ref(&a), 1).is_none(), "a notice after the commit began");
    }

    fn snap(n: i64, version: u64) -> ModelSnapshot {
        ModelSnapshot { values: vec![FieldValue::Scalar(Scalar::Int(n))], version }
    }

    #[test]
    fn entries_and_bytes_stay_within_their_bounds_oldest_out_first() {
        let s = schema("T");
        let cache = SnapshotCache::new(SnapshotCacheConfig::bounded(3, 10_000));
        let t: Vec<_> = (0..5).map(|i| target(&s, &format!("k{i}"))).collect();
        for (i, m) in t.iter().take(3).enumerate() {
            cache.put(m, &snap(i as i64, 1), at(0));
        }
        // k0 is used again, so k1 is the oldest when k3 comes in.
        assert!(cache.get_all(&t[0..1], 0).is_some());
        cache.put(&t[3], &snap(3, 1), at(0));
        assert!(cache.get_all(&t[1..2], 0).is_none(), "k1 was the least recently used");
        assert!(cache.get_all(&[t[0].clone(), t[2].clone(), t[3].clone()], 0).is_some());
        let stats = cache.stats();
        assert_eq!((stats.entries, stats.evictions), (3, 1));

        let per_entry = ENTRY_OVERHEAD + 24;
        let small = SnapshotCache::new(SnapshotCacheConfig::bounded(100, 2 * per_entry));
        for (i, m) in t.iter().enumerate() {
            small.put(m, &snap(i as i64, 1), at(0));
            assert!(small.stats().bytes <= 2 * per_entry as u64);
        }
        assert_eq!(small.stats().entries, 2);
        assert!(small.get_all(&t[3..5], 0).is_some());
    }

    #[test]
    fn uses_and_updates_in_place_keep_the_eviction_order_least_recently_used_first() {
        let s = schema("T");
        let cache = SnapshotCache::new(SnapshotCacheConfig::bounded(3, 10_000));
        let t: Vec<_> = (0..5).map(|i| target(&s, &format!("k{i}"))).collect();
        for m in &t[0..3] {
            cache.put(m, &snap(0, 1), at(0));
        }
        // Uses k0 and k1 (twice each, so the queue falls behind by more than one use), then
        // a new entry: k2 is the least recently used.
        for _ in 0..2 {
            assert!(cache.get_all(&t[0..2], 0).is_some());
        }
        cache.put(&t[3], &snap(3, 1), at(0));
        assert!(cache.get_all(&t[2..3], 0).is_none(), "k2 was the least recently used");
        // An update in place is a use: of k0, k1 and k3, k1 is now the oldest.
        cache.put(&t[0], &snap(9, 2), at(0));
        cache.put(&t[4], &snap(4, 1), at(0));
        assert!(cache.get_all(&t[1..2], 0).is_none(), "k1 was the least recently used");
        assert_eq!(cache.get_all(&t[0..1], 0), Some(vec![snap(9, 2)]), "the update is what is kept");
        assert!(cache.get_all(&[t[3].clone(), t[4].clone()], 0).is_some());
        let stats = cache.stats();
        assert_eq!((stats.entries, stats.evictions, stats.bytes), (3, 2, 3 * (ENTRY_OVERHEAD as u64 + 24)));

        // An update that grows an entry past the byte bound evicts others, oldest first, never
        // the entry itself.
        let one = ENTRY_OVERHEAD + 24;
        let tight = SnapshotCache::new(SnapshotCacheConfig::bounded(100, 3 * one + 16));
        for m in &t[0..3] {
            tight.put(m, &snap(0, 1), at(0));
        }
        assert!(tight.get_all(&t[0..1], 0).is_some());
        let grown = ModelSnapshot { values: vec![FieldValue::Scalar(Scalar::Str("x".repeat(60)))], version: 2 };
        tight.put(&t[2], &grown, at(0));
        assert!(tight.get_all(&t[1..2], 0).is_none(), "k1, the oldest, made room");
        assert_eq!(tight.get_all(&t[2..3], 0), Some(vec![grown]));
        assert!(tight.get_all(&t[0..1], 0).is_some());
        assert!(tight.stats().bytes <= (3 * one + 16) as u64);
    }

    #[test]
    fn a_new_store_generation_or_schema_drops_what_was_kept() {
        let s = schema("T");
        let cache = SnapshotCache::new(SnapshotCacheConfig::default());
        let m = target(&s, "a");
        cache.put(&m, &snap(1, 4), at(0));
        assert_eq!(cache.get_all(std::slice::from_ref(&m), 0), Some(vec![snap(1, 4)]));
        assert!(cache.get_all(std::slice::from_ref(&m), 1).is_none(), "generation 1 drops generation 0's entries");
        assert_eq!(cache.stats().drops, 1);
        cache.put(&m, &snap(1, 4), at(0));
        assert!(cache.get_all(std::slice::from_ref(&m), 1).is_none(), "a snapshot read before the change is not kept");

        cache.put(&m, &snap(2, 5), at(1));
        let changed = Arc::new(
            ModelSchema::builder("T")
                .field("n", FieldType::Scalar(ScalarKind::Int))
                .field("m", FieldType::Scalar(ScalarKind::Int))
                .build()
                .expect("a valid schema"),
        );
        assert!(cache.get_all(&[target(&changed, "a")], 1).is_none(), "another schema of the type misses");
        assert!(cache.get_all(std::slice::from_ref(&m), 1).is_none(), "and the entry is gone");
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.entries), (1, 4, 0));
    }

    #[test]
    fn an_older_version_does_not_replace_a_newer_one_and_a_disabled_cache_keeps_nothing() {
        let s = schema("T");
        let cache = SnapshotCache::new(SnapshotCacheConfig::default());
        let m = target(&s, "a");
        cache.put(&m, &snap(2, 7), at(0));
        cache.put(&m, &snap(1, 6), at(0));
        assert_eq!(cache.get_all(std::slice::from_ref(&m), 0), Some(vec![snap(2, 7)]));
        cache.forget(std::slice::from_ref(&m));
        assert!(cache.get_all(std::slice::from_ref(&m), 0).is_none());

        let off = SnapshotCache::new(SnapshotCacheConfig::disabled());
        off.put(&m, &snap(2, 7), at(0));
        assert!(off.get_all(std::slice::from_ref(&m), 0).is_none());
        assert_eq!(off.stats(), CacheStats::default(), "a disabled cache counts nothing");
    }
}
