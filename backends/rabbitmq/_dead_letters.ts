// Copyright 2026 the @eventbus/core authors. MIT license.
// `backend.deadLetters` of the RabbitMQ backend, over the durable classic
// queue "<exchange>.dead-letter" that the backend's dead-letter exchange
// fills. A queue cannot be browsed, so each call reads it with `basic.get`
// (manual acknowledgement) on a channel of its own, as many messages as the
// queue held when the call began, acknowledges the ones it removes, and
// closes the channel: RabbitMQ puts every message it did not acknowledge
// back in its original place (a classic queue does; see "Negative
// Acknowledgements" in the RabbitMQ docs), so nothing is lost or reordered,
// and a process that dies mid-call leaves them all there. Meanwhile they
// are invisible to other readers, so calls of one backend run one at a time.
//
// A replay publishes the event's bytes, as emitted, straight to the failed
// handler's own queue through the default exchange (no other handler name
// gets it), with the same message id; the dead letter is acknowledged only
// after the publisher confirm of that copy.

import type { Buffer } from "node:buffer";
import {
  AMQPChannelError,
  type Channel,
  type Connection,
  type Envelope,
  type SyncMessage,
} from "rabbitmq-client";
import {
  BackendError,
  type DeadLetter,
  type DeadLetterFilter,
  type DeadLetterReason,
  type DeadLetters,
  type DeadLetterTarget,
  decodeEvent,
  describeError,
  type Event,
  EventBusClosedError,
  type Logger,
  matchesDeadLetter,
  Semaphore,
} from "@eventbus/core";
import { fnv1a, withTimeout } from "@eventbus/core/backend-kit";
import { BACKEND, bufferOf, CONTENT_TYPE } from "./_wire.ts";

/** The headers a dead letter carries (written by `deadLetterHeaders`). */
const HANDLER = "x-eventbus-handler";
const ATTEMPTS = "x-eventbus-attempts";
const REASON = "x-eventbus-reason";
const ERROR = "x-eventbus-error";
const QUEUE = "x-eventbus-queue";
const REF = "x-eventbus-ref";
const TIME = "x-eventbus-time";
/** The header of a replayed copy that names the dead letter it came from. */
const REPLAY_OF = "x-eventbus-replay-of";
/** How much of a foreign body the error text shows. */
const BODY_PREVIEW = 200;

/** What a dead letter says about the delivery that was given up. */
export interface DeadLetterFacts {
  /** The handler name. */
  readonly handler: string;
  /** The handler's queue, where a replay goes. */
  readonly queue: string;
  /** Tries made. */
  readonly attempts: number;
  /** Why it was given up. */
  readonly reason: DeadLetterReason;
  /** The last try's error. */
  readonly error: unknown;
}

/**
 * The headers of a dead letter: who gave it up, why, where it came from, a
 * ref of its own (random, so that two dead letters of one event differ) and
 * when.
 */
export function deadLetterHeaders(
  facts: DeadLetterFacts,
): Record<string, unknown> {
  const random = new Uint8Array(8);
  crypto.getRandomValues(random);
  return {
    [HANDLER]: facts.handler,
    [ATTEMPTS]: facts.attempts,
    [REASON]: facts.reason,
    [ERROR]: describeError(facts.error),
    [QUEUE]: facts.queue,
    [REF]: Array.from(random, (b) => b.toString(16).padStart(2, "0")).join(""),
    [TIME]: new Date().toISOString(),
  };
}

/** What the dead letters need of their backend. */
export interface DeadLetterLink {
  readonly connection: Connection;
  /** The dead-letter queue (named as its exchange). */
  readonly queue: string;
  /** The events exchange: handler queues are `<exchange>.<name>`. */
  readonly exchange: string;
  /** How long a replayed copy may wait for its confirm. */
  readonly publishTimeout: number;
  /** Publishes (confirmed); resolves whether RabbitMQ returned it. */
  send(envelope: Envelope, body: Buffer): Promise<boolean>;
  /** Where warnings go. */
  logger(): Logger;
  /** Whether the backend is closed. */
  closed(): boolean;
}

/** One dead letter as read, with what a replay needs. */
interface Entry {
  readonly letter: DeadLetter;
  readonly deliveryTag: number;
  /** The handler's queue; "" when not known. */
  readonly queue: string;
  /** The event's bytes; undefined when they are not an event. */
  readonly body: Buffer | undefined;
}

