//! The registry's Lua scripts: each write is one atomic script that checks before it writes,
//! bumps the epoch and publishes it when engines must look again.

/// Adds a version unless the rule has one with the same digest; activates it if asked or if
/// the rule has no active version.
///
/// KEYS: `rule, active, wasm, refs, epoch`. ARGV: `name, digest, meta (JSON object without
/// version), activate ('1' or '0'), channel, bytes`.
/// Returns `{created (0/1), record, is_active (0/1)}`.
pub const ADD_VERSION: &str = r#"
local rule, active_key, wasm, refs, epoch_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local name, digest, meta, activate, channel = ARGV[1], ARGV[2], ARGV[3], ARGV[4] == '1', ARGV[5]
local n = redis.call('HGET', rule, 'd:' .. digest)
local created, record = 0, nil
if n then
  record = redis.call('HGET', rule, 'v:' .. n)
else
  n = tostring(redis.call('HINCRBY', rule, 'next', 1))
  record = '{"version":' .. n .. ',' .. string.sub(meta, 2)
  redis.call('HSET', rule, 'v:' .. n, record, 'd:' .. digest, n)
  if redis.call('HINCRBY', refs, digest, 1) == 1 then redis.call('SET', wasm, ARGV[6]) end
  created = 1
end
local current = redis.call('HGET', rule, 'active')
if (activate or not current) and current ~= n then
  redis.call('HSET', rule, 'active', n)
  redis.call('HSET', active_key, name, record)
  redis.call('PUBLISH', channel, redis.call('INCR', epoch_key))
  current = n
end
if current == n then return {created, record, 1} end
return {created, record, 0}
"#;

/// Makes a version the active one.
///
/// KEYS: `rule, active, epoch`. ARGV: `name, version, channel`.
/// Returns `{'OK', record}`, `{'NORULE'}` or `{'NOVERSION'}`.
pub const ACTIVATE: &str = r#"
local current = redis.call('HGET', KEYS[1], 'active')
if not current then return {'NORULE'} end
local record = redis.call('HGET', KEYS[1], 'v:' .. ARGV[2])
if not record then return {'NOVERSION'} end
if current ~= ARGV[2] then
  redis.call('HSET', KEYS[1], 'active', ARGV[2])
  redis.call('HSET', KEYS[2], ARGV[1], record)
  redis.call('PUBLISH', ARGV[3], redis.call('INCR', KEYS[3]))
end
return {'OK', record}
"#;

/// Deletes one version that is not active, and its bytes when nothing else uses them.
///
/// KEYS: `rule, refs, wasm`. ARGV: `version, digest`.
/// Returns `{'OK', record}`, `{'NORULE'}`, `{'NOVERSION'}`, `{'ACTIVE'}` or `{'MOVED'}` (the
/// record no longer has this digest: read again).
pub const DELETE_VERSION: &str = r#"
local current = redis.call('HGET', KEYS[1], 'active')
if not current then return {'NORULE'} end
local record = redis.call('HGET', KEYS[1], 'v:' .. ARGV[1])
if not record then return {'NOVERSION'} end
if current == ARGV[1] then return {'ACTIVE'} end
if not string.find(record, '"digest":"' .. ARGV[2] .. '"', 1, true) then return {'MOVED'} end
redis.call('HDEL', KEYS[1], 'v:' .. ARGV[1], 'd:' .. ARGV[2])
if redis.call('HINCRBY', KEYS[2], ARGV[2], -1) <= 0 then
  redis.call('HDEL', KEYS[2], ARGV[2])
  redis.call('DEL', KEYS[3])
end
return {'OK', record}
"#;

/// Deletes every version of a rule (keeping `next`, so numbers are never reused), if the rule
/// is as the caller read it.
///
/// KEYS: `rule, active, refs, epoch`, then one `wasm` key per version. ARGV: `name, channel,
/// next, hlen` as read, then per version `version, digest`.
/// Returns `{'OK', record...}`, `{'NORULE'}` or `{'BUSY'}` (it changed: read again).
pub const DELETE_RULE: &str = r#"
if not redis.call('HGET', KEYS[1], 'active') then return {'NORULE'} end
if redis.call('HGET', KEYS[1], 'next') ~= ARGV[3] or redis.call('HLEN', KEYS[1]) ~= tonumber(ARGV[4]) then
  return {'BUSY'}
end
local out = {'OK'}
local w = 5
for i = 5, #ARGV, 2 do
  local v, digest = ARGV[i], ARGV[i + 1]
  table.insert(out, redis.call('HGET', KEYS[1], 'v:' .. v))
  redis.call('HDEL', KEYS[1], 'v:' .. v, 'd:' .. digest)
  if redis.call('HINCRBY', KEYS[3], digest, -1) <= 0 then
    redis.call('HDEL', KEYS[3], digest)
    redis.call('DEL', KEYS[w])
  end
  w = w + 1
end
redis.call('HDEL', KEYS[1], 'active')
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[2], redis.call('INCR', KEYS[4]))
return out
"#;

/// Deletes a model schema.
///
/// KEYS: `schemas, epoch`. ARGV: `type, channel`. Returns the deleted record, or nil if there
/// was none (then nothing changes).
pub const DELETE_SCHEMA: &str = r#"
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then return nil end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], redis.call('INCR', KEYS[2]))
return old
"#;

/// Defines a model schema: a new revision if it changed, nothing otherwise.
///
/// KEYS: `schemas, epoch`. ARGV: `type, schema JSON, now_ms, channel`.
/// Returns `{changed (0/1), record}`.
pub const DEFINE_SCHEMA: &str = r#"
local old = redis.call('HGET', KEYS[1], ARGV[1])
local revision = 1
if old then
  local rev, body = string.match(old, '^{"revision":(%d+),"defined_at_ms":%-?%d+,"schema":(.*)}$')
  if body == ARGV[2] then return {0, old} end
  revision = (tonumber(rev) or 0) + 1
end
local record = '{"revision":' .. revision .. ',"defined_at_ms":' .. ARGV[3] .. ',"schema":' .. ARGV[2] .. '}'
redis.call('HSET', KEYS[1], ARGV[1], record)
redis.call('PUBLISH', ARGV[4], redis.call('INCR', KEYS[2]))
return {1, record}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    /// The locals the scripts bind to `KEYS` entries.
    const KEY_LOCALS: [&str; 5] = ["rule", "active_key", "wasm", "refs", "epoch_key"];

    /// On a Redis Cluster a script may touch only the keys it declares (an undeclared key of
    /// another node fails after the earlier writes applied): every `redis.call` names a key
    /// from `KEYS` (directly or through a local bound to one), except `PUBLISH`, whose first
    /// argument is a channel.
    #[test]
    fn every_script_touches_only_keys_it_declares() {
        for script in [ADD_VERSION, ACTIVATE, DELETE_VERSION, DELETE_RULE, DELETE_SCHEMA, DEFINE_SCHEMA] {
            for call in script.split("redis.call('").skip(1) {
                let (command, rest) = call.split_once('\'').expect("a quoted command");
                if command == "PUBLISH" {
                    continue;
                }
                let key = rest.trim_start_matches([',', ' ']).split([',', ')']).next().unwrap_or_default().trim();
                assert!(
                    key.starts_with("KEYS[") || KEY_LOCALS.contains(&key),
                    "{command} touches {key:?}, which is not a declared key:\n{script}"
                );
            }
        }
    }
}
