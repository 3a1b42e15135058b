// Copyright 2026 the @eventbus/core authors. MIT license.
// `backend.deadLetters` of the JetStream backend, over the stream
// "<stream>_DLQ" that `_dead_letters.ts` writes. Reads select by subject
// ("<stream>_DLQ.<durable>.<type>") with one message get each (next by
// subject), oldest first, up to the stream's last sequence when the call
// began, so dead letters written meanwhile (a replay failing again) are
// never met twice. A replay publishes the event's bytes again to the
// subject it was consumed from with the header EventBus-Target-Handler (consumers of
// other names acknowledge it unrun, `_consumer.ts`) and a message id of its
// own, then deletes the dead letter once the stream acknowledged the copy.

import type { JetStreamManager, StoredMsg } from "@nats-io/jetstream";
import {
  headers as createHeaders,
  type MsgHdrs,
  type MsgHdrsImpl,
} from "@nats-io/nats-core";
import {
  type DeadLetter,
  type DeadLetterFilter,
  type DeadLetters,
  type DeadLetterTarget,
  decodeEvent,
  describeError,
  type Event,
  EventBusClosedError,
  isValidEventType,
} from "@eventbus/core";
import type { Link } from "./_link.ts";
import {
  CONSUMER_NOT_FOUND,
  durableName,
  isApiError,
  MSG_ID,
  STREAM_NOT_FOUND,
  TARGET_HANDLER,
} from "./_util.ts";

/**
 * The server's answers to a delete of a sequence it does not hold: 10043
 * (past the last), or 10057 (delete failed) saying "no message found".
 */
const SEQUENCE_NOT_FOUND = 10043;
const DELETE_FAILED = 10057;
/** The header that names the dead letter a replayed copy came from. */
const REPLAY_OF = "EventBus-Replay-Of";

/** One dead letter as stored, read into a {@linkcode DeadLetter}. */
interface Entry {
  readonly letter: DeadLetter;
  /** Its sequence in the dead-letter stream. */
  readonly seq: number;
  /** The durable of the handler (the subject's second token). */
  readonly durable: string;
  /** The handler name as the consumer compares it (the header's value). */
  readonly target: string;
  /**
   * The event's bytes, as emitted; undefined when they are not an event or
   * no longer readable (a reference whose original aged out).
   */
  readonly body: Uint8Array | undefined;
  /** The event's headers (CloudEvents attributes), without ours. */
  readonly headers: MsgHdrs;
  /** The subject it was consumed from, or "" when not said. */
  readonly subject: string;
}

/** What a replay publishes, where. */
interface Copy {
  readonly subject: string;
  readonly body: Uint8Array;
  readonly headers: MsgHdrs;
}

/** Which dead letters a call reads. */
interface Selection {
  readonly handler?: string | undefined;
  readonly type?: string | undefined;
  readonly refs?: readonly string[] | undefined;
  readonly ids?: readonly string[] | undefined;
}

/** The dead letters of one JetStream backend. */
export class JetStreamDeadLetters implements DeadLetters {
  /**
   * For tests only: awaited after a replayed copy was acknowledged and
   * before its dead letter is removed (a test stops the process here).
   */
  afterPublish: ((seq: number) => Promise<void>) | undefined;
  readonly #link: Link;
  readonly #closed: () => boolean;

  /**
   * Works on the dead letters of the backend that owns `link`.
   *
   * @param link The backend's link to JetStream.
   * @param closed Whether the backend is closed.
   */
  constructor(link: Link, closed: () => boolean) {
    this.#link = link;
    this.#closed = closed;
  }

