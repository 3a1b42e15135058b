// Copyright 2026 the @eventbus/core authors. MIT license.
// `backend.deadLetters` of the SQS backend, over the dead-letter queues
// "<queue>-dlq" its consumers write (one per handler name, tagged
// "eventbus:dead-letters-of" with the name). SQS queues cannot be browsed:
// every call receives all messages of the dead-letter queues it reads,
// holding them invisible (visibility HOLD_SECONDS, extended every half
// period while the call runs), and makes those it leaves visible again at
// once (ChangeMessageVisibility 0) before it returns or yields. A ref is
// the dead letter's SQS message id (a UUID). A replay sends the event's body
// again to the failed handler's own queue (no other handler name reads it),
// and deletes the dead letter only once SQS accepted the copy.

import {
  ChangeMessageVisibilityBatchCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  ListQueuesCommand,
  ListQueueTagsCommand,
  type Message,
  ReceiveMessageCommand,
  SendMessageCommand,
  type SQSClient,
} from "@aws-sdk/client-sqs";
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
  Semaphore,
} from "@eventbus/core";
import {
  copyAttributes,
  DEAD_LETTERS_TAG,
  fifoId,
  isMissingQueue,
  MAX_ATTRIBUTES,
  TYPE_TAG,
} from "./_util.ts";

const BACKEND = "sqs";
/**
 * How long a call holds the messages it received invisible, in seconds;
 * extended every half period while it runs. A process that dies during a
 * call hides them at most this long.
 */
const HOLD_SECONDS = 30;
/**
 * The most messages one call holds: SQS's in-flight limit per queue
 * (120 000); receives past it fail with OverLimit.
 */
const MAX_HELD = 120_000;
/** How much of a foreign body the error of its dead letter quotes. */
const BODY_PREVIEW = 200;

/** What the dead letters need from their backend. */
export interface SqsDeadLettersContext {
  readonly client: SQSClient;
  /** The backend's queue prefix: dead-letter queues are listed under it. */
  readonly prefix: string;
  /** Whether the backend uses FIFO queues (it reads those only). */
  readonly fifo: boolean;
  /** The dead-letter queue name of a handler name. */
  deadLetterQueueName(handler: string): string;
  /** Whether the backend is closed. */
  closed(): boolean;
}

/** A dead-letter queue. */
interface Queue {
  readonly name: string;
  readonly url: string;
  /**
   * Its handler name, as the caller's filter or its tag says, else its name
   * without prefix and "-dlq" (a dead letter's own attribute comes first).
   */
  readonly handler: string;
}

/** One received dead letter, read. */
interface Entry {
  readonly letter: DeadLetter;
  readonly queue: Queue;
  readonly message: Message;
  /** When it was sent to the dead-letter queue, in ms since the epoch. */
  readonly sent: number;
  /** Its FIFO sequence number, "" on a standard queue. */
  readonly sequence: string;
  /** Whether it is one of our events that its handler can run again. */
  readonly replayable: boolean;
}

/** Which dead letters a call reads. */
type Selection = DeadLetterFilter & DeadLetterTarget;

/** The dead letters of one SQS backend. */
export class SqsDeadLetters implements DeadLetters {
  /**
   * Where a replay warns about a dead letter it leaves (not ours, or its
   * handler queue is gone): the logger of the backend's latest consume(),
   * else the console.
   */
  logger: Logger = console;
  /**
   * For tests only: awaited after SQS accepted a replayed copy and before
   * its dead letter is deleted (a test makes it throw here).
   */
  afterSend: ((letter: DeadLetter) => Promise<void>) | undefined;
  readonly #context: SqsDeadLettersContext;
  /** One call at a time: a call holds what another would list. */
  readonly #calls = new Semaphore(1);

  /**
   * Works on the dead letters of one backend.
   *
   * @param context The backend's client, prefix and queue names.
   */
  constructor(context: SqsDeadLettersContext) {
    this.#context = context;
  }

