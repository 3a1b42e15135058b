// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * The error classes of `@eventbus/core`. Every class has a stable `name` equal
 * to its class name, keeps `cause`, and carries its data as readonly fields.
 *
 * @module
 */

import type { Event } from "./event.ts";

/**
 * An event type is not one or more tokens of `[A-Za-z0-9_-]` joined by `.`.
 *
 * @example Catching an invalid type
 * ```ts
 * import { EventBus, InvalidEventTypeError } from "@eventbus/core";
 * const bus = new EventBus();
 * try {
 *   bus.subscribe("user.*", () => {});
 * } catch (error) {
 *   console.assert(error instanceof InvalidEventTypeError);
 * }
 * await bus.close();
 * ```
 */
export class InvalidEventTypeError extends Error {
  /** The rejected value, as given. */
  readonly eventType: unknown;

  /**
   * Creates the error for a rejected event type.
   *
   * @param eventType The rejected value.
   * @param options Standard error options.
   */
  constructor(eventType: unknown, options?: ErrorOptions) {
    super(
      `Cannot use event type ${
        describe(eventType)
      }: an event type is one or more tokens of [A-Za-z0-9_-] joined by ".", such as "user.signup"`,
      options,
    );
    this.name = "InvalidEventTypeError";
    this.eventType = eventType;
  }
}

/**
 * A payload cannot travel as JSON without changing, or a message on the wire
 * is not a valid event.
 *
 * @example Catching a payload JSON cannot carry
 * ```ts
 * import { SerializationError } from "@eventbus/core";
 * const error = new SerializationError("Cannot serialize \"a\": bigint at data.n");
 * console.assert(error.name === "SerializationError");
 * ```
 */
export class SerializationError extends Error {
  /** Where in the value the problem is, such as `data.user.id`, when known. */
  readonly path: string | undefined;

  /**
   * Creates the error with a message that says what failed and where.
   *
   * @param message What failed, where, and what to do.
   * @param options Standard error options plus `path`.
   */
  constructor(message: string, options?: ErrorOptions & { path?: string }) {
    super(message, options);
    this.name = "SerializationError";
    this.path = options?.path;
  }
}

/**
 * The worker pool's queue is full and its overflow mode is `"reject"`.
 *
 * @example Reading the queue size from the error
 * ```ts
 * import { QueueFullError } from "@eventbus/core";
 * const error = new QueueFullError("user.signup", 1000);
 * console.assert(error.queueSize === 1000);
 * ```
 */
export class QueueFullError extends Error {
  /** The type of the event that was refused. */
  readonly eventType: string;
  /** The queue's capacity. */
  readonly queueSize: number;

  /**
   * Creates the error for an event refused by a full queue.
   *
   * @param eventType The type of the refused event.
   * @param queueSize The queue's capacity.
   * @param options Standard error options.
   */
  constructor(eventType: string, queueSize: number, options?: ErrorOptions) {
    super(
      `Cannot enqueue "${eventType}": queue is full (${queueSize} of ${queueSize}), raise queueSize or use overflow "wait"`,
      options,
    );
    this.name = "QueueFullError";
    this.eventType = eventType;
    this.queueSize = queueSize;
  }
}

/**
 * The bus (or its backend) was closed, so it takes no more events.
 *
 * @example Emitting after close()
 * ```ts
 * import { EventBus, EventBusClosedError } from "@eventbus/core";
 * const bus = new EventBus();
 * await bus.close();
 * await bus.emit("user.signup", {}).catch((error) => {
 *   console.assert(error instanceof EventBusClosedError);
 * });
 * ```
 */
export class EventBusClosedError extends Error {
  /** The type of the event that was refused, when there was one. */
  readonly eventType: string | undefined;

  /**
   * Creates the error for a closed bus or backend.
   *
   * @param eventType The type of the refused event, if any.
   * @param options Standard error options.
   */
  constructor(eventType?: string, options?: ErrorOptions) {
    super(
      eventType === undefined
        ? "Cannot use the event bus: it is closed, create a new one"
        : `Cannot emit "${eventType}": the event bus is closed, emit before close() or create a new bus`,
      options,
    );
    this.name = "EventBusClosedError";
    this.eventType = eventType;
  }
}

/**
 * One or more handlers failed while the caller waited (`emit`'s sync handlers
 * or `emitSync`). `errors` holds every failure, in subscription order.
 *
 * @example Collecting every failed handler
 * ```ts
 * import { EventBus, HandlerError } from "@eventbus/core";
 * const bus = new EventBus();
 * bus.subscribe("order.placed", () => {
 *   throw new Error("out of stock");
 * });
 * await bus.emitSync("order.placed", {}).catch((error) => {
 *   console.assert(error instanceof HandlerError && error.errors.length === 1);
 * });
 * await bus.close();
 * ```
 */
export class HandlerError extends AggregateError {
  /** The event the handlers failed on. */
  readonly event: Event;

