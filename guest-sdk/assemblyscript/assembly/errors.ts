// Errors: the invocation's pending failure, the rule's outcome, and readable messages.
//
// AssemblyScript has no exceptions a rule could use, and no `?`. So a failed model operation,
// or an input that does not have the shape the rule reads, is *recorded* as the invocation's
// pending failure (the first one wins) instead of being returned at every call site: the
// operation returns a zero value (0, "", false, null or an empty array) and, while a failure
// is pending, every later model operation does nothing. When the rule returns, a pending
// failure wins over whatever it returned: the invocation fails with it and nothing is written,
// exactly what `?` does in the Rust SDK. A rule that wants to stop early checks `ctx.failed`
// and returns `propagate()`; a rule that wants to recover takes the failure with
// `ctx.takeError()`, looks at it, and goes on.

import {
  AccessError,
  AccessErrorTag,
  FieldType,
  FieldTypeTag,
  Mode,
  RuleError,
  RuleErrorTag,
  Scalar,
  ScalarKind,
  ScalarTag,
  TypeMismatch,
} from "./generated/bindings";
import { Json, quoteJson } from "./json";

let pending: RuleError | null = null;

/** Records `error` as the invocation's failure, unless one is already pending. */
export function recordFailure(error: RuleError): void {
  if (pending == null) pending = error;
}

/** Records a failed model operation (see `recordFailure`). */
export function recordAccessError(error: AccessError): void {
  recordFailure(RuleError.access(error));
}

/** Records an input the rule cannot use (see `recordFailure`). */
export function recordInvalidInput(message: string): void {
  recordFailure(RuleError.invalidInput(message));
}

/** Whether a failure is pending. */
export function failed(): bool {
  return pending != null;
}

/** The pending failure, if any, left pending. */
export function pendingError(): RuleError | null {
  return pending;
}

/** Takes the pending failure, if any: the rule has handled it and goes on. */
export function takeError(): RuleError | null {
  const error = pending;
  pending = null;
  return error;
}

/** Forgets any pending failure: `run` calls it before each invocation. */
export function __resetFailure(): void {
  pending = null;
}

/** What a rule returns: its output (JSON text), or why it refused. */
export class Outcome {
  private constructor(
    /** The output JSON text, on success. */
    public readonly output: string | null,
    /** Why the rule refused, on failure. */
    public readonly error: RuleError | null,
  ) {}

  /** Success with `json` (JSON text) as the invocation's output. */
  static json(json: string): Outcome {
    return new Outcome(json, null);
  }

  /** Failure with `error`: nothing is written. */
  static error(error: RuleError): Outcome {
    return new Outcome(null, error);
  }

  /** Whether the rule succeeded. */
  get isOk(): bool {
    return this.error == null;
  }
}

/**
 * Success with `value` serialised as JSON: a string becomes a JSON string, a number a number, a
 * boolean `true`/`false`, a `Json` value itself, `null` JSON `null`.
 */
export function ok<T>(value: T): Outcome {
  return Outcome.json(jsonText<T>(value));
}

/** Success with `json`, JSON text the rule made itself, as the output. */
export function okJson(json: string): Outcome {
  return Outcome.json(json);
}

/**
 * A business refusal with a message for the caller: `return reject("Insufficient funds")`. The
 * invocation fails with error kind `rejected` (ERRORS.md lists every kind).
 */
export function reject(message: string): Outcome {
  return Outcome.error(RuleError.rejected(message));
}

/**
 * An input the rule cannot work with: `return invalidInput("quantity must be positive")`. The
 * invocation fails with error kind `invalid_input`.
 */
export function invalidInput(message: string): Outcome {
  return Outcome.error(RuleError.invalidInput(message));
}

/** Failure with `error` (for example an access error the rule took and decided to pass on). */
export function fail(error: RuleError): Outcome {
  return Outcome.error(error);
}

/**
 * Failure with the pending failure, taken: `if (ctx.failed) return propagate();` stops a rule
 * the way `?` does in Rust. Traps if no failure is pending (a bug in the rule).
 */
export function propagate(): Outcome {
  const error = takeError();
  if (error == null) {
    abort("propagate() called with no pending failure");
    return unreachable();
  }
  return Outcome.error(error);
}

