// A small JSON value: parsed from the invocation's input, built for its output.
//
// Reading never traps: a value of the wrong shape (`item.get("quantity").asInt()` on a string,
// a missing key) records an `invalid_input` failure naming the path (`items[0].quantity`) and
// returns a zero value; see errors.ts for how pending failures work. The `...Or(default)`
// readers return the default for a missing or `null` value instead.
//
// Numbers: an integer literal that fits an i64 is an `Int`, anything else (a fraction, an
// exponent, a bigger integer) a `Float`. `asInt()` accepts only an `Int`; `asFloat()` both.

import { recordInvalidInput } from "./errors";

/** The kind of a JSON value; `Missing` is what `get` returns for an absent key. */
export enum JsonKind {
  Null = 0,
  Bool = 1,
  Int = 2,
  Float = 3,
  Str = 4,
  Array = 5,
  Object = 6,
  Missing = 7,
}

/** How deep arrays and objects may nest in parsed input. */
const MAX_DEPTH = 128;

export class Json {
  private _bool: bool = false;
  private _int: i64 = 0;
  private _float: f64 = 0.0;
  private _str: string | null = null;
  private _items: Array<Json> | null = null;
  private _keys: Array<string> | null = null;
  private _values: Map<string, Json> | null = null;

  private constructor(
    /** What this value is. */
    public readonly kind: JsonKind,
    private _path: string = "",
  ) {}

  /** Where this value is in the input (`items[0].quantity`), for error messages; "" at the root. */
  get path(): string {
    return this._path;
  }

  /** `value`, located at `path` in the input (for the parser). */
  static __at(value: Json, path: string): Json {
    value._path = path;
    return value;
  }

  // ---- building

  /** JSON `null`. */
  static null(): Json {
    return new Json(JsonKind.Null);
  }

  /** `true` or `false`. */
  static bool(value: bool): Json {
    const v = new Json(JsonKind.Bool);
    v._bool = value;
    return v;
  }

  /** An integer. */
  static int(value: i64): Json {
    const v = new Json(JsonKind.Int);
    v._int = value;
    return v;
  }

  /** A float (NaN and infinities serialise as `null`, as JSON has no such numbers). */
  static float(value: f64): Json {
    const v = new Json(JsonKind.Float);
    v._float = value;
    return v;
  }

  /** A string. */
  static str(value: string): Json {
    const v = new Json(JsonKind.Str);
    v._str = value;
    return v;
  }

  /** An array, empty or with `items`. */
  static array(items: Array<Json> = []): Json {
    const v = new Json(JsonKind.Array);
    v._items = items;
    return v;
  }

  /** An empty object; add members with `set`. */
  static object(): Json {
    const v = new Json(JsonKind.Object);
    v._keys = [];
    v._values = new Map<string, Json>();
    return v;
  }

  /** Appends `item` to this array; returns this array. */
  push(item: Json): Json {
    assert(this.kind == JsonKind.Array, "push on a JSON value that is not an array");
    this._items!.push(item);
    return this;
  }

  /** Sets the member `key` of this object (keeping its position if it exists); returns this object. */
  set(key: string, value: Json): Json {
    assert(this.kind == JsonKind.Object, "set on a JSON value that is not an object");
    const values = this._values!;
    if (!values.has(key)) this._keys!.push(key);
    values.set(key, value);
    return this;
  }

  // ---- reading

  /** Whether this is `null`. */
  get isNull(): bool {
    return this.kind == JsonKind.Null;
  }

  /** Whether this is an absent object member. */
  get isMissing(): bool {
    return this.kind == JsonKind.Missing;
  }

  /** Whether this object has the member `key` (false if this is not an object). */
  has(key: string): bool {
    return this.kind == JsonKind.Object && this._values!.has(key);
  }

  /** The member `key` of this object: a `Missing` value if there is none. */
  get(key: string): Json {
    const path = this.path.length == 0 ? key : this.path + "." + key;
    if (this.kind != JsonKind.Object) {
      if (this.kind != JsonKind.Missing) this.mismatch("an object");
      return new Json(JsonKind.Missing, path);
    }
    const values = this._values!;
    if (!values.has(key)) return new Json(JsonKind.Missing, path);
    return values.get(key);
  }

