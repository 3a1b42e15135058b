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
 * - **What "accepted" means**: once `emit` resolved, the event is in the
 *   topic's log on every in-sync replica, and every handler name gets it,
 *   present or future, for as long as the topic retains it: the topic's
 *   `retention.ms` (Kafka's default: 7 days) and `retention.bytes` bound
 *   that, and so does compaction on a topic with `cleanup.policy=compact`
 *   (it keeps only the newest event per key; do not use one here). A group
 *   that falls further behind than the retention loses the deleted events;
 *   `consume()` logs that at error level with the count when it attaches.
 * - **One consumer group per handler name** (`groupId` = `groupIdPrefix` +
 *   name, prefix default `"<topic>."`): members of a group share the
 *   partitions (competing consumers); different groups each read every
 *   event. A group without committed offsets (a brand-new name, or one
 *   whose offsets the brokers expired after `offsets.retention.minutes`
 *   without a worker) starts, by default, at the oldest retained event
 *   (`fromBeginning: true`), so nothing accepted before its first
 *   `listen()` is missed, and a name added months later replays the whole
 *   retention. `fromBeginning: false` starts it at the end instead. Either
 *   way `consume()` logs what the new group does and how many retained
 *   events that is: info for a replay, warn for a skip.
 * - **Attached means fetching**: `consume()` resolves once each group was
 *   joined and its first fetch returned (start offsets resolved), so an
 *   event emitted after `listen()` resolved is never skipped, even by a
 *   new group that starts at the end. `close()` while it attaches rejects
 *   it with `EventBusClosedError`.
 * - **A consumer keeps consuming**: kafkajs restarts a consumer after the
 *   errors it deems retriable and gives it up after the others (a broker
 *   answering a join with `INVALID_REQUEST`, say). The backend then logs the
 *   error and starts it again itself, 0.5 s later, doubling up to 30 s
 *   until it joins. Before the first join, the third such crash rejects
 *   `consume()` with `BackendError`.
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
 *   after another (the "key" ordering of Confluent's Parallel Consumer). A
 *   message waiting for its same-key predecessor holds no handler slot, so
 *   a hot key never starves the others; up to `prefetch` fetched messages
 *   may wait beyond the running ones before fetching pauses.
 * - **Tries counted in the commit** (`ctx.attempt`): Kafka keeps no
 *   delivery count, so the backend keeps one in the metadata string of
 *   each offset commit: for every offset at or after the watermark, how
 *   many tries started without a result. A try starts only after the
 *   commit that counts it succeeded (commits are coalesced: tries starting
 *   together share one, and a key's next event shares the commit that
 *   settles its predecessor). A worker that dies during a try, a `close()`
 *   that abandons it, or a rebalance that moves its partition leaves the
 *   count behind; the next owner of the partition reads it and passes
 *   `attempt` on, so a handler that kills its process every time is
 *   dead-lettered with reason `"crashed"` once `attempt` passes the retry
 *   policy's `attempts`, without running again. Events that were fetched but
 *   never started do not count. The record is at most 4 000 characters
 *   (Kafka's `offset.metadata.max.bytes` defaults to 4 096), about 400
 *   unfinished tries per partition; past that the highest offsets are left
 *   out and a warning is logged.
 * - **Retries in-process**: Kafka has no per-message redelivery, so a failed
 *   try is retried by this process after the bus's `delay` (the handler's
 *   backoff), holding its key, its slot and the commit watermark meanwhile.
 * - **Dead-letter topic** (`deadLetterTopic`, default `"<topic>.dlq"`): after
 *   the last try, past its attempts (`crashed`), or for a message that is
 *   not a valid event (`invalid-event`), a copy is produced there with
 *   headers `eventbus-handler`, `eventbus-reason`, `eventbus-attempts`,
 *   `eventbus-error`, `eventbus-source-topic`, `eventbus-source-partition`
 *   and `eventbus-source-offset`; then the offset is committed.
 *   {@linkcode KafkaBackend.deadLetters} counts, lists, replays and purges
 *   them; a replayed copy carries `eventbus-target-handler`, and the groups
 *   of other handler names commit it without running it.
 * - **Close**: stop fetching, let running handlers finish until the timeout,
 *   then abort their signals and leave the group without committing their
 *   offsets: the next member of the group receives those events again.
 *   Nothing is reported abandoned, because nothing uncommitted is lost.
 * - **`connect(config, options)`**: `config` is kafkajs's, `options` this
 *   backend's. A backend option in `config` (say `topic`), or a kafkajs
 *   setting in `options` (say `brokers`), throws a `TypeError` that names
 *   the right argument instead of being ignored.
 *
 * @example Publish and consume
 * ```ts ignore
 * import { EventBus } from "@eventbus/core";
 * import { KafkaBackend } from "@eventbus/kafka";
 *
 * const backend = await KafkaBackend.connect({ brokers: ["127.0.0.1:9092"] }, { topic: "shop" });
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
  type Admin,
  type Consumer,
  type EachBatchPayload,
  type IHeaders,
  Kafka,
  type KafkaConfig,
  type KafkaMessage,
  logLevel,
  type Message,
  Partitioners,
  type Producer,
} from "kafkajs";
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
} from "@eventbus/core";
import {
  ABANDONED,
  abortable,
  type BackendArguments,
  checkBackendOptions,
  checkClientConfig,
  checkInteger,
  deadline,
  drain,
  InFlight,
  nextImmediate,
  quoteList,
  SILENT_LOGGER,
  sleep,
  untilDeadline,
  withResolvers,
} from "@eventbus/core/backend-kit";
import {
  DEAD_LETTER_HEADERS,
  KafkaDeadLetters,
  TARGET_HANDLER,
} from "./_dead_letters.ts";

const BACKEND = "kafka";
const TYPE_HEADER = "eventbus-type";
const CONTENT_TYPE = "application/cloudevents+json; charset=UTF-8";
/** Marks the try record this backend writes into offset commit metadata. */
const RECORD_PREFIX = "eb1:";
/**
 * Longest try record committed. Kafka refuses metadata longer than the
 * broker's `offset.metadata.max.bytes` (default 4096) and with it the
 * whole commit.
 */
const RECORD_LIMIT = 4000;
/** Crashes kafkajs gives up on before the first join that fail consume(). */
const START_CRASHES = 3;
/** The first delay before a consumer kafkajs gave up on starts again (ms). */
const RESTART_DELAY = 500;
/** The longest delay between such restarts (ms). */
const MAX_RESTART_DELAY = 30_000;
/** Where each of `connect()`'s two arguments goes, for the option checks. */
const ARGUMENTS: BackendArguments = {
  broker: "Kafka",
  connect: "KafkaBackend.connect",
  config: "{ brokers }",
  setting: "a kafkajs client setting",
  client: "new Kafka(config)",
  options: new Set([
    "topic",
    "deadLetterTopic",
    "groupIdPrefix",
    "idempotent",
    "key",
    "concurrency",
    "prefetch",
    "fromBeginning",
    "createTopics",
    "sessionTimeout",
    "heartbeatInterval",
    "fetchMaxWait",
  ]),
  settings: new Set([
    "brokers",
    "ssl",
    "sasl",
    "clientId",
    "connectionTimeout",
    "authenticationTimeout",
    "reauthenticationThreshold",
    "requestTimeout",
    "enforceRequestTimeout",
    "retry",
    "socketFactory",
    "logLevel",
    "logCreator",
  ]),
};

/**
 * Options of {@linkcode KafkaBackend}.
 *
 * @example Per-customer order with a named topic
 * ```ts ignore
 * import { Kafka } from "kafkajs";
 * import { KafkaBackend, type KafkaBackendOptions } from "@eventbus/kafka";
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
   * across every partition assigned to it. An event waiting for an earlier
   * event with the same key holds none of these slots.
   * @default {10}
   */
  concurrency?: number;
  /**
   * How many fetched events of one handler name may wait in this process
   * beyond the `concurrency` running ones: for a free slot, or for an
   * earlier event with the same key. When they are this many, fetching
   * pauses. A hot key with a long backlog can fill it, and then other keys
   * wait too.
   * @default {max(100, 4 × concurrency)}
   */
  prefetch?: number;
  /**
   * Where a handler name whose consumer group has no committed offset
   * starts: a brand-new name, or one whose offsets the brokers expired
   * (`offsets.retention.minutes`, 7 days by default on Kafka 2.0+, counted
   * from when its last worker stopped). `true` starts at the oldest event
   * the topic still retains, so every event accepted within the topic's
   * retention is handled (and a name added months later replays that
   * whole retention). `false` starts at the end and skips every retained
   * event. Either way `consume()` logs what the new group does and how
   * many retained events that is (info for `true`, warn for `false`).
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
 * import { KafkaBackend } from "@eventbus/kafka";
 *
 * const kafka = new Kafka({ brokers: ["127.0.0.1:9092"], clientId: "shop" });
 * const bus = new EventBus({ backend: new KafkaBackend(kafka, { topic: "shop" }) });
 * await bus.emit("order.placed", { id: "o1" });
 * await bus.close();
 * ```
 */
export class KafkaBackend implements AsyncBackend, AsyncDisposable {
  /** Always `"kafka"`. */
  readonly name: string = BACKEND;
  /** Always `true`: events cross the wire to processes that `listen()`. */
  readonly remote: boolean = true;
  /** For instrumentation: system `"kafka"`, destination the topic. */
  readonly telemetry: BackendTelemetry = {
    system: "kafka",
    destination: () => this.#topic,
  };
  /**
   * The dead letters of the dead-letter topic: count, list, replay, purge.
   *
   * - A dead letter's `ref` is `"<partition>:<offset>"` in the dead-letter
   *   topic. Kafka cannot delete one record, so replay and purge write a
   *   marker record (header `eventbus-removed`) into the same partition,
   *   and every read folds the whole topic: dead letters minus the refs a
   *   marker removed. Reads fetch without a consumer group.
   * - `replay` writes the event's bytes again to the topic and partition
   *   it came from, with the header `eventbus-target-handler`: the groups
   *   of other handler names commit it unrun, the failed one runs it as a
   *   new message (attempt 1, same id and `traceparent`). The marker is
   *   written after the brokers accepted the copy: at least once. A dead
   *   letter whose body is not an event, or whose handler's consumer group
   *   has no committed offset on that partition (no worker of that name
   *   ever consumed it), stays, with a warning, and is not counted.
   * - `purge` writes markers only.
   *
   * @example Replaying one handler's dead letters
   * ```ts ignore
   * import { KafkaBackend } from "@eventbus/core/kafka";
   * const backend = await KafkaBackend.connect({ brokers: ["127.0.0.1:9092"] });
   * for await (const item of backend.deadLetters.list({ handler: "send-welcome-email" })) {
   *   console.log(item.ref, item.event.id, item.attempts, item.error);
   * }
   * const { replayed } = await backend.deadLetters.replay({ handler: "send-welcome-email" });
   * console.log(`replayed ${replayed}`);
   * await backend.close();
   * ```
   */
  readonly deadLetters: DeadLetters;

  #kafka: Kafka;
  #topic: string;
  #deadLetterTopic: string;
  #groupIdPrefix: string;
  #idempotent: boolean;
  #key: (event: Event) => string;
  #concurrency: number;
  #prefetch: number;
  #fromBeginning: boolean;
  #createTopics: false | { partitions?: number; replicationFactor?: number };
  #sessionTimeout: number;
  #heartbeatInterval: number;
  #fetchMaxWait: number;
  #producer: Promise<Producer> | undefined;
  #admin: Promise<Admin> | undefined;
  #topicsReady: Promise<void> | undefined;
  #groups = new Set<GroupConsumer>();
  #publishing = new InFlight();
  #closed = false;
  /** Aborted when `close()` starts: attaching consumers give up. */
  #shutdown = new AbortController();
  #closing: Promise<CloseReport> | undefined;
  #completed = 0;
  #deadLetters: KafkaDeadLetters;
  /** The first consume()'s logger, for the dead-letter operations. */
  #logger: Logger | undefined;

  /**
   * Creates a backend on a kafkajs client. The backend opens its own
   * producer and consumers from it and disconnects them on `close()`.
   *
   * @param kafka A kafkajs `Kafka` instance.
   * @param options Topic, keys, groups and tuning.
   * @throws {TypeError} When `kafka` is not a kafkajs client, or `options`
   *   holds a kafkajs client setting such as `brokers` or an unknown key.
   * @throws {RangeError} When `concurrency` or `prefetch` is not a positive
   *   integer.
   *
   * @example
   * ```ts ignore
   * import { Kafka } from "kafkajs";
   * import { KafkaBackend } from "@eventbus/kafka";
   * const backend = new KafkaBackend(new Kafka({ brokers: ["127.0.0.1:9092"] }));
   * await backend.close();
   * ```
   */
  constructor(kafka: Kafka, options: KafkaBackendOptions = {}) {
    if (
      typeof kafka !== "object" || kafka === null ||
      typeof (kafka as Partial<Kafka>).producer !== "function"
    ) {
      throw new TypeError(
        "Cannot create the Kafka backend: the first argument must be a kafkajs Kafka client, use new KafkaBackend(new Kafka(config), options) or KafkaBackend.connect(config, options)",
      );
    }
    checkBackendOptions(options, ARGUMENTS);
    const {
      topic = "events",
      deadLetterTopic = `${topic}.dlq`,
      groupIdPrefix = `${topic}.`,
      idempotent = true,
      key = defaultKey,
      concurrency = 10,
      prefetch = Math.max(100, 4 * concurrency),
      fromBeginning = true,
      createTopics = false,
      sessionTimeout = 30_000,
      heartbeatInterval = 3_000,
      fetchMaxWait = 1_000,
    } = options;
    checkInteger(ARGUMENTS, "concurrency", concurrency);
    checkInteger(ARGUMENTS, "prefetch", prefetch);
    this.#kafka = kafka;
    this.#topic = topic;
    this.#deadLetterTopic = deadLetterTopic;
    this.#groupIdPrefix = groupIdPrefix;
    this.#idempotent = idempotent;
    this.#key = key;
    this.#concurrency = concurrency;
    this.#prefetch = prefetch;
    this.#fromBeginning = fromBeginning;
    this.#createTopics = createTopics;
    this.#sessionTimeout = sessionTimeout;
    this.#heartbeatInterval = heartbeatInterval;
    this.#fetchMaxWait = fetchMaxWait;
    this.#deadLetters = new KafkaDeadLetters({
      kafka,
      backend: BACKEND,
      topic,
      deadLetterTopic,
      groupIdPrefix,
      admin: () => this.#connectAdmin(),
      send: (to, messages) => this.#send(to, messages),
      closed: () => this.#closed,
      logger: () => this.#logger ?? console,
    });
    this.deadLetters = this.#deadLetters;
  }

  /**
   * Creates a kafkajs client from `config` and a backend on it. kafkajs
   * logs only errors unless `config.logLevel` or `config.logCreator` says
   * otherwise. Connections open lazily, on the first publish or consume.
   *
   * @param config kafkajs client settings: `brokers`, `ssl`, `sasl`, ...
   * @param options Topic, keys, groups and tuning.
   * @returns The backend, once created (it connects on first use).
   * @throws {TypeError} When `config` holds a backend option such as
   *   `topic` (it belongs in `options`), or `options` a client setting.
   * @throws {RangeError} When an option is out of range.
   *
   * @example
   * ```ts ignore
   * import { KafkaBackend } from "@eventbus/kafka";
   * const backend = await KafkaBackend.connect({ brokers: ["127.0.0.1:9092"] });
   * await backend.close();
   * ```
   */
  static connect(
    config: KafkaConfig,
    options?: KafkaBackendOptions,
  ): Promise<KafkaBackend> {
    // A promise, as every backend's connect() returns: bad arguments reject.
    return new Promise((resolve) => {
      checkClientConfig(config, ARGUMENTS);
      const kafka = new Kafka({
        clientId: "eventbus",
        logLevel: logLevel.ERROR,
        ...config,
      });
      resolve(new KafkaBackend(kafka, options));
    });
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
   * import { KafkaBackend } from "@eventbus/kafka";
   * const backend = await KafkaBackend.connect({ brokers: ["127.0.0.1:9092"] });
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
    this.#publishing.track(write);
    try {
      await abortable(write, signal);
    } catch (error) {
      if (signal?.aborted && error === signal.reason) throw error;
      throw new BackendError(
        BACKEND,
        `Cannot publish "${event.type}" (id "${event.id}") to Kafka topic "${this.#topic}": ${
          describeError(error)
        }, check that the brokers are reachable and the topic exists`,
        { cause: error },
      );
    }
  }

  /**
   * Joins one consumer group per consumer (`<groupIdPrefix><name>`) and
   * resolves once every group was joined and fetching started, so an event
   * published after it resolves is handled even with `fromBeginning:
   * false`. A group without committed offsets is logged (see
   * `fromBeginning`), and so are events that topic retention deleted before
   * the group read them. Deliveries run until `options.signal` aborts or
   * the backend closes.
   *
   * @param deliver Runs one try.
   * @param options Consumers, signal and logger.
   * @returns Once every group was joined and its first fetch returned.
   * @throws {EventBusClosedError} After `close()`, or when `close()` runs
   *   while it attaches.
   * @throws {BackendError} When a consumer cannot connect or join.
   *
   * @example
   * ```ts ignore
   * import { KafkaBackend } from "@eventbus/kafka";
   * const backend = await KafkaBackend.connect({ brokers: ["127.0.0.1:9092"] });
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
    this.#logger ??= options.logger;
    const groups = consumers.map((spec) =>
      new GroupConsumer(this.#internals(), spec, deliver, logger)
    );
    for (const group of groups) this.#groups.add(group);
    const stop = async (): Promise<void> => {
      await Promise.all(groups.map((group) => group.stop()));
      for (const group of groups) this.#groups.delete(group);
    };
    const stopping = signal === undefined
      ? this.#shutdown.signal
      : AbortSignal.any([this.#shutdown.signal, signal]);
    let failed: ConsumerSpec | undefined;
    try {
      await abortable(
        (async () => {
          await this.#ensureTopics();
          await Promise.all(
            groups.map((group, i) =>
              group.start().catch((error) => {
                failed ??= consumers[i];
                throw error;
              })
            ),
          );
        })(),
        stopping,
      );
    } catch (error) {
      await stop();
      if (this.#closed) {
        throw new EventBusClosedError(undefined, { cause: error });
      }
      if (signal?.aborted) throw signal.reason;
      const what = failed === undefined
        ? `consumers ${quoteList(consumers.map((c) => c.name))}`
        : `"${failed.type}" for handler "${failed.name}"`;
      throw new BackendError(
        BACKEND,
        `Cannot consume ${what} from Kafka topic "${this.#topic}": ${
          describeError(error)
        }, check that the brokers are reachable`,
        { cause: error },
      );
    }
    if (this.#closed) throw new EventBusClosedError(); // close() stops them
    if (signal?.aborted) void stop();
    else signal?.addEventListener("abort", () => void stop(), { once: true });
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
   * import { KafkaBackend } from "@eventbus/kafka";
   * const backend = await KafkaBackend.connect({ brokers: ["127.0.0.1:9092"] });
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
    this.#shutdown.abort(new EventBusClosedError());
    const { timeout = 30_000, signal } = options ?? {};
    const groups = [...this.#groups];
    for (const group of groups) group.stopIntake();
    {
      using limit = deadline(timeout, signal);
      await drain(groups.map((group) => group.tries), limit, {
        reason: new Error("The Kafka backend closed"),
      });
      await Promise.all(groups.map((group) => group.stop()));
      await untilDeadline(this.#publishing.idle(), limit);
    }
    await this.#deadLetters.close();
    const producer = this.#producer;
    this.#producer = undefined;
    if (producer !== undefined) {
      await producer.then((p) => p.disconnect()).catch(() => {});
    }
    const admin = this.#admin;
    this.#admin = undefined;
    if (admin !== undefined) {
      await admin.then((a) => a.disconnect()).catch(() => {});
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
      prefetch: this.#prefetch,
      fromBeginning: this.#fromBeginning,
      sessionTimeout: this.#sessionTimeout,
      heartbeatInterval: this.#heartbeatInterval,
      fetchMaxWait: this.#fetchMaxWait,
      completed: () => void this.#completed++,
      admin: () => this.#connectAdmin(),
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
    await this.#send(topic, [message]);
  }

  async #send(topic: string, messages: Message[]): Promise<void> {
    await this.#ensureTopics();
    const producer = await this.#connectProducer();
    await producer.send({ topic, acks: -1, messages });
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

  /** One admin client for every group: committed offsets and topic ends. */
  #connectAdmin(): Promise<Admin> {
    if (this.#closed) return Promise.reject(new EventBusClosedError());
    if (this.#admin !== undefined) return this.#admin;
    const admin = this.#kafka.admin();
    const ready = admin.connect().then(() => admin);
    this.#admin = ready;
    ready.catch(() => {
      if (this.#admin === ready) this.#admin = undefined; // try again next time
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
  prefetch: number;
  fromBeginning: boolean;
  sessionTimeout: number;
  heartbeatInterval: number;
  fetchMaxWait: number;
  completed: () => void;
  admin: () => Promise<Admin>;
  deadLetter: (message: KafkaMessage, headers: IHeaders) => Promise<void>;
}

/** Settled: the offset may be committed. Unsettled: leave it to Kafka. */
type Outcome = "settled" | "unsettled";

/** What a dead-letter copy records about why. */
interface DeadLetterInfo {
  reason: DeadLetterReason;
  attempts: number;
  error: unknown;
}

/** A partition's committed offset and the try record of its metadata. */
interface CommittedRecord {
  /** The committed offset; -1 when the group has none. */
  offset: bigint;
  /** Tries started and not finished, by offset. */
  tries: Map<bigint, number>;
}

/**
 * One consumer group member: one handler name in this process.
 *
 * kafkajs fetches the next batch from a broker only after the previous one
 * was handed over, so `eachBatch` dispatches each message to its own task
 * and returns once `concurrency + prefetch` events wait at most; a slow or
 * stuck handler then never blocks other keys. A task takes a handler slot
 * only when its same-key predecessor settled, so a key's backlog holds no
 * slot. Because kafkajs's resolved offset is also its fetch position, every
 * dispatched offset is resolved at once, `autoCommit` is off, and this
 * class commits per partition the offset of the first message not yet
 * settled (the watermark), at most one commit request at a time.
 *
 * Each commit carries, as its metadata, the partition's try record: for
 * each offset at or after the watermark, how many tries were started
 * without a result. A try starts only after the record that counts it was
 * committed, so a worker that dies during a try leaves the count behind,
 * and the next owner of the partition (which reads the record when it is
 * assigned) passes `attempt` on from there.
 */
class GroupConsumer {
  #backend: BackendInternals;
  #spec: ConsumerSpec;
  #deliver: Deliver;
  #logger: Logger;
  #groupId: string;
  #consumer: Consumer;
  /** Running deliveries: `concurrency`. */
  #slots: Semaphore;
  /** Dispatched, unsettled events: `concurrency + prefetch`. */
  #window: Semaphore;
  /** Aborted when intake stops (close or detach): no new tries start. */
  #intake = new AbortController();
  /** Dispatched messages' tasks and their tries, given up at the close deadline. */
  readonly tries: InFlight = new InFlight();
  /** Counts group joins: a batch of an older generation stops dispatching. */
  #generation = 0;
  /** Per partition of the current group generation. */
  #partitions = new Map<number, PartitionTrack>();
  /** The committed records, read once per generation. */
  #records: Promise<Map<number, CommittedRecord>> | undefined;
  /** The last task per partition and key in this generation: per-key order. */
  #lastByKey = new Map<string, Promise<Outcome>>();
  /** Unfinished tasks by partition and offset, across generations. */
  #inFlight = new Map<string, Promise<Outcome>>();
  #committing: Promise<void> | undefined;
  #commitAgain = false;
  #stopping = false;
  #launching: Promise<void> | undefined;
  /** Crashes kafkajs gave up on since the group was last joined. */
  #crashes = 0;
  #restartTimer: ReturnType<typeof setTimeout> | undefined;
  /** Rejects start() when the consumer crashed START_CRASHES times. */
  #startFailed: ((error: unknown) => void) | undefined;
  #stopped: Promise<void> | undefined;
  #warnedRecordLength = false;

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
    this.#window = new Semaphore(backend.concurrency + backend.prefetch);
    this.#groupId = backend.groupIdPrefix + spec.name;
    this.#consumer = backend.kafka.consumer({
      groupId: this.#groupId,
      sessionTimeout: backend.sessionTimeout,
      heartbeatInterval: backend.heartbeatInterval,
      maxWaitTimeInMs: backend.fetchMaxWait,
      allowAutoTopicCreation: true,
      // kafkajs's own default, plus: no restart after stop() began.
      retry: {
        retries: 5,
        restartOnFailure: () => Promise.resolve(!this.#stopping),
      },
    });
    const { CRASH, GROUP_JOIN } = this.#consumer.events;
    this.#consumer.on(CRASH, ({ payload }) => {
      if (this.#stopping) return;
      if (payload.restart) {
        this.#logger.error(
          `Kafka consumer "${spec.name}" crashed, restarting: ${
            describeError(payload.error)
          }`,
          { error: payload.error, handler: spec.name },
        );
      } else {
        this.#restartLater(payload.error);
      }
    });
    // A new generation: partitions may have moved, commits of the old one
    // are refused, and fetching restarts at the committed offsets.
    this.#consumer.on(GROUP_JOIN, () => {
      this.#crashes = 0;
      this.#generation++;
      for (const track of this.#partitions.values()) track.retire();
      this.#partitions = new Map();
      this.#lastByKey = new Map();
      this.#records = undefined;
    });
  }

  /** Joins the group; resolves once it joined and its first fetch returned. */
  async start(): Promise<void> {
    const attached = this.#attached();
    this.#startFailed = attached.reject;
    const launch = this.#launch();
    this.#launching = launch;
    try {
      await launch;
      await attached.promise;
    } finally {
      this.#startFailed = undefined;
      attached.dispose();
    }
  }

  /**
   * kafkajs gave the consumer up (it restarts only after errors it deems
   * retriable; a broker may still answer a join with a one-off
   * INVALID_REQUEST): starts it again after a growing delay, so a worker
   * never stops consuming while it runs. Before the first join, the
   * START_CRASHES-th crash rejects start() instead.
   */
  #restartLater(error: unknown): void {
    const { name } = this.#spec;
    this.#crashes++;
    if (this.#startFailed !== undefined && this.#crashes >= START_CRASHES) {
      this.#startFailed(error);
      return;
    }
    const delay = Math.min(
      RESTART_DELAY * 2 ** (this.#crashes - 1),
      MAX_RESTART_DELAY,
    );
    this.#logger.error(
      `Kafka consumer "${name}" crashed: ${
        describeError(error)
      }; starting it again in ${delay} ms`,
      { error, handler: name },
    );
    clearTimeout(this.#restartTimer);
    this.#restartTimer = setTimeout(() => {
      if (this.#stopping) return;
      const launch = this.#launch();
      this.#launching = launch;
      launch.catch((error: unknown) => {
        if (!this.#stopping) this.#restartLater(error);
      });
    }, delay);
  }

  /** Connects, subscribes and runs the consumer, unless stop() began. */
  async #launch(): Promise<void> {
    const { topic, fromBeginning, concurrency } = this.#backend;
    const active = (): void => {
      if (this.#stopping) throw new EventBusClosedError();
    };
    await this.#consumer.connect();
    active();
    await this.#describeStart();
    active();
    await this.#consumer.subscribe({ topics: [topic], fromBeginning });
    active();
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

  /**
   * Waits for running tries (until they are abandoned), commits what settled and
   * the tries that ended without a result, then leaves the group
   * (uncommitted offsets go to the next member) and disconnects.
   */
  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      this.#stopping = true;
      clearTimeout(this.#restartTimer);
      this.stopIntake();
      await this.tries.idle();
      await this.#commit();
      await this.#consumer.stop().catch(() => {});
      await this.#consumer.disconnect().catch(() => {});
      // A launch still under way connects or runs the consumer again after
      // this: disconnect it once more when it ends.
      this.#launching?.catch(() => {}).then(() => this.#consumer.disconnect())
        .catch(() => {});
    })();
    return this.#stopped;
  }

  /**
   * Settles once the group was joined and a fetch returned after it (so
   * the start offsets are resolved); `reject` is called by #restartLater
   * when the consumer crashed START_CRASHES times before that. kafkajs's
   * `run()` resolves earlier, and even when its join failed.
   */
  #attached(): {
    promise: Promise<void>;
    reject: (error: unknown) => void;
    dispose: () => void;
  } {
    const { FETCH, GROUP_JOIN } = this.#consumer.events;
    const { promise, resolve, reject } = withResolvers<void>();
    promise.catch(() => {});
    let joined = false;
    const removers = [
      this.#consumer.on(GROUP_JOIN, () => void (joined = true)),
      this.#consumer.on(FETCH, () => {
        if (joined) resolve();
      }),
    ];
    return {
      promise,
      reject,
      dispose: () => {
        for (const remove of removers) remove();
      },
    };
  }

  /**
   * Logs what a group without committed offsets does (a brand-new handler
   * name, or one whose offsets expired), and events that topic retention
   * deleted before the group read them.
   */
  async #describeStart(): Promise<void> {
    const { topic, fromBeginning } = this.#backend;
    const { name } = this.#spec;
    const groupId = this.#groupId;
    let committed: Map<number, bigint>;
    let ends: { partition: number; low: string; high: string }[];
    try {
      const admin = await this.#backend.admin();
      const [offsets] = await admin.fetchOffsets({ groupId, topics: [topic] });
      committed = new Map(
        (offsets?.partitions ?? []).map((p) => [p.partition, BigInt(p.offset)]),
      );
      ends = await admin.fetchTopicOffsets(topic);
    } catch (error) {
      this.#logger.debug(
        `Cannot read the offsets of Kafka consumer group "${groupId}" before it starts: ${
          describeError(error)
        }`,
        { error, handler: name },
      );
      return;
    }
    let fresh = 0;
    let retained = 0n;
    let lost = 0n;
    const lostIn: number[] = [];
    for (const { partition, low, high } of ends) {
      const at = committed.get(partition) ?? -1n;
      if (at < 0n) {
        fresh++;
        retained += BigInt(high) - BigInt(low);
      } else if (at < BigInt(low)) {
        lost += BigInt(low) - at;
        lostIn.push(partition);
      }
    }
    if (fresh > 0) {
      const scope = fresh === ends.length
        ? `consumer group "${groupId}" has no committed offsets`
        : `${fresh} of ${ends.length} partitions have no committed offset in consumer group "${groupId}"`;
      const attributes = { handler: name, groupId, retained: Number(retained) };
      if (fromBeginning) {
        this.#logger.info(
          `Handler "${name}" is new on Kafka topic "${topic}" (${scope}): it starts at the oldest retained events and handles the ${retained} events the topic still holds there (fromBeginning: true)`,
          attributes,
        );
      } else {
        this.#logger.warn(
          `Handler "${name}" is new on Kafka topic "${topic}" (${scope}): it starts at the end and skips the ${retained} events the topic still holds there (fromBeginning: false)`,
          attributes,
        );
      }
    }
    if (lost > 0n) {
      this.#logger.error(
        `Handler "${name}" lost ${lost} events of Kafka topic "${topic}": topic retention deleted them from partitions ${
          lostIn.join(", ")
        } before consumer group "${groupId}" read them, raise the topic's retention.ms or retention.bytes or keep a worker running`,
        { handler: name, groupId, lost: Number(lost) },
      );
    }
  }

  /** Dispatches one fetched batch of one partition, message by message. */
  async #batch(payload: EachBatchPayload): Promise<void> {
    const { batch, isRunning, isStale } = payload;
    const { partition } = batch;
    const generation = this.#generation;
    const current = (): boolean =>
      isRunning() && !isStale() && !this.#intake.signal.aborted &&
      generation === this.#generation;
    const beat = setInterval(() => {
      payload.heartbeat().catch(() => {}); // rebalances surface in the fetch loop
    }, this.#backend.heartbeatInterval);
    try {
      const track = await this.#track(partition, generation);
      if (track === undefined) return; // nothing resolved: fetched again
      for (const message of batch.messages) {
        if (!current()) return;
        const offset = BigInt(message.offset);
        if (offset < track.next) continue; // already dispatched this generation
        const held = await this.#window.acquire({
          signal: this.#intake.signal,
        }).catch(() => undefined);
        if (held === undefined) return;
        if (!current()) {
          held.release();
          return;
        }
        track.dispatch(offset);
        payload.resolveOffset(message.offset); // the fetch position, not a commit
        this.#dispatch(message, partition, track, held);
      }
    } finally {
      clearInterval(beat);
    }
  }

  /**
   * The partition's track in this generation, made from its committed
   * record on the first batch; undefined when the record cannot be read
   * or the generation ended meanwhile.
   */
  async #track(
    partition: number,
    generation: number,
  ): Promise<PartitionTrack | undefined> {
    const known = this.#partitions.get(partition);
    if (known !== undefined) return known;
    const reading = this.#records ??= this.#readRecords();
    let records: Map<number, CommittedRecord>;
    try {
      records = await reading;
    } catch (error) {
      if (this.#records === reading) this.#records = undefined;
      if (this.#intake.signal.aborted) return undefined;
      this.#logger.warn(
        `Cannot read the committed offsets of Kafka consumer group "${this.#groupId}": ${
          describeError(error)
        }; fetching partition ${partition} again in 1 s`,
        { error, handler: this.#spec.name },
      );
      await sleep(1000, this.#intake.signal);
      return undefined;
    }
    if (generation !== this.#generation) return undefined;
    let track = this.#partitions.get(partition);
    if (track === undefined) {
      track = new PartitionTrack(records.get(partition));
      this.#partitions.set(partition, track);
    }
    return track;
  }

  async #readRecords(): Promise<Map<number, CommittedRecord>> {
    const admin = await this.#backend.admin();
    const [offsets] = await admin.fetchOffsets({
      groupId: this.#groupId,
      topics: [this.#backend.topic],
    });
    const records = new Map<number, CommittedRecord>();
    for (const { partition, offset, metadata } of offsets?.partitions ?? []) {
      records.set(partition, decodeRecord(BigInt(offset), metadata));
    }
    return records;
  }

  /** Starts the task of one dispatched message. */
  #dispatch(
    message: KafkaMessage,
    partition: number,
    track: PartitionTrack,
    held: Permit,
  ): void {
    const offset = BigInt(message.offset);
    const id = `${partition}:${message.offset}`;
    // A task of an older generation for this offset may still run here.
    const earlier = this.#inFlight.get(id);
    const key = message.key === null
      ? `${partition}:o${message.offset}`
      : `${partition}:k${message.key.toString("latin1")}`;
    const lastByKey = this.#lastByKey;
    const previous = lastByKey.get(key);
    const task = (async (): Promise<Outcome> => {
      try {
        if (earlier !== undefined && await earlier === "settled") {
          return this.#settle(track, offset);
        }
        // Keep per-key order: never overtake an unsettled predecessor. The
        // wait holds no handler slot.
        if (previous !== undefined && await previous === "unsettled") {
          return "unsettled";
        }
        const slot = await this.#slots.acquire({
          signal: this.#intake.signal,
        }).catch(() => undefined);
        if (slot === undefined) return "unsettled";
        try {
          const outcome = await this.#handle(message, partition, track);
          return outcome === "settled" ? this.#settle(track, offset) : outcome;
        } finally {
          slot.release();
        }
      } finally {
        held.release();
      }
    })();
    lastByKey.set(key, task);
    this.#inFlight.set(id, task);
    this.tries.track(task);
    task.finally(() => {
      if (lastByKey.get(key) === task) lastByKey.delete(key);
      if (this.#inFlight.get(id) === task) this.#inFlight.delete(id);
    }).catch(() => {});
  }

  #settle(track: PartitionTrack, offset: bigint): Outcome {
    if (track.settle(offset)) this.#commitSoon();
    return "settled";
  }

  /** Commits soon, without waiting for it. */
  #commitSoon(): void {
    this.#commit().catch(() => {});
  }

  /**
   * Commits every partition whose watermark or try record changed, with
   * the record as metadata, and resolves once the changes made before the
   * call were committed or the commit failed. One commit request is in
   * flight at a time; changes made meanwhile go into the next one. A
   * commit waits for the current macrotask to end, so tries that start
   * together (the successor of a settled event among them) share it.
   */
  #commit(): Promise<void> {
    if (this.#committing !== undefined) {
      this.#commitAgain = true;
      return this.#committing;
    }
    const run = (async () => {
      await nextImmediate();
      try {
        do {
          this.#commitAgain = false;
          if (!await this.#commitOnce()) break;
        } while (this.#commitAgain);
      } finally {
        this.#committing = undefined;
      }
    })();
    this.#committing = run;
    return run;
  }

  /** One commit request; false when it failed. */
  async #commitOnce(): Promise<boolean> {
    const commits: {
      partition: number;
      track: PartitionTrack;
      commit: PendingCommit;
    }[] = [];
    for (const [partition, track] of this.#partitions) {
      const commit = track.pending();
      if (commit !== undefined) commits.push({ partition, track, commit });
    }
    if (commits.length === 0) return true;
    if (!this.#warnedRecordLength && commits.some((c) => c.commit.truncated)) {
      this.#warnedRecordLength = true;
      this.#logger.warn(
        `Cannot record every unfinished try of handler "${this.#spec.name}" in the Kafka offset metadata: the record would pass ${RECORD_LIMIT} characters, lower concurrency; the tries left out start again at their recorded count after a crash`,
        { handler: this.#spec.name },
      );
    }
    try {
      await this.#consumer.commitOffsets(
        commits.map(({ partition, commit }) => ({
          topic: this.#backend.topic,
          partition,
          offset: commit.offset,
          metadata: commit.metadata,
        })),
      );
    } catch (error) {
      // A rebalance took the partitions: the next owner redelivers.
      this.#logger.warn(
        `Cannot commit Kafka offsets for handler "${this.#spec.name}": ${
          describeError(error)
        }; the events after the last commit will be delivered again`,
        { error, handler: this.#spec.name },
      );
      return false;
    }
    for (const { track, commit } of commits) track.committed(commit);
    return true;
  }

  /**
   * Counts try `attempt` of `offset` in the partition's record and waits
   * until that record is committed, retrying with backoff. False when the
   * partition's generation ended or intake stopped first: then the try
   * must not start.
   */
  async #recordTry(
    track: PartitionTrack,
    offset: bigint,
    attempt: number,
  ): Promise<boolean> {
    const version = track.started(offset, attempt);
    for (let wait = 250;; wait = Math.min(wait * 2, 5000)) {
      await this.#commit();
      if (track.retired) return false;
      if (track.committedVersion >= version) return true;
      if (!await sleep(wait, this.#intake.signal)) return false;
    }
  }

  /** Runs every try of one message. Never rejects. */
  async #handle(
    message: KafkaMessage,
    partition: number,
    track: PartitionTrack,
  ): Promise<Outcome> {
    const { type, name, attempts } = this.#spec;
    const typeHeader = message.headers?.[TYPE_HEADER];
    if (typeHeader !== undefined && String(typeHeader) !== type) {
      return "settled"; // another type on the shared topic
    }
    // A dead letter replayed for another handler name: not ours to run.
    const target = message.headers?.[TARGET_HANDLER];
    if (target !== undefined && String(target) !== name) return "settled";
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
      return this.#deadLetter(message, partition, {
        reason: "invalid-event",
        attempts: 0,
        error,
      });
    }
    if (event.type !== type) return "settled";
    const offset = BigInt(message.offset);
    for (let attempt = track.triesOf(offset) + 1;; attempt++) {
      if (this.#intake.signal.aborted || track.retired) return "unsettled";
      // Past its attempts the bus dead-letters it without a try: no record.
      if (
        attempt <= attempts && !await this.#recordTry(track, offset, attempt)
      ) {
        return "unsettled";
      }
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
          return this.#deadLetter(message, partition, {
            reason: result.error.reason,
            attempts: result.error.attempts,
            error: result.error.cause,
          });
        case "abandoned":
          return "unsettled";
      }
    }
  }

  /** One try, given up (as abandoned) at the close deadline. */
  #try(event: Event, attempt: number): Promise<DeliveryResult> {
    return this.tries.run(
      (signal) =>
        this.#deliver({ event, handler: this.#spec.name, attempt, signal }),
      ABANDONED,
    );
  }

  /**
   * Writes a copy to the dead-letter topic, retrying with backoff until it
   * is written or intake stops (then the message stays uncommitted).
   */
  async #deadLetter(
    message: KafkaMessage,
    partition: number,
    info: DeadLetterInfo,
  ): Promise<Outcome> {
    const names = DEAD_LETTER_HEADERS;
    const headers = {
      [names.handler]: this.#spec.name,
      [names.reason]: info.reason,
      [names.attempts]: String(info.attempts),
      [names.error]: describeError(info.error),
      [names.sourceTopic]: this.#backend.topic,
      [names.sourcePartition]: String(partition),
      [names.sourceOffset]: message.offset,
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

/** A commit one partition needs: offset, try record, and its version. */
interface PendingCommit {
  offset: string;
  metadata: string;
  version: number;
  /** True when the record left tries out to fit {@linkcode RECORD_LIMIT}. */
  truncated: boolean;
}

/**
 * One partition in one group generation: the offsets dispatched and not
 * yet settled, and the try record. Kafka commits "the next offset to
 * read", so the commit point is the lowest unsettled offset, or one past
 * the last dispatched.
 */
class PartitionTrack {
  /** One past the highest dispatched offset. */
  next = -1n;
  /** True once the generation ended: nothing of it may be committed. */
  retired = false;
  /** The record version the last successful commit carried. */
  committedVersion = 0;
  #unsettled = new Set<bigint>();
  /** Tries started without a result, by offset (at or after the point). */
  #tries: Map<bigint, number>;
  #version = 0;
  #committed: bigint;

  constructor(record: CommittedRecord | undefined) {
    this.#committed = record?.offset ?? -1n;
    this.#tries = new Map(record?.tries ?? []);
  }

  dispatch(offset: bigint): void {
    this.#unsettled.add(offset);
    this.next = offset + 1n;
  }

  /** How many tries of `offset` the record counts. */
  triesOf(offset: bigint): number {
    return this.#tries.get(offset) ?? 0;
  }

  /** Counts try `attempt` of `offset`; returns the record version to commit. */
  started(offset: bigint, attempt: number): number {
    this.#tries.set(offset, attempt);
    return ++this.#version;
  }

  /** Marks an offset settled; true when there is something to commit. */
  settle(offset: bigint): boolean {
    this.#unsettled.delete(offset);
    if (this.#tries.delete(offset)) this.#version++;
    return this.pending() !== undefined;
  }

  retire(): void {
    this.retired = true;
  }

  /** The commit this partition needs, if its point or record changed. */
  pending(): PendingCommit | undefined {
    if (this.retired || this.next < 0n) return undefined;
    const point = this.#point();
    if (point <= this.#committed && this.#version <= this.committedVersion) {
      return undefined;
    }
    const { metadata, truncated } = encodeRecord(point, this.#tries);
    return {
      offset: String(point),
      metadata,
      version: this.#version,
      truncated,
    };
  }

  committed(commit: PendingCommit): void {
    const offset = BigInt(commit.offset);
    if (offset > this.#committed) this.#committed = offset;
    if (commit.version > this.committedVersion) {
      this.committedVersion = commit.version;
    }
  }

  #point(): bigint {
    let lowest = this.next;
    for (const offset of this.#unsettled) if (offset < lowest) lowest = offset;
    return lowest;
  }
}

/**
 * The try record: `eb1:` then `<offset - base>.<tries>` entries in base 36,
 * comma-separated, lowest offsets first, cut to {@linkcode RECORD_LIMIT}.
 */
function encodeRecord(
  base: bigint,
  tries: Map<bigint, number>,
): { metadata: string; truncated: boolean } {
  const offsets = [...tries.keys()].filter((o) => o >= base).sort((a, b) =>
    a < b ? -1 : a > b ? 1 : 0
  );
  let metadata = RECORD_PREFIX;
  for (const [i, offset] of offsets.entries()) {
    const entry = `${i === 0 ? "" : ","}${(offset - base).toString(36)}.${
      tries.get(offset)!.toString(36)
    }`;
    if (metadata.length + entry.length > RECORD_LIMIT) {
      return { metadata, truncated: true };
    }
    metadata += entry;
  }
  return { metadata, truncated: false };
}

/** Reads a committed try record; anything else reads as no tries. */
function decodeRecord(
  offset: bigint,
  metadata: string | null,
): CommittedRecord {
  const tries = new Map<bigint, number>();
  if (offset >= 0n && metadata?.startsWith(RECORD_PREFIX)) {
    for (const entry of metadata.slice(RECORD_PREFIX.length).split(",")) {
      const [delta = "", count = ""] = entry.split(".");
      const d = parseInt(delta, 36);
      const n = parseInt(count, 36);
      if (
        Number.isSafeInteger(d) && d >= 0 && Number.isSafeInteger(n) && n > 0
      ) {
        tries.set(offset + BigInt(d), n);
      }
    }
  }
  return { offset, tries };
}

function defaultKey(event: Event): string {
  return event.metadata.partitionkey ?? event.id;
}
