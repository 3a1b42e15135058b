// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * The contract between the bus and an async backend. A backend moves events
 * to the processes that run async handlers; the bus runs each try and tells
 * the backend what to do with the delivery. A new backend fits on one screen.
 *
 * @module
 */

import type { DeadLetters } from "./dead_letters.ts";
import type { DeadLetterError } from "./errors.ts";
import type { Event } from "./event.ts";

/**
 * Where the bus hands events for async handlers.
 *
 * - `publish` accepts one event (queued in-process, or acknowledged by a
 *   broker) or rejects: it never resolves without having taken the event.
 * - `consume` attaches consumers and resolves once they are ready; the
 *   backend then calls `deliver` once per try until `options.signal` aborts
 *   or the backend closes. Consumers that share a `name` compete for events;
 *   different names each get every event of their type.
 * - `close` stops intake, lets queued and running deliveries finish until
 *   `timeout`, then aborts their signals and reports the accepted events it
 *   could neither finish nor leave safely on a broker.
 *
 * @example A backend that runs every delivery at once, in-process
 * ```ts
 * import type { AsyncBackend, CloseReport, ConsumeOptions, Deliver, Event } from "@eventbus/core";
 * import { EventBus } from "@eventbus/core";
 *
 * class InlineBackend implements AsyncBackend {
 *   readonly name = "inline";
 *   readonly remote = false;
 *   #consumers: { type: string; name: string; deliver: Deliver }[] = [];
 *   async publish(event: Event): Promise<void> {
 *     for (const c of this.#consumers.filter((c) => c.type === event.type)) {
 *       let attempt = 1;
 *       while ((await c.deliver({ event, handler: c.name, attempt })).status === "retry") attempt++;
 *     }
 *   }
 *   consume(deliver: Deliver, { consumers }: ConsumeOptions): Promise<void> {
 *     for (const { type, name } of consumers) this.#consumers.push({ type, name, deliver });
 *     return Promise.resolve();
 *   }
 *   close(): Promise<CloseReport> {
 *     return Promise.resolve({ completed: 0, abandoned: [] });
 *   }
 * }
 *
 * const bus = new EventBus({ backend: new InlineBackend() });
 * let handled = 0;
 * bus.subscribe("job.run", () => void handled++, { async: true, name: "runner" });
 * await bus.emit("job.run", {});
 * console.assert(handled === 1);
 * await bus.close();
 * ```
 */
export interface AsyncBackend {
  /** A short name for logs and errors, such as `"worker-pool"`. */
  readonly name: string;
  /**
   * `false` when deliveries run in this process (the bus runs async handlers
   * itself); `true` when events cross the wire to processes that `listen()`.
   */
  readonly remote: boolean;
  /**
   * Accepts one event.
   *
   * @param event The event, already validated (and JSON-safe when remote).
   * @param options The caller's signal.
   * @returns Once the event is accepted.
   */
  publish(event: Event, options?: PublishOptions): Promise<void>;
  /**
   * Attaches consumers and resolves once they are ready.
   *
   * @param deliver Runs one try of one delivery; it never rejects.
   * @param options The consumers to attach, the signal that detaches them,
   *   and the bus's logger.
   * @returns Once the consumers are ready.
   */
  consume(deliver: Deliver, options: ConsumeOptions): Promise<void>;
  /**
   * Stops intake and consumers, lets running work finish until `timeout`.
   *
   * @param options Deadline and signal.
   * @returns What finished and what was abandoned.
   */
  close(options?: CloseOptions): Promise<CloseReport>;
  /** How many deliveries wait in this process, for `stats().queued`. */
  readonly queued?: number;
  /**
   * The dead letters of this backend: count, list, replay, purge. Every
   * backend of this package has them; a backend of yours may leave them out.
   */
  readonly deadLetters?: DeadLetters;
  /**
   * What instrumentation reports about this backend (the messaging system
   * and destinations); without it, `name` and the event type.
   */
  readonly telemetry?: BackendTelemetry;
}

/**
 * What a backend tells instrumentation, in the words of the OpenTelemetry
 * messaging conventions: `messaging.system` and `messaging.destination.name`.
 *
 * @example The telemetry of a backend that publishes to one subject per type
 * ```ts
 * import type { BackendTelemetry } from "@eventbus/core";
 * const telemetry: BackendTelemetry = {
 *   system: "nats",
 *   destination: (type) => `events.${type}`,
 * };
 * console.assert(telemetry.destination("user.signup") === "events.user.signup");
 * ```
 */
