//! Where a model lives in Redis. Every key of one model shares the hash tag `{Type:key}`, so a
//! model (its data, locks, fencing counter, version and records) sits in one Redis Cluster slot.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `<prefix>:{T:k}` | HASH | the scalar fields, one hash field each, and the engine's fields (below) |
//! | `<prefix>:{T:k}:list:<field>` | LIST | one list field |
//! | `<prefix>:{T:k}:dict:<field>` | HASH | one dict field |
//! | `<prefix>:{T:k}:done:<idempotency key>` | STRING, with a TTL | an invocation's [record](crate::store::record) (kept beside its first model in lock order): `C<v1>,<v2>,...` (each model's version after the commit), a newline, the engine's payload; or `A <commit id> ... ` (commit attempts declared aborted) |
//!
//! The engine's fields in the data hash start with `~`, which no schema field name can:
//!
//! | field | holds |
//! |---|---|
//! | `~v` | the version (missing: 0), bumped by every commit that changes the model |
//! | `~f` | the last fencing token drawn for the model (any action) |
//! | `~l:<action>` | that action's lock: `<token>:<deadline>:<owner>` (deadline in Unix ms, by the server's clock), then `:w` once someone waits; free when empty, missing or past its deadline |
//! | `~q:<action>` | that lock's waiters, oldest first: `<deadline>:<owner length>:<owner>` each (deadline in Unix ms, by the server's clock), at most [`MAX_WAITERS`](crate::store::MAX_WAITERS); missing when nobody waits (see [`Store::try_lock_and_load`](crate::Store::try_lock_and_load)) |
//!
//! `T`, `k`, `<field>` and `<action>` are written [escaped](escape) in keys: `%` as `%25`, `:`
//! as `%3A`, `{` as `%7B` and `}` as `%7D`, every other character as it is. An escaped name holds
//! no `:`, `{` or `}`, so a key names exactly one model and one of its parts (the layout is
//! injective): type `Acct:admin` with key `root` lives under `{Acct%3Aadmin:root}`, type `Acct`
//! with key `admin:root` under `{Acct:admin%3Aroot}`. Names without those four characters (the
//! common case) read as they are. (Action names in `~l:<action>` need no escaping: a hash field
//! belongs to one key already.)
//!
//! A model type with a [`Placement`] in its schema keeps its models' keys under the group's
//! tag instead, the type and key following it (every part escaped the same way):
//!
//! | key | placement |
//! |---|---|
//! | `<prefix>:{@<group>:<part>}:<T>:<k>` (then `:list:<field>`, ... as above) | by key (`<part>` is `k`) or key prefix (`<part>` is `k` up to the separator) |
//! | `<prefix>:{@<group>}:<T>:<k>` | by group |
//!
//! A type name starts with a letter or `_`, and a leading `@` is escaped (`%40`) in the default
//! layout anyway, so a placed tag (starting with `@`) never reads as a default one: the layout
//! stays injective. The tag does not name the type, so models of several types placed in one
//! group and part share one Redis Cluster slot.
//!
//! Releases are announced on the channel `<prefix>:released` with the lock's name
//! ([`KeyLayout::lock`], `<prefix>:{T:k}:lock:<action>`) as message, and only when someone waits
//! (the lock value's `:w` suffix, set by a waiter that found the lock busy), so uncontended
//! commits publish nothing; also when a waiter withdraws from the line of a free lock that
//! others still wait for.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use crate::model::change::ModelTarget;
use crate::model::ids::ModelId;
use crate::model::placement::Placement;
use crate::model::value::FieldType;
use crate::store::StoreError;

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "wasmtx";

