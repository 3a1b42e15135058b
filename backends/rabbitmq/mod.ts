// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * A RabbitMQ backend for `@eventbus/core`: events go through a durable topic
 * exchange to one durable queue per handler name, with publisher confirms,
 * `mandatory` publishes, manual acknowledgements, delayed retries through
 * TTL queues, and a dead-letter exchange.
 *
 * ## The client
 *
 * Built on `rabbitmq-client`: written in TypeScript, no dependencies, and it
 * runs unchanged on Deno, Bun and Node through their `node:net` support. It
 * reconnects by itself, and its `Publisher` (and the backend's consumer,
 * built on its channels like its `Consumer`, with one `multiple`
 * acknowledgement at close that `Consumer` cannot send) re-declare their
 * queues, exchanges and bindings and resume consuming on every new
 * connection, which is exactly the recovery an event bus needs. `amqplib` has no reconnection, and
 * `@cloudamqp/amqp-client` leaves recovery to the caller.
 *
 * ## The RabbitMQ idioms, one by one
 *
 * - **A durable topic exchange** (`events` by default); the routing key is
 *   the event type, messages are persistent (`delivery-mode 2`), typed
 *   `application/cloudevents+json` (the CloudEvents AMQP binding's
 *   structured mode), with `message-id` = the event id. Bodies are sent as
 *   bytes: the client would type a string body `text/plain`. Retry and
 *   dead-letter copies are typed the same.
 * - **Publisher confirms and `mandatory`**: `publish` resolves only after the
 *   broker confirmed the message into at least one queue (`confirm.select`
 *   channel), so an accepted event is on disk in every queue bound for it. A
 *   message no queue is bound for comes back (`basic.return`) and `publish`
 *   rejects with `UnroutableEventError` (from `@eventbus/core`): nothing is
 *   stored, and
 *   the caller knows. While the connection is down, `publish` keeps trying
 *   until `publishTimeout`, then rejects with `BackendError`. A confirm lost
 *   with the connection means the message is sent again: duplicates are
 *   possible, losses are not.
 * - **One durable quorum queue per handler name**, `<exchange>.<name>`, bound
 *   to the exchange with the handler's event type. Workers sharing a name
 *   consume one queue and compete; different names have their own queues.
 *   A worker declares its queue when it starts; a producer declares the
 *   queues of the names listed in its `handlers` option before it first
 *   publishes their type, so those handlers keep every accepted event even
 *   before their first worker runs.
 * - **Manual acknowledgement, prefetch apart from concurrency**: `basic.qos`
 *   (`prefetch`, default 30 or `concurrency` if more) limits the
 *   unacknowledged messages per
 *   consumer, so the broker keeps that many on their way to a worker while
 *   at most `concurrency` (default 10) handlers run at once; a message is
 *   acknowledged only after its handler finished. A message waiting for a
 *   handler slot has not started: it is no try, and close() hands it back.
 * - **Retries with delay through TTL queues**: a retry publishes a copy
 *   (confirmed) to `<queue>.retry.<ms>`, a queue with `x-message-ttl = ms`
 *   whose dead-letter exchange is the default exchange with the handler's
 *   queue as routing key, then acknowledges the original. When the TTL
 *   expires, RabbitMQ moves the copy back to the handler's queue. Delays are
 *   rounded up to 4 steps per power of two (at most 25% longer), so each
 *   queue only ever holds messages of one TTL (expiry is FIFO) and there are
 *   few of them; unused delay queues delete themselves (`x-expires`).
 * - **Attempts, counted on the broker**: `attempt` = tries made before this
 *   copy (header `x-eventbus-tries`) + the quorum queue's `x-delivery-count`
 *   (how often this copy came back unacknowledged: a worker crashed, lost
 *   its connection or was closed mid-try) + 1. A delivery the backend hands
 *   back unstarted (it arrived while its consumer was closing) is not a try:
 *   it goes back as a copy carrying the tries made so far. So a message
 *   whose handler kills its worker every time reaches the bus with an
 *   `attempt` past the handler's `attempts`, and the bus dead-letters it
 *   (reason `crashed`, one `onError`) without running it again. Messages
 *   that waited in a worker for a handler slot when it crashed or lost its
 *   connection cannot be handed back: they too come back counted. The quorum
 *   queue's own limit (`x-delivery-limit` = `deliveryLimit`, default 20) is
 *   only a safety net: `consume()` refuses a handler whose `attempts` is not
 *   below it, so the broker never dead-letters first.
 * - **A dead-letter exchange** (fanout, `<exchange>.dead-letter`, with a
 *   durable queue of the same name): a dead-lettered delivery goes there as
 *   a copy with `x-eventbus-handler`, `x-eventbus-attempts`,
 *   `x-eventbus-reason` (`failed`, `crashed`, `invalid-data`,
 *   `not-retriable`, `invalid-event`), `x-eventbus-error`,
 *   `x-eventbus-queue`, `x-eventbus-ref` (its ref) and `x-eventbus-time`
 *   headers, confirmed, before the original is acknowledged. Messages that
 *   are not valid events go there too (reason `invalid-event`, logged once,
 *   with the content type they came with). `deadLetters` reads that queue
 *   with `basic.get` and gives back what it keeps, in place, and replays to
 *   the failed handler's queue only, through the default exchange.
 * - **close()** first lets each consumer take what its prefetch still
 *   allows, so that no message is on its way when it cancels (RabbitMQ 3.10
 *   quorum queues return such messages when the channel closes, with one
 *   more delivery count). It cancels the consumers, hands back the messages
 *   that arrived but never started (as copies at the end of their queue,
 *   carrying their tries, the originals acknowledged with one `multiple`
 *   acknowledgement before the channel closes, so that none of them comes
 *   back counted however many there are), lets running handlers finish until the timeout,
 *   then aborts their signals and `basic.nack`s their messages with requeue
 *   (a try that started counts), so the next worker gets them at once.
 *   Nothing is lost, so `close()` reports no abandoned events.
 *
 * ## Guarantees
 *
 * At least once. `emit` resolving means the broker confirmed the event into
 * every queue bound for its type, and each of those handler names will get
 * it: durable quorum queues keep messages until they are handled or
 * dead-lettered (no TTL, no length limit, unless a policy you set adds one).
 * An event that no queue is bound for is refused with
 * `UnroutableEventError`, never dropped.
 *
 * A handler queue receives the events published after it was declared: by
 * its first worker, or earlier by a producer that lists the name in
 * `handlers`. RabbitMQ keeps no history, so a name added later never gets
 * older events (no silent replay); the worker that creates its queue logs a
 * warning saying so (no silent skip). List every handler name in the
 * producers' `handlers` option when events must be kept for a handler whose
 * workers may start after the producer.
 *
 * Handlers may see an event twice after a lost connection or confirm; the
 * event id is stable for de-duplication.
 *
 * @example A producer and a worker
 * ```ts ignore
 * import { EventBus } from "@eventbus/core";
 * import { RabbitMqBackend } from "@eventbus/rabbitmq";
 *
 * type Events = { "user.signup": { email: string } };
 * const url = "amqp://guest:guest@127.0.0.1:5672";
 * // The producer keeps events for "welcome-mail" before its worker starts.
 * await using producer = new EventBus<Events>({
 *   backend: await RabbitMqBackend.connect(url, {
 *     handlers: { "user.signup": ["welcome-mail"] },
 *   }),
 * });
 * await producer.emit("user.signup", { email: "ada@example.com" });
 *
 * await using worker = new EventBus<Events>({ backend: await RabbitMqBackend.connect(url) });
 * worker.subscribe("user.signup", async (event, ctx) => {
 *   await fetch("https://mail.example/send", { method: "POST", body: event.data.email, signal: ctx.signal });
 * }, { async: true, name: "welcome-mail" });
 * await worker.listen();
 * ```
 *
 * @module
 */

