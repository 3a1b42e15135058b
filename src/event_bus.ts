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
  Delivery,
  DeliveryResult,
  Logger,
} from "./backend.ts";
import { describeError, EventBusClosedError, HandlerError } from "./errors.ts";
import {
  assertEventType,
  assertJsonSafe,
  type Event,
  makeEvent,
} from "./event.ts";
import { resolveRetryPolicy, type RetryPolicy } from "./retry.ts";
import type { EventSchemas } from "./schema.ts";
import type {
  BusStats,
  EmitMap,
  EmitOptions,
  EventBusOptions,
  EventMap,
  Handler,
  HandlerMap,
  ListenOptions,
  SubscribeOptions,
  Subscription,
} from "./types.ts";
import { WorkerPool } from "./worker_pool.ts";
import { DeliveryEngine } from "./_delivery.ts";
import { ACCEPTED } from "./_accepted.ts";
import {
  DIRECT,
  type DirectSink,
  type MaybeDirect,
  settleInto,
} from "./_direct.ts";
import { Attachments } from "./_attachments.ts";
import { checkValidate, validated } from "./_validate.ts";
import { Instrumenter } from "./_instrumentation.ts";
import { CONSOLE_LOGGER, guardLogger } from "./_logger.ts";
import { type Entry, Registry } from "./_registry.ts";
import { type Failures, runEach } from "./_try.ts";
// Shared: Node 20 builds each DOMException in JS and keeps it in a WeakMap.
const UNSUBSCRIBED = new DOMException("The subscription ended", "AbortError");

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
export class EventBus<
  M extends EventMap = EventMap,
  S extends EventSchemas | undefined = undefined,