/// A name as it appears in a key: `%`, `:`, `{` and `}` percent-encoded (`%25`, `%3A`, `%7B`,
/// `%7D`), everything else unchanged. The result never holds `:`, `{` or `}`, which the layout
/// uses as separators and hash-tag delimiters; decoding is the usual percent-decoding.
pub fn escape(name: &str) -> Cow<'_, str> {
    if !name.contains(['%', ':', '{', '}']) {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        match c {
            '%' => out.push_str("%25"),
            ':' => out.push_str("%3A"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A model type's name in a default hash tag: [escaped](escape), and a leading `@` written
/// `%40`, so it never reads as a placement group's tag.
fn escape_type(name: &str) -> Cow<'_, str> {
    match escape(name) {
        Cow::Borrowed(text) if text.starts_with('@') => Cow::Owned(format!("%40{}", &text[1..])),
        Cow::Owned(text) if text.starts_with('@') => Cow::Owned(format!("%40{}", &text[1..])),
        other => other,
    }
}

/// The Redis Cluster hash slot of a key (CRC16/XMODEM of its hash tag, modulo 16384), as
/// `CLUSTER KEYSLOT` computes it.
pub fn hash_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = bytes.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &bytes[open + 1..];
        rest.iter().position(|&b| b == b'}').filter(|&close| close > 0).map(|close| &rest[..close])
    });
    crc16_xmodem(tagged.unwrap_or(bytes)) % 16384
}