import { Buffer } from "node:buffer";
import {
  AMQPChannelError,
  AMQPConnectionError,
  type AsyncMessage,
  Connection,
  type ConnectionOptions,
  ConsumerStatus,
  type Envelope,
  type Publisher,
  type ReturnedMessage,
} from "rabbitmq-client";
import {
  type AsyncBackend,
  BackendError,
  type BackendTelemetry,
  type CloseOptions,
  type CloseReport,
  type ConsumeOptions,
  type ConsumerSpec,
  type DeadLetterReason,
  type DeadLetters,
  decodeEvent,
  type Deliver,
  type DeliveryResult,
  describeError,
  encodeEvent,
  type Event,
  EventBusClosedError,
  type Logger,
  type PublishOptions,
  UnroutableEventError,
} from "@eventbus/core";
import {
  abortable,
  type BackendArguments,
  checkBackendOptions,
  checkClientConfig,
  checkHandlers,
  checkInteger,
  checkName,
  CONSOLE_LOGGER,
  deadline,
  drain,
  InFlight,
  nextImmediate,
  sharedTimeout,
  SILENT_LOGGER,
  sleep,
  withTimeout,
} from "@eventbus/core/backend-kit";
import { deadLetterHeaders, RabbitMqDeadLetters } from "./_dead_letters.ts";
import { BACKEND, bufferOf, CONTENT_TYPE } from "./_wire.ts";
import { checkPrefetch, defaultPrefetch, HandlerSlots } from "./_prefetch.ts";
import { HANDED_BACK, QueueConsumer, type Settlement } from "./_consumer.ts";

const TRIES_HEADER = "x-eventbus-tries";
/** Longest pause between publish tries while the broker is unreachable. */
const MAX_BACKOFF = 2000;
/** How long an unused delay queue outlives its TTL before it deletes itself. */
const DELAY_QUEUE_EXPIRY = 60_000;
/** How long close() waits for the client to hand back channels. */
const CLOSE_TIMEOUT = 5000;
/**
 * How long a closing consumer waits for one more message while it takes its
 * prefetch credit (see `#detach`).
 */
