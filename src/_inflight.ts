// Copyright 2026 the @eventbus/core authors. MIT license.
// The in-flight tracker and the close sequence's wait, shared by every
// backend: count the work that runs, give its tries one signal, wait for
// them until the close deadline, then abort the rest and stop waiting. What
// a backend does before (stop fetching) and after (hand messages back) is
// its broker's idiom and stays in the backend (web-standard APIs only).

import type { DeliveryResult } from "./backend.ts";
import { type Deadline, untilDeadline } from "./_async.ts";

/**
 * The result of a try given up at the close deadline.
 *
 * @example Reporting a try the close sequence gave up
 * ```ts
 * import { ABANDONED } from "@eventbus/core/backend-kit";
 *
 * console.assert(ABANDONED.status === "abandoned");
 * ```
 */
export const ABANDONED: DeliveryResult = Object.freeze({
  status: "abandoned",
  error: undefined,
});

/**
 * The work a consumer (or a whole backend) has running: tasks that `close()`
 * waits for, and tries whose signal it aborts at its deadline.
 *
 * @example Tracking a fetch and running a try
 * ```ts
 * import { ABANDONED, InFlight } from "@eventbus/core/backend-kit";
 *
 * const tries = new InFlight();
 * const result = tries.run(async (signal) => {
 *   signal.throwIfAborted();
 *   return { status: "completed" as const };
 * }, ABANDONED);
 * tries.track(result);
 * await tries.idle();
 * console.assert(tries.size === 0 && (await result).status === "completed");
 * ```
 */
export class InFlight {
  #tasks = new Set<Promise<unknown>>();
  #abort = new AbortController();
  /** What each running try does when it is given up (one entry per try). */
  #onAbandon = new Set<() => void>();

  /** The signal of every try; aborted by {@linkcode InFlight.abandon}. */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /** Whether the tries were abandoned (the close deadline passed). */
  get abandoned(): boolean {
    return this.#abort.signal.aborted;
  }

  /** How many tracked tasks have not settled yet. */
  get size(): number {
    return this.#tasks.size;
  }

  /** Counts `task` until it settles; its rejection is observed here. */
  track(task: Promise<unknown>): void {
    this.#tasks.add(task);
    const done = (): void => void this.#tasks.delete(task);
    task.then(done, done);
  }

  /**
   * Runs one try with {@linkcode InFlight.signal}. Resolves with its result,
   * or with `abandoned` as soon as {@linkcode InFlight.abandon} gives it up
   * (the try itself may go on; its signal is aborted).
   */
  run<T>(
    attempt: (signal: AbortSignal) => Promise<T>,
    abandoned: T,
  ): Promise<T> {
    const running = attempt(this.#abort.signal);
    if (this.abandoned) {
      running.catch(() => {});
      return Promise.resolve(abandoned);
    }
    // One listener per try, removed when it settles: a consumer that runs
    // for days keeps nothing of the tries it finished.
    return new Promise<T>((resolve, reject) => {
      const onAbandon = (): void => resolve(abandoned);
      this.#onAbandon.add(onAbandon);
      running.then(resolve, reject).finally(() =>
        this.#onAbandon.delete(onAbandon)
      );
    });
  }

  /** Resolves once no tracked task runs, counting tasks tracked meanwhile. */
  async idle(): Promise<void> {
    while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
  }

  /** Aborts the tries' signal with `reason` and stops waiting for them. */
  abandon(reason: unknown): void {
    this.#abort.abort(reason);
    for (const onAbandon of this.#onAbandon) onAbandon();
    this.#onAbandon.clear();
  }
}

/**
 * Options of {@linkcode drain}.
 *
 * @example Waiting for a poll in flight before abandoning tries
 * ```ts
 * import { deadline, drain, type DrainOptions, InFlight } from "@eventbus/core/backend-kit";
 *
 * const poll = Promise.resolve([]); // the fetch that may still return messages
 * const options: DrainOptions = { reason: new Error("closed"), alongside: poll };
 * using limit = deadline(1000);
 * console.assert(await drain([new InFlight()], limit, options));
 * ```
 */
export interface DrainOptions {
  /** The reason the signal of each abandoned try aborts with. */
  reason: unknown;
  /**
   * Work that must end before any try is abandoned, waited for without the
   * deadline (such as a poll in flight, whose messages must not be picked
   * up again once they are released).
   */
  alongside?: Promise<unknown>;
}

/**
 * The wait of the close sequence: lets the tasks of `trackers` settle until
 * `limit`, then abandons the tries still running. Resolves `true` when every
 * task settled in time; never rejects.
 *
 * @param trackers The in-flight work of each consumer.
 * @param limit The close deadline.
 * @param options The abort reason and work to wait for alongside.
 * @returns Whether every task settled before `limit`.
 *
 * @example A try still running at the deadline is abandoned
 * ```ts
 * import { ABANDONED, deadline, drain, InFlight } from "@eventbus/core/backend-kit";
 *
 * const tries = new InFlight();
 * const stuck = tries.run(() => new Promise<never>(() => {}), ABANDONED);
 * tries.track(stuck);
 * using limit = deadline(0);
 * const settled = await drain([tries], limit, { reason: new Error("closed") });
 * console.assert(!settled && tries.abandoned && (await stuck) === ABANDONED);
 * ```
 */
export async function drain(
  trackers: readonly InFlight[],
  limit: Deadline,
  options: DrainOptions,
): Promise<boolean> {
  const { reason, alongside } = options;
  const [settled] = await Promise.all([
    untilDeadline(Promise.all(trackers.map((tries) => tries.idle())), limit),
    alongside,
  ]);
  for (const tries of trackers) tries.abandon(reason);
  return settled;
}
