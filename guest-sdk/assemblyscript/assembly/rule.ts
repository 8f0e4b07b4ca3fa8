// The rule registry, and the typed implementation of the world's `run` export that the
// generated glue calls.

import { Result } from "./cabi";
import { Context as WitContext, RuleError } from "./generated/bindings";
import { Context } from "./context";
import { Outcome, __resetFailure, takeError } from "./errors";
import { Json } from "./json";

/** A rule: the invocation context and the parsed input in, an `Outcome` out. */
export type Rule = (ctx: Context, input: Json) => Outcome;

function noRule(ctx: Context, input: Json): Outcome {
  abort("no rule is exported: call exportRule(yourRule) at the top level of the entry file");
  return unreachable();
}

let registered: Rule = noRule;

/**
 * Makes `rule` the component's `run` export. Call it once, at the top level of the entry file,
 * next to `export { run, cabi_realloc } from "wasmtx-guest/abi";`.
 */
export function exportRule(rule: Rule): void {
  registered = rule;
}

/**
 * Runs the registered rule: parses the input (a syntax error is an `invalid_input` failure and the rule is
 * not called), calls the rule, and returns its output or error. A failure still pending when
 * the rule returns wins over what the rule returned.
 */
export function run(context: WitContext, input: string): Result<string, RuleError> {
  __resetFailure();
  const parsed = Json.parse(input);
  let error = takeError();
  if (error != null) return Result.err<string, RuleError>(error);

  const outcome = registered(new Context(context), parsed);
  error = takeError();
  if (error != null) return Result.err<string, RuleError>(error);
  const refusal = outcome.error;
  if (refusal != null) return Result.err<string, RuleError>(refusal);
  return Result.ok<string, RuleError>(outcome.output!);
}
