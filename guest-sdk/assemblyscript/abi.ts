// The component's core exports: re-export them from the rule's entry file,
//
//   export { run, cabi_realloc } from "wasmtx-guest/abi";
//
// `run` is the generated glue's export of the WIT `run` function (it calls the rule given to
// `exportRule`); `cabi_realloc` is the allocator the host passes strings and lists in with.
export { run } from "./assembly/generated/bindings";
export { cabi_realloc } from "./assembly/cabi";
