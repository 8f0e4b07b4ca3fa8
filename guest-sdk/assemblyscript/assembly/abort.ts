// The `abort` the build tool wires in (`--use abort=...`): AssemblyScript calls it on a failed
// `assert`, an out-of-bounds array access, `abort()` and the like. It logs why at `error` level
// and traps, so the engine reports the invocation as trapped and writes nothing (a Rust rule's
// panic does the same). Without it the module would import `env.abort` and not be a rule.

import { Level, emit } from "./generated/bindings";
import { Tuple2 } from "./cabi";

export function wasmtxAbort(
  message: string | null = null,
  fileName: string | null = null,
  line: u32 = 0,
  column: u32 = 0,
): void {
  const fields = new Array<Tuple2<string, string>>();
  if (fileName != null) {
    fields.push(new Tuple2<string, string>("at", fileName + ":" + line.toString() + ":" + column.toString()));
  }
  emit(Level.Error, "rule aborted: " + (message != null ? message : "abort()"), fields);
  unreachable();
}
