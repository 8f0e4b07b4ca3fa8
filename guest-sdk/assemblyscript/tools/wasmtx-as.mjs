#!/usr/bin/env node
// wasmtx-as: builds an AssemblyScript rule into a core WebAssembly module the wasmtx engine
// accepts (the engine wraps it into a component itself).
//
//   wasmtx-as build <entry.ts> -o <out.wasm> [--debug] [--no-names] [--wat <out.wat>] [-- <asc options>]
//   wasmtx-as embed <core.wasm> -o <out.wasm>
//
// `build` runs the AssemblyScript compiler of the project it is run in (its `assemblyscript`
// dependency) with the flags a rule needs, then does what `embed` does: appends the WIT world
// as a `component-type` custom section (string encoding UTF-16) and checks that the module
// imports nothing but the world's functions, with the right core signatures, and exports what
// the world needs. The flags:
//
//   --runtime stub           a bump allocator that never frees: each invocation runs in a fresh
//                            instance, so no garbage collector is needed
//   --exportStart _initialize top-level code runs after the component is linked, not during
//                            instantiation (where a call into the host would trap)
//   --use abort=...          failed asserts and the like log and trap instead of importing
//                            `env.abort`
//   -O3 (or --debug)         optimised, asserts kept, function names kept for trap backtraces
//                            (--no-names drops them: about 5 KiB less)
//
// The tool needs nothing but Node.js 20+ and the project's `assemblyscript`.

import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve, relative } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

import { COMPONENT_TYPE_SECTION, EXPORTS, IMPORTS, WORLD } from "./generated/world.mjs";

const SDK_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const SDK = JSON.parse(readFileSync(join(SDK_DIR, "package.json"), "utf8"));
/** The compiler version the SDK is built and tested with. */
const ASC_VERSION = SDK.peerDependencies.assemblyscript;

class UsageError extends Error {}

function usage() {
  return [
    "usage:",
    "  wasmtx-as build <entry.ts> -o <out.wasm> [--debug] [--no-names] [--wat <out.wat>] [-- <asc options>]",
    "  wasmtx-as embed <core.wasm> -o <out.wasm>",
  ].join("\n");
}

function parseArgs(argv) {
  const [command, ...rest] = argv;
  const options = { command, input: null, output: null, debug: false, names: true, wat: null, extra: [] };
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i];
    if (arg === "--") {
      options.extra = rest.slice(i + 1);
      break;
    } else if (arg === "-o" || arg === "--out") {
      options.output = rest[++i];
    } else if (arg === "--wat") {
      options.wat = rest[++i];
    } else if (arg === "--debug") {
      options.debug = true;
    } else if (arg === "--no-names") {
      options.names = false;
    } else if (arg.startsWith("-")) {
      throw new UsageError(`unknown option ${arg}`);
    } else if (options.input == null) {
      options.input = arg;
    } else {
      throw new UsageError(`unexpected argument ${arg}`);
    }
  }
  if (!["build", "embed"].includes(command) || !options.input || !options.output) {
    throw new UsageError("missing command, input or -o <out.wasm>");
  }
  return options;
}

async function loadCompiler() {
  const require = createRequire(resolve("package.json"));
  let manifest;
  try {
    manifest = require.resolve("assemblyscript/package.json");
  } catch {
    throw new Error(
      `the AssemblyScript compiler is not installed in ${process.cwd()}: ` +
        `add "assemblyscript": "${ASC_VERSION}" to devDependencies and run npm install`,
    );
  }
  const version = JSON.parse(readFileSync(manifest, "utf8")).version;
  if (version !== ASC_VERSION) {
    throw new Error(`wasmtx-guest needs assemblyscript ${ASC_VERSION} exactly; this project has ${version}`);
  }
  return (await import(pathToFileURL(join(dirname(manifest), "dist", "asc.js")).href)).default;
}

