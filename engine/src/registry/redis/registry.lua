
-- The registry's writes (engine/src/registry/redis/mod.rs; the layout in keys.rs), appended to
-- the store's library so that both load, upgrade and survive a failover or `SCRIPT FLUSH`
-- together. Each is one atomic call that checks before it writes, bumps the epoch and
-- publishes it when engines must look again. Every key a function touches is declared: on a
-- Redis Cluster the whole registry is one slot (hash tag `{registry}`), and a key of another
-- node would fail after the earlier writes applied.

-- Adds a version unless the rule has one with the same digest; activates it if asked or if
-- the rule has no active version. KEYS: `rule, active, wasm, refs, epoch`. ARGV: `name,
-- digest, meta (JSON object without version), activate ('1'|'0'), channel, bytes`. Returns
-- `{created (0/1), record, is_active (0/1)}`.
local function registry_add_version(keys, args)
  local rule, active_key, wasm, refs, epoch_key = keys[1], keys[2], keys[3], keys[4], keys[5]
  local name, digest, meta, activate, channel = args[1], args[2], args[3], args[4] == '1', args[5]
  local n = redis.call('HGET', rule, 'd:' .. digest)
  local created, record = 0, nil
  if n then
    record = redis.call('HGET', rule, 'v:' .. n)
  else
    n = string.format('%d', redis.call('HINCRBY', rule, 'next', 1))
    record = '{"version":' .. n .. ',' .. string.sub(meta, 2)
    redis.call('HSET', rule, 'v:' .. n, record, 'd:' .. digest, n)
    if redis.call('HINCRBY', refs, digest, 1) == 1 then redis.call('SET', wasm, args[6]) end
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
end

-- Makes a version the active one. KEYS: `rule, active, epoch`. ARGV: `name, version,
-- channel`. Returns `{'OK', record}`, `{'NORULE'}` or `{'NOVERSION'}`.
local function registry_activate(keys, args)
  local rule, active_key, epoch_key = keys[1], keys[2], keys[3]
  local current = redis.call('HGET', rule, 'active')
  if not current then return {'NORULE'} end
  local record = redis.call('HGET', rule, 'v:' .. args[2])
  if not record then return {'NOVERSION'} end
  if current ~= args[2] then
    redis.call('HSET', rule, 'active', args[2])
    redis.call('HSET', active_key, args[1], record)
    redis.call('PUBLISH', args[3], redis.call('INCR', epoch_key))
  end
  return {'OK', record}
end

-- Deletes one version that is not active, and its bytes when nothing else uses them. KEYS:
-- `rule, refs, wasm`. ARGV: `version, digest`. Returns `{'OK', record}`, `{'NORULE'}`,
-- `{'NOVERSION'}`, `{'ACTIVE'}` or `{'MOVED'}` (the record no longer has this digest: read
-- again).
local function registry_delete_version(keys, args)
  local rule, refs, wasm = keys[1], keys[2], keys[3]
  local current = redis.call('HGET', rule, 'active')
  if not current then return {'NORULE'} end
  local record = redis.call('HGET', rule, 'v:' .. args[1])
  if not record then return {'NOVERSION'} end
  if current == args[1] then return {'ACTIVE'} end
  if not string.find(record, '"digest":"' .. args[2] .. '"', 1, true) then return {'MOVED'} end
  redis.call('HDEL', rule, 'v:' .. args[1], 'd:' .. args[2])
  if redis.call('HINCRBY', refs, args[2], -1) <= 0 then
    redis.call('HDEL', refs, args[2])
    redis.call('DEL', wasm)
  end
  return {'OK', record}
end

-- Deletes every version of a rule (keeping `next`, so numbers are never reused), if the rule
-- is as the caller read it. KEYS: `rule, active, refs, epoch`, then one `wasm` key per
-- version. ARGV: `name, channel, next, hlen` as read, then per version `version, digest`.
-- Returns `{'OK', record...}`, `{'NORULE'}` or `{'BUSY'}` (it changed: read again).
local function registry_delete_rule(keys, args)
  local rule, active_key, refs, epoch_key = keys[1], keys[2], keys[3], keys[4]
  if not redis.call('HGET', rule, 'active') then return {'NORULE'} end
  if redis.call('HGET', rule, 'next') ~= args[3] or redis.call('HLEN', rule) ~= tonumber(args[4]) then
    return {'BUSY'}
  end
  local out = {'OK'}
  local w = 5
  for i = 5, #args, 2 do
    local v, digest, wasm = args[i], args[i + 1], keys[w]
    out[#out + 1] = redis.call('HGET', rule, 'v:' .. v)
    redis.call('HDEL', rule, 'v:' .. v, 'd:' .. digest)
    if redis.call('HINCRBY', refs, digest, -1) <= 0 then
      redis.call('HDEL', refs, digest)
      redis.call('DEL', wasm)
    end
    w = w + 1
  end
  redis.call('HDEL', rule, 'active')
  redis.call('HDEL', active_key, args[1])
  redis.call('PUBLISH', args[2], redis.call('INCR', epoch_key))
  return out
end

-- Defines a model schema: a new revision if it changed, nothing otherwise. KEYS: `schemas,
-- epoch`. ARGV: `type, schema JSON, now_ms, channel`. Returns `{changed (0/1), record}`.
local function registry_define_schema(keys, args)
  local schemas, epoch_key = keys[1], keys[2]
  local old = redis.call('HGET', schemas, args[1])
  local revision = 1
  if old then
    local rev, body = string.match(old, '^{"revision":(%d+),"defined_at_ms":%-?%d+,"schema":(.*)}$')
    if body == args[2] then return {0, old} end
    revision = (tonumber(rev) or 0) + 1
  end
  local record = '{"revision":' .. string.format('%d', revision) .. ',"defined_at_ms":' .. args[3] .. ',"schema":'
    .. args[2] .. '}'
  redis.call('HSET', schemas, args[1], record)
  redis.call('PUBLISH', args[4], redis.call('INCR', epoch_key))
  return {1, record}
end

-- Deletes a model schema. KEYS: `schemas, epoch`. ARGV: `type, channel`. Returns the deleted
-- record, or nil if there was none (then nothing changes).
local function registry_delete_schema(keys, args)
  local schemas, epoch_key = keys[1], keys[2]
  local old = redis.call('HGET', schemas, args[1])
  if not old then return nil end
  redis.call('HDEL', schemas, args[1])
  redis.call('PUBLISH', args[2], redis.call('INCR', epoch_key))
  return old
end

redis.register_function('wasmtx_v8_registry_add_version', registry_add_version)
redis.register_function('wasmtx_v8_registry_activate', registry_activate)
redis.register_function('wasmtx_v8_registry_delete_version', registry_delete_version)
redis.register_function('wasmtx_v8_registry_delete_rule', registry_delete_rule)
redis.register_function('wasmtx_v8_registry_define_schema', registry_define_schema)
redis.register_function('wasmtx_v8_registry_delete_schema', registry_delete_schema)
