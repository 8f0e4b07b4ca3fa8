// Structured logging into the host's log. Each record carries a message and key/value fields;
// the engine tags it with the rule name and invocation id, and caps the number and size of
// records per invocation.
//
//   log.info("transfer done", [["from", from.key()], ["to", to.key()]]);

import { Tuple2 } from "./cabi";
import { Level, emit as witEmit } from "./generated/bindings";

export namespace log {
  /** Emits one record at `level`; `fields` are `[key, value]` pairs. */
  export function emit(level: Level, message: string, fields: Array<Array<string>> = []): void {
    const pairs = new Array<Tuple2<string, string>>(fields.length);
    for (let i = 0; i < fields.length; i++) {
      const field = unchecked(fields[i]);
      const key = field.length > 0 ? unchecked(field[0]) : "";
      const value = field.length > 1 ? unchecked(field[1]) : "";
      unchecked((pairs[i] = new Tuple2<string, string>(key, value)));
    }
    witEmit(level, message, pairs);
  }

  /** A `trace` record: very detailed diagnostics. */
  export function trace(message: string, fields: Array<Array<string>> = []): void {
    emit(Level.Trace, message, fields);
  }

  /** A `debug` record: diagnostics. */
  export function debug(message: string, fields: Array<Array<string>> = []): void {
    emit(Level.Debug, message, fields);
  }

  /** An `info` record: a normal event. */
  export function info(message: string, fields: Array<Array<string>> = []): void {
    emit(Level.Info, message, fields);
  }

  /** A `warn` record: something unexpected that the rule handled. */
  export function warn(message: string, fields: Array<Array<string>> = []): void {
    emit(Level.Warn, message, fields);
  }

  /** An `error` record: a failure. */
  export function error(message: string, fields: Array<Array<string>> = []): void {
    emit(Level.Error, message, fields);
  }
}
