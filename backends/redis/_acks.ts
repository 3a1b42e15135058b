// Copyright 2026 the @eventbus/core authors. MIT license.
// Acknowledgements of one Redis Streams reader, in batches: an entry whose
// handler settled is queued here, and the queue goes to Redis as one
// `XACK <stream> <group> <id> ...`. The batch size adapts to the load, with
// no timer: when no XACK of this reader waits for Redis, the queue leaves at
// the end of the current turn of the event loop (setImmediate), with every
// entry that settled in that turn; otherwise it gathers until the XACK in
// flight returns (or MAX_ACK ids wait). close() sends what is queued and
// waits for it. An entry
// is acknowledged only after its handler settled, and only once: each id is
// sent in one XACK, retried through lost connections until it went through
// or the reader closes for good.

import {
  abortable,
  nextImmediate,
  sleep,
  withTimeout,
} from "@eventbus/core/backend-kit";

/** Ids per XACK, at most. */
const MAX_ACK = 512;
/** Longest pause between tries to reach Redis again. */
const MAX_BACKOFF = 2000;

/** What the acknowledgements need from their reader. */
export interface AckLink {
  /** Sends one `XACK` for `ids`. */
  xack(ids: string[]): Promise<unknown>;
  /** Whether an error is one that trying again cannot fix. */
  permanent(error: unknown): boolean;
}

interface Waiter {
  resolve(): void;
  reject(error: unknown): void;
}

/** The batched acknowledgements of one reader; see the file comment. */
export class AckBatcher {
  readonly #link: AckLink;
  #ids: string[] = [];
  #waiters: Waiter[] = [];
  #scheduled = false;
  #sending = new Set<Promise<void>>();
  /** Aborted by close(): retries stop. */
  #stop = new AbortController();

  constructor(link: AckLink) {
    this.#link = link;
  }

  /**
   * Queues `id` for the next XACK. Resolves once Redis acknowledged it;
   * rejects when Redis refused the XACK for good or close() gave up on it.
   */
  ack(id: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#ids.push(id);
      this.#waiters.push({ resolve, reject });
      if (this.#ids.length >= MAX_ACK) this.flush();
      else if (this.#sending.size === 0 && !this.#scheduled) {
        this.#scheduled = true;
        void nextImmediate().then(() => {
          this.#scheduled = false;
          if (this.#sending.size === 0) this.flush();
        });
      }
    });
  }

  /** Sends what is queued now. */
  flush(): void {
    if (this.#ids.length === 0) return;
    const ids = this.#ids;
    const waiters = this.#waiters;
    this.#ids = [];
    this.#waiters = [];
    const sending = this.#send(ids, waiters);
    this.#sending.add(sending);
    void sending.finally(() => {
      this.#sending.delete(sending);
      if (this.#sending.size === 0) this.flush(); // what gathered meanwhile
    });
  }

  /**
   * Sends what is queued and waits for every XACK up to `timeout` ms; then
   * stops retrying: the ids not acknowledged stay pending in Redis (their
   * entries are delivered again after claimIdle); their acknowledgements
   * reject.
   */
  async close(timeout: number): Promise<void> {
    await withTimeout(this.#idle(), timeout).catch(() => {});
    this.#stop.abort();
    this.flush(); // queued meanwhile: given up at once
    await Promise.all([...this.#sending]);
  }

  async #idle(): Promise<void> {
    while (this.#ids.length > 0 || this.#sending.size > 0) {
      this.flush();
      await Promise.all([...this.#sending]);
    }
  }

  async #send(ids: string[], waiters: Waiter[]): Promise<void> {
    let backoff = 50;
    const stop = this.#stop.signal;
    while (true) {
      if (stop.aborted) {
        for (const waiter of waiters) waiter.reject(stop.reason);
        return;
      }
      try {
        await abortable(this.#link.xack(ids), stop);
        for (const waiter of waiters) waiter.resolve();
        return;
      } catch (error) {
        if (stop.aborted || this.#link.permanent(error)) {
          for (const waiter of waiters) waiter.reject(error);
          return;
        }
        await sleep(backoff, stop);
        backoff = Math.min(backoff * 2, MAX_BACKOFF);
      }
    }
  }
}
