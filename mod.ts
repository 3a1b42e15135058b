// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * An event bus for TypeScript that runs unchanged on Deno, Bun and Node:
 * typed events, sync handlers run inline, async handlers on an in-process
 * worker pool, or on NATS JetStream (`@eventbus/nats`) across machines.
 *
 * @example A sync gate and an async handler
 * ```ts
 * import { EventBus } from "@eventbus/core";
 *
 * type Events = { "user.signup": { id: string; email: string } };
 * const bus = new EventBus<Events>();
 *
 * bus.subscribe("user.signup", (event) => {
 *   if (!event.data.email.includes("@")) throw new Error("invalid email");
 * });
 * bus.subscribe("user.signup", async (event, { signal }) => {
 *   await Promise.resolve(signal); // send the welcome mail, honouring signal
 * }, { async: true, name: "welcome-mail" });
 *
 * await bus.emit("user.signup", { id: "u1", email: "ada@example.com" });
 * const report = await bus.close();
 * console.assert(report.completed === 1);
 * ```
 *
 * @module
 */

export type {
  AsyncBackend,
  BackendTelemetry,
  CloseOptions,
  CloseReport,
  ConsumeOptions,
  ConsumerSpec,
  Deliver,
  Delivery,
  DeliveryResult,
  Logger,
  PublishOptions,
} from "./src/backend.ts";
export {
  type DeadLetter,
  type DeadLetterFilter,
  type DeadLetters,
  type DeadLetterTarget,
  matchesDeadLetter,
} from "./src/dead_letters.ts";
export {
  BackendError,
  type BackendErrorOptions,
  DeadLetterError,
  type DeadLetterErrorOptions,
  type DeadLetterReason,
  describeError,
  EventBusClosedError,
  EventValidationError,
  HandlerError,
  HandlerTimeoutError,
  InvalidEventTypeError,
  NonRetriableError,
  QueueFullError,
  type QueueFullErrorOptions,
  SerializationError,
  UnroutableEventError,
  type UnroutableEventErrorOptions,
} from "./src/errors.ts";
export {
  assertEventType,
  assertJsonSafe,
  createEvent,
  type CreateEventOptions,
  decodeEvent,
  encodeEvent,
  type Event,
  isValidEventType,
  uuidv7,
} from "./src/event.ts";
export { EventBus } from "./src/event_bus.ts";
export type {
  EventSchemas,
  SchemaInputs,
  SchemaOutputs,
  StandardSchemaIssue,
  StandardSchemaProps,
  StandardSchemaResult,
  StandardSchemaTypes,
  StandardSchemaV1,
  ValidateMode,
} from "./src/schema.ts";
export type {
  BusStats,
  EmitMap,
  EmitOptions,
  EventBusOptions,
  EventMap,
  Handler,
  HandlerContext,
  HandlerMap,
  HandlerStats,
  InlineScope,
  Instrumentation,
  ListenOptions,
  PublishScope,
  SubscribeOptions,
  Subscription,
  TryScope,
} from "./src/types.ts";
export {
  backoffDelay,
  type BackoffOptions,
  DEFAULT_RETRY_POLICY,
  resolveRetryPolicy,
  type RetryPolicy,
} from "./src/retry.ts";
export {
  type AcquireOptions,
  type Permit,
  Semaphore,
} from "./src/semaphore.ts";
export { WorkerPool, type WorkerPoolOptions } from "./src/worker_pool.ts";
