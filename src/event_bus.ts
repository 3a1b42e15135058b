// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * The event bus: typed events, sync handlers run inline, async handlers
 * handed to a backend.
 *
 * @module
 */

import type {
  AsyncBackend,
  CloseOptions,
  CloseReport,
  ConsumerSpec,
  Delivery,
  DeliveryResult,
  Logger,
} from "./backend.ts";
import {
  DeadLetterError,
  describeError,
  EventBusClosedError,
  HandlerError,
  HandlerTimeoutError,
} from "./errors.ts";
import {
  assertEventType,
  assertJsonSafe,
  type Event,
  makeEvent,
} from "./event.ts";
import { backoffDelay, resolveRetryPolicy, type RetryPolicy } from "./retry.ts";
import { ACCEPTED, WorkerPool } from "./worker_pool.ts";

const COMPLETED: DeliveryResult = Object.freeze({ status: "completed" });

/**
 * A map from event type to payload type. Use a type alias, not an interface:
 * an interface does not satisfy `Record<string, unknown>`.
 *
 * @example Declaring the events of an application
 * ```ts
 * import { EventBus } from "@eventbus/core";
 * type AppEvents = { "user.signup": { id: string }; "cache.cleared": undefined };
 * const bus = new EventBus<AppEvents>();
 * await bus.close();
 * ```
 */
export type EventMap = Record<string, unknown>;

/**
 * A handler: receives the event and a context with the try's `signal` and
 * `attempt`. Pass `ctx.signal` to every I/O call so timeouts and `close()`
 * really stop it.
 *
 * @typeParam T The payload type.
 * @typeParam K The event type name.
 *
 * @example A typed handler kept in a variable
 * ```ts
 * import { EventBus, type Handler } from "@eventbus/core";
 * type Events = { "user.signup": { email: string } };
 * const welcome: Handler<Events["user.signup"], "user.signup"> = (event, ctx) => {
 *   ctx.signal.throwIfAborted(); // pass ctx.signal to the mailer's I/O
 *   console.assert(event.data.email.includes("@"));
 * };
 * const bus = new EventBus<Events>();
 * bus.subscribe("user.signup", welcome, { async: true, name: "welcome" });
 * await bus.emit("user.signup", { email: "ada@example.com" });
 * await bus.close();
 * ```
 */
export type Handler<T, K extends string> = (
  event: Event<T, K>,
  ctx: HandlerContext,
) => void | Promise<void>;

/**
 * What a handler gets beside the event.
 *
 * @example Reading the attempt and honouring the signal
 * ```ts
 * import { EventBus } from "@eventbus/core";
 * const bus = new EventBus({
 *   logger: { debug() {}, info() {}, warn() {}, error: console.error },
 * });
 * const attempts: number[] = [];
 * bus.subscribe("job.run", (_event, ctx) => {
 *   attempts.push(ctx.attempt);
 *   if (ctx.attempt === 1) throw new Error("transient");
 *   ctx.signal.throwIfAborted(); // pass ctx.signal to fetch() and other I/O
 * }, { async: true, name: "runner", retry: { attempts: 2, backoff: { initial: 1 } } });
 * await bus.emit("job.run", {});
 * await bus.close();
 * console.assert(attempts.join() === "1,2");
 * ```
 */
export interface HandlerContext {
  /** Aborted on timeout (with `HandlerTimeoutError`) or at the close deadline. */
  readonly signal: AbortSignal;
  /** This try's number, starting at 1. */
  readonly attempt: number;
}

/**
 * Options of {@linkcode EventBus}.
 *
 * @example A bus with its own pool, logger, timeout, retries and onError
 * ```ts
 * import { EventBus, WorkerPool } from "@eventbus/core";
 * const bus = new EventBus({
 *   backend: new WorkerPool({ workers: 4 }),
 *   source: "billing",
 *   logger: console,
 *   handlerTimeout: 10_000,
 *   retry: { attempts: 5, backoff: { initial: 200 } },
 *   onError: (error, event) => console.error(`gave up on ${event.id}: ${error.message}`),
 * });
 * await bus.close();
 * ```
 */
