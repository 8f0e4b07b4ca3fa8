#!lua name=wasmtx
-- The Redis store's protocol, as one Redis Functions library (see functions.rs for how it is
-- loaded and checked, and keys.rs for the layout). One function per protocol step; each is one
-- round trip and atomic, and checks everything (locks, versions, key types, whether each change
-- applies, the idempotency records) before its first write: Redis does not roll a function
-- back when a command in it fails, and a refused step must write nothing.
--
-- A model is its data hash (the scalar fields, plus the engine's fields, whose names start with
-- `~`, which no schema field can: `~v` version, `~f` last fencing token, `~l:<action>` that
-- action's lock, `~q:<action>` its waiters) and one key per list or dict field. A lock is
-- `<token>:<deadline ms>:<owner>`, with `:w` appended once a waiter flagged itself; free when
-- empty, missing, or past its deadline by the server's clock (`TIME`).
--
-- Waiters are served in arrival order: an attempt that finds the lock held, or free but
-- promised to an earlier waiter, leaves a ticket in `~q:<action>` (one per owner, oldest
-- first: `<deadline ms>:<owner length>:<owner>` each, no separator). A free lock goes to the
-- owner of the oldest live ticket; any owner takes it when no ticket is live. A ticket lives
-- TICKET_TTL_MS from the owner's last attempt (a waiter tries again at least every 250 ms), at
-- most MAX_TICKETS wait per lock, and `withdraw` removes one (a waiter that gave up).
--
-- Client tracking: an engine whose connection has `CLIENT TRACKING ON ... NOLOOP` is told
-- when another client changes a key it read. Its own write of a key ends the tracking of that
-- key for every client, itself included (NOLOOP only spares it the notice), so lock-and-load
-- and commit, asked to (`track`), read each data hash they wrote again (`EXISTS`, the
-- cheapest read), and the commit also the model's collection keys: the engine keeps what
-- they leave in its cache, and wants to hear when that changes. (Redis 7.0 tracks every key a
-- function declares once it reads any: its record keys too, which the engine ignores when
-- they are reported, written or expired.)

local VERSION = '8'
local TICKET_TTL_MS = 1000
local MAX_TICKETS = 64

-- Written for Redis's CPU (measured with callgrind on the functions alone, see HACKING.md):
-- no table per model or op where an index into KEYS/ARGV does, numbers formatted with `%d`
-- (Lua's `tostring` of a number and `..` with a number go through `%.14g`), the common
-- commit (scalar fields of data hashes) takes no detour through the collection simulation,
-- and the per-call scratch tables of lock-and-load and commit are kept between calls (the
-- library's state lives as long as it is loaded; a call overwrites what it reads).
-- One file over the usual size: Redis loads a library as one source text.

-- The string functions, as upvalues: bound on the first call (the standard libraries are not
-- reachable while `FUNCTION LOAD` runs the library's top level).
local byte, sub, find, match, format
-- Small counts (model, key, op and argument counts) by their text: a table lookup, where
-- `tonumber` goes through `strtod`.
local SMALL = {}
local function bind()
  byte, sub, find, match, format = string.byte, string.sub, string.find, string.match, string.format
  for x = 0, 255 do SMALL[format('%d', x)] = x end
end
local TILDE = 126 -- `~`: the first byte of the engine's fields

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A lock value's token (text) and deadline (number).
local function lock_parts(v)
  local token, deadline = match(v, '^(%d+):(%d+):')
  return token, tonumber(deadline)
end

-- Runs a read; returns its reply, or nil and the type the key holds when that is not a type
-- the read works on (the read failed with WRONGTYPE; only then is `TYPE` asked). Any other
-- error ends the call.
local function read_typed(cmd, key, ...)
  local r = redis.pcall(cmd, key, ...)
  if type(r) == 'table' and r.err then
    if not find(r.err, 'WRONGTYPE', 1, true) then error(r) end
    return nil, redis.call('TYPE', key)['ok']
  end
  return r, nil
end

-- Whether lock value `held` names `owner`, and whether a waiter flagged it.
local function owned_by(held, owner)
  local named = match(held, '^%d+:%d+:(.*)$')
  if named == owner then return true, false end
  return named == owner .. ':w', true
end

-- Reads model `i`'s data hash. Returns it (flat), its fencing counter (text) and the values of
-- its fields `lock_field` and `queue_field` (if given and present), or nil and the error reply
-- (a key of the wrong type, an engine field that is not a count).
local function read_data(i, data, lock_field, queue_field)
  local flat, found = read_typed('HGETALL', data)
  if found then return nil, {'WRONGTYPE', i, data, found} end
  local fence, held, queued = '0', nil, nil
  for x = 1, #flat, 2 do
    local f = flat[x]
    if byte(f, 1) == TILDE then
      if f == '~v' or f == '~f' then
        local v = flat[x + 1]
        if not match(v, '^%d+$') then return nil, {'CORRUPT', i, f, 'holds `' .. v .. '`, not a count'} end
        if f == '~f' then fence = v end
      elseif f == lock_field then
        held = flat[x + 1]
      elseif f == queue_field then
        queued = flat[x + 1]
      end
    end
  end
  return flat, fence, held, queued
end

-- The live tickets (deadline after `now`) of a waiters field's text: deadlines and owners,
-- oldest first. Text that does not parse ends the list.
local function parse_tickets(q, now)
  local deadlines, owners, pos = {}, {}, 1
  while pos <= #q do
    local d, len, at = match(q, '^(%d+):(%d+):()', pos)
    if not d then break end
    len = tonumber(len)
    d = tonumber(d)
    if d > now then
      deadlines[#deadlines + 1] = d
      owners[#owners + 1] = sub(q, at, at + len - 1)
    end
    pos = at + len
  end
  return {deadlines = deadlines, owners = owners}
end

local function format_tickets(t)
  local parts = {}
  for x = 1, #t.owners do parts[x] = format('%d:%d:', t.deadlines[x], #t.owners[x]) .. t.owners[x] end
  return table.concat(parts)
end

-- Removes `owner`'s ticket; returns whether it had one.
local function drop_ticket(t, owner)
  for x = 1, #t.owners do
    if t.owners[x] == owner then
      table.remove(t.owners, x)
      table.remove(t.deadlines, x)
      return true
    end
  end
  return false
end

-- Refreshes `owner`'s ticket, keeping its place, or appends one (unless MAX_TICKETS wait).
local function keep_ticket(t, owner, now)
  for x = 1, #t.owners do
    if t.owners[x] == owner then
      t.deadlines[x] = now + TICKET_TTL_MS
      return
    end
  end
  if #t.owners < MAX_TICKETS then
    t.owners[#t.owners + 1] = owner
    t.deadlines[#t.deadlines + 1] = now + TICKET_TTL_MS
  end
end

-- Appends the collections of a model to `out`: `c` keys from KEYS[k + 1], `kinds` one letter
-- per key ('l' list, 'd' dict). Returns the error reply for a key of the wrong type.
local function load_collections(i, keys, k, c, kinds, out)
  for j = 1, c do
    local key, r, found = keys[k + j], nil, nil
    if byte(kinds, j) == 108 then -- 'l'
      r, found = read_typed('LRANGE', key, 0, -1)
    else
      r, found = read_typed('HGETALL', key)
    end
    if found then return {'WRONGTYPE', i, key, found} end
    out[#out + 1] = r
  end
  return nil
end

-- The committed record at `key`, if any (a record is `C<version>,...` + newline + payload, or
-- `A <commit id> ... ` for attempts declared aborted).
local function committed_record(key)
  local r = redis.call('GET', key)
  if r and byte(r, 1) == 67 then return r end -- 'C'
  return nil
end

-- A lock-and-load refused at model `i` (its lock `held` by another, or due to an earlier
-- ticket): keeps `owner`'s ticket there (and flags a holder's lock so that its release is
-- announced), drops its tickets on the other models, so that a waiter never keeps a free
-- lock's turn while it waits for another; a waiters field left empty goes. Returns the reply.
local function refuse(keys, ks, n, queueds, tickets, i, held, pttl, owner, field, qfield, now)
  for j = 1, n do
    local q = queueds and queueds[j]
    local parsed = tickets and tickets[j]
    local data, set, text = keys[ks[j]], {}, nil
    if j == i then
      local t = parsed or parse_tickets(q or '', now)
      keep_ticket(t, owner, now)
      text = format_tickets(t)
      if held and sub(held, -2) ~= ':w' then
        set[#set + 1] = field
        set[#set + 1] = held .. ':w'
      end
    elseif q and find(q, owner, 1, true) then
      local t = parsed or parse_tickets(q, now)
      if drop_ticket(t, owner) then text = format_tickets(t) end
    end
    if text == '' then
      redis.call('HDEL', data, qfield)
    elseif text then
      set[#set + 1] = qfield
      set[#set + 1] = text
    end
    if #set > 0 then redis.call('HSET', data, unpack(set)) end
  end
  return {'BUSY', i, pttl}
end

-- Lock-and-load. KEYS: per model `data, coll_1..coll_c`, then the record key when
-- `has_record`. ARGV: `owner, lease_ms, lock_field, n, flags`, then per model `c, kinds`;
-- `flags` is `has_record` (1) plus `track` (2). Returns `{'RECORDED', record}` (nothing taken), `{'BUSY', model, pttl}` (a lock
-- held, or free but promised to an earlier waiter: the owner's ticket is kept on that model
-- and dropped from the others, a holder's lock flagged so that its release is announced; pttl
-- is when the lease or the earlier ticket runs out), `{'WRONGTYPE', model, key, found}`,
-- `{'CORRUPT', model, field, reason}`, or `{'OK', then per model token, data hash (flat),
-- collections...}`.
-- Scratch tables of lock_and_load, reused across calls (entries 1..n are written before read).
local L_KS, L_CS, L_KINDS, L_FLATS, L_FENCES, L_HELDS, L_FLAGGED, L_LOADED = {}, {}, {}, {}, {}, {}, {}, {}
local function lock_and_load(keys, args)
  if not format then bind() end
  local owner, lease, field, n = args[1], tonumber(args[2]), args[3], SMALL[args[4]] or tonumber(args[4])
  local qfield = '~q:' .. sub(field, 4)
  local flags = SMALL[args[5]] or tonumber(args[5])
  if flags % 2 == 1 then
    local r = committed_record(keys[#keys])
    if r then return {'RECORDED', r} end
  end
  -- Per model: its first key's index, collection count, kinds, data hash, fence, lock value;
  -- `queueds` its waiters' tickets (text), made only for a model that has some.
  local ks, cs, kinds, flats, fences, helds, queueds = L_KS, L_CS, L_KINDS, L_FLATS, L_FENCES, L_HELDS, nil
  local k, a = 1, 6
  for i = 1, n do
    local c = SMALL[args[a]] or tonumber(args[a])
    ks[i], cs[i], kinds[i] = k, c, args[a + 1]
    local flat, fence, held, queued = read_data(i, keys[k], field, qfield)
    if not flat then return fence end -- the error reply
    if queued and queued ~= '' then
      queueds = queueds or {}
      queueds[i] = queued
    end
    flats[i], fences[i], helds[i] = flat, fence, held
    k, a = k + 1 + c, a + 2
  end
  -- A live lock is busy unless it names this owner: then an earlier attempt of this invocation
  -- took it and its reply was lost; it is taken again (a new token fences the lost one off),
  -- keeping a waiter's flag, whatever the tickets. A free lock with live tickets is busy
  -- unless this owner's is the oldest (`tickets`: the parsed ones, per model).
  local now, flagged, tickets = now_ms(), L_FLAGGED, nil
  for i = 1, n do flagged[i] = false end
  for i = 1, n do
    local held, free = helds[i], true
    if held and held ~= '' then
      local _, deadline = lock_parts(held)
      if deadline and deadline > now then
        local mine, waited = owned_by(held, owner)
        if not mine then
          return refuse(keys, ks, n, queueds, tickets, i, held, deadline - now, owner, field, qfield, now)
        end
        flagged[i] = waited
        free = false
      end
    end
    local queued = free and queueds and queueds[i]
    if queued then
      local t = parse_tickets(queued, now)
      tickets = tickets or {}
      tickets[i] = t
      local first = t.owners[1]
      if first and first ~= owner then
        return refuse(keys, ks, n, queueds, tickets, i, nil, t.deadlines[1] - now, owner, field, qfield, now)
      end
    end
  end
  -- Collections after every lock was found free: a busy attempt reads no more than it must.
  local loaded = L_LOADED
  for i = 1, n do
    loaded[i] = false
    if cs[i] > 0 then
      local out = {}
      local bad = load_collections(i, keys, ks[i], cs[i], kinds[i], out)
      if bad then return bad end
      loaded[i] = out
    end
  end
  local tail = format(':%d:', now + lease) .. owner
  local out = {'OK'}
  for i = 1, n do
    local token = tonumber(fences[i]) + 1
    local text = format('%d', token)
    local t = tickets and tickets[i]
    if t then
      -- Taken: the owner's ticket goes; waiters left behind get the release announced.
      drop_ticket(t, owner)
      if #t.owners > 0 then
        flagged[i] = true
        redis.call('HSET', keys[ks[i]], '~f', text, field, text .. tail .. ':w', qfield, format_tickets(t))
      else
        redis.call('HDEL', keys[ks[i]], qfield)
        redis.call('HSET', keys[ks[i]], '~f', text, field, text .. (flagged[i] and tail .. ':w' or tail))
      end
    else
      redis.call('HSET', keys[ks[i]], '~f', text, field, text .. (flagged[i] and tail .. ':w' or tail))
    end
    out[#out + 1] = token
    out[#out + 1] = flats[i]
    local colls = loaded[i]
    if colls then
      for j = 1, #colls do out[#out + 1] = colls[j] end
    end
  end
  if flags >= 2 then
    for i = 1, n do redis.call('EXISTS', keys[ks[i]]) end
  end
  return out
end

-- Load, without locks, as one snapshot. KEYS: per model `data, coll_1..coll_c`, then the
-- record key when `has_record`. ARGV: `n, has_record`, then per model `c, kinds`. Returns
-- `{'RECORDED', record}`, `{'WRONGTYPE', ...}`, `{'CORRUPT', ...}` or `{'OK', then per model
-- data hash (flat), collections...}`.
local function load(keys, args)
  if not format then bind() end
  local n = tonumber(args[1])
  if args[2] == '1' then
    local r = committed_record(keys[#keys])
    if r then return {'RECORDED', r} end
  end
  -- Every data hash is read (and checked) before any collection, as the lock-and-load does.
  local ks, flats, k = {}, {}, 1
  for i = 1, n do
    local flat, bad = read_data(i, keys[k], nil)
    if not flat then return bad end
    ks[i], flats[i] = k, flat
    k = k + 1 + tonumber(args[1 + 2 * i])
  end
  local out = {'OK'}
  for i = 1, n do
    out[#out + 1] = flats[i]
    local c = tonumber(args[1 + 2 * i])
    if c > 0 then
      local bad = load_collections(i, keys, ks[i], c, args[2 + 2 * i], out)
      if bad then return bad end
    end
  end
  return out
end

-- Exact 64-bit addition of two decimal integers (a double is exact only to 2^53): each is
-- split into a high part and nine low digits, both exact as doubles. Returns the sum as text,
-- or nil when it overflows a 64-bit int.
local function split_int(s)
  local neg = sub(s, 1, 1) == '-'
  local digits = string.gsub(neg and sub(s, 2) or s, '^0+', '')
  if #digits > 19 then return nil end
  local hi, lo = tonumber(sub(digits, 1, -10)) or 0, tonumber(sub(digits, -9)) or 0
  if neg then return -hi, -lo end
  return hi, lo
end
local function add_int(a, b)
  -- Both below 10^15 in magnitude: their sum is exact as a double.
  if #a <= 15 and #b <= 15 then return format('%d', tonumber(a) + tonumber(b)) end
  local ah, al = split_int(a)
  local bh, bl = split_int(b)
  if not ah or not bh then return nil end
  local h, l = ah + bh, al + bl
  if l >= 1e9 then h, l = h + 1, l - 1e9 elseif l <= -1e9 then h, l = h - 1, l + 1e9 end
  if h > 0 and l < 0 then h, l = h - 1, l + 1e9 elseif h < 0 and l > 0 then h, l = h + 1, l - 1e9 end
  if h > 9223372036 or (h == 9223372036 and l > 854775807) then return nil end
  if h < -9223372036 or (h == -9223372036 and l < -854775808) then return nil end
  if h == 0 then return format('%d', l) end
  return format('%d%09d', h, math.abs(l))
end

local WANT = {HSET = 'hash', HDEL = 'hash', RPUSH = 'list', LTRIM = 'list', LREPLACE = 'list',
  LINSERT = 'list', LPOPAT = 'list', LREMOVE = 'list'}
local CHUNK = 4000

-- Calls `cmd key` with `list[from..to]`, in chunks (Lua's stack limits `unpack`).
local function call_chunked(cmd, key, list, from, to)
  local i = from
  while i <= to do
    local j = math.min(i + CHUNK - 1, to)
    redis.call(cmd, key, unpack(list, i, j))
    i = j + 1
  end
end

local function py_index(idx, len)
  if idx < 0 then idx = idx + len end
  return idx
end

-- Checks that every collection op of the commit applies (simulated over list lengths, or
-- whole lists where a removal needs the items, and key types); returns the error reply of the
-- first that does not. `typed`: the load typed the keys (a guarded commit), so `TYPE` is asked
-- only of keys an unguarded commit writes without reading.
local function check_collections(models, args, typed)
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
  -- Lists with a removal by value are simulated item by item (others by length only).
  for i, m in ipairs(models) do
    for o = 1, #(m.coll_ops or {}) do
      local s = m.coll_ops[o]
      local key = m.keys[tonumber(args[s + 1])]
      if args[s] == 'LREMOVE' and items[key] == nil then
        local r, found = read_typed('LRANGE', key, 0, -1)
        if found then return {'WRONGTYPE', i, key, found} end
        types[key] = 'list'
        items[key] = r
      end
    end
  end
  for i, m in ipairs(models) do
    for o = 1, #(m.coll_ops or {}) do
      local s = m.coll_ops[o]
      local name, field, argc = args[s], args[s + 2], tonumber(args[s + 3])
      local key = m.keys[tonumber(args[s + 1])]
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
        if list then for x = 1, argc do list[#list + 1] = args[s + 3 + x] end
        elseif llen[key] then llen[key] = llen[key] + argc
        else grown[key] = (grown[key] or 0) + argc end
      elseif name == 'LTRIM' then
        local len = math.min(list_len(key), tonumber(args[s + 4]))
        if list then for x = #list, len + 1, -1 do table.remove(list, x) end
        else llen[key] = len end
      elseif name == 'LREPLACE' then
        if list then
          items[key] = {}
          for x = 1, argc do items[key][x] = args[s + 3 + x] end
        else llen[key] = argc end
      elseif name == 'LINSERT' then
        if list then
          local idx = py_index(tonumber(args[s + 4]), #list)
          if idx < 0 then idx = 0 end
          if idx > #list then idx = #list end
          table.insert(list, idx + 1, args[s + 5])
        else llen[key] = list_len(key) + 1 end
      elseif name == 'LPOPAT' then
        local len = list_len(key)
        if len == 0 then return {'CANNOT', i, field, 'pop from an empty list'} end
        local idx = len - 1
        local at = args[s + 4]
        if at ~= '' then
          idx = py_index(tonumber(at), len)
          if idx < 0 or idx >= len then
            return {'CANNOT', i, field, 'pop index ' .. at .. ' out of range for length ' .. len}
          end
        end
        if list then table.remove(list, idx + 1) else llen[key] = len - 1 end
      elseif name == 'LREMOVE' then
        local at, item = nil, args[s + 4]
        for x = 1, #list do
          if list[x] == item then at = x break end
        end
        if not at then return {'CANNOT', i, field, 'item to remove is not in the list'} end
        table.remove(list, at)
      elseif name == 'DEL' then
        if list then items[key] = {} else llen[key] = 0 end
      elseif name ~= 'HSET' and name ~= 'HDEL' then
        return redis.error_reply('wasmtx: unknown commit op ' .. tostring(name))
      end
    end
  end
  return nil
end

-- Applies a model's collection ops, in order (consecutive dict sets are batched).
local function apply_collections(m, args)
  local pending, pending_keys = {}, {}
  local function flush(key)
    local p = pending[key]
    if p then
      call_chunked('HSET', key, p, 1, #p)
      pending[key] = nil
    end
  end
  for o = 1, #m.coll_ops do
    local s = m.coll_ops[o]
    local name, argc = args[s], tonumber(args[s + 3])
    local key, first, last = m.keys[tonumber(args[s + 1])], s + 4, s + 3 + argc
    if name ~= 'HSET' then flush(key) end
    if name == 'HSET' then
      local p = pending[key]
      if not p then
        p = {}
        pending[key] = p
        pending_keys[#pending_keys + 1] = key
      end
      for x = first, last do p[#p + 1] = args[x] end
    elseif name == 'HDEL' then
      call_chunked('HDEL', key, args, first, last)
    elseif name == 'RPUSH' then
      call_chunked('RPUSH', key, args, first, last)
    elseif name == 'LTRIM' then
      local len = tonumber(args[first])
      if len == 0 then redis.call('DEL', key) else redis.call('LTRIM', key, 0, len - 1) end
    elseif name == 'LREPLACE' then
      redis.call('DEL', key)
      call_chunked('RPUSH', key, args, first, last)
    elseif name == 'LINSERT' then
      local len = redis.call('LLEN', key)
      local idx = py_index(tonumber(args[first]), len)
      local item = args[first + 1]
      if idx < 0 then idx = 0 end
      if idx >= len then
        redis.call('RPUSH', key, item)
      elseif idx == 0 then
        redis.call('LPUSH', key, item)
      else
        local tail = redis.call('LRANGE', key, idx, -1)
        redis.call('LTRIM', key, 0, idx - 1)
        redis.call('RPUSH', key, item)
        call_chunked('RPUSH', key, tail, 1, #tail)
      end
    elseif name == 'LPOPAT' then
      if args[first] == '' then
        redis.call('RPOP', key)
      else
        local len = redis.call('LLEN', key)
        local idx = py_index(tonumber(args[first]), len)
        if idx == 0 then
          redis.call('LPOP', key)
        elseif idx == len - 1 then
          redis.call('RPOP', key)
        else
          local tail = redis.call('LRANGE', key, idx + 1, -1)
          redis.call('LTRIM', key, 0, idx - 1)
          call_chunked('RPUSH', key, tail, 1, #tail)
        end
      end
    elseif name == 'LREMOVE' then
      redis.call('LREM', key, 1, args[first])
    elseif name == 'DEL' then
      redis.call('DEL', key)
    end
  end
  for _, key in ipairs(pending_keys) do flush(key) end
end

-- Takes back the records a refused commit wrote (`written`: {key, old value or false}...).
local function take_back(written, retention)
  for x = 1, #written, 2 do
    local key, old = written[x], written[x + 1]
    if old then redis.call('SET', key, old, 'PX', retention) else redis.call('DEL', key) end
  end
end

-- Commit: check the guard, check every change applies, check and write the records, apply
-- every change, bump versions, release. KEYS: the `r` record keys, then per model `data,
-- coll_1..coll_c` (the collections the changes touch), then, under 'R', per model its
-- collection keys for a refresh. ARGV: `guard ('L' leases | 'K' leases, versions checked even
-- when nothing is written | 'V' versions | 'R' versions with a refresh | 'U' none), n, channel, lock_field, lock_suffix, flags, r,
-- commit_id, retention_ms`, one payload per record (empty: only check it), then per model
-- `token, version, next, c, op_count` and per op `name, slot, field, argc, args...` (slot 0 is
-- the data hash, slot j the j-th collection). `token` is the lease's under 'L' and 'K';
-- `version` the one loaded (under 'L' checked only when the commit writes); `next` the
-- version the model gets, when the caller knows it (a checked version plus one), else empty.
-- `flags` is `check_clock` (1) plus `track` (2): `check_clock` asks to refuse a lease past its
-- deadline even if nobody took the lock (the engine asks when its own clock cannot rule that
-- out); `track` to read every model's keys again after writing (see the top). Under 'R' the model sections are
-- followed by one `c, kinds` per model (as the load's) naming its collections. Returns
-- `{'OK', version...}`, `{'RECORDED', record index, record}`, `{'ABORTED'}`, `{'LOST',
-- model}`, `{'CONFLICT', model, found}`, `{'STALE', count, then per model whose version moved
-- (under 'R' only) its index, data hash (flat), collections...}`, `{'WRONGTYPE', model, key,
-- found}`, `{'CORRUPT', model, field, reason}` or `{'CANNOT', model, field, reason}`.
-- Scratch tables of commit, reused across calls: `C_MODELS` the model list (a call writes
-- entries 1..n and ends the list at n + 1 for `ipairs`), `C_POOL` the per-model tables (every
-- field set again on reuse).
local C_MODELS, C_POOL = {}, {}
local function commit(keys, args)
  if not format then bind() end
  local guard, n, channel, field, suffix = args[1], SMALL[args[2]] or tonumber(args[2]), args[3], args[4], args[5]
  local flags = SMALL[args[6]] or tonumber(args[6])
  local check_clock, track = flags % 2 == 1, flags >= 2
  local nrec, commit_id, retention = SMALL[args[7]] or tonumber(args[7]), args[8], args[9]
  local a, k, writes, any_coll = 10 + nrec, 1 + nrec, false, false
  -- Per model: its ops as indices into ARGV (an op at `s` is `name, slot, field, argc` at
  -- s..s+3, its arguments after): the data hash's in `hash_ops`, the others in `coll_ops`
  -- (with the model's collection keys in `keys`, slot j = keys[j]); `incs` the fields an
  -- increment reads. Tables only where there is something to hold.
  local models = C_MODELS
  models[n + 1] = nil
  for i = 1, n do
    local c = SMALL[args[a + 3]] or tonumber(args[a + 3])
    local nops = SMALL[args[a + 4]] or tonumber(args[a + 4])
    local m = C_POOL[i]
    if m then
      m.data, m.token, m.version, m.next, m.nops = keys[k], args[a], args[a + 1], args[a + 2], nops
      m.keys, m.hash_ops, m.coll_ops, m.incs, m.current, m.held, m.read = false, false, false, false, false, false, false
      m.flagged, m.values, m.order = false, false, false
    else
      -- Every field named at creation: a table that grows is rehashed.
      m = {data = keys[k], token = args[a], version = args[a + 1], next = args[a + 2], nops = nops,
        keys = false, hash_ops = false, coll_ops = false, incs = false, current = false, held = false, read = false,
        flagged = false, values = false, order = false}
      C_POOL[i] = m
    end
    a = a + 5
    if c > 0 then
      local mk = {}
      for j = 1, c do mk[j] = keys[k + j] end
      m.keys = mk
    end
    k = k + 1 + c
    for _ = 1, nops do
      local name, argc = args[a], SMALL[args[a + 3]] or tonumber(args[a + 3])
      if args[a + 1] == '0' then
        if name == 'HINCRBY' then
          local incs = m.incs or {'~v', field}
          incs[#incs + 1] = args[a + 4]
          m.incs = incs
        elseif name ~= 'HSET' then
          return redis.error_reply('wasmtx: unknown commit op ' .. tostring(name) .. ' on the data hash')
        end
        local ops = m.hash_ops or {}
        ops[#ops + 1] = a
        m.hash_ops = ops
      else
        local ops = m.coll_ops or {}
        ops[#ops + 1] = a
        m.coll_ops = ops
        any_coll = true
      end
      a = a + 4 + argc
    end
    if nops > 0 then writes = true end
    models[i] = m
  end

  -- 1. Read each data hash once (this also checks its type): the version, the lock, and the
  -- fields increments need.
  for i = 1, n do
    local m = models[i]
    local r
    if m.incs then r = redis.pcall('HMGET', m.data, unpack(m.incs)) else r = redis.pcall('HMGET', m.data, '~v', field) end
    if r.err then
      if not find(r.err, 'WRONGTYPE', 1, true) then error(r) end
      return {'WRONGTYPE', i, m.data, redis.call('TYPE', m.data)['ok']}
    end
    local current = r[1] or '0'
    if not match(current, '^%d+$') then
      return {'CORRUPT', i, '~v', 'holds `' .. current .. '`, not a count'}
    end
    m.current, m.held, m.read = current, r[2] or '', r
  end

  -- 2. The guard: every lease still held (lock mode), then every model still at the version
  -- the caller loaded (lock mode when it writes: another action, mode or client may have
  -- changed the model since; under 'K' always: a group member that arrived after the load
  -- read that state; optimistic mode always, with no live lock of its action).
  local now
  local leased = guard == 'L' or guard == 'K'
  if leased then
    for i = 1, n do
      local m = models[i]
      local held, prefix = m.held, m.token .. ':'
      if sub(held, 1, #prefix) ~= prefix then return {'LOST', i} end
      if check_clock then
        now = now or now_ms()
        local _, deadline = lock_parts(held)
        if not deadline or deadline <= now then return {'LOST', i} end
      end
      m.flagged = sub(held, -2) == ':w'
    end
  end
  local versioned = guard == 'V' or guard == 'R'
  if guard == 'R' then
    -- The state of every model whose version moved, for the caller to run again on: the
    -- refresh section after the models names their collections.
    local out, count = nil, 0
    for i = 1, n do
      local m = models[i]
      local c = SMALL[args[a]] or tonumber(args[a])
      if m.current ~= m.version then
        out = out or {'STALE', 0}
        local flat, bad = read_data(i, m.data, nil)
        if not flat then return bad end
        out[#out + 1] = i
        out[#out + 1] = flat
        if c > 0 then
          bad = load_collections(i, keys, k - 1, c, args[a + 1], out)
          if bad then return bad end
        end
        count = count + 1
      end
      a, k = a + 2, k + c
    end
    if out then
      out[2] = count
      return out
    end
  end
  if versioned or guard == 'K' or (guard == 'L' and writes) then
    for i = 1, n do
      local m = models[i]
      if m.current ~= m.version then return {'CONFLICT', i, m.current} end
      if versioned and m.held ~= '' then
        local _, deadline = lock_parts(m.held)
        now = now or now_ms()
        if deadline and deadline > now then return {'CONFLICT', i, m.current} end
      end
    end
  end

  -- 3. Every change applies. A data hash with increments: the final value of each field
  -- written (from the values read; a field never written starts from its schema default).
  -- Sets alone always apply and are written as sent.
  for i = 1, n do
    local m = models[i]
    if m.incs then
      -- `order`: the fields written, in the order first written; `seen`: the same as a set.
      local values, order, seen, read = {}, {}, {}, m.read
      for x = 3, #m.incs do values[m.incs[x]] = read[x] or false end
      for _, s in ipairs(m.hash_ops) do
        if args[s] == 'HSET' then
          for x = s + 4, s + 3 + tonumber(args[s + 3]), 2 do
            local f = args[x]
            if not seen[f] then
              order[#order + 1] = f
              seen[f] = true
            end
            values[f] = args[x + 1]
          end
        else
          local f = args[s + 4]
          local cur = values[f] or args[s + 6]
          if not match(cur, '^-?%d+$') then
            return {'CANNOT', i, args[s + 2], 'stored value `' .. cur .. '` is not an int'}
          end
          local new = add_int(cur, args[s + 5])
          if not new then return {'CANNOT', i, args[s + 2], 'increment would overflow a 64-bit int'} end
          if not seen[f] then
            order[#order + 1] = f
            seen[f] = true
          end
          values[f] = new
        end
      end
      m.values, m.order = values, order
    end
  end
  if any_coll then
    local bad = check_collections(models, args, guard ~= 'U')
    if bad then return bad end
  end

  -- 4. The records: none committed, and this attempt not declared aborted by a resolve (its
  -- reply was lost and the engine moved on). Each is written here, before any model data, with
  -- `SET NX GET`; a refusal takes back the records this call wrote.
  local out = {'OK'}
  for i = 1, n do
    local m = models[i]
    if m.next == '' then
      m.next = m.nops > 0 and format('%d', tonumber(m.current) + 1) or m.current
    end
    out[i + 1] = m.next
  end
  if nrec > 0 then
    local head = 'C' .. table.concat(out, ',', 2) .. '\n'
    local written = {}
    for r = 1, nrec do
      local key, payload = keys[r], args[9 + r]
      local held
      if payload == '' then
        held = redis.call('GET', key)
      else
        held = redis.call('SET', key, head .. payload, 'NX', 'PX', retention, 'GET')
      end
      if held then
        if byte(held, 1) == 67 then -- 'C'
          take_back(written, retention)
          return {'RECORDED', r, held}
        end
        if find(held, ' ' .. commit_id .. ' ', 1, true) then
          take_back(written, retention)
          return {'ABORTED'}
        end
        if payload ~= '' then
          -- Only other attempts were declared aborted: this one replaces their marks.
          redis.call('SET', key, head .. payload, 'PX', retention)
          written[#written + 1] = key
          written[#written + 1] = held
        end
      elseif payload ~= '' then
        written[#written + 1] = key
        written[#written + 1] = false
      end
    end
  end

  -- 5. Apply. Nothing below can fail on data the checks above accepted. The data hash: every
  -- scalar written, the version and the lock's release in one HSET.
  local release = leased
  for i = 1, n do
    local m = models[i]
    local ops = m.hash_ops
    local s = ops and #ops == 1 and not m.incs and ops[1]
    local argc = s and (SMALL[args[s + 3]] or tonumber(args[s + 3]))
    if s and argc <= CHUNK then
      -- One set of scalars (the common commit): written from ARGV as it is.
      if release then
        redis.call('HSET', m.data, '~v', m.next, field, '', unpack(args, s + 4, s + 3 + argc))
      else
        redis.call('HSET', m.data, '~v', m.next, unpack(args, s + 4, s + 3 + argc))
      end
    else
      local hset = {}
      if m.incs then
        local order, values = m.order, m.values
        for x = 1, #order do
          local f = order[x]
          hset[#hset + 1] = f
          hset[#hset + 1] = values[f]
        end
      elseif ops then
        for _, o in ipairs(ops) do
          for x = o + 4, o + 3 + tonumber(args[o + 3]) do hset[#hset + 1] = args[x] end
        end
      end
      if m.nops > 0 then
        hset[#hset + 1] = '~v'
        hset[#hset + 1] = m.next
      end
      if release then
        hset[#hset + 1] = field
        hset[#hset + 1] = ''
      end
      if #hset > 0 then call_chunked('HSET', m.data, hset, 1, #hset) end
    end
    if m.coll_ops then apply_collections(m, args) end
  end
  for i = 1, n do
    local m = models[i]
    if m.flagged then redis.call('PUBLISH', channel, m.data .. suffix) end
    if track then
      if m.keys then redis.call('EXISTS', m.data, unpack(m.keys)) else redis.call('EXISTS', m.data) end
    end
  end
  return out
end

-- Release locks still held with the given tokens, announcing each release someone waits for.
-- KEYS: `data_1, data_2, ...`. ARGV: `channel, lock_field, lock_suffix, token_1, token_2, ...`.
local function release(keys, args)
  if not format then bind() end
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

-- Withdraw `owner`'s tickets (a waiter that gave up), announcing it on a free lock someone
-- else still waits for (the next waiter's turn has come). KEYS: `data_1, data_2, ...`. ARGV:
-- `channel, lock_field, lock_suffix, owner`.
local function withdraw(keys, args)
  if not format then bind() end
  local channel, field, suffix, owner = args[1], args[2], args[3], args[4]
  local qfield = '~q:' .. sub(field, 4)
  local now
  for _, data in ipairs(keys) do
    local r = redis.call('HMGET', data, qfield, field)
    local q, held = r[1], r[2]
    if q and q ~= '' and find(q, owner, 1, true) then
      now = now or now_ms()
      local t = parse_tickets(q, now)
      if drop_ticket(t, owner) then
        if #t.owners > 0 then redis.call('HSET', data, qfield, format_tickets(t)) else redis.call('HDEL', data, qfield) end
        local _, deadline = lock_parts(held or '')
        if #t.owners > 0 and not (deadline and deadline > now) then
          redis.call('PUBLISH', channel, data .. suffix)
        end
      end
    end
  end
  return 'OK'
end

-- Resolve commit attempt `commit_id` whose reply was lost: returns, per record key, the
-- committed record or false, and marks the attempt as aborted in every record that is not
-- committed, so that it can no longer apply. KEYS: the record keys. ARGV: `commit_id,
-- retention_ms`.
local function resolve(keys, args)
  if not format then bind() end
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
  if not format then bind() end
  local fields = {}
  for _, f in ipairs(redis.call('HKEYS', keys[1])) do
    if string.sub(f, 1, 1) ~= '~' then fields[#fields + 1] = f end
  end
  if #fields > 0 then call_chunked('HDEL', keys[1], fields, 1, #fields) end
  for i = 2, #keys do redis.call('DEL', keys[i]) end
  return redis.call('HINCRBY', keys[1], '~v', 1)
end

local function version()
  return VERSION
end

-- The steps' names carry the version: an engine of another version that is still running after
-- an upgrade replaced the library finds no function (and is refused at its reload) instead of
-- calling one with arguments it lays out differently.
redis.register_function('wasmtx_v8_lock_and_load', lock_and_load)
redis.register_function{function_name = 'wasmtx_v8_load', callback = load, flags = {'no-writes'}}
redis.register_function('wasmtx_v8_commit', commit)
redis.register_function('wasmtx_v8_release', release)
redis.register_function('wasmtx_v8_withdraw', withdraw)
redis.register_function('wasmtx_v8_resolve', resolve)
redis.register_function('wasmtx_v8_delete', delete)
redis.register_function{function_name = 'wasmtx_version', callback = version, flags = {'no-writes'}}
