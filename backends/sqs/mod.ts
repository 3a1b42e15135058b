// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * An Amazon SQS backend for `@eventbus/core`, built on the AWS SDK v3 client
 * [`@aws-sdk/client-sqs`](https://www.npmjs.com/package/@aws-sdk/client-sqs).
 * An example module: one file, written to be read as a lesson in SQS's
 * idioms as much as to be used.
 *
 * ## Why `@aws-sdk/client-sqs`
 *
 * It is AWS's own, maintained client: modular (only SQS is bundled), speaks
 * the AWS JSON 1.0 protocol, takes an `AbortSignal` on every call, and runs
 * on Deno, Bun and Node 20 (its `engines` field says Node >= 20). Credentials,
 * region, retries and endpoints come from the standard AWS configuration
 * chain, so the same code runs against AWS and against an emulator.
 *
 * ## SQS idioms used
 *
 * - **One queue per handler name.** SQS has no fan-out of its own: a message
 *   goes to one queue and one consumer takes it. So each handler name gets
 *   its own queue, `<queuePrefix><name>` (with `.fifo` when `fifo`), tagged
 *   `eventbus:type = <event type>`. Consumers that share a name poll the
 *   same queue and compete; different names each get a copy.
 * - **What "accepted" means.** `publish` resolves once SQS stored the event
 *   in the queue of every handler name of its type it knows; a message then
 *   waits there, whether or not a worker runs, for the queue's
 *   `MessageRetentionPeriod` (SQS's default 4 days, at most 14 days).
 *   Which names it knows:
 *   - **Declared names** (the option `handlers`, such as
 *     `{ "order.placed": ["shipping", "invoicing"] }`): `publish` creates
 *     their queues on the first event of the type, so a handler whose first
 *     worker starts later gets every event emitted since. Declare them on
 *     every producer of the type.
 *   - **Discovered names**: queues under the prefix tagged with the type
 *     (`ListQueues`, then `ListQueueTags` once per queue), listed again when
 *     the list is older than `discoveryInterval` ms (default 10 000), and
 *     queues this process consumes. When it knows none for the type, it
 *     lists again before giving up, so a queue created after its last
 *     listing is not missed.
 *   - **None**: `publish` rejects with `UnroutableEventError` (from
 *     `@eventbus/core`), which says to start a worker first or declare the
 *     names; nothing is sent. An event is never accepted for nobody.
 * - **A handler name added later** (no replay, no silent skip): its first
 *   worker's `consume()` creates its queue, logs that it gets the events
 *   published from now on (at warn level, naming the queues that got the
 *   earlier ones, when the type already had handlers), and waits
 *   `discoveryInterval` ms before it resolves, so publishers that cached
 *   their list route to it from then on. SQS cannot replay what was sent
 *   before the queue existed; to keep those, declare the name on the
 *   producers before its first worker starts.
 *   **In production consider SNS fan-out**: publish to one SNS topic with
 *   the type as a message attribute, and subscribe each handler queue with
 *   a filter policy `{"type": ["<event type>"]}` and raw message delivery,
 *   so the broker copies every event to every queue subscribed at the time.
 *   The consumer side of this backend reads such queues unchanged.
 * - **SendMessage** carries the CloudEvents 1.0 structured JSON event as the
 *   body and the type as the message attribute `type`. SQS stores only
 *   #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to
 *   #x10FFFF; `JSON.stringify` already escapes control characters and lone
 *   surrogates, and the backend escapes the rest as `\uXXXX` in the JSON
 *   text (U+FFFE, U+FFFF), which every JSON reader decodes to the same
 *   string. It escapes characters from U+10000 up (emoji) too, as surrogate
 *   pairs: AWS stores them, but the fauxqs emulator refuses them (it checks
 *   UTF-16 code units), and the escape costs 12 bytes instead of 4. So every
 *   payload, metadata value and id `emit` accepts round-trips unchanged.
 *   Text the backend writes into message attributes (error, handler) is
 *   escaped the same way, as plain text.
 * - **FIFO queues** (`fifo: true`): `MessageGroupId` = the `partitionkey`
 *   metadata, else the event type, so each group is handled strictly in
 *   order, one message at a time; `MessageDeduplicationId` = the event id,
 *   so emitting the same id twice within SQS's five-minute window stores it
 *   once. SQS takes 1 to 128 printable ASCII characters there: a key or id
 *   outside that is replaced by `sha256:` and its SHA-256, so it still
 *   groups and de-duplicates.
 * - **Long polling**: `ReceiveMessage` with `WaitTimeSeconds`
 *   (`waitTimeSeconds`, default 20), up to 10 messages and never more than
 *   free handler slots (`concurrency`), with the `ApproximateReceiveCount`.
 *   The delivery's `attempt` is that count plus the tries a hand-back copy
 *   carried over (see Close): a worker that died during a try (never
 *   deleted the message) counts as a try, as it must for crash loops.
 * - **Visibility timeout as the lease**: a received message is invisible to
 *   other consumers for `visibilityTimeout` seconds; while its handler runs
 *   the backend extends it with `ChangeMessageVisibility` every half period.
 *   **DeleteMessage** after success. A retry sets the visibility to the
 *   bus's backoff delay (rounded up to whole seconds, as SQS counts), so SQS
 *   itself redelivers it later with the next receive count. A try cut short
 *   by `close()` gets visibility 0: redelivered at once, and it counts as a
 *   try (the handler ran).
 * - **Crash loops end in the dead letters.** A delivery whose `attempt` is
 *   past its handler's attempts (every allowed try ended without a result:
 *   workers killed, or closed mid-try) is not run again: the bus
 *   dead-letters it with reason `"crashed"` and calls `onError` once, and
 *   the backend copies it to the dead-letter queue as below.
 * - **Dead letters**: each handler queue has its own dead-letter queue,
 *   `<queue>-dlq`. The backend sends a copy there itself, with message
 *   attributes `eventbus-reason` (`failed`, `crashed`, `invalid-event`, ...),
 *   `eventbus-error`, `eventbus-attempts` and `eventbus-handler`, then
 *   deletes the original. A body that is not an event (or not of the
 *   queue's type) is dead-lettered at once with reason `invalid-event` and
 *   logged at error level. The queue's **redrive policy**
 *   (`maxReceiveCount` = the handler's attempts + 5, at most 1000) only
 *   catches what the bus never sees: a consumer that dies between receive
 *   and handler, a dead-letter copy that failed again and again, a foreign
 *   consumer. SQS then moves the message to the same dead-letter queue,
 *   without the `eventbus-*` attributes and without `onError`. Each
 *   dead-letter queue is tagged `eventbus:dead-letters-of = <handler name>`;
 *   on FIFO queues each copy has a message group of its own, so that
 *   reading the queue is never blocked by a group in flight.
 * - **Working with dead letters** ({@linkcode SqsBackend.deadLetters}): SQS
 *   queues cannot be browsed, so each call receives every message of the
 *   dead-letter queues it reads (with a 30 s visibility timeout, extended
 *   while it runs), and makes those it does not delete visible again at once
 *   (`ChangeMessageVisibility` 0). A ref is the dead letter's SQS message
 *   id. A replay sends the event's body to the failed handler's own queue
 *   (no other handler name reads it; on FIFO queues with the
 *   de-duplication id `<event id>:replay:<message id>`, which SQS has not
 *   seen), then deletes the dead letter. Verified on fauxqs only.
 * - **Close**: stop polling (the poll in flight is allowed to return, up to
 *   `waitTimeSeconds`, because abandoning it can leave SQS handing its
 *   messages to nobody until their visibility timeout), let running
 *   handlers finish until the timeout, then abort their signals and release
 *   their messages with visibility 0. What the poll in flight returns after
 *   intake stopped is handed back unstarted without counting a try: on a
 *   standard queue a copy carrying the tries so far (message attribute
 *   `eventbus-tries`) replaces it; on a FIFO queue, where a copy would lose
 *   its place in the group, it is made visible again and that receive does
 *   count (at most one per close; leave room for it in `attempts`). Nothing
 *   is reported abandoned: an undeleted message stays in SQS.
 * - **New queues take a moment.** AWS asks to wait a second after
 *   `CreateQueue` before using a queue, and does not promise that
 *   `ListQueues` shows a new queue at once. So `publish` tries a declared
 *   queue that does not exist yet again for a few seconds before it
 *   rejects, and a listing that misses the only queue of a type makes it
 *   reject, never drop the event.
 *
 * @example Publish and consume
 * ```ts ignore
 * import { EventBus } from "@eventbus/core";
 * import { SqsBackend } from "@eventbus/sqs";
 *
 * const backend = await SqsBackend.connect({ region: "eu-west-1" }, {
 *   queuePrefix: "shop-",
 *   handlers: { "order.placed": ["shipping"] }, // kept before its worker starts
 * });
 * const bus = new EventBus<{ "order.placed": { id: string } }>({ backend });
 * bus.subscribe("order.placed", async (event, { signal }) => {
 *   await fetch(`https://example.com/ship/${event.data.id}`, { signal });
 * }, { async: true, name: "shipping" });
 * await bus.listen();
 * await bus.emit("order.placed", { id: "o1" });
 * await bus.close();
 * ```
 *
 * @module
 */

import {
  ChangeMessageVisibilityCommand,
  CreateQueueCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  ListQueuesCommand,
  ListQueueTagsCommand,
  type Message,
  type MessageAttributeValue,
  ReceiveMessageCommand,
  SendMessageCommand,
  SetQueueAttributesCommand,
  SQSClient,
  type SQSClientConfig,
  TagQueueCommand,
} from "@aws-sdk/client-sqs";
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
  type Permit,
  type PublishOptions,
  Semaphore,
  UnroutableEventError,
} from "@eventbus/core";
import {
  ABANDONED,
  abortable,
  type BackendArguments,
  checkBackendOptions,
  checkClientConfig,
  checkHandlers,
  checkInteger,
  checkNumber,
  deadline,
  drain,
  fnv1a,
  InFlight,
  SILENT_LOGGER,
  sleep,
  untilDeadline,
} from "@eventbus/core/backend-kit";
import {
  copyAttributes,
  DEAD_LETTERS_TAG,
  escapeForSqs,
  fifoId,
  isMissingQueue,
  MAX_ATTRIBUTES,
  nameOf,
  text,
  TYPE_TAG,
} from "./_util.ts";
import { SqsDeadLetters } from "./_dead_letters.ts";

const BACKEND = "sqs";
const MAX_VISIBILITY = 43_200; // seconds, SQS's limit
const MAX_RECEIVE_COUNT = 1000; // the redrive policy's limit
/**
 * Receives the redrive policy allows beyond a handler's attempts: the bus
 * dead-letters a delivery received attempts + 1 times itself (reason
 * "crashed"), so the redrive policy only moves what the bus never sees (a
 * consumer that dies between receive and handler, a dead-letter copy that
 * failed several times, FIFO hand-backs at close).
 */
const REDRIVE_SPARE = 5;
/** Sends tried again to a declared queue that does not exist (yet). */
const DECLARED_RETRIES = 3;
/** Message attribute: tries counted before this copy of the message. */
const TRIES = "eventbus-tries";
/** Where each of `connect()`'s two arguments goes, for the option checks. */
const ARGUMENTS: BackendArguments = {
  broker: "SQS",
  connect: "SqsBackend.connect",
  config: "config",
  setting: "an SQS client setting",
  client: "new SQSClient()",
  options: new Set([
    "queuePrefix",
    "fifo",
    "waitTimeSeconds",
    "visibilityTimeout",
    "concurrency",
    "discoveryInterval",
    "handlers",
  ]),
  // Common SQSClient settings, named when one lands among the backend options.
  settings: new Set([
    "region",
    "endpoint",
    "credentials",
    "maxAttempts",
    "retryMode",
    "retryStrategy",
    "requestHandler",
    "logger",
    "profile",
    "useQueueUrlAsEndpoint",
    "useFipsEndpoint",
    "useDualstackEndpoint",
    "customUserAgent",
    "md5",
  ]),
};

/**
 * Options of {@linkcode SqsBackend}.
 *
 * @example FIFO queues with a short long-poll
 * ```ts ignore
 * import { SqsBackend, type SqsBackendOptions } from "@eventbus/sqs";
 * const options: SqsBackendOptions = {
 *   queuePrefix: "shop-",
 *   fifo: true,
 *   waitTimeSeconds: 5,
 * };
 * const backend = await SqsBackend.connect({ region: "eu-west-1" }, options);
 * await backend.close();
 * ```
 */
export interface SqsBackendOptions {
  /**
   * Prefix of every queue name: `<queuePrefix><handler name>`, and the
   * prefix `publish` lists to discover handler queues.
   * @default {"eventbus-"}
   */
  queuePrefix?: string;
  /**
   * Use FIFO queues: ordered per `MessageGroupId` (the `partitionkey`
   * metadata, else the event type), de-duplicated by event id.
   * @default {false}
   */
  fifo?: boolean;
  /**
   * Long-poll wait of each `ReceiveMessage`, in seconds (0 to 20). `close()`
   * waits for the poll in flight, so small values close faster.
   * @default {20}
   */
  waitTimeSeconds?: number;
  /**
   * How long a received message stays invisible to other consumers, in
   * seconds; extended while its handler runs.
   * @default {30}
   */
  visibilityTimeout?: number;
  /**
   * How many deliveries of one handler name run at once in this process.
   * @default {10}
   */
  concurrency?: number;
  /**
   * How long `publish` trusts its list of handler queues, in ms. A type
   * with no handler queue in the list is looked up again before `publish`
   * gives up. `consume()` waits this long after creating a new handler
   * queue, so that every publisher with the same (or a shorter) interval
   * routes to it by the time `listen()` resolves: use one value everywhere.
   * @default {10000}
   */
  discoveryInterval?: number;
  /**
   * Handler names to keep events for, per event type, whether or not their
   * workers run yet: `publish` creates each one's queue on the first event
   * of its type (tagged, without the dead-letter queue and redrive policy,
   * which the first worker adds) and sends every event of the type there,
   * so a handler whose first worker starts later still gets every event
   * emitted since, within the queue's retention (`MessageRetentionPeriod`,
   * SQS's default 4 days, at most 14). Declare the same names on every
   * producer of the type. Handler queues found by discovery get the events
   * too.
   * @default {{}}
   */
  handlers?: Readonly<Record<string, readonly string[]>>;
}

/**
 * An async backend on SQS: one queue per handler name, declared on the
 * producer (option `handlers`) or discovered by prefix and tag on publish;
 * long polling, visibility-timeout retries, DeleteMessage after success and
 * a dead-letter queue per handler queue. See the module doc.
 *
 * @example With a client you configured
 * ```ts ignore
 * import { SQSClient } from "@aws-sdk/client-sqs";
 * import { EventBus } from "@eventbus/core";
 * import { SqsBackend } from "@eventbus/sqs";
 *
 * const client = new SQSClient({ region: "eu-west-1" });
 * const bus = new EventBus({ backend: new SqsBackend(client) });
 * await bus.emit("order.placed", { id: "o1" });
 * await bus.close();
 * client.destroy();
 * ```
 */
export class SqsBackend implements AsyncBackend, AsyncDisposable {
  /** Always `"sqs"`. */
  readonly name: string = BACKEND;
  /** Always `true`: events cross the wire to processes that `listen()`. */
  readonly remote: boolean = true;
  /**
   * For instrumentation: system `"aws_sqs"`; destination a handler's queue,
   * or for a publish (to every handler queue of the type) the event type.
   */
  readonly telemetry: BackendTelemetry = {
    system: "aws_sqs",
    destination: (type, handler) =>
      handler === undefined ? type : this.queueName(handler),
  };

  /**
   * The dead letters of this backend's handler names, in their dead-letter
   * queues `<queue>-dlq` under `queuePrefix`: count, list (oldest first),
   * replay (to the failed handler's own queue only) and purge. A ref is
   * the dead letter's SQS message id. SQS queues cannot be browsed:
   * each call receives every message of the queues it reads, holding them
   * invisible while it runs (30 s, extended), then makes them visible
   * again; run one operator at a time. See the module doc.
   *
   * @example Replaying what one handler gave up on
   * ```ts ignore
   * import { SqsBackend } from "@eventbus/core/sqs";
   * const backend = await SqsBackend.connect({ region: "eu-west-1" }, { queuePrefix: "shop-" });
   * for await (const item of backend.deadLetters.list({ handler: "shipping" })) {
   *   console.log(item.ref, item.event.id, item.attempts, item.error);
   * }
   * const { replayed } = await backend.deadLetters.replay({ handler: "shipping" });
   * console.log(`replayed ${replayed}`);
   * await backend.close();
   * ```
   */
  readonly deadLetters: DeadLetters;

  #client: SQSClient;
  #owned: boolean;
  #prefix: string;
  #fifo: boolean;
  #waitTimeSeconds: number;
  #visibilityTimeout: number;
  #concurrency: number;
  #discoveryInterval: number;
  /** Queue URL to the event type it is tagged with (undefined: none). */
  #tags = new Map<string, string | undefined>();
  /** Event type to handler queue URLs, as last discovered. */
  #routes = new Map<string, Set<string>>();
  #routesAt = -Infinity;
  #discovering: { at: number; promise: Promise<void> } | undefined;
  /** Declared handler names per event type (the option `handlers`). */
  #handlers: ReadonlyMap<string, readonly string[]>;
  /** Declared handler name to its queue URL, once created. */
  #declared = new Map<string, Promise<string>>();
  /** Aborted by close(): every consume() still attaching gives up. */
  #attachments = new AbortController();
  #attaching = new InFlight();
  /** Queues this process consumes: always routed, whatever discovery says. */
  #own = new Map<string, string>();
  #consumers = new Set<QueueConsumer>();
  #publishing = new InFlight();
  #closed = false;
  #closing: Promise<CloseReport> | undefined;
  #deadLetters: SqsDeadLetters;
  #completed = 0;

  /**
   * Creates a backend on an SQS client you opened; `close()` leaves it open.
   *
   * @param client An `SQSClient`.
   * @param options Queue names, FIFO, polling and tuning.
   * @throws {TypeError} When `options` holds an unknown key, such as an SQS
   *   client setting (those belong to the `SQSClient`), or `handlers` is not
   *   a map of valid event types to handler names.
   * @throws {RangeError} When an option is out of range.
   *
   * @example
   * ```ts ignore
   * import { SQSClient } from "@aws-sdk/client-sqs";
   * import { SqsBackend } from "@eventbus/sqs";
   * const backend = new SqsBackend(new SQSClient({ region: "eu-west-1" }), { fifo: true });
   * await backend.close();
   * ```
   */
  constructor(client: SQSClient, options: SqsBackendOptions = {}) {
    checkBackendOptions(options, ARGUMENTS);
    const {
      queuePrefix = "eventbus-",
      fifo = false,
      waitTimeSeconds = 20,
      visibilityTimeout = 30,
      concurrency = 10,
      discoveryInterval = 10_000,
      handlers = {},
    } = options;
    checkInteger(ARGUMENTS, "waitTimeSeconds", waitTimeSeconds, {
      min: 0,
      max: 20,
    });
    checkInteger(ARGUMENTS, "visibilityTimeout", visibilityTimeout, {
      max: MAX_VISIBILITY,
    });
    checkInteger(ARGUMENTS, "concurrency", concurrency);
    if (!/^[A-Za-z0-9_-]{0,40}$/.test(queuePrefix)) {
      throw new RangeError(
        `Cannot create the SQS backend: queuePrefix must be at most 40 characters of [A-Za-z0-9_-], got ${
          JSON.stringify(queuePrefix)
        }`,
      );
    }
    checkNumber(ARGUMENTS, "discoveryInterval", discoveryInterval);
    this.#client = client;
    this.#owned = false;
    this.#prefix = queuePrefix;
    this.#fifo = fifo;
    this.#waitTimeSeconds = waitTimeSeconds;
    this.#visibilityTimeout = visibilityTimeout;
    this.#concurrency = concurrency;
    this.#discoveryInterval = discoveryInterval;
    this.#handlers = checkHandlers(ARGUMENTS, handlers);
    this.#deadLetters = new SqsDeadLetters({
      client,
      prefix: queuePrefix,
      fifo,
      deadLetterQueueName: (handler) => this.deadLetterQueueName(handler),
      closed: () => this.#closed,
    });
    this.deadLetters = this.#deadLetters;
  }

  /**
   * Creates an SQS client from `config` and a backend that owns it:
   * `close()` destroys the client.
   *
   * @param config `SQSClient` settings: `region`, `endpoint`, `credentials`, ...
   * @param options Queue names, FIFO, polling and tuning.
   * @returns The backend, once created (it connects on first use).
   * @throws {TypeError} When `config` holds a backend option (such as
   *   `queuePrefix`, which belongs in `options`) or `options` an unknown key
   *   (such as `endpoint`, which belongs in `config`).
   * @throws {RangeError} When an option is out of range.
   *
   * @example Against a local emulator
   * ```ts ignore
   * import { SqsBackend } from "@eventbus/sqs";
   * const backend = await SqsBackend.connect({
   *   region: "us-east-1",
   *   endpoint: "http://127.0.0.1:4566",
   *   credentials: { accessKeyId: "test", secretAccessKey: "test" },
   * });
   * await backend.close();
   * ```
   */
  static connect(
    config: SQSClientConfig,
    options: SqsBackendOptions = {},
  ): Promise<SqsBackend> {
    // A promise, as every backend's connect() returns: bad arguments reject.
    return new Promise((resolve) => {
      checkClientConfig(config, ARGUMENTS);
      checkBackendOptions(options, ARGUMENTS);
      const backend = new SqsBackend(new SQSClient(config), options);
      backend.#owned = true;
      resolve(backend);
    });
  }

  /**
   * The queue name used for a handler name: `<queuePrefix><name>`, with
   * characters SQS does not allow replaced and a hash appended when the
   * name had to change, plus `.fifo` for FIFO queues.
   *
   * @param handler The handler name.
   * @returns The queue name.
   *
   * @example
   * ```ts ignore
   * import { SQSClient } from "@aws-sdk/client-sqs";
   * import { SqsBackend } from "@eventbus/sqs";
   * const backend = new SqsBackend(new SQSClient({}), { queuePrefix: "shop-" });
   * console.assert(backend.queueName("shipping") === "shop-shipping");
   * ```
   */
  queueName(handler: string): string {
    return this.#prefix + safeName(handler, 71 - this.#prefix.length) +
      (this.#fifo ? ".fifo" : "");
  }

  /**
   * The dead-letter queue name of a handler name: its queue name with
   * `-dlq` before any `.fifo`.
   *
   * @param handler The handler name.
   * @returns The dead-letter queue name.
   *
   * @example
   * ```ts ignore
   * import { SQSClient } from "@aws-sdk/client-sqs";
   * import { SqsBackend } from "@eventbus/sqs";
   * const backend = new SqsBackend(new SQSClient({}));
   * console.assert(backend.deadLetterQueueName("shipping") === "eventbus-shipping-dlq");
   * ```
   */
  deadLetterQueueName(handler: string): string {
    const name = this.queueName(handler);
    return this.#fifo ? `${name.slice(0, -5)}-dlq.fifo` : `${name}-dlq`;
  }

  /**
   * Sends the event to every handler queue of its type (declared, or
   * discovered) and resolves once SQS stored it in each.
   *
   * @param event The event.
   * @param options The caller's signal.
   * @returns Once every handler queue holds the event.
   * @throws {EventBusClosedError} After `close()`.
   * @throws {UnroutableEventError} When the type has no handler queue: no
   *   worker created one and no handler name is declared for it.
   * @throws {BackendError} When SQS did not take the event.
   *
   * @example
   * ```ts ignore
   * import { createEvent } from "@eventbus/core";
   * import { SqsBackend } from "@eventbus/sqs";
   * const backend = await SqsBackend.connect({ region: "eu-west-1" });
   * await backend.publish(createEvent("order.placed", { id: "o1" }));
   * await backend.close();
   * ```
   */
  async publish(event: Event, options?: PublishOptions): Promise<void> {
    if (this.#closed) throw new EventBusClosedError(event.type);
    const signal = options?.signal;
    signal?.throwIfAborted();
    const body = escapeForSqs(encodeEvent(event));
    const send = this.#publish(event, body, signal);
    this.#publishing.track(send);
    try {
      await send;
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      if (error instanceof BackendError) throw error;
      throw new BackendError(
        BACKEND,
        `Cannot publish "${event.type}" (id "${event.id}") to SQS: ${
          describeError(error)
        }, check the endpoint, region and credentials`,
        { cause: error },
      );
    }
  }

  /**
   * Creates (or updates) each consumer's queue and dead-letter queue, starts
   * long-polling it until `options.signal` aborts or the backend closes, and
   * resolves once every queue exists and polling started. After creating a
   * queue that did not exist, it also waits `discoveryInterval` ms, so that
   * publishers which cached their list of handler queues route to it by the
   * time it resolves (its messages are handled meanwhile).
   *
   * @param deliver Runs one try.
   * @param options Consumers, signal and logger.
   * @returns Once every queue exists, polling started and publishers route
   *   to it.
   * @throws {EventBusClosedError} After `close()`, or when `close()` is
   *   called while it attaches.
   * @throws {BackendError} When a queue cannot be created.
   *
   * @example
   * ```ts ignore
   * import { SqsBackend } from "@eventbus/sqs";
   * const backend = await SqsBackend.connect({ region: "eu-west-1" });
   * await backend.consume(async () => ({ status: "completed" }), {
   *   consumers: [{ name: "audit", type: "order.placed", attempts: 3 }],
   * });
   * await backend.close();
   * ```
   */
  async consume(deliver: Deliver, options: ConsumeOptions): Promise<void> {
    if (this.#closed) throw new EventBusClosedError();
    const { consumers, signal, logger = SILENT_LOGGER } = options;
    signal?.throwIfAborted();
    if (options.logger !== undefined) this.#deadLetters.logger = logger;
    const attach = this.#attach(deliver, consumers, signal, logger);
    this.#attaching.track(attach);
    await attach;
  }

  /**
   * Stops polling, lets running handlers finish until `timeout`, then aborts
   * their signals and makes their messages visible again at once. A
   * `consume()` still attaching rejects with `EventBusClosedError`. Destroys
   * the client if `connect()` created it.
   *
   * @param options Deadline and signal.
   * @returns Deliveries completed here; `abandoned` is always empty, since
   *   undeleted messages stay in SQS.
   *
   * @example
   * ```ts ignore
   * import { SqsBackend } from "@eventbus/sqs";
   * const backend = await SqsBackend.connect({ region: "eu-west-1" });
   * const report = await backend.close({ timeout: 5000 });
   * console.assert(report.abandoned.length === 0);
   * ```
   */
  close(options?: CloseOptions): Promise<CloseReport> {
    this.#closing ??= this.#close(options);
    return this.#closing;
  }

  /** Closes with the default timeout. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #close(options: CloseOptions | undefined): Promise<CloseReport> {
    this.#closed = true;
    this.#attachments.abort(new EventBusClosedError());
    await this.#attaching.idle();
    const { timeout = 30_000, signal } = options ?? {};
    const consumers = [...this.#consumers];
    using limit = deadline(timeout, signal);
    const onAbort = (): void => {
      for (const consumer of consumers) consumer.abortPoll();
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      for (const consumer of consumers) consumer.stopIntake();
      // Handlers get until the deadline; the poll in flight returns by
      // itself (its messages are handed back), so nothing released below is
      // picked up by it.
      await drain(consumers.map((consumer) => consumer.tries), limit, {
        reason: new Error("The SQS backend closed"),
        alongside: Promise.all(consumers.map((consumer) => consumer.polled())),
      });
      await Promise.all(consumers.map((consumer) => consumer.stop()));
      await untilDeadline(this.#publishing.idle(), limit);
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
    if (this.#owned) this.#client.destroy();
    return { completed: this.#completed, abandoned: [] };
  }

  async #attach(
    deliver: Deliver,
    consumers: readonly ConsumerSpec[],
    signal: AbortSignal | undefined,
    logger: Logger,
  ): Promise<void> {
    const stop = signal === undefined
      ? this.#attachments.signal
      : AbortSignal.any([signal, this.#attachments.signal]);
    const started: QueueConsumer[] = [];
    try {
      for (const spec of consumers) {
        await this.#attachOne(spec, deliver, logger, signal, stop, started);
      }
    } catch (error) {
      for (const consumer of started) {
        consumer.stop().finally(() => this.#consumers.delete(consumer));
      }
      if (this.#closed) {
        throw new EventBusClosedError(undefined, { cause: error });
      }
      if (signal?.aborted) throw signal.reason;
      throw error;
    }
  }

  async #attachOne(
    spec: ConsumerSpec,
    deliver: Deliver,
    logger: Logger,
    signal: AbortSignal | undefined,
    stop: AbortSignal,
    started: QueueConsumer[],
  ): Promise<void> {
    let queues: { url: string; deadLetterUrl: string; created: boolean };
    try {
      queues = await this.#ensureQueues(spec, stop);
    } catch (error) {
      if (stop.aborted) throw error;
      throw new BackendError(
        BACKEND,
        `Cannot consume "${spec.type}" for handler "${spec.name}": creating SQS queue "${
          this.queueName(spec.name)
        }" failed: ${
          describeError(error)
        }, check the endpoint, region and permissions`,
        { cause: error },
      );
    }
    if (stop.aborted) throw stop.reason;
    const { url, deadLetterUrl, created } = queues;
    this.#own.set(url, spec.type);
    const consumer = new QueueConsumer({
      client: this.#client,
      spec,
      deliver,
      logger,
      url,
      deadLetterUrl,
      fifo: this.#fifo,
      waitTimeSeconds: this.#waitTimeSeconds,
      visibilityTimeout: this.#visibilityTimeout,
      concurrency: this.#concurrency,
      completed: () => void this.#completed++,
    });
    this.#consumers.add(consumer);
    started.push(consumer);
    consumer.start();
    if (signal !== undefined) {
      const detach = (): void => {
        consumer.stop().finally(() => this.#consumers.delete(consumer));
      };
      if (signal.aborted) detach();
      else signal.addEventListener("abort", detach, { once: true });
    }
    if (!created) return;
    await this.#announce(spec, logger, stop);
    // Publishers that cached their queue list before it existed route to it
    // once that list is older than discoveryInterval.
    await sleep(this.#discoveryInterval, stop);
    stop.throwIfAborted();
  }

  /** Logs what a new handler queue gets: events from now on. */
  async #announce(
    spec: ConsumerSpec,
    logger: Logger,
    stop: AbortSignal,
  ): Promise<void> {
    const queue = this.queueName(spec.name);
    let others: string[] = [];
    try {
      await this.#refresh(performance.now(), stop);
      others = [...(this.#routes.get(spec.type) ?? [])]
        .map(nameOf)
        .filter((name) => name !== queue);
    } catch {
      // Only for the log line below.
    }
    const attributes = { handler: spec.name, type: spec.type, queue };
    if (others.length > 0) {
      logger.warn(
        `Created SQS queue "${queue}" for the new handler "${spec.name}" of "${spec.type}": it gets the events published from now on, not those published before, which went only to ${
          others.map((name) => `"${name}"`).join(", ")
        }; to keep events for a handler before its first worker starts, declare it on the producers with the SqsBackend option handlers`,
        attributes,
      );
    } else {
      logger.info(
        `Created SQS queue "${queue}" for the new handler "${spec.name}" of "${spec.type}"; waiting ${this.#discoveryInterval} ms (discoveryInterval) until publishers route to it`,
        attributes,
      );
    }
  }

  async #publish(
    event: Event,
    body: string,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const started = performance.now();
    const { type } = event;
    const attributes: Record<string, MessageAttributeValue> = {
      type: { DataType: "String", StringValue: type },
    };
    const fifo = this.#fifo
      ? {
        MessageGroupId: await fifoId(event.metadata.partitionkey ?? type),
        MessageDeduplicationId: await fifoId(event.id),
      }
      : {};
    /** Queue names that hold the event. */
    const sent = new Set<string>();
    const sendTo = async (url: string): Promise<boolean> => {
      if (sent.has(nameOf(url))) return true;
      try {
        await this.#client.send(
          new SendMessageCommand({
            QueueUrl: url,
            MessageBody: body,
            MessageAttributes: attributes,
            ...fifo,
          }),
          abortOptions(signal),
        );
      } catch (error) {
        if (!isMissingQueue(error)) throw error;
        this.#forget(url); // deleted: that handler is gone
        return false;
      }
      sent.add(nameOf(url));
      return true;
    };
    // Declared handler queues: created on first use, and again if deleted.
    // AWS asks to wait a second after CreateQueue before using a queue, so
    // a queue that does not exist yet is tried again a few times.
    await Promise.all((this.#handlers.get(type) ?? []).map(async (name) => {
      for (let round = 0; round <= DECLARED_RETRIES; round++) {
        if (round > 1) {
          // Created a moment ago and still missing: give SQS time.
          await sleep(250 * 2 ** round, signal);
          signal?.throwIfAborted();
        }
        if (await sendTo(await this.#declaredQueue(name, type, signal))) return;
        this.#declared.delete(name);
      }
      throw new BackendError(
        BACKEND,
        `Cannot publish "${type}" (id "${event.id}") to the declared handler "${name}": its SQS queue "${
          this.queueName(name)
        }" still does not exist after creating it ${
          DECLARED_RETRIES + 1
        } times, check who deletes it`,
      );
    }));
    // Discovered handler queues, and those this process consumes.
    let urls = await this.#targets(type, started, sent.size === 0, signal);
    await Promise.all([...urls].map(sendTo));
    if (sent.size === 0 && urls.size > 0) {
      // Every queue it knew of was deleted: look once more.
      await this.#refresh(performance.now(), signal);
      urls = this.#known(type);
      await Promise.all([...urls].map(sendTo));
    }
    if (sent.size === 0) {
      throw new UnroutableEventError(BACKEND, type, {
        searched: `queue prefix "${this.#prefix}"`,
      });
    }
  }

  /**
   * The handler queues of `type`: rediscovered when the list is stale, and,
   * when it knows none and `needed` (no declared queue took the event), by
   * a discovery started after `started`: a queue created since the last one
   * is found before `publish` gives up.
   */
  async #targets(
    type: string,
    started: number,
    needed: boolean,
    signal: AbortSignal | undefined,
  ): Promise<Set<string>> {
    if (started - this.#routesAt > this.#discoveryInterval) {
      await this.#refresh(started - this.#discoveryInterval, signal);
    }
    let urls = this.#known(type);
    if (needed && urls.size === 0 && this.#routesAt < started) {
      await this.#refresh(started, signal);
      urls = this.#known(type);
    }
    return urls;
  }

  /** The queue URLs known for `type`: discovered, or consumed here. */
  #known(type: string): Set<string> {
    const urls = new Set(this.#routes.get(type));
    for (const [url, ownType] of this.#own) if (ownType === type) urls.add(url);
    return urls;
  }

  #forget(url: string): void {
    this.#tags.delete(url);
    for (const set of this.#routes.values()) set.delete(url);
  }

  /**
   * Waits for a discovery that started at `notBefore` or later: the one
   * running, if it started late enough, else a new one (one at a time).
   */
  async #refresh(
    notBefore: number,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    for (;;) {
      const running = this.#discovering;
      if (running === undefined) break;
      if (running.at >= notBefore) {
        return await abortable(running.promise, signal);
      }
      await abortable(running.promise.catch(() => {}), signal);
    }
    if (this.#routesAt >= notBefore) return;
    const at = performance.now();
    const promise: Promise<void> = this.#discover(at).finally(() => {
      if (this.#discovering?.promise === promise) this.#discovering = undefined;
    });
    this.#discovering = { at, promise };
    await abortable(promise, signal);
  }

  async #discover(at: number): Promise<void> {
    const urls: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.#client.send(
        new ListQueuesCommand({
          QueueNamePrefix: this.#prefix,
          MaxResults: 1000,
          NextToken: token,
        }),
      );
      urls.push(...(page.QueueUrls ?? []));
      token = page.NextToken;
    } while (token !== undefined);
    const routes = new Map<string, Set<string>>();
    await Promise.all(urls.map(async (url) => {
      if (!this.#tags.has(url)) {
        try {
          const { Tags } = await this.#client.send(
            new ListQueueTagsCommand({ QueueUrl: url }),
          );
          this.#tags.set(url, Tags?.[TYPE_TAG]);
        } catch (error) {
          if (isMissingQueue(error)) return; // deleted since the listing
          throw error;
        }
      }
      const type = this.#tags.get(url);
      if (type === undefined) return; // a dead-letter or foreign queue
      if (this.#fifo !== url.endsWith(".fifo")) return;
      let set = routes.get(type);
      if (set === undefined) routes.set(type, set = new Set());
      set.add(url);
    }));
    const known = new Set(urls);
    for (const url of this.#tags.keys()) {
      if (!known.has(url)) this.#tags.delete(url);
    }
    this.#routes = routes;
    this.#routesAt = at;
  }

  /** The URL of a declared handler's queue, created once per process. */
  #declaredQueue(
    name: string,
    type: string,
    signal: AbortSignal | undefined,
  ): Promise<string> {
    let url = this.#declared.get(name);
    if (url === undefined) {
      const created = this.#createDeclared(name, type);
      this.#declared.set(name, url = created);
      created.catch(() => {
        if (this.#declared.get(name) === created) this.#declared.delete(name);
      });
    }
    return abortable(url, signal);
  }

  async #createDeclared(name: string, type: string): Promise<string> {
    const queue = this.queueName(name);
    const { QueueUrl } = await this.#client.send(
      new CreateQueueCommand({
        QueueName: queue,
        Attributes: this.#fifo ? { FifoQueue: "true" } : {},
        tags: { [TYPE_TAG]: type },
      }),
    );
    const url = QueueUrl!;
    const { Tags } = await this.#client.send(
      new ListQueueTagsCommand({ QueueUrl: url }),
    );
    const tagged = Tags?.[TYPE_TAG];
    if (tagged === undefined) {
      await this.#client.send(
        new TagQueueCommand({ QueueUrl: url, Tags: { [TYPE_TAG]: type } }),
      );
    } else if (tagged !== type) {
      throw new BackendError(
        BACKEND,
        `Cannot publish "${type}" to the declared handler "${name}": its SQS queue "${queue}" holds events of "${tagged}", and a handler name handles one event type; fix the option handlers or delete the queue`,
      );
    }
    this.#tags.set(url, type);
    return url;
  }

  async #ensureQueues(
    spec: ConsumerSpec,
    signal: AbortSignal,
  ): Promise<{ url: string; deadLetterUrl: string; created: boolean }> {
    const fifo: Record<string, string> = this.#fifo
      ? { FifoQueue: "true" }
      : {};
    const options = { abortSignal: signal };
    let created = false;
    try {
      await this.#client.send(
        new GetQueueUrlCommand({ QueueName: this.queueName(spec.name) }),
        options,
      );
    } catch (error) {
      if (!isMissingQueue(error)) throw error;
      created = true;
    }
    const dlq = await this.#client.send(
      new CreateQueueCommand({
        QueueName: this.deadLetterQueueName(spec.name),
        Attributes: fifo,
        tags: { [DEAD_LETTERS_TAG]: spec.name },
      }),
      options,
    );
    const deadLetterUrl = dlq.QueueUrl!;
    // Names its handler for deadLetters (an older queue has no tag yet).
    await this.#client.send(
      new TagQueueCommand({
        QueueUrl: deadLetterUrl,
        Tags: { [DEAD_LETTERS_TAG]: spec.name },
      }),
      options,
    );
    const { Attributes } = await this.#client.send(
      new GetQueueAttributesCommand({
        QueueUrl: deadLetterUrl,
        AttributeNames: ["QueueArn"],
      }),
      options,
    );
    const queue = await this.#client.send(
      new CreateQueueCommand({
        QueueName: this.queueName(spec.name),
        Attributes: fifo,
        tags: { [TYPE_TAG]: spec.type },
      }),
      options,
    );
    const url = queue.QueueUrl!;
    // An existing queue keeps its old attributes and tags: set them again.
    await this.#client.send(
      new TagQueueCommand({ QueueUrl: url, Tags: { [TYPE_TAG]: spec.type } }),
      options,
    );
    await this.#client.send(
      new SetQueueAttributesCommand({
        QueueUrl: url,
        Attributes: {
          VisibilityTimeout: String(this.#visibilityTimeout),
          RedrivePolicy: JSON.stringify({
            deadLetterTargetArn: Attributes!.QueueArn,
            maxReceiveCount: Math.min(
              spec.attempts + REDRIVE_SPARE,
              MAX_RECEIVE_COUNT,
            ),
          }),
        },
      }),
      options,
    );
    this.#tags.set(url, spec.type);
    return { url, deadLetterUrl, created };
  }
}

