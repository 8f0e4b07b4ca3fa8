// # Probe (AssemblyScript): the twin of tests/rules/probe
//
// Runs a script of model operations given as input and returns each operation's result, so
// the tests can run one script through this rule and through the Rust probe and compare: every
// function of the SDK's generated glue, every error path. The ops, their fields and results
// are those of tests/rules/probe (see its documentation), except `transfer`, `recurse` and the
// `{"$float": "NaN"}` form of non-finite floats (no twin test uses them), plus one of its
// own: `{"op": "recover", "ops": [...]}` runs `ops` and, instead of stopping at a failed one,
// takes its error (`ctx.takeError()`) and reports it as `{"error": "<message>"}` in its results.
//
// Input: `{"ops": [op, ...]}`, run in order. Output: a JSON array with one result per op. An op
// that fails stops the script: a model error propagates as `rule-error::access`, and nothing
// is written. Scalars map to JSON as integers, floats, booleans and strings; a `bytes` scalar
// is `{"$bytes": [1, 2, 3]}` both ways.

import {
  Context,
  Json,
  JsonKind,
  Level,
  Model,
  Outcome,
  RuleError,
  Scalar,
  ScalarTag,
  Value,
  Tuple2,
  ValueTag,
  exportRule,
  fieldTypeName,
  invalidInput,
  log,
  modeName,
  ok,
  propagate,
  recordFailure,
  reject,
  ruleErrorMessage,
} from "wasmtx-guest";
export { run, cabi_realloc } from "wasmtx-guest/abi";

/** The models opened so far, by index. */
let opened = new Map<u32, Model>();

function modelAt(ctx: Context, op: Json): Model {
  const index = <u32>op.get("model").intOr(0);
  if (!opened.has(index)) opened.set(index, ctx.model(index));
  return opened.get(index);
}

function probe(ctx: Context, input: Json): Outcome {
  opened = new Map<u32, Model>();
  const ops = input.get("ops").asArray();
  if (ctx.failed) return propagate();
  const results = Json.array();
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i];
    const result = runOp(ctx, op);
    if (ctx.failed) return propagate();
    if (result.isOk) {
      results.push(result.value!);
    } else {
      return result.outcome!;
    }
  }
  return ok(results);
}

/** An op's result, or the outcome that ends the script. */
class Step {
  constructor(
    public value: Json | null,
    public outcome: Outcome | null,
  ) {}
  get isOk(): bool {
    return this.outcome == null;
  }
}

function done(value: Json): Step {
  return new Step(value, null);
}

function stop(outcome: Outcome): Step {
  return new Step(null, outcome);
}

