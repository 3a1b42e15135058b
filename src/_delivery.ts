// Copyright 2026 the @eventbus/core authors. MIT license.
// The delivery engine: runs one try of a delivery for the bus, decides what
// the backend must do next (completed, retry after a delay, dead-letter,
// abandoned), reports dead letters once, and owns the delivery counters:
// the bus-wide totals and, beside them, the same totals per handler name.

import type {
  AsyncBackend,
  Delivery,
  DeliveryResult,
  Logger,
} from "./backend.ts";
import {
  DeadLetterError,
  type DeadLetterReason,
  describeError,
  EventValidationError,
  NonRetriableError,
} from "./errors.ts";
import type { Event } from "./event.ts";
import { backoffDelay } from "./retry.ts";
import type { EventSchemas } from "./schema.ts";
import type { BusStats, EventBusOptions, HandlerStats } from "./types.ts";
import type { Instrumenter } from "./_instrumentation.ts";
import { callSafely } from "./_logger.ts";
import type { Entry } from "./_registry.ts";
import { startTry, TryContext } from "./_try.ts";
import { type DirectSink, settleInto } from "./_direct.ts";

const COMPLETED: DeliveryResult = Object.freeze({ status: "completed" });

/**
 * The bus-wide counters of deliveries, as `stats()` reports them (less
 * `queued` and the per-name `handlers`).
 */
export type DeliveryStats = Omit<BusStats, "queued" | "handlers">;

/** Runs the tries of one bus's deliveries. */
export class DeliveryEngine {
  /** The counters; read by the bus, written here only. */
  readonly stats: DeliveryStats = {
    inFlight: 0,
    completed: 0,
    failed: 0,
    retried: 0,
    deadLettered: 0,
  };
  /** The same totals per async handler name in use; written here only. */
  #handlers = new Map<string, HandlerStats>();
  #logger: Logger;
  #onError: EventBusOptions["onError"];
  #schemas: EventSchemas | undefined;
  #instrumented: { by: Instrumenter; backend: AsyncBackend } | undefined;

  /**
   * @param logger The bus's (guarded) logger.
   * @param onError The bus's dead-letter callback.
   * @param schemas The schemas a delivery's data must pass before its
   *   handler runs (validation at consume), if any.
   * @param instrumented The bus's instrumentation and backend, if any.
   */
  constructor(
    logger: Logger,
    onError: EventBusOptions["onError"],
    schemas: EventSchemas | undefined,
    instrumented?: { by: Instrumenter; backend: AsyncBackend },
  ) {
    this.#logger = logger;
    this.#onError = onError;
    this.#schemas = schemas;
    this.#instrumented = instrumented;
  }

