#!/usr/bin/env bash
# Counts the CPU instructions Redis spends in the store's Functions library per bank-transfer
# lock-and-load and per commit (two accounts, one scalar assignment run each, one idempotency
# record), with callgrind on a private `redis-server`: instruction counts do not depend on what
# else the machine is doing, so two versions of the library compare on a busy machine too.
#
#   examples/host/profile-library.sh [LIBRARY.lua] [CALLS]
#
# LIBRARY defaults to engine/src/store/redis/library.lua, CALLS to 1000. Needs valgrind,
# redis-server and redis-cli. The library is loaded under another name (`wasmtxprof`) with two
# drivers appended that call its local functions with fixed arguments (the protocol of library
# versions 3 to 5: see `commit`'s comment), and two stubs that do only the drivers' own setup, whose
# counts are subtracted.
set -euo pipefail
cd "$(dirname "$0")/../.."
library=${1:-engine/src/store/redis/library.lua}
calls=${2:-1000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

sed -e 's/^#!lua name=wasmtx$/#!lua name=wasmtxprof/' \
  -e "s/redis.register_function('wasmtx_/redis.register_function('wasmtxprof_/" \
  -e "s/function_name = 'wasmtx_/function_name = 'wasmtxprof_/" "$library" >"$work/lib.lua"
cat >>"$work/lib.lua" <<'LUA'
local LOCK = {'owner-1', '100000', '~l:transfer', '2', '0', '0', '', '0', ''}
local PAYLOAD = '{"f":"df5439544057568046b82c22f67c6a01","i":"1788630cadfed7f1-0","o":"\\"Transferred 51 successfully\\"","t":[1,1],"a":1}'
-- KEYS: the two data hashes. Takes both locks and loads, then frees them.
local function release_both(keys)
  redis.call('HSET', keys[1], '~l:transfer', '')
  redis.call('HSET', keys[2], '~l:transfer', '')
end
redis.register_function('wasmtxprof_drive_lock', function(keys)
  local reply = lock_and_load(keys, LOCK)
  release_both(keys)
  return reply
end)
redis.register_function('wasmtxprof_stub_lock', function(keys)
  release_both(keys)
  return 1
end)
-- KEYS: the record, then the two data hashes. Sets both locks (token 7) and versions (5), then
-- commits a transfer under them.
local function hold_both(keys)
  redis.call('HSET', keys[2], '~v', '5', '~l:transfer', '7:99999999999999:o')
  redis.call('HSET', keys[3], '~v', '5', '~l:transfer', '7:99999999999999:o')
  redis.call('DEL', keys[1])
end
redis.register_function('wasmtxprof_drive_commit', function(keys)
  hold_both(keys)
  return commit(keys, {'L', '2', 'released', '~l:transfer', ':lock:transfer', '0', '1', 'cid-1', '3600000', PAYLOAD,
    '7', '5', '6', '0', '1', 'HSET', '0', 'balance', '4', 'balance', '1051', 'transaction_count', '1',
    '7', '5', '6', '0', '1', 'HSET', '0', 'balance', '4', 'balance', '949', 'transaction_count', '1'})
end)
redis.register_function('wasmtxprof_stub_commit', function(keys)
  hold_both(keys)
  return {'OK', '6', '6'}
end)
LUA

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# Instructions inside FCALL per call of `function` with `keys`.
count() {
  local function=$1
  shift
  rm -f "$work"/cg.*
  valgrind --tool=callgrind --toggle-collect=fcallCommand --callgrind-out-file="$work/cg.%p" \
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 1 200); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -p "$port" function load "$(cat "$work/lib.lua")" >/dev/null
  redis-cli -p "$port" hset 'p:{Account:a}' balance 1000 transaction_count 3 >/dev/null
  redis-cli -p "$port" hset 'p:{Account:b}' balance 1000 transaction_count 3 >/dev/null
  redis-benchmark -p "$port" -n "$calls" -c 1 -q FCALL "$function" "$#" "$@" >/dev/null
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  wait "$pid" || true
  local total
  total=$(grep -hE '^(summary|totals):' "$work"/cg.* | head -1 | awk '{print $2}')
  echo $((total / calls))
}

lock=$(($(count wasmtxprof_drive_lock 'p:{Account:a}' 'p:{Account:b}') - $(count wasmtxprof_stub_lock 'p:{Account:a}' 'p:{Account:b}')))
keys=('p:{Account:a}:done:x' 'p:{Account:a}' 'p:{Account:b}')
commit=$(($(count wasmtxprof_drive_commit "${keys[@]}") - $(count wasmtxprof_stub_commit "${keys[@]}")))
echo "library: $library"
echo "lock-and-load (2 accounts): $lock instructions per call"
echo "commit (2 accounts, 1 record): $commit instructions per call"
echo "transfer: $((lock + commit)) instructions"
