// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * A RabbitMQ backend for `@eventbus/core`: events go through a durable topic
 * exchange to one durable queue per handler name, with publisher confirms,
 * manual acknowledgements, delayed retries through TTL queues, and a
 * dead-letter exchange.
 *
 * ## The client
 *
 * Built on `rabbitmq-client`: written in TypeScript, no dependencies, and it
 * runs unchanged on Deno, Bun and Node through their `node:net` support. It
 * reconnects by itself, and its `Consumer` and `Publisher` re-declare their
 * queues, exchanges and bindings and resume consuming on every new
 * connection, which is exactly the recovery an event bus needs and the part
 * that is easiest to get wrong by hand. `amqplib` has no reconnection, and
 * `@cloudamqp/amqp-client` leaves recovery to the caller.
 *
 * ## The RabbitMQ idioms, one by one
 *
 * - **A durable topic exchange** (`events` by default); the routing key is
 *   the event type, messages are persistent (`delivery-mode 2`), typed
 *   `application/cloudevents+json`, with `message-id` = the event id.
 * - **Publisher confirms**: `publish` resolves only after the broker
 *   confirmed the message (`confirm.select` channel), so an accepted event is
 *   on disk in every queue bound for it. While the connection is down,
 *   `publish` keeps trying until `publishTimeout`, then rejects with
 *   `BackendError`. A confirm lost with the connection means the message is
 *   sent again: duplicates are possible, losses are not.
 * - **One durable quorum queue per handler name**, `<exchange>.<name>`, bound
 *   to the exchange with the handler's event type. Workers sharing a name
 *   consume one queue and compete; different names have their own queues.
 *   Quorum queues count deliveries (`x-delivery-count`) and, as a safety net,
 *   dead-letter a message that keeps coming back unacknowledged (its handler
 *   crashes the worker) after `deliveryLimit` returns (`x-delivery-limit`).
 * - **Manual acknowledgement, prefetch = concurrency**: `basic.qos` limits the
 *   unacknowledged messages per worker, so at most `concurrency` handlers run
 *   at once, and a message is acknowledged only after its handler finished.
 * - **Retries with delay through TTL queues**: a retry publishes a copy
 *   (confirmed) to `<queue>.retry.<ms>`, a queue with `x-message-ttl = ms`
 *   whose dead-letter exchange is the default exchange with the handler's
 *   queue as routing key, then acknowledges the original. When the TTL
 *   expires, RabbitMQ moves the copy back to the handler's queue. Delays are
 *   rounded up to 4 steps per power of two (at most 25% longer), so each
 *   queue only ever holds messages of one TTL (expiry is FIFO) and there are
 *   few of them; unused delay queues delete themselves (`x-expires`).
 * - **Attempts** = tries made before this copy (header `x-eventbus-tries`)
 *   + the quorum queue's `x-delivery-count` + 1.
 * - **A dead-letter exchange** (fanout, `<exchange>.dead-letter`, with a
 *   durable queue of the same name): after the last attempt a copy goes there
 *   with `x-eventbus-handler`, `x-eventbus-attempts`, `x-eventbus-error` and
 *   `x-eventbus-queue` headers, confirmed, before the original is
 *   acknowledged. Messages that are not valid events go there too.
 * - **close()** cancels the consumers (no new deliveries), lets running
 *   handlers finish until the timeout, then aborts their signals and
 *   `basic.nack`s their messages with requeue, so the next worker gets them at
 *   once. Nothing is lost, so `close()` reports no abandoned events.
 *
 * ## Guarantees
 *
 * At least once, for every queue that exists when the event is published: a
 * topic exchange drops messages no queue is bound for, so start a worker
 * (which declares its handler's queue) before the first emit, or declare the
 * queues at deploy time. Handlers may see an event twice after a lost
 * connection or confirm; the event id is stable for de-duplication.
 *
 * Verified against RabbitMQ 3.10.8 (Erlang/OTP 25) on 127.0.0.1:5672 with
 * `rabbitmq-client` 5.0: the conformance suite, and connections closed from
 * the broker side with `rabbitmqctl close_connection` while events flow, on
 * Deno 2.9 and Bun 1.4.
 *
 * @example A producer and a worker
 * ```ts ignore
 * import { EventBus } from "@eventbus/core";
 * import { RabbitMqBackend } from "@eventbus/core/rabbitmq";
 *
 * type Events = { "user.signup": { email: string } };
 * const backend = await RabbitMqBackend.connect("amqp://guest:guest@127.0.0.1:5672");
 * await using bus = new EventBus<Events>({ backend });
 * bus.subscribe("user.signup", async (event, ctx) => {
 *   await fetch("https://mail.example/send", { method: "POST", body: event.data.email, signal: ctx.signal });
 * }, { async: true, name: "welcome-mail" });
 * await bus.listen();
 * await bus.emit("user.signup", { email: "ada@example.com" });
 * ```
 *
 * @module
 */

import {
  type AsyncMessage,
  Connection,
  type ConnectionOptions,
  type Consumer,
  ConsumerStatus,
  type Publisher,
} from "rabbitmq-client";
import type {
  AsyncBackend,
  CloseOptions,
  CloseReport,
  ConsumeOptions,
  ConsumerSpec,
  Deliver,
  DeliveryResult,
  Logger,
  PublishOptions,
} from "../src/backend.ts";
import {
  BackendError,
  describeError,
  EventBusClosedError,
} from "../src/errors.ts";
import { decodeEvent, encodeEvent, type Event } from "../src/event.ts";

const BACKEND = "rabbitmq";
const CONTENT_TYPE = "application/cloudevents+json";
const TRIES_HEADER = "x-eventbus-tries";
/** Longest pause between publish tries while the broker is unreachable. */
const MAX_BACKOFF = 2000;
/** How long an unused delay queue outlives its TTL before it deletes itself. */
const DELAY_QUEUE_EXPIRY = 60_000;
/** How long close() waits for the client to hand back channels. */
const CLOSE_TIMEOUT = 5000;

/**
 * Options of {@linkcode RabbitMqBackend}.
 *
 * @example Own exchange, fewer handlers at once
 * ```ts ignore
 * import { RabbitMqBackend } from "@eventbus/core/rabbitmq";
 * const backend = await RabbitMqBackend.connect("amqp://guest:guest@127.0.0.1:5672", {
 *   exchange: "shop",
 *   concurrency: 4,
 *   publishTimeout: 10_000,
 * });
 * await backend.close();
 * ```
 */
export interface RabbitMqBackendOptions {
  /**
   * The durable topic exchange events are published to; handler queues are
   * named `<exchange>.<handler name>`.
   * @default {"events"}
   */
  exchange?: string;
  /**
   * The fanout exchange (and durable queue of the same name) that keeps dead
   * letters.
   * @default {"<exchange>.dead-letter"}
   */
  deadLetterExchange?: string;
  /**
   * Deliveries of one handler running at once in this process; also its
   * prefetch count (`basic.qos`).
   * @default {10}
   */
  concurrency?: number;
  /**
   * How long, in ms, `publish` keeps trying while the broker is unreachable
   * or has not confirmed, before it rejects with `BackendError`.
   * @default {30000}
   */
  publishTimeout?: number;
  /**
   * How often a message may return to its queue unacknowledged (worker
   * crashed, connection lost, close deadline) before the quorum queue
   * dead-letters it (`x-delivery-limit`). Every process declaring a queue
   * must use the same value.
   * @default {20}
   */
  deliveryLimit?: number;
}

/**
 * An async backend on RabbitMQ: a durable topic exchange, publisher
 * confirms, one durable quorum queue per handler name, manual
 * acknowledgements with prefetch, delayed retries through TTL queues, a
 * dead-letter exchange, and recovery after a lost connection. See the module
 * documentation for the RabbitMQ idioms it uses.
 *
 * @example With a connection you opened (the backend does not close it)
 * ```ts ignore
 * import { Connection } from "rabbitmq-client";
 * import { EventBus } from "@eventbus/core";
 * import { RabbitMqBackend } from "@eventbus/core/rabbitmq";
 *
 * const rabbit = new Connection("amqp://guest:guest@127.0.0.1:5672");
 * rabbit.on("error", (error) => console.warn("rabbitmq:", error.message));
 * const bus = new EventBus({ backend: new RabbitMqBackend(rabbit, { exchange: "shop" }) });
 * await bus.emit("order.placed", { total: 3 });
 * await bus.close();
 * await rabbit.close();
 * ```
 */
export class RabbitMqBackend implements AsyncBackend, AsyncDisposable {
  /** Always `"rabbitmq"`. */
  readonly name: string = BACKEND;
  /** Always `true`: events cross the wire. */
  readonly remote: boolean = true;

  #connection: Connection;
  #owned = false;
  #settings: Settings;
  #publisher: Publisher;
  #consumers = new Set<Consumer>();
  #running = 0;
  #idle: (() => void) | undefined;
  #abort = new AbortController();
  #completed = 0;
  #logger: Logger | undefined;
  #closing: Promise<CloseReport> | undefined;
  #onConnectionError = (error: unknown): void => {
    (this.#logger ?? SILENT).warn(
      `RabbitMQ connection trouble, reconnecting: ${describeError(error)}`,
      { error },
    );
  };

  /**
   * Builds a backend on a connection you opened.
   *
   * @param connection A `rabbitmq-client` connection; it may still be
   *   connecting. The backend opens its own channels on it and never closes
   *   it.
   * @param options Exchange names, concurrency and timings.
   * @throws {RangeError} When a number option is out of range.
   */
  constructor(connection: Connection, options: RabbitMqBackendOptions = {}) {
    this.#connection = connection;
    this.#settings = settingsOf(options);
    connection.on("error", this.#onConnectionError);
    this.#publisher = connection.createPublisher({
      confirm: true,
      exchanges: [this.#exchangeSpec()],
    });
  }

  /**
   * Opens (and owns, so `close()` closes it) a connection, and waits until it
   * is established.
   *
   * @param connection A URL such as `"amqp://guest:guest@127.0.0.1:5672"`,
   *   or `rabbitmq-client` connection options.
   * @param options Exchange names, concurrency and timings.
   * @returns A backend on an open connection.
   * @throws {BackendError} When the broker cannot be reached within
   *   `publishTimeout`.
   *
   * @example Open a backend
   * ```ts ignore
   * import { RabbitMqBackend } from "@eventbus/core/rabbitmq";
   * const backend = await RabbitMqBackend.connect("amqp://guest:guest@127.0.0.1:5672");
   * await backend.close();
   * ```
   */
  static async connect(
    connection: string | ConnectionOptions,
    options: RabbitMqBackendOptions = {},
  ): Promise<RabbitMqBackend> {
    const settings = settingsOf(options);
    const rabbit = new Connection(connection);
    rabbit.on("error", () => {}); // until the backend's listener is attached
    try {
      await rabbit.onConnect(settings.publishTimeout);
    } catch (error) {
      rabbit.unsafeDestroy();
      throw new BackendError(
        BACKEND,
        `Cannot connect to RabbitMQ: ${
          describeError(error)
        }, check the url, the credentials and that the broker runs`,
        { cause: error },
      );
    }
    const backend = new RabbitMqBackend(rabbit, options);
    backend.#owned = true;
    return backend;
  }

  /**
   * Publishes the event to the exchange with its type as routing key, and
   * resolves once the broker confirmed it. While the connection is down it
   * keeps trying until `publishTimeout`.
   *
   * @param event The event.
   * @param options The signal that stops waiting.
   * @returns Once the broker confirmed the message.
   * @throws {EventBusClosedError} After `close()`.
   * @throws {BackendError} When the broker refused the message or did not
   *   confirm it in time; `cause` is the client's error.
   * @throws The signal's reason when it aborts first.
   *
   * @example Publish one event
   * ```ts ignore
   * import { createEvent } from "@eventbus/core";
   * import { RabbitMqBackend } from "@eventbus/core/rabbitmq";
   * const backend = await RabbitMqBackend.connect("amqp://guest:guest@127.0.0.1:5672");
   * await backend.publish(createEvent("user.signup", { id: "u1" }));
   * await backend.close();
   * ```
   */
  async publish(event: Event, options?: PublishOptions): Promise<void> {
    if (this.#closing !== undefined) throw new EventBusClosedError(event.type);
    const signal = options?.signal;
    signal?.throwIfAborted();
    const body = encodeEvent(event);
    const { exchange, publishTimeout } = this.#settings;
    const deadline = AbortSignal.timeout(publishTimeout);
    const stop = signal === undefined
      ? deadline
      : AbortSignal.any([signal, deadline]);
    let backoff = 50;
    while (true) {
      try {
        await abortable(
          this.#publisher.send({
            exchange,
            routingKey: event.type,
            durable: true,
            contentType: CONTENT_TYPE,
            messageId: event.id,
            type: event.type,
          }, body),
          stop,
        );
        return;
      } catch (error) {
        if (signal?.aborted) throw signal.reason;
        if (deadline.aborted || this.#closing !== undefined) {
          throw new BackendError(
            BACKEND,
            `Cannot publish "${event.type}" to exchange "${exchange}": ${
              deadline.aborted
                ? `the broker did not confirm it within publishTimeout (${publishTimeout} ms), check the connection or raise publishTimeout`
                : "the backend closed while the broker was unreachable"
            }: ${describeError(error)}`,
            { cause: error },
          );
        }
        await sleep(backoff, stop).catch(() => {});
        backoff = Math.min(backoff * 2, MAX_BACKOFF);
      }
    }
  }

  /**
   * Declares each handler's queue (bound to the exchange by its event type)
   * and the dead-letter exchange and queue, then consumes with manual
   * acknowledgement and prefetch = `concurrency`. Resolves once every
   * consumer is ready; after a lost connection they come back by themselves.
   *
   * @param deliver Runs one try.
   * @param options Consumers, the signal that detaches them, and the logger.
   * @returns Once every consumer is ready.
   * @throws {EventBusClosedError} After `close()`.
   * @throws {BackendError} When a queue cannot be declared or consumed.
   *
   * @example Consume for one handler
   * ```ts ignore
   * import { RabbitMqBackend } from "@eventbus/core/rabbitmq";
   * const backend = await RabbitMqBackend.connect("amqp://guest:guest@127.0.0.1:5672");
   * await backend.consume(async () => ({ status: "completed" }), {
   *   consumers: [{ name: "audit", type: "user.signup", attempts: 3 }],
   * });
   * await backend.close();
   * ```
   */
  async consume(deliver: Deliver, options: ConsumeOptions): Promise<void> {
    if (this.#closing !== undefined) throw new EventBusClosedError();
    const { consumers, signal, logger = SILENT } = options;
    this.#logger ??= logger;
    if (signal?.aborted) return;
    const started: Consumer[] = [];
    try {
      await this.#declareDeadLetters();
      for (const spec of consumers) {
        const consumer = this.#consumer(spec, deliver, logger);
        started.push(consumer);
        this.#consumers.add(consumer);
        await ready(consumer);
      }
    } catch (error) {
      for (const consumer of started) {
        this.#consumers.delete(consumer);
        void consumer.close().catch(() => {});
      }
      throw new BackendError(
        BACKEND,
        `Cannot consume from RabbitMQ: ${
          describeError(error)
        }, check the connection and that every process uses the same queue options`,
        { cause: error },
      );
    }
    signal?.addEventListener("abort", () => {
      for (const consumer of started) {
        this.#consumers.delete(consumer);
        void consumer.close().catch(() => {});
      }
    }, { once: true });
  }

  /**
   * Cancels the consumers, lets running handlers finish until `timeout`,
   * then aborts their signals and requeues their messages for the next
   * worker. Messages stay on the broker, so nothing is abandoned. Closes the
   * connection if `connect()` opened it. Closing twice returns the same
   * report.
   *
   * @param options Deadline (default 30 000 ms) and signal.
   * @returns Deliveries completed here; `abandoned` is always empty.
   *
   * @example Close with a deadline
   * ```ts ignore
   * import { RabbitMqBackend } from "@eventbus/core/rabbitmq";
   * const backend = await RabbitMqBackend.connect("amqp://guest:guest@127.0.0.1:5672");
   * const report = await backend.close({ timeout: 5000 });
   * console.assert(report.abandoned.length === 0);
   * ```
   */
  close(options?: CloseOptions): Promise<CloseReport> {
    this.#closing ??= this.#close(options);
    return this.#closing;
  }

  /** Closes the backend with the default timeout. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #close(options: CloseOptions | undefined): Promise<CloseReport> {
    const { timeout = 30_000, signal } = options ?? {};
    // Cancelling stops new deliveries; each close() resolves once the
    // consumer's running handlers settled.
    const closing = [...this.#consumers].map((consumer) =>
      consumer.close().catch(() => {})
    );
    this.#consumers.clear();
    if (this.#running > 0) {
      const deadline = signal === undefined
        ? AbortSignal.timeout(timeout)
        : AbortSignal.any([signal, AbortSignal.timeout(timeout)]);
      await abortable(
        new Promise<void>((resolve) => this.#idle = resolve),
        deadline,
      ).catch(() => {});
    }
    // Handlers still running are cut short: their messages are requeued.
    this.#abort.abort(new EventBusClosedError());
    // Without a connection there is nothing to hand back: do not wait long.
    const wait = this.#connection.ready ? CLOSE_TIMEOUT : 100;
    await withTimeout(Promise.all(closing), wait).catch(() => {});
    await withTimeout(this.#publisher.close(), wait).catch(() => {});
    if (this.#owned) {
      await withTimeout(this.#connection.close(), CLOSE_TIMEOUT).catch(() =>
        this.#connection.unsafeDestroy()
      );
    }
    this.#connection.off("error", this.#onConnectionError);
    return { completed: this.#completed, abandoned: [] };
  }

  #exchangeSpec(): { exchange: string; type: "topic"; durable: true } {
    return { exchange: this.#settings.exchange, type: "topic", durable: true };
  }

  async #declareDeadLetters(): Promise<void> {
    const queue = this.#settings.deadLetterExchange;
    await this.#connection.exchangeDeclare({
      exchange: queue,
      type: "fanout",
      durable: true,
    });
    await this.#connection.queueDeclare({ queue, durable: true });
    await this.#connection.queueBind({ queue, exchange: queue });
  }

  #consumer(spec: ConsumerSpec, deliver: Deliver, logger: Logger): Consumer {
    const { exchange, concurrency, deadLetterExchange, deliveryLimit } =
      this.#settings;
    const queue = `${exchange}.${spec.name}`;
    const consumer = this.#connection.createConsumer({
      queue,
      queueOptions: {
        durable: true,
        arguments: {
          "x-queue-type": "quorum",
          "x-dead-letter-exchange": deadLetterExchange,
          "x-delivery-limit": deliveryLimit,
        },
      },
      qos: { prefetchCount: concurrency },
      concurrency,
      requeue: true,
      exchanges: [this.#exchangeSpec()],
      queueBindings: [{ exchange, queue, routingKey: spec.type }],
    }, (message) => this.#handle(message, queue, spec, deliver, logger));
    consumer.on("error", (error: unknown) =>
      logger.warn(
        `RabbitMQ consumer of queue "${queue}" failed, recovering: ${
          describeError(error)
        }`,
        { error },
      ));
    return consumer;
  }

  /** Runs one message; its result tells the client to ack or requeue it. */
  async #handle(
    message: AsyncMessage,
    queue: string,
    spec: ConsumerSpec,
    deliver: Deliver,
    logger: Logger,
  ): Promise<ConsumerStatus> {
    if (this.#abort.signal.aborted) return ConsumerStatus.REQUEUE;
    this.#running++;
    try {
      return await abortable(
        this.#run(message, queue, spec, deliver, logger),
        this.#abort.signal,
      );
    } catch (error) {
      if (this.#abort.signal.aborted) return ConsumerStatus.REQUEUE;
      throw error; // the client nacks with requeue and logs through "error"
    } finally {
      if (--this.#running === 0) this.#idle?.();
    }
  }

  async #run(
    message: AsyncMessage,
    queue: string,
    spec: ConsumerSpec,
    deliver: Deliver,
    logger: Logger,
  ): Promise<ConsumerStatus> {
    const headers = message.headers ?? {};
    const attempt = (Number(headers[TRIES_HEADER]) || 0) +
      (Number(headers["x-delivery-count"]) || 0) + 1;
    let event: Event;
    try {
      event = decodeEvent(bytesOf(message.body));
    } catch (error) {
      logger.error(
        `Dead-lettering a message of queue "${queue}": it is not an event: ${
          describeError(error)
        }`,
        { error },
      );
      await this.#deadLetter(message, queue, spec.name, attempt, error);
      return ConsumerStatus.ACK;
    }
    const result: DeliveryResult = await deliver({
      event,
      handler: spec.name,
      attempt,
      signal: this.#abort.signal,
    });
    switch (result.status) {
      case "completed":
        this.#completed++;
        return ConsumerStatus.ACK;
      case "retry":
        await this.#retryLater(message, queue, attempt, result.delay);
        return ConsumerStatus.ACK;
      case "dead-letter":
        await this.#deadLetter(
          message,
          queue,
          spec.name,
          attempt,
          result.error.cause,
        );
        return ConsumerStatus.ACK;
      case "abandoned":
        return ConsumerStatus.REQUEUE;
    }
  }

  /**
   * Publishes a copy to the handler's delay queue for `delay` ms (declared on
   * first use), from where RabbitMQ dead-letters it back to the handler's
   * queue when its TTL expires.
   */
  async #retryLater(
    message: AsyncMessage,
    queue: string,
    attempt: number,
    delay: number,
  ): Promise<void> {
    const ttl = delayStep(delay);
    let routingKey = queue;
    if (ttl > 0) {
      routingKey = `${queue}.retry.${ttl}`;
      await this.#connection.queueDeclare({
        queue: routingKey,
        durable: true,
        arguments: {
          "x-message-ttl": ttl,
          "x-dead-letter-exchange": "",
          "x-dead-letter-routing-key": queue,
          "x-expires": ttl + DELAY_QUEUE_EXPIRY,
        },
      });
    }
    await this.#publisher.send({
      exchange: "",
      routingKey,
      durable: true,
      contentType: CONTENT_TYPE,
      ...ids(message),
      headers: { [TRIES_HEADER]: attempt },
    }, message.body);
  }

  async #deadLetter(
    message: AsyncMessage,
    queue: string,
    handler: string,
    attempts: number,
    error: unknown,
  ): Promise<void> {
    await this.#publisher.send({
      exchange: this.#settings.deadLetterExchange,
      routingKey: queue,
      durable: true,
      contentType: CONTENT_TYPE,
      ...ids(message),
      headers: {
        "x-eventbus-handler": handler,
        "x-eventbus-attempts": attempts,
        "x-eventbus-error": describeError(error),
        "x-eventbus-queue": queue,
      },
    }, message.body);
  }
}

