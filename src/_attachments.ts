// Copyright 2026 the @eventbus/core authors. MIT license.
// How a bus attaches its async handlers' consumers to the backend: at
// subscribe (in-process, or while listening), and at listen() (remote),
// with one warning per unnamed handler and a retry at the next listen()
// when an attachment failed.

import type { AsyncBackend, Deliver, Logger } from "./backend.ts";
import { describeError, EventBusClosedError } from "./errors.ts";
import { abortable } from "./_async.ts";
import type { Entry } from "./_registry.ts";

/** The consumers of one bus's async handlers. */
export class Attachments {
  #backend: AsyncBackend;
  #logger: Logger;
  #deliver: (entry: Entry) => Deliver;
  #listening: AbortSignal | undefined;
  #closed = new AbortController();

  /**
   * @param backend Where consumers attach.
   * @param logger The bus's (guarded) logger.
   * @param deliver The bus's deliver function for an entry's tries.
   */
  constructor(
    backend: AsyncBackend,
    logger: Logger,
    deliver: (entry: Entry) => Deliver,
  ) {
    this.#backend = backend;
    this.#logger = logger;
    this.#deliver = deliver;
  }

  /** Whether a new async subscription attaches at once. */
  get eager(): boolean {
    return !this.#backend.remote || this.#isListening();
  }

  /**
   * Attaches every async entry not attached yet (all of them when a new
   * listening period starts, after the last one's signal aborted), and
   * resolves once all are attached.
   *
   * @throws {EventBusClosedError} When the bus closes first.
   * @throws The signal's reason when it aborts first.
   */
  async listen(
    entries: Iterable<Entry>,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const fresh = !this.#isListening();
    if (fresh) this.#listening = signal ?? new AbortController().signal;
    const pending: Promise<void>[] = [];
    for (const entry of entries) {
      if (fresh) entry.attached = undefined;
      this.#warnUnnamed(entry);
      pending.push(entry.attached ?? this.attach(entry));
    }
    await abortable(
      Promise.all(pending),
      signal === undefined
        ? this.#closed.signal
        : AbortSignal.any([signal, this.#closed.signal]),
    );
  }

  /**
   * Attaches an entry's consumer. The promise is kept on the entry for
   * `listen()`; a failure is logged, and the next `listen()` tries again.
   */
  attach(entry: Entry): Promise<void> {
    const detach = new AbortController();
    entry.detach = detach;
    const signal = this.#listening === undefined
      ? detach.signal
      : AbortSignal.any([detach.signal, this.#listening]);
    const { name, type, timeout, retry: { attempts } } = entry;
    let attached: Promise<void>;
    try {
      attached = this.#backend.consume(this.#deliver(entry), {
        consumers: [{ name, type, attempts, timeout }],
        signal,
        logger: this.#logger,
      });
    } catch (error) {
      attached = Promise.reject(error);
    }
    entry.attached = attached;
    attached.catch((error: unknown) => {
      if (entry.attached === attached) entry.attached = undefined;
      if (this.#closed.signal.aborted) return;
      this.#logger.error(
        `Cannot consume "${type}" for handler "${name}": ${
          describeError(error)
        }`,
        { error },
      );
    });
    return attached;
  }

  /** The bus is closing: a pending `listen()` rejects. */
  close(): void {
    this.#closed.abort(new EventBusClosedError());
  }

  #isListening(): boolean {
    return this.#listening !== undefined && !this.#listening.aborted;
  }

  #warnUnnamed(entry: Entry): void {
    if (entry.named) return;
    entry.named = true; // warn once
    this.#logger.warn(
      `Handler "${entry.name}" of "${entry.type}" has no name: on backend "${this.#backend.name}" its name is the consumer kept on the broker, and a default name depends on the order of subscriptions, so reordering them leaves a consumer collecting events that nobody handles; pass a stable { name } to subscribe()`,
      { handler: entry.name, type: entry.type },
    );
  }
}