/** Which dead letters a call reads. */
type Selection = DeadLetterFilter & DeadLetterTarget;

/** The dead letters of one RabbitMQ backend. */
export class RabbitMqDeadLetters implements DeadLetters {
  /**
   * For tests only: awaited after a replayed copy was confirmed and before
   * its dead letter is acknowledged (a test stops the process here).
   */
  afterPublish: ((ref: string) => Promise<void>) | undefined;
  readonly #link: DeadLetterLink;
  /** One call at a time: a reading call hides the queue from the next. */
  readonly #turn = new Semaphore(1);

  /**
   * Works on the dead letters of the backend that owns `link`.
   *
   * @param link The backend's connection, names and publisher.
   */
  constructor(link: DeadLetterLink) {
    this.#link = link;
  }

  async count(filter: DeadLetterFilter = {}): Promise<number> {
    this.#throwIfClosed();
    if (filter.handler === undefined && filter.type === undefined) {
      using _turn = await this.#turn.acquire();
      return await this.#messageCount();
    }
    return await this.#read(filter, (entries) => entries.length);
  }

  async *list(filter: DeadLetterFilter = {}): AsyncIterable<DeadLetter> {
    this.#throwIfClosed();
    const { limit = Infinity } = filter;
    if (!(limit > 0)) return;
    // Read, then give the queue back before the caller sees any: it may
    // take its time between items.
    const letters = await this.#read(
      filter,
      (entries) => entries.map((entry) => entry.letter),
      limit,
    );
    yield* letters;
  }

  async replay(target: DeadLetterTarget): Promise<{ replayed: number }> {
    this.#throwIfClosed();
    if (target.dryRun === true) {
      return { replayed: await this.#read(target, (e) => e.length) };
    }
    return await this.#read(target, async (entries, channel) => {
      /** Whether each handler queue exists: a copy for none reaches nobody. */
      const queues = new Map<string, boolean>();
      let replayed = 0;
      for (const entry of entries) {
        if (await this.#replayOne(entry, channel, queues)) replayed++;
      }
      return { replayed };
    });
  }

  async purge(target: DeadLetterTarget): Promise<{ purged: number }> {
    this.#throwIfClosed();
    const dryRun = target.dryRun === true;
    return await this.#read(target, (entries, channel) => {
      if (!dryRun) {
        for (const entry of entries) this.#remove(channel, entry);
      }
      return { purged: entries.length };
    });
  }

  /**
   * Hands one dead letter's event to its handler's queue, then removes it;
   * false (and a warning) when it stays.
   */
  async #replayOne(
    entry: Entry,
    channel: Channel,
    queues: Map<string, boolean>,
  ): Promise<boolean> {
    const { letter, body, queue } = entry;
    const what =
      `dead letter ${letter.ref} ("${letter.event.type}" id "${letter.event.id}") of handler "${letter.handler}"`;
    const logger = this.#link.logger();
    if (body === undefined) {
      logger.warn(
        `Cannot replay ${what}: it is not an event (reason "${letter.reason}"), it stays, purge it once read`,
        { handler: letter.handler, ref: letter.ref },
      );
      return false;
    }
    let exists = queues.get(queue);
    if (exists === undefined) {
      exists = queue !== "" && await this.#queueExists(queue);
      queues.set(queue, exists);
    }
    const missing = () =>
      logger.warn(
        `Cannot replay ${what}: its queue "${queue}" does not exist (no worker of the handler declared it, or it was deleted), it stays in the dead letters, replay it once a worker of "${letter.handler}" runs`,
        { handler: letter.handler, ref: letter.ref, queue },
      );
    if (!exists) {
      missing();
      return false;
    }
    const envelope: Envelope = {
      exchange: "",
      routingKey: queue,
      mandatory: true,
      durable: true,
      contentType: CONTENT_TYPE,
      messageId: letter.event.id,
      type: letter.event.type,
      headers: { [REPLAY_OF]: letter.ref },
    };
    let returned: boolean;
    try {
      returned = await withTimeout(
        this.#link.send(envelope, body),
        this.#link.publishTimeout,
      );
    } catch (error) {
      throw new BackendError(
        BACKEND,
        `Cannot replay ${what} to queue "${queue}": ${
          describeError(error)
        }, it stays in the dead letters, check the connection and replay again`,
        { cause: error },
      );
    }
    if (returned) {
      queues.set(queue, false);
      missing();
      return false;
    }
    await this.afterPublish?.(letter.ref);
    this.#remove(channel, entry);
    return true;
  }

  /** Acknowledges a dead letter: the queue drops it. */
  #remove(channel: Channel, entry: Entry): void {
    try {
      channel.basicAck({ deliveryTag: entry.deliveryTag });
    } catch (error) {
      throw lostChannel(error);
    }
  }

  /**
   * Reads the dead letters a selection matches, oldest first (at most
   * `limit`), hands them to `work` with the channel they were read on, then
   * gives back what `work` did not acknowledge.
   */
  async #read<T>(
    selection: Selection,
    work: (entries: Entry[], channel: Channel) => T | Promise<T>,
    limit = Infinity,
  ): Promise<T> {
    using _turn = await this.#turn.acquire();
    this.#throwIfClosed();
    const { connection, queue } = this.#link;
    let channel: Channel;
    try {
      channel = await connection.acquire();
    } catch (error) {
      throw this.#failure("read", error);
    }
    try {
      const entries: Entry[] = [];
      const seen = new Map<string, number>();
      let total = Infinity;
      // Bounded: as many as the queue held at the first get, so dead
      // letters written meanwhile (a replay failing again) are not met.
      for (let got = 0; got < total && entries.length < limit; got++) {
        let message: SyncMessage | undefined;
        try {
          message = await channel.basicGet({ queue });
        } catch (error) {
          if (isNotFound(error)) break; // no dead-letter queue: none
          throw this.#failure("read", error);
        }
        if (message === undefined) break;
        if (total === Infinity) total = message.messageCount + 1;
        const entry = this.#entry(message, seen);
        if (matchesDeadLetter(entry.letter, selection)) entries.push(entry);
      }
      const result = await work(entries, channel);
      // A round trip on the channel: the broker handled every ack before
      // it answers, so what was removed is gone when this call resolves.
      if (channel.active) {
        try {
          await channel.queueDeclare({ queue, passive: true });
        } catch (error) {
          if (!isNotFound(error)) throw lostChannel(error);
        }
      }
      return result;
    } finally {
      // Closing the channel puts back every message not acknowledged.
      await channel.close().catch(() => {});
    }
  }

  /** Reads one message of the queue into a dead letter. */
  #entry(message: SyncMessage, seen: Map<string, number>): Entry {
    const headers = message.headers ?? {};
    const death = firstDeath(headers["x-death"]);
    const bytes = bufferOf(message.body);
    let body: Buffer | undefined = bytes;
    let event: Event;
    let reason = text(headers[REASON]) || text(death?.reason);
    let error = text(headers[ERROR]);
    try {
      event = decodeEvent(bytes);
    } catch (decodeError) {
      event = placeholder(message, bytes);
      body = undefined;
      reason = "invalid-event";
      const preview = new TextDecoder().decode(
        bytes.subarray(0, BODY_PREVIEW),
      );
      error = `${error || describeError(decodeError)} (body, ${
        message.contentType ?? "no content type"
      }, ${bytes.length} bytes: ${JSON.stringify(preview)}${
        bytes.length > BODY_PREVIEW ? "..." : ""
      })`;
    }
    const queue = text(headers[QUEUE]) || text(death?.queue);
    const prefix = `${this.#link.exchange}.`;
    const handler = text(headers[HANDLER]) ||
      (queue.startsWith(prefix) ? queue.slice(prefix.length) : queue);
    const attempts = Number(headers[ATTEMPTS] ?? headers["x-delivery-count"]);
    return {
      letter: {
        ref: text(headers[REF]) || derivedRef(message, bytes, seen),
        event,
        handler,
        attempts: Number.isSafeInteger(attempts) ? attempts : 0,
        reason: reason || "invalid-event",
        error,
        time: timeOf(headers[TIME], death?.time, message.timestamp),
      },
      deliveryTag: message.deliveryTag,
      queue: queue || (handler === "" ? "" : `${prefix}${handler}`),
      body,
    };
  }

  /** The queue's message count; 0 when it does not exist. */
  async #messageCount(): Promise<number> {
    const { connection, queue } = this.#link;
    const channel = await connection.acquire().catch((error) => {
      throw this.#failure("count", error);
    });
    try {
      const { messageCount } = await channel.queueDeclare({
        queue,
        passive: true,
      });
      return messageCount;
    } catch (error) {
      if (isNotFound(error)) return 0;
      throw this.#failure("count", error);
    } finally {
      await channel.close().catch(() => {});
    }
  }

  /** Whether `queue` exists, asked on a channel of its own (404 closes it). */
  async #queueExists(queue: string): Promise<boolean> {
    const channel = await this.#link.connection.acquire();
    try {
      await channel.queueDeclare({ queue, passive: true });
      return true;
    } catch (error) {
      if (isNotFound(error)) return false;
      throw this.#failure("replay", error);
    } finally {
      await channel.close().catch(() => {});
    }
  }

  #failure(action: string, error: unknown): BackendError {
    return new BackendError(
      BACKEND,
      `Cannot ${action} the dead letters of queue "${this.#link.queue}": ${
        describeError(error)
      }, check the connection to RabbitMQ`,
      { cause: error },
    );
  }

  #throwIfClosed(): void {
    if (this.#link.closed()) throw new EventBusClosedError();
  }
}

