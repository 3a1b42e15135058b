// Copyright 2026 the @eventbus/core authors. MIT license.
// The few assertions the conformance suite needs, with web-standard APIs
// only, so the published suite runs wherever the core runs, under any test
// runner. Same names and meaning as node:assert/strict: `equal` is
// Object.is, `deepEqual` compares structure and prototypes, `rejects` takes
// an error class or a predicate. A failure throws an AssertionError that
// says what was expected and what came.

import { describeError } from "./errors.ts";

/** Thrown by a failed assertion of the conformance suite. */
class AssertionError extends Error {
  constructor(message: string, what: string | undefined) {
    super(what === undefined ? message : `${what}: ${message}`);
    this.name = "AssertionError";
  }
}

/** Asserts that `value` is truthy. */
export function ok(value: unknown, message?: string): asserts value {
  if (!value) {
    throw new AssertionError(
      `expected a truthy value, got ${show(value)}`,
      message,
    );
  }
}

/** Asserts `Object.is(actual, expected)`. */
export function equal<T>(
  actual: unknown,
  expected: T,
  message?: string,
): asserts actual is T {
  if (!Object.is(actual, expected)) {
    throw new AssertionError(
      `expected ${show(expected)}, got ${show(actual)}`,
      message,
    );
  }
}

/**
 * Asserts that `actual` and `expected` have the same structure: the same
 * prototypes, the same own enumerable keys (a key holding `undefined` is
 * not a missing key) and deeply equal values; Map, Set and Date by content.
 */
export function deepEqual<T>(
  actual: unknown,
  expected: T,
  message?: string,
): asserts actual is T {
  const path = difference(actual, expected, "", new Map());
  if (path !== undefined) {
    throw new AssertionError(
      `expected ${show(expected)}, got ${show(actual)}` +
        (path === "" ? "" : ` (first difference at ${path})`),
      message,
    );
  }
}

/**
 * Awaits `promise` and asserts that it rejects with an instance of
 * `expected` (an error class) or with a value `expected` (a predicate)
 * returns true for.
 */
export async function rejects(
  promise: Promise<unknown>,
  expected:
    // deno-lint-ignore no-explicit-any
    | (abstract new (...args: any[]) => unknown)
    | ((error: unknown) => boolean),
  message?: string,
): Promise<void> {
  let error: unknown;
  try {
    await promise;
  } catch (caught) {
    error = caught;
    if (isErrorClass(expected)) {
      if (caught instanceof expected) return;
      throw new AssertionError(
        `expected a rejection with ${expected.name}, got ${
          describeError(error)
        }`,
        message,
      );
    }
    if ((expected as (error: unknown) => boolean)(caught) === true) return;
    throw new AssertionError(
      `the rejection failed its check: ${describeError(error)}`,
      message,
    );
  }
  throw new AssertionError(
    `expected a rejection${
      isErrorClass(expected) ? ` with ${expected.name}` : ""
    }, the promise resolved`,
    message,
  );
}

/** A class (an Error or a subclass), not a predicate arrow function. */
function isErrorClass(
  value: unknown,
  // deno-lint-ignore no-explicit-any
): value is abstract new (...args: any[]) => unknown {
  return typeof value === "function" && value.prototype !== undefined &&
    (value === Error || value.prototype instanceof Error);
}

/** The path of the first difference, or undefined when deeply equal. */
function difference(
  actual: unknown,
  expected: unknown,
  path: string,
  seen: Map<object, unknown>,
): string | undefined {
  if (Object.is(actual, expected)) return undefined;
  if (
    typeof actual !== "object" || typeof expected !== "object" ||
    actual === null || expected === null
  ) {
    return path;
  }
  if (Object.getPrototypeOf(actual) !== Object.getPrototypeOf(expected)) {
    return path;
  }
  if (seen.get(actual) === expected) return undefined;
  seen.set(actual, expected);
  if (actual instanceof Date) {
    return actual.getTime() === (expected as Date).getTime() ? undefined : path;
  }
  if (actual instanceof Map) {
    const other = expected as Map<unknown, unknown>;
    if (actual.size !== other.size) return `${path}.size`;
    for (const [key, value] of actual) {
      if (!other.has(key)) return `${path}.get(${show(key)})`;
      const inner = difference(
        value,
        other.get(key),
        `${path}.get(${show(key)})`,
        seen,
      );
      if (inner !== undefined) return inner;
    }
    return undefined;
  }
  if (actual instanceof Set) {
    const other = expected as Set<unknown>;
    if (actual.size !== other.size) return `${path}.size`;
    for (const value of actual) {
      if (!other.has(value)) return `${path}.has(${show(value)})`;
    }
    return undefined;
  }
  const keys = Object.keys(actual);
  const otherKeys = Object.keys(expected);
  if (keys.length !== otherKeys.length) return path;
  for (const key of otherKeys) {
    if (!Object.hasOwn(actual, key)) return `${path}.${key}`;
  }
  for (const key of keys) {
    const inner = difference(
      (actual as Record<string, unknown>)[key],
      (expected as Record<string, unknown>)[key],
      Array.isArray(actual) ? `${path}[${key}]` : `${path}.${key}`,
      seen,
    );
    if (inner !== undefined) return inner;
  }
  return undefined;
}

/** A short, readable rendering of a value for a failure message. */
function show(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "function") return `[function ${value.name}]`;
  if (typeof value !== "object" || value === null) return String(value);
  if (value instanceof Error) return describeError(value);
  try {
    const text = JSON.stringify(
      value,
      (_key, v: unknown) =>
        typeof v === "bigint"
          ? `${v}n`
          : v === undefined
          ? "undefined"
          : v instanceof Map
          ? { Map: [...v] }
          : v instanceof Set
          ? { Set: [...v] }
          : v,
    );
    return text.length > 400 ? `${text.slice(0, 400)}...` : text;
  } catch {
    return Object.prototype.toString.call(value);
  }
}
