// Copyright 2026 the @eventbus/core authors. MIT license.
// The async toolkit shared by the core and every backend: waiting that a
// signal can stop, deadlines, and promise plumbing Node 20 lacks. One copy,
// so the behaviours cannot drift apart (web-standard APIs only).

/**
 * A promise with its settle functions (`Promise.withResolvers`, absent on
 * Node 20).
 *
 * @typeParam T The value the promise resolves with.
 *
 * @example Keeping a promise to settle later
 * ```ts
 * import { type Resolvers, withResolvers } from "@eventbus/core/backend-kit";
 *
 * const ready: Resolvers<string> = withResolvers<string>();
 * ready.resolve("connected");
 * console.assert((await ready.promise) === "connected");
 * ```
 */
export interface Resolvers<T> {
  /** Settles through {@linkcode Resolvers.resolve} or {@linkcode Resolvers.reject}. */
  readonly promise: Promise<T>;
  /** Resolves {@linkcode Resolvers.promise} with `value`. */
  readonly resolve: (value: T) => void;
  /** Rejects {@linkcode Resolvers.promise} with `reason`. */
  readonly reject: (reason: unknown) => void;
}

/**
 * `Promise.withResolvers()`, for runtimes that lack it (Node 20).
 *
 * @typeParam T The value the promise resolves with.
 * @returns A pending promise and the functions that settle it.
 *
 * @example Settling a promise from a callback
 * ```ts
 * import { withResolvers } from "@eventbus/core/backend-kit";
 *
 * const { promise, resolve } = withResolvers<number>();
 * setTimeout(() => resolve(42), 0);
 * console.assert((await promise) === 42);
 * ```
 */
export function withResolvers<T>(): Resolvers<T> {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/**
 * Waits for `promise`, or rejects with the signal's reason once it aborts
 * (already aborted: at once). The promise's own later failure is observed,
 * never unhandled. Without a signal, returns `promise` itself.
 *
 * @typeParam T The value `promise` resolves with.
 * @param promise The work to wait for.
 * @param signal Stops the wait (not the work) when it aborts.
 * @returns `promise`'s outcome, or a rejection with `signal.reason`.
 *
 * @example Giving up a wait when the caller aborts
 * ```ts
 * import { abortable } from "@eventbus/core/backend-kit";
 *
 * const controller = new AbortController();
 * const never = new Promise<void>(() => {});
 * const waiting = abortable(never, controller.signal);
 * controller.abort(new Error("stopped"));
 * const error = await waiting.catch((e: Error) => e);
 * console.assert(error instanceof Error && error.message === "stopped");
 * ```
 */
export function abortable<T>(
  promise: Promise<T>,
  signal: AbortSignal | undefined,
): Promise<T> {
  if (signal === undefined) return promise;
  if (signal.aborted) {
    promise.catch(() => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      promise.catch(() => {});
      reject(signal.reason);
    };
    const waits = sharedWaits.get(signal);
    if (waits !== undefined) {
      waits.add(onAbort);
      promise.then(resolve, reject).finally(() => waits.delete(onAbort));
      return;
    }
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() =>
      signal.removeEventListener("abort", onAbort)
    );
  });
}

/**
 * Waits for `promise` at most `ms`, then rejects with the `TimeoutError`
 * `DOMException` of `AbortSignal.timeout`.
 *
 * @typeParam T The value `promise` resolves with.
 * @param promise The work to wait for.
 * @param ms The longest wait, in milliseconds.
 * @returns `promise`'s outcome, or a rejection with the `TimeoutError`.
 *
 * @example A broker call that must answer in time
 * ```ts
 * import { withTimeout } from "@eventbus/core/backend-kit";
 *
 * const pong = await withTimeout(Promise.resolve("PONG"), 1000);
 * console.assert(pong === "PONG");
 * ```
 */
export function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return abortable(promise, AbortSignal.timeout(ms));
}

/** The step of {@linkcode sharedTimeout}'s deadlines, in ms. */
const SHARED_TIMEOUT_STEP = 50;
/** sharedTimeout()'s signals by deadline step, until they abort. */
const sharedTimeouts = new Map<number, AbortSignal>();
/**
 * The waits of {@linkcode abortable} on each signal of sharedTimeout(), in a
 * set rather than as listeners: an `EventTarget` scans its listeners on
 * every add, which thousands of waits on one signal make quadratic.
 */
const sharedWaits = new WeakMap<AbortSignal, Set<() => void>>();

/**
 * An `AbortSignal` that aborts with `AbortSignal.timeout`'s `TimeoutError`
 * `ms` from now, up to 50 ms later: every call whose deadline falls in the
 * same 50 ms step gets the same signal, so a publish path that gives each
 * of thousands of calls a second a deadline arms one timer per step, not
 * one per call, and {@linkcode abortable} waits on it without a listener
 * per call.
 *
 * @param ms The shortest time until it aborts, in milliseconds.
 * @returns A signal shared with the calls of the same deadline step.
 *
 * @example A deadline for each of many publishes
 * ```ts
 * import { abortable, sharedTimeout } from "@eventbus/core/backend-kit";
 *
 * const answer = await abortable(Promise.resolve("ok"), sharedTimeout(1000));
 * console.assert(answer === "ok");
 * ```
 */
