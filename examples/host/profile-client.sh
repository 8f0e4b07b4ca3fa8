#!/usr/bin/env bash
# Where the engine process's CPU goes on the uniform-key path (issue 13): runs the bank
# workload in adaptive mode at 64 callers, records the engine process with perf (DWARF call
# graphs) for a few seconds of the measured window, and sorts every sample into one category
# (wasm store drop, instantiate, host calls, snapshot cache, Redis client, ...) by the frames
# on its stack, with profile-client.py.
#
#   examples/host/profile-client.sh [SECONDS] [IMPLS]
#
# SECONDS defaults to 3 (the recording; the row runs 10 s), IMPLS to `adaptive` (any `bench
# --impls` key of an engine row). Needs perf and python3; builds the bench binary first. The
# shares are of the engine process's samples (the load generator included, as in the bench's
# client CPU column), so they hold on a busy machine as well as the absolute figures do not.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-3}
impls=${2:-adaptive}
work=$(mktemp -d)
trap 'rm -rf "$work"; [ -n "${bench:-}" ] && kill "$bench" 2>/dev/null || true' EXIT

cargo build --release --bin bench >&2
target/release/bench --workloads bank --concurrency 64 --impls "$impls" --no-write --iterations 10 \
  --duration 10 >"$work/bench.txt" 2>&1 &
bench=$!
# The bench compiles its rules and starts its private Redis first; the row's warm-up follows.
sleep 8
perf record -F 499 --call-graph dwarf,16384 -p "$bench" -o "$work/perf.data" -- sleep "$seconds" >&2 2>/dev/null
wait "$bench" || true
bench=
grep -E '^\| \*\*engine' "$work/bench.txt" | cut -d'|' -f2-12 || true
perf script -i "$work/perf.data" -F comm,tid,ip,sym 2>/dev/null >"$work/perf.txt"
python3 examples/host/profile-client.py "$work/perf.txt"
