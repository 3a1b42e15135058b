// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * Dead letters you can work with: every backend exposes
 * `backend.deadLetters`, to count, list, replay and purge the deliveries it
 * gave up on. A replay reaches only the handler that failed, keeps the
 * event's id and `traceparent`, and removes a dead letter only after the
 * backend accepted the replayed copy.
 *
 * @example Replaying what one handler gave up on, once it is fixed
 * ```ts
 * import { EventBus, WorkerPool } from "@eventbus/core";
 * const pool = new WorkerPool();
 * const bus = new EventBus({ backend: pool, onError: () => {} });
 * let fixed = false;
 * bus.subscribe("user.signup", () => {
 *   if (!fixed) throw new Error("mail server down");
 * }, { async: true, name: "send-welcome-email", retry: { attempts: 1 } });
 * await bus.emit("user.signup", { id: "u1" });
 * await bus.emit("user.signup", { id: "u2" });
 * while (await pool.deadLetters.count() < 2) await new Promise((r) => setTimeout(r, 1));
 * for await (const letter of pool.deadLetters.list({ handler: "send-welcome-email" })) {
 *   console.assert(letter.reason === "failed" && letter.attempts === 1);
 * }
 * fixed = true;
 * const { replayed } = await pool.deadLetters.replay({ handler: "send-welcome-email" });
 * console.assert(replayed === 2);
 * await bus.close();
 * console.assert(await pool.deadLetters.count() === 0);
 * ```
 *
 * @module
 */

import type { Event } from "./event.ts";

/**
 * One delivery a backend gave up on.
 *
 * @example Printing a dead letter
 * ```ts
 * import { createEvent, type DeadLetter } from "@eventbus/core";
 * const letter: DeadLetter = {
 *   ref: "1",
 *   event: createEvent("user.signup", { id: "u1" }),
 *   handler: "send-welcome-email",
 *   attempts: 3,
 *   reason: "failed",
 *   error: "Error: mail server down",
 *   time: new Date().toISOString(),
 * };
 * console.assert(`${letter.handler}: ${letter.error}`.length > 0);
 * ```
 */
export interface DeadLetter {
  /** The backend's reference to this dead letter (a stream sequence, an entry id, ...). */
  readonly ref: string;
  /** The event, as it was emitted (same id, data and metadata). */
  readonly event: Event;
  /** The handler name whose delivery was given up. */
  readonly handler: string;
  /** How many tries were made. */
  readonly attempts: number;
  /** Why: `failed`, `crashed`, `invalid-data`, `not-retriable`, `invalid-event`, ... */
  readonly reason: string;
  /** The last try's error, described in one line. */
  readonly error: string;
  /** When it was dead-lettered, RFC 3339. */
  readonly time: string;
}

/**
 * Which dead letters to count or list.
 *
 * @example Listing the first 50 of one handler
 * ```ts
 * import type { DeadLetterFilter } from "@eventbus/core";
 * const filter: DeadLetterFilter = { handler: "send-welcome-email", limit: 50 };
 * console.assert(filter.limit === 50);
 * ```
 */
export interface DeadLetterFilter {
  /** Only this handler name's dead letters. */
  readonly handler?: string | undefined;
  /** Only events of this type. */
  readonly type?: string | undefined;
  /**
   * At most this many (list only).
   * @default {all}
   */
  readonly limit?: number | undefined;
}

/**
 * Which dead letters to replay or purge: those of a handler, or the given
 * refs or event ids (each given criterion must match). An empty target
 * selects every dead letter.
 *
 * @example Purging two dead letters, after a dry run
 * ```ts
 * import type { DeadLetterTarget } from "@eventbus/core";
 * const target: DeadLetterTarget = { refs: ["17", "18"], dryRun: true };
 * console.assert(target.refs?.length === 2);
 * ```
 */
export interface DeadLetterTarget {
  /** Only this handler name's dead letters. */
  readonly handler?: string | undefined;
  /** Only these dead letters, by ref. */
  readonly refs?: readonly string[] | undefined;
  /** Only the dead letters of these event ids. */
  readonly ids?: readonly string[] | undefined;
  /**
   * Count what would be replayed or purged, and change nothing.
   * @default {false}
   */
  readonly dryRun?: boolean | undefined;
}

/**
 * A backend's dead letters: count, list, replay and purge.
 *
 * - `replay` hands each selected event again to the handler that failed —
 *   and to no other handler name — with the same id and `traceparent`,
 *   getting past broker de-duplication; each dead letter is removed only
 *   after the backend accepted the copy (a crash in between leaves it in
 *   the dead letters or delivered, never neither).
 * - `purge` removes the selected dead letters for good.
 *
 * @example Counting a handler's dead letters
 * ```ts
 * import { WorkerPool } from "@eventbus/core";
 * const pool = new WorkerPool();
 * console.assert(await pool.deadLetters.count({ handler: "audit" }) === 0);
 * await pool.close();
 * ```
 */
export interface DeadLetters {
  /**
   * Counts dead letters.
   *
   * @param filter Handler name and event type.
   * @returns How many match.
   */
  count(filter?: DeadLetterFilter): Promise<number>;
  /**
   * Lists dead letters, oldest first.
   *
   * @param filter Handler name, event type and limit.
   * @returns The matching dead letters, one at a time.
   */
  list(filter?: DeadLetterFilter): AsyncIterable<DeadLetter>;
  /**
   * Replays dead letters to the handlers that failed.
   *
   * @param target Which ones, or `dryRun` to count them only.
   * @returns How many were replayed (or would be).
   */
  replay(target: DeadLetterTarget): Promise<{ replayed: number }>;
  /**
   * Removes dead letters for good.
   *
   * @param target Which ones, or `dryRun` to count them only.
   * @returns How many were removed (or would be).
   */
  purge(target: DeadLetterTarget): Promise<{ purged: number }>;
}

/**
 * Whether a dead letter matches a filter or a target (a helper for backend
 * authors: every given criterion must match).
 *
 * @param letter The dead letter.
 * @param criteria A filter or target.
 * @returns `true` when it matches.
 *
 * @example Selecting by handler and id
 * ```ts
 * import { createEvent, matchesDeadLetter } from "@eventbus/core";
 * const event = createEvent("a.b", 1, { id: "e1" });
 * const letter = { ref: "1", event, handler: "h", attempts: 1, reason: "failed", error: "", time: "" };
 * console.assert(matchesDeadLetter(letter, { handler: "h", ids: ["e1"] }));
 * console.assert(!matchesDeadLetter(letter, { handler: "other" }));
 * ```
 */
export function matchesDeadLetter(
  letter: DeadLetter,
  criteria: DeadLetterFilter & DeadLetterTarget,
): boolean {
  const { handler, type, refs, ids } = criteria;
  return (handler === undefined || letter.handler === handler) &&
    (type === undefined || letter.event.type === type) &&
    (refs === undefined || refs.includes(letter.ref)) &&
    (ids === undefined || ids.includes(letter.event.id));
}