const FILL_WAIT = 25;
/** Where each of `connect()`'s two arguments goes, for the option checks. */
const ARGUMENTS: BackendArguments = {
  broker: "RabbitMQ",
  connect: "RabbitMqBackend.connect",
  config: "connection",
  setting: "a connection setting",
  client: "new Connection()",
  options: new Set([
    "exchange",
    "deadLetterExchange",
    "concurrency",
    "prefetch",
    "publishTimeout",
    "deliveryLimit",
    "handlers",
  ]),
  // rabbitmq-client's ConnectionOptions (5.0).
  settings: new Set([
    "acquireTimeout",
    "connectionName",
    "connectionTimeout",
    "frameMax",
    "heartbeat",
    "maxChannels",
    "retryHigh",
    "retryLow",
    "url",
    "hostname",
    "port",
    "vhost",
    "password",
    "username",
    "tls",
    "socket",
    "noDelay",
    "hosts",
  ]),
};
/** Channel errors that a retry cannot fix: the broker refused the request. */
const REFUSALS: ReadonlySet<string> = new Set([
  "ACCESS_REFUSED",
  "NOT_FOUND",
  "NOT_ALLOWED",
  "PRECONDITION_FAILED",
  "RESOURCE_LOCKED",
]);

/**
 * Options of {@linkcode RabbitMqBackend}.
 *
 * @example Own exchange, fewer handlers at once, declared handler names
 * ```ts ignore
 * import { RabbitMqBackend } from "@eventbus/rabbitmq";
 * const backend = await RabbitMqBackend.connect("amqp://guest:guest@127.0.0.1:5672", {
 *   exchange: "shop",
 *   concurrency: 4,
 *   publishTimeout: 10_000,
 *   handlers: { "order.placed": ["invoice", "ship"] },
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
   * Deliveries of one handler running at once in this process.
   * @default {10}
   */
  concurrency?: number;
  /**
   * How many unacknowledged messages RabbitMQ keeps on their way to each
   * consumer (`basic.qos` prefetch count, 1 to 65 535), apart from
   * `concurrency`: the messages beyond the running ones wait in the worker
   * for a handler slot, so the next one is there as soon as a handler
   * settles. A waiting message has not started: it is no try, and
   * `close()` hands it back unstarted, however many are held (their
   * originals are acknowledged with one `multiple` acknowledgement). More
   * is faster (a quorum queue frees credit only once it applied an
   * acknowledgement) and holds more messages in memory. But on RabbitMQ
   * before 4.3, a message on its way when the consumer is cancelled comes
   * back counted, and the more credit is left at close, the likelier that
   * is while events flow: a replaced worker counted 1-8 hand-backs as a try
   * in 6 of 10 runs with 256, 2 of 10 with 128, none of 16 with 30.
   * Messages held by a worker that crashes or loses its connection always
   * come back counted.
   * @default {"30, or concurrency if that is more"}
   */
  prefetch?: number;
  /**
   * How long, in ms, `publish` keeps trying while the broker is unreachable
   * or has not confirmed, before it rejects with `BackendError` (up to 50 ms
   * more: publishes share one timer per 50 ms of deadlines).
   * @default {30000}
   */
  publishTimeout?: number;
  /**
   * The quorum queues' `x-delivery-limit`: how often a message may return
   * to its queue unacknowledged before RabbitMQ itself dead-letters it. The
   * bus dead-letters a delivery past its handler's `attempts` first (reason
   * `"crashed"`), so this is only a safety net and must stay above every
   * handler's `attempts`: `consume()` rejects a handler whose `attempts` is
   * not below it. Every process declaring a queue must use the same value
   * (RabbitMQ refuses a queue declared again with another one).
   * @default {20}
   */
  deliveryLimit?: number;
  /**
   * Handler names to keep events for before their first worker starts, by
   * event type, such as `{ "order.placed": ["invoice", "ship"] }`. Before
   * the first publish of a listed type, the producer declares each name's
   * queue (`<exchange>.<name>`, with the same arguments a worker uses) and
   * binds it, so those handlers get every event accepted from then on,
   * whenever their workers start. A name not listed anywhere gets a queue
   * only when its first worker starts, and only the events published after
   * that: RabbitMQ keeps no history to replay.
   * @default {{}}
   */
  handlers?: Readonly<Record<string, readonly string[]>>;
}

