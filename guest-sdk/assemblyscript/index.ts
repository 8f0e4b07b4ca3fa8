// The package entry: `import { ... } from "wasmtx-guest"`.
export * from "./assembly/index";
