// Copyright 2026 the @eventbus/core authors. MIT license.
// `backend.deadLetters` of the Kafka backend, over the dead-letter topic
// that `kafka.ts` writes. Kafka cannot delete one record, so removal is a
// marker: a record in the same topic and partition whose header
// `eventbus-removed` lists the refs it removes ("<partition>:<offset>").
// Every read folds over the whole topic, from each partition's low offset
// to its high watermark when the read began: dead letters minus the refs
// some marker removed. A replay writes the event's bytes again to the
// topic and partition it came from, with the header
// `eventbus-target-handler` naming the handler that failed (consumer groups
// of other names commit it unrun, `kafka.ts`), then writes the marker: at
// least once.
//
// Reading a topic from its start with kafkajs's public API takes a consumer
// group, whose first join waits for `group.initial.rebalance.delay.ms`
// (3 s by default, and on librdkafka's mock cluster). So the records are
// fetched without a group, with Fetch requests to each partition's leader
// through kafkajs's own cluster object: the one `producer()`, `consumer()`
// and `admin()` create, with the client's brokers, TLS and SASL. kafkajs
// keeps its factory behind a symbol; it is looked up by description and a
// missing one is a clear error (kafkajs 2.2 is the version this was
// written and tested against).

import type { Admin, IHeaders, Kafka, Message } from "kafkajs";
import {
  BackendError,
  type DeadLetter,
  type DeadLetterFilter,
  type DeadLetters,
  type DeadLetterTarget,
  decodeEvent,
  describeError,
  type Event,
  EventBusClosedError,
  type Logger,
  matchesDeadLetter,
} from "@eventbus/core";

/** Names the only handler a replayed copy is for. */
export const TARGET_HANDLER = "eventbus-target-handler";
/** The headers a dead-letter copy carries, besides the event's own. */
export const DEAD_LETTER_HEADERS = {
  handler: "eventbus-handler",
  reason: "eventbus-reason",
  attempts: "eventbus-attempts",
  error: "eventbus-error",
  sourceTopic: "eventbus-source-topic",
  sourcePartition: "eventbus-source-partition",
  sourceOffset: "eventbus-source-offset",
} as const;
/** On a marker record: the comma-separated refs it removes. */
const REMOVED = "eventbus-removed";
/** On a marker record: why (`replayed` or `purged`). */
const REMOVAL = "eventbus-removal";
/** On a replayed copy: the dead letter it came from (`<topic>/<ref>`). */
const REPLAY_OF = "eventbus-replay-of";
/** Headers of ours that a replayed copy does not carry on. */
const OURS = new Set<string>([
  ...Object.values(DEAD_LETTER_HEADERS),
  TARGET_HANDLER,
  REPLAY_OF,
  REMOVED,
  REMOVAL,
]);
/** Refs per marker record, so a large purge stays far below max.message.bytes. */
const REFS_PER_MARKER = 500;
/** How much of a foreign body a dead letter's `error` quotes. */
const BODY_QUOTE = 200;
/** kafkajs's cluster factory on a `Kafka` instance (a private symbol). */
const CREATE_CLUSTER = "private:Kafka:createCluster";
/** Fetches without progress before a read gives up. */
const STALLS = 3;
/** Kafka's isolation level READ_COMMITTED: no aborted transactional writes. */
const READ_COMMITTED = 1;

/** What the dead-letter operations need from their backend. */
export interface DeadLetterLink {
  readonly kafka: Kafka;
  readonly backend: string;
  /** The topic events are written to (when a dead letter does not say). */
  readonly topic: string;
  readonly deadLetterTopic: string;
  readonly groupIdPrefix: string;
  admin(): Promise<Admin>;
  /** Produces with acks = all; resolves once the brokers took every message. */
  send(topic: string, messages: Message[]): Promise<void>;
  closed(): boolean;
  logger(): Logger;
}

/** One record of the dead-letter topic read as a dead letter. */
interface Entry {
  readonly letter: DeadLetter;
  readonly partition: number;
  /** The event's bytes; undefined when they are not one of our events. */
  readonly body: Buffer | undefined;
  readonly key: Buffer | null;
  readonly headers: IHeaders;
  /** Where its handler consumed it: topic and partition, when known. */
  readonly sourceTopic: string;
  readonly sourcePartition: number | undefined;
}

