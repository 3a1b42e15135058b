// Copyright 2026 the @eventbus/core authors. MIT license.
// `backend.deadLetters` of the Redis Streams backend, over the dead-letter
// stream its readers write (`<prefix>-dead-letter`: fields `event`,
// `handler`, `attempts`, `reason`, `error`, `stream`, `id`). A dead
// letter's ref is its entry id there. Reads page through `XRANGE`, oldest
// first, up to the last entry when the call began, so dead letters written
// meanwhile (a replay failing again) are never met twice. A replay is one
// script per dead letter (REPLAY_SCRIPT): it adds the event's bytes again to
// the stream it was consumed from, with a field naming the handler (readers
// of other groups acknowledge it unrun), then deletes the dead letter.

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
import { REPLAY_SCRIPT } from "./_scripts.ts";
import { compareIds, timeOf, trimArgument } from "./_util.ts";

const BACKEND = "redis-streams";
/** Entries read per `XRANGE`. */
const PAGE = 200;
/** Entry ids deleted per `XDEL`. */
const BATCH = 200;

/** What the dead letters need from their backend. */
export interface DeadLetterLink {
  /** The dead-letter stream's key. */
  readonly deadLetterStream: string;
  /** The event streams' bound, `Infinity` for none. */
  readonly maxLen: number;
  /** The stream key of an event type. */
  stream(type: string): string;
  /** Sends one command. */
  command(args: string[]): Promise<unknown>;
  /** Runs a Lua script. */
  script(script: string, keys: string[], args: string[]): Promise<unknown>;
  /** Whether the backend is closed. */
  closed(): boolean;
  /** Where replays that leave a dead letter in place are told. */
  logger(): Logger;
}

/** One dead letter as stored, read into a {@linkcode DeadLetter}. */
interface Stored {
  readonly letter: DeadLetter;
  /** The event as emitted (wire form); undefined when it is not an event. */
  readonly raw: string | undefined;
  /** The stream the event was consumed from, as the dead letter says. */
  readonly stream: string;
}

/** Which dead letters a call reads. */
type Selection = DeadLetterFilter & DeadLetterTarget;

/** The dead letters of one Redis Streams backend. */
export class RedisDeadLetters implements DeadLetters {
  /**
   * For tests only: awaited after each replayed copy was added and its
   * dead letter deleted (a test stops the process here).
   */
  afterReplay: ((ref: string) => Promise<void>) | undefined;
  readonly #link: DeadLetterLink;

  /**
   * Works on the dead letters of the backend that `link` describes.
   *
   * @param link The backend's commands and settings.
   */
  constructor(link: DeadLetterLink) {
    this.#link = link;
  }