  /** The item `index` of this array: a `Missing` value if there is none. */
  at(index: i32): Json {
    const path = this.path + "[" + index.toString() + "]";
    if (this.kind != JsonKind.Array) {
      if (this.kind != JsonKind.Missing) this.mismatch("an array");
      return new Json(JsonKind.Missing, path);
    }
    const items = this._items!;
    if (index < 0 || index >= items.length) return new Json(JsonKind.Missing, path);
    return unchecked(items[index]);
  }

  /** The boolean. */
  asBool(): bool {
    if (this.kind == JsonKind.Bool) return this._bool;
    this.mismatch("a boolean");
    return false;
  }

  /** The integer (a float is refused, even `5.0`). */
  asInt(): i64 {
    if (this.kind == JsonKind.Int) return this._int;
    this.mismatch("an integer");
    return 0;
  }

  /** The number, integer or float. */
  asFloat(): f64 {
    if (this.kind == JsonKind.Float) return this._float;
    if (this.kind == JsonKind.Int) return <f64>this._int;
    this.mismatch("a number");
    return 0.0;
  }

  /** The string. */
  asStr(): string {
    if (this.kind == JsonKind.Str) return this._str!;
    this.mismatch("a string");
    return "";
  }

  /** The items of this array. */
  asArray(): Array<Json> {
    if (this.kind == JsonKind.Array) return this._items!;
    this.mismatch("an array");
    return [];
  }

  /** The keys of this object, in input order. */
  keys(): Array<string> {
    if (this.kind == JsonKind.Object) return this._keys!;
    this.mismatch("an object");
    return [];
  }

  /** The boolean, or `orElse` if this is missing or null. */
  boolOr(orElse: bool): bool {
    return this.absent() ? orElse : this.asBool();
  }

  /** The integer, or `orElse` if this is missing or null. */
  intOr(orElse: i64): i64 {
    return this.absent() ? orElse : this.asInt();
  }

  /** The number, or `orElse` if this is missing or null. */
  floatOr(orElse: f64): f64 {
    return this.absent() ? orElse : this.asFloat();
  }

  /** The string, or `orElse` if this is missing or null. */
  strOr(orElse: string): string {
    return this.absent() ? orElse : this.asStr();
  }

  private absent(): bool {
    return this.kind == JsonKind.Missing || this.kind == JsonKind.Null;
  }

  private mismatch(expected: string): void {
    const where = this.path.length == 0 ? "input" : this.path;
    if (this.kind == JsonKind.Missing) {
      recordInvalidInput(where + ": missing, expected " + expected);
    } else {
      recordInvalidInput(where + ": expected " + expected + ", found " + kindWords(this.kind));
    }
  }

  // ---- text

  /** This value as JSON text. */
  toString(): string {
    switch (this.kind) {
      case JsonKind.Null:
      case JsonKind.Missing:
        return "null";
      case JsonKind.Bool:
        return this._bool ? "true" : "false";
      case JsonKind.Int:
        return this._int.toString();
      case JsonKind.Float: {
        const f = this._float;
        if (!isFinite(f)) return "null";
        return f.toString();
      }
      case JsonKind.Str:
        return quoteJson(this._str!);
      case JsonKind.Array: {
        const items = this._items!;
        let out = "[";
        for (let i = 0; i < items.length; i++) {
          if (i > 0) out += ",";
          out += unchecked(items[i]).toString();
        }
        return out + "]";
      }
      case JsonKind.Object: {
        const keys = this._keys!;
        const values = this._values!;
        let out = "{";
        for (let i = 0; i < keys.length; i++) {
          if (i > 0) out += ",";
          const key = unchecked(keys[i]);
          out += quoteJson(key) + ":" + values.get(key).toString();
        }
        return out + "}";
      }
    }
    return unreachable();
  }

  /**
   * Parses `text`. On a syntax error, records an `invalid_input` failure (with the position) and
   * returns `null` JSON.
   */
  static parse(text: string): Json {
    const parser = new Parser(text);
    parser.skipSpace();
    const value = parser.value("", 0);
    parser.skipSpace();
    if (parser.error == null && parser.pos < text.length) parser.fail("trailing characters");
    const error = parser.error;
    if (error != null) {
      recordInvalidInput(error);
      return Json.null();
    }
    return value;
  }
}

