import { Context, Json, Outcome, exportRule, ok, propagate, reject } from "wasmtx-guest";
export { run, cabi_realloc } from "wasmtx-guest/abi";

/** Adds `by` to a counter and records when. Input: {"by": 5}. */
function add(ctx: Context, input: Json): Outcome {
  const by = input.get("by").asInt();
  if (ctx.failed) return propagate(); // the input had no integer `by`
  if (by <= 0) return reject("by must be positive");

  const counter = ctx.model(0);
  const count = counter.increment("count", by);
  counter.list("history").append("+" + by.toString() + " at " + ctx.isoTime());
  return ok(Json.object().set("count", Json.int(count)));
}

exportRule(add);