/** A fetched record, as kafkajs's Fetch decoder gives it. */
interface RawRecord {
  offset: string;
  timestamp: string;
  key: Buffer | null;
  value: Buffer | null;
  headers?: IHeaders;
  isControlRecord?: boolean;
}

/** The part of kafkajs's (private) cluster and broker that a read uses. */
interface RawCluster {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  addTargetTopic(topic: string): Promise<void>;
  refreshMetadata(): Promise<void>;
  findLeaderForPartitions(
    topic: string,
    partitions: number[],
  ): Record<string, number[]>;
  findBroker(node: { nodeId: string }): Promise<RawBroker>;
}

interface RawBroker {
  fetch(request: {
    maxWaitTime: number;
    minBytes: number;
    maxBytes: number;
    isolationLevel: number;
    topics: {
      topic: string;
      partitions: {
        partition: number;
        fetchOffset: string;
        maxBytes: number;
      }[];
    }[];
  }): Promise<{
    responses: {
      topicName: string;
      partitions: { partition: number; messages: RawRecord[] }[];
    }[];
  }>;
}

/** The dead letters of one Kafka backend. */
export class KafkaDeadLetters implements DeadLetters {
  /**
   * For tests only: awaited after a replayed copy was accepted and before
   * its marker is written (a test makes it fail here).
   */
  afterPublish: ((ref: string) => Promise<void>) | undefined;
  readonly #link: DeadLetterLink;
  #cluster: Promise<RawCluster> | undefined;

  constructor(link: DeadLetterLink) {
    this.#link = link;
  }

  async count(filter: DeadLetterFilter = {}): Promise<number> {
    checkCriteria("count", filter);
    return (await this.#select(filter)).length;
  }

  async *list(filter: DeadLetterFilter = {}): AsyncIterable<DeadLetter> {
    checkCriteria("list", filter);
    const { limit = Infinity } = filter;
    if (!(limit > 0)) return;
    let given = 0;
    for (const entry of await this.#select(filter)) {
      yield entry.letter;
      if (++given >= limit) return;
    }
  }

  async replay(target: DeadLetterTarget): Promise<{ replayed: number }> {
    checkCriteria("replay", target);
    const selected = await this.#select(target);
    if (target.dryRun === true) return { replayed: selected.length };
    /** Committed offsets by group, read once per call. */
    const groups = new Map<string, Map<number, bigint>>();
    let replayed = 0;
    for (const entry of selected) {
      const copy = await this.#copy(entry, groups);
      if (copy === undefined) continue; // stays, with a warning
      await this.#replay(entry, copy);
      replayed++;
    }
    return { replayed };
  }

  async purge(target: DeadLetterTarget): Promise<{ purged: number }> {
    checkCriteria("purge", target);
    const selected = await this.#select(target);
    if (target.dryRun !== true && selected.length > 0) {
      await this.#remove(selected, "purged");
    }
    return { purged: selected.length };
  }

  /** Disconnects the reading connections (the backend closes). */
  async close(): Promise<void> {
    const cluster = this.#cluster;
    this.#cluster = undefined;
    await cluster?.then((c) => c.disconnect()).catch(() => {});
  }

  /** The dead letters not removed that match, oldest first. */
  async #select(
    criteria: DeadLetterFilter & DeadLetterTarget,
  ): Promise<Entry[]> {
    if (this.#link.closed()) throw new EventBusClosedError();
    const records = await this.#read();
    const removed = new Set<string>();
    for (const { record } of records) {
      const refs = header(record.headers, REMOVED);
      if (refs !== undefined) {
        for (const ref of refs.split(",")) removed.add(ref);
      }
    }
    const entries: Entry[] = [];
    for (const { partition, record } of records) {
      if (header(record.headers, REMOVED) !== undefined) continue;
      if (removed.has(`${partition}:${record.offset}`)) continue;
      const entry = this.#entry(partition, record);
      if (matchesDeadLetter(entry.letter, criteria)) entries.push(entry);
    }
    // Oldest first: by the time it was dead-lettered, then by ref.
    return entries.sort((a, b) =>
      a.letter.time < b.letter.time
        ? -1
        : a.letter.time > b.letter.time
        ? 1
        : a.partition - b.partition ||
          Number(refOffset(a.letter.ref) - refOffset(b.letter.ref))
    );
  }

  /** One record as a dead letter; never throws for what it holds. */
  #entry(partition: number, record: RawRecord): Entry {
    const get = (name: string): string => header(record.headers, name) ?? "";
    const attempts = Number(get(DEAD_LETTER_HEADERS.attempts));
    const time = new Date(Number(record.timestamp));
    let reason = get(DEAD_LETTER_HEADERS.reason);
    let error = get(DEAD_LETTER_HEADERS.error);
    let body: Buffer | undefined = record.value ?? undefined;
    let event: Event;
    try {
      event = decodeEvent(record.value ?? "");
    } catch (decodeError) {
      // Not one of our events: a placeholder, the body quoted in `error`.
      const text = record.value?.toString("utf8") ?? "";
      const quote = text.length > BODY_QUOTE
        ? `${text.slice(0, BODY_QUOTE)}…`
        : text;
      event = {
        specversion: "1.0",
        id: "",
        type: get("eventbus-type"),
        source: "",
        time: Number.isNaN(time.getTime()) ? "" : time.toISOString(),
        data: text,
        metadata: {},
      };
      reason = "invalid-event";
      error = `${error || describeError(decodeError)} (body: ${
        JSON.stringify(quote)
      })`;
      body = undefined;
    }
    const sourcePartition = Number(get(DEAD_LETTER_HEADERS.sourcePartition));
    return {
      letter: {
        ref: `${partition}:${record.offset}`,
        event,
        handler: get(DEAD_LETTER_HEADERS.handler),
        attempts: Number.isSafeInteger(attempts) && attempts >= 0
          ? attempts
          : 0,
        reason: reason || "invalid-event",
        error,
        time: Number.isNaN(time.getTime())
          ? new Date(0).toISOString()
          : time.toISOString(),
      },
      partition,
      body,
      key: record.key,
      headers: record.headers ?? {},
      sourceTopic: get(DEAD_LETTER_HEADERS.sourceTopic) || this.#link.topic,
      sourcePartition: get(DEAD_LETTER_HEADERS.sourcePartition) !== "" &&
          Number.isSafeInteger(sourcePartition) && sourcePartition >= 0
        ? sourcePartition
        : undefined,
    };
  }