  async count(filter: DeadLetterFilter = {}): Promise<number> {
    this.#throwIfClosed();
    if (filter.handler === undefined && filter.type === undefined) {
      return Number(
        await this.#command(
          ["XLEN", this.#link.deadLetterStream],
          "count the dead letters",
        ),
      );
    }
    let count = 0;
    for await (const _ of this.#select(filter)) count++;
    return count;
  }

  async *list(filter: DeadLetterFilter = {}): AsyncIterable<DeadLetter> {
    this.#throwIfClosed();
    const { limit = Infinity } = filter;
    if (!(limit > 0)) return;
    let given = 0;
    for await (const stored of this.#select(filter)) {
      yield stored.letter;
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
    /** Streams found full, and handler names without a group, by stream. */
    const skipped = new Set<string>();
    let replayed = 0;
    for await (const stored of this.#select(target)) {
      const { letter, raw } = stored;
      if (raw === undefined) {
        this.#link.logger().warn(
          `Cannot replay dead letter ${letter.ref} of handler "${letter.handler}": it is not an event (${letter.error}), it stays in the dead letters; purge it once you have read it`,
          { ref: letter.ref, handler: letter.handler },
        );
        continue;
      }
      const { type, id } = letter.event;
      const stream = stored.stream.endsWith(`:${type}`)
        ? stored.stream
        : this.#link.stream(type);
      if (skipped.has(stream) || skipped.has(`${stream}\n${letter.handler}`)) {
        continue;
      }
      const reply = await this.#script(
        [this.#link.deadLetterStream, stream],
        [letter.ref, letter.handler, raw, trimArgument(this.#link.maxLen)],
        `replay dead letter ${letter.ref} ("${type}" id "${id}") to handler "${letter.handler}"`,
      );
      if (typeof reply === "string") {
        replayed++;
        await this.afterReplay?.(letter.ref);
      } else if (reply === -1) {
        skipped.add(`${stream}\n${letter.handler}`);
        this.#link.logger().warn(
          `Cannot replay the dead letters of handler "${letter.handler}" on stream "${stream}": no consumer group of that name reads it (no worker ever consumed it, or the group was deleted), so a copy would reach nobody; they stay in the dead letters, start a worker of "${letter.handler}" and replay again`,
          { stream, handler: letter.handler },
        );
      } else if (Array.isArray(reply)) {
        skipped.add(stream);
        this.#link.logger().warn(
          `Cannot replay dead letters to stream "${stream}": it holds ${
            reply[0]
          } entries, the maxLen limit (${this.#link.maxLen}), from the oldest one consumer group "${
            reply[1]
          }" has not acknowledged; they stay in the dead letters, replay again once its workers caught up`,
          { stream },
        );
      } // 0: gone meanwhile (replayed or purged by another call)
    }
    return { replayed };
  }

  async purge(target: DeadLetterTarget): Promise<{ purged: number }> {
    this.#throwIfClosed();
    const dryRun = target.dryRun === true;
    let purged = 0;
    let batch: string[] = [];
    const remove = async () => {
      const ids = batch;
      batch = [];
      purged += Number(
        await this.#command(
          ["XDEL", this.#link.deadLetterStream, ...ids],
          "purge dead letters",
        ),
      );
    };
    for await (const { letter } of this.#select(target)) {
      if (dryRun) {
        purged++;
        continue;
      }
      batch.push(letter.ref);
      if (batch.length >= BATCH) await remove();
    }
    if (batch.length > 0) await remove();
    return { purged };
  }

  /**
   * The dead letters a filter or target selects, oldest first: each given
   * ref, or a scan up to the last entry now.
   */
  async *#select(selection: Selection): AsyncIterable<Stored> {
    const dead = this.#link.deadLetterStream;
    const what = "read the dead letters";
    if (selection.refs !== undefined) {
      const refs = [...new Set(selection.refs)].filter((ref) =>
        /^\d+-\d+$/.test(ref)
      ).sort(compareIds);
      for (const ref of refs) {
        const reply = await this.#command(["XRANGE", dead, ref, ref], what);
        for (const stored of entries(reply)) {
          if (matchesDeadLetter(stored.letter, selection)) yield stored;
        }
      }
      return;
    }
    const last = entries(
      await this.#command(["XREVRANGE", dead, "+", "-", "COUNT", "1"], what),
    )[0]?.letter.ref;
    if (last === undefined) return;
    // Bounded: each page moves past at least one entry, up to `last`.
    for (let start = "-"; start !== "";) {
      const page = entries(
        await this.#command(
          ["XRANGE", dead, start, last, "COUNT", String(PAGE)],
          what,
        ),
      );
      const end = page[page.length - 1]?.letter.ref;
      start = page.length < PAGE || end === undefined || end === last
        ? ""
        : `(${end}`;
      for (const stored of page) {
        if (matchesDeadLetter(stored.letter, selection)) yield stored;
      }
    }
  }

  async #command(args: string[], what: string): Promise<unknown> {
    try {
      return await this.#link.command(args);
    } catch (error) {
      throw failed(what, error);
    }
  }

  async #script(keys: string[], args: string[], what: string) {
    try {
      return await this.#link.script(REPLAY_SCRIPT, keys, args);
    } catch (error) {
      throw failed(what, error);
    }
  }

  #throwIfClosed(): void {
    if (this.#link.closed()) throw new EventBusClosedError();
  }
}

function failed(what: string, error: unknown): BackendError {
  return new BackendError(
    BACKEND,
    `Cannot ${what}: Redis answered ${
      describeError(error)
    }, check the connection and the dead-letter stream key`,
    { cause: error },
  );
}

/** Dead letters in an `XRANGE` reply: `[[id, [field, value, ...]], ...]`. */
function entries(reply: unknown): Stored[] {
  if (!Array.isArray(reply)) return [];
  const stored: Stored[] = [];
  for (const item of reply) {
    if (!Array.isArray(item)) continue;
    const fields = new Map<string, string>();
    const list = item[1];
    if (Array.isArray(list)) {
      for (let i = 0; i + 1 < list.length; i += 2) {
        fields.set(String(list[i]), String(list[i + 1]));
      }
    }
    stored.push(read(String(item[0]), fields));
  }
  return stored;
}

/** Reads one dead letter; never throws for what it holds. */
function read(ref: string, fields: Map<string, string>): Stored {
  const attempts = Number(fields.get("attempts"));
  let reason = fields.get("reason") ?? "";
  let error = fields.get("error") ?? "";
  let raw = fields.get("event");
  let event: Event;
  try {
    if (raw === undefined) {
      throw new TypeError(
        `dead letter ${ref} has no "event" field (fields: ${
          [...fields.keys()].join(", ") || "none"
        })`,
      );
    }
    event = decodeEvent(raw);
  } catch (decodeError) {
    // Not one of our events: listed with its body as it is.
    event =
      (raw === undefined ? Object.fromEntries(fields) : body(raw)) as Event;
    reason = "invalid-event";
    error ||= describeError(decodeError);
    raw = undefined;
  }
  return {
    letter: {
      ref,
      event,
      handler: fields.get("handler") ?? "",
      attempts: Number.isSafeInteger(attempts) ? attempts : 0,
      reason: reason || "invalid-event",
      error,
      time: timeOf(ref),
    },
    raw,
    stream: fields.get("stream") ?? "",
  };
}

/** A body that is not an event: its JSON object, else its text. */
function body(raw: string): unknown {
  try {
    const value: unknown = JSON.parse(raw);
    if (typeof value === "object" && value !== null) return value;
  } catch {
    // text
  }
  return raw;
}
