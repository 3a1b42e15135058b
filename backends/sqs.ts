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
 *   its own queue, `<queuePrefix><name>` (with `.fifo` when `fifo`), created
 *   by `consume()` and tagged `eventbus:type = <event type>`. Consumers that
 *   share a name poll the same queue and compete; different names each get
 *   a copy.
 * - **How `publish` reaches every handler.** The publisher discovers the
 *   handler queues by naming convention: `ListQueues` with the prefix, then
 *   `ListQueueTags` once per queue, cached for `discoveryInterval` ms (queues
 *   this process consumes are known at once). It sends the event to every
 *   queue whose tag is the event's type and resolves when SQS stored it in
 *   all of them. An event no handler queue exists for goes nowhere, as with
 *   an SNS topic without subscribers; a handler name receives the events
 *   published after publishers discovered its queue. **In production prefer
 *   SNS fan-out**: publish to one SNS topic with the type as a message
 *   attribute, and subscribe each handler queue with a filter policy
 *   `{"type": ["<event type>"]}` and raw message delivery, so the broker
 *   copies every event to every queue the moment it subscribes. The consumer
 *   side of this backend reads such queues unchanged.
 * - **SendMessage** carries the CloudEvents 1.0 structured JSON event as the
 *   body and the type as the message attribute `type`.
 * - **FIFO queues** (`fifo: true`): `MessageGroupId` = the `partitionkey`
 *   metadata, else the event type, so each group is handled strictly in
 *   order, one message at a time; `MessageDeduplicationId` = the event id,
 *   so emitting the same id twice within SQS's five-minute window stores it
 *   once.
 * - **Long polling**: `ReceiveMessage` with `WaitTimeSeconds`
 *   (`waitTimeSeconds`, default 20), up to 10 messages and never more than
 *   free handler slots (`concurrency`), with the `ApproximateReceiveCount`,
 *   which is the delivery's `attempt`.
 * - **Visibility timeout as the lease**: a received message is invisible to
 *   other consumers for `visibilityTimeout` seconds; while its handler runs
 *   the backend extends it with `ChangeMessageVisibility` every half period.
 *   **DeleteMessage** after success. A retry sets the visibility to the
 *   bus's backoff delay (rounded up to whole seconds, as SQS counts), so SQS
 *   itself redelivers it later with the next receive count. A try cut short
 *   by `close()` gets visibility 0: redelivered at once.
 * - **Dead letters**: each handler queue has its own dead-letter queue,
 *   `<queue>-dlq`. After the last try the backend sends a copy there itself,
 *   with message attributes `eventbus-error`, `eventbus-attempts` and
 *   `eventbus-handler`, then deletes the original. The queue's **redrive
 *   policy** (`maxReceiveCount` = the handler's attempts + 1) is the safety
 *   net for what the bus never reports: a process that crashes on a message
 *   every time. SQS then moves it to the same dead-letter queue (without the
 *   error attributes). The spare receive lets a try cut short by `close()`
 *   on the last attempt run once more. A body that is not an event is
 *   dead-lettered at once and logged.
 * - **Close**: stop polling (the poll in flight is allowed to return, up to
 *   `waitTimeSeconds`, because abandoning it can leave SQS handing its
 *   messages to nobody until their visibility timeout; what it returns is
 *   released at once, one receive count later), let running handlers
 *   finish until the timeout, then abort their signals and release their
 *   messages with visibility 0. Nothing is reported abandoned: an undeleted
 *   message stays in SQS.
 *
 * ## What was verified against what
 *
 * Everything ran against [fauxqs](https://www.npmjs.com/package/fauxqs) 1.9.2,
 * an SQS emulator speaking the same JSON protocol, started in-process on
 * 127.0.0.1 by `tests/_sqs.ts`, on Deno and Bun: the conformance suite with
 * standard queues (`tests/conformance/sqs_test.ts`) and the backend tests
 * (`tests/backends/sqs_test.ts`: routing to every handler queue of a type
 * and no other, queue tags and redrive policy, the backend's dead letters
 * with their attributes, the redrive policy moving a message received
 * attempts + 1 times, the retry delay through the visibility timeout, a
 * non-event body dead-lettered, FIFO per-key order and de-duplication by
 * id, and a worker process killed with SIGKILL mid-handler whose messages
 * SQS redelivers after the visibility timeout with receive count 2). Not
 * against AWS itself: discovery through `ListQueues` is eventually
 * consistent there, which the emulator does not model.
 *
 * @example Publish and consume
 * ```ts ignore
 * import { EventBus } from "@eventbus/core";
 * import { SqsBackend } from "@eventbus/core/sqs";
 *
 * const backend = SqsBackend.connect({ region: "eu-west-1" }, { queuePrefix: "shop-" });
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
import { type Permit, Semaphore } from "../src/semaphore.ts";

const NAME = "sqs";
const TYPE_TAG = "eventbus:type";
const MAX_VISIBILITY = 43_200; // seconds, SQS's limit
const SILENT: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
};

/**
 * Options of {@linkcode SqsBackend}.
 *
 * @example FIFO queues with a short long-poll
 * ```ts ignore
 * import { SqsBackend, type SqsBackendOptions } from "@eventbus/core/sqs";
 * const options: SqsBackendOptions = {
 *   queuePrefix: "shop-",
 *   fifo: true,
 *   waitTimeSeconds: 5,
 * };
 * const backend = SqsBackend.connect({ region: "eu-west-1" }, options);
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
   * How long `publish` trusts its list of handler queues, in ms.
   * @default {10000}
   */
  discoveryInterval?: number;
}

/**
 * An async backend on SQS: one queue per handler name, discovered by
 * prefix and tag on publish; long polling, visibility-timeout retries,
 * DeleteMessage after success and a dead-letter queue per handler queue.
 * See the module doc.
 *
 * @example With a client you configured
 * ```ts ignore
 * import { SQSClient } from "@aws-sdk/client-sqs";
 * import { EventBus } from "@eventbus/core";
 * import { SqsBackend } from "@eventbus/core/sqs";
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
  readonly name: string = NAME;
  /** Always `true`: events cross the wire to processes that `listen()`. */
  readonly remote: boolean = true;

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
  #discovering: Promise<void> | undefined;
  /** Queues this process consumes: always routed, whatever discovery says. */
  #own = new Map<string, string>();
  #consumers = new Set<QueueConsumer>();
  #publishing = new Set<Promise<unknown>>();
  #closed = false;
  #closing: Promise<CloseReport> | undefined;
  #completed = 0;

  /**
   * Creates a backend on an SQS client you opened; `close()` leaves it open.
   *
   * @param client An `SQSClient`.
   * @param options Queue names, FIFO, polling and tuning.
   * @throws {RangeError} When an option is out of range.
   *
   * @example
   * ```ts ignore
   * import { SQSClient } from "@aws-sdk/client-sqs";
   * import { SqsBackend } from "@eventbus/core/sqs";
   * const backend = new SqsBackend(new SQSClient({ region: "eu-west-1" }), { fifo: true });
   * await backend.close();
   * ```
   */
  constructor(client: SQSClient, options: SqsBackendOptions = {}) {
    const {
      queuePrefix = "eventbus-",
      fifo = false,
      waitTimeSeconds = 20,
      visibilityTimeout = 30,
      concurrency = 10,
      discoveryInterval = 10_000,
    } = options;
    check(
      Number.isInteger(waitTimeSeconds) && waitTimeSeconds >= 0 &&
        waitTimeSeconds <= 20,
      `waitTimeSeconds must be an integer from 0 to 20, got ${waitTimeSeconds}`,
    );
    check(
      Number.isInteger(visibilityTimeout) && visibilityTimeout >= 1 &&
        visibilityTimeout <= MAX_VISIBILITY,
      `visibilityTimeout must be an integer from 1 to ${MAX_VISIBILITY}, got ${visibilityTimeout}`,
    );
    check(
      Number.isInteger(concurrency) && concurrency >= 1,
      `concurrency must be a positive integer, got ${concurrency}`,
    );
    check(
      /^[A-Za-z0-9_-]{0,40}$/.test(queuePrefix),
      `queuePrefix must be at most 40 characters of [A-Za-z0-9_-], got ${
        JSON.stringify(queuePrefix)
      }`,
    );
    this.#client = client;
    this.#owned = false;
    this.#prefix = queuePrefix;
    this.#fifo = fifo;
    this.#waitTimeSeconds = waitTimeSeconds;
    this.#visibilityTimeout = visibilityTimeout;
    this.#concurrency = concurrency;
    this.#discoveryInterval = discoveryInterval;
  }

  /**
   * Creates an SQS client from `config` and a backend that owns it:
   * `close()` destroys the client.
   *
   * @param config `SQSClient` settings: `region`, `endpoint`, `credentials`, ...
   * @param options Queue names, FIFO, polling and tuning.
   * @returns The backend.
   *
   * @example Against a local emulator
   * ```ts ignore
   * import { SqsBackend } from "@eventbus/core/sqs";
   * const backend = SqsBackend.connect({
   *   region: "us-east-1",
   *   endpoint: "http://127.0.0.1:4566",
   *   credentials: { accessKeyId: "test", secretAccessKey: "test" },
   * });
   * await backend.close();
   * ```
   */
  static connect(
    config: SQSClientConfig,
    options?: SqsBackendOptions,
  ): SqsBackend {
    const backend = new SqsBackend(new SQSClient(config), options);
    backend.#owned = true;
    return backend;
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
   * import { SqsBackend } from "@eventbus/core/sqs";
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
   * import { SqsBackend } from "@eventbus/core/sqs";
   * const backend = new SqsBackend(new SQSClient({}));
   * console.assert(backend.deadLetterQueueName("shipping") === "eventbus-shipping-dlq");
   * ```
   */
  deadLetterQueueName(handler: string): string {
    const name = this.queueName(handler);
    return this.#fifo ? `${name.slice(0, -5)}-dlq.fifo` : `${name}-dlq`;
  }

  /**
   * Sends the event to every handler queue of its type and resolves once SQS
   * stored it in each.
   *
   * @param event The event.
   * @param options The caller's signal.
   * @returns Once every handler queue holds the event.
   * @throws {EventBusClosedError} After `close()`.
   * @throws {BackendError} When SQS did not take the event.
   *
   * @example
   * ```ts ignore
   * import { createEvent } from "@eventbus/core";
   * import { SqsBackend } from "@eventbus/core/sqs";
   * const backend = SqsBackend.connect({ region: "eu-west-1" });
   * await backend.publish(createEvent("order.placed", { id: "o1" }));
   * await backend.close();
   * ```
   */
  async publish(event: Event, options?: PublishOptions): Promise<void> {
    if (this.#closed) throw new EventBusClosedError(event.type);
    const signal = options?.signal;
    signal?.throwIfAborted();
    const body = encodeEvent(event);
    const send = this.#publish(event, body, signal);
    this.#publishing.add(send);
    send.catch(() => {}).finally(() => this.#publishing.delete(send));
    try {
      await send;
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      throw new BackendError(
        NAME,
        `Cannot publish "${event.type}" (id "${event.id}") to SQS: ${
          describeError(error)
        }, check the endpoint, region and credentials`,
        { cause: error },
      );
    }
  }

  /**
   * Creates (or updates) each consumer's queue and dead-letter queue, then
   * long-polls it until `options.signal` aborts or the backend closes.
   *
   * @param deliver Runs one try.
   * @param options Consumers, signal and logger.
   * @returns Once every queue exists and polling started.
   * @throws {EventBusClosedError} After `close()`.
   * @throws {BackendError} When a queue cannot be created.
   *
   * @example
   * ```ts ignore
   * import { SqsBackend } from "@eventbus/core/sqs";
   * const backend = SqsBackend.connect({ region: "eu-west-1" });
   * await backend.consume(async () => ({ status: "completed" }), {
   *   consumers: [{ name: "audit", type: "order.placed", attempts: 3 }],
   * });
   * await backend.close();
   * ```
   */
  async consume(deliver: Deliver, options: ConsumeOptions): Promise<void> {
    if (this.#closed) throw new EventBusClosedError();
    const { consumers, signal, logger = SILENT } = options;
    signal?.throwIfAborted();
    for (const spec of consumers) {
      let queues: { url: string; deadLetterUrl: string };
      try {
        queues = await this.#ensureQueues(spec, signal);
      } catch (error) {
        if (signal?.aborted) throw signal.reason;
        throw new BackendError(
          NAME,
          `Cannot consume "${spec.type}" for handler "${spec.name}": creating SQS queue "${
            this.queueName(spec.name)
          }" failed: ${
            describeError(error)
          }, check the endpoint, region and permissions`,
          { cause: error },
        );
      }
      this.#own.set(queues.url, spec.type);
      const consumer = new QueueConsumer({
        client: this.#client,
        spec,
        deliver,
        logger,
        ...queues,
        fifo: this.#fifo,
        waitTimeSeconds: this.#waitTimeSeconds,
        visibilityTimeout: this.#visibilityTimeout,
        concurrency: this.#concurrency,
        completed: () => void this.#completed++,
      });
      this.#consumers.add(consumer);
      consumer.start();
      if (signal !== undefined) {
        const detach = (): void => {
          consumer.stop().finally(() => this.#consumers.delete(consumer));
        };
        if (signal.aborted) detach();
        else signal.addEventListener("abort", detach, { once: true });
      }
    }
  }

  /**
   * Stops polling, lets running handlers finish until `timeout`, then aborts
   * their signals and makes their messages visible again at once. Destroys
   * the client if `connect()` created it.
   *
   * @param options Deadline and signal.
   * @returns Deliveries completed here; `abandoned` is always empty, since
   *   undeleted messages stay in SQS.
   *
   * @example
   * ```ts ignore
   * import { SqsBackend } from "@eventbus/core/sqs";
   * const backend = SqsBackend.connect({ region: "eu-west-1" });
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
    const { timeout = 30_000, signal } = options ?? {};
    const consumers = [...this.#consumers];
    const deadline = deadlineOf(timeout, signal);
    const onAbort = (): void => {
      for (const consumer of consumers) consumer.abortPoll();
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      for (const consumer of consumers) consumer.stopIntake();
      // Handlers get until the deadline; the poll in flight returns by
      // itself (its messages are released), so nothing released below is
      // picked up by it.
      await Promise.all([
        Promise.race([
          Promise.all(consumers.map((consumer) => consumer.idle())),
          deadline.promise,
        ]),
        ...consumers.map((consumer) => consumer.polled()),
      ]);
      for (const consumer of consumers) {
        consumer.abandon(new Error("The SQS backend closed"));
      }
      await Promise.all(consumers.map((consumer) => consumer.stop()));
      await Promise.race([
        Promise.allSettled([...this.#publishing]),
        deadline.promise,
      ]);
    } finally {
      deadline.clear();
      signal?.removeEventListener("abort", onAbort);
    }
    if (this.#owned) this.#client.destroy();
    return { completed: this.#completed, abandoned: [] };
  }

  async #publish(
    event: Event,
    body: string,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const urls = await this.#targets(event.type, signal);
    const attributes: Record<string, MessageAttributeValue> = {
      type: { DataType: "String", StringValue: event.type },
    };
    const fifo = this.#fifo
      ? {
        MessageGroupId: event.metadata.partitionkey ?? event.type,
        MessageDeduplicationId: event.id,
      }
      : {};
    await Promise.all([...urls].map(async (url) => {
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
        // The handler queue was deleted: that handler is gone.
        this.#tags.delete(url);
        this.#routes.get(event.type)?.delete(url);
      }
    }));
  }

  /** The handler queues of `type`, rediscovered when the list is stale. */
  async #targets(
    type: string,
    signal: AbortSignal | undefined,
  ): Promise<Set<string>> {
    if (performance.now() - this.#routesAt > this.#discoveryInterval) {
      this.#discovering ??= this.#discover(signal).finally(() => {
        this.#discovering = undefined;
      });
      await this.#discovering;
    }
    const urls = new Set(this.#routes.get(type));
    for (const [url, ownType] of this.#own) if (ownType === type) urls.add(url);
    return urls;
  }

  async #discover(signal: AbortSignal | undefined): Promise<void> {
    const urls: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.#client.send(
        new ListQueuesCommand({
          QueueNamePrefix: this.#prefix,
          MaxResults: 1000,
          NextToken: token,
        }),
        abortOptions(signal),
      );
      urls.push(...(page.QueueUrls ?? []));
      token = page.NextToken;
    } while (token !== undefined);
    const routes = new Map<string, Set<string>>();
    await Promise.all(urls.map(async (url) => {
      if (!this.#tags.has(url)) {
        const { Tags } = await this.#client.send(
          new ListQueueTagsCommand({ QueueUrl: url }),
          abortOptions(signal),
        );
        this.#tags.set(url, Tags?.[TYPE_TAG]);
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
    this.#routesAt = performance.now();
  }

  async #ensureQueues(
    spec: ConsumerSpec,
    signal: AbortSignal | undefined,
  ): Promise<{ url: string; deadLetterUrl: string }> {
    const fifo: Record<string, string> = this.#fifo
      ? { FifoQueue: "true" }
      : {};
    const options = abortOptions(signal);
    const dlq = await this.#client.send(
      new CreateQueueCommand({
        QueueName: this.deadLetterQueueName(spec.name),
        Attributes: fifo,
      }),
      options,
    );
    const deadLetterUrl = dlq.QueueUrl!;
    const { Attributes } = await this.#client.send(
      new GetQueueAttributesCommand({
        QueueUrl: deadLetterUrl,
        AttributeNames: ["QueueArn"],
      }),
      options,
    );
    const created = await this.#client.send(
      new CreateQueueCommand({
        QueueName: this.queueName(spec.name),
        Attributes: fifo,
        tags: { [TYPE_TAG]: spec.type },
      }),
      options,
    );
    const url = created.QueueUrl!;
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
            maxReceiveCount: spec.attempts + 1,
          }),
        },
      }),
      options,
    );
    return { url, deadLetterUrl };
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
  #giveUp: Resolvers<"abandoned"> = withResolvers();
  #running = new Set<AbortController>();
  #tasks = new Set<Promise<unknown>>();
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

  /** Resolves once no delivery runs. */
  async idle(): Promise<void> {
    while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
  }

  /** Aborts running tries; their messages are released at once. */
  abandon(reason: unknown): void {
    for (const controller of this.#running) controller.abort(reason);
    this.#giveUp.resolve("abandoned");
  }

  /** Waits for the poll in flight and for running deliveries (until `abandon()`). */
  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      this.stopIntake();
      await this.#loop;
      await this.idle();
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
          ? this.#release(message).finally(() => permit.release())
          : this.#handle(message).finally(() => permit.release());
        this.#tasks.add(task);
        task.finally(() => this.#tasks.delete(task)).catch(() => {});
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
    const attempt = Number(message.Attributes?.ApproximateReceiveCount ?? 1);
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
      await this.#deadLetter(message, error, 0, undefined);
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
        await this.#deadLetter(message, result.error.cause, attempt, event);
        return;
      case "abandoned":
        await this.#release(message);
        return;
    }
  }

  /** One try, given up (as abandoned) at the close deadline. */
  async #try(event: Event, attempt: number): Promise<DeliveryResult> {
    const controller = new AbortController();
    this.#running.add(controller);
    try {
      return await Promise.race([
        this.#o.deliver({
          event,
          handler: this.#o.spec.name,
          attempt,
          signal: controller.signal,
        }),
        this.#giveUp.promise.then((status) => ({ status, error: undefined })),
      ]);
    } finally {
      this.#running.delete(controller);
    }
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
    attempts: number,
    event: Event | undefined,
  ): Promise<void> {
    const { client, deadLetterUrl, spec, fifo, logger } = this.#o;
    try {
      await client.send(
        new SendMessageCommand({
          QueueUrl: deadLetterUrl,
          MessageBody: message.Body ?? "",
          MessageAttributes: {
            ...message.MessageAttributes,
            "eventbus-error": {
              DataType: "String",
              StringValue: describeError(error).slice(0, 4096) || "unknown",
            },
            "eventbus-attempts": {
              DataType: "Number",
              StringValue: String(attempts),
            },
            "eventbus-handler": { DataType: "String", StringValue: spec.name },
          },
          ...(fifo
            ? {
              MessageGroupId: event?.metadata.partitionkey ?? event?.type ??
                "undecodable",
              MessageDeduplicationId: event?.id ?? message.MessageId,
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

function abortOptions(
  signal: AbortSignal | undefined,
): { abortSignal?: AbortSignal } {
  return signal === undefined ? {} : { abortSignal: signal };
}

function check(ok: boolean, detail: string): void {
  if (!ok) {
    throw new RangeError(`Cannot create the SQS backend: ${detail}`);
  }
}

/**
 * A queue name part from a handler name: kept as is when SQS allows it,
 * else with each other character replaced by "-" and a hash of the
 * original appended, so different names never share a queue.
 */
function safeName(name: string, max: number): string {
  if (/^[A-Za-z0-9_-]+$/.test(name) && name.length <= max) return name;
  let hash = 0x811c9dc5; // FNV-1a, 32 bits
  for (let i = 0; i < name.length; i++) {
    hash = Math.imul(hash ^ name.charCodeAt(i), 0x01000193) >>> 0;
  }
  const suffix = `-${hash.toString(16).padStart(8, "0")}`;
  return name.replace(/[^A-Za-z0-9_-]/g, "-").slice(0, max - suffix.length) +
    suffix;
}

function isMissingQueue(error: unknown): boolean {
  const name = (error as { name?: unknown } | null)?.name;
  return name === "QueueDoesNotExist" ||
    name === "AWS.SimpleQueueService.NonExistentQueue";
}

/** Resolves after `ms`, or as soon as `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/** A promise that resolves after `timeout` ms or when `signal` aborts. */
function deadlineOf(
  timeout: number,
  signal: AbortSignal | undefined,
): { promise: Promise<void>; clear: () => void } {
  const { promise, resolve } = withResolvers<void>();
  const timer = setTimeout(resolve, timeout);
  const onAbort = (): void => resolve();
  if (signal?.aborted) resolve();
  signal?.addEventListener("abort", onAbort, { once: true });
  return {
    promise,
    clear: () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    },
  };
}

interface Resolvers<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
}

/** Promise.withResolvers() for Node 20, which lacks it. */
function withResolvers<T>(): Resolvers<T> {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}