  async count(filter: DeadLetterFilter = {}): Promise<number> {
    return (await this.#snapshot(filter)).length;
  }

  async *list(filter: DeadLetterFilter = {}): AsyncIterable<DeadLetter> {
    const { limit = Infinity } = filter;
    const letters = await this.#snapshot(filter);
    if (!(limit > 0)) return;
    yield* letters.slice(0, limit);
  }

  async replay(target: DeadLetterTarget): Promise<{ replayed: number }> {
    return await this.#holding(target, async (selected, hold) => {
      if (target.dryRun === true) return { replayed: selected.length };
      /** Each dead-letter queue's handler queue URL; undefined: gone. */
      const handlerQueues = new Map<string, string | undefined>();
      let replayed = 0;
      for (const entry of selected) {
        const { letter, queue } = entry;
        if (!entry.replayable) {
          this.#warn(
            `Cannot replay dead letter ${letter.ref}: it is not an event of this bus (reason "${letter.reason}": ${letter.error}); it stays in the dead letters, purge it when done`,
            letter,
          );
          continue;
        }
        let url = handlerQueues.get(queue.name);
        if (!handlerQueues.has(queue.name)) {
          url = await this.#queueUrl(handlerQueueName(queue.name));
          handlerQueues.set(queue.name, url);
        }
        if (url === undefined || !(await this.#send(entry, url))) {
          handlerQueues.set(queue.name, undefined);
          this.#warn(
            `Cannot replay dead letter ${letter.ref} ("${letter.event.type}" id "${letter.event.id}") to handler "${letter.handler}": its SQS queue "${
              handlerQueueName(queue.name)
            }" does not exist; it stays in the dead letters, start a worker of the handler and replay again`,
            letter,
          );
          continue;
        }
        await this.afterSend?.(letter);
        await hold.delete(entry);
        replayed++;
      }
      return { replayed };
    });
  }

  async purge(target: DeadLetterTarget): Promise<{ purged: number }> {
    return await this.#holding(target, async (selected, hold) => {
      if (target.dryRun === true) return { purged: selected.length };
      for (const entry of selected) await hold.delete(entry);
      return { purged: selected.length };
    });
  }

  /** The selected dead letters, oldest first, all visible again. */
  #snapshot(filter: DeadLetterFilter): Promise<DeadLetter[]> {
    return this.#holding(
      filter,
      (selected) => Promise.resolve(selected.map((entry) => entry.letter)),
    );
  }

  /**
   * Holds every message of the dead-letter queues `selection` may match,
   * makes the others visible again, runs `work` on the selected ones
   * (oldest first), and finally makes visible what `work` did not delete.
   */
  async #holding<T>(
    selection: Selection,
    work: (selected: Entry[], hold: Hold) => Promise<T>,
  ): Promise<T> {
    this.#throwIfClosed();
    using _call = await this.#calls.acquire();
    this.#throwIfClosed();
    const hold = new Hold(this.#context.client, this.logger);
    try {
      for (const queue of await this.#queues(selection)) {
        await this.#receiveAll(queue, hold);
      }
      const selected: Entry[] = [];
      const others: Entry[] = [];
      for (const entry of hold.entries()) {
        (matchesDeadLetter(entry.letter, selection) ? selected : others)
          .push(entry);
      }
      await hold.release(others);
      return await work(selected.sort(oldestFirst), hold);
    } finally {
      await hold.release();
    }
  }

  /** Receives every message of a queue into `hold`. */
  async #receiveAll(queue: Queue, hold: Hold): Promise<void> {
    const { client } = this.#context;
    const visible = await this.#visible(queue);
    if (visible === undefined) return; // deleted meanwhile
    let received = 0;
    let longPolled = false;
    // Bounded: each round holds new messages (those held stay invisible),
    // up to MAX_HELD, or ends.
    while (hold.size < MAX_HELD) {
      let messages: Message[];
      try {
        const answer = await client.send(
          new ReceiveMessageCommand({
            QueueUrl: queue.url,
            MaxNumberOfMessages: 10,
            VisibilityTimeout: HOLD_SECONDS,
            // A short poll asks only some of SQS's servers: when it comes
            // up short of the count, one long poll asks all of them.
            WaitTimeSeconds: longPolled ? 1 : 0,
            MessageAttributeNames: ["All"],
            MessageSystemAttributeNames: [
              "SentTimestamp",
              "SequenceNumber",
              "ApproximateReceiveCount",
            ],
          }),
        );
        messages = answer.Messages ?? [];
      } catch (error) {
        if (isMissingQueue(error)) return;
        if ((error as { name?: unknown } | null)?.name === "OverLimit") break;
        throw this.#failed(`read SQS queue "${queue.name}"`, error);
      }
      if (messages.length === 0) {
        if (longPolled || received >= visible) return;
        longPolled = true;
        continue;
      }
      for (const message of messages) {
        if (hold.add(read(queue, message))) received++;
      }
    }
    this.#warn(
      `Read only the first ${hold.size} dead letters: SQS lets one reader hold at most ${MAX_HELD} messages in flight; purge or replay these to reach the others`,
    );
  }

  /** The queue's ApproximateNumberOfMessages; undefined when it is gone. */
  async #visible(queue: Queue): Promise<number | undefined> {
    try {
      const { Attributes } = await this.#context.client.send(
        new GetQueueAttributesCommand({
          QueueUrl: queue.url,
          AttributeNames: ["ApproximateNumberOfMessages"],
        }),
      );
      const count = Number(Attributes?.ApproximateNumberOfMessages);
      return Number.isSafeInteger(count) ? count : 0;
    } catch (error) {
      if (isMissingQueue(error)) return undefined;
      throw this.#failed(`read SQS queue "${queue.name}"`, error);
    }
  }

  /**
   * The dead-letter queues a selection may match: its handler's, else every
   * one under the prefix.
   */
  async #queues(selection: Selection): Promise<Queue[]> {
    const { handler } = selection;
    if (handler !== undefined) {
      const name = this.#context.deadLetterQueueName(handler);
      const url = await this.#queueUrl(name);
      return url === undefined ? [] : [{ name, url, handler }];
    }
    const queues: Queue[] = [];
    for (const url of await this.#listQueues()) {
      const name = url.slice(url.lastIndexOf("/") + 1);
      if (!this.#isDeadLetterQueueName(name)) continue;
      const queue = await this.#tagged(name, url);
      if (queue.url !== "") queues.push(queue);
    }
    return queues;
  }

  /** Reads a queue's tags: a handler queue (named "...-dlq") gives url "". */
  async #tagged(name: string, url: string): Promise<Queue> {
    let tags: Record<string, string>;
    try {
      tags = (await this.#context.client.send(
        new ListQueueTagsCommand({ QueueUrl: url }),
      )).Tags ?? {};
    } catch (error) {
      if (isMissingQueue(error)) return { name, url: "", handler: "" };
      throw this.#failed(`read the tags of SQS queue "${name}"`, error);
    }
    if (tags[TYPE_TAG] !== undefined) return { name, url: "", handler: "" };
    const handler = tags[DEAD_LETTERS_TAG] ??
      handlerQueueName(name).slice(this.#context.prefix.length)
        .replace(/\.fifo$/, "");
    return { name, url, handler };
  }

  #isDeadLetterQueueName(name: string): boolean {
    const { prefix, fifo } = this.#context;
    return name.startsWith(prefix) &&
      name.endsWith(fifo ? "-dlq.fifo" : "-dlq");
  }

  async #listQueues(): Promise<string[]> {
    const urls: string[] = [];
    let token: string | undefined;
    try {
      do {
        const page = await this.#context.client.send(
          new ListQueuesCommand({
            QueueNamePrefix: this.#context.prefix,
            MaxResults: 1000,
            NextToken: token,
          }),
        );
        urls.push(...(page.QueueUrls ?? []));
        token = page.NextToken;
      } while (token !== undefined);
    } catch (error) {
      throw this.#failed(
        `list the SQS queues under "${this.#context.prefix}"`,
        error,
      );
    }
    return urls;
  }

  async #queueUrl(name: string): Promise<string | undefined> {
    try {
      return (await this.#context.client.send(
        new GetQueueUrlCommand({ QueueName: name }),
      )).QueueUrl;
    } catch (error) {
      if (isMissingQueue(error)) return undefined;
      throw this.#failed(`look up SQS queue "${name}"`, error);
    }
  }

  /**
   * Sends a dead letter's event to its handler's queue: the body as it was
   * published, its message attributes without ours (so it starts again at
   * attempt 1). On a FIFO queue its de-duplication id is the event id with
   * ":replay:" and the dead letter's message id: not the event id, which
   * SQS may still remember (five minutes), and the same for every replay
   * of this dead letter, so one repeated after a crash is stored once.
   * Resolves false when the queue does not exist.
   */
  async #send(entry: Entry, url: string): Promise<boolean> {
    const { letter, message } = entry;
    const { event } = letter;
    const fifo = url.endsWith(".fifo")
      ? {
        MessageGroupId: await fifoId(event.metadata.partitionkey ?? event.type),
        MessageDeduplicationId: await fifoId(
          `${event.id}:replay:${message.MessageId}`,
        ),
      }
      : {};
    try {
      await this.#context.client.send(
        new SendMessageCommand({
          QueueUrl: url,
          MessageBody: message.Body ?? "",
          MessageAttributes: copyAttributes(
            message.MessageAttributes,
            MAX_ATTRIBUTES,
          ),
          ...fifo,
        }),
      );
      return true;
    } catch (error) {
      if (isMissingQueue(error)) return false;
      throw this.#failed(
        `replay dead letter ${letter.ref} ("${event.type}" id "${event.id}") to handler "${letter.handler}"`,
        error,
      );
    }
  }

  #warn(message: string, letter?: DeadLetter): void {
    this.logger.warn(
      message,
      letter === undefined
        ? {}
        : { event: letter.event.id, handler: letter.handler, ref: letter.ref },
    );
  }

  #failed(what: string, error: unknown): Error {
    if (this.#context.closed()) return new EventBusClosedError();
    return new BackendError(
      BACKEND,
      `Cannot ${what}: ${
        describeError(error)
      }, check the endpoint, region and permissions`,
      { cause: error },
    );
  }

  #throwIfClosed(): void {
    if (this.#context.closed()) throw new EventBusClosedError();
  }
}

