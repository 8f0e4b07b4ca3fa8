// Model handles and views on list and dict fields: the same operations as the Rust SDK's
// `Model`, `ListField` and `DictField`.
//
// Every operation names a field of the model's schema. A failure (unknown field, type mismatch,
// index out of range, not found, denied, limit exceeded) is recorded as the invocation's pending
// failure and the operation returns a zero value; while a failure is pending, operations do
// nothing (see errors.ts).

import { Box, Result, Tuple2 } from "./cabi";
import { AccessError, FieldType, Model as WitModel, Scalar, ScalarTag, Value, ValueTag } from "./generated/bindings";
import { failed, recordAccessError, scalarKind, scalarKindName, typeMismatch } from "./errors";

/**
 * `value` as a scalar: a `bool` is a `boolean`, an integer (up to 64 bits, signed, or unsigned
 * up to 32 bits) an `int`, an `f32`/`f64` a `float`, a `string` a `str`, an `Array<u8>` or
 * `Uint8Array` `bytes`, and a `Scalar` itself.
 */
export function scalar<T>(value: T): Scalar {
  if (isBoolean<T>()) {
    return Scalar.boolean(<bool>value);
  } else if (isInteger<T>()) {
    if (sizeof<T>() == 8 && !isSigned<T>()) {
      ERROR("scalar(): a u64 does not fit an int field (i64): convert it explicitly");
    }
    return Scalar.int(<i64>value);
  } else if (isFloat<T>()) {
    return Scalar.float(<f64>value);
  } else if (isString<T>()) {
    return Scalar.str(changetype<string>(value));
  } else if (value instanceof Scalar) {
    return changetype<Scalar>(value);
  } else if (value instanceof Array<u8>) {
    return Scalar.bytes(changetype<Array<u8>>(value));
  } else if (value instanceof Uint8Array) {
    const typed = changetype<Uint8Array>(value);
    const bytes = new Array<u8>(typed.length);
    for (let i = 0; i < typed.length; i++) unchecked((bytes[i] = typed[i]));
    return Scalar.bytes(bytes);
  }
  abort("scalar(): unsupported value type");
  return unreachable();
}

/** A scalar in words: booleans, numbers and strings as themselves, bytes as lowercase hex. */
export function scalarToString(value: Scalar): string {
  switch (value.tag) {
    case ScalarTag.Boolean:
      return value.boolean ? "true" : "false";
    case ScalarTag.Int:
      return value.int.toString();
    case ScalarTag.Float:
      return value.float.toString();
    case ScalarTag.Str:
      return value.str;
    case ScalarTag.Bytes: {
      const bytes = value.bytes;
      let out = "";
      for (let i = 0; i < bytes.length; i++) {
        const b = unchecked(bytes[i]);
        out += String.fromCharCode(hex(b >> 4)) + String.fromCharCode(hex(b & 15));
      }
      return out;
    }
  }
  return unreachable();
}

function hex(n: i32): i32 {
  return n < 10 ? 0x30 + n : 0x61 + n - 10;
}

/** The value of a result, or null after recording its error. */
function okOrNull<T>(result: Result<T, AccessError>): T | null {
  if (result.isOk) return result.ok;
  recordAccessError(result.err);
  return null;
}

/** The value of a result, or `orElse` after recording its error. */
function unwrap<T>(result: Result<T, AccessError>, orElse: T): T {
  if (result.isOk) return result.ok;
  recordAccessError(result.err);
  return orElse;
}

function check(result: Result<u8, AccessError>): void {
  if (result.isErr) recordAccessError(result.err);
}

/**
 * A handle to one model the invocation declared, from `ctx.model(i)` or `ctx.open(type, key)`.
 *
 * Reads see the rule's own earlier writes in the same invocation. Writes are buffered by the
 * engine and reach the store only if the rule succeeds and the commit does.
 */
export class Model {
  constructor(
    /** The generated handle; null if opening the model failed or it was closed. */
    public handle: WitModel | null,
  ) {}

  /** The handle for an operation, or null (recording why) if the operation must not run (internal). */
  __use(): WitModel | null {
    if (failed()) return null;
    const handle = this.handle;
    if (handle == null) recordAccessError(AccessError.denied("the model handle is not open"));
    return handle;
  }

