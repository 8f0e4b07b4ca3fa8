-- Commit: check the guard, check every change applies, apply all, bump versions, release.
-- See scripts.rs (COMMIT) for the KEYS/ARGV layout. Nothing is written before the last check.
local guard, n, channel = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local nrec, commit_id, retention = tonumber(ARGV[4]), ARGV[5], ARGV[6]
local CHUNK = 4000

-- 0. The idempotency records: none may be committed already, and this attempt must not have
-- been declared aborted by a resolve (its reply was lost and the engine moved on).
local records = {}
for r = 1, nrec do
  local held = redis.call('GET', KEYS[r])
  if held then
    if string.sub(held, 1, 1) == 'C' then return {'RECORDED', r, held} end
    if string.find(held, ' ' .. commit_id .. ' ', 1, true) then return {'ABORTED'} end
  end
  records[r] = {key = KEYS[r], payload = ARGV[6 + r]}
end

local models, k, a, writes = {}, 1 + nrec, 7 + nrec, false
for i = 1, n do
  local m = {lock = KEYS[k], meta = KEYS[k + 1], keys = {[0] = KEYS[k + 2]}, held = ARGV[a], version = ARGV[a + 1],
    ops = {}}
  local c, nops = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  if nops > 0 then writes = true end
  a = a + 4
  for j = 1, c do m.keys[j] = KEYS[k + 2 + j] end
  k = k + 3 + c
  for o = 1, nops do
    local op = {name = ARGV[a], slot = tonumber(ARGV[a + 1]), field = ARGV[a + 2], args = {}}
    local argc = tonumber(ARGV[a + 3])
    for x = 1, argc do op.args[x] = ARGV[a + 3 + x] end
    a = a + 4 + argc
    m.ops[o] = op
  end
  models[i] = m
end

-- 1. The guard: every lease still held (lock mode), then every model still at the version
-- the caller loaded (lock mode when it writes: another action, mode or client may have changed
-- the model since; optimistic mode always, with no lock of its action held).
for i, m in ipairs(models) do
  if guard == 'L' then
    -- A waiter flags itself by suffixing the lock value with ':w' (see LOCK_AND_LOAD).
    local held = redis.call('GET', m.lock)
    if held ~= m.held and held ~= m.held .. ':w' then return {'LOST', i} end
    m.flagged = held ~= m.held
  end
end
for i, m in ipairs(models) do
  if guard == 'V' or (guard == 'L' and writes) then
    local v = redis.call('HGET', m.meta, 'version') or '0'
    if v ~= m.version then return {'CONFLICT', i, v} end
    -- A lock-mode holder of the same action counts as a change in progress.
    if guard == 'V' and redis.call('EXISTS', m.lock) == 1 then return {'CONFLICT', i, v} end
  end
end

-- 2. Every change applies: simulate the batch over list lengths (or whole lists, where a
-- removal needs to know the items) and hash values.
-- A key's type is known once a read of it succeeded (a read of a key holding another type
-- fails with WRONGTYPE); `TYPE` is asked only for keys the checks do not read.
local types, llen, hval, items = {}, {}, {}, {}
local function key_type(key)
  if types[key] == nil then types[key] = redis.call('TYPE', key)['ok'] end
  return types[key]
end
-- Reads `key` with `cmd` (read_typed.lua), expecting a key of type `want` (or none). On a key
-- of another type records the type found and returns `fallback`; the caller's type check then
-- refuses.
local function typed_read(want, fallback, cmd, key, ...)
  local r, found = read_typed(cmd, key, ...)
  types[key] = found or types[key] or want
  if found then return fallback end
  return r
end
local function list_len(key)
  if items[key] then return #items[key] end
  if llen[key] == nil then llen[key] = typed_read('list', 0, 'LLEN', key) end
  return llen[key]
end
local function hash_get(key, f)
  local id = key .. '\0' .. f
  if hval[id] == nil then hval[id] = typed_read('hash', false, 'HGET', key, f) or false end
  return hval[id]