/**
 * The messages one call holds invisible: extended every half period,
 * deleted, or made visible again at once.
 */
class Hold {
  readonly #client: SQSClient;
  readonly #logger: Logger;
  /** By ref, in the order received. */
  readonly #entries = new Map<string, Entry>();
  readonly #timer: ReturnType<typeof setInterval>;

  constructor(client: SQSClient, logger: Logger) {
    this.#client = client;
    this.#logger = logger;
    this.#timer = setInterval(() => {
      this.#change([...this.#entries.values()], HOLD_SECONDS).catch(() => {});
    }, HOLD_SECONDS * 500);
  }

  get size(): number {
    return this.#entries.size;
  }

  entries(): Entry[] {
    return [...this.#entries.values()];
  }

  /**
   * Holds a received message; false when it was held already (received
   * again: its visibility lapsed), whose receipt handle it then updates.
   */
  add(entry: Entry): boolean {
    const held = this.#entries.has(entry.letter.ref);
    this.#entries.set(entry.letter.ref, entry);
    return !held;
  }

  /** Deletes a held message for good. */
  async delete(entry: Entry): Promise<void> {
    const { letter, queue, message } = entry;
    try {
      await this.#client.send(
        new DeleteMessageCommand({
          QueueUrl: queue.url,
          ReceiptHandle: message.ReceiptHandle,
        }),
      );
    } catch (error) {
      throw new BackendError(
        BACKEND,
        `Cannot delete dead letter ${letter.ref} from SQS queue "${queue.name}": ${
          describeError(error)
        }; it stays in the dead letters, try again`,
        { cause: error },
      );
    }
    this.#entries.delete(letter.ref);
  }

  /**
   * Makes held messages visible again at once (all of them when none are
   * given, and stops extending), best effort: one that stays hidden
   * reappears after its visibility timeout.
   */
  async release(entries?: readonly Entry[]): Promise<void> {
    if (entries === undefined) clearInterval(this.#timer);
    const released = entries ?? [...this.#entries.values()];
    for (const entry of released) this.#entries.delete(entry.letter.ref);
    try {
      await this.#change(released, 0);
    } catch (error) {
      this.#logger.warn(
        `Cannot make dead letters visible again: ${
          describeError(error)
        }; they reappear within ${HOLD_SECONDS} s`,
        { error },
      );
    }
  }

  /** Sets the visibility of messages, ten per request, queue by queue. */
  async #change(entries: readonly Entry[], seconds: number): Promise<void> {
    const byQueue = new Map<string, Entry[]>();
    for (const entry of entries) {
      const list = byQueue.get(entry.queue.url);
      if (list === undefined) byQueue.set(entry.queue.url, [entry]);
      else list.push(entry);
    }
    for (const [url, list] of byQueue) {
      for (let i = 0; i < list.length; i += 10) {
        await this.#client.send(
          new ChangeMessageVisibilityBatchCommand({
            QueueUrl: url,
            Entries: list.slice(i, i + 10).map((entry, n) => ({
              Id: String(n),
              ReceiptHandle: entry.message.ReceiptHandle,
              VisibilityTimeout: seconds,
            })),
          }),
        );
      }
    }
  }
}