/** What a QueueConsumer needs. */
interface QueueConsumerOptions {
  client: SQSClient;
  spec: ConsumerSpec;
  deliver: Deliver;
  logger: Logger;
  url: string;
  deadLetterUrl: string;
  fifo: boolean;
  waitTimeSeconds: number;
  visibilityTimeout: number;
  concurrency: number;
  completed: () => void;
}

/** Long-polls one handler queue and runs its deliveries. */
class QueueConsumer {
  #o: QueueConsumerOptions;
  #slots: Semaphore;
  /** Aborted when intake stops: no new polls or tries. */
  #intake = new AbortController();
  /** Aborts the poll in flight (only when close is told to hurry). */
  #poll = new AbortController();
  /** Deliveries and their tries, given up at the close deadline. */
  readonly tries: InFlight = new InFlight();
  #loop: Promise<void> | undefined;
  #stopped: Promise<void> | undefined;

  constructor(options: QueueConsumerOptions) {
    this.#o = options;
    this.#slots = new Semaphore(options.concurrency);
  }

  start(): void {
    this.#loop = this.#run().catch((error: unknown) => {
      this.#o.logger.error(
        `SQS consumer "${this.#o.spec.name}" stopped: ${describeError(error)}`,
        { error, handler: this.#o.spec.name },
      );
    });
  }

  stopIntake(): void {
    this.#intake.abort();
  }

  abortPoll(): void {
    this.#poll.abort();
  }

  /** Resolves once the poll loop ended (after `stopIntake()`). */
  async polled(): Promise<void> {
    await this.#loop;
  }

  /**
   * Waits for the poll in flight and for running deliveries (until they are
   * abandoned: their messages are released at once).
   */
  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      this.stopIntake();
      await this.#loop;
      await this.tries.idle();
    })();
    return this.#stopped;
  }

  async #run(): Promise<void> {
    const { client, url, waitTimeSeconds, logger, spec } = this.#o;
    let backoff = 500;
    while (!this.#intake.signal.aborted) {
      const permits = await this.#permits();
      if (permits.length === 0) return; // intake stopped
      let messages: Message[];
      try {
        const answer = await client.send(
          new ReceiveMessageCommand({
            QueueUrl: url,
            MaxNumberOfMessages: permits.length,
            WaitTimeSeconds: waitTimeSeconds,
            MessageAttributeNames: ["All"],
            MessageSystemAttributeNames: ["ApproximateReceiveCount"],
          }),
          { abortSignal: this.#poll.signal },
        );
        messages = answer.Messages ?? [];
        backoff = 500;
      } catch (error) {
        for (const permit of permits) permit.release();
        if (this.#intake.signal.aborted) return;
        logger.warn(
          `Cannot receive from SQS queue for handler "${spec.name}", trying again in ${backoff} ms: ${
            describeError(error)
          }`,
          { error, handler: spec.name },
        );
        await sleep(backoff, this.#intake.signal);
        backoff = Math.min(backoff * 2, 30_000);
        continue;
      }
      for (const [i, permit] of permits.entries()) {
        const message = messages[i];
        if (message === undefined) {
          permit.release();
          continue;
        }
        const task = this.#intake.signal.aborted
          ? this.#handBack(message).finally(() => permit.release())
          : this.#handle(message).finally(() => permit.release());
        this.tries.track(task);
      }
    }
  }

  /** Waits for one free slot, then takes up to 9 more that are free. */
  async #permits(): Promise<Permit[]> {
    const first = await this.#slots.acquire({ signal: this.#intake.signal })
      .catch(() => undefined);
    if (first === undefined) return [];
    const permits = [first];
    while (permits.length < 10) {
      const more = this.#slots.tryAcquire();
      if (more === undefined) break;
      permits.push(more);
    }
    return permits;
  }

  /** Runs one received message. Never rejects. */
  async #handle(message: Message): Promise<void> {
    const { spec, logger } = this.#o;
    const attempt = attemptOf(message);
    let event: Event;
    try {
      event = decodeEvent(message.Body ?? "");
      if (event.type !== spec.type) {
        throw new TypeError(
          `Cannot handle "${event.type}" in the queue of handler "${spec.name}", which handles "${spec.type}"`,
        );
      }
    } catch (error) {
      logger.error(
        `Cannot decode SQS message ${message.MessageId} for handler "${spec.name}": ${
          describeError(error)
        }; sending it to the dead-letter queue`,
        { error, handler: spec.name },
      );
      await this.#deadLetter(message, error, {
        reason: "invalid-event",
        attempts: 0,
      });
      return;
    }
    const lease = this.#keepInvisible(message);
    let result: DeliveryResult;
    try {
      result = await this.#try(event, attempt);
    } finally {
      lease.stop();
    }
    switch (result.status) {
      case "completed":
        if (await this.#delete(message)) this.#o.completed();
        return;
      case "retry":
        await this.#setVisibility(
          message,
          Math.min(Math.ceil(result.delay / 1000), MAX_VISIBILITY),
        );
        return;
      case "dead-letter":
        await this.#deadLetter(message, result.error.cause, result.error);
        return;
      case "abandoned":
        await this.#release(message);
        return;
    }
  }

  /** One try, given up (as abandoned) at the close deadline. */
  #try(event: Event, attempt: number): Promise<DeliveryResult> {
    return this.tries.run(
      (signal) =>
        this.#o.deliver({ event, handler: this.#o.spec.name, attempt, signal }),
      ABANDONED,
    );
  }

  /** Extends the message's visibility every half period while it runs. */
  #keepInvisible(message: Message): { stop(): void } {
    const { visibilityTimeout } = this.#o;
    const timer = setInterval(() => {
      this.#setVisibility(message, visibilityTimeout).catch(() => {});
    }, visibilityTimeout * 500);
    return { stop: () => clearInterval(timer) };
  }

  /** Sends a copy with the error to the dead-letter queue, then deletes it. */
  async #deadLetter(
    message: Message,
    error: unknown,
    { reason, attempts }: { reason: DeadLetterReason; attempts: number },
  ): Promise<void> {
    const { client, deadLetterUrl, spec, fifo, logger } = this.#o;
    const ours: Record<string, MessageAttributeValue> = {
      "eventbus-error": text(describeError(error).slice(0, 4096) || "unknown"),
      "eventbus-attempts": {
        DataType: "Number",
        StringValue: String(attempts),
      },
      "eventbus-handler": text(spec.name),
      "eventbus-reason": text(reason),
    };
    try {
      await client.send(
        new SendMessageCommand({
          QueueUrl: deadLetterUrl,
          MessageBody: message.Body ?? "",
          MessageAttributes: {
            ...copyAttributes(
              message.MessageAttributes,
              MAX_ATTRIBUTES - Object.keys(ours).length,
            ),
            ...ours,
          },
          ...(fifo
            ? {
              // A group of its own: deadLetters lists a queue by receiving
              // every message, and a message in flight would hide the rest
              // of its group. The received message's id as de-duplication
              // id: a replayed event that fails again is a new dead letter,
              // not a duplicate of the first.
              MessageGroupId: message.MessageId,
              MessageDeduplicationId: message.MessageId,
            }
            : {}),
        }),
      );
    } catch (cause) {
      // Left undeleted: SQS redelivers it, and the redrive policy moves it.
      logger.error(
        `Cannot dead-letter SQS message ${message.MessageId} for handler "${spec.name}": ${
          describeError(cause)
        }; it will be received again`,
        { error: cause, handler: spec.name },
      );
      return;
    }
    await this.#delete(message);
  }

  async #delete(message: Message): Promise<boolean> {
    try {
      await this.#o.client.send(
        new DeleteMessageCommand({
          QueueUrl: this.#o.url,
          ReceiptHandle: message.ReceiptHandle,
        }),
      );
      return true;
    } catch (error) {
      this.#o.logger.warn(
        `Cannot delete SQS message ${message.MessageId} for handler "${this.#o.spec.name}": ${
          describeError(error)
        }; it will be delivered again`,
        { error, handler: this.#o.spec.name },
      );
      return false;
    }
  }

  /**
   * Hands back a message received after intake stopped, unstarted, without
   * counting it as a try: on a standard queue a copy that carries the tries
   * so far replaces it (its receive count starts again); on a FIFO queue a
   * copy would lose its place in the group, so it is made visible again and
   * this receive counts (see the module doc).
   */
  async #handBack(message: Message): Promise<void> {
    const { client, url, fifo, logger, spec } = this.#o;
    if (fifo) return await this.#release(message);
    try {
      await client.send(
        new SendMessageCommand({
          QueueUrl: url,
          MessageBody: message.Body ?? "",
          MessageAttributes: {
            ...copyAttributes(message.MessageAttributes, MAX_ATTRIBUTES - 1),
            [TRIES]: {
              DataType: "Number",
              StringValue: String(attemptOf(message) - 1),
            },
          },
        }),
      );
    } catch (error) {
      logger.warn(
        `Cannot hand back SQS message ${message.MessageId} for handler "${spec.name}" uncounted: ${
          describeError(error)
        }; releasing it, and this receive counts as a try`,
        { error, handler: spec.name },
      );
      return await this.#release(message);
    }
    await this.#delete(message);
    logger.debug(
      `Handed back SQS message ${message.MessageId} for handler "${spec.name}" unstarted, as a copy that keeps its try count`,
      { handler: spec.name },
    );
  }

  /** Makes the message visible again at once, for another consumer. */
  #release(message: Message): Promise<void> {
    return this.#setVisibility(message, 0).catch((error: unknown) => {
      this.#o.logger.warn(
        `Cannot release SQS message ${message.MessageId}: ${
          describeError(error)
        }; it will be delivered again after its visibility timeout`,
        { error, handler: this.#o.spec.name },
      );
    });
  }

  async #setVisibility(message: Message, seconds: number): Promise<void> {
    await this.#o.client.send(
      new ChangeMessageVisibilityCommand({
        QueueUrl: this.#o.url,
        ReceiptHandle: message.ReceiptHandle,
        VisibilityTimeout: seconds,
      }),
    );
  }
}

/**
 * A received message's try number: its receive count, plus the tries a
 * hand-back copy carries over from the message it replaced.
 */
function attemptOf(message: Message): number {
  const received = Number(message.Attributes?.ApproximateReceiveCount ?? 1);
  const before = Number(message.MessageAttributes?.[TRIES]?.StringValue ?? 0);
  return (Number.isSafeInteger(received) && received > 0 ? received : 1) +
    (Number.isSafeInteger(before) && before > 0 ? before : 0);
}

function abortOptions(
  signal: AbortSignal | undefined,
): { abortSignal?: AbortSignal } {
  return signal === undefined ? {} : { abortSignal: signal };
}

/**
 * A queue name part from a handler name: kept as is when SQS allows it,
 * else with each other character replaced by "-" and a hash of the
 * original appended, so different names never share a queue.
 */
function safeName(name: string, max: number): string {
  if (/^[A-Za-z0-9_-]+$/.test(name) && name.length <= max) return name;
  const suffix = `-${fnv1a(name)}`;
  return name.replace(/[^A-Za-z0-9_-]/g, "-").slice(0, max - suffix.length) +
    suffix;
}
