#!lua name=wasmtx
-- The Redis store's protocol, as one Redis Functions library (see functions.rs for how it is
-- loaded and checked, and keys.rs for the layout). One function per protocol step; each is one
-- round trip and atomic, and checks everything (locks, versions, key types, whether each change
-- applies, the idempotency records) before its first write: Redis does not roll a function
-- back when a command in it fails, and a refused step must write nothing.
--
-- A model is its data hash (the scalar fields, plus the engine's fields, whose names start with
-- `~`, which no schema field can: `~v` version, `~f` last fencing token, `~l:<action>` that
-- action's lock) and one key per list or dict field. A lock is `<token>:<deadline ms>:<owner>`,
-- with `:w` appended once a waiter flagged itself; free when empty, missing, or past its
-- deadline by the server's clock (`TIME`).

local VERSION = '2'

-- Runs a read; returns its reply, or nil and the type the key holds when that is not a type
-- the read works on (the read failed with WRONGTYPE; only then is `TYPE` asked). Any other
-- error ends the call.
local function read_typed(cmd, key, ...)
  local r = redis.pcall(cmd, key, ...)
  if type(r) == 'table' and r.err then
    if not string.find(r.err, 'WRONGTYPE', 1, true) then error(r) end
    return nil, redis.call('TYPE', key)['ok']
  end
  return r, nil
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A lock value's token and deadline.
local function lock_parts(v)
  local token, deadline = string.match(v, '^(%d+):(%d+):')
  return token, tonumber(deadline)
end

-- Reads model `i`'s collections (`kinds`: one letter per key, 'l' list or 'd' dict) into
-- `out`; returns the error reply for a key of the wrong type.
local function load_collections(i, colls, kinds, out)
  for j = 1, #colls do
    local r, found
    if string.sub(kinds, j, j) == 'l' then
      r, found = read_typed('LRANGE', colls[j], 0, -1)
    else
      r, found = read_typed('HGETALL', colls[j])
    end
    if found then return {'WRONGTYPE', i, colls[j], found} end
    out[#out + 1] = r
  end
  return nil
end

-- Reads `n` models laid out in `keys` from `k` and `args` from `a` (per model: `c, kinds`, and
-- the data key then `c` collection keys); returns the models as {data, colls, kinds, flat,
-- fence, held} with `flat` the data hash and `held` the value of its field `lock_field` (if
-- given), or nil and the error reply (a key of the wrong type, an engine field that is not a
-- number).
local function read_models(keys, args, n, k, a, lock_field)
  local models = {}
  for i = 1, n do
    local c = tonumber(args[a])
    local m = {data = keys[k], kinds = args[a + 1], colls = {}, fence = 0}
    for j = 1, c do m.colls[j] = keys[k + j] end
    k, a = k + 1 + c, a + 2
    local found
    m.flat, found = read_typed('HGETALL', m.data)
    if found then return nil, {'WRONGTYPE', i, m.data, found} end
    local flat = m.flat
    for x = 1, #flat, 2 do
      local f = flat[x]
      if string.sub(f, 1, 1) == '~' then
        if f == '~v' or f == '~f' then
          if not string.match(flat[x + 1], '^%d+$') then
            return nil, {'CORRUPT', i, f, 'holds `' .. flat[x + 1] .. '`, not a count'}
          end
          if f == '~f' then m.fence = tonumber(flat[x + 1]) end
        elseif f == lock_field then
          m.held = flat[x + 1]
        end
      end
    end
    models[i] = m
  end
  return models, nil
end

-- The committed record at `key`, if any (a record is `C<version>,...` + newline + payload, or
-- `A <commit id> ... ` for attempts declared aborted).
local function committed_record(key)
  local r = redis.call('GET', key)
  if r and string.sub(r, 1, 1) == 'C' then return r end
  return nil
end

-- Lock-and-load. KEYS: per model `data, coll_1..coll_c`, then the record key when
-- `has_record`. ARGV: `owner, lease_ms, lock_field, n, has_record ('1'|'0')`, then per model
-- `c, kinds`. Returns `{'RECORDED', record}` (nothing taken), `{'BUSY', model, pttl}` (after
-- flagging the holder's lock so that its release is announced), `{'WRONGTYPE', model, key,
-- found}`, `{'CORRUPT', model, field, reason}`, or `{'OK', then per model token, data hash
-- (flat), collections...}`.
local function lock_and_load(keys, args)
  local owner, lease, field, n = args[1], tonumber(args[2]), args[3], tonumber(args[4])
  if args[5] == '1' then
    local r = committed_record(keys[#keys])
    if r then return {'RECORDED', r} end
  end
  local models, bad = read_models(keys, args, n, 1, 6, field)
  if bad then return bad end
  local now = now_ms()
  for i, m in ipairs(models) do
    local held = m.held
    if held and held ~= '' then
      local _, deadline = lock_parts(held)
      if deadline and deadline > now then
        if string.sub(held, -2) ~= ':w' then redis.call('HSET', m.data, field, held .. ':w') end
        return {'BUSY', i, deadline - now}
      end
    end
  end
  local out = {'OK'}
  for i, m in ipairs(models) do
    local loaded = {}
    bad = load_collections(i, m.colls, m.kinds, loaded)
    if bad then return bad end
    m.loaded = loaded
  end
  local deadline = tostring(now + lease)
  for _, m in ipairs(models) do
    local token = m.fence + 1
    redis.call('HSET', m.data, '~f', token, field, token .. ':' .. deadline .. ':' .. owner)
    out[#out + 1] = token
    out[#out + 1] = m.flat
    for _, v in ipairs(m.loaded) do out[#out + 1] = v end
  end
  return out
end

-- Load, without locks, as one snapshot. KEYS: per model `data, coll_1..coll_c`, then the
-- record key when `has_record`. ARGV: `n, has_record`, then per model `c, kinds`. Returns
-- `{'RECORDED', record}`, `{'WRONGTYPE', ...}`, `{'CORRUPT', ...}` or `{'OK', then per model
-- data hash (flat), collections...}`.
local function load(keys, args)
  local n = tonumber(args[1])
  if args[2] == '1' then
    local r = committed_record(keys[#keys])
    if r then return {'RECORDED', r} end
  end
  local models, bad = read_models(keys, args, n, 1, 3)
  if bad then return bad end
  local out = {'OK'}
  for i, m in ipairs(models) do
    out[#out + 1] = m.flat
    bad = load_collections(i, m.colls, m.kinds, out)
    if bad then return bad end
  end
  return out
end

-- Exact 64-bit addition of two decimal integers (a double is exact only to 2^53): each is
-- split into a high part and nine low digits, both exact as doubles. Returns the sum as text,
-- or nil when it overflows a 64-bit int.
local function split_int(s)
  local neg = string.sub(s, 1, 1) == '-'
  local digits = string.gsub(neg and string.sub(s, 2) or s, '^0+', '')
  if #digits > 19 then return nil end
  local hi, lo = tonumber(string.sub(digits, 1, -10)) or 0, tonumber(string.sub(digits, -9)) or 0
  if neg then return -hi, -lo end
  return hi, lo
end
local function add_int(a, b)
  local ah, al = split_int(a)
  local bh, bl = split_int(b)
  if not ah or not bh then return nil end
  local h, l = ah + bh, al + bl
  if l >= 1e9 then h, l = h + 1, l - 1e9 elseif l <= -1e9 then h, l = h - 1, l + 1e9 end
  if h > 0 and l < 0 then h, l = h - 1, l + 1e9 elseif h < 0 and l > 0 then h, l = h + 1, l - 1e9 end
  if h > 9223372036 or (h == 9223372036 and l > 854775807) then return nil end
  if h < -9223372036 or (h == -9223372036 and l < -854775808) then return nil end
  if h == 0 then return string.format('%d', l) end
  return string.format('%d%09d', h, math.abs(l))
end

local WANT = {HSET = 'hash', HDEL = 'hash', RPUSH = 'list', LTRIM = 'list', LREPLACE = 'list',
  LINSERT = 'list', LPOPAT = 'list', LREMOVE = 'list'}
local CHUNK = 4000

local function call_chunked(cmd, key, args)
  local i, last = 1, #args
  while i <= last do
    local j = math.min(i + CHUNK - 1, last)
    redis.call(cmd, key, unpack(args, i, j))
    i = j + 1
  end
end

local function py_index(idx, len)
  if idx < 0 then idx = idx + len end
  return idx
end

-- Commit: check the guard, check every change applies, check and write the records, apply
-- every change, bump versions, release. KEYS: the `r` record keys, then per model `data,
-- coll_1..coll_c` (the collections the changes touch). ARGV: `guard ('L' leases | 'V'
-- versions | 'U' none), n, channel, lock_field, lock_suffix, check_clock ('1'|'0'), r,
-- commit_id, retention_ms`, one payload per record (empty: only check it), then per model
-- `token, version, c, op_count` and per op `name, slot, field, argc, args...` (slot 0 is the
-- data hash, slot j the j-th collection). `token` is the lease's under 'L'; `version` the one
-- loaded under 'L' and 'V' (under 'L' checked only when the commit writes). `check_clock`
-- asks to refuse a lease past its deadline even if nobody took the lock (the engine asks when
-- its own clock cannot rule that out). Returns `{'OK', version...}`, `{'RECORDED', record
-- index, record}`, `{'ABORTED'}`, `{'LOST', model}`, `{'CONFLICT', model, found}`,
-- `{'WRONGTYPE', model, key, found}`, `{'CORRUPT', model, field, reason}` or `{'CANNOT', model,
-- field, reason}`.
local function commit(keys, args)
  local guard, n, channel, field, suffix = args[1], tonumber(args[2]), args[3], args[4], args[5]
  local check_clock, nrec, commit_id, retention = args[6] == '1', tonumber(args[7]), args[8], args[9]
  local a, k, writes = 10 + nrec, 1 + nrec, false
  local models = {}
  for i = 1, n do
    local m = {data = keys[k], token = args[a], version = args[a + 1], keys = {[0] = keys[k]}, ops = {}}
    local c, nops = tonumber(args[a + 2]), tonumber(args[a + 3])
    a = a + 4
    for j = 1, c do m.keys[j] = keys[k + j] end
    k = k + 1 + c
    -- The data hash fields to read: the version, the lock, and every field an increment needs.
    m.fields = {'~v', field}
    for o = 1, nops do
      local op = {name = args[a], slot = tonumber(args[a + 1]), field = args[a + 2], args = {}}
      local argc = tonumber(args[a + 3])
      for x = 1, argc do op.args[x] = args[a + 3 + x] end
      a = a + 4 + argc
      if op.name == 'HINCRBY' then m.fields[#m.fields + 1] = op.args[1] end
      m.ops[o] = op
    end
    if nops > 0 then writes = true end
    models[i] = m
  end

  -- 1. Read each data hash once (this also checks its type).
  for i, m in ipairs(models) do
    local r, found = read_typed('HMGET', m.data, unpack(m.fields))
    if found then return {'WRONGTYPE', i, m.data, found} end
    m.current, m.held = r[1] or '0', r[2] or ''
    if not string.match(m.current, '^%d+$') then
      return {'CORRUPT', i, '~v', 'holds `' .. m.current .. '`, not a count'}
    end
    m.hval, m.written = {}, {}
    for x = 3, #m.fields do m.hval[m.fields[x]] = r[x] or false end
  end

  -- 2. The guard: every lease still held (lock mode), then every model still at the version
  -- the caller loaded (lock mode when it writes: another action, mode or client may have
  -- changed the model since; optimistic mode always, with no live lock of its action).
  local now
  if guard == 'L' then
    for i, m in ipairs(models) do
      local token, deadline = lock_parts(m.held)
      if token ~= m.token then return {'LOST', i} end
      if check_clock then
        now = now or now_ms()
        if deadline <= now then return {'LOST', i} end
      end
      m.flagged = string.sub(m.held, -2) == ':w'
    end
  end
  if guard == 'V' or (guard == 'L' and writes) then
    for i, m in ipairs(models) do
      if m.current ~= m.version then return {'CONFLICT', i, m.current} end
      if guard == 'V' and m.held ~= '' then
        local _, deadline = lock_parts(m.held)
        now = now or now_ms()
        if deadline and deadline > now then return {'CONFLICT', i, m.current} end
      end
    end
  end

  -- 3. Every change applies: simulate the batch over the data hash fields read, list lengths
  -- (or whole lists, where a removal needs the items) and key types. A guarded commit's
  -- collections were typed by the load at the version just checked, so only an unguarded one
  -- asks `TYPE` for keys it writes without reading.
  local typed = guard ~= 'U'
  -- `llen[key]` is a list's simulated length once known; until then `grown[key]` counts the
  -- items appended to it, so that appends alone never read the list.
  local types, llen, grown, items = {}, {}, {}, {}
  local function key_type(key)
    if types[key] == nil then types[key] = redis.call('TYPE', key)['ok'] end
    return types[key]
  end
  local function list_len(key)
    if items[key] then return #items[key] end
    if llen[key] == nil then
      local r, found = read_typed('LLEN', key)
      types[key] = found or 'list'
      llen[key] = (r or 0) + (grown[key] or 0)
    end
    return llen[key]
  end
  -- Lists with a removal by value are simulated item by item (others by length only, so an
  -- append-only commit never reads its list).
  for i, m in ipairs(models) do
    for _, op in ipairs(m.ops) do
      local key = m.keys[op.slot]
      if op.name == 'LREMOVE' and items[key] == nil then
        local r, found = read_typed('LRANGE', key, 0, -1)
        if found then return {'WRONGTYPE', i, key, found} end
        types[key] = 'list'
        items[key] = r
      end
    end
  end
  for i, m in ipairs(models) do
    for _, op in ipairs(m.ops) do
      local name, opargs = op.name, op.args
      if op.slot == 0 then
        if name == 'HSET' then
          for x = 1, #opargs, 2 do
            m.hval[opargs[x]] = opargs[x + 1]
            m.written[opargs[x]] = true
          end
        elseif name == 'HINCRBY' then
          -- A field never written starts from its schema default.
          local cur = m.hval[opargs[1]] or opargs[3]
          if not string.match(cur, '^-?%d+$') then
            return {'CANNOT', i, op.field, 'stored value `' .. cur .. '` is not an int'}
          end
          local new = add_int(cur, opargs[2])
          if not new then return {'CANNOT', i, op.field, 'increment would overflow a 64-bit int'} end
          m.hval[opargs[1]] = new
          m.written[opargs[1]] = true
        else
          return redis.error_reply('wasmtx: unknown commit op ' .. tostring(name) .. ' on the data hash')
        end
      else
        local key = m.keys[op.slot]
        local want = WANT[name]
        if want == 'list' and not items[key] and name ~= 'RPUSH' and name ~= 'LREPLACE' then
          list_len(key)
        end
        if want and not (typed and types[key] == nil) then
          local t = key_type(key)
          if t ~= 'none' and t ~= want then return {'WRONGTYPE', i, key, t} end
        end
        local list = items[key]
        if name == 'RPUSH' then
          if list then for x = 1, #opargs do list[#list + 1] = opargs[x] end
          elseif llen[key] then llen[key] = llen[key] + #opargs
          else grown[key] = (grown[key] or 0) + #opargs end
        elseif name == 'LTRIM' then
          local len = math.min(list_len(key), tonumber(opargs[1]))
          if list then for x = #list, len + 1, -1 do table.remove(list, x) end
          else llen[key] = len end
        elseif name == 'LREPLACE' then
          if list then
            items[key] = {}
            for x = 1, #opargs do items[key][x] = opargs[x] end
          else llen[key] = #opargs end
        elseif name == 'LINSERT' then
          if list then
            local idx = py_index(tonumber(opargs[1]), #list)
            if idx < 0 then idx = 0 end
            if idx > #list then idx = #list end
            table.insert(list, idx + 1, opargs[2])
          else llen[key] = list_len(key) + 1 end
        elseif name == 'LPOPAT' then
          local len = list_len(key)
          if len == 0 then return {'CANNOT', i, op.field, 'pop from an empty list'} end
          local idx = len - 1
          if opargs[1] ~= '' then
            idx = py_index(tonumber(opargs[1]), len)
            if idx < 0 or idx >= len then
              return {'CANNOT', i, op.field, 'pop index ' .. opargs[1] .. ' out of range for length ' .. len}
            end
          end
          if list then table.remove(list, idx + 1) else llen[key] = len - 1 end
        elseif name == 'LREMOVE' then
          local at = nil
          for x = 1, #list do
            if list[x] == opargs[1] then at = x break end
          end
          if not at then return {'CANNOT', i, op.field, 'item to remove is not in the list'} end
          table.remove(list, at)
        elseif name == 'DEL' then
          if list then items[key] = {} else llen[key] = 0 end
        elseif name ~= 'HSET' and name ~= 'HDEL' then
          return redis.error_reply('wasmtx: unknown commit op ' .. tostring(name))
        end
      end
    end
  end

  -- 4. The records: none committed, and this attempt not declared aborted by a resolve (its
  -- reply was lost and the engine moved on). Each is written here, before any model data, with
  -- `SET NX GET`; a refusal takes back the records this call wrote.
  local versions, out = {}, {'OK'}
  for i, m in ipairs(models) do
    m.next = tonumber(m.current) + ((#m.ops > 0) and 1 or 0)
    versions[i] = tostring(m.next)
    out[i + 1] = m.next
  end
  local head = 'C' .. table.concat(versions, ',') .. '\n'
  local written = {}
  local function refuse(reply)
    for _, w in ipairs(written) do
      if w.old then redis.call('SET', w.key, w.old, 'PX', retention) else redis.call('DEL', w.key) end
    end
    return reply
  end
  for r = 1, nrec do
    local key, payload = keys[r], args[9 + r]
    local held
    if payload == '' then
      held = redis.call('GET', key)
    else
      held = redis.call('SET', key, head .. payload, 'NX', 'PX', retention, 'GET')
    end
    if held then
      if string.sub(held, 1, 1) == 'C' then return refuse({'RECORDED', r, held}) end
      if string.find(held, ' ' .. commit_id .. ' ', 1, true) then return refuse({'ABORTED'}) end
      if payload ~= '' then
        -- Only other attempts were declared aborted: this one replaces their marks.
        redis.call('SET', key, head .. payload, 'PX', retention)
        written[#written + 1] = {key = key, old = held}
      end
    elseif payload ~= '' then
      written[#written + 1] = {key = key}
    end
  end

  -- 5. Apply. Nothing below can fail on data the checks above accepted.
  local pending, pending_keys = {}, {}
  local function flush(key)
    if pending[key] then
      call_chunked('HSET', key, pending[key])
      pending[key] = nil
    end
  end
  for _, m in ipairs(models) do
    -- The data hash: every scalar written (its final value from the simulation above), the
    -- version and the lock's release in one HSET.
    local hset = {}
    for f in pairs(m.written) do
      hset[#hset + 1] = f
      hset[#hset + 1] = m.hval[f]
    end
    if #m.ops > 0 then
      hset[#hset + 1] = '~v'
      hset[#hset + 1] = m.next
    end
    if guard == 'L' then
      hset[#hset + 1] = field
      hset[#hset + 1] = ''
    end
    if #hset > 0 then call_chunked('HSET', m.data, hset) end
    for _, op in ipairs(m.ops) do
      if op.slot ~= 0 then
        local key, name, opargs = m.keys[op.slot], op.name, op.args
        if name ~= 'HSET' then flush(key) end
        if name == 'HSET' then
          local p = pending[key]
          if not p then
            p = {}
            pending[key] = p
            pending_keys[#pending_keys + 1] = key
          end
          for x = 1, #opargs do p[#p + 1] = opargs[x] end
        elseif name == 'HDEL' then
          call_chunked('HDEL', key, opargs)
        elseif name == 'RPUSH' then
          call_chunked('RPUSH', key, opargs)
        elseif name == 'LTRIM' then
          local len = tonumber(opargs[1])
          if len == 0 then redis.call('DEL', key) else redis.call('LTRIM', key, 0, len - 1) end
        elseif name == 'LREPLACE' then
          redis.call('DEL', key)
          call_chunked('RPUSH', key, opargs)
        elseif name == 'LINSERT' then
          local len = redis.call('LLEN', key)
          local idx = py_index(tonumber(opargs[1]), len)
          if idx < 0 then idx = 0 end
          if idx >= len then
            redis.call('RPUSH', key, opargs[2])
          elseif idx == 0 then
            redis.call('LPUSH', key, opargs[2])
          else
            local tail = redis.call('LRANGE', key, idx, -1)
            redis.call('LTRIM', key, 0, idx - 1)
            redis.call('RPUSH', key, opargs[2])
            call_chunked('RPUSH', key, tail)
          end
        elseif name == 'LPOPAT' then
          if opargs[1] == '' then
            redis.call('RPOP', key)
          else
            local len = redis.call('LLEN', key)
            local idx = py_index(tonumber(opargs[1]), len)
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
          redis.call('LREM', key, 1, opargs[1])
        elseif name == 'DEL' then
          redis.call('DEL', key)
        end
      end
    end
  end
  for _, key in ipairs(pending_keys) do flush(key) end
  for _, m in ipairs(models) do
    if m.flagged then redis.call('PUBLISH', channel, m.data .. suffix) end
  end
  return out
end

-- Release locks still held with the given tokens, announcing each release someone waits for.
-- KEYS: `data_1, data_2, ...`. ARGV: `channel, lock_field, lock_suffix, token_1, token_2, ...`.
local function release(keys, args)
  local channel, field, suffix = args[1], args[2], args[3]
  for i, data in ipairs(keys) do
    local held = redis.call('HGET', data, field)
    if held and held ~= '' and lock_parts(held) == args[3 + i] then
      redis.call('HSET', data, field, '')
      if string.sub(held, -2) == ':w' then redis.call('PUBLISH', channel, data .. suffix) end
    end
  end
  return 'OK'
end

-- Resolve commit attempt `commit_id` whose reply was lost: returns, per record key, the
-- committed record or false, and marks the attempt as aborted in every record that is not
-- committed, so that it can no longer apply. KEYS: the record keys. ARGV: `commit_id,
-- retention_ms`.
local function resolve(keys, args)
  local out = {}
  for i, key in ipairs(keys) do
    local r = redis.call('GET', key)
    if r and string.sub(r, 1, 1) == 'C' then
      out[i] = r
    else
      redis.call('SET', key, (r or 'A ') .. args[1] .. ' ', 'PX', args[2])
      out[i] = false
    end
  end
  return out
end

-- Delete a model's data: every field of its data hash except the engine's (locks, fencing
-- counter), every collection key; bump the version. KEYS: `data, coll_1..coll_c`. Returns the
-- new version.
local function delete(keys, args)
  local fields = {}
  for _, f in ipairs(redis.call('HKEYS', keys[1])) do
    if string.sub(f, 1, 1) ~= '~' then fields[#fields + 1] = f end
  end
  if #fields > 0 then call_chunked('HDEL', keys[1], fields) end
  for i = 2, #keys do redis.call('DEL', keys[i]) end
  return redis.call('HINCRBY', keys[1], '~v', 1)
end

local function version()
  return VERSION
end

redis.register_function('wasmtx_lock_and_load', lock_and_load)
redis.register_function{function_name = 'wasmtx_load', callback = load, flags = {'no-writes'}}
redis.register_function('wasmtx_commit', commit)
redis.register_function('wasmtx_release', release)
redis.register_function('wasmtx_resolve', resolve)
redis.register_function('wasmtx_delete', delete)
redis.register_function{function_name = 'wasmtx_version', callback = version, flags = {'no-writes'}}
