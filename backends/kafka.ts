// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * An Apache Kafka backend for `@eventbus/core`, built on
 * [kafkajs](https://kafka.js.org). An example module: one file, written to be
 * read as a lesson in Kafka's idioms as much as to be used.
 *
 * ## Why kafkajs
 *
 * kafkajs is pure JavaScript (no native librdkafka binding to build), speaks
 * the Kafka protocol over `node:net`/`node:tls`, and runs unchanged on Deno,
 * Bun and Node 20. Its maintained successor candidate,
 * `@platformatic/kafka`, requires Node >= 22.22 (its `engines` field), which
 * the project's Node 20 floor rules out; `node-rdkafka` and
 * `@confluentinc/kafka-javascript` are native addons that Deno and Bun cannot
 * load everywhere. kafkajs 2.2 is stable and feature-complete for what this
 * backend needs: acks=all, idempotent producer, consumer groups, manual
 * offset resolution and commits.
 *
 * ## Kafka idioms used
 *
 * - **One topic** (`topic`, default `"events"`) carries every event type.
 *   The message value is the CloudEvents 1.0 structured JSON event
 *   (`content-type: application/cloudevents+json`), and an `eventbus-type`
 *   header names the type, so consumers of other types skip a message
 *   without parsing it.
 * - **Key** = the event's `partitionkey` metadata, else its id. Kafka keeps
 *   order per partition and hashes the key to pick one, so events that share
 *   a partition key stay in order, and events without one spread over every
 *   partition so competing consumers share the load. (Keying by event type
 *   would put a whole type on one partition and one consumer; pass
 *   `key: (e) => e.type` if per-type order matters more than throughput.)
 * - **Producer**: `acks: -1` (all in-sync replicas) and, by default, the
 *   **idempotent producer**, so broker-side retries never write an event
 *   twice. `publish` resolves only after the broker acknowledged the write.
 * - **One consumer group per handler name** (`groupId` = `groupIdPrefix` +
 *   name, prefix default `"<topic>."`): members of a group share the
 *   partitions (competing consumers); different groups each read every
 *   event. A group that never committed starts at the oldest retained event
 *   (`fromBeginning: true`), so nothing accepted before its first `listen()`
 *   is missed.
 * - **Commit after success**: kafkajs's auto-commit is off. An offset counts
 *   as settled once its handler completed or its event was dead-lettered,
 *   and each partition commits the offset of its first message not yet
 *   settled (a watermark), one commit request at a time, as soon as it
 *   moves. A crash therefore redelivers, never skips: at least once.
 * - **Parallel within a partition, ordered per key**: kafkajs fetches a
 *   broker's next batch only after the last one was handed over, so each
 *   message is dispatched to its own task and a slow or stuck handler blocks
 *   only its own key. Up to `concurrency` deliveries per handler name run at
 *   once across all assigned partitions; messages with the same key run one
 *   after another (the "key" ordering of Confluent's Parallel Consumer).
 * - **Retries in-process**: Kafka has no per-message redelivery, so a failed
 *   try is retried by this process after the bus's `delay` (the handler's
 *   backoff), holding its key (and the commit watermark) meanwhile; the
 *   attempt number therefore counts tries in this process and restarts at 1
 *   if another consumer takes the message over after a crash.
 * - **Dead-letter topic** (`deadLetterTopic`, default `"<topic>.dlq"`): after
 *   the last try, or for a message that is not a valid event, a copy is
 *   produced there with headers `eventbus-handler`, `eventbus-attempts`,
 *   `eventbus-error`, `eventbus-source-partition` and
 *   `eventbus-source-offset`; then the offset is committed.
 * - **Close**: stop fetching, let running handlers finish until the timeout,
 *   then abort their signals and leave the group without committing their
 *   offsets: the next member of the group receives those events again.
 *   Nothing is reported abandoned, because nothing uncommitted is lost.
 *
 * ## What was verified against what
 *
 * - **librdkafka's mock cluster** (Debian `librdkafka1` 2.0.2, 3 brokers on
 *   127.0.0.1, started by `tests/_kafka_mock.py`): the whole conformance
 *   suite (`tests/conformance/kafka_test.ts`) and the backend tests
 *   (`tests/backends/kafka_test.ts`: key and headers on the wire, the
 *   dead-letter topic's contents, a non-event message dead-lettered, per-key
 *   order, and a worker process killed with SIGKILL mid-stream whose
 *   successor resumes from the committed offset with no event lost), on
 *   Deno and Bun. The mock reports controller id 0, which is no broker, so kafkajs
 *   calls that need the controller fail against it: the idempotent producer
 *   (its InitProducerId) and admin `createTopics`. Those tests therefore run
 *   with `idempotent: false` and topics created by the launcher.
 * - **A real Kafka cluster**: the same tests run against one when
 *   `KAFKA_BROKERS` is set (comma-separated `host:port`), with the
 *   idempotent producer on and `createTopics` creating the topics. They were
 *   not run against a real cluster in this repository's CI (none can be
 *   installed there); if you run them, say so in the change that relies on
 *   it.
 *
 * @example Publish and consume
 * ```ts ignore
 * import { EventBus } from "@eventbus/core";
 * import { KafkaBackend } from "@eventbus/core/kafka";
 *
 * const backend = KafkaBackend.connect({ brokers: ["127.0.0.1:9092"] }, { topic: "shop" });
 * const bus = new EventBus<{ "order.placed": { id: string } }>({ backend });
 * bus.subscribe("order.placed", async (event, { signal }) => {
 *   await fetch(`https://example.com/ship/${event.data.id}`, { signal });
 * }, { async: true, name: "shipping" });
 * await bus.listen();
 * await bus.emit("order.placed", { id: "o1" }, { metadata: { partitionkey: "customer-7" } });
 * await bus.close();
 * ```
 *
 * @module
 */

import {
  type Consumer,
  type EachBatchPayload,
  type IHeaders,
  Kafka,
  type KafkaConfig,
  type KafkaMessage,
  logLevel,
  Partitioners,
  type Producer,
} from "kafkajs";
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
import { Semaphore } from "../src/semaphore.ts";

const NAME = "kafka";
const TYPE_HEADER = "eventbus-type";
const CONTENT_TYPE = "application/cloudevents+json; charset=UTF-8";
const SILENT: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
};

/**
 * Options of {@linkcode KafkaBackend}.
 *
 * @example Per-customer order with a named topic
 * ```ts ignore
 * import { Kafka } from "kafkajs";
 * import { KafkaBackend, type KafkaBackendOptions } from "@eventbus/core/kafka";
 * const options: KafkaBackendOptions = {
 *   topic: "shop-events",
 *   groupIdPrefix: "shop.",
 *   key: (event) => (event.data as { customerId: string }).customerId,
 * };
 * const backend = new KafkaBackend(new Kafka({ brokers: ["127.0.0.1:9092"] }), options);
 * await backend.close();
 * ```
 */
export interface KafkaBackendOptions {
  /**
   * The topic every event is written to and read from.
   * @default {"events"}
   */
  topic?: string;
  /**
   * Where dead letters go.
   * @default {"<topic>.dlq"}
   */
  deadLetterTopic?: string;
  /**
   * Prefix of each handler's consumer group id (`<prefix><handler name>`).
   * @default {"<topic>."}
   */
  groupIdPrefix?: string;
  /**
   * Use kafkajs's idempotent producer (broker de-duplication of retried
   * writes). Needs a broker that answers InitProducerId; turn it off for
   * librdkafka's mock cluster, whose controller id 0 breaks it.
   * @default {true}
   */
  idempotent?: boolean;
  /**
   * The message key, which picks the partition and so the order.
   * @default {(event) => event.metadata.partitionkey ?? event.id}
   */
  key?: (event: Event) => string;
  /**
   * How many deliveries of one handler name run at once in this process,
   * across every partition assigned to it.
   * @default {10}
   */
  concurrency?: number;
  /**
   * Where a group that never committed an offset starts: at the oldest
   * retained event (`true`, nothing missed) or at the end (`false`, events
   * published while the group forms may be missed).
   * @default {true}
   */
  fromBeginning?: boolean;
  /**
   * Create the topic and the dead-letter topic with the admin client if
   * they are missing, with these settings. `false` relies on the broker's
   * auto-creation or on topics you provisioned.
   * @default {false}
   */
  createTopics?: false | { partitions?: number; replicationFactor?: number };
  /**
   * Consumer group session timeout in ms: a member silent this long is
   * removed and its partitions reassigned.
   * @default {30000}
   */
  sessionTimeout?: number;
  /**
   * How often a consumer heartbeats, in ms, also while handlers run.
   * @default {3000}
   */
  heartbeatInterval?: number;
  /**
   * How long a fetch waits for new messages on the broker, in ms. `close()`
   * waits for the fetch in flight, so this bounds its idle part.
   * @default {1000}
   */
  fetchMaxWait?: number;
}

/**
 * An async backend on one Kafka topic: keyed, acknowledged writes; one
 * consumer group per handler name; offsets committed after success;
 * in-process retries and a dead-letter topic. See the module doc.
 *
 * @example With a Kafka client you configured
 * ```ts ignore
 * import { Kafka } from "kafkajs";
 * import { EventBus } from "@eventbus/core";
 * import { KafkaBackend } from "@eventbus/core/kafka";
 *
 * const kafka = new Kafka({ brokers: ["127.0.0.1:9092"], clientId: "shop" });
 * const bus = new EventBus({ backend: new KafkaBackend(kafka, { topic: "shop" }) });
 * await bus.emit("order.placed", { id: "o1" });
 * await bus.close();
 * ```
 */
export class KafkaBackend implements AsyncBackend, AsyncDisposable {
  /** Always `"kafka"`. */
  readonly name: string = NAME;
  /** Always `true`: events cross the wire to processes that `listen()`. */
  readonly remote: boolean = true;

  #kafka: Kafka;
  #topic: string;
  #deadLetterTopic: string;
  #groupIdPrefix: string;
  #idempotent: boolean;
  #key: (event: Event) => string;
  #concurrency: number;
  #fromBeginning: boolean;
  #createTopics: false | { partitions?: number; replicationFactor?: number };
  #sessionTimeout: number;
  #heartbeatInterval: number;
  #fetchMaxWait: number;
  #producer: Promise<Producer> | undefined;
  #topicsReady: Promise<void> | undefined;
  #groups = new Set<GroupConsumer>();
  #publishing = new Set<Promise<unknown>>();
  #closed = false;
  #closing: Promise<CloseReport> | undefined;
  #completed = 0;

  /**
   * Creates a backend on a kafkajs client. The backend opens its own
   * producer and consumers from it and disconnects them on `close()`.
   *
   * @param kafka A kafkajs `Kafka` instance.
   * @param options Topic, keys, groups and tuning.
   * @throws {RangeError} When `concurrency` is not a positive integer.
   *
   * @example
   * ```ts ignore
   * import { Kafka } from "kafkajs";
   * import { KafkaBackend } from "@eventbus/core/kafka";
   * const backend = new KafkaBackend(new Kafka({ brokers: ["127.0.0.1:9092"] }));
   * await backend.close();
   * ```
   */
  constructor(kafka: Kafka, options: KafkaBackendOptions = {}) {
    const {
      topic = "events",
      deadLetterTopic = `${topic}.dlq`,
      groupIdPrefix = `${topic}.`,
      idempotent = true,
      key = defaultKey,
      concurrency = 10,
      fromBeginning = true,
      createTopics = false,
      sessionTimeout = 30_000,
      heartbeatInterval = 3_000,
      fetchMaxWait = 1_000,
    } = options;
    checkPositiveInteger(concurrency, "concurrency");
    this.#kafka = kafka;
    this.#topic = topic;
    this.#deadLetterTopic = deadLetterTopic;
    this.#groupIdPrefix = groupIdPrefix;
    this.#idempotent = idempotent;
    this.#key = key;
    this.#concurrency = concurrency;
    this.#fromBeginning = fromBeginning;
    this.#createTopics = createTopics;
    this.#sessionTimeout = sessionTimeout;
    this.#heartbeatInterval = heartbeatInterval;
    this.#fetchMaxWait = fetchMaxWait;
  }

  /**
   * Creates a kafkajs client from `config` and a backend on it. kafkajs
   * logs only errors unless `config.logLevel` or `config.logCreator` says
   * otherwise. Connections open lazily, on the first publish or consume.
   *
   * @param config kafkajs client settings: `brokers`, `ssl`, `sasl`, ...
   * @param options Topic, keys, groups and tuning.
   * @returns The backend.
   *
   * @example
   * ```ts ignore
   * import { KafkaBackend } from "@eventbus/core/kafka";
   * const backend = KafkaBackend.connect({ brokers: ["127.0.0.1:9092"] });
   * await backend.close();
   * ```
   */
  static connect(
    config: KafkaConfig,
    options?: KafkaBackendOptions,
  ): KafkaBackend {
    const kafka = new Kafka({
      clientId: "eventbus",
      logLevel: logLevel.ERROR,
      ...config,
    });
    return new KafkaBackend(kafka, options);
  }

  /** The topic events are written to. */
  get topic(): string {
    return this.#topic;
  }

  /** The topic dead letters are written to. */
  get deadLetterTopic(): string {
    return this.#deadLetterTopic;
  }

  /**
   * Writes one event to the topic and resolves once the brokers acknowledged
   * it (acks = all). An aborted `signal` stops the wait, not necessarily the
   * write.
   *
   * @param event The event.
   * @param options The caller's signal.
   * @returns Once the write is acknowledged.
   * @throws {EventBusClosedError} After `close()`.
   * @throws {BackendError} When Kafka did not take the event.
   *
   * @example
   * ```ts ignore
   * import { createEvent } from "@eventbus/core";
   * import { KafkaBackend } from "@eventbus/core/kafka";
   * const backend = KafkaBackend.connect({ brokers: ["127.0.0.1:9092"] });
   * await backend.publish(createEvent("order.placed", { id: "o1" }));
   * await backend.close();
   * ```
   */
  async publish(event: Event, options?: PublishOptions): Promise<void> {
    if (this.#closed) throw new EventBusClosedError(event.type);
    const signal = options?.signal;
    signal?.throwIfAborted();
    const value = encodeEvent(event);
    const write = this.#write({
      key: this.#key(event),
      value,
      headers: { "content-type": CONTENT_TYPE, [TYPE_HEADER]: event.type },
    }, this.#topic);
    this.#publishing.add(write);
    write.catch(() => {}).finally(() => this.#publishing.delete(write));
    try {
      await abortable(write, signal);
    } catch (error) {
      if (signal?.aborted && error === signal.reason) throw error;
      throw new BackendError(
        NAME,
        `Cannot publish "${event.type}" (id "${event.id}") to Kafka topic "${this.#topic}": ${
          describeError(error)
        }, check that the brokers are reachable and the topic exists`,
        { cause: error },
      );
    }
  }

  /**
   * Joins one consumer group per consumer (`<groupIdPrefix><name>`) and
   * resolves once each has joined. Deliveries run until `options.signal`
   * aborts or the backend closes.
   *
   * @param deliver Runs one try.
   * @param options Consumers, signal and logger.
   * @returns Once every group was joined.
   * @throws {EventBusClosedError} After `close()`.
   * @throws {BackendError} When a consumer cannot connect or join.
   *
   * @example
   * ```ts ignore
   * import { KafkaBackend } from "@eventbus/core/kafka";
   * const backend = KafkaBackend.connect({ brokers: ["127.0.0.1:9092"] });
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
    await this.#ensureTopics();
    for (const spec of consumers) {
      const group = new GroupConsumer(this.#internals(), spec, deliver, logger);
      this.#groups.add(group);
      try {
        await group.start();
      } catch (error) {
        this.#groups.delete(group);
        await group.stop();
        throw new BackendError(
          NAME,
          `Cannot consume "${spec.type}" for handler "${spec.name}" from Kafka topic "${this.#topic}": ${
            describeError(error)
          }, check that the brokers are reachable`,
          { cause: error },
        );
      }
      if (signal !== undefined) {
        const detach = (): void => {
          group.stop().finally(() => this.#groups.delete(group));
        };
        if (signal.aborted) detach();
        else signal.addEventListener("abort", detach, { once: true });
      }
    }
  }

  /**
   * Stops fetching, lets running handlers finish until `timeout`, then
   * aborts their signals and leaves the groups without committing their
   * offsets (so another member gets those events), and disconnects.
   *
   * @param options Deadline and signal.
   * @returns Deliveries completed here; `abandoned` is always empty, since
   *   uncommitted events stay in Kafka.
   *
   * @example
   * ```ts ignore
   * import { KafkaBackend } from "@eventbus/core/kafka";
   * const backend = KafkaBackend.connect({ brokers: ["127.0.0.1:9092"] });
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
    const groups = [...this.#groups];
    for (const group of groups) group.stopIntake();
    const deadline = deadlineOf(timeout, signal);
    try {
      await Promise.race([
        Promise.all(groups.map((group) => group.idle())),
        deadline.promise,
      ]);
      for (const group of groups) {
        group.abandon(new Error("The Kafka backend closed"));
      }
      await Promise.all(groups.map((group) => group.stop()));
      await Promise.race([
        Promise.allSettled([...this.#publishing]),
        deadline.promise,
      ]);
    } finally {
      deadline.clear();
    }
    const producer = this.#producer;
    this.#producer = undefined;
    if (producer !== undefined) {
      await producer.then((p) => p.disconnect()).catch(() => {});
    }
    return { completed: this.#completed, abandoned: [] };
  }

  /** What a GroupConsumer (private to this module) needs from the backend. */
  #internals(): BackendInternals {
    return {
      kafka: this.#kafka,
      topic: this.#topic,
      groupIdPrefix: this.#groupIdPrefix,
      concurrency: this.#concurrency,
      fromBeginning: this.#fromBeginning,
      sessionTimeout: this.#sessionTimeout,
      heartbeatInterval: this.#heartbeatInterval,
      fetchMaxWait: this.#fetchMaxWait,
      completed: () => void this.#completed++,
      deadLetter: (message, headers) =>
        this.#write(
          {
            key: message.key,
            value: message.value,
            headers: { ...message.headers, ...headers },
          },
          this.#deadLetterTopic,
        ),
    };
  }

  async #write(
    message: {
      key: string | Buffer | null;
      value: string | Buffer | null;
      headers: IHeaders;
    },
    topic: string,
  ): Promise<void> {
    await this.#ensureTopics();
    const producer = await this.#connectProducer();
    await producer.send({ topic, acks: -1, messages: [message] });
  }

  #connectProducer(): Promise<Producer> {
    if (this.#producer !== undefined) return this.#producer;
    const producer = this.#kafka.producer({
      idempotent: this.#idempotent,
      createPartitioner: Partitioners.DefaultPartitioner,
      ...(this.#idempotent ? { maxInFlightRequests: 1 } : {}),
    });
    const ready = producer.connect().then(() => producer);
    this.#producer = ready;
    ready.catch(() => {
      if (this.#producer === ready) this.#producer = undefined; // try again next time
    });
    return ready;
  }

  #ensureTopics(): Promise<void> {
    const settings = this.#createTopics;
    if (settings === false) return Promise.resolve();
    this.#topicsReady ??= (async () => {
      const admin = this.#kafka.admin();
      await admin.connect();
      try {
        await admin.createTopics({
          waitForLeaders: true,
          topics: [this.#topic, this.#deadLetterTopic].map((topic) => ({
            topic,
            numPartitions: settings.partitions ?? -1,
            replicationFactor: settings.replicationFactor ?? -1,
          })),
        });
      } finally {
        await admin.disconnect();
      }
    })();
    const ready = this.#topicsReady;
    ready.catch(() => {
      if (this.#topicsReady === ready) this.#topicsReady = undefined;
    });
    return ready;
  }
}

