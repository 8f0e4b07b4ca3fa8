"""Sorts `perf script -F comm,tid,ip,sym` samples of the engine process into categories.

Each sample goes to the first category (in the order below) any frame of its stack names, so
a sample inside a host call made by the guest counts as a host call, not as the guest's call.
Used by profile-client.sh; prints the share of each category, largest first.
"""

import collections
import sys

CATEGORIES = [
    ("wasm: store drop (memory reset, slot return)",
     ["drop_in_place<wasmtime::runtime::store::StoreOpaque>",
      "PoolingInstanceAllocator as wasmtime::runtime::vm::instance::allocator::InstanceAllocator>::dealloc"]),
    ("wasm: instantiate", ["instantiate_async", "Instantiator", "allocate_instance", "InstancePre"]),
    ("wasm: host calls (models, log)", ["cabi_entrypoint", "as wasmtx::runtime::bindings::wasmtx::rule"]),
    ("wasm: call (guest code, lowering, fiber)", ["call_run", "wasmtime::runtime::component::func", "wasmtime_fiber"]),
    ("rule run around the call (workspaces, context, output check)",
     ["run_in_span", "RuleRuntime>::workspaces", "serde_json::de"]),
    ("diff and final snapshot", ["state_changes", "final_snapshot", "ModelWorkspace"]),
    ("snapshot cache", ["wasmtx::txn::cache"]),
    ("idempotency (fingerprint, record payload)", ["Idempotency::of", "idempotency::payload", "sha2"]),
    ("Redis client: encode and send",
     ["write_packed_command", "get_packed_command", "write_command", "write_arg", "FunctionCall::command",
      "encode_changes", "store::redis::keys"]),
    ("Redis client: read and parse", ["ValueCodec", "combine::", "redis::parser", "codec::decode"]),
    ("Redis client: connection task (socket I/O)", ["redis::aio::multiplexed_connection", "PipelineSink"]),
    ("engine: allocator", ["_rjem_", "jemalloc"]),
    ("engine: memmove (futures and values moved)", ["__memmove"]),
    ("engine: protocol, adaptive choice, store glue", ["wasmtx::txn", "wasmtx::store", "wasmtx::engine"]),
    ("load generator (bench)", ["bench::bench"]),
    ("tokio: scheduler, timers, park", ["tokio::runtime"]),
]
THREADS = ("tokio-rt-worker", "wasmtx-rule", "wasmtx-epoch", "bench")


def categorize(stack):
    text = "\n".join(stack)
    for name, needles in CATEGORIES:
        if any(needle in text for needle in needles):
            return name
    leaf = stack[0] if stack else ""
    if "[unknown]" in leaf:
        return "unresolved (JIT-compiled guest code, mostly)"
    return "other"


def main(path):
    counts = collections.Counter()
    comm, stack = None, []

    def flush():
        if comm in THREADS:
            counts[categorize(stack)] += 1

    with open(path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if not line.strip():
                continue
            if line.startswith("\t"):
                stack.append(line.strip())
            else:
                flush()
                comm, stack = line.split()[0], []
    flush()
    total = sum(counts.values())
    print(f"{total} samples of the engine process")
    for name, count in counts.most_common():
        print(f"{100 * count / max(total, 1):5.1f} %  {name}")


if __name__ == "__main__":
    main(sys.argv[1])
