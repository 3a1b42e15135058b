// Copyright 2026 the @eventbus/core authors. MIT license.
// The try engine: runs a handler once with its context (a lazily created
// signal and the attempt number) within its timeout. The bus asks it for
// inline runs (emit, emitSync) and for the tries of deliveries.

import { HandlerTimeoutError } from "./errors.ts";
import type { Event } from "./event.ts";
import type { Handler, HandlerContext } from "./types.ts";

/** What the engine needs to know of a handler. */
export interface Runnable {
  readonly handler: Handler<unknown, string>;
  readonly name: string;
  /** Timeout of each try in ms, if any. */
  readonly timeout: number | undefined;
}

/**
 * Starts one try with `context`: returns undefined when the handler
 * returned (no promise, no microtask), throws what it threw, or returns a
 * promise that rejects with its error or, once its timeout expired, with
 * `HandlerTimeoutError` (the context's signal is then aborted with it, and
 * a late success does not count). The caller ends the context.
 */
export function startTry(
  runnable: Runnable,
  event: Event,
  context: TryContext,
): Promise<void> | undefined {
  const result = runnable.handler(event, context);
  return isPromiseLike(result)
    ? settle(runnable, event, context, result)
    : undefined;
}

/**
 * Runs each handler once, inline, one after another in order, and returns
 * the failures (undefined when none). It returns synchronously while the
 * handlers do (no promise, no microtask), and a promise from the first
 * handler that returned one.
 */
export function runEach(
  runnables: readonly Runnable[],
  event: Event,
  signal: AbortSignal | undefined,
): Failures | Promise<Failures> {
  return runFrom(runnables, event, signal, 0, undefined);
}

/** The failures of {@linkcode runEach}: undefined when every handler succeeded. */
export type Failures = unknown[] | undefined;

function runFrom(
  runnables: readonly Runnable[],
  event: Event,
  signal: AbortSignal | undefined,
  from: number,
  failures: Failures,
): Failures | Promise<Failures> {
  for (let i = from; i < runnables.length; i++) {
    const runnable = runnables[i]!;
    const context = new TryContext(1, signal);
    let pending: Promise<void> | undefined;
    try {
      pending = startTry(runnable, event, context);
    } catch (error) {
      (failures ??= []).push(error);
    }
    if (pending === undefined) {
      context.done();
      continue;
    }
    return pending.then(
      () => failures,
      (error: unknown) => [...(failures ?? []), error],
    ).finally(() => context.done()).then((known) =>
      runFrom(runnables, event, signal, i + 1, known)
    );
  }
  return failures;
}

/**
 * A try's context. The signal is created on first read, so handlers that
 * never look at it cost no AbortController. `outer` (a backend's close
 * deadline) aborts it too; `done()` detaches from `outer`.
 */
export class TryContext implements HandlerContext {
  readonly attempt: number;
  #outer: AbortSignal | undefined;
  #controller: AbortController | undefined;
  #onOuterAbort: (() => void) | undefined;
  #reason: unknown = undefined;
  #aborted = false;

  constructor(attempt: number, outer: AbortSignal | undefined) {
    this.attempt = attempt;
    this.#outer = outer;
  }

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      const controller = new AbortController();
      this.#controller = controller;
      if (this.#aborted) controller.abort(this.#reason);
      else if (this.#outer !== undefined) {
        if (this.#outer.aborted) controller.abort(this.#outer.reason);
        else {
          const outer = this.#outer;
          this.#onOuterAbort = () => this.abort(outer.reason);
          outer.addEventListener("abort", this.#onOuterAbort, { once: true });
        }
      }
    }
    return this.#controller.signal;
  }

  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.#controller?.abort(reason);
  }

  done(): void {
    if (this.#onOuterAbort !== undefined) {
      this.#outer?.removeEventListener("abort", this.#onOuterAbort);
    }
  }
}

/**
 * Waits for a handler's promise within its timeout: rejects with
 * `HandlerTimeoutError` once the timeout expired, aborting the context's
 * signal with that error.
 */
function settle(
  runnable: Runnable,
  event: Event,
  context: TryContext,
  result: Promise<void>,
): Promise<void> {
  const { timeout } = runnable;
  if (timeout === undefined) return result;
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      const error = new HandlerTimeoutError(event.type, runnable.name, timeout);
      context.abort(error);
      reject(error);
    }, timeout);
    result.then(
      () => {
        clearTimeout(timer);
        resolve();
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

function isPromiseLike(value: unknown): value is Promise<void> {
  return value !== null && typeof value === "object" &&
    typeof (value as { then?: unknown }).then === "function";
}
