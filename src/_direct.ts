// Copyright 2026 the @eventbus/core authors. MIT license.
// A private shortcut between a bus and its in-process WorkerPool: the bus's
// Deliver carries, under DIRECT, the same try reporting its result to a
// sink instead of through a promise the pool must chain again. Saves a
// promise and a microtask per delivery; any other backend, and any Deliver
// without it, goes through the promise as before.

import type { Deliver, Delivery, DeliveryResult } from "./backend.ts";

/** The key of a Deliver's direct form. */
export const DIRECT: unique symbol = Symbol("eventbus.deliver.direct");

/**
 * Receives the outcome of a direct try, on a later microtask than the call
 * that started it: `settled` with the result, or `broken` when the try
 * failed to produce one (a Deliver that would have rejected).
 */
export interface DirectSink<R> {
  settled(run: R, result: DeliveryResult): void;
  broken(run: R, error: unknown): void;
}

/** Starts one try; its outcome goes to `sink` with `run`, never inline. */
export type DirectDeliver = <R>(
  delivery: Delivery,
  sink: DirectSink<R>,
  run: R,
) => void;

/** A Deliver that may carry its direct form. */
export type MaybeDirect = Deliver & { [DIRECT]?: DirectDeliver };

/** Reports `outcome` (a promise of the result) to `sink`: the fallback. */
export function settleInto<R>(
  outcome: Promise<DeliveryResult>,
  sink: DirectSink<R>,
  run: R,
): void {
  outcome.then(
    (result) => sink.settled(run, result),
    (error: unknown) => sink.broken(run, error),
  );
}
