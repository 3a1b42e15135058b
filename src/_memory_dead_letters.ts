// Copyright 2026 the @eventbus/core authors. MIT license.
// Dead letters kept in memory, the last `limit` of them (the worker pool's,
// and any in-process backend's): count, list, replay through the owner's
// callback, purge.

import type { Logger } from "./backend.ts";
import {
  type DeadLetter,
  type DeadLetterFilter,
  type DeadLetters,
  type DeadLetterTarget,
  matchesDeadLetter,
} from "./dead_letters.ts";
import { type DeadLetterError, describeError } from "./errors.ts";

/**
 * Hands a dead letter's event again to its handler; resolves `true` once
 * the backend accepted it, `false` when that handler is gone.
 *
 * @example A replay that republishes for one handler
 * ```ts
 * import type { Replay } from "@eventbus/core/backend-kit";
 *
 * const handlers = new Set(["shipping"]);
 * const replay: Replay = (letter) => Promise.resolve(handlers.has(letter.handler));
 * ```
 */
export type Replay = (letter: DeadLetter) => Promise<boolean>;

/**
 * The last `limit` dead letters, oldest first: a backend's `deadLetters`
 * when its broker keeps none of its own.
 *
 * @example Keeping, counting and purging dead letters
 * ```ts
 * import { createEvent, DeadLetterError } from "@eventbus/core";
 * import { MemoryDeadLetters, SILENT_LOGGER } from "@eventbus/core/backend-kit";
 *
 * const letters = new MemoryDeadLetters(100, () => Promise.resolve(true));
 * const event = createEvent("order.placed", { id: "o1" });
 * letters.add(
 *   new DeadLetterError(event, "shipping", 3, { cause: new Error("down") }),
 *   SILENT_LOGGER,
 * );
 * console.assert((await letters.count({ handler: "shipping" })) === 1);
 * console.assert((await letters.purge({})).purged === 1);
 * ```
 */
export class MemoryDeadLetters implements DeadLetters {
  #letters = new Map<string, DeadLetter>();
  #next = 1;
  #limit: number;
  #replay: Replay;

  /**
   * Keeps no dead letter yet.
   *
   * @param limit How many dead letters to keep; the oldest go first.
   * @param replay Hands a letter's event to its handler again.
   */
  constructor(limit: number, replay: Replay) {
    this.#limit = limit;
    this.#replay = replay;
  }

  /** Keeps a dead letter, evicting the oldest (with a warning) when full. */
  add(error: DeadLetterError, logger: Logger): void {
    const ref = String(this.#next++);
    this.#letters.set(ref, {
      ref,
      event: error.event,
      handler: error.handler,
      attempts: error.attempts,
      reason: error.reason,
      error: describeError(error.cause),
      time: new Date().toISOString(),
    });
    if (this.#letters.size <= this.#limit) return;
    for (const [oldest, letter] of this.#letters) {
      this.#letters.delete(oldest);
      logger.warn(
        `Dropped the oldest dead letter (ref ${oldest}, "${letter.event.type}" id "${letter.event.id}" for handler "${letter.handler}"): this backend keeps the last ${this.#limit}, raise deadLetterLimit to keep more`,
        { event: letter.event.id, handler: letter.handler },
      );
      return;
    }
  }

  /** How many dead letters match `filter`. */
  count(filter: DeadLetterFilter = {}): Promise<number> {
    return Promise.resolve(this.#select(filter).length);
  }

  /** The dead letters that match `filter`, oldest first, at most `limit`. */
  async *list(filter: DeadLetterFilter = {}): AsyncIterable<DeadLetter> {
    const { limit = Infinity } = filter;
    let given = 0;
    for (const letter of this.#select(filter)) {
      if (given++ >= limit) return;
      yield letter;
    }
  }

  /** Hands the targeted letters to their handler again, then forgets them. */
  async replay(target: DeadLetterTarget): Promise<{ replayed: number }> {
    const selected = this.#select(target);
    if (target.dryRun === true) return { replayed: selected.length };
    let replayed = 0;
    for (const letter of selected) {
      if (!this.#letters.has(letter.ref)) continue; // purged meanwhile
      if (!(await this.#replay(letter))) continue; // its handler is gone
      this.#letters.delete(letter.ref);
      replayed++;
    }
    return { replayed };
  }

  /** Forgets the targeted letters (counts them only, on `dryRun`). */
  purge(target: DeadLetterTarget): Promise<{ purged: number }> {
    const selected = this.#select(target);
    if (target.dryRun !== true) {
      for (const letter of selected) this.#letters.delete(letter.ref);
    }
    return Promise.resolve({ purged: selected.length });
  }

  #select(criteria: DeadLetterFilter & DeadLetterTarget): DeadLetter[] {
    const selected: DeadLetter[] = [];
    for (const letter of this.#letters.values()) {
      if (matchesDeadLetter(letter, criteria)) selected.push(letter);
    }
    return selected;
  }
}