  /** Releases the handle before the invocation ends (handles are released then anyway). */
  close(): void {
    const handle = this.handle;
    if (handle != null) handle.drop();
    this.handle = null;
  }

  /** The model's key, for example `alice` ("" if the handle is not open). */
  key(): string {
    const handle = this.handle;
    return handle == null ? "" : handle.key();
  }

  /** The model's type (schema) name, for example `Account` ("" if the handle is not open). */
  modelType(): string {
    const handle = this.handle;
    return handle == null ? "" : handle.modelType();
  }

  /** The names and types of the fields of this model's schema, in schema order. */
  fields(): Array<Tuple2<string, FieldType>> {
    const handle = this.handle;
    return handle == null ? [] : handle.fields();
  }

  /** The whole value of a field of any type. */
  get(field: string): Value | null {
    const handle = this.__use();
    if (handle == null) return null;
    return okOrNull<Value>(handle.get(field));
  }

  /** Replaces the whole value of a field of any type; the value must match the field's type. */
  set(field: string, value: Value): void {
    const handle = this.__use();
    if (handle != null) check(handle.set(field, value));
  }

  /** Replaces the items of a list field. */
  setList<T>(field: string, items: Array<T>): void {
    this.set(field, Value.list(scalars<T>(items)));
  }

  /** Replaces the entries of a dict field. */
  setDict<T>(field: string, entries: Map<string, T>): void {
    this.set(field, Value.dict(entriesOf<T>(entries)));
  }

  /** Resets a field to its schema default. */
  reset(field: string): void {
    const handle = this.__use();
    if (handle != null) check(handle.reset(field));
  }

  /** The value of a scalar field. */
  getScalar(field: string): Scalar | null {
    const handle = this.__use();
    if (handle == null) return null;
    return okOrNull<Scalar>(handle.getScalar(field));
  }

  /** Assigns a scalar field: `model.setScalar("name", "Ada")` (any value `scalar()` takes). */
  setScalar<T>(field: string, value: T): void {
    const handle = this.__use();
    if (handle != null) check(handle.setScalar(field, scalar<T>(value)));
  }

  /** The value of an `int` field (0 on failure). */
  getInt(field: string): i64 {
    const value = this.getScalar(field);
    if (value == null) return 0;
    if (value.tag != ScalarTag.Int) {
      mismatch(field, "int", value);
      return 0;
    }
    return value.int;
  }

  /** The value of a `float` field (0 on failure). */
  getFloat(field: string): f64 {
    const value = this.getScalar(field);
    if (value == null) return 0;
    if (value.tag != ScalarTag.Float) {
      mismatch(field, "float", value);
      return 0;
    }
    return value.float;
  }

  /** The value of a `bool` field (false on failure). */
  getBool(field: string): bool {
    const value = this.getScalar(field);
    if (value == null) return false;
    if (value.tag != ScalarTag.Boolean) {
      mismatch(field, "bool", value);
      return false;
    }
    return value.boolean;
  }

  /** The value of a `str` field ("" on failure). */
  getStr(field: string): string {
    const value = this.getScalar(field);
    if (value == null) return "";
    if (value.tag != ScalarTag.Str) {
      mismatch(field, "str", value);
      return "";
    }
    return value.str;
  }

  /** The value of a `bytes` field (empty on failure). */
  getBytes(field: string): Array<u8> {
    const value = this.getScalar(field);
    if (value == null) return [];
    if (value.tag != ScalarTag.Bytes) {
      mismatch(field, "bytes", value);
      return [];
    }
    return value.bytes;
  }

  /** Assigns an `int` field. */
  setInt(field: string, value: i64): void {
    this.setScalar<i64>(field, value);
  }

  /** Assigns a `float` field. */
  setFloat(field: string, value: f64): void {
    this.setScalar<f64>(field, value);
  }

  /** Assigns a `bool` field. */
  setBool(field: string, value: bool): void {
    this.setScalar<bool>(field, value);
  }

  /** Assigns a `str` field. */
  setStr(field: string, value: string): void {
    this.setScalar<string>(field, value);
  }

  /** Assigns a `bytes` field. */
  setBytes(field: string, value: Array<u8>): void {
    this.setScalar<Array<u8>>(field, value);
  }

