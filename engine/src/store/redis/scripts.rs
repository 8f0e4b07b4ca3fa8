//! The Lua scripts of the Redis store: one per protocol step, each one round trip and atomic.
//!
//! Every script checks everything (locks, versions, key types, whether each change applies)
//! before its first write, because Redis does not roll a script back when a command in it
//! fails: a refused commit must write nothing.

/// Takes one action's lock on every model and loads them, all or nothing.
///
/// KEYS per model: `lock, meta, data, coll_1..coll_c`.
/// ARGV: `owner, lease_ms, action, n`, then per model `c, kinds`.
/// Returns `{'BUSY', model, pttl}` (after flagging a waiter so the release is announced),
/// `{'WRONGTYPE', model, key, found}`, or `{'OK', then per model token, version, scalars,
/// collections...}`.
pub const LOCK_AND_LOAD: &str = concat!(
    r#"
local owner, lease, action, n = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
"#,
    include_str!("lua/load_helpers.lua"),
    r#"
local models, k, a = {}, 1, 5
for i = 1, n do
  local c, kinds = tonumber(ARGV[a]), ARGV[a + 1]
  local colls = {}
  for j = 1, c do colls[j] = KEYS[k + 2 + j] end
  models[i] = {lock = KEYS[k], meta = KEYS[k + 1], data = KEYS[k + 2], colls = colls, kinds = kinds}
  k, a = k + 3 + c, a + 2
end
for i, m in ipairs(models) do
  if redis.call('EXISTS', m.lock) == 1 then
    redis.call('HSET', m.meta, 'waiting:' .. action, '1')
    return {'BUSY', i, redis.call('PTTL', m.lock)}
  end
end
for i, m in ipairs(models) do
  local bad = check_types(i, m.meta, m.data, m.colls, m.kinds)
  if bad then return bad end
end
local out = {'OK'}
for _, m in ipairs(models) do
  local token = redis.call('HINCRBY', m.meta, 'fence', 1)
  redis.call('SET', m.lock, token .. ':' .. owner, 'PX', lease)
  out[#out + 1] = token
  load_model(out, m.meta, m.data, m.colls, m.kinds)
end
return out
"#
);

/// Loads models without locks, as one consistent snapshot.
///
/// KEYS per model: `meta, data, coll_1..coll_c`. ARGV: `n`, then per model `c, kinds`.
/// Returns `{'WRONGTYPE', ...}` or `{'OK', then per model version, scalars, collections...}`.
pub const LOAD: &str = concat!(
    include_str!("lua/load_helpers.lua"),
    r#"
local n = tonumber(ARGV[1])
local models, k, a = {}, 1, 2
for i = 1, n do
  local c, kinds = tonumber(ARGV[a]), ARGV[a + 1]
  local colls = {}
  for j = 1, c do colls[j] = KEYS[k + 1 + j] end
  models[i] = {meta = KEYS[k], data = KEYS[k + 1], colls = colls, kinds = kinds}
  k, a = k + 2 + c, a + 2
end
for i, m in ipairs(models) do
  local bad = check_types(i, m.meta, m.data, m.colls, m.kinds)
  if bad then return bad end
end
local out = {'OK'}
for _, m in ipairs(models) do load_model(out, m.meta, m.data, m.colls, m.kinds) end
return out
"#
);

/// Checks a guard, checks that every change applies, applies them all, bumps versions and
/// releases locks: the only script that writes model data.
///
/// KEYS per model: `lock, meta, data, coll_1..coll_c` (the collections the changes touch).
/// ARGV: `guard ('L' leases | 'V' versions | 'U' none), n, action, channel`, then per model
/// `guard_value, c, op_count`, then per op `name, slot, field, argc, args...` where slot 0 is
/// the scalar hash and slot j the j-th collection.
/// Returns `{'OK', version...}`, `{'LOST', model}`, `{'CONFLICT', model, found}`,
/// `{'WRONGTYPE', model, key, found}` or `{'CANNOT', model, field, reason}`.
pub const COMMIT: &str = include_str!("lua/commit.lua");

/// Releases locks still held with the given values, announcing each release someone waits
/// for.
///
/// KEYS: `lock_1, meta_1, lock_2, meta_2, ...`. ARGV: `action, channel, value_1, value_2, ...`.
pub const RELEASE: &str = r#"
for i = 1, #KEYS / 2 do
  local lock, meta = KEYS[2 * i - 1], KEYS[2 * i]
  if redis.call('GET', lock) == ARGV[2 + i] then
    redis.call('DEL', lock)
    if redis.call('HDEL', meta, 'waiting:' .. ARGV[1]) == 1 then
      redis.call('PUBLISH', ARGV[2], lock)
    end
  end
end
return 'OK'
"#;

/// Deletes a model's data keys and bumps its version (locks and fencing counter stay).
///
/// KEYS: `meta, data, coll_1..coll_c`. Returns the new version.
pub const DELETE: &str = r#"
for i = 2, #KEYS do redis.call('DEL', KEYS[i]) end
return redis.call('HINCRBY', KEYS[1], 'version', 1)
"#;

#[cfg(test)]
mod tests {
    #[test]
    fn both_loading_scripts_embed_the_shared_helpers() {
        assert!(super::LOCK_AND_LOAD.contains("local function load_model"));
        assert!(super::LOAD.contains("local function check_types"));
    }
}
