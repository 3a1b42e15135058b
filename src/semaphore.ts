// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * A counting semaphore with FIFO waiters, abortable acquisition and
 * disposable permits.
 *
 * @module
 */

/**
 * A permit from a {@linkcode Semaphore}. Releasing it twice is harmless.
 *
 * @example Releasing a permit at the end of a scope
 * ```ts
 * import { Semaphore } from "@eventbus/core";
 * const semaphore = new Semaphore(1);
 * {
 *   using _permit = await semaphore.acquire();
 *   console.assert(semaphore.available === 0);
 * }
 * console.assert(semaphore.available === 1);
 * ```
 */
export interface Permit extends Disposable {
  /** Gives the permit back (to the longest waiter, if any). */
  release(): void;
}

/**
 * Options of {@linkcode Semaphore.acquire}.
 *
 * @example Giving up waiting for a permit
 * ```ts
 * import { Semaphore } from "@eventbus/core";
 * const semaphore = new Semaphore(1);
 * const held = await semaphore.acquire();
 * const controller = new AbortController();
 * const waiting = semaphore.acquire({ signal: controller.signal });
 * controller.abort(new Error("too slow"));
 * await waiting.catch((error) => console.assert(error.message === "too slow"));
 * held.release();
 * ```
 */
export interface AcquireOptions {
  /** Stops waiting; the promise rejects with the signal's reason. */
  signal?: AbortSignal | undefined;
}

/**
 * A counting semaphore: at most `permits` holders at once, the rest wait in
 * FIFO order. An aborted wait leaves no waiter and no permit behind.
 *
 * @example Limiting concurrency
 * ```ts
 * import { Semaphore } from "@eventbus/core";
 * const semaphore = new Semaphore(2);
 * let running = 0;
 * let peak = 0;
 * await Promise.all([1, 2, 3, 4].map(async () => {
 *   using _permit = await semaphore.acquire();
 *   peak = Math.max(peak, ++running);
 *   await new Promise((resolve) => setTimeout(resolve, 1));
 *   running--;
 * }));
 * console.assert(peak === 2);
 * ```
 */
export class Semaphore {
  #available: number;
  /** Waiters in arrival order: a doubly linked list, so an abort is O(1). */
  #first: Waiter | undefined;
  #last: Waiter | undefined;
  #waiting = 0;
  #size: number;

  /**
   * Creates a semaphore with all its permits free.
   *
   * @param permits How many holders may hold a permit at once, at least 1.
   * @throws {RangeError} When `permits` is not a positive integer.
   */
  constructor(permits: number) {
    if (!Number.isInteger(permits) || permits < 1) {
      throw new RangeError(
        `Cannot create semaphore: permits must be an integer of at least 1, got ${permits}`,
      );
    }
    this.#available = permits;
    this.#size = permits;
  }

  /** How many permits the semaphore was created with. */
  get size(): number {
    return this.#size;
  }

  /** How many permits are free now. */
  get available(): number {
    return this.#available;
  }

  /** How many callers wait for a permit. */
  get waiting(): number {
    return this.#waiting;
  }

  /**
   * Takes a permit if one is free, without waiting.
   *
   * @returns A permit, or `undefined` when none is free or others wait.
   */
  tryAcquire(): Permit | undefined {
    if (this.#available === 0 || this.#waiting > 0) return undefined;
    this.#available--;
    return this.#permit();
  }

  /**
   * Waits for a permit, first come first served. An abort removes the wait
   * at once, whatever its place in the line.
   *
   * @param options The signal that stops waiting.
   * @returns The permit, once free.
   * @throws The signal's reason when it aborts first.
   */
  acquire(options?: AcquireOptions): Promise<Permit> {
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    const permit = this.tryAcquire();
    if (permit !== undefined) return Promise.resolve(permit);
    return new Promise<Permit>((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        signal,
        onAbort: () => {
          this.#unlink(waiter);
          reject(signal!.reason);
        },
        prev: this.#last,
        next: undefined,
      };
      if (this.#last === undefined) this.#first = waiter;
      else this.#last.next = waiter;
      this.#last = waiter;
      this.#waiting++;
      signal?.addEventListener("abort", waiter.onAbort, { once: true });
    });
  }

  #permit(): Permit {
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      this.#release();
    };
    return { release, [Symbol.dispose]: release };
  }

  #release(): void {
    const waiter = this.#first;
    if (waiter === undefined) {
      this.#available++;
      return;
    }
    this.#unlink(waiter);
    waiter.signal?.removeEventListener("abort", waiter.onAbort);
    waiter.resolve(this.#permit());
  }

  #unlink(waiter: Waiter): void {
    const { prev, next } = waiter;
    if (prev === undefined) this.#first = next;
    else prev.next = next;
    if (next === undefined) this.#last = prev;
    else next.prev = prev;
    waiter.prev = waiter.next = undefined;
    this.#waiting--;
  }
}

interface Waiter {
  readonly resolve: (permit: Permit) => void;
  readonly signal: AbortSignal | undefined;
  readonly onAbort: () => void;
  prev: Waiter | undefined;
  next: Waiter | undefined;
}
