// Copyright 2026 the @eventbus/core authors. MIT license.
// Counts, per handler name and event, how often a closing worker handed the
// event back without starting it. JetStream's delivery count includes those
// deliveries; the try number a handler sees (and the bus's crash-loop bound)
// must not, so the consumer subtracts this count. The records live in the
// stream "<stream>_HANDBACK", created at the first hand-back, one subject per
// durable and sequence, the last record kept.

import type { Link } from "./_link.ts";
import type { Pulled } from "./_pull.ts";
import { ensureHandbackStream } from "./_streams.ts";
import {
  isApiError,
  isNoResponders,
  MSG_ID,
  STREAM_NOT_FOUND,
} from "./_util.ts";

/** The longest one record request waits. */
const REQUEST_TIMEOUT = 2_000;

interface HandbackRecord {
  /** The event's message id, so a record never applies to another event. */
  readonly id: string;
  /** Hand-backs so far. */
  readonly count: number;
}

/** The hand-back records of one backend. */
export class Handbacks {
  readonly #link: Link;
  readonly #stream: string;
  #ready: Promise<void> | undefined;

  /**
   * Keeps the records of one backend, in `"<stream>_HANDBACK"`.
   *
   * @param link The backend's link to JetStream.
   */
  constructor(link: Link) {
    this.#link = link;
    this.#stream = link.options.handbackStream;
  }

  /**
   * How often the event was handed back unstarted to this durable; 0 when
   * never (or when the record stream does not exist yet).
   *
   * @throws The client's error when the record cannot be read.
   */
  async count(durable: string, msg: Pulled): Promise<number> {
    const jsm = await this.#link.jsm;
    let stored;
    try {
      stored = await jsm.streams.getMessage(this.#stream, {
        last_by_subj: this.#subject(durable, msg),
      });
    } catch (error) {
      if (isApiError(error, STREAM_NOT_FOUND)) return 0;
      throw error;
    }
    if (stored === null) return 0;
    let record: HandbackRecord;
    try {
      record = stored.json<HandbackRecord>();
    } catch {
      return 0;
    }
    return record.id === messageId(msg) && Number.isInteger(record.count)
      ? Math.max(0, record.count)
      : 0;
  }

  /**
   * Stores that the event was handed back unstarted `count` times in all.
   * Creates the record stream when it does not exist.
   *
   * @throws The client's error when the record cannot be stored.
   */
  async record(durable: string, msg: Pulled, count: number): Promise<void> {
    const subject = this.#subject(durable, msg);
    const body = JSON.stringify(
      { id: messageId(msg), count } satisfies HandbackRecord,
    );
    for (let round = 0;; round++) {
      try {
        await this.#link.js.publish(subject, body, {
          timeout: REQUEST_TIMEOUT,
        });
        return;
      } catch (error) {
        // No stream takes the subject yet: create it, then store again.
        if (round > 0 || !isNoResponders(error)) throw error;
        this.#ready = undefined;
        await this.#ensure();
      }
    }
  }

  #ensure(): Promise<void> {
    if (this.#ready === undefined) {
      const pending = this.#link.jsm.then((jsm) =>
        ensureHandbackStream(jsm, this.#link.options)
      );
      this.#ready = pending;
      pending.catch(() => {
        if (this.#ready === pending) this.#ready = undefined;
      });
    }
    return this.#ready;
  }

  #subject(durable: string, msg: Pulled): string {
    return `${this.#stream}.${durable}.${msg.seq}`;
  }
}

function messageId(msg: Pulled): string {
  return msg.headers?.get(MSG_ID) ?? "";
}
