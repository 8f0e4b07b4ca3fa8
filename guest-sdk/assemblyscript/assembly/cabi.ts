// Support code for the generated glue (`generated/bindings.ts`): the generic classes WIT types
// map to, string lifting, allocation, and the `cabi_realloc` export.
//
// Memory: a rule runs in a fresh instance per invocation, built with `--runtime stub` (a bump
// allocator that never frees), so nothing here frees anything: the instance's memory goes away
// with it.

/** The payload of a `result` side the WIT leaves empty (`result<_, E>`). */
export type Unit = u8;

/** `option<T>` for a `T` that cannot be null in AssemblyScript (numbers, booleans, enums). */
export class Box<T> {
  constructor(public value: T) {}
}

/** A WIT `result<T, E>`: `isOk` and the value, or the error. */
export class Result<T, E> {
  private constructor(
    /** Whether this is the `ok` case. */
    public readonly isOk: bool,
    private readonly _ok: T,
    private readonly _err: E,
  ) {}

  /** The `ok` case. */
  static ok<T, E>(value: T): Result<T, E> {
    return new Result<T, E>(true, value, zero<E>());
  }

  /** The `err` case. */
  static err<T, E>(error: E): Result<T, E> {
    return new Result<T, E>(false, zero<T>(), error);
  }

  /** Whether this is the `err` case. */
  get isErr(): bool {
    return !this.isOk;
  }

  /** The value: traps if this is an error. */
  get ok(): T {
    assert(this.isOk, "Result is an error");
    return this._ok;
  }

  /** The error: traps if this is a value. */
  get err(): E {
    assert(!this.isOk, "Result is not an error");
    return this._err;
  }
}

/** A WIT `tuple<A>`. */
export class Tuple1<A> {
  constructor(public f0: A) {}
}

/** A WIT `tuple<A, B>`. */
export class Tuple2<A, B> {
  constructor(
    public f0: A,
    public f1: B,
  ) {}
}

/** A WIT `tuple<A, B, C>`. */
export class Tuple3<A, B, C> {
  constructor(
    public f0: A,
    public f1: B,
    public f2: C,
  ) {}
}

/** A WIT `tuple<A, B, C, D>`. */
export class Tuple4<A, B, C, D> {
  constructor(
    public f0: A,
    public f1: B,
    public f2: C,
    public f3: D,
  ) {}
}

/** The zero (or null) value of any type: the unused side of a `Result`. */
// @ts-ignore: decorator
@inline
export function zero<T>(): T {
  if (isReference<T>()) return changetype<T>(0);
  // @ts-ignore: a number, boolean or enum
  return <T>0;
}

/** `size` bytes aligned to 16 (enough for every canonical-ABI type), for lowered lists. */
// @ts-ignore: decorator
@inline
export function __wasmtx_alloc(size: usize): usize {
  return __alloc(size);
}

/**
 * The allocator the host uses to pass strings and lists in. Every block it returns is an
 * AssemblyScript object with `String`'s runtime id and the block's size, so a block the host
 * fills with a UTF-16 string already is a valid `string`: `__wasmtx_lift_string` then takes it
 * without a copy.
 */
export function cabi_realloc(oldPtr: usize, oldSize: usize, align: usize, newSize: usize): usize {
  if (align > 16) unreachable();
  if (oldPtr == 0) return __new(newSize, idof<String>());
  return __renew(oldPtr, newSize);
}

/** The string of `len` UTF-16 code units at `ptr`, without a copy when the host allocated it. */
export function __wasmtx_lift_string(ptr: usize, len: usize): string {
  if (len == 0) return "";
  const size = len << 1;
  // An object header (see `cabi_realloc`): runtime id at -8, payload size at -4.
  if ((ptr & 15) == 0 && ptr >= 32 && load<u32>(ptr - 8) == idof<String>() && <usize>load<u32>(ptr - 4) == size) {
    return changetype<string>(ptr);
  }
  return String.UTF16.decodeUnsafe(ptr, size);
}

/** Loads a `string` stored as (pointer, length) at `ptr`. */
// @ts-ignore: decorator
@inline
export function __wasmtx_load_string(ptr: usize): string {
  return __wasmtx_lift_string(<usize>load<u32>(ptr), <usize>load<u32>(ptr, 4));
}

/** Stores `s` as (pointer, length) at `ptr`: the host reads the string where it is. */
// @ts-ignore: decorator
@inline
export function __wasmtx_store_string(ptr: usize, s: string): void {
  store<u32>(ptr, <u32>changetype<usize>(s));
  store<u32>(ptr, <u32>s.length, 4);
}