export function sharedTimeout(ms: number): AbortSignal {
  const now = performance.now();
  const step = Math.ceil((now + ms) / SHARED_TIMEOUT_STEP);
  let signal = sharedTimeouts.get(step);
  if (signal === undefined) {
    const created = AbortSignal.timeout(
      // Node's AbortSignal.timeout takes whole milliseconds only.
      Math.max(0, Math.ceil(step * SHARED_TIMEOUT_STEP - now)),
    );
    const waits = new Set<() => void>();
    sharedTimeouts.set(step, created);
    sharedWaits.set(created, waits);
    created.addEventListener("abort", () => {
      sharedTimeouts.delete(step);
      for (const wake of waits) wake();
      waits.clear();
    }, { once: true });
    signal = created;
  }
  return signal;
}

/**
 * Waits `ms`, or less when the signal aborts. Never rejects: resolves
 * `true` after the full wait, `false` when the signal cut it short (or was
 * aborted already), so loops can write `while (await sleep(ms, signal))`.
 *
 * @param ms How long to wait, in milliseconds.
 * @param signal Cuts the wait short when it aborts.
 * @returns `true` after the full wait, `false` when the signal cut it short.
 *
 * @example A poll loop that stops on abort
 * ```ts
 * import { sleep } from "@eventbus/core/backend-kit";
 *
 * const controller = new AbortController();
 * let polls = 0;
 * do {
 *   polls++;
 *   if (polls === 3) controller.abort();
 * } while (await sleep(1, controller.signal));
 * console.assert(polls === 3);
 * ```
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  if (signal?.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (slept: boolean): void => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      resolve(slept);
    };
    const onAbort = (): void => done(false);
    const timer = setTimeout(() => done(true), ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Resolves at the next macrotask (after pending timers of 0 ms). */
export function nextMacrotask(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/**
 * Resolves after the callbacks `setImmediate` queued before the call: on
 * Node, Deno and Bun, once the current turn's I/O callbacks ran, sooner
 * than a 0 ms timer (which waits 1 ms or more there). Where there is no
 * `setImmediate` (browsers), it is a 0 ms timer.
 *
 * @returns A promise that resolves after the queued callbacks ran.
 *
 * @example Yielding to I/O between batches
 * ```ts
 * import { nextImmediate } from "@eventbus/core/backend-kit";
 *
 * let batches = 0;
 * while (batches < 3) {
 *   batches++;
 *   await nextImmediate(); // lets sockets and timers run
 * }
 * console.assert(batches === 3);
 * ```
 */
export function nextImmediate(): Promise<void> {
  const immediate = (globalThis as {
    setImmediate?: (callback: () => void) => unknown;
  }).setImmediate;
  if (immediate === undefined) return nextMacrotask();
  return new Promise((resolve) => void immediate(resolve));
}

/**
 * A deadline: `reached` resolves when `ms` passed or the signal aborted.
 *
 * @example Checking whether time is up
 * ```ts
 * import { type Deadline, deadline } from "@eventbus/core/backend-kit";
 *
 * using limit: Deadline = deadline(0);
 * await limit.reached;
 * console.assert(limit.passed);
 * ```
 */
export interface Deadline extends Disposable {
  /** Resolves when the time is up or the signal aborted; never rejects. */
  readonly reached: Promise<void>;
  /** Whether the deadline has been reached. */
  readonly passed: boolean;
}

/**
 * A deadline `ms` from now that `signal` can bring forward, as the close
 * sequence uses it: wait for work until `reached`, then give up. Dispose of
 * it (`using`) to clear its timer and listener.
 *
 * @param ms Milliseconds from now.
 * @param signal Brings the deadline forward when it aborts.
 * @returns The deadline; dispose of it to clear its timer.
 *
 * @example Waiting for work until a close timeout
 * ```ts
 * import { deadline, untilDeadline } from "@eventbus/core/backend-kit";
 *
 * using limit = deadline(1000);
 * const settled = await untilDeadline(Promise.resolve(), limit);
 * console.assert(settled && !limit.passed);
 * ```
 */
export function deadline(ms: number, signal?: AbortSignal): Deadline {
  const { promise, resolve } = withResolvers<void>();
  let passed = false;
  const reach = (): void => {
    passed = true;
    resolve();
  };
  const timer = setTimeout(reach, ms);
  if (signal?.aborted) reach();
  else signal?.addEventListener("abort", reach, { once: true });
  return {
    reached: promise,
    get passed() {
      return passed;
    },
    [Symbol.dispose]() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", reach);
    },
  };
}

/**
 * Waits for `work` until the deadline, then stops waiting (the work goes
 * on). Resolves `true` when the work settled in time, `false` otherwise;
 * never rejects.
 *
 * @param work The work to wait for; its rejection counts as settled.
 * @param limit When to stop waiting.
 * @returns Whether `work` settled before `limit` was reached.
 *
 * @example Work that outlives the deadline
 * ```ts
 * import { deadline, untilDeadline } from "@eventbus/core/backend-kit";
 *
 * using limit = deadline(0);
 * const settled = await untilDeadline(new Promise(() => {}), limit);
 * console.assert(settled === false);
 * ```
 */
export async function untilDeadline(
  work: Promise<unknown>,
  limit: Deadline,
): Promise<boolean> {
  let settled = false;
  await Promise.race([
    work.then(() => void (settled = true), () => void (settled = true)),
    limit.reached,
  ]);
  return settled;
}