// ---- serialising `ok` values

function jsonText<T>(value: T): string {
  if (isBoolean<T>()) {
    return <bool>value ? "true" : "false";
  } else if (isInteger<T>()) {
    return value.toString();
  } else if (isFloat<T>()) {
    return Json.float(<f64>value).toString();
  } else if (isString<T>()) {
    if (changetype<usize>(value) == 0) return "null";
    return quoteJson(changetype<string>(value));
  } else if (isReference<T>()) {
    if (changetype<usize>(value) == 0) return "null";
    if (value instanceof Json) return changetype<Json>(value).toString();
  }
  abort("ok(): the output must be a string, a number, a boolean, a Json value or null");
  return unreachable();
}

// ---- messages (the same text as the Rust SDK's `Display`)

/** An access error in words: "unknown field `x`". */
export function accessErrorMessage(error: AccessError): string {
  switch (error.tag) {
    case AccessErrorTag.UnknownField:
      return "unknown field `" + error.unknownField + "`";
    case AccessErrorTag.TypeMismatch: {
      const m = error.typeMismatch;
      return "type mismatch on field `" + m.field + "`: expected " + m.expected + ", found " + m.found;
    }
    case AccessErrorTag.IndexOutOfRange: {
      const i = error.indexOutOfRange;
      return "index " + i.index.toString() + " out of range for list `" + i.field + "` of length " + i.len.toString();
    }
    case AccessErrorTag.NotFound:
      return "not found: " + error.notFound;
    case AccessErrorTag.Denied:
      return "denied: " + error.denied;
    case AccessErrorTag.LimitExceeded:
      return "limit exceeded: " + error.limitExceeded;
  }
  return unreachable();
}

/** A rule error in words: "rejected: Insufficient funds". */
export function ruleErrorMessage(error: RuleError): string {
  switch (error.tag) {
    case RuleErrorTag.Rejected:
      return "rejected: " + error.rejected;
    case RuleErrorTag.InvalidInput:
      return "invalid input: " + error.invalidInput;
    case RuleErrorTag.Access:
      return "model access failed: " + accessErrorMessage(error.access);
  }
  return unreachable();
}

/** A scalar kind as schemas spell it: `bool`, `int`, `float`, `str` or `bytes`. */
export function scalarKindName(kind: ScalarKind): string {
  switch (kind) {
    case ScalarKind.Boolean:
      return "bool";
    case ScalarKind.Int:
      return "int";
    case ScalarKind.Float:
      return "float";
    case ScalarKind.Str:
      return "str";
    case ScalarKind.Bytes:
      return "bytes";
  }
  return unreachable();
}

/** The kind of a scalar. */
export function scalarKind(value: Scalar): ScalarKind {
  switch (value.tag) {
    case ScalarTag.Boolean:
      return ScalarKind.Boolean;
    case ScalarTag.Int:
      return ScalarKind.Int;
    case ScalarTag.Float:
      return ScalarKind.Float;
    case ScalarTag.Str:
      return ScalarKind.Str;
    case ScalarTag.Bytes:
      return ScalarKind.Bytes;
  }
  return unreachable();
}

/** A field type as schemas spell it: `int`, `list<str>`, `dict<int>`. */
export function fieldTypeName(type: FieldType): string {
  switch (type.tag) {
    case FieldTypeTag.Scalar:
      return scalarKindName(type.scalar);
    case FieldTypeTag.List:
      return "list<" + scalarKindName(type.list) + ">";
    case FieldTypeTag.Dict:
      return "dict<" + scalarKindName(type.dict) + ">";
  }
  return unreachable();
}

/** `lock`, `pipeline` or `optimistic`. */
export function modeName(mode: Mode): string {
  switch (mode) {
    case Mode.Lock:
      return "lock";
    case Mode.Pipeline:
      return "pipeline";
    case Mode.Optimistic:
      return "optimistic";
  }
  return unreachable();
}

/** A `type-mismatch` access error for `field`. */
export function typeMismatch(field: string, expected: string, found: string): AccessError {
  return AccessError.typeMismatch(new TypeMismatch(field, expected, found));
}