  /**
   * Creates the error holding every handler failure.
   *
   * @param event The event the handlers failed on.
   * @param errors Every failure, in subscription order.
   * @param options Standard error options.
   */
  constructor(event: Event, errors: unknown[], options?: ErrorOptions) {
    super(
      errors,
      `Cannot handle "${event.type}" (id "${event.id}"): ${errors.length} handler${
        errors.length === 1 ? "" : "s"
      } failed: ${errors.map(describeError).join("; ")}`,
      options,
    );
    this.name = "HandlerError";
    this.event = event;
  }
}

/**
 * A handler try outlived its timeout. Its `ctx.signal` is aborted with this
 * error, and the try counts as failed even if the handler settles later.
 *
 * @example Reading the timeout that expired
 * ```ts
 * import { HandlerTimeoutError } from "@eventbus/core";
 * const error = new HandlerTimeoutError("user.signup", "send-mail", 5000);
 * console.assert(error.timeout === 5000);
 * ```
 */
export class HandlerTimeoutError extends Error {
  /** The type of the event being handled. */
  readonly eventType: string;
  /** The handler's name. */
  readonly handler: string;
  /** The timeout that expired, in milliseconds. */
  readonly timeout: number;

  /**
   * Creates the error for a try that outlived its timeout.
   *
   * @param eventType The type of the event being handled.
   * @param handler The handler's name.
   * @param timeout The timeout that expired, in milliseconds.
   * @param options Standard error options.
   */
  constructor(
    eventType: string,
    handler: string,
    timeout: number,
    options?: ErrorOptions,
  ) {
    super(
      `Cannot finish handler "${handler}" for "${eventType}": it ran longer than its timeout of ${timeout} ms, make it faster, honour ctx.signal or raise timeout`,
      options,
    );
    this.name = "HandlerTimeoutError";
    this.eventType = eventType;
    this.handler = handler;
    this.timeout = timeout;
  }
}

/**
 * A delivery failed on every try its retry policy allowed and was given up.
 * `cause` is the last try's error. Passed to `onError`; on brokers a copy of
 * the event goes to the dead-letter stream, queue or topic.
 *
 * @example Receiving dead letters in onError
 * ```ts
 * import { DeadLetterError, EventBus } from "@eventbus/core";
 * const { promise, resolve } = Promise.withResolvers<DeadLetterError>();
 * const bus = new EventBus({
 *   retry: { attempts: 2, backoff: { initial: 1 } },
 *   onError: (error) => {
 *     if (error instanceof DeadLetterError) resolve(error);
 *   },
 * });
 * bus.subscribe("job.run", () => {
 *   throw new Error("boom");
 * }, { async: true, name: "runner" });
 * await bus.emit("job.run", {});
 * const error = await promise;
 * console.assert(error.attempts === 2 && error.handler === "runner");
 * await bus.close();
 * ```
 */
export class DeadLetterError extends Error {
  /** The event that could not be handled. */
  readonly event: Event;
  /** The handler's name. */
  readonly handler: string;
  /** How many tries were made. */
  readonly attempts: number;

  /**
   * Creates the error for a delivery that was given up.
   *
   * @param event The event that could not be handled.
   * @param handler The handler's name.
   * @param attempts How many tries were made.
   * @param options Standard error options; `cause` is the last try's error.
   */
  constructor(
    event: Event,
    handler: string,
    attempts: number,
    options?: ErrorOptions,
  ) {
    super(
      `Cannot deliver "${event.type}" (id "${event.id}") to handler "${handler}": failed ${attempts} time${
        attempts === 1 ? "" : "s"
      }, giving up: ${
        describeError(options?.cause)
      }; fix the handler, then replay the event from the dead letters`,
      options,
    );
    this.name = "DeadLetterError";
    this.event = event;
    this.handler = handler;
    this.attempts = attempts;
  }
}

/**
 * A backend (a broker or its client) failed: it is down, refused the event,
 * or the configuration conflicts with what exists. `cause` keeps the
 * client's own error.
 *
 * @example Telling which backend failed
 * ```ts
 * import { BackendError } from "@eventbus/core";
 * const error = new BackendError("nats-jetstream", "Cannot publish \"a\": no ack");
 * console.assert(error.backend === "nats-jetstream");
 * ```
 */
export class BackendError extends Error {
  /** The backend's `name`, such as `"nats-jetstream"`. */
  readonly backend: string;

  /**
   * Creates the error for a failed backend.
   *
   * @param backend The backend's `name`.
   * @param message What failed, the state, and what to do.
   * @param options Standard error options; `cause` is the client's error.
   */
  constructor(backend: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "BackendError";
    this.backend = backend;
  }
}

/**
 * Describes any thrown value in one line, for messages and logs.
 *
 * @param error Any thrown value.
 * @returns `Name: message` for errors, a quoted string for strings, and
 *   `String(value)` otherwise.
 *
 * @example Describing any thrown value
 * ```ts
 * import { describeError } from "@eventbus/core";
 * console.assert(describeError(new TypeError("x")) === "TypeError: x");
 * ```
 */
export function describeError(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  if (typeof error === "string") return JSON.stringify(error);
  try {
    return String(error);
  } catch {
    return Object.prototype.toString.call(error);
  }
}

function describe(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  return `of type ${value === null ? "null" : typeof value}`;
}