  async count(filter: DeadLetterFilter = {}): Promise<number> {
    this.#throwIfClosed();
    const subject = this.#subject(filter);
    if (subject === undefined) return 0;
    const { deadLetterStream } = this.#link.options;
    const all = subject === `${deadLetterStream}.>`;
    const info = await this.#request(
      (jsm) =>
        jsm.streams.info(
          deadLetterStream,
          all ? undefined : { subjects_filter: subject },
        ),
      "count the dead letters",
    );
    if (info === undefined) return 0;
    if (all) return info.state.messages;
    let total = 0;
    for (const n of Object.values(info.state.subjects ?? {})) total += n;
    return total;
  }

  async *list(filter: DeadLetterFilter = {}): AsyncIterable<DeadLetter> {
    this.#throwIfClosed();
    const { limit = Infinity } = filter;
    let given = 0;
    if (!(limit > 0)) return;
    for await (const entry of this.#select(filter)) {
      yield entry.letter;
      if (++given >= limit) return;
    }
  }

  async replay(target: DeadLetterTarget): Promise<{ replayed: number }> {
    this.#throwIfClosed();
    if (target.dryRun === true) {
      let selected = 0;
      for await (const _ of this.#select(target)) selected++;
      return { replayed: selected };
    }
    /** Whether each durable still exists: a copy for a gone name reaches nobody. */
    const consumers = new Map<string, boolean>();
    let replayed = 0;
    for await (const entry of this.#select(target)) {
      const copy = this.#copy(entry);
      if (copy === undefined) continue; // stays: nothing to hand again
      let exists = consumers.get(entry.durable);
      if (exists === undefined) {
        exists = await this.#consumerExists(entry.durable);
        consumers.set(entry.durable, exists);
      }
      if (!exists) continue;
      await this.#replay(entry, copy);
      replayed++;
    }
    return { replayed };
  }

  async purge(target: DeadLetterTarget): Promise<{ purged: number }> {
    this.#throwIfClosed();
    const dryRun = target.dryRun === true;
    if (target.refs === undefined && target.ids === undefined) {
      if (dryRun) return { purged: await this.count(target) };
      return { purged: await this.#purgeSubject(target) };
    }
    let purged = 0;
    for await (const entry of this.#select(target)) {
      if (dryRun || await this.#delete(entry.seq)) purged++;
    }
    return { purged };
  }

  /**
   * The dead letters a filter or target selects, oldest first: by sequence
   * when refs are given, else by subject up to the last sequence now.
   */
  async *#select(selection: Selection): AsyncIterable<Entry> {
    const subject = this.#subject(selection);
    if (subject === undefined) return;
    const { refs, ids } = selection;
    const matches = (entry: Entry): boolean =>
      (refs === undefined || refs.includes(entry.letter.ref)) &&
      (ids === undefined || ids.includes(entry.letter.event?.id));
    if (refs !== undefined) {
      const seqs = [...new Set(refs)].map(Number)
        .filter((seq) => Number.isSafeInteger(seq) && seq > 0)
        .sort((a, b) => a - b);
      for (const seq of seqs) {
        const stored = await this.#get({ seq }, "read a dead letter");
        if (stored === null || !subjectMatches(stored.subject, subject)) {
          continue;
        }
        const entry = await this.#entry(stored, selection.handler);
        if (matches(entry)) yield entry;
      }
      return;
    }
    const info = await this.#request(
      (jsm) => jsm.streams.info(this.#link.options.deadLetterStream),
      "read the dead letters",
    );
    if (info === undefined) return;
    const last = info.state.last_seq;
    // Bounded: each round moves past one stored sequence, at most `last`.
    for (let seq = info.state.first_seq; seq <= last;) {
      const stored = await this.#get(
        { seq, next_by_subj: subject },
        "read the dead letters",
      );
      if (stored === null || stored.seq > last) return;
      seq = stored.seq + 1;
      const entry = await this.#entry(stored, selection.handler);
      if (matches(entry)) yield entry;
    }
  }

  /** Reads one stored dead letter; never throws for what it holds. */
  async #entry(stored: StoredMsg, handler: string | undefined): Promise<Entry> {
    const header = (name: string): string => stored.header?.get(name) ?? "";
    const tokens = stored.subject.split(".");
    const durable = tokens[1] ?? "";
    const named = header("EventBus-Handler");
    const attempts = Number(header("EventBus-Attempts"));
    let reason = header("EventBus-Reason");
    let error = header("EventBus-Error");
    let body: Uint8Array | undefined = stored.data;
    if (header("EventBus-Body") === "reference") {
      body = await this.#original(
        header("EventBus-Original-Stream"),
        Number(header("EventBus-Original-Sequence")),
        header("ce-id"),
      );
    }
    let event: Event;
    if (body === undefined) {
      // The original aged out of its stream: what the headers still say.
      event = {
        specversion: "1.0",
        id: header("ce-id"),
        type: header("ce-type") || tokens.slice(2).join("."),
        source: header("ce-source"),
        time: header("ce-time"),
        data: undefined,
        metadata: {},
      };
      error = `${error || "?"} (the event is no longer in stream "${
        header("EventBus-Original-Stream")
      }": it cannot be replayed)`;
    } else {
      try {
        event = decodeEvent(body);
      } catch (decodeError) {
        // Not one of our events: listed with its body as it is.
        event = foreignBody(body) as Event;
        reason = "invalid-event";
        error ||= describeError(decodeError);
        body = undefined;
      }
    }
    const headers = createHeaders();
    for (const [key, values] of stored.header ?? []) {
      if (key.startsWith("Nats-") || key.startsWith("EventBus-")) continue;
      for (const value of values) headers.append(key, value);
    }
    return {
      letter: {
        ref: String(stored.seq),
        event,
        handler: handler ?? (named || durable || "?"),
        attempts: Number.isSafeInteger(attempts) ? attempts : 0,
        reason: reason || "invalid-event",
        error,
        time: stored.time.toISOString(),
      },
      seq: stored.seq,
      durable,
      target: named || handler || durable,
      body,
      headers,
      subject: header("EventBus-Original-Subject"),
    };
  }

  /**
   * The body of a reference copy, read from the original stream; undefined
   * when that stream no longer holds it (or holds another event there).
   */
  async #original(
    stream: string,
    seq: number,
    id: string,
  ): Promise<Uint8Array | undefined> {
    if (stream === "" || !(Number.isSafeInteger(seq) && seq > 0)) {
      return undefined;
    }
    const original = await this.#request(
      (jsm) => jsm.streams.getMessage(stream, { seq }),
      `read event ${seq} of stream "${stream}"`,
    );
    if (original === undefined || original === null) return undefined;
    if (id !== "" && original.header?.get("ce-id") !== id) return undefined;
    return original.data;
  }

  /**
   * The replayed copy of a dead letter: the event's bytes as emitted, its
   * headers, and ours. Undefined when there is no event to replay, or when
   * the copy would not fit the server's max_payload.
   *
   * Its message id is its own (the event's id is in the duplicate window's
   * memory already) and the same for every replay of this dead letter, so
   * a replay repeated after a crash is stored once. Being a new stream
   * message, it starts at delivery 1, and no hand-back record (keyed by
   * sequence and message id) applies to it: it runs as attempt 1.
   */
  #copy(entry: Entry): Copy | undefined {
    const { letter, seq, body, target } = entry;
    if (body === undefined) return undefined;
    // Where its handler's consumer took it from; the subject of this
    // backend's prefix when the dead letter does not say (a process may
    // open the stream without knowing the workers' subjectPrefix).
    const { type } = letter.event;
    const subject = entry.subject.endsWith(`.${type}`)
      ? entry.subject
      : `${this.#link.options.subjectPrefix}.${type}`;
    const headers = createHeaders();
    for (const [key, values] of entry.headers) {
      for (const value of values) headers.append(key, value);
    }
    headers.set(TARGET_HANDLER, target);
    headers.set(REPLAY_OF, String(seq));
    headers.set(MSG_ID, `${letter.event.id}:replay:${seq}`);
    const limit = this.#link.nc.info?.max_payload ?? Infinity;
    if ((headers as MsgHdrsImpl).encode().length + body.length > limit) {
      return undefined;
    }
    return { subject, body, headers };
  }

  /**
   * Publishes the copy, for its handler only, then deletes the dead letter.
   */
  async #replay(entry: Entry, copy: Copy): Promise<void> {
    const { letter, seq } = entry;
    const { type, id } = letter.event;
    const { subject, body, headers } = copy;
    await this.#link.retry(
      () => this.#link.js.publish(subject, body, { headers }),
      {
        what:
          `replay dead letter ${seq} ("${type}" id "${id}") to handler "${letter.handler}"`,
      },
    );
    await this.afterPublish?.(seq);
    await this.#delete(seq);
  }

  /** Deletes one dead letter; false when it was gone already. */
  async #delete(seq: number): Promise<boolean> {
    const { deadLetterStream } = this.#link.options;
    try {
      await this.#link.retry(
        async () =>
          await (await this.#link.jsm).streams.deleteMessage(
            deadLetterStream,
            seq,
            false,
          ),
        { what: `delete dead letter ${seq} of stream "${deadLetterStream}"` },
      );
      return true;
    } catch (error) {
      const cause = (error as { cause?: unknown })?.cause ?? error;
      if (
        isApiError(cause, SEQUENCE_NOT_FOUND) ||
        isApiError(cause, STREAM_NOT_FOUND) ||
        (isApiError(cause, DELETE_FAILED) &&
          /no message found/i.test((cause as Error).message))
      ) return false;
      throw error;
    }
  }

  /**
   * Purges a handler's or type's dead letters (every one without either)
   * up to the last sequence now, so later ones stay.
   */
  async #purgeSubject(selection: Selection): Promise<number> {
    const subject = this.#subject(selection);
    if (subject === undefined) return 0;
    const { deadLetterStream } = this.#link.options;
    const what = `purge the dead letters of stream "${deadLetterStream}"`;
    const info = await this.#request(
      (jsm) => jsm.streams.info(deadLetterStream),
      what,
    );
    if (info === undefined || info.state.messages === 0) return 0;
    const done = await this.#request(
      (jsm) =>
        jsm.streams.purge(deadLetterStream, {
          filter: subject,
          seq: info.state.last_seq + 1,
        }),
      what,
    );
    return done?.purged ?? 0;
  }

  async #consumerExists(durable: string): Promise<boolean> {
    const { stream } = this.#link.options;
    try {
      await this.#link.retry(
        async () =>
          await (await this.#link.jsm).consumers.info(stream, durable),
        { what: `look up consumer "${durable}" of stream "${stream}"` },
      );
      return true;
    } catch (error) {
      const cause = (error as { cause?: unknown })?.cause ?? error;
      if (
        isApiError(cause, CONSUMER_NOT_FOUND) ||
        isApiError(cause, STREAM_NOT_FOUND)
      ) return false;
      throw error;
    }
  }

  /** One message get; null when there is none, or no dead-letter stream. */
  async #get(
    query: { seq: number; next_by_subj?: string },
    what: string,
  ): Promise<StoredMsg | null> {
    const { deadLetterStream } = this.#link.options;
    // next_by_subj is in the server's message get request since 2.9 (the
    // client types it for direct gets only).
    const stored = await this.#request(
      (jsm) =>
        jsm.streams.getMessage(deadLetterStream, query as { seq: number }),
      what,
    );
    return stored ?? null;
  }

  /**
   * A JetStream API request, tried again as the link does; undefined when
   * the stream it names does not exist.
   */
  async #request<T>(
    request: (jsm: JetStreamManager) => Promise<T>,
    what: string,
  ): Promise<T | undefined> {
    try {
      return await this.#link.retry(
        async () => await request(await this.#link.jsm),
        { what },
      );
    } catch (error) {
      const cause = (error as { cause?: unknown })?.cause ?? error;
      if (isApiError(cause, STREAM_NOT_FOUND)) return undefined;
      throw error;
    }
  }

  /**
   * The subject that selects a handler's and a type's dead letters, or
   * undefined when no dead letter can match (a type that is no event type).
   */
  #subject(selection: Selection): string | undefined {
    const { handler, type } = selection;
    if (type !== undefined && !isValidEventType(type)) return undefined;
    const durable = handler === undefined ? "*" : durableName(handler);
    const tail = type === undefined ? ">" : type;
    return handler === undefined && type === undefined
      ? `${this.#link.options.deadLetterStream}.>`
      : `${this.#link.options.deadLetterStream}.${durable}.${tail}`;
  }

  #throwIfClosed(): void {
    if (this.#closed()) throw new EventBusClosedError();
  }
}

/** Whether `subject` matches `filter` (tokens, `*` and a final `>`). */
function subjectMatches(subject: string, filter: string): boolean {
  const have = subject.split(".");
  const want = filter.split(".");
  for (let i = 0; i < want.length; i++) {
    const token = want[i];
    if (token === ">") return have.length > i;
    if (i >= have.length) return false;
    if (token !== "*" && token !== have[i]) return false;
  }
  return have.length === want.length;
}

/** A body that is not an event: its JSON value, else its text. */
function foreignBody(body: Uint8Array): unknown {
  const text = new TextDecoder().decode(body);
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