export interface EventBusOptions {
  /**
   * Where async handlers' events go.
   * @default {new WorkerPool()}
   */
  backend?: AsyncBackend;
  /**
   * The `source` of every event this bus creates.
   * @default {"eventbus"}
   */
  source?: string;
  /**
   * Receives warnings (tries that will be retried) and errors.
   * @default {console for warn and error, nothing for debug and info}
   */
  logger?: Logger;
  /**
   * Default timeout of every handler, in ms.
   * @default {none}
   */
  handlerTimeout?: number;
  /**
   * Default retry policy of async handlers.
   * @default {{ attempts: 3, backoff: { initial: 100, max: 30000, multiplier: 2, jitter: true } }}
   */
  retry?: RetryPolicy;
  /**
   * Called once per dead-lettered delivery. Without it, dead letters go to
   * the logger at error level.
   */
  onError?: (error: HandlerError | DeadLetterError, event: Event) => void;
}

/**
 * Options of {@linkcode EventBus.subscribe}.
 *
 * @example An async handler with a name, a timeout and a retry policy
 * ```ts
 * import { EventBus } from "@eventbus/core";
 * const bus = new EventBus<{ "image.uploaded": { url: string } }>();
 * const controller = new AbortController();
 * bus.subscribe("image.uploaded", (event, { signal }) => {
 *   signal.throwIfAborted(); // resize event.data.url, passing signal on
 *   console.assert(event.data.url.length > 0);
 * }, {
 *   async: true,
 *   name: "thumbnailer",
 *   timeout: 30_000,
 *   retry: { attempts: 5, backoff: { initial: 500, max: 60_000 } },
 *   signal: controller.signal,
 * });
 * controller.abort(); // unsubscribes
 * await bus.close();
 * ```
 */
export interface SubscribeOptions {
  /**
   * Run on the async backend instead of inline.
   * @default {false}
   */
  async?: boolean;
  /**
   * Stable handler name: the consumer-group name on brokers. Subscriptions
   * sharing a name compete for events; different names each get every event.
   * @default {"<type>#<n>", n counting this bus's async subscriptions to the type}
   */
  name?: string;
  /**
   * Timeout of each try, in ms; overrides the bus's `handlerTimeout`.
   * @default {the bus's handlerTimeout}
   */
  timeout?: number;
  /**
   * Retry policy (async handlers only).
   * @default {the bus's retry}
   */
  retry?: RetryPolicy;
  /** Unsubscribes when aborted. */
  signal?: AbortSignal;
}

/**
 * A subscription; `using` it unsubscribes at the end of the scope.
 *
 * @example Unsubscribing at the end of a scope
 * ```ts
 * import { EventBus } from "@eventbus/core";
 * const bus = new EventBus();
 * {
 *   using _sub = bus.subscribe("tick", () => {});
 * }
 * await bus.close();
 * ```
 */
export interface Subscription extends Disposable {
  /** Stops the handler from receiving events; calling it twice is harmless. */
  unsubscribe(): void;
}

/**
 * Options of {@linkcode EventBus.emit} and {@linkcode EventBus.emitSync}.
 *
 * @example Emitting with an id, metadata and a signal
 * ```ts
 * import { EventBus } from "@eventbus/core";
 * const bus = new EventBus<{ "order.placed": { total: number } }>();
 * const controller = new AbortController(); // abort to stop waiting for room
 * const event = await bus.emit("order.placed", { total: 3 }, {
 *   id: "order-42",
 *   metadata: { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" },
 *   signal: controller.signal,
 * });
 * console.assert(event.id === "order-42");
 * await bus.close();
 * ```
 */
export interface EmitOptions {
  /**
   * The event id; emitting the same id twice to a broker delivers it once
   * (inside the broker's de-duplication window).
   * @default {a new UUID v7}
   */
  id?: string;
  /** String attributes, keys `[a-z0-9]{1,20}` (CloudEvents extensions). */
  metadata?: Record<string, string>;
  /** Stops waiting for the backend (a full queue, a broker); rejects with its reason. */
  signal?: AbortSignal;
}

/**
 * Options of {@linkcode EventBus.listen}.
 *
 * @example Consuming until a signal aborts
 * ```ts
 * import { EventBus } from "@eventbus/core";
 * import { RecordingBackend } from "@eventbus/core/testing";
 * const bus = new EventBus({ backend: new RecordingBackend() });
 * const controller = new AbortController();
 * bus.subscribe("job.run", () => {}, { async: true, name: "runner" });
 * await bus.listen({ signal: controller.signal });
 * controller.abort(); // detaches the consumers
 * await bus.close();
 * ```
 */