  /**
   * Adds `delta` (negative to subtract) to an `int` field and returns the new value (0 on
   * failure). Prefer it to a read-modify-write: the engine checks it for overflow
   * (`limit-exceeded`), and in pipeline mode it commutes with concurrent invocations.
   */
  increment(field: string, delta: i64): i64 {
    const handle = this.__use();
    if (handle == null) return 0;
    return unwrap<i64>(handle.increment(field, delta), 0);
  }

  /** A view on the list field `field`; each of its methods is one host call. */
  list(field: string): ListField {
    return new ListField(this, field);
  }

  /** A view on the dict field `field`; each of its methods is one host call. */
  dict(field: string): DictField {
    return new DictField(this, field);
  }
}

function mismatch(field: string, expected: string, found: Scalar): void {
  recordAccessError(typeMismatch(field, expected, scalarKindName(scalarKind(found))));
}

function scalars<T>(items: Array<T>): Array<Scalar> {
  const out = new Array<Scalar>(items.length);
  for (let i = 0; i < items.length; i++) unchecked((out[i] = scalar<T>(unchecked(items[i]))));
  return out;
}

function entriesOf<T>(entries: Map<string, T>): Array<Tuple2<string, Scalar>> {
  const keys = entries.keys();
  const out = new Array<Tuple2<string, Scalar>>(keys.length);
  for (let i = 0; i < keys.length; i++) {
    const key = unchecked(keys[i]);
    unchecked((out[i] = new Tuple2<string, Scalar>(key, scalar<T>(entries.get(key)))));
  }
  return out;
}

/** A list field of a `Model`. Indices are `i64` with Python semantics: negative counts from the end. */
export class ListField {
  constructor(
    /** The model. */
    public readonly model: Model,
    /** The field. */
    public readonly field: string,
  ) {}

  /** Appends one item (any value `scalar()` takes). */
  append<T>(item: T): void {
    const handle = this.model.__use();
    if (handle != null) check(handle.listAppend(this.field, scalar<T>(item)));
  }

  /** Appends several items, in order, in one host call. */
  extend<T>(items: Array<T>): void {
    const handle = this.model.__use();
    if (handle != null) check(handle.listExtend(this.field, scalars<T>(items)));
  }

  /** Inserts an item before `index`; out-of-range indices clamp to the ends, as in Python. */
  insert<T>(index: i64, item: T): void {
    const handle = this.model.__use();
    if (handle != null) check(handle.listInsert(this.field, index, scalar<T>(item)));
  }

  /** Removes and returns the last item; `index-out-of-range` if the list is empty. */
  pop(): Scalar | null {
    const handle = this.model.__use();
    if (handle == null) return null;
    return okOrNull<Scalar>(handle.listPop(this.field, null));
  }

  /** Removes and returns the item at `index`; `index-out-of-range` if there is none. */
  popAt(index: i64): Scalar | null {
    const handle = this.model.__use();
    if (handle == null) return null;
    return okOrNull<Scalar>(handle.listPop(this.field, new Box<i64>(index)));
  }

  /** Removes the first item equal to `item`; `not-found` if there is none. */
  remove<T>(item: T): void {
    const handle = this.model.__use();
    if (handle != null) check(handle.listRemove(this.field, scalar<T>(item)));
  }

  /** Removes every item. */
  clear(): void {
    const handle = this.model.__use();
    if (handle != null) check(handle.listClear(this.field));
  }

  /** The number of items (0 on failure). */
  len(): u32 {
    const handle = this.model.__use();
    if (handle == null) return 0;
    return unwrap<u32>(handle.listLen(this.field), 0);
  }

  /** Whether the list has no items. */
  isEmpty(): bool {
    return this.len() == 0;
  }

  /** The item at `index`; `index-out-of-range` if there is none. */
  get(index: i64): Scalar | null {
    const handle = this.model.__use();
    if (handle == null) return null;
    return okOrNull<Scalar>(handle.listGet(this.field, index));
  }

  /** All items, in order (one host call). */
  items(): Array<Scalar> {
    const value = this.model.get(this.field);
    if (value == null) return [];
    if (value.tag != ValueTag.List) {
      recordAccessError(typeMismatch(this.field, "list", shape(value)));
      return [];
    }
    return value.list;
  }
}