function kindWords(kind: JsonKind): string {
  switch (kind) {
    case JsonKind.Null:
      return "null";
    case JsonKind.Bool:
      return "a boolean";
    case JsonKind.Int:
      return "an integer";
    case JsonKind.Float:
      return "a float";
    case JsonKind.Str:
      return "a string";
    case JsonKind.Array:
      return "an array";
    case JsonKind.Object:
      return "an object";
  }
  return "nothing";
}

/** `s` as a JSON string literal (quotes, backslashes and control characters escaped). */
export function quoteJson(s: string): string {
  let out = '"';
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c != 0x22 && c != 0x5c) continue;
    out += s.substring(start, i);
    start = i + 1;
    if (c == 0x22) out += '\\"';
    else if (c == 0x5c) out += "\\\\";
    else if (c == 0x0a) out += "\\n";
    else if (c == 0x0d) out += "\\r";
    else if (c == 0x09) out += "\\t";
    else if (c == 0x08) out += "\\b";
    else if (c == 0x0c) out += "\\f";
    else out += "\\u00" + hexDigit(c >> 4) + hexDigit(c & 15);
  }
  return out + s.substring(start) + '"';
}

function hexDigit(n: i32): string {
  return String.fromCharCode(n < 10 ? 0x30 + n : 0x61 + n - 10);
}

class Parser {
  pos: i32 = 0;
  error: string | null = null;

  constructor(private readonly text: string) {}

  fail(message: string): void {
    if (this.error == null) this.error = "input is not valid JSON: " + message + " at character " + this.pos.toString();
  }

  skipSpace(): void {
    const text = this.text;
    while (this.pos < text.length) {
      const c = text.charCodeAt(this.pos);
      if (c != 0x20 && c != 0x0a && c != 0x0d && c != 0x09) break;
      this.pos++;
    }
  }

  value(path: string, depth: i32): Json {
    if (this.error != null) return Json.null();
    if (this.pos >= this.text.length) {
      this.fail("unexpected end");
      return Json.null();
    }
    const c = this.text.charCodeAt(this.pos);
    if (c == 0x7b) return this.object(path, depth + 1); // {
    if (c == 0x5b) return this.array(path, depth + 1); // [
    if (c == 0x22) return withPath(Json.str(this.string()), path); // "
    if (c == 0x2d || (c >= 0x30 && c <= 0x39)) return withPath(this.number(), path);
    if (this.literal("true")) return withPath(Json.bool(true), path);
    if (this.literal("false")) return withPath(Json.bool(false), path);
    if (this.literal("null")) return withPath(Json.null(), path);
    this.fail("unexpected character");
    return Json.null();
  }

  literal(word: string): bool {
    if (this.text.substr(this.pos, word.length) != word) return false;
    this.pos += word.length;
    return true;
  }

  object(path: string, depth: i32): Json {
    if (depth > MAX_DEPTH) {
      this.fail("nested too deep");
      return Json.null();
    }
    this.pos++; // {
    const out = withPath(Json.object(), path);
    this.skipSpace();
    if (this.peek() == 0x7d) {
      this.pos++;
      return out;
    }
    while (this.error == null) {
      this.skipSpace();
      if (this.peek() != 0x22) {
        this.fail("expected a string key");
        break;
      }
      const key = this.string();
      this.skipSpace();
      if (this.peek() != 0x3a) {
        this.fail("expected ':'");
        break;
      }
      this.pos++;
      this.skipSpace();
      out.set(key, this.value(path.length == 0 ? key : path + "." + key, depth));
      this.skipSpace();
      const c = this.peek();
      this.pos++;
      if (c == 0x7d) break; // }
      if (c != 0x2c) {
        this.pos--;
        this.fail("expected ',' or '}'");
      }
    }
    return out;
  }

  array(path: string, depth: i32): Json {
    if (depth > MAX_DEPTH) {
      this.fail("nested too deep");
      return Json.null();
    }
    this.pos++; // [
    const items = new Array<Json>();
    this.skipSpace();
    if (this.peek() == 0x5d) {
      this.pos++;
      return withPath(Json.array(items), path);
    }
    while (this.error == null) {
      this.skipSpace();
      items.push(this.value(path + "[" + items.length.toString() + "]", depth));
      this.skipSpace();
      const c = this.peek();
      this.pos++;
      if (c == 0x5d) break; // ]
      if (c != 0x2c) {
        this.pos--;
        this.fail("expected ',' or ']'");
      }
    }
    return withPath(Json.array(items), path);
  }