export interface BackendTelemetry {
  /** The messaging system, such as `"nats"`, `"kafka"` or `"aws_sqs"`. */
  readonly system: string;
  /**
   * Where events of `type` go (a subject, stream key, exchange, topic or
   * queue), or, given `handler`, where that handler's consumer reads them.
   *
   * @param type The event type.
   * @param handler The handler name, on the consumer side.
   * @returns The destination name.
   */
  destination(type: string, handler?: string): string;
}

/**
 * Options of {@linkcode AsyncBackend.publish}.
 *
 * @example Stopping a publish that waits for room
 * ```ts
 * import { createEvent, WorkerPool } from "@eventbus/core";
 * const pool = new WorkerPool();
 * const controller = new AbortController();
 * await pool.publish(createEvent("job.run", {}), { signal: controller.signal });
 * await pool.close();
 * ```
 */
export interface PublishOptions {
  /** Stops waiting (for room in a queue, for a broker); rejects with its reason. */
  signal?: AbortSignal | undefined;
  /**
   * The caller's transaction, from `emit(…, { tx })`, for a backend that
   * writes the event inside it (a transactional outbox). Other backends
   * ignore it.
   */
  tx?: unknown;
}

/**
 * Options of `close()` on a bus or a backend.
 *
 * @example Giving deliveries five seconds to finish
 * ```ts
 * import { EventBus } from "@eventbus/core";
 * const bus = new EventBus();
 * const report = await bus.close({ timeout: 5000 });
 * console.assert(report.abandoned.length === 0);
 * ```
 */
export interface CloseOptions {
  /**
   * How long running and queued deliveries may take to finish, in ms.
   * @default {30000}
   */
  timeout?: number | undefined;
  /** Ends the wait early, as if the timeout expired. */
  signal?: AbortSignal | undefined;
}

/**
 * What `close()` reports.
 *
 * @example Logging what close() left unfinished
 * ```ts
 * import { type CloseReport, EventBus } from "@eventbus/core";
 * const bus = new EventBus();
 * bus.subscribe("job.run", () => {}, { async: true, name: "runner" });
 * await bus.emit("job.run", {});
 * const report: CloseReport = await bus.close();
 * for (const event of report.abandoned) console.error(`unfinished: ${event.id}`);
 * console.assert(report.completed === 1);
 * ```
 */
export interface CloseReport {
  /** Deliveries that completed (for a bus: `stats().completed` at close). */
  completed: number;
  /**
   * Accepted events, once each, with a delivery that neither completed nor
   * was dead-lettered and that is not safe on a broker.
   */
  abandoned: Event[];
  /**
   * Accepted events still kept safe by the backend to be sent on later (an
   * outbox's rows waiting for its relay), when it has such a store: not
   * abandoned, not yet delivered.
   */
  waiting?: number | undefined;
}

/**
 * One try of one event for one async handler.
 *
 * @example A first try, as a backend hands it to the bus
 * ```ts
 * import { createEvent, type Delivery } from "@eventbus/core";
 * const delivery: Delivery = {
 *   event: createEvent("job.run", {}),
 *   handler: "runner",
 *   attempt: 1,
 * };
 * console.assert(delivery.attempt === 1);
 * ```
 */
export interface Delivery {
  /** The event. */
  readonly event: Event;
  /** The handler's name, as in {@linkcode ConsumerSpec.name}. */
  readonly handler: string;
  /**
   * This try's number, starting at 1: a broker's delivery count, less the
   * redeliveries the backend caused itself (events handed back unstarted).
   * A delivery whose `attempt` is past its consumer's `attempts` is not run:
   * the bus dead-letters it at once with reason `"crashed"` (every try it was
   * allowed ended without a result), so a backend bounds crash loops by
   * counting deliveries and passing them on.
   */
  readonly attempt: number;
  /** Aborted when the backend gives up on this try (close deadline). */
  readonly signal?: AbortSignal | undefined;
}

/**
 * What the backend must do after a try:
 * - `completed`: acknowledge;
 * - `retry`: deliver again (attempt + 1) after `delay` ms;
 * - `dead-letter`: give up; keep a copy with `error` (and its `reason`)
 *   where the broker can, then acknowledge (the bus already told `onError`,
 *   once: do not deliver it again);
 * - `abandoned`: the try was cut short by `delivery.signal`; leave the event
 *   where a broker redelivers it, or report it abandoned.
 *
 * @example Mapping a result to a broker action
 * ```ts
 * import type { DeliveryResult } from "@eventbus/core";
 * function action(result: DeliveryResult): string {
 *   switch (result.status) {
 *     case "completed":
 *       return "ack";
 *     case "retry":
 *       return `redeliver in ${result.delay} ms`;
 *     case "dead-letter":
 *       return "copy to the dead letters, then ack";
 *     case "abandoned":
 *       return "leave for redelivery";
 *   }
 * }
 * console.assert(action({ status: "completed" }) === "ack");
 * ```
 */