async function build(options) {
  const asc = await loadCompiler();
  const args = [
    options.input,
    "--outFile",
    options.output,
    "--runtime",
    "stub",
    "--exportStart",
    "_initialize",
    "--use",
    `abort=~lib/${SDK.name}/assembly/abort/wasmtxAbort`,
    // `--debug` keeps the name section (a trap's backtrace then names functions); with -O3 the
    // code is optimised all the same.
    ...(options.debug ? ["--debug"] : ["-O3", ...(options.names ? ["--debug"] : [])]),
    ...(options.wat ? ["--textFile", options.wat] : []),
    ...options.extra,
  ];
  let core = null;
  const { error } = await asc.main(args, {
    stdout: process.stdout,
    stderr: process.stderr,
    writeFile(name, contents, baseDir) {
      const path = resolve(baseDir, name);
      if (path === resolve(options.output)) {
        core = contents;
        return;
      }
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, contents);
    },
  });
  if (error) throw new Error(`asc failed: ${error.message}`);
  if (core == null) throw new Error("asc produced no module");
  return finish(Buffer.from(core), options.output, options.input);
}

function embed(options) {
  return finish(readFileSync(options.input), options.output, options.input);
}

function finish(core, output, source) {
  const module = parseModule(core);
  if (module.customSections.some((name) => name.startsWith("component-type"))) {
    throw new Error(`${source} already has a component-type section`);
  }
  checkImports(module.imports);
  checkExports(module.exports);
  const section = Buffer.from(COMPONENT_TYPE_SECTION, "base64");
  const out = Buffer.concat([core, section]);
  mkdirSync(dirname(resolve(output)), { recursive: true });
  writeFileSync(output, out);
  const kib = (out.length / 1024).toFixed(1);
  console.log(
    `wasmtx-as: wrote ${relative(process.cwd(), resolve(output)) || output} (${kib} KiB, world ${WORLD}, ` +
      `${module.imports.length} imports)`,
  );
}

const HINTS = {
  "env.abort": "build with `wasmtx-as build` (it wires AssemblyScript's abort to the SDK's)",
  "env.seed": "Math.random is not available in a rule: rules are deterministic",
  "env.Date.now": "Date.now is not available in a rule: use ctx.nowMs",
  "env.trace": "trace() is not available in a rule: use log.debug",
  "env.console.log": "console is not available in a rule: use log.info",
};

function checkImports(imports) {
  const allowed = new Map(IMPORTS.map(([module, name, signature]) => [`${module}\u0000${name}`, signature]));
  const problems = [];
  for (const imp of imports) {
    const key = `${imp.module}\u0000${imp.name}`;
    const expected = allowed.get(key);
    if (imp.kind !== "func") {
      problems.push(`imports the ${imp.kind} ${imp.module}.${imp.name}`);
    } else if (expected == null) {
      const hint = HINTS[`${imp.module}.${imp.name}`];
      problems.push(`imports ${imp.module}.${imp.name}, which the world does not have${hint ? ` (${hint})` : ""}`);
    } else if (expected !== imp.signature) {
      problems.push(
        `imports ${imp.module}.${imp.name} as ${imp.signature} but the world's is ${expected} ` +
          "(is the SDK's generated glue stale?)",
      );
    }
  }
  if (problems.length) throw new Error(`the module is not a rule:\n  - ${problems.join("\n  - ")}`);
}

function checkExports(exports) {
  const byName = new Map(exports.map((e) => [e.name, e]));
  const needed = [["memory", "memory"], ["cabi_realloc", "(i32, i32, i32, i32) -> (i32)"], ...EXPORTS];
  const problems = [];
  for (const [name, signature] of needed) {
    const found = byName.get(name);
    if (found == null) {
      problems.push(
        name === "memory"
          ? "does not export its memory"
          : `does not export ${name}: add \`export { run, cabi_realloc } from "${SDK.name}/abi";\` to the entry file`,
      );
    } else if (signature === "memory" ? found.kind !== "memory" : found.signature !== signature) {
      problems.push(`exports ${name} as ${found.signature ?? found.kind}, expected ${signature}`);
    }
  }
  if (problems.length) throw new Error(`the module is not a rule:\n  - ${problems.join("\n  - ")}`);
}