  /** Starts counting for handler `name`, unless it is counted already. */
  track(name: string): void {
    if (this.#handlers.has(name)) return;
    this.#handlers.set(name, {
      completed: 0,
      failed: 0,
      retried: 0,
      deadLettered: 0,
    });
  }

  /** Drops the counters of `name`, which no subscription uses any more. */
  forget(name: string): void {
    this.#handlers.delete(name);
  }

  /** A fresh copy of every tracked name's counters. */
  handlerStats(): Record<string, HandlerStats> {
    // fromEntries defines own properties: a name such as "__proto__" is safe.
    return Object.fromEntries(
      Array.from(this.#handlers, ([name, counts]) => [name, { ...counts }]),
    );
  }

  /**
   * Runs one try of `delivery` for the handler of `entry`; never rejects.
   * A delivery past its attempts is not run: each allowed try ended without
   * a result (the worker stopped), so it is dead-lettered as `crashed`.
   */
  deliver(entry: Entry, delivery: Delivery): Promise<DeliveryResult> {
    const instrumented = this.#instrumented;
    if (instrumented === undefined) return this.#try(entry, delivery);
    const scope = instrumented.by.open(delivery, instrumented.backend);
    if (scope === undefined) return this.#try(entry, delivery);
    return instrumented.by.deliver(scope, () => this.#try(entry, delivery));
  }

  /**
   * {@linkcode deliver} reporting to `sink` instead of through a promise
   * (see `_direct.ts`): the same try, counted the same, one promise and
   * one microtask fewer when the handler returns a promise.
   */
  deliverTo<R>(
    entry: Entry,
    delivery: Delivery,
    sink: DirectSink<R>,
    run: R,
  ): void {
    const { attempt, signal, event } = delivery;
    const instrumented = this.#instrumented;
    if (instrumented !== undefined) {
      // A scope (a span) wraps the try's promise; the no-op tracer has none.
      const scope = instrumented.by.open(delivery, instrumented.backend);
      if (scope !== undefined) {
        const traced = () => this.#try(entry, delivery);
        settleInto(instrumented.by.deliver(scope, traced), sink, run);
        return;
      }
    }
    if (
      attempt > entry.retry.attempts ||
      this.#schemas?.[event.type] !== undefined
    ) {
      settleInto(this.#try(entry, delivery), sink, run);
      return;
    }
    let context: TryContext | undefined;
    let counts: HandlerStats | undefined;
    let pending: Promise<void> | undefined;
    try {
      const stats = this.stats;
      counts = this.#handlers.get(entry.name);
      stats.inFlight++;
      if (attempt > 1) {
        stats.retried++;
        if (counts !== undefined) counts.retried++;
      }
      context = new TryContext(attempt, signal);
      pending = startTry(entry, event, context);
    } catch (error) {
      let outcome: Promise<DeliveryResult>;
      try {
        outcome = context === undefined
          ? Promise.reject(error)
          : Promise.resolve(
            this.#failedTry(context, counts, entry, event, signal, error),
          );
      } catch (broken) {
        outcome = Promise.reject(broken);
      }
      settleInto(outcome, sink, run);
      return;
    }
    if (pending === undefined) {
      const result = this.#completed(counts);
      this.stats.inFlight--;
      context.done();
      settleInto(Promise.resolve(result), sink, run);
      return;
    }
    const done = context;
    pending.then(
      () => {
        const result = this.#completed(counts);
        this.stats.inFlight--;
        done.done();
        sink.settled(run, result);
      },
      (error: unknown) => {
        let result: DeliveryResult;
        try {
          result = this.#failedTry(done, counts, entry, event, signal, error);
        } catch (broken) {
          sink.broken(run, broken);
          return;
        }
        sink.settled(run, result);
      },
    );
  }

  /**
   * One try. Not async: a try without schema allocates one promise (the
   * handler's, chained once) instead of an async function's and an await's.
   */
  #try(entry: Entry, delivery: Delivery): Promise<DeliveryResult> {
    try {
      const { attempt, signal, event } = delivery;
      const { retry } = entry;
      // Undefined when the name was freed while this delivery waited or ran.
      const counts = this.#handlers.get(entry.name);
      if (attempt > retry.attempts) {
        return Promise.resolve(this.#deadLetter(
          counts,
          entry,
          event,
          attempt - 1,
          "crashed",
          new Error(
            `Delivered ${attempt} times, more than the ${retry.attempts} attempts of handler "${entry.name}" allow: its tries ended without a result, so it is not run again`,
          ),
        ));
      }
      const schema = this.#schemas?.[event.type];
      if (schema !== undefined) {
        return this.#tryValidated(entry, delivery, counts, schema);
      }
      const stats = this.stats;
      stats.inFlight++;
      if (attempt > 1) {
        stats.retried++;
        if (counts !== undefined) counts.retried++;
      }
      const context = new TryContext(attempt, signal);
      let pending: Promise<void> | undefined;
      try {
        pending = startTry(entry, event, context);
      } catch (error) {
        return Promise.resolve(
          this.#failedTry(context, counts, entry, event, signal, error),
        );
      }
      if (pending === undefined) {
        const result = this.#completed(counts);
        stats.inFlight--;
        context.done();
        return Promise.resolve(result);
      }
      // Counted as in flight until the result is known, as onError sees it.
      return pending.then(
        () => {
          const result = this.#completed(counts);
          stats.inFlight--;
          context.done();
          return result;
        },
        (error: unknown) =>
          this.#failedTry(context, counts, entry, event, signal, error),
      );
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** A try whose data must first pass its schema (validation at consume). */
  async #tryValidated(
    entry: Entry,
    delivery: Delivery,
    counts: HandlerStats | undefined,
    schema: NonNullable<EventSchemas[string]>,
  ): Promise<DeliveryResult> {
    const { attempt, signal } = delivery;
    let { event } = delivery;
    const stats = this.stats;
    stats.inFlight++;
    if (attempt > 1) {
      stats.retried++;
      if (counts !== undefined) counts.retried++;
    }
    const context = new TryContext(attempt, signal);
    try {
      let result = schema["~standard"].validate(event.data);
      if (result instanceof Promise) result = await result;
      if (result.issues !== undefined) {
        // Data that fails its schema never passes: no retry can help.
        const invalid = new EventValidationError(
          event.type,
          "consume",
          result.issues,
        );
        return this.#deadLetter(
          counts,
          entry,
          event,
          attempt,
          "invalid-data",
          invalid,
        );
      }
      if (result.value !== event.data) {
        event = { ...event, data: result.value };
      }
      const pending = startTry(entry, event, context);
      if (pending !== undefined) await pending;
      return this.#completed(counts);
    } catch (error) {
      return this.#failed(counts, entry, event, attempt, signal, error);
    } finally {
      stats.inFlight--;
      context.done();
    }
  }

  /** {@linkcode #failed}, then the try ends: no longer in flight. */
  #failedTry(
    context: TryContext,
    counts: HandlerStats | undefined,
    entry: Entry,
    event: Event,
    signal: AbortSignal | undefined,
    error: unknown,
  ): DeliveryResult {
    try {
      const { attempt } = context;
      return this.#failed(counts, entry, event, attempt, signal, error);
    } finally {
      this.stats.inFlight--;
      context.done();
    }
  }

  #completed(counts: HandlerStats | undefined): DeliveryResult {
    this.stats.completed++;
    if (counts !== undefined) counts.completed++;
    return COMPLETED;
  }

  /** What a try that threw `error` leads to: abandoned, retry or dead letter. */
  #failed(
    counts: HandlerStats | undefined,
    entry: Entry,
    event: Event,
    attempt: number,
    signal: AbortSignal | undefined,
    error: unknown,
  ): DeliveryResult {
    if (signal?.aborted) return { status: "abandoned", error };
    this.stats.failed++;
    if (counts !== undefined) counts.failed++;
    const { retry } = entry;
    if (isNonRetriable(error)) {
      const reason = "not-retriable";
      return this.#deadLetter(counts, entry, event, attempt, reason, error);
    }
    if (attempt >= retry.attempts) {
      return this.#deadLetter(counts, entry, event, attempt, "failed", error);
    }
    const delay = backoffDelay(retry, attempt);
    this.#logger.warn(
      `Handler "${entry.name}" failed on "${event.type}" (id "${event.id}"), try ${attempt} of ${retry.attempts}, retrying in ${delay} ms: ${
        describeError(error)
      }`,
      { error, event: event.id, handler: entry.name, attempt },
    );
    return { status: "retry", delay, error };
  }

  /** Gives a delivery up: counted, reported once, copied by the backend. */
  #deadLetter(
    counts: HandlerStats | undefined,
    entry: Entry,
    event: Event,
    attempts: number,
    reason: DeadLetterReason,
    cause: unknown,
  ): DeliveryResult {
    this.stats.deadLettered++;
    if (counts !== undefined) counts.deadLettered++;
    const error = new DeadLetterError(event, entry.name, attempts, {
      reason,
      cause,
    });
    if (this.#onError === undefined) {
      this.#logger.error(error.message, { error, event: event.id });
    } else callSafely(this.#logger, "onError", this.#onError, error, event);
    return { status: "dead-letter", error };
  }
}

/** Whether `error`, or an error in its chain of causes, is a NonRetriableError. */
function isNonRetriable(error: unknown): boolean {
  for (let depth = 0; depth < 16 && error instanceof Error; depth++) {
    if (error instanceof NonRetriableError) return true;
    error = error.cause;
  }
  return false;
}
