// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * The types of the {@linkcode EventBus} API: event maps, handlers, their
 * context, and the options and results of the bus's methods.
 *
 * @module
 */

import type {
  AsyncBackend,
  Delivery,
  DeliveryResult,
  Logger,
} from "./backend.ts";
import type { DeadLetterError, HandlerError } from "./errors.ts";
import type { Event } from "./event.ts";
import type { RetryPolicy } from "./retry.ts";
import type {
  EventSchemas,
  SchemaInputs,
  SchemaOutputs,
  ValidateMode,
} from "./schema.ts";
// deno-lint-ignore no-unused-vars -- for {@linkcode EventBus} in the docs
import type { EventBus } from "./event_bus.ts";

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
export interface EventBusOptions<
  S extends EventSchemas | undefined = undefined,
> {
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
   * Receives warnings (tries that will be retried) and errors, as
   * `(message, attributes)`. Its failures are caught: a throwing or
   * rejecting logger changes no delivery (see the README, "Loggers").
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
   * the logger at error level. It may be `async`; a throw or a rejection is
   * logged and changes nothing else.
   */
  onError?: (
    error: HandlerError | DeadLetterError,
    event: Event,
  ) => void | Promise<void>;
  /**
   * A Standard Schema (zod, valibot, arktype, ...) per event type, or
   * `undefined` for a type without payload. The bus's event map is inferred
   * from them: `emit` takes each schema's input type, handlers receive its
   * output type. See `validate` for where data is checked.
   * @default {none: nothing is validated}
   */
  schemas?: S;
  /**
   * Where data is validated against `schemas`: at `"emit"` (rejects with
   * `EventValidationError` before any handler runs or anything is
   * published), at `"consume"` (a delivery whose data fails is
   * dead-lettered after one try without running its handler, reason
   * `invalid-data`), `"both"`, or `"none"`.
   * @default {"both"}
   */
  validate?: ValidateMode;
  /**
   * Hooks the bus calls around publishes and tries, for tracing and
   * metrics, such as `otel({ api })` from `@eventbus/core/otel`. Its
   * failures are caught and logged: they never change a delivery's result.
   * @default {none: nothing is recorded}
   */
  instrumentation?: Instrumentation;
}

/**
 * Hooks for tracing and metrics, tracing-agnostic: the bus calls `publish`
 * when `emit` hands an event to the backend, `deliver` for each try of a
 * delivery (and for a delivery dead-lettered without a try), and `inline`
 * for each sync handler run. Each returns a scope (or undefined to skip)
 * whose `end` the bus calls once with the outcome. A hook that throws is
 * logged and skipped. `otel()` from `@eventbus/core/otel` is one.
 *
 * @example Counting tries by outcome
 * ```ts
 * import { EventBus, type Instrumentation } from "@eventbus/core";
 * const outcomes: string[] = [];
 * const instrumentation: Instrumentation = {
 *   deliver: () => ({ end: (result) => void outcomes.push(result.status) }),
 * };
 * const bus = new EventBus({ instrumentation });
 * bus.subscribe("job.run", () => {}, { async: true, name: "runner" });
 * await bus.emit("job.run", {});
 * await bus.close();
 * console.assert(outcomes.join() === "completed");
 * ```
 */
export interface Instrumentation {
  /**
   * Called before `emit` hands `event` to `backend`.
   *
   * @param event The event as the caller made it.
   * @param backend The bus's backend.
   * @returns The publish's scope: metadata to add to the event (keys the
   *   caller set win) and its end.
   */
  publish?(event: Event, backend: AsyncBackend): PublishScope | undefined;
  /**
   * Called before each try of a delivery, in the process that runs it.
   *
   * @param delivery The event, handler name and attempt.
   * @param backend The backend that delivered it.
   * @returns The try's scope.
   */
  deliver?(delivery: Delivery, backend: AsyncBackend): TryScope | undefined;
  /**
   * Called before a sync handler runs inline (in `emit` and `emitSync`).
   * Leave it out to skip sync handlers at no cost.
   *
   * @param event The event.
   * @param handler The handler's name.
   * @returns The run's scope.
   */
  inline?(event: Event, handler: string): InlineScope | undefined;
}

/**
 * The scope of one publish, from {@linkcode Instrumentation.publish}.
 *
 * @example A scope that stamps a metadata entry
 * ```ts
 * import type { PublishScope } from "@eventbus/core";
 * const scope: PublishScope = { metadata: { origin: "web" }, end() {} };
 * console.assert(scope.metadata?.origin === "web");
 * ```
 */
export interface PublishScope {
  /**
   * Metadata entries to write on the event before the backend gets it,
   * such as `traceparent`; entries the caller set are kept.
   */
  readonly metadata?: Readonly<Record<string, string>> | undefined;
  /**
   * Called once the backend accepted the event (no argument) or refused it.
   *
   * @param error The backend's error, when it refused the event.
   */
  end(error?: unknown): void;
}

/**
 * The scope of one try, from {@linkcode Instrumentation.deliver}.
 *
 * @example A scope that times tries
 * ```ts
 * import type { TryScope } from "@eventbus/core";
 * const started = performance.now();
 * const scope: TryScope = {
 *   end: (result) => console.log(result.status, performance.now() - started),
 * };
 * scope.end({ status: "completed" });
 * ```
 */
