// Copyright 2026 the @eventbus/core authors. MIT license.
// How the PostgreSQL outbox tells failures apart: an event the target
// refuses for good from a target that is down, a missing table from a
// database that failed, and how an error is kept in the dead table.

import {
  BackendError,
  describeError,
  InvalidEventTypeError,
  SerializationError,
} from "./errors.ts";
import { OutboxNotMigratedError } from "./_postgres_types.ts";

/** At most this many characters of an error are kept in the table. */
const MAX_ERROR_LENGTH = 2_000;

/**
 * Whether the target refused an event for good: a payload it cannot carry
 * (`SerializationError`, `InvalidEventTypeError`), or an error (or a cause
 * of it) with `permanent: true` — `BackendError.permanent`, or the same
 * field on an error of a backend of your own or of another copy of this
 * package.
 */
export function isPermanent(error: unknown): boolean {
  let current: unknown = error;
  for (let depth = 0; depth < 8 && current !== undefined; depth++) {
    if (
      current instanceof SerializationError ||
      current instanceof InvalidEventTypeError
    ) {
      return true;
    }
    if (current instanceof BackendError) {
      if (current.permanent) return true;
    } else if (current === null || typeof current !== "object") {
      return false;
    } else if ((current as { permanent?: unknown }).permanent === true) {
      return true;
    }
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}

/** The SQLSTATE of a driver's error, if it has one. */
export function sqlState(error: unknown): string | undefined {
  if (error === null || typeof error !== "object") return undefined;
  const { code, errno } = error as { code?: unknown; errno?: unknown };
  if (typeof code === "string" && /^[0-9A-Z]{5}$/.test(code)) return code;
  if (typeof errno === "string" && /^[0-9A-Z]{5}$/.test(errno)) return errno;
  return undefined;
}

/** Whether a driver's error says that a table does not exist. */
export function isMissingTable(error: unknown): boolean {
  return sqlState(error) === "42P01";
}

/** An error in one line, cut to what the table keeps. */
export function errorText(error: unknown): string {
  const text = describeError(error);
  return text.length > MAX_ERROR_LENGTH
    ? `${text.slice(0, MAX_ERROR_LENGTH - 3)}...`
    : text;
}

/**
 * The error of an outbox statement that failed: `OutboxNotMigratedError`
 * when the table is missing, else a `BackendError` that says what failed.
 *
 * @param error The driver's error.
 * @param table The outbox table's name, as given.
 * @param what What was being done, such as `"count rows"`.
 */
export function outboxSqlError(
  error: unknown,
  table: string,
  what: string,
): BackendError {
  if (isMissingTable(error)) {
    return new OutboxNotMigratedError(table, { cause: error });
  }
  return new BackendError(
    "postgres-outbox",
    `Cannot ${what} of outbox table "${table}": ${
      describeError(error)
    }, check that the database is reachable`,
    { cause: error },
  );
}