  peek(): i32 {
    return this.pos < this.text.length ? this.text.charCodeAt(this.pos) : -1;
  }

  string(): string {
    const text = this.text;
    this.pos++; // "
    let out = "";
    let start = this.pos;
    while (this.pos < text.length) {
      const c = text.charCodeAt(this.pos);
      if (c == 0x22) {
        out += text.substring(start, this.pos);
        this.pos++;
        return out;
      }
      if (c < 0x20) {
        this.fail("control character in a string");
        return out;
      }
      if (c != 0x5c) {
        this.pos++;
        continue;
      }
      out += text.substring(start, this.pos);
      this.pos++; // backslash
      const e = this.peek();
      this.pos++;
      if (e == 0x22) out += '"';
      else if (e == 0x5c) out += "\\";
      else if (e == 0x2f) out += "/";
      else if (e == 0x62) out += "\b";
      else if (e == 0x66) out += "\f";
      else if (e == 0x6e) out += "\n";
      else if (e == 0x72) out += "\r";
      else if (e == 0x74) out += "\t";
      else if (e == 0x75) {
        const unit = this.hex4();
        if (unit < 0) return out;
        // Surrogate pairs arrive as two escapes and are kept as the two UTF-16 units they are.
        out += String.fromCharCode(unit);
      } else {
        this.pos--;
        this.fail("invalid escape");
        return out;
      }
      start = this.pos;
    }
    this.fail("unterminated string");
    return out;
  }

  hex4(): i32 {
    let value = 0;
    for (let i = 0; i < 4; i++) {
      const c = this.peek();
      let digit = -1;
      if (c >= 0x30 && c <= 0x39) digit = c - 0x30;
      else if (c >= 0x61 && c <= 0x66) digit = c - 0x61 + 10;
      else if (c >= 0x41 && c <= 0x46) digit = c - 0x41 + 10;
      if (digit < 0) {
        this.fail("invalid \\u escape");
        return -1;
      }
      value = (value << 4) | digit;
      this.pos++;
    }
    return value;
  }

  number(): Json {
    const text = this.text;
    const start = this.pos;
    let negative = false;
    if (this.peek() == 0x2d) {
      negative = true;
      this.pos++;
    }
    const digitsStart = this.pos;
    if (this.peek() == 0x30) {
      this.pos++;
    } else if (this.peek() >= 0x31 && this.peek() <= 0x39) {
      while (this.peek() >= 0x30 && this.peek() <= 0x39) this.pos++;
    } else {
      this.fail("invalid number");
      return Json.null();
    }
    const digitsEnd = this.pos;
    let integral = true;
    if (this.peek() == 0x2e) {
      integral = false;
      this.pos++;
      if (!(this.peek() >= 0x30 && this.peek() <= 0x39)) {
        this.fail("invalid number");
        return Json.null();
      }
      while (this.peek() >= 0x30 && this.peek() <= 0x39) this.pos++;
    }
    if (this.peek() == 0x65 || this.peek() == 0x45) {
      integral = false;
      this.pos++;
      if (this.peek() == 0x2b || this.peek() == 0x2d) this.pos++;
      if (!(this.peek() >= 0x30 && this.peek() <= 0x39)) {
        this.fail("invalid number");
        return Json.null();
      }
      while (this.peek() >= 0x30 && this.peek() <= 0x39) this.pos++;
    }
    if (integral) {
      // Accumulate negatively so that i64.MIN_VALUE fits.
      let value: i64 = 0;
      let fits = true;
      for (let i = digitsStart; i < digitsEnd; i++) {
        const digit = <i64>(text.charCodeAt(i) - 0x30);
        if (value < (i64.MIN_VALUE + digit) / 10) {
          fits = false;
          break;
        }
        value = value * 10 - digit;
      }
      if (fits && (negative || value != i64.MIN_VALUE)) return Json.int(negative ? value : -value);
    }
    return Json.float(parseFloat(text.substring(start, this.pos)));
  }
}

function withPath(value: Json, path: string): Json {
  return path.length == 0 ? value : Json.__at(value, path);
}