export interface TryScope {
  /**
   * Runs the try, such as inside a tracing context; must call `fn` once
   * and return its result.
   *
   * @typeParam T What `fn` returns.
   * @param fn The try.
   * @returns What `fn` returned.
   */
  run?<T>(fn: () => T): T;
  /**
   * Called once with what the backend must do next; a dead letter's
   * `error.reason` says why.
   *
   * @param result The try's result.
   */
  end(result: DeliveryResult): void;
}

/**
 * The scope of one inline run of a sync handler, from
 * {@linkcode Instrumentation.inline}.
 *
 * @example A scope that collects failures
 * ```ts
 * import type { InlineScope } from "@eventbus/core";
 * const failures: unknown[] = [];
 * const scope: InlineScope = { end: (error) => void failures.push(error) };
 * scope.end(new Error("invalid email"));
 * console.assert(failures.length === 1);
 * ```
 */
export interface InlineScope {
  /**
   * Runs the handler, such as inside a tracing context; must call `fn`
   * once and return its result.
   *
   * @typeParam T What `fn` returns.
   * @param fn The handler's run.
   * @returns What `fn` returned.
   */
  run?<T>(fn: () => T): T;
  /**
   * Called once the handler returned or settled (no argument) or failed.
   *
   * @param error What it threw or rejected with.
   */
  end(error?: unknown): void;
}

/**
 * The payload `emit` takes per event type: the map `M`, or, on a bus with
 * `schemas`, each schema's input type.
 *
 * @typeParam M The event map given as a type argument.
 * @typeParam S The bus's schemas, if any.
 *
 * @example The emit payloads of a bus without schemas
 * ```ts
 * import type { EmitMap } from "@eventbus/core";
 * type Payloads = EmitMap<{ "a.b": { n: number } }, undefined>;
 * const payload: Payloads["a.b"] = { n: 1 };
 * console.assert(payload.n === 1);
 * ```
 */
export type EmitMap<
  M extends EventMap,
  S extends EventSchemas | undefined,
> = S extends EventSchemas ? SchemaInputs<S> : M;

/**
 * The payload handlers receive per event type: the map `M`, or, on a bus
 * with `schemas`, each schema's output type.
 *
 * @typeParam M The event map given as a type argument.
 * @typeParam S The bus's schemas, if any.
 *
 * @example The handler payloads of a bus without schemas
 * ```ts
 * import type { HandlerMap } from "@eventbus/core";
 * type Payloads = HandlerMap<{ "a.b": { n: number } }, undefined>;
 * const payload: Payloads["a.b"] = { n: 1 };
 * console.assert(payload.n === 1);
 * ```
 */
export type HandlerMap<
  M extends EventMap,
  S extends EventSchemas | undefined,
> = S extends EventSchemas ? SchemaOutputs<S> : M;

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
  /**
   * Stops new deliveries to the handler; deliveries accepted before still
   * run (pool) or stay on the broker for its name. Frees the handler name.
   * Calling it twice is harmless.
   */
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
   * The event id: 1 to 256 characters, no whitespace, no control
   * characters. Emitting the same id twice to a broker delivers it once
   * (inside the broker's de-duplication window).
   * @default {a new UUID v7}
   */
  id?: string;
  /** String attributes, keys `[a-z0-9]{1,20}` (CloudEvents extensions). */
  metadata?: Record<string, string>;
  /** Stops waiting for the backend (a full queue, a broker); rejects with its reason. */
  signal?: AbortSignal;
  /**
   * A transaction of yours, for a backend that stores the event inside it
   * so it exists if and only if the transaction commits (`PostgresOutbox`
   * from `@eventbus/core/postgres` takes an executor such as
   * `postgresJs(tx)`). Backends that do not write to your database ignore
   * it.
   */
  tx?: unknown;
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
 * console.assert(stats.handlers["runner"]?.completed === 1);
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
  /**
   * The same totals per async handler name (the subscription's `name`),
   * for every name subscribed on this bus now, zeros included; they add up
   * to the bus-wide totals while no name was freed. A name's counters are
   * dropped when its last subscription ends (the bus-wide totals keep
   * counting): a later subscription of that name starts from zero, and the
   * memory they take is bounded by the names in use. Sync handlers have no
   * line, as they have no deliveries.
   */
  handlers: Record<string, HandlerStats>;
}

/**
 * The totals of one async handler name since it was subscribed, in
 * {@linkcode BusStats.handlers}.
 *
 * @example Per-handler totals after a permanent failure
 * ```ts
 * import { EventBus, type HandlerStats } from "@eventbus/core";
 * const bus = new EventBus({ retry: { attempts: 2, backoff: { initial: 1 } }, onError: () => {} });
 * bus.subscribe("job.run", () => {
 *   throw new Error("down");
 * }, { async: true, name: "flaky" });
 * bus.subscribe("job.run", () => {}, { async: true, name: "steady" });
 * await bus.emit("job.run", {});
 * await bus.close();
 * const flaky: HandlerStats | undefined = bus.stats().handlers["flaky"];
 * console.assert(flaky?.failed === 2 && flaky.retried === 1 && flaky.deadLettered === 1);
 * console.assert(bus.stats().handlers["steady"]?.completed === 1);
 * ```
 */
export interface HandlerStats {
  /** Deliveries to this name that succeeded. */
  completed: number;
  /** Failed tries of this name. */
  failed: number;
  /** Tries of this name after the first. */
  retried: number;
  /** Deliveries to this name given up (dead-lettered). */
  deadLettered: number;
}