export type DeliveryResult =
  | { readonly status: "completed" }
  | {
    readonly status: "retry";
    readonly delay: number;
    readonly error: unknown;
  }
  | { readonly status: "dead-letter"; readonly error: DeadLetterError }
  | { readonly status: "abandoned"; readonly error: unknown };

/**
 * Runs one try of a delivery: the handler with its timeout and signal.
 * Resolves with what the backend must do next; never rejects.
 *
 * @example Driving a worker pool by hand
 * ```ts
 * import { createEvent, type Deliver, WorkerPool } from "@eventbus/core";
 * const pool = new WorkerPool();
 * const seen: string[] = [];
 * const deliver: Deliver = (delivery) => {
 *   seen.push(delivery.event.type);
 *   return Promise.resolve({ status: "completed" });
 * };
 * await pool.consume(deliver, {
 *   consumers: [{ name: "runner", type: "job.run", attempts: 1 }],
 * });
 * await pool.publish(createEvent("job.run", {}));
 * const report = await pool.close();
 * console.assert(report.completed === 1 && seen[0] === "job.run");
 * ```
 */
export type Deliver = (delivery: Delivery) => Promise<DeliveryResult>;

/**
 * One async handler a backend consumes for.
 *
 * @example The consumer listen() attaches for an async handler
 * ```ts
 * import { EventBus } from "@eventbus/core";
 * import { RecordingBackend } from "@eventbus/core/testing";
 * const backend = new RecordingBackend();
 * const bus = new EventBus({ backend });
 * bus.subscribe("job.run", () => {}, {
 *   async: true,
 *   name: "runner",
 *   retry: { attempts: 5 },
 * });
 * await bus.listen();
 * const [spec] = backend.consumers;
 * console.assert(spec?.name === "runner" && spec.attempts === 5);
 * await bus.close();
 * ```
 */
export interface ConsumerSpec {
  /** The handler's stable name: the durable consumer or group name on brokers. */
  readonly name: string;
  /** The one event type it handles. */
  readonly type: string;
  /** Its retry policy's total tries, so a broker can bound redeliveries. */
  readonly attempts: number;
  /** Its timeout in ms, if any, so a broker can size its ack wait. */
  readonly timeout?: number | undefined;
}

/**
 * Options of {@linkcode AsyncBackend.consume}.
 *
 * @example Detaching consumers with a signal
 * ```ts
 * import { createEvent, WorkerPool } from "@eventbus/core";
 * const pool = new WorkerPool();
 * const controller = new AbortController();
 * let runs = 0;
 * await pool.consume(() => {
 *   runs++;
 *   return Promise.resolve({ status: "completed" });
 * }, {
 *   consumers: [{ name: "runner", type: "job.run", attempts: 1 }],
 *   signal: controller.signal,
 *   logger: console,
 * });
 * controller.abort();
 * await pool.publish(createEvent("job.run", {})); // nobody consumes it now
 * await pool.close();
 * console.assert(runs === 0);
 * ```
 */
export interface ConsumeOptions {
  /** The consumers to attach. */
  readonly consumers: readonly ConsumerSpec[];
  /** Detaches these consumers when aborted. */
  readonly signal?: AbortSignal | undefined;
  /** Where background trouble (a lost connection, a bad message) is logged. */
  readonly logger?: Logger | undefined;
}

/**
 * A structured logger; `console` fits.
 *
 * @example Logging to the console
 * ```ts
 * import { EventBus, type Logger } from "@eventbus/core";
 * const logger: Logger = console;
 * const bus = new EventBus({ logger });
 * await bus.close();
 * ```
 */
export interface Logger {
  /** Detail for debugging. */
  debug(message: string, attributes?: Record<string, unknown>): void;
  /** Normal operation. */
  info(message: string, attributes?: Record<string, unknown>): void;
  /** Something failed and will be retried. */
  warn(message: string, attributes?: Record<string, unknown>): void;
  /** Something failed for good. */
  error(message: string, attributes?: Record<string, unknown>): void;
}