end
local function py_index(idx, len)
  if idx < 0 then idx = idx + len end
  return idx
end
local WANT = {HSET = 'hash', HINCRBY = 'hash', HDEL = 'hash', RPUSH = 'list', LTRIM = 'list',
  LREPLACE = 'list', LINSERT = 'list', LPOPAT = 'list', LREMOVE = 'list'}

-- Lists with a removal by value are simulated item by item (others by length only, so an
-- append-only commit never reads its list).
for _, m in ipairs(models) do
  for _, op in ipairs(m.ops) do
    if op.name == 'LREMOVE' then
      local key = m.keys[op.slot]
      if items[key] == nil then
        items[key] = (key_type(key) == 'list') and redis.call('LRANGE', key, 0, -1) or {}
      end
    end
  end
end

for i, m in ipairs(models) do
  for _, op in ipairs(m.ops) do
    local key, name, args = m.keys[op.slot], op.name, op.args
    local want = WANT[name]
    if want then
      -- Prime the type with the read the simulation needs anyway, so `TYPE` is asked only
      -- for keys that are written without being read (HSET, HDEL).
      if types[key] == nil then
        if name == 'HINCRBY' then hash_get(key, args[1])
        elseif want == 'list' and not items[key] then list_len(key) end
      end
      local t = key_type(key)
      if t ~= 'none' and t ~= want then return {'WRONGTYPE', i, key, t} end
    end
    local list = items[key]
    if name == 'HSET' then
      for x = 1, #args, 2 do hval[key .. '\0' .. args[x]] = args[x + 1] end
    elseif name == 'HINCRBY' then
      local before = hash_get(key, args[1])
      -- Whether the field is missing when this op applies: then it starts from its default.
      op.absent = before == false
      local cur = before or args[3]
      if not string.match(cur, '^-?%d+$') then
        return {'CANNOT', i, op.field, 'stored value `' .. cur .. '` is not an int'}
      end
      local new = tonumber(cur) + tonumber(args[2])
      if new >= 9.2233720368547e18 or new <= -9.2233720368547e18 then
        return {'CANNOT', i, op.field, 'increment would overflow a 64-bit int'}
      end
      hval[key .. '\0' .. args[1]] = string.format('%.0f', new)
    elseif name == 'HDEL' then
      for x = 1, #args do hval[key .. '\0' .. args[x]] = false end
    elseif name == 'RPUSH' then
      if list then for x = 1, #args do list[#list + 1] = args[x] end
      else llen[key] = list_len(key) + #args end
    elseif name == 'LTRIM' then
      local len = math.min(list_len(key), tonumber(args[1]))
      if list then for x = #list, len + 1, -1 do table.remove(list, x) end
      else llen[key] = len end
    elseif name == 'LREPLACE' then
      if list then
        items[key] = {}
        for x = 1, #args do items[key][x] = args[x] end
      else llen[key] = #args end
    elseif name == 'LINSERT' then
      if list then
        local idx = py_index(tonumber(args[1]), #list)
        if idx < 0 then idx = 0 end
        if idx > #list then idx = #list end
        table.insert(list, idx + 1, args[2])
      else llen[key] = list_len(key) + 1 end
    elseif name == 'LPOPAT' then
      local len = list_len(key)
      if len == 0 then return {'CANNOT', i, op.field, 'pop from an empty list'} end
      local idx = len - 1
      if args[1] ~= '' then
        idx = py_index(tonumber(args[1]), len)
        if idx < 0 or idx >= len then
          return {'CANNOT', i, op.field, 'pop index ' .. args[1] .. ' out of range for length ' .. len}
        end
      end
      if list then table.remove(list, idx + 1) else llen[key] = len - 1 end
    elseif name == 'LREMOVE' then
      local at = nil
      for x = 1, #list do
        if list[x] == args[1] then at = x break end
      end
      if not at then return {'CANNOT', i, op.field, 'item to remove is not in the list'} end
      table.remove(list, at)
    elseif name == 'DEL' then
      if list then items[key] = {} else llen[key] = 0 end
    else
      return redis.error_reply('wasmtx: unknown commit op ' .. tostring(name))
    end
  end
end

-- 3. Apply. Nothing below can fail on data the checks above accepted.
local function call_chunked(cmd, key, args, from)
  local last = #args
  local i = from or 1
  while i <= last do
    local j = math.min(i + CHUNK - 1, last)
    redis.call(cmd, key, unpack(args, i, j))
    i = j + 1
  end
end

-- Consecutive HSETs of one key are sent as one; any other op on the key flushes them first.
local pending, pending_keys = {}, {}
local function flush(key)
  if pending[key] then
    call_chunked('HSET', key, pending[key])
    pending[key] = nil
  end
end
for _, m in ipairs(models) do
  for _, op in ipairs(m.ops) do
    local key, name, args = m.keys[op.slot], op.name, op.args
    if name ~= 'HSET' then flush(key) end
    if name == 'HSET' then
      local p = pending[key]
      if not p then
        p = {}
        pending[key] = p
        pending_keys[#pending_keys + 1] = key
      end
      for x = 1, #args do p[#p + 1] = args[x] end
    elseif name == 'HINCRBY' then
      if op.absent and args[3] ~= '0' then redis.call('HSET', key, args[1], args[3]) end
      redis.call('HINCRBY', key, args[1], args[2])
    elseif name == 'HDEL' then
      call_chunked('HDEL', key, args)
    elseif name == 'RPUSH' then
      call_chunked('RPUSH', key, args)
    elseif name == 'LTRIM' then
      local len = tonumber(args[1])
      if len == 0 then redis.call('DEL', key) else redis.call('LTRIM', key, 0, len - 1) end
    elseif name == 'LREPLACE' then
      redis.call('DEL', key)
      call_chunked('RPUSH', key, args)
    elseif name == 'LINSERT' then
      local len = redis.call('LLEN', key)
      local idx = py_index(tonumber(args[1]), len)
      if idx < 0 then idx = 0 end
      if idx >= len then
        redis.call('RPUSH', key, args[2])
      elseif idx == 0 then
        redis.call('LPUSH', key, args[2])
      else
        local tail = redis.call('LRANGE', key, idx, -1)
        redis.call('LTRIM', key, 0, idx - 1)
        redis.call('RPUSH', key, args[2])
        call_chunked('RPUSH', key, tail)
      end
    elseif name == 'LPOPAT' then
      if args[1] == '' then
        redis.call('RPOP', key)
      else
        local len = redis.call('LLEN', key)
        local idx = py_index(tonumber(args[1]), len)
        if idx == 0 then
          redis.call('LPOP', key)
        elseif idx == len - 1 then
          redis.call('RPOP', key)
        else
          local tail = redis.call('LRANGE', key, idx + 1, -1)
          redis.call('LTRIM', key, 0, idx - 1)
          call_chunked('RPUSH', key, tail)
        end
      end
    elseif name == 'LREMOVE' then
      redis.call('LREM', key, 1, args[1])
    elseif name == 'DEL' then
      redis.call('DEL', key)
    end
  end
end

for _, key in ipairs(pending_keys) do flush(key) end

-- 4. Versions, release and records.
local out = {'OK'}
for _, m in ipairs(models) do
  if #m.ops > 0 then
    out[#out + 1] = redis.call('HINCRBY', m.meta, 'version', 1)
  else
    out[#out + 1] = tonumber(redis.call('HGET', m.meta, 'version') or '0')
  end
  if guard == 'L' then
    redis.call('DEL', m.lock)
    if m.flagged then redis.call('PUBLISH', channel, m.lock) end
  end
end
if nrec > 0 then
  local versions = {}
  for x = 2, #out do versions[x - 1] = tostring(out[x]) end
  local head = 'C' .. table.concat(versions, ',') .. '\n'
  for _, r in ipairs(records) do
    if r.payload ~= '' then redis.call('SET', r.key, head .. r.payload, 'PX', retention) end
  end
end
return out