interface Settings {
  readonly exchange: string;
  readonly deadLetterExchange: string;
  readonly concurrency: number;
  readonly publishTimeout: number;
  readonly deliveryLimit: number;
}

const SILENT: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
};

function settingsOf(options: RabbitMqBackendOptions): Settings {
  const {
    exchange = "events",
    deadLetterExchange = `${exchange}.dead-letter`,
    concurrency = 10,
    publishTimeout = 30_000,
    deliveryLimit = 20,
  } = options;
  if (typeof exchange !== "string" || exchange === "") {
    throw new TypeError(
      "Cannot create RabbitMQ backend: exchange must be a non-empty string",
    );
  }
  for (
    const [name, value] of Object.entries({
      concurrency,
      publishTimeout,
      deliveryLimit,
    })
  ) {
    if (!Number.isInteger(value) || value < 1) {
      throw new RangeError(
        `Cannot create RabbitMQ backend: ${name} must be an integer of at least 1, got ${value}`,
      );
    }
  }
  return {
    exchange,
    deadLetterExchange,
    concurrency,
    publishTimeout,
    deliveryLimit,
  };
}

/**
 * Rounds a delay up to one of 4 steps per power of two (1, 1.25, 1.5, 1.75
 * times 2^n ms), so retries need few delay queues.
 */