function runOp(ctx: Context, op: Json): Step {
  const name = op.get("op").asStr();
  if (ctx.failed) return done(Json.null());
  const field = op.has("field") ? op.get("field").asStr() : "";
  if (name == "get") {
    const value = modelAt(ctx, op).get(field);
    return done(value == null ? Json.null() : valueToJson(value));
  } else if (name == "set") {
    const value = jsonToValue(op.get("value"));
    if (value == null) return done(Json.null());
    modelAt(ctx, op).set(field, value);
  } else if (name == "reset") {
    modelAt(ctx, op).reset(field);
  } else if (name == "increment") {
    return done(Json.int(modelAt(ctx, op).increment(field, op.get("delta").asInt())));
  } else if (name == "append") {
    const item = jsonToScalar(op.get("item"));
    if (item != null) modelAt(ctx, op).list(field).append(item);
  } else if (name == "list_extend") {
    const json = op.get("items").asArray();
    const items = new Array<Scalar>();
    for (let i = 0; i < json.length; i++) {
      const item = jsonToScalar(json[i]);
      if (item == null) return done(Json.null());
      items.push(item);
    }
    modelAt(ctx, op).list(field).extend(items);
  } else if (name == "list_insert") {
    const item = jsonToScalar(op.get("item"));
    if (item != null) modelAt(ctx, op).list(field).insert(op.get("index").asInt(), item);
  } else if (name == "list_pop") {
    const list = modelAt(ctx, op).list(field);
    const index = op.get("index");
    const item = index.isNull || index.isMissing ? list.pop() : list.popAt(index.asInt());
    return done(item == null ? Json.null() : scalarToJson(item));
  } else if (name == "list_remove") {
    const item = jsonToScalar(op.get("item"));
    if (item != null) modelAt(ctx, op).list(field).remove(item);
  } else if (name == "list_clear") {
    modelAt(ctx, op).list(field).clear();
  } else if (name == "list_len") {
    return done(Json.int(modelAt(ctx, op).list(field).len()));
  } else if (name == "list_get") {
    const item = modelAt(ctx, op).list(field).get(op.get("index").asInt());
    return done(item == null ? Json.null() : scalarToJson(item));
  } else if (name == "list_items") {
    const items = modelAt(ctx, op).list(field).items();
    const out = Json.array();
    for (let i = 0; i < items.length; i++) out.push(scalarToJson(items[i]));
    return done(out);
  } else if (name == "dict_get") {
    const value = modelAt(ctx, op).dict(field).get(op.get("key").asStr());
    return done(value == null ? Json.null() : scalarToJson(value));
  } else if (name == "dict_set") {
    const value = jsonToScalar(op.get("value"));
    if (value != null) modelAt(ctx, op).dict(field).set(op.get("key").asStr(), value);
  } else if (name == "dict_update") {
    const json = op.get("entries");
    const keys = json.keys();
    const entries = new Map<string, Scalar>();
    for (let i = 0; i < keys.length; i++) {
      const value = jsonToScalar(json.get(keys[i]));
      if (value == null) return done(Json.null());
      entries.set(keys[i], value);
    }
    modelAt(ctx, op).dict(field).update(entries);
  } else if (name == "dict_pop") {
    const value = modelAt(ctx, op).dict(field).pop(op.get("key").asStr());
    return done(value == null ? Json.null() : scalarToJson(value));
  } else if (name == "dict_clear") {
    modelAt(ctx, op).dict(field).clear();
  } else if (name == "dict_keys") {
    const keys = modelAt(ctx, op).dict(field).keys();
    const out = Json.array();
    for (let i = 0; i < keys.length; i++) out.push(Json.str(keys[i]));
    return done(out);
  } else if (name == "dict_len") {
    return done(Json.int(modelAt(ctx, op).dict(field).len()));
  } else if (name == "dict_entries") {
    const entries = modelAt(ctx, op).dict(field).entries();
    const out = Json.object();
    for (let i = 0; i < entries.length; i++) out.set(entries[i].key, scalarToJson(entries[i].value));
    return done(out);
  } else if (name == "fields") {
    const fields = modelAt(ctx, op).fields();
    const out = Json.array();
    for (let i = 0; i < fields.length; i++) {
      out.push(Json.array([Json.str(fields[i].f0), Json.str(fieldTypeName(fields[i].f1))]));
    }
    return done(out);
  } else if (name == "open") {
    return done(describe(ctx.open(op.get("model_type").asStr(), op.get("key").asStr())));
  } else if (name == "open_index") {
    return done(describe(ctx.model(<u32>op.get("index").asInt())));
  } else if (name == "context") {
    const models = Json.array();
    for (let i = 0; i < ctx.models.length; i++) {
      const m = ctx.models[i];
      models.push(Json.object().set("model_type", Json.str(m.modelType)).set("key", Json.str(m.key)));
    }
    return done(
      Json.object()
        .set("invocation_id", Json.str(ctx.invocationId))
        .set("now_ms", Json.int(ctx.nowMs))
        .set("action", Json.str(ctx.action))
        .set("mode", Json.str(modeName(ctx.mode)))
        .set("attempt", Json.int(ctx.attempt))
        .set("models", models),
    );
  } else if (name == "recover") {
    const inner = op.get("ops").asArray();
    const out = Json.array();
    for (let i = 0; i < inner.length; i++) {
      const step = runOp(ctx, inner[i]);
      const error = ctx.takeError();
      if (error != null) {
        out.push(Json.object().set("error", Json.str(ruleErrorMessage(error))));
      } else if (step.isOk) {
        out.push(step.value!);
      } else {
        return step;
      }
    }
    return done(out);
  } else if (name == "reject") {
    return stop(reject(op.get("message").asStr()));
  } else if (name == "invalid_input") {
    return stop(invalidInput(op.get("message").asStr()));
  } else if (name == "log") {
    const level = op.get("level").strOr("info");
    let l = Level.Info;
    if (level == "trace") l = Level.Trace;
    else if (level == "debug") l = Level.Debug;
    else if (level == "info") l = Level.Info;
    else if (level == "warn") l = Level.Warn;
    else if (level == "error") l = Level.Error;
    else return stop(invalidInput("unknown log level `" + level + "`"));
    log.emit(l, op.get("message").asStr(), [["source", "probe"]]);
  } else if (name == "trap") {
    abort("probe: trap requested");
  } else if (name == "loop") {
    spin();
  } else if (name == "alloc") {
    const bytes = new Uint8Array(<i32>op.get("bytes").asInt());
    bytes.fill(0xa5);
    sink = bytes;
    return done(Json.int(bytes.length));
  } else {
    return stop(invalidInput("unknown op `" + name + "`"));
  }
  return done(Json.null());
}

