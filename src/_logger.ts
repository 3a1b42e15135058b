// Copyright 2026 the @eventbus/core authors. MIT license.
// Loggers that cannot hurt delivery: every call is guarded, so a logger that
// throws or rejects is reported on console.error and changes nothing else.

import type { Logger } from "./backend.ts";
import { describeError } from "./errors.ts";

const LEVELS = ["debug", "info", "warn", "error"] as const;
const guarded = new WeakSet<Logger>();

/**
 * A logger whose methods never throw and never leave a rejected promise:
 * a failure of the user's logger (or a missing method) is written to
 * `console.error` with the message it was given. Guarding twice is free.
 */
export function guardLogger(logger: Logger): Logger {
  if (guarded.has(logger)) return logger;
  const safe = {} as Logger;
  for (const level of LEVELS) {
    safe[level] = (message, attributes) => {
      try {
        const result: unknown = attributes === undefined
          ? logger[level](message)
          : logger[level](message, attributes);
        if (isThenable(result)) {
          result.then(
            undefined,
            (error: unknown) => loggerFailed(level, message, error),
          );
        }
      } catch (error) {
        loggerFailed(level, message, error);
      }
    };
  }
  guarded.add(safe);
  return safe;
}

/**
 * Calls a user callback (such as `onError`) so that neither a throw nor a
 * rejection escapes: both are logged at error level as `what` failing.
 */
export function callSafely<A extends unknown[]>(
  logger: Logger,
  what: string,
  callback: (...args: A) => unknown,
  ...args: A
): void {
  const failed = (error: unknown): void =>
    logger.error(`${what} failed: ${describeError(error)}`, { error });
  try {
    const result = callback(...args);
    if (isThenable(result)) result.then(undefined, failed);
  } catch (error) {
    failed(error);
  }
}

/**
 * The default logger of the bus and of the outbox: warnings and errors on
 * the console, nothing else. Backends use it for what must be seen when no
 * bus lent them its logger (a dead-letter replay from the command line).
 *
 * @example Warning on the console when no logger was given
 * ```ts
 * import type { Logger } from "@eventbus/core";
 * import { CONSOLE_LOGGER } from "@eventbus/core/backend-kit";
 *
 * function loggerOf(options: { logger?: Logger }): Logger {
 *   return options.logger ?? CONSOLE_LOGGER;
 * }
 * console.assert(loggerOf({}) === CONSOLE_LOGGER);
 * ```
 */
export const CONSOLE_LOGGER: Logger = {
  debug() {},
  info() {},
  warn: (message) => console.warn(message),
  error: (message) => console.error(message),
};

/**
 * A logger that drops everything, for backends used without a bus.
 *
 * @example The default of a backend's logger option
 * ```ts
 * import type { Logger } from "@eventbus/core";
 * import { SILENT_LOGGER } from "@eventbus/core/backend-kit";
 *
 * function loggerOf(options: { logger?: Logger }): Logger {
 *   return options.logger ?? SILENT_LOGGER;
 * }
 * loggerOf({}).warn("dropped");
 * ```
 */
export const SILENT_LOGGER: Logger = guardLogger({
  debug() {},
  info() {},
  warn() {},
  error() {},
});

function loggerFailed(level: string, message: string, error: unknown): void {
  try {
    console.error(
      `The logger's ${level}() failed (${
        describeError(error)
      }) on this message: ${message}`,
    );
  } catch {
    // console itself is broken: nothing is left to tell
  }
}

function isThenable(
  value: unknown,
): value is { then(ok: undefined, failed: (error: unknown) => void): void } {
  return value !== null &&
    (typeof value === "object" || typeof value === "function") &&
    typeof (value as { then?: unknown }).then === "function";
}
