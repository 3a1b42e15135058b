// Copyright 2026 the @eventbus/core authors. MIT license.
// The PostgreSQL outbox's own dead letters: the rows of its dead table, which
// the target refused (or which are no events), as a `DeadLetters`. They never
// reached the broker, so no handler ran: their handler is the relay. A
// replay moves a row back into the outbox table in one statement, for the
// relay to publish again under the same event id; a purge deletes it.

import type {
  DeadLetter,
  DeadLetterFilter,
  DeadLetters,
  DeadLetterTarget,
} from "./dead_letters.ts";
import { decodeEvent, type Event } from "./event.ts";
import type { SqlResult } from "./_postgres_clients.ts";
import { describeValue } from "./_postgres_clients.ts";
import { intArray, type OutboxStatements } from "./_outbox_sql.ts";

/** The handler name of every outbox dead letter: no handler ran. */
export const RELAY_HANDLER = "outbox-relay";

/** Rows read per query while listing. */
const PAGE = 100;

/** A seq: a positive bigint, in decimal. */
const SEQ = /^[1-9][0-9]{0,17}$/;

/** Runs one statement of the outbox, mapping its failures (see `outboxSqlError`). */
export type RunSql = (
  text: string,
  params: readonly unknown[],
  what: string,
) => Promise<SqlResult>;

/** The selection's parameters ($1 seqs, $2 ids, $3 type), or none can match. */
type Selection = [string | null, string | null, string | null] | undefined;

/** The dead table of one outbox, as dead letters. */
export class OutboxDeadLetters implements DeadLetters {
  readonly #run: RunSql;
  readonly #statements: OutboxStatements;
  readonly #replayed: () => void;

  /**
   * @param run Runs the outbox's statements.
   * @param statements The outbox's statements.
   * @param replayed Called after rows went back to the outbox table.
   */
  constructor(run: RunSql, statements: OutboxStatements, replayed: () => void) {
    this.#run = run;
    this.#statements = statements;
    this.#replayed = replayed;
  }

  async count(filter: DeadLetterFilter = {}): Promise<number> {
    const selection = select(filter, "count");
    if (selection === undefined) return 0;
    return await this.#count(this.#statements.deadCount, selection, "count");
  }

  async *list(filter: DeadLetterFilter = {}): AsyncIterable<DeadLetter> {
    const selection = select(filter, "list");
    const { limit = Infinity } = filter;
    if (
      typeof limit !== "number" || limit < 0 ||
      !(Number.isInteger(limit) || limit === Infinity)
    ) {
      throw new RangeError(
        `Cannot list the outbox's dead letters: limit must be an integer of at least 0, got ${
          describeValue(limit)
        }`,
      );
    }
    if (selection === undefined) return;
    let after = "0";
    let given = 0;
    while (given < limit) {
      const page = Math.min(PAGE, limit - given);
      const { rows } = await this.#run(
        this.#statements.deadList,
        [...selection, after, String(page)],
        "list dead rows",
      );
      for (const row of rows) {
        after = String(row.seq);
        given++;
        yield {
          ref: after,
          event: eventOf(String(row.event)),
          handler: RELAY_HANDLER,
          attempts: Number(row.attempts),
          reason: String(row.reason),
          error: String(row.error),
          time: String(row.dead_at),
        };
      }
      if (rows.length < page) return;
    }
  }

  async replay(target: DeadLetterTarget): Promise<{ replayed: number }> {
    const selection = select(target, "replay");
    if (selection === undefined) return { replayed: 0 };
    if (target.dryRun === true) {
      const n = await this.#count(
        this.#statements.deadReplayCount,
        selection,
        "count replayable dead rows",
      );
      return { replayed: n };
    }
    const { rows } = await this.#run(
      this.#statements.deadReplay,
      selection,
      "replay dead rows",
    );
    if (rows.length > 0) this.#replayed();
    return { replayed: rows.length };
  }

  async purge(target: DeadLetterTarget): Promise<{ purged: number }> {
    const selection = select(target, "purge");
    if (selection === undefined) return { purged: 0 };
    const purged = await this.#count(
      target.dryRun === true
        ? this.#statements.deadCount
        : this.#statements.deadPurge,
      selection,
      target.dryRun === true ? "count dead rows" : "purge dead rows",
    );
    return { purged };
  }

  async #count(
    text: string,
    selection: NonNullable<Selection>,
    what: string,
  ): Promise<number> {
    const { rows } = await this.#run(text, selection, what);
    return Number(rows[0]?.n ?? 0);
  }
}

/**
 * The SQL parameters of a filter or target, after checking its shape;
 * `undefined` when nothing can match (another handler, no valid ref).
 *
 * @throws {TypeError} When a criterion has the wrong type.
 */
function select(
  criteria: DeadLetterFilter & DeadLetterTarget,
  action: string,
): Selection {
  const fail = (what: string, value: unknown): never => {
    throw new TypeError(
      `Cannot ${action} the outbox's dead letters: ${what}, got ${
        describeValue(value)
      }`,
    );
  };
  if (criteria === null || typeof criteria !== "object") {
    fail("the filter must be an object", criteria);
  }
  const { handler, type, refs, ids } = criteria;
  for (const [name, value] of [["handler", handler], ["type", type]]) {
    if (value !== undefined && typeof value !== "string") {
      fail(`${name} must be a string`, value);
    }
  }
  for (const [name, list] of [["refs", refs], ["ids", ids]] as const) {
    if (
      list !== undefined &&
      (!Array.isArray(list) || list.some((item) => typeof item !== "string"))
    ) {
      fail(`${name} must be an array of strings`, list);
    }
  }
  if (handler !== undefined && handler !== RELAY_HANDLER) return undefined;
  const seqs = refs?.filter((ref) => SEQ.test(ref));
  if (seqs !== undefined && seqs.length === 0) return undefined;
  if (ids !== undefined && ids.length === 0) return undefined;
  return [
    seqs === undefined ? null : intArray(seqs),
    ids === undefined ? null : JSON.stringify(ids),
    type ?? null,
  ];
}

/**
 * The event of a dead row. A row whose JSON is not a valid event (reason
 * `invalid-event`) gives what it holds: the parsed JSON, or the text.
 */
function eventOf(body: string): Event {
  try {
    return decodeEvent(body);
  } catch {
    try {
      return JSON.parse(body) as Event;
    } catch {
      return body as unknown as Event;
    }
  }
}