let spins: u64 = 0;
let sink: Uint8Array | null = null;

function spin(): void {
  while (true) spins++;
}

function describe(model: Model): Json {
  return Json.object().set("model_type", Json.str(model.modelType())).set("key", Json.str(model.key()));
}

function scalarToJson(value: Scalar): Json {
  switch (value.tag) {
    case ScalarTag.Boolean:
      return Json.bool(value.boolean);
    case ScalarTag.Int:
      return Json.int(value.int);
    case ScalarTag.Float:
      return Json.float(value.float);
    case ScalarTag.Str:
      return Json.str(value.str);
    case ScalarTag.Bytes: {
      const bytes = value.bytes;
      const out = Json.array();
      for (let i = 0; i < bytes.length; i++) out.push(Json.int(bytes[i]));
      return Json.object().set("$bytes", out);
    }
  }
  return unreachable();
}

function valueToJson(value: Value): Json {
  switch (value.tag) {
    case ValueTag.Scalar:
      return scalarToJson(value.scalar);
    case ValueTag.List: {
      const items = value.list;
      const out = Json.array();
      for (let i = 0; i < items.length; i++) out.push(scalarToJson(items[i]));
      return out;
    }
    case ValueTag.Dict: {
      const entries = value.dict;
      const out = Json.object();
      for (let i = 0; i < entries.length; i++) out.set(entries[i].f0, scalarToJson(entries[i].f1));
      return out;
    }
  }
  return unreachable();
}

/** A scalar from JSON, or null after recording an `invalid_input` failure. */
function jsonToScalar(json: Json): Scalar | null {
  switch (json.kind) {
    case JsonKind.Bool:
      return Scalar.boolean(json.asBool());
    case JsonKind.Int:
      return Scalar.int(json.asInt());
    case JsonKind.Float:
      return Scalar.float(json.asFloat());
    case JsonKind.Str:
      return Scalar.str(json.asStr());
    case JsonKind.Object: {
      const keys = json.keys();
      if (keys.length == 1 && keys[0] == "$bytes") {
        const items = json.get("$bytes").asArray();
        const bytes = new Array<u8>();
        for (let i = 0; i < items.length; i++) {
          const b = items[i].asInt();
          if (b < 0 || b > 255) {
            recordBad("bad $bytes: " + b.toString() + " is not a byte");
            return null;
          }
          bytes.push(<u8>b);
        }
        return Scalar.bytes(bytes);
      }
      break;
    }
  }
  recordBad("expected a scalar, got " + json.toString());
  return null;
}

/** A whole field value from JSON: an array sets a list, an object a dict (sorted), else a scalar. */
function jsonToValue(json: Json): Value | null {
  if (json.kind == JsonKind.Array) {
    const items = json.asArray();
    const out = new Array<Scalar>();
    for (let i = 0; i < items.length; i++) {
      const item = jsonToScalar(items[i]);
      if (item == null) return null;
      out.push(item);
    }
    return Value.list(out);
  }
  if (json.kind == JsonKind.Object && !(json.keys().length == 1 && json.keys()[0] == "$bytes")) {
    const keys = json.keys().slice(0);
    keys.sort();
    const entries = new Array<Tuple2<string, Scalar>>();
    for (let i = 0; i < keys.length; i++) {
      const value = jsonToScalar(json.get(keys[i]));
      if (value == null) return null;
      entries.push(new Tuple2<string, Scalar>(keys[i], value));
    }
    return Value.dict(entries);
  }
  const scalar = jsonToScalar(json);
  return scalar == null ? null : Value.scalar(scalar);
}

function recordBad(message: string): void {
  recordFailure(RuleError.invalidInput(message));
}

exportRule(probe);