// ---- a minimal reader of core modules: types, imports, functions, exports, custom sections

const VALTYPES = { 0x7f: "i32", 0x7e: "i64", 0x7d: "f32", 0x7c: "f64", 0x7b: "v128", 0x70: "funcref", 0x6f: "externref" };

function parseModule(bytes) {
  if (bytes.length < 8 || bytes.readUInt32LE(0) !== 0x6d736100) throw new Error("not a WebAssembly module");
  if (bytes.readUInt32LE(4) !== 1) throw new Error("not a core WebAssembly module (already a component?)");
  let pos = 8;
  const u32 = () => {
    let result = 0;
    let shift = 0;
    for (;;) {
      const byte = bytes[pos++];
      result |= (byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return result >>> 0;
      shift += 7;
    }
  };
  const name = () => {
    const len = u32();
    const s = bytes.toString("utf8", pos, pos + len);
    pos += len;
    return s;
  };
  const limits = () => {
    const flags = bytes[pos++];
    u32();
    if (flags & 1) u32();
  };
  const types = [];
  const imports = [];
  const functions = [];
  const exports = [];
  const customSections = [];
  let importedFuncs = 0;
  while (pos < bytes.length) {
    const id = bytes[pos++];
    const size = u32();
    const end = pos + size;
    if (id === 0) {
      customSections.push(name());
    } else if (id === 1) {
      for (let n = u32(); n > 0; n--) {
        if (bytes[pos++] !== 0x60) throw new Error("unsupported type in the type section");
        const params = [];
        for (let k = u32(); k > 0; k--) params.push(VALTYPES[bytes[pos++]] ?? "?");
        const results = [];
        for (let k = u32(); k > 0; k--) results.push(VALTYPES[bytes[pos++]] ?? "?");
        types.push(`(${params.join(", ")}) -> (${results.join(", ")})`);
      }
    } else if (id === 2) {
      for (let n = u32(); n > 0; n--) {
        const module = name();
        const field = name();
        const kind = bytes[pos++];
        if (kind === 0) {
          imports.push({ module, name: field, kind: "func", signature: types[u32()] });
          importedFuncs++;
        } else if (kind === 1) {
          pos++;
          limits();
          imports.push({ module, name: field, kind: "table" });
        } else if (kind === 2) {
          limits();
          imports.push({ module, name: field, kind: "memory" });
        } else if (kind === 3) {
          pos += 2;
          imports.push({ module, name: field, kind: "global" });
        } else {
          throw new Error(`unsupported import kind ${kind}`);
        }
      }
    } else if (id === 3) {
      for (let n = u32(); n > 0; n--) functions.push(types[u32()]);
    } else if (id === 7) {
      for (let n = u32(); n > 0; n--) {
        const exportName = name();
        const kind = bytes[pos++];
        const index = u32();
        if (kind === 0) {
          const signature =
            index < importedFuncs ? imports.filter((i) => i.kind === "func")[index].signature : functions[index - importedFuncs];
          exports.push({ name: exportName, kind: "func", signature });
        } else {
          exports.push({ name: exportName, kind: ["func", "table", "memory", "global", "tag"][kind] ?? "?" });
        }
      }
    }
    pos = end;
  }
  return { imports, exports, customSections };
}

try {
  const options = parseArgs(process.argv.slice(2));
  await (options.command === "build" ? build(options) : embed(options));
} catch (e) {
  if (e instanceof UsageError) {
    console.error(`wasmtx-as: ${e.message}\n${usage()}`);
    process.exit(2);
  }
  console.error(`wasmtx-as: ${e.message}`);
  process.exit(1);
}
