// Copyright 2026 the @eventbus/core authors. MIT license.
// Small helpers for tests: counters that can be awaited, bounded in time.

/** A count that tests await to reach a target, with a deadline. */
export class Counter {
  #count = 0;
  #waiters: { target: number; resolve: () => void }[] = [];

  get value(): number {
    return this.#count;
  }

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
    return withDeadline(
      new Promise<void>((resolve) => this.#waiters.push({ target, resolve })),
      timeout,
      () => `${what} reached ${this.#count} of ${target}`,
    );
  }
}

/**
 * Records deliveries by event id for at-least-once tests: every arrival in
 * `all` (duplicates included), the distinct ids in `unique`, and `distinct`,
 * a counter of distinct ids that tests await.
 */
export class Deliveries {
  readonly all: string[] = [];
  readonly unique: Set<string> = new Set();
  readonly distinct: Counter = new Counter();

  record(id: string): void {
    this.all.push(id);
    if (this.unique.has(id)) return;
    this.unique.add(id);
    this.distinct.add();
  }
}

/** Rejects with a message after `timeout` ms unless `promise` settles first. */
export function withDeadline<T>(
  promise: Promise<T>,
  timeout: number,
  describe: () => string,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`Timed out after ${timeout} ms: ${describe()}`)),
      timeout,
    );
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/** Resolves after `ms`; only for handlers that simulate work, never to wait for a result. */
export function work(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });
}

/** Counts occurrences of each key. */
export function tally(keys: Iterable<string>): Map<string, number> {
  const counts = new Map<string, number>();
  for (const key of keys) counts.set(key, (counts.get(key) ?? 0) + 1);
  return counts;
}

/** A logger that keeps what it is told, for assertions and quiet tests. */
export class MemoryLogger {
  readonly lines: { level: string; message: string }[] = [];
  debug = (message: string): void =>
    void this.lines.push({ level: "debug", message });
  info = (message: string): void =>
    void this.lines.push({ level: "info", message });
  warn = (message: string): void =>
    void this.lines.push({ level: "warn", message });
  error = (message: string): void =>
    void this.lines.push({ level: "error", message });
}