export interface ListenOptions {
  /** Stops consuming when aborted. */
  signal?: AbortSignal;
}

/**
 * Counters of {@linkcode EventBus.stats}.
 *
 * @example Reading the counters after close()
 * ```ts
 * import { type BusStats, EventBus } from "@eventbus/core";
 * const bus = new EventBus();
 * bus.subscribe("job.run", () => {}, { async: true, name: "runner" });
 * await bus.emit("job.run", {});
 * await bus.close();
 * const stats: BusStats = bus.stats();
 * console.assert(stats.completed === 1 && stats.queued === 0 && stats.inFlight === 0);
 * ```
 */
export interface BusStats {
  /** Deliveries waiting in this process (for a worker or a retry delay). */
  queued: number;
  /** Async handler calls running now. */
  inFlight: number;
  /** Deliveries that succeeded, since start. */
  completed: number;
  /** Failed tries, since start. */
  failed: number;
  /** Tries after the first, since start. */
  retried: number;
  /** Deliveries given up, since start. */
  deadLettered: number;
}

/**
 * The event bus.
 *
 * - `emitSync` runs every handler of the type (sync and async) inline, in
 *   subscription order, once each, and rejects with `HandlerError` holding
 *   every failure.
 * - `emit` runs the sync handlers inline, then hands the event once to the
 *   backend, and resolves when the backend accepted it.
 *
 * @typeParam M The event map: type name to payload type.
 *
 * @example Sync gate and async work
 * ```ts
 * import { EventBus } from "@eventbus/core";
 *
 * type Events = { "user.signup": { email: string } };
 * await using bus = new EventBus<Events>();
 * const sent: string[] = [];
 * bus.subscribe("user.signup", (event) => {
 *   if (!event.data.email.includes("@")) throw new Error("invalid email");
 * });
 * bus.subscribe("user.signup", (event) => {
 *   sent.push(event.data.email);
 * }, { async: true, name: "welcome-mail" });
 *
 * await bus.emit("user.signup", { email: "ada@example.com" });
 * await bus.close();
 * console.assert(sent.length === 1);
 * ```
 */
