// Copyright 2026 the @eventbus/core authors. MIT license.
// The publish path of the Redis Streams backend: publishes that wait at the
// same time go to Redis together, as one call of the publish script
// (PUBLISH_SCRIPT) for up to MAX_BATCH events, instead of one script call
// each. The script handles the entries one after the other, exactly as
// separate calls would (the de-duplication marker, the maxLen check and its
// trim, the XADD), and replies one item per entry, so every publish gets
// the answer it would have got alone.
//
// Batching adapts to the load: a publish made while no batch waits for
// Redis leaves at once; one made while fewer than MAX_IN_FLIGHT batches
// wait leaves at the end of the current turn of the event loop
// (setImmediate), with every publish made in that turn; under load,
// publishes gather while earlier batches are in flight.

import { ErrorReply } from "@redis/client";
import { nextImmediate } from "@eventbus/core/backend-kit";

/**
 * Events per script call, at most. Several smaller calls in flight keep
 * Redis running one while the client prepares the next; one call of a
 * whole window of 256 left each side waiting for the other.
 */
const MAX_BATCH = 64;
/** Bytes of events per script call, at most (one larger event goes alone). */
const MAX_BATCH_BYTES = 1 << 20;
/** Script calls waiting for Redis at once, at most. */
const MAX_IN_FLIGHT = 4;

/** What the publisher needs from its backend. */
export interface PublisherLink {
  /** Runs a Lua script (`EVALSHA`, loading it when needed). */
  script(script: string, keys: string[], args: string[]): Promise<unknown>;
}

/** One publish waiting for its batch. */
interface Item {
  readonly stream: string;
  readonly marker: string;
  readonly payload: string;
  readonly signal: AbortSignal;
  resolve(reply: unknown): void;
  reject(error: unknown): void;
}

/**
 * Sends publishes to Redis in batches through one script; see the file
 * comment.
 */
export class RedisPublisher {
  readonly #link: PublisherLink;
  readonly #script: string;
  readonly #args: readonly string[];
  #queue: Item[] = [];
  #inFlight = 0;
  #scheduled = false;
  #idle: (() => void)[] = [];

  /**
   * @param link How to run a script.
   * @param script The publish script (PUBLISH_SCRIPT).
   * @param args Its leading arguments: maxLen and the duplicate window.
   */
  constructor(link: PublisherLink, script: string, args: readonly string[]) {
    this.#link = link;
    this.#script = script;
    this.#args = args;
  }

  /**
   * Queues one entry for the next batch. Resolves with the script's reply
   * for it (the entry id, 0 for a duplicate, `[length, group]` when the
   * stream is full); rejects with the call's error when the batch failed,
   * or with an `ErrorReply` when Redis refused this entry. An entry whose
   * `signal` aborted before its batch left is dropped (its caller stopped
   * waiting).
   */
  add(
    stream: string,
    marker: string,
    payload: string,
    signal: AbortSignal,
  ): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ stream, marker, payload, signal, resolve, reject });
      // Idle (no batch waits for Redis): a lone publish leaves at once, so
      // an event emitted now and then waits for no turn of the event loop;
      // the publishes that follow it in this turn gather behind it.
      if (this.#inFlight === 0 && !this.#scheduled) this.#pump();
      else this.#schedule();
    });
  }

  /** Resolves once no publish waits here or in flight. */
  idle(): Promise<void> {
    if (this.#queue.length === 0 && this.#inFlight === 0) {
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  #schedule(): void {
    if (this.#scheduled || this.#inFlight >= MAX_IN_FLIGHT) return;
    this.#scheduled = true;
    // Publishes made in the same turn leave together (they arrive over many
    // microtasks, as each caller's promise chain reaches publish()).
    void nextImmediate().then(() => {
      this.#scheduled = false;
      this.#pump();
    });
  }

  #pump(): void {
    while (this.#inFlight < MAX_IN_FLIGHT && this.#queue.length > 0) {
      const batch = this.#take();
      if (batch.length === 0) continue;
      this.#inFlight++;
      void this.#send(batch).finally(() => {
        this.#inFlight--;
        if (this.#queue.length > 0) this.#pump();
        else if (this.#inFlight === 0) this.#settleIdle();
      });
    }
    if (this.#queue.length === 0 && this.#inFlight === 0) this.#settleIdle();
  }

  /** The next batch, oldest first, without entries whose caller gave up. */
  #take(): Item[] {
    const batch: Item[] = [];
    let bytes = 0;
    let taken = 0;
    for (const item of this.#queue) {
      if (batch.length >= MAX_BATCH) break;
      if (batch.length > 0 && bytes + item.payload.length > MAX_BATCH_BYTES) {
        break;
      }
      taken++;
      if (item.signal.aborted) continue;
      batch.push(item);
      bytes += item.payload.length;
    }
    this.#queue = taken === this.#queue.length ? [] : this.#queue.slice(taken);
    return batch;
  }

  async #send(batch: Item[]): Promise<void> {
    const keys: string[] = [];
    const args = [...this.#args];
    for (const item of batch) {
      keys.push(item.stream, item.marker);
      args.push(item.payload);
    }
    let replies: unknown;
    try {
      replies = await this.#link.script(this.#script, keys, args);
    } catch (error) {
      for (const item of batch) item.reject(error);
      return;
    }
    if (!Array.isArray(replies) || replies.length !== batch.length) {
      const error = new Error(
        `The publish script replied ${
          Array.isArray(replies) ? `${replies.length} items` : typeof replies
        } for ${batch.length} events`,
      );
      for (const item of batch) item.reject(error);
      return;
    }
    for (let i = 0; i < batch.length; i++) {
      const reply = replies[i];
      const item = batch[i]!;
      if (Array.isArray(reply) && Number(reply[0]) === -1) {
        item.reject(new ErrorReply(String(reply[1])));
      } else {
        item.resolve(reply);
      }
    }
  }

  #settleIdle(): void {
    const waiting = this.#idle;
    this.#idle = [];
    for (const resolve of waiting) resolve();
  }
}
