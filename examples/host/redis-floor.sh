#!/usr/bin/env bash
# The floor of Redis CPU under the one-round-trip bank-transfer commit (issue 11's "≤ 16 µs of
# Redis CPU per transfer"): what Redis spends per call of the library's commit, against a
# function that runs the same five commands with no logic at all (two `HMGET` version reads,
# the record's `SET NX PX GET`, two `HSET` writes), the same function body with no commands,
# the same body with no arguments, and each command sent plainly.
#
#   examples/host/redis-floor.sh [CALLS] [RUNS]
#
# CALLS defaults to 200000 per row, RUNS to 3 (the median is printed). Needs redis-server,
# redis-cli and redis-benchmark. Starts a private `redis-server` on a free loopback port and
# stops it. Each row is `redis-benchmark -c 1 -P 32` (one connection with many requests in
# flight, as the engine's multiplexed connection sends them); Redis CPU per call is the
# server's `used_cpu_user + used_cpu_sys` over the row divided by the calls, so it includes
# reading requests and writing replies. The commit runs under guard `U` (no version check: the
# same call repeats), with a fresh record key per call; its arguments are a real commit's, taken
# from `MONITOR` during `bench --workloads bank --impls optimistic`.
set -euo pipefail
cd "$(dirname "$0")/../.."
calls=${1:-200000}
runs=${2:-3}
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$port" function load "$(cat engine/src/store/redis/library.lua)" >/dev/null
redis-cli -p "$port" function load "$(
  cat <<'LUA'
#!lua name=floor
-- The commit's five commands on the same arguments, with nothing else.
local function commands(keys, args)
  redis.call('HMGET', keys[2], '~v', '~l:transfer')
  redis.call('HMGET', keys[3], '~v', '~l:transfer')
  redis.call('SET', keys[1], 'C102,105\n' .. args[10], 'NX', 'PX', args[9], 'GET')
  redis.call('HSET', keys[2], '~v', args[13], args[20], args[21], args[22], args[23])
  redis.call('HSET', keys[3], '~v', args[26], args[33], args[34], args[35], args[36])
  return {'OK', args[13], args[26]}
end
redis.register_function('floor_commands', commands)
redis.register_function('floor_empty', function() return {'OK', '1', '2'} end)
LUA
)" >/dev/null
library=$(redis-cli -p "$port" fcall wasmtx_version 0)

payload='{"f":"1502f223bc0b41f9a6253a0beea0fd4f","i":"af399a6693e794f5-119675","o":"\"Transferred 179 successfully\"","t":[],"a":1}'
# KEYS (3), then ARGV (36): guard, n, channel, lock field, lock suffix, flags, records, commit id,
# retention, the record's payload, then per account `token, version, next, collections, ops`
# and one `HSET` of two fields, then the refresh section.
args=(3 'f:{Account:a1}:done:__rand_int__' 'f:{Account:a1}' 'f:{Account:a2}' U 2 'f:released' '~l:transfer'
  ':lock:transfer' 0 1 'c-__rand_int__' 3600000 "$payload" ''
  101 102 0 1 HSET 0 balance 4 balance 2566 transaction_count 102
  '' 104 105 0 1 HSET 0 balance 4 balance 1050 transaction_count 105 0 '' 0 '')

cpu() { redis-cli -p "$port" info cpu | tr -d '\r' | awk -F: '/^used_cpu_(sys|user):/ { s += $2 } END { printf "%.6f", s }'; }
# Median Redis CPU per call, in µs, of the request in "$@" over `runs` rows.
row() {
  local label=$1 samples=()
  shift
  for _ in $(seq 1 "$runs"); do
    local before after
    before=$(cpu)
    redis-benchmark -p "$port" -c 1 -P 32 -n "$calls" -r 100000000 -q "$@" >/dev/null 2>&1
    after=$(cpu)
    samples+=("$(python3 -c "print(f'{($after - $before) * 1e6 / $calls:.1f}')")")
  done
  printf '| %s | %s | %s |\n' "$label" "$(printf '%s\n' "${samples[@]}" | sort -n | sed -n "$(((runs + 1) / 2))p")" \
    "$(printf '%s ' "${samples[@]}")"
}

echo "Redis $(redis-server --version | awk '{print $3}' | cut -d= -f2), library version $library, $calls calls per row, median of $runs"
echo
echo '| request | Redis CPU µs per call (median) | runs |'
echo '|---|--:|---|'
row 'the library'"'"'s commit (bank transfer, one record)' FCALL "wasmtx_v${library}_commit" "${args[@]}"
row 'a function running the same 5 commands, no logic' FCALL floor_commands "${args[@]}"
row 'a function running nothing, same arguments' FCALL floor_empty "${args[@]}"
row 'a function running nothing, no arguments' FCALL floor_empty 0
row 'plain `HMGET` (a version read)' HMGET 'f:{Account:a1}' '~v' '~l:transfer'
row 'plain `SET NX PX GET` (the record)' SET 'f:{Account:a1}:done:__rand_int__' "C102,105 $payload" NX PX 3600000 GET
row 'plain `HSET` (a write)' HSET 'f:{Account:a1}' '~v' 102 balance 2566 transaction_count 102