/** What a GroupConsumer needs from its backend. */
interface BackendInternals {
  kafka: Kafka;
  topic: string;
  groupIdPrefix: string;
  concurrency: number;
  fromBeginning: boolean;
  sessionTimeout: number;
  heartbeatInterval: number;
  fetchMaxWait: number;
  completed: () => void;
  deadLetter: (message: KafkaMessage, headers: IHeaders) => Promise<void>;
}

/** Settled: the offset may be committed. Unsettled: leave it to Kafka. */
type Outcome = "settled" | "unsettled";

/**
 * One consumer group member: one handler name in this process.
 *
 * kafkajs fetches the next batch from a broker only after the previous one
 * was handed over, so `eachBatch` dispatches each message to its own task
 * and returns as soon as a slot is free; a slow or stuck handler then never
 * blocks other keys. Because kafkajs's resolved offset is also its fetch
 * position, every dispatched offset is resolved at once, `autoCommit` is
 * off, and this class commits per partition the offset of the first message
 * not yet settled (the watermark), at most one commit request at a time.
 */
class GroupConsumer {
  #backend: BackendInternals;
  #spec: ConsumerSpec;
  #deliver: Deliver;
  #logger: Logger;
  #consumer: Consumer;
  #slots: Semaphore;
  /** Aborted when intake stops (close or detach): no new tries start. */
  #intake = new AbortController();
  /** Resolves when running tries are given up (close deadline). */
  #giveUp: Resolvers<"abandoned"> = withResolvers();
  #running = new Set<AbortController>();
  #tasks = new Set<Promise<unknown>>();
  /** Per partition of the current group generation. */
  #partitions = new Map<number, PartitionTrack>();
  /** The last task per partition and key, to keep per-key order. */
  #lastByKey = new Map<string, Promise<Outcome>>();
  #committing: Promise<void> | undefined;
  #commitAgain = false;
  #stopped: Promise<void> | undefined;