/**
 * An async backend on RabbitMQ: a durable topic exchange, publisher
 * confirms with `mandatory` publishes, one durable quorum queue per handler
 * name, manual acknowledgements with prefetch, delayed retries through TTL
 * queues, a dead-letter exchange, and recovery after a lost connection. See
 * the module documentation for the RabbitMQ idioms it uses.
 *
 * @example With a connection you opened (the backend does not close it)
 * ```ts ignore
 * import { Connection } from "rabbitmq-client";
 * import { EventBus } from "@eventbus/core";
 * import { RabbitMqBackend } from "@eventbus/rabbitmq";
 *
 * const rabbit = new Connection("amqp://guest:guest@127.0.0.1:5672");
 * rabbit.on("error", (error) => console.warn("rabbitmq:", error.message));
 * const backend = new RabbitMqBackend(rabbit, {
 *   exchange: "shop",
 *   handlers: { "order.placed": ["invoice"] },
 * });
 * const bus = new EventBus({ backend });
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
  /** For instrumentation: system `"rabbitmq"`, destination the exchange. */
  readonly telemetry: BackendTelemetry = {
    system: "rabbitmq",
    destination: () => this.#settings.exchange,
  };
  /**
   * The dead letters in the dead-letter queue (`<exchange>.dead-letter`):
   * count, list, replay and purge. A ref is the id the backend gave the
   * dead letter when it wrote it (header `x-eventbus-ref`). A replay
   * publishes the event, same id and `traceparent`, straight to the failed
   * handler's queue `<exchange>.<name>` (so no other handler name gets it)
   * and removes the dead letter after RabbitMQ confirmed the copy; a
   * handler whose queue does not exist keeps its dead letters (not counted
   * as replayed, with a warning). The queue cannot be browsed: each call
   * reads it with `basic.get` and gives back what it keeps, in place; calls
   * of one backend run one at a time.
   *
   * @example Replaying what one handler gave up on
   * ```ts ignore
   * import { RabbitMqBackend } from "@eventbus/core/rabbitmq";
   * const backend = await RabbitMqBackend.connect("amqp://guest:guest@127.0.0.1:5672");
   * for await (const item of backend.deadLetters.list({ handler: "send-welcome-email" })) {
   *   console.log(item.ref, item.event.id, item.attempts, item.error);
   * }
   * const { replayed } = await backend.deadLetters.replay({ handler: "send-welcome-email" });
   * console.log(`${replayed} replayed`);
   * await backend.close();
   * ```
   */
  readonly deadLetters: DeadLetters;

  #connection: Connection;
  #owned = false;
  #settings: Settings;
  #publisher: Publisher;
  /** Publishes waiting for their confirm, by exchange, routing key and id. */
  #returns = new Map<string, { returned: boolean }[]>();
  /** The declaration of each `handlers` type's queues, once per type. */
  #declared = new Map<string, Promise<void>>();
  /** The `handlers` types whose queues are declared. */
  #declaredTypes = new Set<string>();
  #consumers = new Set<Attached>();
  /** Running tries; abandoned at the close deadline, which aborts handlers. */
  #tries = new InFlight();
  /** Aborted when close() starts: stops consumers still attaching. */
  #stopping = new AbortController();
  #completed = 0;
  #logger: Logger | undefined;
  #closing: Promise<CloseReport> | undefined;
  #onConnectionError = (error: unknown): void => {
    (this.#logger ?? SILENT_LOGGER).warn(
      `RabbitMQ connection trouble, reconnecting: ${describeError(error)}`,
      { error },
    );
  };
  #onReturn = (message: ReturnedMessage): void => {
    const key = returnKey(
      message.exchange,
      message.routingKey,
      message.messageId,
    );
    for (const waiter of this.#returns.get(key) ?? []) waiter.returned = true;
  };

  /**
   * Builds a backend on a connection you opened.
   *
   * @param connection A `rabbitmq-client` connection; it may still be
   *   connecting. The backend opens its own channels on it and never closes
   *   it.
   * @param options Exchange names, concurrency, timings and declared handler
   *   names.
   * @throws {TypeError} When an option is unknown, belongs to the connection,
   *   or has the wrong type.
   * @throws {RangeError} When a number option is out of range.
   */
  constructor(connection: Connection, options: RabbitMqBackendOptions = {}) {
    this.#settings = settingsOf(options);
    this.#connection = connection;
    connection.on("error", this.#onConnectionError);
    this.#publisher = connection.createPublisher({
      confirm: true,
      exchanges: [this.#exchangeSpec()],
    });
    this.#publisher.on("basic.return", this.#onReturn);
    const { exchange, deadLetterExchange, publishTimeout } = this.#settings;
    this.deadLetters = new RabbitMqDeadLetters({
      connection,
      queue: deadLetterExchange,
      exchange,
      publishTimeout,
      send: (envelope, body) => this.#send(envelope, body),
      logger: () => this.#logger ?? CONSOLE_LOGGER,
      closed: () => this.#closing !== undefined,
    });
  }

  /**
   * Opens (and owns, so `close()` closes it) a connection, and waits until it
   * is established.
   *
   * @param connection A URL such as `"amqp://guest:guest@127.0.0.1:5672"`,
   *   or `rabbitmq-client` connection options.
   * @param options Exchange names, concurrency, timings and declared handler
   *   names: the backend's options, never the connection's.
   * @returns A backend on an open connection.
   * @throws {TypeError} When a backend option is given in `connection` (or a
   *   connection option in `options`): the message names the right argument.
   * @throws {BackendError} When the broker cannot be reached within
   *   `publishTimeout`.
   *
   * @example Open a backend
   * ```ts ignore
   * import { RabbitMqBackend } from "@eventbus/rabbitmq";
   * const backend = await RabbitMqBackend.connect(
   *   { url: "amqp://guest:guest@127.0.0.1:5672", connectionName: "shop" },
   *   { exchange: "shop" },
   * );
   * await backend.close();
   * ```
   */
  static async connect(
    connection: string | ConnectionOptions,
    options: RabbitMqBackendOptions = {},
  ): Promise<RabbitMqBackend> {
    checkClientConfig(connection, ARGUMENTS);
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
   * Publishes the event to the exchange with its type as routing key
   * (`mandatory`), and resolves once the broker confirmed it into at least
   * one queue. Before the first publish of a type listed in `handlers`, it
   * declares and binds those handlers' queues. While the connection is down
   * it keeps trying until `publishTimeout`.
   *
   * @param event The event.
   * @param options The signal that stops waiting.
   * @returns Once the broker confirmed the message.
   * @throws {EventBusClosedError} After `close()`.
   * @throws {UnroutableEventError} When no queue is bound for the event's
   *   type: nothing was stored.
   * @throws {BackendError} When the broker refused the message or a queue
   *   declaration, or did not confirm in time; `cause` is the client's error.
   * @throws The signal's reason when it aborts first.
   *
   * @example Publish one event
   * ```ts ignore
   * import { createEvent } from "@eventbus/core";
   * import { RabbitMqBackend } from "@eventbus/rabbitmq";
   * const backend = await RabbitMqBackend.connect("amqp://guest:guest@127.0.0.1:5672", {
   *   handlers: { "user.signup": ["welcome-mail"] },
   * });
   * await backend.publish(createEvent("user.signup", { id: "u1" }));
   * await backend.close();
   * ```
   */
  async publish(event: Event, options?: PublishOptions): Promise<void> {
    if (this.#closing !== undefined) throw new EventBusClosedError(event.type);
    const signal = options?.signal;
    signal?.throwIfAborted();
    const body = Buffer.from(encodeEvent(event));
    const { exchange, publishTimeout, handlers } = this.#settings;
    const declares = handlers.has(event.type);
    const deadline = sharedTimeout(publishTimeout);
    const stop = signal === undefined
      ? deadline
      : AbortSignal.any([signal, deadline]);
    let backoff = 50;
    let redeclared = false;
    while (true) {
      let returned: boolean;
      try {
        if (declares) await this.#declareHandlers(event.type, stop);
        returned = await abortable(
          this.#send({
            exchange,
            routingKey: event.type,
            mandatory: true,
            durable: true,
            contentType: CONTENT_TYPE,
            messageId: event.id,
            type: event.type,
          }, body),
          stop,
        );
      } catch (error) {
        if (signal?.aborted) throw signal.reason;
        if (error instanceof BackendError) throw error;
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
        await sleep(backoff, stop);
        backoff = Math.min(backoff * 2, MAX_BACKOFF);
        continue;
      }
      if (!returned) return;
      // Declared queues deleted behind our back: declare them again, once.
      if (declares && !redeclared) {
        redeclared = true;
        this.#declared.delete(event.type);
        this.#declaredTypes.delete(event.type);
        continue;
      }
      throw new UnroutableEventError(BACKEND, event.type, {
        searched: `exchange "${exchange}"`,
      });
    }
  }

  /**
   * Declares each handler's queue (bound to the exchange by its event type)
   * and the dead-letter exchange and queue, then consumes with manual
   * acknowledgement, `prefetch` messages on their way, `concurrency`
   * handlers at once. Resolves once every
   * consumer is consuming; after a lost connection they come back by
   * themselves. A queue this call creates receives only the events
   * published from now on, and a warning says so.
   *
   * @param deliver Runs one try.
   * @param options Consumers, the signal that detaches them, and the logger.
   * @returns Once every consumer is consuming.
   * @throws {EventBusClosedError} After `close()`, or when `close()` is
   *   called while consumers attach.
   * @throws {RangeError} When a handler's `attempts` is not below
   *   `deliveryLimit`.
   * @throws {BackendError} When a queue cannot be declared or consumed.
   *
   * @example Consume for one handler
   * ```ts ignore
   * import { RabbitMqBackend } from "@eventbus/rabbitmq";
   * const backend = await RabbitMqBackend.connect("amqp://guest:guest@127.0.0.1:5672");
   * await backend.consume(async () => ({ status: "completed" }), {
   *   consumers: [{ name: "audit", type: "user.signup", attempts: 3 }],
   * });
   * await backend.close();
   * ```
   */
  async consume(deliver: Deliver, options: ConsumeOptions): Promise<void> {
    if (this.#closing !== undefined) throw new EventBusClosedError();
    const { consumers, signal, logger = SILENT_LOGGER } = options;
    this.#logger ??= logger;
    if (signal?.aborted) return;
    const { deliveryLimit } = this.#settings;
    for (const spec of consumers) {
      if (spec.attempts >= deliveryLimit) {
        throw new RangeError(
          `Cannot consume "${spec.type}" for handler "${spec.name}": its ${spec.attempts} attempts are not below deliveryLimit (${deliveryLimit}), so RabbitMQ could dead-letter a crash loop before the bus sees it, lower attempts or raise deliveryLimit on every process (delete the queue first: it keeps the limit it was declared with)`,
        );
      }
    }
    const started: Attached[] = [];
    const detach = () => {
      for (const attached of started) void this.#detach(attached);
    };
    signal?.addEventListener("abort", detach, { once: true });
    const stop = signal === undefined
      ? this.#stopping.signal
      : AbortSignal.any([this.#stopping.signal, signal]);
    try {
      await abortable(
        this.#attach(consumers, deliver, logger, started, signal),
        stop,
      );
    } catch (error) {
      signal?.removeEventListener("abort", detach);
      detach();
      if (this.#closing !== undefined) throw new EventBusClosedError();
      if (signal?.aborted) return; // detached while attaching
      throw new BackendError(
        BACKEND,
        `Cannot consume from RabbitMQ: ${
          describeError(error)
        }, check the connection and that every process uses the same queue options`,
        { cause: error },
      );
    }
  }

  /**
   * Cancels the consumers (messages that still arrive are handed back
   * unstarted), lets running handlers finish until `timeout`, then aborts
   * their signals and requeues their messages for the next worker. Messages
   * stay on the broker, so nothing is abandoned. Closes the connection if
   * `connect()` opened it. Closing twice returns the same report.
   *
   * @param options Deadline (default 30 000 ms) and signal.
   * @returns Deliveries completed here; `abandoned` is always empty.
   *
   * @example Close with a deadline
   * ```ts ignore
   * import { RabbitMqBackend } from "@eventbus/rabbitmq";
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
    this.#stopping.abort(new EventBusClosedError());
    // Cancelling stops new deliveries; each close() resolves once the
    // consumer's running handlers settled.
    const closing = [...this.#consumers].map((attached) =>
      this.#detach(attached)
    );
    // Handlers still running at the deadline are cut short: their messages
    // are requeued.
    {
      using limit = deadline(timeout, signal);
      await drain([this.#tries], limit, { reason: new EventBusClosedError() });
    }
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

  /** The arguments of every handler queue; producers and workers agree. */
  #queueArguments(): Record<string, unknown> {
    const { deadLetterExchange, deliveryLimit } = this.#settings;
    return {
      "x-queue-type": "quorum",
      "x-dead-letter-exchange": deadLetterExchange,
      "x-delivery-limit": deliveryLimit,
    };
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

  /**
   * Declares and binds the queues `handlers` lists for `type`, once per
   * type; rejects with `BackendError` when the broker refuses a declaration
   * (a retry cannot help), with the client's error while it is unreachable.
   */
  async #declareHandlers(type: string, signal: AbortSignal): Promise<void> {
    if (this.#declaredTypes.has(type)) return;
    let declared = this.#declared.get(type);
    if (declared === undefined) {
      declared = this.#declareQueues(type).then(
        () => void this.#declaredTypes.add(type),
        (error) => {
          this.#declared.delete(type);
          throw error;
        },
      );
      this.#declared.set(type, declared);
    }
    try {
      await abortable(declared, signal);
    } catch (error) {
      if (!isRefusal(error)) throw error;
      throw new BackendError(
        BACKEND,
        `Cannot declare the queues of handlers ${
          JSON.stringify(this.#settings.handlers.get(type))
        } for "${type}": the broker refused it: ${
          describeError(error)
        }, check the permissions and that every process uses the same exchange and queue options`,
        { cause: error },
      );
    }
  }

  async #declareQueues(type: string): Promise<void> {
    const { exchange } = this.#settings;
    await this.#connection.exchangeDeclare(this.#exchangeSpec());
    await this.#declareDeadLetters();
    for (const name of this.#settings.handlers.get(type) ?? []) {
      const queue = `${exchange}.${name}`;
      await this.#connection.queueDeclare({
        queue,
        durable: true,
        arguments: this.#queueArguments(),
      });
      await this.#connection.queueBind({ queue, exchange, routingKey: type });
    }
  }

  /** Whether `queue` exists, asked on a channel of its own (404 closes it). */
  async #queueExists(queue: string): Promise<boolean> {
    const channel = await this.#connection.acquire();
    try {
      await channel.queueDeclare({ queue, passive: true });
      return true;
    } catch (error) {
      if (error instanceof AMQPChannelError && error.code === "NOT_FOUND") {
        return false;
      }
      throw error;
    } finally {
      if (channel.active) await channel.close().catch(() => {});
    }
  }

  async #attach(
    consumers: readonly ConsumerSpec[],
    deliver: Deliver,
    logger: Logger,
    started: Attached[],
    signal: AbortSignal | undefined,
  ): Promise<void> {
    await this.#declareDeadLetters();
    for (const spec of consumers) {
      const queue = `${this.#settings.exchange}.${spec.name}`;
      const existed = await this.#queueExists(queue);
      // close() or the signal may have come meanwhile: attach nothing that
      // they would not see.
      if (this.#closing !== undefined) throw new EventBusClosedError();
      if (signal?.aborted) return;
      const attached = this.#consumer(queue, spec, deliver, logger);
      started.push(attached);
      this.#consumers.add(attached);
      await ready(attached.consumer);
      if (!existed) {
        logger.warn(
          `Created queue "${queue}" for handler "${spec.name}" of "${spec.type}": it receives the events published from now on, none from before (RabbitMQ keeps no history), list the name in the producers' handlers option to keep events for a handler before its first worker starts`,
          { queue, handler: spec.name, type: spec.type },
        );
      }
    }
  }

  /**
   * Stops one consumer so that no message returns to its queue with a count
   * of a try that never started. RabbitMQ 3.10 quorum queues keep messages
   * that were on their way to a consumer when it was cancelled, and return
   * them when its channel closes, each with one more `x-delivery-count`.
   * So before cancelling, the consumer takes every message its prefetch
   * allows (or until none came for `FILL_WAIT` ms): with no credit left,
   * nothing is on its way. The messages that arrive meanwhile are held, then
   * handed back uncounted (#handBack); running handlers go on as usual.
   */
  async #detach(attached: Attached): Promise<void> {
    this.#consumers.delete(attached);
    attached.closing = true;
    // Messages waiting for a handler slot are handed back unstarted.
    attached.slots.close();
    await this.#takeCredit(attached);
    // close() writes basic.cancel first, and acknowledges the held messages
    // (each once its copy was confirmed) only when every delivery settled,
    // all at once, just before the channel closes.
    const closed = attached.consumer.close().catch(() => {});
    attached.holding = false;
    for (const release of attached.held.splice(0)) release();
    await closed;
  }

  /** Resolves once the consumer has no prefetch credit left, or none came. */
  async #takeCredit(attached: Attached): Promise<void> {
    const { prefetch } = this.#settings;
    const deadline = performance.now() + CLOSE_TIMEOUT;
    while (attached.unacked < prefetch && performance.now() < deadline) {
      const arrived = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), FILL_WAIT);
        attached.onArrival = () => {
          clearTimeout(timer);
          resolve(true);
        };
      });
      attached.onArrival = undefined;
      if (!arrived) return;
    }
  }

  #consumer(
    queue: string,
    spec: ConsumerSpec,
    deliver: Deliver,
    logger: Logger,
  ): Attached {
    const { exchange, concurrency, prefetch } = this.#settings;
    const attached: Attached = {
      consumer: undefined!,
      slots: new HandlerSlots(concurrency),
      closing: false,
      holding: true,
      unacked: 0,
      held: [],
      onArrival: undefined,
    };
    // Every arrival goes to #handle, which waits for a handler slot.
    attached.consumer = new QueueConsumer(
      this.#connection,
      {
        queue,
        queueOptions: { durable: true, arguments: this.#queueArguments() },
        prefetch,
        exchanges: [this.#exchangeSpec()],
        queueBindings: [{ exchange, queue, routingKey: spec.type }],
      },
      (message) =>
        this.#handle(message, queue, attached, spec, deliver, logger),
    );
    attached.consumer.on("error", (error: unknown) =>
      logger.warn(
        `RabbitMQ consumer of queue "${queue}" failed, recovering: ${
          describeError(error)
        }`,
        { error },
      ));
    return attached;
  }

  /** Runs one message; its result tells the client to ack or requeue it. */
  async #handle(
    message: AsyncMessage,
    queue: string,
    attached: Attached,
    spec: ConsumerSpec,
    deliver: Deliver,
    logger: Logger,
  ): Promise<Settlement> {
    attached.unacked++;
    try {
      if (!attached.closing) {
        const slot = attached.slots.take();
        const permit = slot instanceof Promise ? await slot : slot;
        if (permit !== undefined) {
          try {
            return await this.#runTry(message, queue, spec, deliver, logger);
          } finally {
            permit.release();
          }
        }
      }
      // Closing: it arrived, or waited for a slot, and never started.
      if (attached.holding) {
        await new Promise<void>((resolve) => {
          attached.held.push(resolve);
          attached.onArrival?.();
        });
      }
      return await this.#handBack(message, queue);
    } finally {
      attached.unacked--;
    }
  }

  async #runTry(
    message: AsyncMessage,
    queue: string,
    spec: ConsumerSpec,
    deliver: Deliver,
    logger: Logger,
  ): Promise<ConsumerStatus> {
    if (this.#tries.abandoned) return ConsumerStatus.REQUEUE;
    const running = this.#tries.run(
      (signal) => this.#run(message, queue, spec, deliver, logger, signal),
      ConsumerStatus.REQUEUE,
    );
    this.#tries.track(running);
    try {
      return await running;
    } catch (error) {
      if (this.#tries.abandoned) return ConsumerStatus.REQUEUE;
      throw error; // the client nacks with requeue and logs through "error"
    }
  }

  async #run(
    message: AsyncMessage,
    queue: string,
    spec: ConsumerSpec,
    deliver: Deliver,
    logger: Logger,
    signal: AbortSignal,
  ): Promise<ConsumerStatus> {
    const attempt = attemptOf(message);
    let event: Event;
    try {
      event = decodeEvent(bufferOf(message.body));
    } catch (error) {
      logger.error(
        `Dead-lettering a message of queue "${queue}": it is not an event: ${
          describeError(error)
        }`,
        { error },
      );
      await this.#deadLetter(message, queue, spec.name, {
        attempts: attempt,
        reason: "invalid-event",
        error,
        event: false,
      });
      return ConsumerStatus.ACK;
    }
    const result: DeliveryResult = await deliver({
      event,
      handler: spec.name,
      attempt,
      signal,
    });
    switch (result.status) {
      case "completed":
        this.#completed++;
        return ConsumerStatus.ACK;
      case "retry":
        await this.#retryLater(message, queue, attempt, result.delay);
        return ConsumerStatus.ACK;
      case "dead-letter":
        await this.#deadLetter(message, queue, spec.name, {
          attempts: result.error.attempts,
          reason: result.error.reason,
          error: result.error.cause,
          event: true,
        });
        return ConsumerStatus.ACK;
      case "abandoned":
        return ConsumerStatus.REQUEUE;
    }
  }

  /**
   * Hands back a delivery that never started: a copy goes to the end of its
   * queue with the tries made so far (so the broker's count of this
   * delivery does not become a try), then the original is acknowledged.
   * When the copy cannot be published, the original is requeued instead.
   */
  async #handBack(
    message: AsyncMessage,
    queue: string,
  ): Promise<Settlement> {
    try {
      await withTimeout(
        this.#copy({
          exchange: "",
          routingKey: queue,
          durable: true,
          contentType: CONTENT_TYPE,
          ...ids(message),
          headers: { [TRIES_HEADER]: attemptOf(message) - 1 },
        }, bufferOf(message.body)),
        CLOSE_TIMEOUT,
      );
      return HANDED_BACK;
    } catch {
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
    await this.#copy({
      exchange: "",
      routingKey,
      durable: true,
      contentType: CONTENT_TYPE,
      ...ids(message),
      headers: { [TRIES_HEADER]: attempt },
    }, bufferOf(message.body));
  }

  async #deadLetter(
    message: AsyncMessage,
    queue: string,
    handler: string,
    what: {
      attempts: number;
      reason: DeadLetterReason;
      error: unknown;
      event: boolean;
    },
  ): Promise<void> {
    await this.#copy({
      exchange: this.#settings.deadLetterExchange,
      routingKey: queue,
      durable: true,
      // A message that is not an event keeps the content type it came with.
      contentType: what.event
        ? CONTENT_TYPE
        : message.contentType ?? "application/octet-stream",
      ...ids(message),
      headers: deadLetterHeaders({ handler, queue, ...what }),
    }, bufferOf(message.body));
  }

  /** Publishes a copy (mandatory, confirmed); rejects when it was returned. */
  async #copy(envelope: Envelope, body: Buffer): Promise<void> {
    if (await this.#send({ ...envelope, mandatory: true }, body)) {
      throw new BackendError(
        BACKEND,
        `Cannot copy a message to ${
          envelope.exchange === ""
            ? `queue "${envelope.routingKey}"`
            : `exchange "${envelope.exchange}"`
        }: RabbitMQ returned it (no queue), the original stays in its queue, check that the queue was not deleted`,
      );
    }
  }

  /**
   * Publishes and waits for the confirm; resolves whether RabbitMQ returned
   * the message (a `mandatory` publish no queue took). The broker sends
   * `basic.return` before the confirm, and the client emits it on the next
   * macrotask, so one macrotask after the confirm every return is known.
   */
  async #send(envelope: Envelope, body: Buffer): Promise<boolean> {
    const key = returnKey(
      envelope.exchange ?? "",
      envelope.routingKey ?? "",
      envelope.messageId,
    );
    const waiter = { returned: false };
    const waiting = this.#returns.get(key);
    if (waiting === undefined) this.#returns.set(key, [waiter]);
    else waiting.push(waiter);
    try {
      await this.#publisher.send(envelope, body);
      if (envelope.mandatory) await nextImmediate();
      return waiter.returned;
    } finally {
      const list = this.#returns.get(key)!;
      list.splice(list.indexOf(waiter), 1);
      if (list.length === 0) this.#returns.delete(key);
    }
  }
}

