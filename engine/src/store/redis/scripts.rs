//! The Lua scripts of the Redis store: one per protocol step, each one round trip and atomic.
//!
//! Every script checks everything (locks, versions, key types, whether each change applies)
//! before its first write, because Redis does not roll a script back when a command in it
//! fails: a refused commit must write nothing.

/// Takes one action's lock on every model and loads them, all or nothing, unless the
/// invocation is recorded as committed.
///
/// KEYS per model: `lock, meta, data, coll_1..coll_c`, then the record key when `has_record`.
/// ARGV: `owner, lease_ms, action, n, has_record ('1' or '0')`, then per model `c, kinds`.
/// Returns `{'RECORDED', record}` (nothing taken), `{'BUSY', model, pttl}` (after flagging a
/// waiter so the release is announced), `{'WRONGTYPE', model, key, found}`, or `{'OK', then per
/// model token, version, scalars, collections...}`.
///
/// Reads come first (they also check the key types), then each lock is taken with `SET NX`
/// after drawing its fencing token; a busy lock gives back the locks this call already took.
/// A waiter flags itself by suffixing the holder's lock value with `:w` (see [`COMMIT`]), so
/// the flag lives and expires with the lock and costs the holder no extra command.
pub const LOCK_AND_LOAD: &str = concat!(
    r#"
local owner, lease, n = ARGV[1], ARGV[2], tonumber(ARGV[4])
if ARGV[5] == '1' then
  local r = redis.call('GET', KEYS[#KEYS])
  if r and string.sub(r, 1, 1) == 'C' then return {'RECORDED', r} end
end
"#,
    include_str!("lua/read_typed.lua"),
    include_str!("lua/load_helpers.lua"),
    r#"
local models, k, a = {}, 1, 6
for i = 1, n do
  local c, kinds = tonumber(ARGV[a]), ARGV[a + 1]
  local colls = {}
  for j = 1, c do colls[j] = KEYS[k + 2 + j] end
  models[i] = {lock = KEYS[k], meta = KEYS[k + 1], data = KEYS[k + 2], colls = colls, kinds = kinds}
  k, a = k + 3 + c, a + 2
end
local loaded = {}
for i, m in ipairs(models) do
  local bad
  loaded[i], bad = load_model(i, m.meta, m.data, m.colls, m.kinds)
  if bad then return bad end
end
local out = {'OK'}
for i, m in ipairs(models) do
  local token = redis.call('HINCRBY', m.meta, 'fence', 1)
  if not redis.call('SET', m.lock, token .. ':' .. owner, 'NX', 'PX', lease) then
    for j = 1, i - 1 do redis.call('DEL', models[j].lock) end
    local holder = redis.call('GET', m.lock)
    if holder and string.sub(holder, -2) ~= ':w' then redis.call('APPEND', m.lock, ':w') end
    return {'BUSY', i, redis.call('PTTL', m.lock)}
  end
  out[#out + 1] = token
  for _, v in ipairs(loaded[i]) do out[#out + 1] = v end
end
return out
"#
);

/// Loads models without locks, as one consistent snapshot, unless the invocation is recorded
/// as committed.
///
/// KEYS per model: `meta, data, coll_1..coll_c`, then the record key when `has_record`.
/// ARGV: `n, has_record ('1' or '0')`, then per model `c, kinds`.
/// Returns `{'RECORDED', record}`, `{'WRONGTYPE', ...}` or `{'OK', then per model version,
/// scalars, collections...}`.
pub const LOAD: &str = concat!(
    include_str!("lua/read_typed.lua"),
    include_str!("lua/load_helpers.lua"),
    r#"
local n = tonumber(ARGV[1])
if ARGV[2] == '1' then
  local r = redis.call('GET', KEYS[#KEYS])
  if r and string.sub(r, 1, 1) == 'C' then return {'RECORDED', r} end
end
local models, k, a = {}, 1, 3
for i = 1, n do
  local c, kinds = tonumber(ARGV[a]), ARGV[a + 1]
  local colls = {}
  for j = 1, c do colls[j] = KEYS[k + 1 + j] end
  models[i] = {meta = KEYS[k], data = KEYS[k + 1], colls = colls, kinds = kinds}
  k, a = k + 2 + c, a + 2
end
local out = {'OK'}
for i, m in ipairs(models) do
  local loaded, bad = load_model(i, m.meta, m.data, m.colls, m.kinds)
  if bad then return bad end
  for _, v in ipairs(loaded) do out[#out + 1] = v end
end
return out
"#
);

/// Checks a guard, checks that every change applies, applies them all, bumps versions and
/// releases locks: the only script that writes model data.
///
/// KEYS: the `r` record keys, then per model `lock, meta, data, coll_1..coll_c` (the
/// collections the changes touch).
/// ARGV: `guard ('L' leases | 'V' versions | 'U' none), n, channel, r, commit_id,
/// retention_ms`, then one payload per record (empty: only check it), then per model
/// `lock_value, version, c, op_count` (`lock_value` the lease's `token:owner` under 'L',
/// `version` the version loaded under 'L' and 'V'), then per op `name, slot, field, argc,
/// args...` where slot 0 is the scalar hash and slot j the j-th collection. Under 'L' the
/// versions are checked only when the commit writes something (a read-only run only releases).
/// Returns `{'OK', version...}`, `{'RECORDED', record_index, record}`, `{'ABORTED'}`,
/// `{'LOST', model}`, `{'CONFLICT', model, found}`, `{'WRONGTYPE', model, key, found}` or
/// `{'CANNOT', model, field, reason}`.
///
/// A record is written as `C<version>,<version>...` (every model's version after the commit,
/// request order), a newline and its payload, with a TTL of `retention_ms`; a record that holds
/// `A <id> <id> ... ` names aborted attempts (see [`RESOLVE`]).
///
/// A lease guard matches the lock value `token:owner`, or `token:owner:w` once a waiter
/// flagged itself; the release announces only flagged locks.
pub const COMMIT: &str = concat!(include_str!("lua/read_typed.lua"), include_str!("lua/commit.lua"));

/// Releases locks still held with the given values, announcing each release someone waits
/// for.
///
/// KEYS: `lock_1, lock_2, ...`. ARGV: `channel, value_1, value_2, ...` (a value matches the
/// lock with or without a waiter's `:w` suffix).
pub const RELEASE: &str = r#"
for i, lock in ipairs(KEYS) do
  local held, mine = redis.call('GET', lock), ARGV[1 + i]
  if held == mine or held == mine .. ':w' then
    redis.call('DEL', lock)
    if held ~= mine then redis.call('PUBLISH', ARGV[1], lock) end
  end
end
return 'OK'
"#;

/// Resolves commit attempt `commit_id` whose reply was lost: returns, per record key, the
/// committed record or `false`, and marks the attempt as aborted in every record that is not
/// committed, so that it can no longer apply.
///
/// KEYS: the record keys. ARGV: `commit_id, retention_ms`.
pub const RESOLVE: &str = r#"
local out = {}
for i, key in ipairs(KEYS) do
  local r = redis.call('GET', key)
  if r and string.sub(r, 1, 1) == 'C' then
    out[i] = r
  else
    redis.call('SET', key, (r or 'A ') .. ARGV[1] .. ' ', 'PX', ARGV[2])
    out[i] = false
  end
end
return out
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
        assert!(super::LOAD.contains("local function read("));
        for script in [super::LOCK_AND_LOAD, super::LOAD, super::COMMIT] {
            assert!(script.contains("local function read_typed"));
        }
    }
}