fn crc16_xmodem(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

/// Checks a key prefix: not empty, and no `{` or `}` (a brace would move the hash tag into the
/// prefix, and the layout's injectivity rests on the tag).
///
/// # Errors
/// [`StoreError::InvalidPrefix`] with the reason.
pub fn validate_prefix(prefix: &str) -> Result<(), StoreError> {
    let bad = |reason: &str| Err(StoreError::InvalidPrefix { prefix: prefix.to_owned(), reason: reason.to_owned() });
    if prefix.is_empty() {
        return bad("a key prefix cannot be empty");
    }
    if prefix.contains(['{', '}']) || prefix.chars().any(char::is_control) {
        return bad("a key prefix cannot contain `{`, `}` or control characters");
    }
    Ok(())
}

/// The inside of a placed model's hash tag: `@<group>` or `@<group>:<part>`, escaped.
fn placement_tag(placement: &Placement, key: &str) -> String {
    match placement.part(key) {
        None => format!("@{}", escape(placement.group())),
        Some(part) => format!("@{}:{}", escape(placement.group()), escape(part)),
    }
}

/// The data hash field that holds `action`'s lock.
pub fn lock_field(action: &str) -> String {
    format!("~l:{action}")
}

/// What a lock's name ([`KeyLayout::lock`]) adds to the model's data key.
pub(super) fn lock_suffix(action: &str) -> String {
    format!(":lock:{}", escape(action))
}

/// Builds the Redis keys of models under one prefix.
///
/// A layout knows the [`Placement`] of the model types it was told about ([`Self::place`],
/// [`Self::learn`]); the others keep the default layout. Clones share what they know: the Redis
/// store tells its layout the schema of every model it is asked about, so the keys of a lock it
/// releases later (known by model id only) are the keys it locked.
#[derive(Debug, Clone)]
pub struct KeyLayout {
    prefix: String,
    placements: Arc<Placements>,
}

/// The placement of each model type a layout knows about.
#[derive(Debug, Default)]
struct Placements {
    /// Whether `by_type` may hold anything: the default layout's fast path.
    any: AtomicBool,
    by_type: RwLock<HashMap<String, Placement>>,
}

impl PartialEq for KeyLayout {
    fn eq(&self, other: &Self) -> bool {
        self.prefix == other.prefix
    }
}

impl Eq for KeyLayout {}

impl KeyLayout {
    /// A layout under `prefix` (no trailing colon; see [`validate_prefix`]).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into(), placements: Arc::default() }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Places `model_type`'s models by `placement` from now on (`None`: the default layout).
    pub fn place(&self, model_type: &str, placement: Option<&Placement>) {
        let placements = &self.placements;
        match placement {
            Some(placement) => {
                let mut by_type = placements.by_type.write().unwrap_or_else(PoisonError::into_inner);
                if by_type.get(model_type) != Some(placement) {
                    by_type.insert(model_type.to_owned(), placement.clone());
                }
                placements.any.store(true, Ordering::Release);
            }
            None if placements.any.load(Ordering::Acquire) => {
                placements.by_type.write().unwrap_or_else(PoisonError::into_inner).remove(model_type);
            }
            None => {}
        }
    }

    /// Takes note of each target's placement (its schema's), as [`Self::place`] does.
    pub fn learn(&self, targets: &[ModelTarget]) {
        for target in targets {
            let placement = target.schema.placement();
            let known = self.placements.any.load(Ordering::Acquire);
            if placement.is_none() && !known {
                continue;
            }
            let same = known
                && self.placements.by_type.read().unwrap_or_else(PoisonError::into_inner).get(&target.id.model_type)
                    == placement;
            if !same {
                self.place(&target.id.model_type, placement);
            }
        }
    }

    /// The placement this layout knows for `model_type`.
    pub fn placement_of(&self, model_type: &str) -> Option<Placement> {
        if !self.placements.any.load(Ordering::Acquire) {
            return None;
        }
        self.placements.by_type.read().unwrap_or_else(PoisonError::into_inner).get(model_type).cloned()
    }

    /// The hash of scalar fields; also the common stem of the model's other keys.
    pub fn data(&self, id: &ModelId) -> String {
        match self.placement_of(&id.model_type) {
            None => format!("{}:{{{}:{}}}", self.prefix, escape_type(&id.model_type), escape(&id.key)),
            Some(placement) => format!(
                "{}:{{{}}}:{}:{}",
                self.prefix,
                placement_tag(&placement, &id.key),
                escape(&id.model_type),
                escape(&id.key)
            ),
        }
    }

    /// The hash slot of the model's keys on a Redis Cluster.
    pub fn slot(&self, id: &ModelId) -> u16 {
        hash_slot(&self.data(id))
    }

    /// The key of a list or dict field; `None` for a scalar field (it lives in [`Self::data`]).
    pub fn collection(&self, id: &ModelId, field: &str, ty: FieldType) -> Option<String> {
        match ty {
            FieldType::Scalar(_) => None,
            FieldType::List(_) => Some(format!("{}:list:{}", self.data(id), escape(field))),
            FieldType::Dict(_) => Some(format!("{}:dict:{}", self.data(id), escape(field))),
        }
    }

    /// The name of one action's lock on the model: the message its release is announced with.
    /// (The lock itself is the data hash field [`lock_field`].)
    pub fn lock(&self, id: &ModelId, action: &str) -> String {
        format!("{}{}", self.data(id), lock_suffix(action))
    }

    /// The idempotency record of `key`, kept beside its invocation's first model (`anchor`).
    pub fn record(&self, anchor: &ModelId, key: &str) -> String {
        format!("{}:done:{}", self.data(anchor), escape(key))
    }

    /// The Pub/Sub channel where releases are announced.
    pub fn released_channel(&self) -> String {
        format!("{}:released", self.prefix)
    }

    /// The model a key of this layout belongs to (its data hash, a collection, a record, a
    /// lock's name), read back through the layout's injectivity; `None` for a key of another
    /// prefix or shape (the release channel, the registry's keys, another application's).
    pub fn model_of(&self, key: &str) -> Option<ModelId> {
        self.split(key).map(|(id, _)| id)
    }

    /// The model whose state a key holds: its data hash, a list or a dict (not a record or a
    /// lock's name); `None` otherwise.
    pub fn model_state_of(&self, key: &str) -> Option<ModelId> {
        let (id, part) = self.split(key)?;
        (part.is_empty() || part.starts_with(":list:") || part.starts_with(":dict:")).then_some(id)
    }

    /// A key's model and what follows the model's stem ([`Self::data`]): empty for the data
    /// hash, `:list:<field>`, `:done:<key>`, ...
    fn split<'k>(&self, key: &'k str) -> Option<(ModelId, &'k str)> {
        let rest = key.strip_prefix(self.prefix.as_str())?.strip_prefix(":{")?;
        let (tag, after) = rest.split_once('}')?;
        let (model_type, model_key, part) = if tag.starts_with('@') {
            // `{@<group>[:<part>]}:<T>:<k>`: the type and key follow the tag.
            let after = after.strip_prefix(':')?;
            let (model_type, after) = after.split_once(':')?;
            let end = after.find(':').unwrap_or(after.len());
            (model_type, &after[..end], &after[end..])
        } else {
            // `{<T>:<k>}`: a leading `%40` is a type's own `@`, unescaped as the rest.
            let (model_type, model_key) = tag.split_once(':')?;
            if model_key.contains(':') {
                return None;
            }
            (model_type, model_key, after)
        };
        Some((ModelId::new(unescape(model_type)?, unescape(model_key)?), part))
    }
}