  /**
   * The replayed copy of a dead letter, or undefined (with a warning) when
   * it cannot reach its handler: no event, no handler name, no partition,
   * or a consumer group that has never committed on that partition (its
   * first worker could start at the end and skip the copy).
   */
  async #copy(
    entry: Entry,
    groups: Map<string, Map<number, bigint>>,
  ): Promise<Message | undefined> {
    const { letter, body, sourceTopic, sourcePartition } = entry;
    const what =
      `Cannot replay Kafka dead letter ${letter.ref} of topic "${this.#link.deadLetterTopic}"`;
    const skip = (why: string): undefined => {
      this.#link.logger().warn(
        `${what}: ${why}; it stays in the dead letters`,
        {
          ref: letter.ref,
          handler: letter.handler,
          event: letter.event.id,
        },
      );
      return undefined;
    };
    if (body === undefined) {
      return skip(
        `it is not one of our events (${letter.reason}), purge it once inspected`,
      );
    }
    if (letter.handler === "") return skip("it names no handler");
    if (sourcePartition === undefined) {
      return skip("it does not say which partition its event came from");
    }
    const groupId = this.#link.groupIdPrefix + letter.handler;
    const groupKey = `${sourceTopic}\n${groupId}`;
    let committed = groups.get(groupKey);
    if (committed === undefined) {
      committed = await this.#committed(groupId, sourceTopic);
      groups.set(groupKey, committed);
    }
    if ((committed.get(sourcePartition) ?? -1n) < 0n) {
      return skip(
        `consumer group "${groupId}" of handler "${letter.handler}" has no committed offset on partition ${sourcePartition} of topic "${sourceTopic}" (no worker of that name ever consumed it, or its offsets expired), start a worker for "${letter.handler}" first or check groupIdPrefix`,
      );
    }
    const headers: IHeaders = {};
    for (const [name, value] of Object.entries(entry.headers)) {
      if (!OURS.has(name) && value !== undefined) headers[name] = value;
    }
    headers[TARGET_HANDLER] = letter.handler;
    headers[REPLAY_OF] = `${this.#link.deadLetterTopic}/${letter.ref}`;
    return { key: entry.key, value: body, partition: sourcePartition, headers };
  }

  /** Writes the copy, then the marker that removes the dead letter. */
  async #replay(entry: Entry, copy: Message): Promise<void> {
    const { letter, sourceTopic } = entry;
    try {
      await this.#link.send(sourceTopic, [copy]);
    } catch (error) {
      throw new BackendError(
        this.#link.backend,
        `Cannot replay Kafka dead letter ${letter.ref} ("${letter.event.type}" id "${letter.event.id}") to handler "${letter.handler}" on topic "${sourceTopic}": ${
          describeError(error)
        }; it stays in the dead letters, check that the brokers are reachable`,
        { cause: error },
      );
    }
    await this.afterPublish?.(letter.ref);
    await this.#remove([entry], "replayed");
  }

  /** Writes markers removing `entries`, in their own partitions. */
  async #remove(entries: Entry[], why: "replayed" | "purged"): Promise<void> {
    const byPartition = new Map<number, string[]>();
    for (const { partition, letter } of entries) {
      const refs = byPartition.get(partition) ?? [];
      refs.push(letter.ref);
      byPartition.set(partition, refs);
    }
    const markers: Message[] = [];
    for (const [partition, refs] of byPartition) {
      for (let i = 0; i < refs.length; i += REFS_PER_MARKER) {
        markers.push({
          key: null,
          value: null,
          partition,
          headers: {
            [REMOVED]: refs.slice(i, i + REFS_PER_MARKER).join(","),
            [REMOVAL]: why,
          },
        });
      }
    }
    try {
      await this.#link.send(this.#link.deadLetterTopic, markers);
    } catch (error) {
      throw new BackendError(
        this.#link.backend,
        `Cannot remove ${entries.length} ${why} dead letters from Kafka topic "${this.#link.deadLetterTopic}": ${
          describeError(error)
        }; they are still listed${
          why === "replayed"
            ? " (and were replayed: a replay repeats them)"
            : ""
        }, check that the brokers are reachable`,
        { cause: error },
      );
    }
  }

  /** A group's committed offsets on a topic, by partition (-1: none). */
  async #committed(
    groupId: string,
    topic: string,
  ): Promise<Map<number, bigint>> {
    try {
      const admin = await this.#link.admin();
      const [offsets] = await admin.fetchOffsets({ groupId, topics: [topic] });
      return new Map(
        (offsets?.partitions ?? []).map((p) => [p.partition, BigInt(p.offset)]),
      );
    } catch (error) {
      throw new BackendError(
        this.#link.backend,
        `Cannot read the committed offsets of Kafka consumer group "${groupId}" on topic "${topic}": ${
          describeError(error)
        }, check that the brokers are reachable`,
        { cause: error },
      );
    }
  }

  /**
   * Every record of the dead-letter topic from each partition's low offset
   * to its high watermark now, partition by partition, in offset order.
   */
  async #read(): Promise<{ partition: number; record: RawRecord }[]> {
    const topic = this.#link.deadLetterTopic;
    try {
      const admin = await this.#link.admin();
      const ends = await admin.fetchTopicOffsets(topic);
      const next = new Map<number, bigint>();
      const high = new Map<number, bigint>();
      for (const end of ends) {
        if (BigInt(end.high) > BigInt(end.low)) {
          next.set(end.partition, BigInt(end.low));
          high.set(end.partition, BigInt(end.high));
        }
      }
      const read = new Map<number, RawRecord[]>();
      if (next.size === 0) return [];
      const cluster = await this.#connect();
      await cluster.addTargetTopic(topic);
      for (let stalls = 0; next.size > 0;) {
        let progress = false;
        const leaders = cluster.findLeaderForPartitions(topic, [
          ...next.keys(),
        ]);
        for (const [nodeId, partitions] of Object.entries(leaders)) {
          const broker = await cluster.findBroker({ nodeId });
          const { responses } = await broker.fetch({
            maxWaitTime: 0,
            minBytes: 1,
            maxBytes: 10_485_760,
            isolationLevel: READ_COMMITTED,
            topics: [{
              topic,
              partitions: partitions.map((partition) => ({
                partition,
                fetchOffset: String(next.get(partition)),
                maxBytes: 1_048_576,
              })),
            }],
          });
          for (const { partitions: answers } of responses) {
            for (const { partition, messages } of answers) {
              let at = next.get(partition);
              const end = high.get(partition);
              if (at === undefined || end === undefined) continue;
              const records = read.get(partition) ?? [];
              read.set(partition, records);
              for (const record of messages) {
                const offset = BigInt(record.offset);
                if (offset < at || offset >= end) continue;
                if (record.isControlRecord !== true) records.push(record);
                at = offset + 1n;
                progress = true;
              }
              if (at >= end) next.delete(partition);
              else next.set(partition, at);
            }
          }
        }
        if (progress) stalls = 0;
        else if (++stalls >= STALLS) {
          throw new Error(
            `no records came back from partitions ${
              [...next.keys()].join(", ")
            } at offsets ${[...next.values()].join(", ")}`,
          );
        } else await cluster.refreshMetadata();
      }
      return [...read].sort(([a], [b]) => a - b).flatMap((
        [partition, records],
      ) => records.map((record) => ({ partition, record })));
    } catch (error) {
      throw new BackendError(
        this.#link.backend,
        `Cannot read the dead letters of Kafka topic "${topic}": ${
          describeError(error)
        }, check that the brokers are reachable and the topic exists`,
        { cause: error },
      );
    }
  }

  /** kafkajs's cluster object on the backend's client, connected once. */
  #connect(): Promise<RawCluster> {
    if (this.#cluster !== undefined) return this.#cluster;
    const ready = (async () => {
      const kafka = this.#link.kafka as unknown as Record<symbol, unknown>;
      const symbol = Object.getOwnPropertySymbols(kafka).find((s) =>
        s.description === CREATE_CLUSTER
      );
      const create = symbol === undefined ? undefined : kafka[symbol];
      if (typeof create !== "function") {
        throw new Error(
          "this kafkajs version has no cluster factory to read a topic without a consumer group; use kafkajs 2.2",
        );
      }
      const cluster = (create as (o: object) => RawCluster)({
        allowAutoTopicCreation: false,
      });
      await cluster.connect();
      return cluster;
    })();
    this.#cluster = ready;
    ready.catch(() => {
      if (this.#cluster === ready) this.#cluster = undefined; // next time
    });
    return ready;
  }
}

