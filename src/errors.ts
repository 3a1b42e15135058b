// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * The error classes of `@eventbus/core`. Every class has a stable `name` equal
 * to its class name, keeps `cause`, and carries its data as readonly fields.
 *
 * @module
 */

import type { Event } from "./event.ts";
import type { StandardSchemaIssue } from "./schema.ts";

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
      }: an event type is one or more tokens of [A-Za-z0-9_-] joined by ".", at most 255 characters, such as "user.signup"`,
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
   * @param options Standard error options, and the message when the limit
   *   is a broker's (a stream's length) rather than the pool's queue.
   */
  constructor(
    eventType: string,
    queueSize: number,
    options?: QueueFullErrorOptions,
  ) {
    super(
      options?.message ??
        `Cannot enqueue "${eventType}": queue is full (${queueSize} of ${queueSize}), raise queueSize or use overflow "wait"`,
      options,
    );
    this.name = "QueueFullError";
    this.eventType = eventType;
    this.queueSize = queueSize;
  }
}

/**
 * Options of {@linkcode QueueFullError}.
 *
 * @example A broker's limit, named in the message
 * ```ts
 * import { QueueFullError } from "@eventbus/core";
 * const error = new QueueFullError("user.signup", 100_000, {
 *   message: 'Cannot publish "user.signup": stream "EVENTS" holds 100000 messages, its maxMessages limit, let its workers catch up or raise the limit',
 * });
 * console.assert(error.message.includes("maxMessages"));
 * ```
 */
export interface QueueFullErrorOptions extends ErrorOptions {
  /**
   * The whole message: which limit, the state, and the fix.
   * @default {the worker pool's message}
   */
  message?: string | undefined;
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
 * Why a delivery was dead-lettered:
 * - `failed`: every try its retry policy allowed failed;
 * - `crashed`: it was delivered more times than its policy allows without a
 *   result (the worker stopped during each try), so it is not run again;
 * - `invalid-data`: its payload failed the schema at consume;
 * - `not-retriable`: the handler threw a `NonRetriableError`;
 * - `invalid-event`: the message on the wire is not an event of ours;
 * - `trimmed`: the broker dropped it before every handler had it.
 *
 * @example Choosing an alert by reason
 * ```ts
 * import type { DeadLetterReason } from "@eventbus/core";
 * function page(reason: DeadLetterReason): boolean {
 *   return reason === "crashed" || reason === "trimmed";
 * }
 * console.assert(page("crashed") && !page("failed"));
 * ```
 */
export type DeadLetterReason =
  | "failed"
  | "crashed"
  | "invalid-data"
  | "not-retriable"
  | "invalid-event"
  | "trimmed";

/**
 * Options of {@linkcode DeadLetterError}.
 *
 * @example A dead letter for a crash loop
 * ```ts
 * import { createEvent, DeadLetterError, type DeadLetterErrorOptions } from "@eventbus/core";
 * const options: DeadLetterErrorOptions = { reason: "crashed" };
 * const error = new DeadLetterError(createEvent("job.run", {}), "runner", 3, options);
 * console.assert(error.reason === "crashed");
 * ```
 */
export interface DeadLetterErrorOptions extends ErrorOptions {
  /**
   * Why the delivery was given up.
   * @default {"failed"}
   */
  reason?: DeadLetterReason | undefined;
}

/**
 * A delivery was given up: it failed on every try its retry policy allowed,
 * or it can never succeed (see {@linkcode DeadLetterReason}). `cause` is the
 * last try's error. Passed to `onError` once per delivery; on brokers a copy
 * of the event goes to the dead-letter stream, queue or topic.
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
 * console.assert(error.reason === "failed");
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
  /** Why the delivery was given up. */
  readonly reason: DeadLetterReason;

  /**
   * Creates the error for a delivery that was given up.
   *
   * @param event The event that could not be handled.
   * @param handler The handler's name.
   * @param attempts How many tries were made.
   * @param options `reason` (default `"failed"`) and `cause`, the last
   *   try's error.
   */
  constructor(
    event: Event,
    handler: string,
    attempts: number,
    options?: DeadLetterErrorOptions,
  ) {
    const reason = options?.reason ?? "failed";
    super(
      `Cannot deliver "${event.type}" (id "${event.id}") to handler "${handler}": ${
        deadLetterDetail(reason, attempts)
      }, giving up: ${
        describeError(options?.cause)
      }; fix the handler, then replay the event from the dead letters`,
      options,
    );
    this.name = "DeadLetterError";
    this.event = event;
    this.handler = handler;
    this.attempts = attempts;
    this.reason = reason;
  }
}

/**
 * An event's data does not match the schema of its type: at `emit` (nothing
 * ran, nothing was published) or at consume (the delivery is dead-lettered
 * with reason `invalid-data`, and this error is the `DeadLetterError`'s
 * `cause`). `issues` are the schema's, as it reported them.
 *
 * @example Reading the issues of a rejected emit
 * ```ts
 * import { EventValidationError } from "@eventbus/core";
 * const error = new EventValidationError("user.signup", "emit", [
 *   { message: "Invalid email", path: ["email"] },
 * ]);
 * console.assert(error.issues[0]?.path?.[0] === "email" && error.phase === "emit");
 * ```
 */
export class EventValidationError extends Error {
  /** The event type whose schema failed. */
  readonly type: string;
  /** Where it failed: at `emit`, or when a delivery arrived. */
  readonly phase: "emit" | "consume";
  /** The schema's issues, as it reported them. */
  readonly issues: ReadonlyArray<StandardSchemaIssue>;

  /**
   * Creates the error for data that failed its schema.
   *
   * @param type The event type.
   * @param phase `"emit"` or `"consume"`.
   * @param issues The schema's issues.
   * @param options Standard error options.
   */
  constructor(
    type: string,
    phase: "emit" | "consume",
    issues: ReadonlyArray<StandardSchemaIssue>,
    options?: ErrorOptions,
  ) {
    const shown = issues.slice(0, 3).map(describeIssue).join("; ");
    super(
      `Cannot ${
        phase === "emit" ? "emit" : "handle"
      } "${type}": its data does not match the schema (${issues.length} issue${
        issues.length === 1 ? "" : "s"
      }: ${shown}${issues.length > 3 ? "; ..." : ""}), fix the ${
        phase === "emit" ? "payload" : "producer or the schema"
      }`,
      options,
    );
    this.name = "EventValidationError";
    this.type = type;
    this.phase = phase;
    this.issues = issues;
  }
}

/**
 * Thrown by a handler (directly, or as the `cause` of what it throws) to
 * say that retrying cannot help: the delivery is dead-lettered at once with
 * reason `not-retriable`, without further tries.
 *
 * @example Giving up on an order that no longer exists
 * ```ts
 * import { EventBus, NonRetriableError } from "@eventbus/core";
 * const bus = new EventBus({ logger: { debug() {}, info() {}, warn() {}, error() {} } });
 * let tries = 0;
 * bus.subscribe("order.ship", () => {
 *   tries++;
 *   throw new NonRetriableError("order 42 was deleted");
 * }, { async: true, name: "shipper", retry: { attempts: 5 } });
 * await bus.emit("order.ship", {});
 * await bus.close();
 * console.assert(tries === 1);
 * ```
 */
export class NonRetriableError extends Error {
  /**
   * Creates the error.
   *
   * @param message Why retrying cannot help.
   * @param options Standard error options.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "NonRetriableError";
  }
}

export {
  BackendError,
  type BackendErrorOptions,
  UnroutableEventError,
  type UnroutableEventErrorOptions,
} from "./_backend_errors.ts";

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

function deadLetterDetail(reason: DeadLetterReason, attempts: number): string {
  const tries = `${attempts} time${attempts === 1 ? "" : "s"}`;
  switch (reason) {
    case "failed":
      return `failed ${tries}`;
    case "crashed":
      return `delivered ${tries} without a result (its worker stopped each time)`;
    case "invalid-data":
      return "its data does not match the schema";
    case "not-retriable":
      return "the handler said it cannot succeed";
    case "invalid-event":
      return "the message is not a valid event";
    case "trimmed":
      return "the broker dropped it before it was handled";
  }
}

function describeIssue(issue: StandardSchemaIssue): string {
  const path = (issue.path ?? []).map((segment) =>
    String(typeof segment === "object" ? segment.key : segment)
  ).join(".");
  return path === "" ? issue.message : `${path}: ${issue.message}`;
}

function describe(value: unknown): string {
  if (typeof value === "string") {
    return value.length > 80
      ? `${JSON.stringify(value.slice(0, 60))}... (${value.length} characters)`
      : JSON.stringify(value);
  }
  return `of type ${value === null ? "null" : typeof value}`;
}
