-- Shared by the scripts that load models (lock-and-load, load).
-- A model's keys are meta, data, coll_1..coll_c; `kinds` has one letter per collection:
-- 'l' (list) or 'd' (dict).
local function wrong_type(key, want)
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= want then return t end
  return nil
end

-- Checks the types of a model's keys; returns {'WRONGTYPE', model, key, found} or nil.
local function check_types(i, meta, data, colls, kinds)
  local t = wrong_type(meta, 'hash')
  if t then return {'WRONGTYPE', i, meta, t} end
  t = wrong_type(data, 'hash')
  if t then return {'WRONGTYPE', i, data, t} end
  for j = 1, #colls do
    local want = (string.sub(kinds, j, j) == 'l') and 'list' or 'hash'
    t = wrong_type(colls[j], want)
    if t then return {'WRONGTYPE', i, colls[j], t} end
  end
  return nil
end

-- Appends version, scalar hash and every collection of a model to `out`.
local function load_model(out, meta, data, colls, kinds)
  out[#out + 1] = redis.call('HGET', meta, 'version') or '0'
  out[#out + 1] = redis.call('HGETALL', data)
  for j = 1, #colls do
    if string.sub(kinds, j, j) == 'l' then
      out[#out + 1] = redis.call('LRANGE', colls[j], 0, -1)
    else
      out[#out + 1] = redis.call('HGETALL', colls[j])
    end
  end
end