/** One entry of a dict field. */
export class DictEntry {
  constructor(
    /** The key. */
    public readonly key: string,
    /** The value. */
    public readonly value: Scalar,
  ) {}
}

/** A dict field of a `Model`: string keys, scalar values. */
export class DictField {
  constructor(
    /** The model. */
    public readonly model: Model,
    /** The field. */
    public readonly field: string,
  ) {}

  /** The value under `key`, or null if there is none (or on failure). */
  get(key: string): Scalar | null {
    const handle = this.model.__use();
    if (handle == null) return null;
    return unwrap<Scalar | null>(handle.dictGet(this.field, key), null);
  }

  /** The value under `key` of a `dict<int>`, or `orElse` if there is none. */
  getInt(key: string, orElse: i64 = 0): i64 {
    const value = this.get(key);
    if (value == null) return orElse;
    if (value.tag != ScalarTag.Int) {
      mismatch(this.field, "int", value);
      return orElse;
    }
    return value.int;
  }

  /** The value under `key` of a `dict<float>`, or `orElse` if there is none. */
  getFloat(key: string, orElse: f64 = 0): f64 {
    const value = this.get(key);
    if (value == null) return orElse;
    if (value.tag != ScalarTag.Float) {
      mismatch(this.field, "float", value);
      return orElse;
    }
    return value.float;
  }

  /** The value under `key` of a `dict<bool>`, or `orElse` if there is none. */
  getBool(key: string, orElse: bool = false): bool {
    const value = this.get(key);
    if (value == null) return orElse;
    if (value.tag != ScalarTag.Boolean) {
      mismatch(this.field, "bool", value);
      return orElse;
    }
    return value.boolean;
  }

  /** The value under `key` of a `dict<str>`, or `orElse` if there is none. */
  getStr(key: string, orElse: string = ""): string {
    const value = this.get(key);
    if (value == null) return orElse;
    if (value.tag != ScalarTag.Str) {
      mismatch(this.field, "str", value);
      return orElse;
    }
    return value.str;
  }

  /** Whether `key` has a value. */
  has(key: string): bool {
    return this.get(key) != null;
  }

  /** Sets `key` to `value` (any value `scalar()` takes). */
  set<T>(key: string, value: T): void {
    const handle = this.model.__use();
    if (handle != null) check(handle.dictSet(this.field, key, scalar<T>(value)));
  }

  /** Sets several keys at once, in one host call (Python's `dict.update`). */
  update<T>(entries: Map<string, T>): void {
    const handle = this.model.__use();
    if (handle != null) check(handle.dictUpdate(this.field, entriesOf<T>(entries)));
  }

  /** Removes `key` and returns its value, or null if it was not there. */
  pop(key: string): Scalar | null {
    const handle = this.model.__use();
    if (handle == null) return null;
    return unwrap<Scalar | null>(handle.dictPop(this.field, key), null);
  }

  /** Removes every entry. */
  clear(): void {
    const handle = this.model.__use();
    if (handle != null) check(handle.dictClear(this.field));
  }

  /** The keys, sorted. */
  keys(): Array<string> {
    const handle = this.model.__use();
    if (handle == null) return [];
    return unwrap<Array<string>>(handle.dictKeys(this.field), []);
  }

  /** The number of entries (0 on failure). */
  len(): u32 {
    const handle = this.model.__use();
    if (handle == null) return 0;
    return unwrap<u32>(handle.dictLen(this.field), 0);
  }

  /** Whether the dict has no entries. */
  isEmpty(): bool {
    return this.len() == 0;
  }

  /** All entries, sorted by key (one host call). */
  entries(): Array<DictEntry> {
    const value = this.model.get(this.field);
    if (value == null) return [];
    if (value.tag != ValueTag.Dict) {
      recordAccessError(typeMismatch(this.field, "dict", shape(value)));
      return [];
    }
    const raw = value.dict;
    const out = new Array<DictEntry>(raw.length);
    for (let i = 0; i < raw.length; i++) {
      const entry = unchecked(raw[i]);
      unchecked((out[i] = new DictEntry(entry.f0, entry.f1)));
    }
    return out;
  }
}

function shape(value: Value): string {
  switch (value.tag) {
    case ValueTag.Scalar:
      return "scalar";
    case ValueTag.List:
      return "list";
    case ValueTag.Dict:
      return "dict";
  }
  return unreachable();
}