function isNotFound(error: unknown): boolean {
  return error instanceof AMQPChannelError && error.code === "NOT_FOUND";
}

function lostChannel(error: unknown): BackendError {
  return new BackendError(
    BACKEND,
    `Cannot remove dead letters: the channel they were read on closed (${
      describeError(error)
    }), RabbitMQ put them back, so what was replayed meanwhile may be replayed again`,
    { cause: error },
  );
}

/** A header value as text ("" when absent). */
function text(value: unknown): string {
  if (value === undefined || value === null) return "";
  if (value instanceof Uint8Array) return new TextDecoder().decode(value);
  return String(value);
}

/** The most recent `x-death` entry RabbitMQ added, if any. */
function firstDeath(
  value: unknown,
): { reason?: unknown; queue?: unknown; time?: unknown } | undefined {
  if (!Array.isArray(value)) return undefined;
  const first = value[0];
  return typeof first === "object" && first !== null ? first : undefined;
}

/**
 * When it was dead-lettered: our header, else the broker's `x-death` time,
 * else the message's AMQP timestamp (seconds), else the epoch (unknown).
 */
function timeOf(header: unknown, death: unknown, timestamp: unknown): string {
  const ours = Date.parse(text(header));
  if (!Number.isNaN(ours)) return new Date(ours).toISOString();
  for (const seconds of [death, timestamp]) {
    if (seconds instanceof Date) return seconds.toISOString();
    const n = Number(seconds);
    if (seconds !== undefined && Number.isFinite(n) && n > 0) {
      return new Date(n * 1000).toISOString();
    }
  }
  return new Date(0).toISOString();
}

/**
 * The ref of a dead letter written without one (by an older version, by
 * RabbitMQ itself, or by another program): a hash of what it holds, with
 * the number of identical ones before it.
 */
function derivedRef(
  message: SyncMessage,
  bytes: Buffer,
  seen: Map<string, number>,
): string {
  const hash = fnv1a(
    `${message.messageId ?? ""}\n${
      JSON.stringify(message.headers ?? {}, (_, v) =>
        typeof v === "bigint" ? String(v) : v)
    }\n${bytes.toString("base64")}`,
  );
  const n = seen.get(hash) ?? 0;
  seen.set(hash, n + 1);
  return n === 0 ? `h${hash}` : `h${hash}-${n}`;
}

/**
 * The event of a message that is not one: its message id and type when it
 * has them, and its body as data (its JSON value, else its text).
 */
function placeholder(message: SyncMessage, bytes: Buffer): Event {
  const raw = new TextDecoder().decode(bytes);
  let data: unknown = raw;
  try {
    data = JSON.parse(raw);
  } catch {
    // not JSON: its text
  }
  return {
    specversion: "1.0",
    id: message.messageId ?? "",
    type: message.type ?? "",
    source: "",
    time: "",
    data,
    metadata: {},
  };
}