/// The inverse of [`escape`] (and of a type's `%40`): percent-decoding; `None` for a bad
/// escape or a name that is not UTF-8.
fn unescape(text: &str) -> Option<String> {
    if !text.contains('%') {
        return Some(text.to_owned());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::value::ScalarKind;

    #[test]
    fn every_key_of_a_model_shares_its_hash_tag() {
        let keys = KeyLayout::new("wasmtx");
        let id = ModelId::new("Account", "alice");
        let all = [
            keys.data(&id),
            keys.lock(&id, "transfer"),
            keys.record(&id, "order-1"),
            keys.collection(&id, "log", FieldType::List(ScalarKind::Str)).unwrap_or_default(),
            keys.collection(&id, "tags", FieldType::Dict(ScalarKind::Str)).unwrap_or_default(),
        ];
        for key in &all {
            assert!(key.starts_with("wasmtx:{Account:alice}"), "{key}");
        }
        assert_eq!(keys.collection(&id, "balance", FieldType::Scalar(ScalarKind::Int)), None);
    }

    /// Every key of a model, in the default layout and placed, reads back as that model,
    /// whatever its names hold; keys of other shapes read as none.
    #[test]
    fn every_key_of_a_model_reads_back_as_the_model() {
        let keys = KeyLayout::new("app:v1");
        keys.place("Placed", Some(&Placement::new("shop", crate::model::placement::PlacementKey::Key).expect("valid")));
        let ids = [
            ModelId::new("Account", "alice"),
            ModelId::new("Acct:admin", "root"),
            ModelId::new("Acct", "admin:root"),
            ModelId::new("@odd", "100%{x}"),
            ModelId::new("Placed", "k:1"),
        ];
        for id in &ids {
            let all = [
                keys.data(id),
                keys.lock(id, "transfer"),
                keys.record(id, "order:1"),
                keys.collection(id, "log", FieldType::List(ScalarKind::Str)).unwrap_or_default(),
                keys.collection(id, "tags", FieldType::Dict(ScalarKind::Str)).unwrap_or_default(),
            ];
            for key in &all {
                assert_eq!(keys.model_of(key).as_ref(), Some(id), "{key}");
            }
            // State keys (data, collections) only.
            for (i, key) in all.iter().enumerate() {
                let state = keys.model_state_of(key);
                assert_eq!(state.as_ref(), if matches!(i, 1 | 2) { None } else { Some(id) }, "{key}");
            }
        }
        for other in [
            "app:v1:released",
            "app:v2:{Account:alice}",
            "other",
            "app:v1:{Account}",
            "app:v1:{A:b%2}",
            "app:v1:{registry}:epoch",
        ] {
            assert_eq!(keys.model_of(other), None, "{other}");
        }
    }

    #[test]
    fn the_issue_example_no_longer_collides() {
        let keys = KeyLayout::new("p");
        assert_eq!(keys.data(&ModelId::new("Acct:admin", "root")), "p:{Acct%3Aadmin:root}");
        assert_eq!(keys.data(&ModelId::new("Acct", "admin:root")), "p:{Acct:admin%3Aroot}");
        assert_eq!(keys.lock(&ModelId::new("T", "50%"), "a:b"), "p:{T:50%25}:lock:a%3Ab");
    }

    #[test]
    fn placed_models_of_any_type_share_the_group_tag_and_slot() {
        use crate::model::placement::PlacementKey;
        let keys = KeyLayout::new("p");
        let shop = Placement::new("shop", PlacementKey::Key).expect("valid");
        let ledger = Placement::new("ledger", PlacementKey::Prefix { separator: "/".into() }).expect("valid");
        keys.place("User", Some(&shop));
        keys.place("Cart", Some(&shop));
        keys.place("Account", Some(&ledger));
        let (user, cart) = (ModelId::new("User", "alice"), ModelId::new("Cart", "alice"));
        assert_eq!(keys.data(&user), "p:{@shop:alice}:User:alice");
        assert_eq!(keys.lock(&cart, "add"), "p:{@shop:alice}:Cart:alice:lock:add");
        assert_eq!(keys.slot(&user), keys.slot(&cart));
        let (a, b) = (ModelId::new("Account", "l1/alice"), ModelId::new("Account", "l1/bob"));
        assert_eq!(keys.data(&a), "p:{@ledger:l1}:Account:l1/alice");
        assert_eq!(keys.slot(&a), keys.slot(&b));
        keys.place("Cart", None);
        assert_eq!(keys.data(&cart), "p:{Cart:alice}");
        assert_eq!(keys.data(&ModelId::new("@x", "k")), "p:{%40x:k}");
    }

    #[test]
    fn slots_are_those_redis_computes() {
        // `CLUSTER KEYSLOT` on Redis 7.0.
        assert_eq!(hash_slot("foo"), 12182);
        assert_eq!(hash_slot("bar"), 5061);
        assert_eq!(hash_slot("{foo}.x"), 12182);
        assert_eq!(hash_slot("{}foo"), crc16_xmodem(b"{}foo") % 16384);
        assert_eq!(hash_slot("123456789"), 0x31C3);
    }

    #[test]
    fn prefixes_that_would_move_the_hash_tag_are_refused() {
        for bad in ["", "a{b", "a}b", "a\nb"] {
            assert!(matches!(validate_prefix(bad), Err(StoreError::InvalidPrefix { .. })), "{bad:?}");
        }
        for good in ["wasmtx", "wasmtx-test:run:1", "my app/é"] {
            assert!(validate_prefix(good).is_ok(), "{good:?}");
        }
    }

    /// What one key names, decoded from its text the way another client following the README's
    /// table would.
    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    enum Named {
        Data(ModelId),
        List(ModelId, String),
        Dict(ModelId, String),
        Lock(ModelId, String),
        Record(ModelId, String),
    }

    fn unescape(text: &str) -> Option<String> {
        if text.contains([':', '{', '}']) {
            return None;
        }
        let mut out = Vec::with_capacity(text.len());
        let mut bytes = text.bytes();
        while let Some(b) = bytes.next() {
            if b == b'%' {
                let hex = [bytes.next()?, bytes.next()?];
                out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
            } else {
                out.push(b);
            }
        }
        String::from_utf8(out).ok()
    }

    fn decode(prefix: &str, key: &str) -> Option<Named> {
        let rest = key.strip_prefix(prefix)?.strip_prefix(":{")?;
        let (tag, suffix) = rest.split_once('}')?;
        let (id, suffix) = match tag.strip_prefix('@') {
            // A placement group's tag, then `:<type>:<key>`.
            Some(group_tag) => {
                for name in group_tag.splitn(2, ':') {
                    unescape(name)?;
                }
                let mut parts = suffix.strip_prefix(':')?.splitn(3, ':');
                let (model_type, model_key) = (parts.next()?, parts.next()?);
                let rest = parts.next().map(|r| format!(":{r}")).unwrap_or_default();
                (ModelId::new(unescape(model_type)?, unescape(model_key)?), rest)
            }
            None => {
                let (model_type, model_key) = tag.split_once(':')?;
                (ModelId::new(unescape(model_type)?, unescape(model_key)?), suffix.to_owned())
            }
        };
        let part = |text: &str| unescape(text);
        Some(match suffix.as_str() {
            "" => Named::Data(id),
            s => {
                let (kind, name) = s.strip_prefix(':')?.split_once(':')?;
                match kind {
                    "list" => Named::List(id, part(name)?),
                    "dict" => Named::Dict(id, part(name)?),
                    "lock" => Named::Lock(id, part(name)?),
                    "done" => Named::Record(id, part(name)?),
                    _ => return None,
                }
            }
        })
    }

    /// Generated names mixing the separators, spaces, unicode, the percent sign, text that looks
    /// escaped and the layout's own words.
    fn name(rng: &mut impl rand::Rng) -> String {
        const PIECES: [&str; 25] = [
            "a", "B", "z9", ":", "::", " ", "é", "☃", "%", "%3A", "%25", "{", "}", "meta", "lock", "list", "dict", "_",
            "-", ".", "registry", "0", "@", "%40", "/",
        ];
        let len = rng.random_range(0..6);
        (0..len).map(|_| PIECES[rng.random_range(0..PIECES.len())]).collect()
    }

    /// A generated placement: a few groups (valid names, some with `:`), each way of choosing
    /// the part.
    fn placement(rng: &mut impl rand::Rng) -> Option<Placement> {
        use crate::model::placement::PlacementKey;
        let group = ["ledger", "shop", "g:x", "a.b", "_"][rng.random_range(0..5)];
        let by = match rng.random_range(0..4) {
            0 => return None,
            1 => PlacementKey::Group,
            2 => PlacementKey::Key,
            _ => PlacementKey::Prefix { separator: [":", "/", "%"][rng.random_range(0..3)].to_owned() },
        };
        Placement::new(group, by).ok()
    }

    /// Property: over generated model types, keys, fields and actions, placed by generated
    /// placements or not, every key decodes back to exactly the (model, part) it was built for,
    /// so distinct models and parts never share a key. The seed is printed; set
    /// `WASMTX_KEY_SEED` to replay one.
    #[test]
    fn distinct_models_and_parts_never_share_a_key() {
        use rand::SeedableRng;
        let seed = std::env::var("WASMTX_KEY_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
        println!("WASMTX_KEY_SEED={seed}");
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let keys = KeyLayout::new("wasmtx-test:p");
        let mut seen: HashMap<String, Named> = HashMap::new();
        let mut check = |key: String, named: Named| {
            assert_eq!(decode(keys.prefix(), &key).as_ref(), Some(&named), "seed {seed}: {key} does not decode back");
            if let Some(other) = seen.insert(key.clone(), named.clone()) {
                assert_eq!(other, named, "seed {seed}: {key} names two things");
            }
        };
        for _ in 0..3000 {
            let id = ModelId::new(name(&mut rng), name(&mut rng));
            let placed = placement(&mut rng);
            keys.place(&id.model_type, placed.as_ref());
            let (field, action) = (name(&mut rng), name(&mut rng));
            check(keys.data(&id), Named::Data(id.clone()));
            check(keys.record(&id, &action), Named::Record(id.clone(), action.clone()));
            check(keys.lock(&id, &action), Named::Lock(id.clone(), action));
            let list = keys.collection(&id, &field, FieldType::List(ScalarKind::Str));
            check(list.unwrap_or_default(), Named::List(id.clone(), field.clone()));
            let dict = keys.collection(&id, &field, FieldType::Dict(ScalarKind::Int));
            check(dict.unwrap_or_default(), Named::Dict(id, field));
        }
        // Registry keys never name a model part: their hash tag holds no `:`.
        let registry = crate::registry::redis::RegistryKeys::new(keys.prefix());
        for key in [registry.rule("a:b"), registry.active(), registry.schemas(), registry.epoch(), registry.refs()] {
            assert_eq!(decode(keys.prefix(), &key), None, "{key}");
        }
    }
}
