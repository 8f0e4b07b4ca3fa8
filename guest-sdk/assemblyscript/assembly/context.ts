// The invocation context: what a rule may know besides its input, and the door to the models.

import { Context as WitContext, Mode, ModelRef, RuleError, open, openByKey } from "./generated/bindings";
import { failed, pendingError, recordAccessError, takeError } from "./errors";
import { Model } from "./model";

/**
 * Everything a rule may know about its invocation besides the input, and the door to the
 * models the caller declared.
 *
 * The context is the rule's only source of time and identity: a rule imports no clock and no
 * randomness, so running it again on the same state, input and context gives the same result.
 */
export class Context {
  constructor(private readonly inner: WitContext) {}

  /**
   * A unique id for this invocation, for logs: the same when the rule runs again on fresh state
   * under the same locks, a new one for a new attempt of the whole invocation.
   */
  get invocationId(): string {
    return this.inner.invocationId;
  }

  /** The time the invocation started, in milliseconds since the Unix epoch. */
  get nowMs(): i64 {
    return this.inner.nowMs;
  }

  /** The action name the invocation runs under (the lock name in lock mode). */
  get action(): string {
    return this.inner.action;
  }

  /** The mode the engine runs this invocation in. */
  get mode(): Mode {
    return this.inner.mode;
  }

  /** 1 for the first run; more when the engine re-runs the rule after a conflict. */
  get attempt(): u32 {
    return this.inner.attempt;
  }

  /** The models the invocation declared, in the caller's order. */
  get models(): Array<ModelRef> {
    return this.inner.models;
  }

  /** The UTC calendar date of `nowMs`; its `toString()` is `YYYY-MM-DD`. */
  utcDate(): UtcDate {
    return UtcDate.fromUnixMs(this.inner.nowMs);
  }

  /** `nowMs` as an ISO 8601 UTC timestamp with milliseconds: `2024-03-01T12:34:56.789Z`. */
  isoTime(): string {
    return isoTime(this.inner.nowMs);
  }

  /**
   * Opens the declared model at `index` in `models`. A failure (`denied` if the invocation
   * declared fewer models) is recorded, and the handle it returns does nothing.
   */
  model(index: u32): Model {
    if (failed()) return new Model(null);
    const result = open(index);
    if (result.isErr) {
      recordAccessError(result.err);
      return new Model(null);
    }
    return new Model(result.ok);
  }

  /**
   * Opens a declared model by type and key: `denied` if the invocation did not declare it (a
   * rule can only touch what its caller locked or loaded for it).
   */
  open(modelType: string, key: string): Model {
    if (failed()) return new Model(null);
    const result = openByKey(modelType, key);
    if (result.isErr) {
      recordAccessError(result.err);
      return new Model(null);
    }
    return new Model(result.ok);
  }

  /** Whether a failure is pending: a model operation or an input read failed and nobody took it. */
  get failed(): bool {
    return failed();
  }

  /** The pending failure, if any (left pending). */
  get error(): RuleError | null {
    return pendingError();
  }

  /** Takes the pending failure, if any: the rule handles it and goes on. */
  takeError(): RuleError | null {
    return takeError();
  }
}

/** A proleptic Gregorian calendar date in UTC, computed without any clock import. */
export class UtcDate {
  constructor(
    /** The year (astronomical numbering: year 0 is 1 BC). */
    public readonly year: i64,
    /** The month, 1 to 12. */
    public readonly month: u8,
    /** The day of the month, 1 to 31. */
    public readonly day: u8,
  ) {}

  /** The UTC date of an instant given in milliseconds since the Unix epoch. */
  static fromUnixMs(ms: i64): UtcDate {
    return UtcDate.fromDays(floorDiv(ms, 86_400_000));
  }

  /** The date `days` days after 1970-01-01 (Howard Hinnant's `civil_from_days`). */
  static fromDays(days: i64): UtcDate {
    const z = days + 719_468;
    const era = floorDiv(z, 146_097);
    const doe = z - era * 146_097; // day of era, [0, 146096]
    const yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    const doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1, [0, 365]
    const mp = (5 * doy + 2) / 153; // month from March, [0, 11]
    const day = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    const month = mp < 10 ? mp + 3 : mp - 9; // [1, 12]
    const year = yoe + era * 400 + (month <= 2 ? 1 : 0);
    return new UtcDate(year, <u8>month, <u8>day);
  }

  /** `YYYY-MM-DD`. */
  toString(): string {
    return pad(this.year, 4) + "-" + pad(<i64>this.month, 2) + "-" + pad(<i64>this.day, 2);
  }
}

/** `ms` (milliseconds since the Unix epoch) as `2024-03-01T12:34:56.789Z`. */
export function isoTime(ms: i64): string {
  const date = UtcDate.fromUnixMs(ms);
  const inDay = ms - floorDiv(ms, 86_400_000) * 86_400_000;
  const hours = inDay / 3_600_000;
  const minutes = (inDay / 60_000) % 60;
  const seconds = (inDay / 1_000) % 60;
  const millis = inDay % 1_000;
  return (
    date.toString() + "T" + pad(hours, 2) + ":" + pad(minutes, 2) + ":" + pad(seconds, 2) + "." + pad(millis, 3) + "Z"
  );
}

function floorDiv(a: i64, b: i64): i64 {
  const q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

function pad(value: i64, width: i32): string {
  const negative = value < 0;
  let digits = (negative ? -value : value).toString();
  while (digits.length < width) digits = "0" + digits;
  return negative ? "-" + digits : digits;
}