/**
 * Throws a TypeError (RangeError for `limit`) for a filter or target that
 * is not what its type says: a JavaScript caller passing `refs: "0:1"`
 * would otherwise match refs by substring.
 */
function checkCriteria(
  operation: string,
  criteria: DeadLetterFilter & DeadLetterTarget,
): void {
  const fail = (what: string): never => {
    throw new TypeError(
      `Cannot ${operation} Kafka dead letters: ${what}, pass { handler?: string, type?: string, refs?: string[], ids?: string[], limit?: number, dryRun?: boolean }`,
    );
  };
  if (typeof criteria !== "object" || criteria === null) {
    return fail(
      `the ${
        operation === "count" || operation === "list" ? "filter" : "target"
      } is ${criteria === null ? "null" : typeof criteria}`,
    );
  }
  for (const key of ["handler", "type"] as const) {
    const value = criteria[key];
    if (value !== undefined && typeof value !== "string") {
      fail(`"${key}" is ${typeof value}, not a string`);
    }
  }
  for (const key of ["refs", "ids"] as const) {
    const value: unknown = criteria[key];
    if (
      value !== undefined &&
      !(Array.isArray(value) && value.every((v) => typeof v === "string"))
    ) fail(`"${key}" is not an array of strings`);
  }
  const { limit } = criteria;
  if (limit !== undefined && !(typeof limit === "number" && limit >= 0)) {
    throw new RangeError(
      `Cannot ${operation} Kafka dead letters: "limit" is ${
        String(limit)
      }, pass a number of 0 or more`,
    );
  }
}

/** A header's value as text (the last one when repeated). */
function header(
  headers: IHeaders | undefined,
  name: string,
): string | undefined {
  const value = headers?.[name];
  const one = Array.isArray(value) ? value[value.length - 1] : value;
  return one === undefined ? undefined : String(one);
}

function refOffset(ref: string): bigint {
  const offset = ref.slice(ref.indexOf(":") + 1);
  return /^\d+$/.test(offset) ? BigInt(offset) : 0n;
}