export class EventBus<M extends EventMap = EventMap>
  implements AsyncDisposable {
  #backend: AsyncBackend;
  #source: string;
  #logger: Logger;
  #handlerTimeout: number | undefined;
  #retry: RetryPolicy;
  #onError: EventBusOptions["onError"];
  #subscriptions = new Map<string, Entry[]>();
  #names = new Map<string, string>();
  #ordinals = new Map<string, number>();
  #listening: AbortSignal | undefined;
  #closing: Promise<CloseReport> | undefined;
  #stats = {
    inFlight: 0,
    completed: 0,
    failed: 0,
    retried: 0,
    deadLettered: 0,
  };

  /**
   * Creates a bus; without a `backend` it runs async handlers on a new
   * {@linkcode WorkerPool}.
   *
   * @param options Backend, source, logger, timeout, retry and `onError`.
   * @throws {RangeError} When `handlerTimeout` or `retry` is out of range.
   */
  constructor(options: EventBusOptions = {}) {
    const {
      backend = new WorkerPool(),
      source = "eventbus",
      logger = DEFAULT_LOGGER,
      handlerTimeout,
      retry,
      onError,
    } = options;
    checkTimeout(handlerTimeout, "handlerTimeout");
    this.#backend = backend;
    this.#source = source;
    this.#logger = logger;
    this.#handlerTimeout = handlerTimeout;
    this.#retry = resolveRetryPolicy(retry);
    this.#onError = onError;
  }

  /** The backend this bus hands async events to. */
  get backend(): AsyncBackend {
    return this.#backend;
  }

  /**
   * Adds a handler for one event type.
   *
   * @typeParam K The event type.
   * @param type The event type, such as `"user.signup"`.
   * @param handler Called with the event and a context.
   * @param options `async`, `name`, `timeout`, `retry`, `signal`.
   * @returns A subscription; `unsubscribe()` or `using` removes the handler.
   * @throws {InvalidEventTypeError} When `type` is not a valid event type.
   * @throws {TypeError} When `handler` is not a function, or `name` is
   *   already used by this bus for another event type.
   * @throws {RangeError} When `timeout` or `retry` is out of range.
   * @throws {EventBusClosedError} After `close()`.
   *
   * @example Unsubscribing with a signal
   * ```ts
   * import { EventBus } from "@eventbus/core";
   * const bus = new EventBus<{ "order.placed": { total: number } }>();
   * const controller = new AbortController();
   * bus.subscribe("order.placed", (event) => {
   *   console.assert(event.data.total === 3);
   * }, { signal: controller.signal });
   * await bus.emit("order.placed", { total: 3 });
   * controller.abort();
   * await bus.close();
   * ```
   */
  subscribe<K extends keyof M & string>(
    type: K,
    handler: Handler<M[K], K>,
    options: SubscribeOptions = {},
  ): Subscription {
    assertEventType(type);
    if (typeof handler !== "function") {
      throw new TypeError(
        `Cannot subscribe to "${type}": handler must be a function, got ${typeof handler}`,
      );
    }
    if (this.#closing !== undefined) throw new EventBusClosedError();
    const { async = false, timeout, retry, signal } = options;
    checkTimeout(timeout, "timeout");
    const entry: Entry = {
      type,
      handler: handler as Handler<unknown, string>,
      async,
      name: "",
      timeout: timeout ?? this.#handlerTimeout,
      retry: resolveRetryPolicy(retry, this.#retry),
      detach: undefined,
    };
    if (async) {
      entry.name = options.name ?? this.#defaultName(type);
      const known = this.#names.get(entry.name);
      if (known !== undefined && known !== type) {
        throw new TypeError(
          `Cannot subscribe "${entry.name}" to "${type}": that name already handles "${known}", give each handler its own name`,
        );
      }
      this.#names.set(entry.name, type);
    } else {
      entry.name = options.name ?? (handler.name || "handler");
    }
    if (signal?.aborted) return { unsubscribe() {}, [Symbol.dispose]() {} };

    const list = this.#subscriptions.get(type) ?? [];
    this.#subscriptions.set(type, [...list, entry]); // copy on write: emits iterate a snapshot
    if (async && (!this.#backend.remote || this.#listening !== undefined)) {
      this.#attach(entry).catch((error: unknown) =>
        this.#logger.error(
          `Cannot consume "${type}" for handler "${entry.name}": ${
            describeError(error)
          }`,
          { error },
        )
      );
    }

    let done = false;
    const unsubscribe = (): void => {
      if (done) return;
      done = true;
      signal?.removeEventListener("abort", unsubscribe);
      entry.detach?.abort();
      const current = this.#subscriptions.get(type) ?? [];
      const rest = current.filter((e) => e !== entry);
      if (rest.length > 0) this.#subscriptions.set(type, rest);
      else this.#subscriptions.delete(type);
    };
    signal?.addEventListener("abort", unsubscribe, { once: true });
    return { unsubscribe, [Symbol.dispose]: unsubscribe };
  }

  /**
   * Runs the sync handlers of `type` inline, in subscription order, then
   * hands the event once to the backend when there are async handlers for it
   * here (or always, when the backend is remote). Resolves when the backend
   * accepted the event, without waiting for async handlers.
   *
   * @typeParam K The event type.
   * @param type The event type.
   * @param data The payload (JSON-safe when the backend is remote).
   * @param options Id, metadata and signal.
   * @returns The event, once accepted.
   * @throws {InvalidEventTypeError} When `type` is not valid; nothing ran.
   * @throws {SerializationError} When the backend is remote and `data` is not
   *   JSON-safe; nothing ran.
   * @throws {EventBusClosedError} After `close()`.
   * @throws {QueueFullError} When the pool's queue is full in `"reject"` mode.
   * @throws {BackendError} When a broker did not take the event.
   * @throws {HandlerError} When a sync handler failed; the event was still
   *   handed to the backend.
   *
   * @example Emitting with metadata
   * ```ts
   * import { EventBus } from "@eventbus/core";
   * const bus = new EventBus<{ "user.signup": { id: string } }>();
   * const event = await bus.emit("user.signup", { id: "u1" }, { metadata: { traceparent: "00-a-b-01" } });
   * console.assert(event.metadata.traceparent === "00-a-b-01");
   * await bus.close();
   * ```
   */
  emit<K extends keyof M & string>(
    type: K,
    data: M[K],
    options?: EmitOptions,
  ): Promise<Event<M[K], K>> {
    const entries = this.#subscriptions.get(type);
    if (entries !== undefined && hasSyncEntry(entries)) {
      return this.#emitAfterSyncHandlers(type, data, options);
    }
    // No sync handler to run: no await of our own, and no extra turn when
    // the backend took the event at once (the pool's ACCEPTED).
    try {
      const event = this.#prepare(type, data, options);
      if (entries === undefined && !this.#backend.remote) {
        return Promise.resolve(event);
      }
      if (this.#closing !== undefined) throw new EventBusClosedError(type);
      const accepted = this.#backend.publish(event, options);
      return accepted === ACCEPTED
        ? Promise.resolve(event)
        : accepted.then(() => event);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  async #emitAfterSyncHandlers<K extends keyof M & string>(
    type: K,
    data: M[K],
    options: EmitOptions | undefined,
  ): Promise<Event<M[K], K>> {
    const event = this.#prepare(type, data, options);
    const entries = this.#subscriptions.get(type);
    let errors: unknown[] | undefined;
    let hasAsync = false;
    if (entries !== undefined) {
      for (const entry of entries) {
        if (entry.async) {
          hasAsync = true;
          continue;
        }
        let error = this.#runInline(entry, event, options?.signal);
        if (error instanceof Pending) error = await error.promise;
        if (error !== NO_ERROR) (errors ??= []).push(error);
      }
    }
    if (hasAsync || this.#backend.remote) {
      if (this.#closing !== undefined) throw new EventBusClosedError(type);
      await this.#backend.publish(event, options);
    }
    if (errors !== undefined) throw new HandlerError(event, errors);
    return event;
  }

  /**
   * Runs every handler of `type` in this process, sync and async, inline, in
   * subscription order, once each (no retry) with its timeout. Never touches
   * the backend. Use it for gates: rate limits, validation.
   *
   * @typeParam K The event type.
   * @param type The event type.
   * @param data The payload.
   * @param options Id, metadata and signal.
   * @returns The event, after every handler finished.
   * @throws {InvalidEventTypeError} When `type` is not valid; nothing ran.
   * @throws {EventBusClosedError} After `close()`.
   * @throws {HandlerError} Holding every failure, when any handler failed.
   *
   * @example A rate-limit gate
   * ```ts
   * import { EventBus, HandlerError } from "@eventbus/core";
   * const bus = new EventBus<{ "user.login.before": { user: string } }>();
   * bus.subscribe("user.login.before", (event) => {
   *   if (event.data.user === "mallory") throw new Error("rate limited");
   * });
   * await bus.emitSync("user.login.before", { user: "ada" });
   * const denied = await bus.emitSync("user.login.before", { user: "mallory" })
   *   .then(() => false, (error) => error instanceof HandlerError);
   * console.assert(denied);
   * await bus.close();
   * ```
   */
  async emitSync<K extends keyof M & string>(
    type: K,
    data: M[K],
    options?: EmitOptions,
  ): Promise<Event<M[K], K>> {
    const event = this.#prepare(type, data, options, false);
    const entries = this.#subscriptions.get(type);
    let errors: unknown[] | undefined;
    if (entries !== undefined) {
      for (const entry of entries) {
        let error = this.#runInline(entry, event, options?.signal);
        if (error instanceof Pending) error = await error.promise;
        if (error !== NO_ERROR) (errors ??= []).push(error);
      }
    }
    if (errors !== undefined) throw new HandlerError(event, errors);
    return event;
  }

  /**
   * Starts consuming: with a remote backend, attaches one consumer per async
   * handler (and per later subscription) and resolves once they are ready.
   * With an in-process backend it resolves at once.
   *
   * @param options The signal that stops consuming.
   * @returns Once consumers are ready.
   * @throws {EventBusClosedError} After `close()`.
   * @throws {BackendError} When the broker cannot attach a consumer.
   *
   * @example Starting to consume
   * ```ts
   * import { EventBus } from "@eventbus/core";
   * const bus = new EventBus();
   * await bus.listen();
   * await bus.close();
   * ```
   */
  async listen(options: ListenOptions = {}): Promise<void> {
    if (this.#closing !== undefined) throw new EventBusClosedError();
    if (!this.#backend.remote || this.#listening !== undefined) return;
    const { signal } = options;
    signal?.throwIfAborted();
    this.#listening = signal ?? new AbortController().signal;
    const pending: Promise<void>[] = [];
    for (const entries of this.#subscriptions.values()) {
      for (const entry of entries) {
        if (entry.async && entry.detach === undefined) {
          pending.push(this.#attach(entry));
        }
      }
    }
    await Promise.all(pending);
  }

  /**
   * Current levels and totals since start; cheap to call.
   *
   * @returns A fresh snapshot.
   *
   * @example Reading the counters
   * ```ts
   * import { EventBus } from "@eventbus/core";
   * const bus = new EventBus();
   * console.assert(bus.stats().completed === 0);
   * await bus.close();
   * ```
   */
  stats(): BusStats {
    return { queued: this.#backend.queued ?? 0, ...this.#stats };
  }

  /**
   * Stops intake, lets queued and in-flight deliveries finish until
   * `timeout` (default 30 000 ms), then aborts the remaining handlers'
   * signals and resolves without waiting for handlers that ignore the abort.
   * Closing twice is harmless and returns the same report.
   *
   * @param options Deadline and signal.
   * @returns `completed` (as `stats().completed`) and the accepted events
   *   that were neither finished nor safe on a broker.
   *
   * @example Closing once the work is done
   * ```ts
   * import { EventBus } from "@eventbus/core";
   * const bus = new EventBus();
   * bus.subscribe("job.run", async () => {}, { async: true, name: "runner" });
   * await bus.emit("job.run", {});
   * const report = await bus.close({ timeout: 5000 });
   * console.assert(report.completed === 1 && report.abandoned.length === 0);
   * ```
   */
  close(options?: CloseOptions): Promise<CloseReport> {
    this.#closing ??= this.#close(options);
    return this.#closing;
  }

  /** Closes the bus with the default timeout. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #close(options: CloseOptions | undefined): Promise<CloseReport> {
    let abandoned: Event[] = [];
    try {
      ({ abandoned } = await this.#backend.close(options));
    } catch (error) {
      this.#logger.error(
        `Cannot close backend "${this.#backend.name}": ${describeError(error)}`,
        { error },
      );
    }
    return { completed: this.#stats.completed, abandoned };
  }

  #prepare<T, K extends string>(
    type: K,
    data: T,
    options: EmitOptions | undefined,
    forBackend = true,
  ): Event<T, K> {
    assertEventType(type);
    if (this.#closing !== undefined) throw new EventBusClosedError(type);
    options?.signal?.throwIfAborted();
    if (forBackend && this.#backend.remote) assertJsonSafe(data);
    return makeEvent(
      type,
      data,
      options?.id,
      this.#source,
      options?.metadata,
    );
  }

  #defaultName(type: string): string {
    const n = (this.#ordinals.get(type) ?? 0) + 1;
    this.#ordinals.set(type, n);
    return `${type}#${n}`;
  }

  #attach(entry: Entry): Promise<void> {
    const detach = new AbortController();
    entry.detach = detach;
    const spec: ConsumerSpec = {
      name: entry.name,
      type: entry.type,
      attempts: entry.retry.attempts,
      timeout: entry.timeout,
    };
    const signal = this.#listening === undefined
      ? detach.signal
      : AbortSignal.any([detach.signal, this.#listening]);
    return this.#backend.consume(
      (delivery) => this.#deliver(entry, delivery),
      { consumers: [spec], signal, logger: this.#logger },
    );
  }

  /**
   * Runs a handler inline once. Returns its error or NO_ERROR at once when
   * it returned or threw synchronously (no promise, no microtask), else a
   * Pending whose promise resolves with its error or NO_ERROR.
   */
  #runInline(
    entry: Entry,
    event: Event,
    signal: AbortSignal | undefined,
  ): unknown {
    const context = new TryContext(1, signal);
    let result: void | Promise<void>;
    try {
      result = entry.handler(event, context);
    } catch (error) {
      context.done();
      return error;
    }
    if (!isPromiseLike(result)) {
      context.done();
      return NO_ERROR;
    }
    return new Pending(
      settleTry(entry, event, context, result).then(
        () => NO_ERROR,
        (error: unknown) => error,
      ).finally(() => context.done()),
    );
  }

  async #deliver(entry: Entry, delivery: Delivery): Promise<DeliveryResult> {
    const { event, attempt, signal } = delivery;
    const stats = this.#stats;
    stats.inFlight++;
    if (attempt > 1) stats.retried++;
    const context = new TryContext(attempt, signal);
    try {
      await runTry(entry, event, context);
      stats.completed++;
      return COMPLETED;
    } catch (error) {
      if (signal?.aborted) return { status: "abandoned", error };
      stats.failed++;
      const { retry } = entry;
      if (attempt < retry.attempts) {
        const delay = backoffDelay(retry, attempt);
        this.#logger.warn(
          `Handler "${entry.name}" failed on "${event.type}" (id "${event.id}"), try ${attempt} of ${retry.attempts}, retrying in ${delay} ms: ${
            describeError(error)
          }`,
          { error, event: event.id, handler: entry.name, attempt },
        );
        return { status: "retry", delay, error };
      }
      stats.deadLettered++;
      const dead = new DeadLetterError(event, entry.name, attempt, {
        cause: error,
      });
      this.#report(dead, event);
      return { status: "dead-letter", error: dead };
    } finally {
      stats.inFlight--;
      context.done();
    }
  }

  #report(error: DeadLetterError, event: Event): void {
    if (this.#onError === undefined) {
      this.#logger.error(error.message, { error, event: event.id });
      return;
    }
    try {
      this.#onError(error, event);
    } catch (thrown) {
      this.#logger.error(`onError threw: ${describeError(thrown)}`, {
        error: thrown,
      });
    }
  }
}

interface Entry {
  readonly type: string;
  readonly handler: Handler<unknown, string>;
  readonly async: boolean;
  name: string;
  readonly timeout: number | undefined;
  readonly retry: RetryPolicy;
  detach: AbortController | undefined;
}

const NO_ERROR: unique symbol = Symbol("no error");

/** An inline try still running: its promise resolves with the error or NO_ERROR. */
class Pending {
  readonly promise: Promise<unknown>;
  constructor(promise: Promise<unknown>) {
    this.promise = promise;
  }
}

const DEFAULT_LOGGER: Logger = {
  debug() {},
  info() {},
  warn: (message) => console.warn(message),
  error: (message) => console.error(message),
};

/**
 * A try's context. The signal is created on first read, so handlers that
 * never look at it cost no AbortController.
 */
class TryContext implements HandlerContext {
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
 * Calls the handler once. Resolves when it succeeded; rejects with its
 * error, or with `HandlerTimeoutError` once its timeout expired (the
 * context's signal is aborted with that error).
 */
function runTry(
  entry: Entry,
  event: Event,
  context: TryContext,
): Promise<void> {
  let result: void | Promise<void>;
  try {
    result = entry.handler(event, context);
  } catch (error) {
    return Promise.reject(error);
  }
  if (!isPromiseLike(result)) return Promise.resolve();
  return settleTry(entry, event, context, result);
}

/**
 * Waits for a handler's promise, within its timeout: rejects with
 * `HandlerTimeoutError` once the timeout expired (the context's signal is
 * aborted with that error).
 */
function settleTry(
  entry: Entry,
  event: Event,
  context: TryContext,
  result: Promise<void>,
): Promise<void> {
  const { timeout } = entry;
  if (timeout === undefined) return Promise.resolve(result);
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      const error = new HandlerTimeoutError(event.type, entry.name, timeout);
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

function hasSyncEntry(entries: readonly Entry[]): boolean {
  for (const entry of entries) if (!entry.async) return true;
  return false;
}

function isPromiseLike(value: unknown): value is Promise<void> {
  return value !== null && typeof value === "object" &&
    typeof (value as { then?: unknown }).then === "function";
}

function checkTimeout(value: number | undefined, name: string): void {
  if (value === undefined) return;
  if (!Number.isFinite(value) || value <= 0) {
    throw new RangeError(
      `Cannot use ${name}: it must be a positive number of milliseconds, got ${value}`,
    );
  }
}