  constructor(
    backend: BackendInternals,
    spec: ConsumerSpec,
    deliver: Deliver,
    logger: Logger,
  ) {
    this.#backend = backend;
    this.#spec = spec;
    this.#deliver = deliver;
    this.#logger = logger;
    this.#slots = new Semaphore(backend.concurrency);
    this.#consumer = backend.kafka.consumer({
      groupId: backend.groupIdPrefix + spec.name,
      sessionTimeout: backend.sessionTimeout,
      heartbeatInterval: backend.heartbeatInterval,
      maxWaitTimeInMs: backend.fetchMaxWait,
      allowAutoTopicCreation: true,
    });
    const { CRASH, GROUP_JOIN } = this.#consumer.events;
    this.#consumer.on(CRASH, ({ payload }) => {
      this.#logger.error(
        `Kafka consumer "${spec.name}" crashed${
          payload.restart ? ", restarting" : ""
        }: ${describeError(payload.error)}`,
        { error: payload.error, handler: spec.name },
      );
    });
    // A new generation: partitions may have moved, commits of the old one
    // are refused, and fetching restarts at the committed offsets.
    this.#consumer.on(GROUP_JOIN, () => {
      this.#partitions = new Map();
    });
  }

  async start(): Promise<void> {
    const { topic, fromBeginning, concurrency } = this.#backend;
    await this.#consumer.connect();
    await this.#consumer.subscribe({ topics: [topic], fromBeginning });
    await this.#consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: concurrency,
      eachBatch: (payload) => this.#batch(payload),
    });
  }

  /** Stops starting tries; running ones go on. */
  stopIntake(): void {
    this.#intake.abort();
  }

  /** Resolves once no try runs. */
  async idle(): Promise<void> {
    while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
  }

  /** Aborts running tries and stops waiting for them. */
  abandon(reason: unknown): void {
    for (const controller of this.#running) controller.abort(reason);
    this.#giveUp.resolve("abandoned");
  }

  /**
   * Waits for running tries (until `abandon()`), commits what settled, then
   * leaves the group (uncommitted offsets go to the next member) and
   * disconnects.
   */
  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      this.stopIntake();
      await this.idle();
      await this.#commit();
      await this.#consumer.stop().catch(() => {});
      await this.#consumer.disconnect().catch(() => {});
    })();
    return this.#stopped;
  }

  /** Dispatches one fetched batch of one partition, message by message. */
  async #batch(payload: EachBatchPayload): Promise<void> {
    const { batch, isRunning, isStale } = payload;
    const { partition } = batch;
    const beat = setInterval(() => {
      payload.heartbeat().catch(() => {}); // rebalances surface in the fetch loop
    }, this.#backend.heartbeatInterval);
    try {
      for (const message of batch.messages) {
        if (!isRunning() || isStale() || this.#intake.signal.aborted) return;
        let track = this.#partitions.get(partition);
        if (track === undefined) {
          track = new PartitionTrack();
          this.#partitions.set(partition, track);
        }
        const offset = BigInt(message.offset);
        if (offset < track.next) continue; // already dispatched this generation
        const permit = await this.#slots.acquire({
          signal: this.#intake.signal,
        }).catch(() => undefined);
        if (permit === undefined) return;
        track.dispatch(offset);
        payload.resolveOffset(message.offset); // the fetch position, not a commit
        const key = `${partition}:${
          message.key?.toString("latin1") ?? message.offset
        }`;
        const previous = this.#lastByKey.get(key);
        const task = (async (): Promise<Outcome> => {
          try {
            // Keep per-key order: never overtake an unsettled predecessor.
            if (previous !== undefined && await previous === "unsettled") {
              return "unsettled";
            }
            const outcome = await this.#handle(message, partition);
            if (outcome === "settled" && track.settle(offset)) {
              this.#commitSoon();
            }
            return outcome;
          } finally {
            permit.release();
          }
        })();
        this.#lastByKey.set(key, task);
        this.#tasks.add(task);
        task.finally(() => {
          this.#tasks.delete(task);
          if (this.#lastByKey.get(key) === task) this.#lastByKey.delete(key);
        }).catch(() => {});
      }
    } finally {
      clearInterval(beat);
    }
  }

  /** Commits soon, coalescing requests: one commit in flight at a time. */
  #commitSoon(): void {
    if (this.#committing !== undefined) {
      this.#commitAgain = true;
      return;
    }
    this.#commit().catch(() => {});
  }

  /** Commits every partition's watermark that moved; resolves when done. */
  async #commit(): Promise<void> {
    while (this.#committing !== undefined) {
      this.#commitAgain = true;
      await this.#committing;
    }
    const run = (async () => {
      do {
        this.#commitAgain = false;
        const partitions = this.#partitions;
        const offsets: { partition: number; offset: string }[] = [];
        for (const [partition, track] of partitions) {
          const point = track.commitPoint();
          if (point !== undefined) offsets.push({ partition, offset: point });
        }
        if (offsets.length === 0) break;
        try {
          await this.#consumer.commitOffsets(
            offsets.map(({ partition, offset }) => ({
              topic: this.#backend.topic,
              partition,
              offset,
            })),
          );
          for (const { partition, offset } of offsets) {
            partitions.get(partition)?.committed(offset);
          }
        } catch (error) {
          // A rebalance took the partitions: the next owner redelivers.
          this.#logger.warn(
            `Cannot commit Kafka offsets for handler "${this.#spec.name}": ${
              describeError(error)
            }; the events after the last commit will be delivered again`,
            { error, handler: this.#spec.name },
          );
          break;
        }
      } while (this.#commitAgain);
    })();
    this.#committing = run;
    try {
      await run;
    } finally {
      this.#committing = undefined;
    }
  }

  /** Runs every try of one message. Never rejects. */
  async #handle(message: KafkaMessage, partition: number): Promise<Outcome> {
    const { type, name } = this.#spec;
    const typeHeader = message.headers?.[TYPE_HEADER];
    if (typeHeader !== undefined && String(typeHeader) !== type) {
      return "settled"; // another type on the shared topic
    }
    let event: Event;
    try {
      event = decodeEvent(message.value ?? "");
    } catch (error) {
      this.#logger.error(
        `Cannot decode Kafka message at partition ${partition} offset ${message.offset} for handler "${name}": ${
          describeError(error)
        }; sending it to the dead-letter topic`,
        { error, handler: name, partition, offset: message.offset },
      );
      return this.#deadLetter(message, partition, error, 0);
    }
    if (event.type !== type) return "settled";
    for (let attempt = 1;; attempt++) {
      if (this.#intake.signal.aborted) return "unsettled";
      const result = await this.#try(event, attempt);
      switch (result.status) {
        case "completed":
          this.#backend.completed();
          return "settled";
        case "retry":
          if (!await sleep(result.delay, this.#intake.signal)) {
            return "unsettled";
          }
          continue;
        case "dead-letter":
          return this.#deadLetter(
            message,
            partition,
            result.error.cause,
            attempt,
          );
        case "abandoned":
          return "unsettled";
      }
    }
  }

  /** One try, given up (as abandoned) at the close deadline. */
  async #try(event: Event, attempt: number): Promise<DeliveryResult> {
    const controller = new AbortController();
    this.#running.add(controller);
    try {
      return await Promise.race([
        this.#deliver({
          event,
          handler: this.#spec.name,
          attempt,
          signal: controller.signal,
        }),
        this.#giveUp.promise.then((status) => ({ status, error: undefined })),
      ]);
    } finally {
      this.#running.delete(controller);
    }
  }

  /**
   * Writes a copy to the dead-letter topic, retrying with backoff until it
   * is written or intake stops (then the message stays uncommitted).
   */
  async #deadLetter(
    message: KafkaMessage,
    partition: number,
    error: unknown,
    attempts: number,
  ): Promise<Outcome> {
    const headers = {
      "eventbus-handler": this.#spec.name,
      "eventbus-attempts": String(attempts),
      "eventbus-error": describeError(error),
      "eventbus-source-topic": this.#backend.topic,
      "eventbus-source-partition": String(partition),
      "eventbus-source-offset": message.offset,
    };
    for (let wait = 1000;; wait = Math.min(wait * 2, 30_000)) {
      try {
        await this.#backend.deadLetter(message, headers);
        return "settled";
      } catch (cause) {
        this.#logger.error(
          `Cannot dead-letter Kafka message at partition ${partition} offset ${message.offset} for handler "${this.#spec.name}": ${
            describeError(cause)
          }; trying again in ${wait} ms`,
          { error: cause, handler: this.#spec.name },
        );
      }
      if (!await sleep(wait, this.#intake.signal)) return "unsettled";
    }
  }
}

/**
 * Offsets of one partition dispatched in this generation and not yet
 * settled. Kafka commits "the next offset to read", so the commit point is
 * the lowest unsettled offset, or one past the last dispatched.
 */
class PartitionTrack {
  /** One past the highest dispatched offset. */
  next = -1n;
  #unsettled = new Set<bigint>();
  #committed = -1n;

  dispatch(offset: bigint): void {
    this.#unsettled.add(offset);
    this.next = offset + 1n;
  }

  /** Marks an offset settled; true when the commit point moved. */
  settle(offset: bigint): boolean {
    this.#unsettled.delete(offset);
    const point = this.#point();
    return point > this.#committed;
  }

  /** The offset to commit, if it moved since the last commit. */
  commitPoint(): string | undefined {
    const point = this.#point();
    return point > this.#committed ? String(point) : undefined;
  }

  committed(offset: string): void {
    const value = BigInt(offset);
    if (value > this.#committed) this.#committed = value;
  }

  #point(): bigint {
    let lowest = this.next;
    for (const offset of this.#unsettled) if (offset < lowest) lowest = offset;
    return lowest;
  }
}

function defaultKey(event: Event): string {
  return event.metadata.partitionkey ?? event.id;
}

function checkPositiveInteger(value: number, name: string): void {
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(
      `Cannot create the Kafka backend: ${name} must be a positive integer, got ${value}`,
    );
  }
}

/** Resolves true after `ms`, or false as soon as `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      resolve(ok);
    };
    const onAbort = (): void => done(false);
    const timer = setTimeout(() => done(true), ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** Settles with `promise`, or rejects with `signal.reason` once it aborts. */
function abortable<T>(promise: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (signal === undefined) return promise;
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() =>
      signal.removeEventListener("abort", onAbort)
    );
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
