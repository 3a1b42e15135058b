// Copyright 2026 the @eventbus/core authors. MIT license.
// Waiting helpers of the conformance suite, built on the shared async
// toolkit: a count that tests await with a deadline, a deadline with a
// message, simulated work, and a logger that keeps its lines. The
// project's own tests use the same ones (tests/fixtures/_util.ts).

import { deadline, sleep, untilDeadline, withResolvers } from "./_async.ts";
import type { Logger } from "./backend.ts";

/** A count that tests await to reach a target, with a deadline. */
export class Counter {
  #count = 0;
  #waiters: { target: number; resolve: () => void }[] = [];

  /** The count so far. */
  get value(): number {
    return this.#count;
  }

  /** Adds `n` (default 1) and wakes the waiters whose target is reached. */
  add(n = 1): void {
    this.#count += n;
    this.#waiters = this.#waiters.filter((w) => {
      if (this.#count < w.target) return true;
      w.resolve();
      return false;
    });
  }

  /** Resolves once the count reaches `target`; rejects after `timeout` ms. */
  reach(target: number, timeout = 15_000, what = "count"): Promise<void> {
    if (this.#count >= target) return Promise.resolve();
    const { promise, resolve } = withResolvers<void>();
    this.#waiters.push({ target, resolve });
    return withDeadline(
      promise,
      timeout,
      () => `${what} reached ${this.#count} of ${target}`,
    );
  }
}

/**
 * Settles as `promise` does, or rejects with "Timed out after `timeout` ms:
 * `describe()`" when it has not settled by then.
 */
export async function withDeadline<T>(
  promise: Promise<T>,
  timeout: number,
  describe: () => string,
): Promise<T> {
  const limit = deadline(timeout);
  try {
    if (await untilDeadline(promise, limit)) return await promise;
  } finally {
    limit[Symbol.dispose]();
  }
  promise.catch(() => {});
  throw new Error(`Timed out after ${timeout} ms: ${describe()}`);
}

/**
 * Resolves after `ms`, or rejects with the signal's reason when it aborts;
 * only for handlers that simulate work, never to wait for a result.
 */
export async function work(ms: number, signal?: AbortSignal): Promise<void> {
  if (!await sleep(ms, signal)) throw signal?.reason;
}

/** Counts occurrences of each key. */
export function tally(keys: Iterable<string>): Map<string, number> {
  const counts = new Map<string, number>();
  for (const key of keys) counts.set(key, (counts.get(key) ?? 0) + 1);
  return counts;
}

/** A logger that keeps what it is told, for assertions and quiet tests. */
export class MemoryLogger implements Logger {
  /** Every line, in order. */
  readonly lines: { level: string; message: string }[] = [];
  /** Keeps a debug line. */
  debug = (message: string): void =>
    void this.lines.push({ level: "debug", message });
  /** Keeps an info line. */
  info = (message: string): void =>
    void this.lines.push({ level: "info", message });
  /** Keeps a warning. */
  warn = (message: string): void =>
    void this.lines.push({ level: "warn", message });
  /** Keeps an error line. */
  error = (message: string): void =>
    void this.lines.push({ level: "error", message });
}
