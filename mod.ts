// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * An event bus for TypeScript that runs unchanged on Deno, Bun and Node:
 * typed events, sync handlers run inline, async handlers on an in-process
 * worker pool, or on NATS JetStream (`@eventbus/core/nats`) across machines.
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
  BackendError,
  DeadLetterError,
  describeError,
  EventBusClosedError,
  HandlerError,
  HandlerTimeoutError,
  InvalidEventTypeError,
  QueueFullError,
  SerializationError,
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
export {
  type BusStats,
  type EmitOptions,
  EventBus,
  type EventBusOptions,
  type EventMap,
  type Handler,
  type HandlerContext,
  type ListenOptions,
  type SubscribeOptions,
  type Subscription,
} from "./src/event_bus.ts";
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