/** Reads one received dead letter; never throws for what it holds. */
function read(queue: Queue, message: Message): Entry {
  const attribute = (name: string): string | undefined =>
    message.MessageAttributes?.[name]?.StringValue;
  const body = message.Body ?? "";
  const sentAt = Number(message.Attributes?.SentTimestamp);
  const sent = Number.isFinite(sentAt) ? sentAt : 0;
  const time = new Date(sent).toISOString();
  let reason = attribute("eventbus-reason");
  let error = attribute("eventbus-error") ?? "";
  const attempts = Number(attribute("eventbus-attempts"));
  let event: Event;
  let ours = true;
  try {
    event = decodeEvent(body);
  } catch (decodeError) {
    // Not one of our events: listed with a placeholder event whose data is
    // the body as it is, and the body quoted in the error.
    ours = false;
    event = {
      specversion: "1.0",
      id: message.MessageId ?? "",
      type: "",
      source: "",
      time,
      data: foreignBody(body),
      metadata: {},
    };
    error = `${error || describeError(decodeError)}; the message body: ${
      body.length > BODY_PREVIEW ? `${body.slice(0, BODY_PREVIEW)}...` : body
    }`;
    reason = "invalid-event";
  }
  if (reason === undefined) {
    // Moved here by the redrive policy: received too often without a result.
    reason = "crashed";
    error ||= `moved to the dead-letter queue by the SQS redrive policy after ${
      message.Attributes?.ApproximateReceiveCount ?? "?"
    } receives without a result (a consumer died between receive and handler)`;
  }
  return {
    letter: {
      ref: message.MessageId ?? "",
      event,
      handler: attribute("eventbus-handler") ?? queue.handler,
      attempts: Number.isSafeInteger(attempts) ? attempts : 0,
      reason,
      error,
      time,
    },
    queue,
    message,
    sent,
    sequence: message.Attributes?.SequenceNumber ?? "",
    replayable: ours && reason !== "invalid-event",
  };
}

/** Oldest first: by send time, then FIFO sequence, then message id. */
function oldestFirst(a: Entry, b: Entry): number {
  if (a.sent !== b.sent) return a.sent - b.sent;
  if (a.sequence.length !== b.sequence.length) {
    return a.sequence.length - b.sequence.length;
  }
  if (a.sequence !== b.sequence) return a.sequence < b.sequence ? -1 : 1;
  const [x, y] = [a.message.MessageId ?? "", b.message.MessageId ?? ""];
  return x === y ? 0 : x < y ? -1 : 1;
}

/** The handler queue of a dead-letter queue: its name without "-dlq". */
function handlerQueueName(deadLetterQueue: string): string {
  return deadLetterQueue.endsWith(".fifo")
    ? `${deadLetterQueue.slice(0, -"-dlq.fifo".length)}.fifo`
    : deadLetterQueue.slice(0, -"-dlq".length);
}

/** A body that is not an event: its JSON value, else its text. */
function foreignBody(body: string): unknown {
  try {
    return JSON.parse(body);
  } catch {
    return body;
  }
}