function delayStep(ms: number): number {
  if (!(ms > 0)) return 0;
  const step = 2 ** Math.max(0, Math.floor(Math.log2(ms)) - 2);
  return Math.ceil(ms / step) * step;
}

function ids(
  message: AsyncMessage,
): { messageId?: string; type?: string } {
  const result: { messageId?: string; type?: string } = {};
  if (message.messageId !== undefined) result.messageId = message.messageId;
  if (message.type !== undefined) result.type = message.type;
  return result;
}

function bytesOf(body: unknown): string | Uint8Array {
  if (typeof body === "string" || body instanceof Uint8Array) return body;
  return JSON.stringify(body); // a body the client parsed as JSON
}

/** Resolves when the consumer is ready; rejects on its first setup error. */
function ready(consumer: Consumer): Promise<void> {
  return new Promise((resolve, reject) => {
    const onReady = () => {
      consumer.off("error", onError);
      resolve();
    };
    const onError = (error: unknown) => {
      consumer.off("ready", onReady);
      reject(error);
    };
    consumer.once("ready", onReady);
    consumer.once("error", onError);
  });
}

/** Rejects with the signal's reason when it aborts first. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    promise.catch(() => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() =>
      signal.removeEventListener("abort", onAbort)
    );
  });
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return abortable(promise, AbortSignal.timeout(ms));
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
