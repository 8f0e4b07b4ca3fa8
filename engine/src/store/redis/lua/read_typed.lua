-- Shared by every script that reads model keys (lock-and-load, load, commit).
--
-- Key types are checked by the reads themselves: a read of a key holding another type fails
-- with WRONGTYPE (caught by `pcall`), and only then is `TYPE` asked, for the error's sake. So a
-- check costs no command of its own, and still comes before the first write.

-- Runs a read; returns its reply, or nil and the type the key holds when that is not a type
-- the read works on. Any other error ends the script.
local function read_typed(cmd, key, ...)
  local r = redis.pcall(cmd, key, ...)
  if type(r) == 'table' and r.err then
    if not string.find(r.err, 'WRONGTYPE', 1, true) then error(r) end
    return nil, redis.call('TYPE', key)['ok']
  end
  return r, nil
end