> implements AsyncDisposable {
  #backend: AsyncBackend;
  #source: string;
  #logger: Logger;
  #handlerTimeout: number | undefined;
  #retry: RetryPolicy;
  #engine: DeliveryEngine;
  /** The schemas checked at emit, when validation at emit is on. */
  #schemas: EventSchemas | undefined;
  #instrumenter: Instrumenter | undefined;
  #registry = new Registry();
  #attachments: Attachments;
  /** How deep this bus is inside `backend.publish()` (see #deliver). */
  #publishing = 0;
  #closing: Promise<CloseReport> | undefined;

  /**
   * Creates a bus; without a `backend` it runs async handlers on a new
   * {@linkcode WorkerPool}.
   *
   * @param options Backend, source, logger, timeout, retry and `onError`.
   * @throws {RangeError} When `handlerTimeout` or `retry` is out of range.
   */
  constructor(options: EventBusOptions<S> = {}) {
    const {
      backend = new WorkerPool(),
      source = "eventbus",
      logger = CONSOLE_LOGGER,
      handlerTimeout,
      retry,
      onError,
      schemas,
      validate = "both",
      instrumentation,
    } = options;
    checkValidate(validate);
    checkTimeout(handlerTimeout, "handlerTimeout");
    let consumeSchemas: EventSchemas | undefined;
    this.#backend = backend;
    this.#source = source;
    this.#logger = guardLogger(logger);
    this.#attachments = new Attachments(
      backend,
      this.#logger,
      (entry) => {
        const deliver: MaybeDirect = (delivery) =>
          this.#deliver(entry, delivery);
        deliver[DIRECT] = (delivery, sink, run) =>
          this.#deliverTo(entry, delivery, sink, run);
        return deliver;
      },
    );
    this.#handlerTimeout = handlerTimeout;
    this.#retry = resolveRetryPolicy(retry);
    if (schemas !== undefined && validate !== "none") {
      const atConsume = validate === "consume" ||
        (validate === "both" && backend.remote);
      if (validate !== "consume") this.#schemas = schemas;
      if (atConsume) consumeSchemas = schemas;
    }
    const by = instrumentation === undefined
      ? undefined
      : new Instrumenter(instrumentation, this.#logger);
    this.#instrumenter = by;
    this.#engine = new DeliveryEngine(
      this.#logger,
      onError,
      consumeSchemas,
      by && { by, backend },
    );
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
  subscribe<K extends keyof HandlerMap<M, S> & string>(
    type: K,
    handler: Handler<HandlerMap<M, S>[K], K>,
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
    const name = async
      ? this.#registry.asyncName(type, options.name)
      : options.name ?? (handler.name || "handler");
    const entry: Entry = {
      type,
      handler: async || this.#instrumenter === undefined
        ? handler as Handler<unknown, string>
        : this.#instrumenter.inline(handler as Handler<unknown, string>, name),
      async,
      name,
      named: options.name !== undefined,
      timeout: timeout ?? this.#handlerTimeout,
      retry: resolveRetryPolicy(retry, this.#retry),
      detach: undefined,
      attached: undefined,
    };
    if (signal?.aborted) return { unsubscribe() {}, [Symbol.dispose]() {} };
    this.#registry.add(entry);
    if (async) this.#engine.track(name);
    if (async && this.#attachments.eager) this.#attachments.attach(entry);
    let done = false;
    const unsubscribe = (): void => {
      if (done) return;
      done = true;
      signal?.removeEventListener("abort", unsubscribe);
      entry.detach?.abort(UNSUBSCRIBED);
      if (this.#registry.remove(entry)) this.#engine.forget(entry.name);
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
  emit<K extends keyof EmitMap<M, S> & string>(
    type: K,
    data: EmitMap<M, S>[K],
    options?: EmitOptions,
  ): Promise<Event<EmitMap<M, S>[K], K>> {
    try {
      const event = this.#prepare(type, data, options);
      const schema = this.#schemas?.[type];
      if (schema === undefined) return this.#emitValid(event, event, options);
      const result = schema["~standard"].validate(data);
      if (result instanceof Promise) {
        return result.then((known) =>
          this.#emitValid(event, validated(event, known), options)
        );
      }
      return this.#emitValid(event, validated(event, result), options);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Emits an event whose data passed its schema (or has none): runs the
   * sync handlers with `local` (the schema's output), then hands the event
   * on — `wire` (the input form) to a remote backend, `local` in-process.
   */
  #emitValid<T, K extends string>(
    wire: Event<T, K>,
    local: Event<unknown, K>,
    options: EmitOptions | undefined,
  ): Promise<Event<T, K>> {
    const remote = this.#backend.remote;
    if (remote) assertJsonSafe(wire.data);
    const entries = this.#registry.get(wire.type);
    const failures = entries === undefined
      ? undefined
      : runEach(entries.sync, local, options?.signal);
    const published = remote ? wire : local;
    if (failures instanceof Promise) {
      return failures.then((known) =>
        this.#handOn(published, wire, entries, known, options)
      );
    }
    return this.#handOn(published, wire, entries, failures, options);
  }

  /**
   * After the sync handlers ran: hands `published` to the backend when it
   * has async handlers here (or the backend is remote), then resolves with
   * `event` or rejects with the backend's error, else with `HandlerError`.
   */
  #handOn<T, K extends string>(
    published: Event<unknown, K>,
    event: Event<T, K>,
    entries: { readonly async: readonly Entry[] } | undefined,
    failures: Failures,
    options?: EmitOptions,
  ): Promise<Event<T, K>> {
    if (!this.#backend.remote && (entries?.async.length ?? 0) === 0) {
      return failures === undefined
        ? Promise.resolve(event)
        : Promise.reject(new HandlerError(event, failures));
    }
    if (this.#closing !== undefined) {
      return Promise.reject(new EventBusClosedError(event.type));
    }
    this.#publishing++;
    try {
      let accepted: Promise<void>;
      if (this.#instrumenter === undefined) {
        accepted = this.#backend.publish(published, options);
      } else {
        // The scope's metadata (traceparent) goes on the event published
        // and on the one emit resolves with.
        const traced = this.#instrumenter.publish(
          published,
          this.#backend,
          options,
        );
        accepted = traced.accepted;
        event = published === event
          ? traced.event as Event<T, K>
          : { ...event, metadata: traced.event.metadata };
      }
      // Taken at once: no extra turn. The closures live in helpers, so the
      // common path allocates no context for them.
      if (accepted === ACCEPTED && failures === undefined) {
        return Promise.resolve(event);
      }
      return settleEmit(accepted, event, failures);
    } finally {
      this.#publishing--;
    }
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
  async emitSync<K extends keyof EmitMap<M, S> & string>(
    type: K,
    data: EmitMap<M, S>[K],
    options?: EmitOptions,
  ): Promise<Event<EmitMap<M, S>[K], K>> {
    const event = this.#prepare(type, data, options);
    let local: Event<unknown, K> = event;
    const schema = this.#schemas?.[type];
    if (schema !== undefined) {
      const result = schema["~standard"].validate(data);
      if (result instanceof Promise) {
        result.catch(() => {});
        throw new TypeError(
          `Cannot emitSync "${type}": its schema validates asynchronously, use emit() or a synchronous schema`,
        );
      }
      local = validated(event, result);
    }
    const entries = this.#registry.get(type);
    if (entries === undefined) return event;
    let failures = runEach(entries.all, local, options?.signal);
    if (failures instanceof Promise) failures = await failures;
    if (failures !== undefined) throw new HandlerError(event, failures);
    return event;
  }

  /**
   * Starts consuming: with a remote backend, attaches one consumer per async
   * handler and resolves once every one is ready. Call it again after later
   * subscriptions: it resolves once their consumers are ready too (a
   * `subscribe()` after `listen()` starts attaching at once). Warns once for
   * each async handler without a `name`, whose consumer a broker keeps. With
   * an in-process backend it resolves at once.
   *
   * @param options The signal that stops consuming (the first call's).
   * @returns Once every async subscription's consumer is ready.
   * @throws {EventBusClosedError} After `close()`, or when `close()` comes
   *   while it waits.
   * @throws {BackendError} When the broker cannot attach a consumer; the
   *   next call tries again.
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
    const { signal } = options;
    signal?.throwIfAborted();
    if (!this.#backend.remote) return;
    await this.#attachments.listen(this.#registry.asyncEntries(), signal);
  }

  /**
   * Current levels and totals since start, bus-wide and per async handler
   * name (`handlers`); cheap to call: it copies a few numbers per handler
   * name in use. A name's counters are dropped when its last subscription
   * ends, and start from zero if it is subscribed again.
   *
   * @returns A fresh snapshot.
   *
   * @example Reading the counters
   * ```ts
   * import { EventBus } from "@eventbus/core";
   * const bus = new EventBus();
   * bus.subscribe("job.run", () => {}, { async: true, name: "runner" });
   * console.assert(bus.stats().completed === 0);
   * console.assert(bus.stats().handlers["runner"]?.completed === 0);
   * await bus.close();
   * ```
   */
  stats(): BusStats {
    return {
      queued: this.#backend.queued ?? 0,
      ...this.#engine.stats,
      handlers: this.#engine.handlerStats(),
    };
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
    this.#attachments.close();
    const report: CloseReport = { completed: 0, abandoned: [] };
    try {
      const { abandoned, waiting } = await this.#backend.close(options);
      report.abandoned = abandoned;
      if (waiting !== undefined) report.waiting = waiting;
    } catch (error) {
      this.#logger.error(
        `Cannot close backend "${this.#backend.name}": ${describeError(error)}`,
        { error },
      );
    }
    report.completed = this.#engine.stats.completed;
    return report;
  }

  #prepare<T, K extends string>(
    type: K,
    data: T,
    options: EmitOptions | undefined,
  ): Event<T, K> {
    assertEventType(type);
    if (this.#closing !== undefined) throw new EventBusClosedError(type);
    options?.signal?.throwIfAborted();
    return makeEvent(type, data, options?.id, this.#source, options?.metadata);
  }

  #deliver(entry: Entry, delivery: Delivery): Promise<DeliveryResult> {
    // A backend that delivers inside publish() must not run handler code
    // inside emit(): such a try starts on the next microtask.
    if (this.#publishing === 0) return this.#engine.deliver(entry, delivery);
    return Promise.resolve().then(() => this.#engine.deliver(entry, delivery));
  }

  #deliverTo<R>(
    entry: Entry,
    delivery: Delivery,
    sink: DirectSink<R>,
    run: R,
  ): void {
    if (this.#publishing === 0) {
      this.#engine.deliverTo(entry, delivery, sink, run);
    } else settleInto(this.#deliver(entry, delivery), sink, run);
  }
}

/**
 * Resolves with `event` once the backend accepted it, or rejects with the
 * backend's error, else with `HandlerError` when sync handlers failed.
 */
function settleEmit<E extends Event>(
  accepted: Promise<void>,
  event: E,
  failures: Failures,
): Promise<E> {
  return accepted.then(() => {
    if (failures !== undefined) throw new HandlerError(event, failures);
    return event;
  });
}

function checkTimeout(value: number | undefined, name: string): void {
  if (value === undefined) return;
  if (!Number.isFinite(value) || value <= 0) {
    throw new RangeError(
      `Cannot use ${name}: it must be a positive number of milliseconds, got ${value}`,
    );
  }
}
