// Copyright 2026 the @eventbus/core authors. MIT license.
// Validation at emit: the event with the schema's output, or the error.

import { EventValidationError } from "./errors.ts";
import type { Event } from "./event.ts";
import type { StandardSchemaResult } from "./schema.ts";

/**
 * The event with the schema's output as its data, or the event itself when
 * the output is the same value.
 *
 * @throws {EventValidationError} When the schema found issues.
 */
export function validated<K extends string>(
  event: Event<unknown, K>,
  result: StandardSchemaResult<unknown>,
): Event<unknown, K> {
  if (result.issues !== undefined) {
    throw new EventValidationError(event.type, "emit", result.issues);
  }
  return result.value === event.data ? event : { ...event, data: result.value };
}

export function checkValidate(mode: unknown): void {
  if (
    mode !== "emit" && mode !== "consume" && mode !== "both" && mode !== "none"
  ) {
    throw new RangeError(
      `Cannot use validate: it must be "emit", "consume", "both" or "none", got ${
        JSON.stringify(mode)
      }`,
    );
  }
}
