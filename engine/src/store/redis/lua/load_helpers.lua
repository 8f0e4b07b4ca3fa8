-- Shared by the scripts that load models (lock-and-load, load); needs read_typed.lua.
-- A model's keys are meta, data, coll_1..coll_c; `kinds` has one letter per collection:
-- 'l' (list) or 'd' (dict). A load costs one command per key.

-- Runs a read of model `i`; on a wrong-type key returns nil and
-- {'WRONGTYPE', model, key, found}.
local function read(i, cmd, key, ...)
  local r, found = read_typed(cmd, key, ...)
  if found then return nil, {'WRONGTYPE', i, key, found} end
  return r, nil
end

-- Reads a model: its version, scalar hash and every collection, as a list to append to the
-- reply; or nil and the error reply.
local function load_model(i, meta, data, colls, kinds)
  local v, bad = read(i, 'HGET', meta, 'version')
  if bad then return nil, bad end
  local out = {v or '0'}
  out[2], bad = read(i, 'HGETALL', data)
  if bad then return nil, bad end
  for j = 1, #colls do
    if string.sub(kinds, j, j) == 'l' then
      out[j + 2], bad = read(i, 'LRANGE', colls[j], 0, -1)
    else
      out[j + 2], bad = read(i, 'HGETALL', colls[j])
    end
    if bad then return nil, bad end
  end
  return out, nil
end