interface Settings {
  readonly exchange: string;
  readonly deadLetterExchange: string;
  readonly concurrency: number;
  readonly prefetch: number;
  readonly publishTimeout: number;
  readonly deliveryLimit: number;
  readonly handlers: ReadonlyMap<string, readonly string[]>;
}

/** A consumer, and its state while it is being detached. */
interface Attached {
  consumer: QueueConsumer;
  /** `concurrency` handler slots; closed when it is being detached. */
  slots: HandlerSlots;
  /** Set once it is being detached: arrivals are handed back unstarted. */
  closing: boolean;
  /** While closing, arrivals wait in `held` until the cancel took effect. */
  holding: boolean;
  /** Messages in #handle, not yet acknowledged (running, waiting, held). */
  unacked: number;
  held: (() => void)[];
  /** Wakes #takeCredit when a message arrives while closing. */
  onArrival: (() => void) | undefined;
}

function settingsOf(options: RabbitMqBackendOptions): Settings {
  checkBackendOptions(options, ARGUMENTS);
  const {
    exchange = "events",
    deadLetterExchange = `${exchange}.dead-letter`,
    concurrency = 10,
    publishTimeout = 30_000,
    deliveryLimit = 20,
    handlers = {},
  } = options;
  checkName(ARGUMENTS, "exchange", exchange);
  checkInteger(ARGUMENTS, "concurrency", concurrency);
  const { prefetch = defaultPrefetch(concurrency) } = options;
  checkPrefetch(ARGUMENTS, prefetch);
  checkInteger(ARGUMENTS, "publishTimeout", publishTimeout);
  checkInteger(ARGUMENTS, "deliveryLimit", deliveryLimit);
  return {
    exchange,
    deadLetterExchange,
    concurrency,
    prefetch,
    publishTimeout,
    deliveryLimit,
    handlers: checkHandlers(ARGUMENTS, handlers),
  };
}

/**
 * This delivery's try number: the tries made before this copy (header) plus
 * the quorum queue's count of returns of this copy, plus one.
 */
function attemptOf(message: AsyncMessage): number {
  const headers = message.headers ?? {};
  return (Number(headers[TRIES_HEADER]) || 0) +
    (Number(headers["x-delivery-count"]) || 0) + 1;
}

/** Whether the broker refused a request for good (a retry cannot help). */
function isRefusal(error: unknown): boolean {
  return error instanceof AMQPChannelError &&
    !(error instanceof AMQPConnectionError) && REFUSALS.has(error.code);
}

function returnKey(
  exchange: string,
  routingKey: string,
  messageId: string | undefined,
): string {
  return `${exchange}\n${routingKey}\n${messageId ?? ""}`;
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

/** Resolves when the consumer is ready; rejects on its first setup error. */
function ready(consumer: QueueConsumer): Promise<void> {
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
