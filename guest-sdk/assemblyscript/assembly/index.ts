// wasmtx-guest for AssemblyScript: write wasmtx business rules against a small typed API.
//
//   import { Context, Json, Outcome, exportRule, ok, propagate, reject } from "wasmtx-guest";
//   export { run, cabi_realloc } from "wasmtx-guest/abi";
//
//   function transfer(ctx: Context, input: Json): Outcome {
//     const amount = input.get("amount").asInt();
//     if (ctx.failed) return propagate();
//     const from = ctx.model(0);
//     const to = ctx.model(1);
//     if (from.getInt("balance") < amount) return reject("Insufficient funds");
//     from.increment("balance", -amount);
//     to.increment("balance", amount);
//     return ok("Transferred " + amount.toString() + " successfully");
//   }
//
//   exportRule(transfer);
//
// See README.md for the API, the error model and the build.

// The abort handler the build wires in with `--use abort=` (see tools/wasmtx-as.mjs).
import "./abort";

export { Context, UtcDate, isoTime } from "./context";
export { Model, ListField, DictField, DictEntry, scalar, scalarToString } from "./model";
export { Json, JsonKind } from "./json";
export {
  Outcome,
  ok,
  okJson,
  reject,
  invalidInput,
  fail,
  propagate,
  recordFailure,
  accessErrorMessage,
  ruleErrorMessage,
  scalarKindName,
  scalarKind,
  fieldTypeName,
  modeName,
  typeMismatch,
} from "./errors";
export { Rule, exportRule } from "./rule";
export { log } from "./log";
export { Box, Result, Tuple2 } from "./cabi";
export {
  AccessError,
  AccessErrorTag,
  FieldType,
  FieldTypeTag,
  IndexOutOfRange,
  Level,
  Mode,
  ModelRef,
  RuleError,
  RuleErrorTag,
  Scalar,
  ScalarKind,
  ScalarTag,
  TypeMismatch,
  Value,
  ValueTag,
} from "./generated/bindings";
