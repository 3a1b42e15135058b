// Copyright 2026 the @eventbus/core authors. MIT license.
// The RabbitMQ backend's prefetch, apart from its handler concurrency: the
// broker keeps up to `prefetch` unacknowledged messages on their way to (or
// waiting in) one consumer, and at most `concurrency` of them run at once.
// A message that waits for a handler slot has not started: it is no try,
// and at close it is handed back like one that arrived while closing.

import { setMaxListeners } from "node:events";
import { type Permit, Semaphore } from "@eventbus/core";
import type { BackendArguments } from "@eventbus/core/backend-kit";

/**
 * The smallest default prefetch count (the default is this or
 * `concurrency`, whichever is larger). Measured on RabbitMQ 3.10.8 with a
 * quorum queue and the default concurrency (10), consuming with prefetch 10
 * reaches 0.13× a raw consumer with prefetch 256, 30 about 0.36×, 128 about
 * 0.69×, 256 about 0.8-1.0× (bench/pair.ts, 2026-11-30, 7 pairs each).
 * close() hands back what a worker holds whatever the prefetch: it
 * acknowledges the originals with one `multiple` acknowledgement (see
 * `_consumer.ts`), so RabbitMQ's quorum queue client, which keeps at most 32
 * commands unapplied and loses the rest when the channel closes, never has
 * more than one of them to send. What bounds the default is the cancel:
 * RabbitMQ before 4.3 returns a message that was on its way to a cancelled
 * consumer with one more `x-delivery-count` (rabbit_fifo_client, issue
 * rabbitmq-server#3729), and close() avoids that only by taking the
 * consumer's whole credit first, or waiting until none came for a while.
 * With 30 a worker replaced while events flow (under load, Node) counted no
 * hand-back in 16 of 16 runs; with 128 it counted 1 or 6 in 2 of 10, with 256
 * 1-8 in 6 of 10.
 */
export const MIN_DEFAULT_PREFETCH = 30;
/** AMQP's `prefetch-count` is an unsigned 16-bit number. */
const MAX_PREFETCH = 65_535;

/** The default prefetch count for `concurrency` handlers at once. */
export function defaultPrefetch(concurrency: number): number {
  return Math.min(MAX_PREFETCH, Math.max(MIN_DEFAULT_PREFETCH, concurrency));
}

/**
 * Throws a TypeError unless `value` is a number, a RangeError unless it is
 * an integer from 1 to 65 535 (AMQP's limit).
 */
export function checkPrefetch(args: BackendArguments, value: unknown): void {
  if (typeof value !== "number") {
    throw new TypeError(
      `Cannot create the ${args.broker} backend: prefetch must be a number, got ${
        value === null ? "null" : typeof value
      }`,
    );
  }
  if (Number.isInteger(value) && value >= 1 && value <= MAX_PREFETCH) return;
  throw new RangeError(
    `Cannot create the ${args.broker} backend: prefetch must be an integer from 1 to ${MAX_PREFETCH} (AMQP's prefetch-count), got ${value}`,
  );
}

/**
 * The handler slots of one consumer: `concurrency` permits, taken in
 * arrival order. `close()` turns every wait, present and future, into
 * `undefined`, so that a message still waiting is handed back unstarted.
 */
export class HandlerSlots {
  #semaphore: Semaphore;
  #closed = new AbortController();

  /**
   * Creates the slots, all free.
   *
   * @param concurrency How many handlers of the consumer run at once.
   */
  constructor(concurrency: number) {
    this.#semaphore = new Semaphore(concurrency);
    // Each waiting message listens for close(): up to prefetch of them,
    // more than Node's default of 10 before it warns of a leak.
    setMaxListeners(0, this.#closed.signal);
  }

  /**
   * A free slot at once when there is one, else a promise of one; the
   * promise resolves `undefined` once the slots are closed.
   */
  take(): Permit | Promise<Permit | undefined> | undefined {
    if (this.#closed.signal.aborted) return undefined;
    return this.#semaphore.tryAcquire() ??
      this.#semaphore.acquire({ signal: this.#closed.signal }).catch(() =>
        undefined
      );
  }

  /** Stops handing out slots: every waiter gets `undefined`. */
  close(): void {
    this.#closed.abort();
  }
}
