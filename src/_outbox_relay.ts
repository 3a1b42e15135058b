// Copyright 2026 the @eventbus/core authors. MIT license.
// The relay of the PostgreSQL outbox: claims committed rows in batches under
// a lease, publishes each to the target (rows of one partition key one after
// another, in commit order; other rows side by side), and deletes a row only
// once the target accepted it. Rows the target refuses for good go to the
// dead table; when the target or the database is down, the relay backs off
// and tries again, and the rows stay where they are.

import type { AsyncBackend, Logger } from "./backend.ts";
import { describeError } from "./errors.ts";
import { decodeEvent, type Event } from "./event.ts";
import { type Deadline, untilDeadline, withTimeout } from "./_async.ts";
import { errorText, isMissingTable, isPermanent } from "./_outbox_errors.ts";
import { intArray, type OutboxStatements } from "./_outbox_sql.ts";

/** How long close() waits for a batch it aborted to settle in the table. */
const SETTLE_TIMEOUT = 5_000;
/** The window of `publishedPerSecond`, in ms. */
const RATE_WINDOW = 10_000;
/** How long a missing table goes unreported (migrate() may be running). */
const MISSING_TABLE_GRACE = 5_000;

/** The part of an executor the relay needs (see `SqlExecutor`). */
export interface RelayExecutor {
  query(
    text: string,
    params: readonly unknown[],
  ): Promise<{ rows: readonly Record<string, unknown>[] }>;
  listen?(
    channel: string,
    onNotification: (payload: string) => void,
  ): Promise<{ close(): Promise<void> }>;
}

/** Everything a relay needs, resolved. */
export interface RelaySettings {
  readonly sql: RelayExecutor;
  readonly target: AsyncBackend;
  readonly statements: OutboxStatements;
  readonly table: string;
  readonly channel: string;
  readonly batchSize: number;
  readonly pollInterval: number;
  readonly lease: number;
  readonly concurrency: number;
  readonly maxAttempts: number;
  readonly backoffInitial: number;
  readonly backoffMax: number;
  readonly notify: boolean;
  readonly logger: Logger;
}

/** One claimed row. */
interface Claimed {
  readonly seq: string;
  readonly commitSeq: bigint;
  readonly seqNumber: bigint;
  readonly key: string | null;
  readonly body: string;
  readonly attempts: number;
}

/** Why a row went to the dead table: its `reason` column. */
type DeadReason = "rejected" | "invalid-event" | "failed";

type Outcome =
  | { readonly kind: "published" }
  | {
    readonly kind: "failed";
    readonly error: unknown;
    /** Publishes of the batch that had succeeded when this one started. */
    readonly succeededBefore: number;
  }
  | {
    readonly kind: "dead";
    readonly error: unknown;
    readonly reason: DeadReason;
  }
  | { readonly kind: "untried" };

/** The publishes of one batch as they end. */
interface Batch {
  readonly outcomes: Map<Claimed, Outcome>;
  /** Publishes of the batch that succeeded so far. */
  succeeded: number;
  /**
   * Whether the last publish to end failed (not for good): no publish
   * starts until another one succeeds.
   */
  down: boolean;
}

/** The relay loop of one outbox in this process. */
export class Relay {
  readonly #s: RelaySettings;
  /** Aborted by stop(): no new batch starts, idle waits end. */
  readonly #stopping = new AbortController();
  /** Aborted at the close deadline: publishes in flight give up. */
  readonly #abortBatch = new AbortController();
  #done: Promise<void> = Promise.resolve();
  #wake: (() => void) | undefined;
  #woken = false;
  /** Rows published but not yet deleted (the delete failed). */
  #unsettled: string[] = [];
  #listener: { close(): Promise<void> } | undefined;
  #published = 0;
  #deadLettered = 0;
  readonly #recent: { time: number; count: number }[] = [];
  readonly #startedAt = Date.now();
  #missingSince: number | undefined;
  /** Since when the database fails (or the table is missing), if it does. */
  #databaseFailingSince: number | undefined;
  /** Since when the target takes nothing, if it does. */
  #targetFailingSince: number | undefined;

  constructor(settings: RelaySettings) {
    this.#s = settings;
  }

  /** Starts the loop (and the listener when `notify`). */
  start(): void {
    this.#done = this.#run().catch((error: unknown) => {
      this.#s.logger.error(
        `The outbox relay of "${this.#s.table}" stopped: ${
          describeError(error)
        }`,
        { error },
      );
    });
    if (this.#s.notify) this.#listen();
  }

  /** Ends the current idle wait or backoff: rows may be waiting. */
  wake(): void {
    this.#woken = true;
    this.#wake?.();
  }

  /** Events this relay published (and deleted or is deleting). */
  get published(): number {
    return this.#published;
  }

  /** Rows this relay moved to the dead table. */
  get deadLettered(): number {
    return this.#deadLettered;
  }

  /** Events published per second over the last 10 s (or since start). */
  get publishedPerSecond(): number {
    const now = Date.now();
    this.#prune(now);
    const span = Math.min(RATE_WINDOW, Math.max(1, now - this.#startedAt));
    let sum = 0;
    for (const { count } of this.#recent) sum += count;
    return (sum * 1000) / span;
  }

  /**
   * Stops after the batch in flight; once `limit` is reached the batch's
   * publishes are aborted and its rows handed back to the table.
   */
  async stop(limit: Deadline): Promise<void> {
    this.#stopping.abort();
    this.wake();
    if (!await untilDeadline(this.#done, limit)) {
      this.#abortBatch.abort();
      await withTimeout(this.#done, SETTLE_TIMEOUT).catch(() => {});
    }
    const listener = this.#listener;
    this.#listener = undefined;
    if (listener !== undefined) {
      await withTimeout(listener.close(), SETTLE_TIMEOUT).catch(() => {});
    }
  }

  async #run(): Promise<void> {
    let failures = 0;
    const stopping = this.#stopping.signal;
    while (!stopping.aborted) {
      let pause: number;
      try {
        await this.#settleUnsettled();
        const rows = await this.#claim();
        this.#databaseRecovered();
        if (rows.length === 0) {
          failures = 0;
          pause = this.#s.pollInterval;
        } else {
          const outage = await this.#relay(rows);
          if (outage) {
            failures++;
            pause = backoff(this.#s, failures);
          } else {
            failures = 0;
            pause = rows.length < this.#s.batchSize ? this.#s.pollInterval : 0;
          }
        }
      } catch (error) {
        failures++;
        pause = this.#databaseFailed(error, failures);
      }
      if (pause > 0) await this.#idle(pause);
    }
  }

  async #claim(): Promise<Claimed[]> {
    const { rows } = await this.#s.sql.query(this.#s.statements.claim, [
      String(this.#s.batchSize),
      String(this.#s.lease),
    ]);
    const claimed = rows.map((row): Claimed => {
      const seq = String(row.seq);
      return {
        seq,
        seqNumber: BigInt(seq),
        // Rows written with the trigger disabled have no commit number:
        // they come last, as the claim orders them.
        commitSeq: row.commit_seq === null || row.commit_seq === undefined
          ? BigInt(Number.MAX_SAFE_INTEGER) ** 2n
          : BigInt(String(row.commit_seq)),
        key: row.partition_key === null || row.partition_key === undefined
          ? null
          : String(row.partition_key),
        body: String(row.event),
        attempts: Number(row.attempts),
      };
    });
    claimed.sort((a, b) =>
      a.commitSeq === b.commitSeq
        ? compare(a.seqNumber, b.seqNumber)
        : compare(a.commitSeq, b.commitSeq)
    );
    return claimed;
  }

  /**
   * Publishes one claimed batch and settles every row in the table.
   * Returns true when a publish failed and none succeeded after it started:
   * the target is down, so the relay backs off.
   */
  async #relay(rows: Claimed[]): Promise<boolean> {
    const chains = chainsOf(rows);
    const batch: Batch = { outcomes: new Map(), succeeded: 0, down: false };
    const abort = this.#abortBatch.signal;
    // Stop publishing a little before the lease ends: another relay may
    // take the rows then (the target's de-duplication drops the copies).
    const deadline = new AbortController();
    const timer = setTimeout(
      () => deadline.abort(new Error("the lease ran out")),
      Math.max(1, Math.floor(this.#s.lease * 0.9)),
    );
    const signal = AbortSignal.any([abort, deadline.signal]);
    let next = 0;
    // A worker takes no new chain while the last publish to end failed:
    // the target looks down, and trying the rest of the batch (each until
    // the target's timeout) would only delay the backoff. A publish that
    // succeeds afterwards sets the others going again.
    const worker = async (): Promise<void> => {
      while (next < chains.length && !batch.down) {
        const chain = chains[next++]!;
        await this.#publishChain(chain, batch, signal);
      }
    };
    try {
      const workers = Math.min(this.#s.concurrency, chains.length);
      await Promise.all(Array.from({ length: workers }, worker));
    } finally {
      clearTimeout(timer);
    }
    return await this.#settle(rows, batch);
  }

  /** Publishes the rows of one chain in order; a failure stops the chain. */
  async #publishChain(
    chain: readonly Claimed[],
    batch: Batch,
    signal: AbortSignal,
  ): Promise<void> {
    const { outcomes } = batch;
    let stopped = false;
    for (const row of chain) {
      if (stopped || batch.down || signal.aborted) {
        outcomes.set(row, { kind: "untried" });
        continue;
      }
      let event: Event;
      try {
        event = decodeEvent(row.body);
      } catch (error) {
        outcomes.set(row, { kind: "dead", error, reason: "invalid-event" });
        continue;
      }
      const succeededBefore = batch.succeeded;
      try {
        await this.#s.target.publish(event, { signal });
        outcomes.set(row, { kind: "published" });
        batch.succeeded++;
        batch.down = false;
      } catch (error) {
        if (this.#abortBatch.signal.aborted) {
          // close() gave up on the batch: hand the row back untried.
          outcomes.set(row, { kind: "untried" });
        } else if (isPermanent(error)) {
          outcomes.set(row, { kind: "dead", error, reason: "rejected" });
        } else {
          outcomes.set(row, { kind: "failed", error, succeededBefore });
          batch.down = true;
          stopped = true;
        }
      }
    }
  }

  async #settle(rows: readonly Claimed[], batch: Batch): Promise<boolean> {
    const published: string[] = [];
    const untried: Claimed[] = [];
    const failed: { row: Claimed; error: unknown; own: boolean }[] = [];
    const dead: { row: Claimed; error: unknown; reason: DeadReason }[] = [];
    for (const row of rows) {
      const outcome = batch.outcomes.get(row) ?? { kind: "untried" };
      switch (outcome.kind) {
        case "published":
          published.push(row.seq);
          break;
        case "untried":
          untried.push(row);
          break;
        case "failed":
          // A publish that succeeded after this one started shows the
          // target was taking events meanwhile: the failure is the row's.
          failed.push({
            row,
            error: outcome.error,
            own: batch.succeeded > outcome.succeededBefore,
          });
          break;
        case "dead":
          dead.push({ row, error: outcome.error, reason: outcome.reason });
      }
    }
    if (published.length > 0) {
      this.#count(published.length);
      this.#targetRecovered();
      this.#unsettled.push(...published);
      await this.#settleUnsettled();
    }
    const { statements, sql, logger, table } = this.#s;
    for (const { row, error, reason } of dead) {
      await this.#bury(row, error, reason);
    }
    // A failure with no success after its start: the target is down (or
    // never answered), which says nothing of the row. It goes back untried,
    // its attempt not counted, and the relay backs off.
    const outage = failed.filter(({ own }) => !own);
    const down = outage[0];
    untried.push(...outage.map(({ row }) => row));
    if (untried.length > 0) {
      await this.#release(
        untried,
        down === undefined ? null : errorText(down.error),
      );
    }
    for (const { row, error, own } of failed) {
      if (!own) continue;
      if (row.attempts >= this.#s.maxAttempts) {
        await this.#bury(row, error, "failed");
      } else {
        const delay = backoff(this.#s, row.attempts);
        await sql.query(statements.retryLater, [
          row.seq,
          String(row.attempts),
          String(delay),
          errorText(error),
        ]);
        logger.warn(
          `Cannot relay outbox row ${row.seq} of "${table}" (try ${row.attempts} of ${this.#s.maxAttempts}), retrying in ${delay} ms: ${
            describeError(error)
          }`,
          { error, seq: row.seq },
        );
      }
    }
    if (down === undefined) return false;
    this.#targetFailed(down.error, outage.length);
    return true;
  }

  /** Moves a row to the dead table, saying why. */
  async #bury(
    row: Claimed,
    error: unknown,
    reason: DeadReason,
  ): Promise<void> {
    await this.#s.sql.query(this.#s.statements.bury, [
      row.seq,
      String(row.attempts),
      errorText(error),
      reason,
    ]);
    this.#deadLettered++;
    const why = reason === "failed"
      ? `it failed ${row.attempts} times while other events got through`
      : reason === "rejected"
      ? "the target refused it for good"
      : "its JSON is not a valid event";
    this.#s.logger.error(
      `Cannot relay outbox row ${row.seq} of "${this.#s.table}": ${why} (${
        describeError(error)
      }), moved it to the dead table; see outbox.deadLetters`,
      { error, seq: row.seq },
    );
  }

  async #release(
    rows: readonly Claimed[],
    error: string | null,
  ): Promise<void> {
    if (rows.length === 0) return;
    await this.#s.sql.query(this.#s.statements.release, [
      intArray(rows.map((r) => r.seq)),
      intArray(rows.map((r) => r.attempts)),
      error,
    ]);
  }

  /** Deletes published rows whose delete has not succeeded yet. */
  async #settleUnsettled(): Promise<void> {
    if (this.#unsettled.length === 0) return;
    const seqs = this.#unsettled;
    await this.#s.sql.query(this.#s.statements.delete, [intArray(seqs)]);
    this.#unsettled = this.#unsettled.slice(seqs.length);
  }

  #count(count: number): void {
    const now = Date.now();
    this.#published += count;
    this.#recent.push({ time: now, count });
    this.#prune(now);
  }

  #prune(now: number): void {
    while (
      this.#recent.length > 0 && now - this.#recent[0]!.time > RATE_WINDOW
    ) {
      this.#recent.shift();
    }
  }

  /** Says the database answers again, if it had failed. */
  #databaseRecovered(): void {
    this.#missingSince = undefined;
    if (this.#databaseFailingSince !== undefined) {
      this.#s.logger.info(
        `The outbox relay of "${this.#s.table}" works again after ${
          Date.now() - this.#databaseFailingSince
        } ms: the database answers`,
      );
      this.#databaseFailingSince = undefined;
    }
  }

  /** Says the target takes events again, if it had failed. */
  #targetRecovered(): void {
    if (this.#targetFailingSince !== undefined) {
      this.#s.logger.info(
        `The outbox relay of "${this.#s.table}" works again after ${
          Date.now() - this.#targetFailingSince
        } ms: "${this.#s.target.name}" takes events`,
      );
      this.#targetFailingSince = undefined;
    }
  }

  #targetFailed(error: unknown, rows: number): void {
    const first = this.#targetFailingSince === undefined;
    this.#targetFailingSince ??= Date.now();
    const level = first ? "warn" : "debug";
    this.#s.logger[level](
      `Cannot relay ${rows} outbox row(s) of "${this.#s.table}" to "${this.#s.target.name}": ${
        describeError(error)
      }; the rows stay in the table and the relay backs off`,
      { error },
    );
  }

  /** Logs a database failure; returns the pause before the next try. */
  #databaseFailed(error: unknown, failures: number): number {
    const { logger, table, pollInterval } = this.#s;
    if (isMissingTable(error)) {
      const now = Date.now();
      this.#missingSince ??= now;
      if (
        now - this.#missingSince >= MISSING_TABLE_GRACE &&
        this.#databaseFailingSince === undefined
      ) {
        this.#databaseFailingSince = this.#missingSince;
        logger.warn(
          `Cannot relay from outbox "${table}": the table does not exist, call outbox.migrate() or run migrationSql() in your migrations; the relay keeps polling`,
          { error },
        );
      }
      return pollInterval;
    }
    const first = this.#databaseFailingSince === undefined;
    this.#databaseFailingSince ??= Date.now();
    const delay = backoff(this.#s, failures);
    logger[first ? "warn" : "debug"](
      `Cannot relay from outbox "${table}": the database failed (${
        describeError(error)
      }), retrying in ${delay} ms; no row is lost`,
      { error },
    );
    return delay;
  }

  /** Waits `ms`, or until woken or stopped. */
  async #idle(ms: number): Promise<void> {
    if (this.#woken) {
      this.#woken = false;
      return;
    }
    if (this.#stopping.signal.aborted) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    });
    this.#wake = undefined;
    this.#woken = false;
  }

  #listen(): void {
    const listen = this.#s.sql.listen;
    if (listen === undefined) {
      this.#s.logger.warn(
        `Cannot listen for notifications on outbox "${this.#s.table}": its executor has no listen(), use postgresJs(sql), pg(pool) or bunSql(sql); the relay polls every ${this.#s.pollInterval} ms`,
      );
      return;
    }
    listen.call(this.#s.sql, this.#s.channel, () => this.wake()).then(
      (listener) => {
        if (this.#stopping.signal.aborted) {
          listener.close().catch(() => {});
        } else {
          this.#listener = listener;
        }
      },
      (error: unknown) =>
        this.#s.logger.warn(
          `Cannot listen for notifications on outbox "${this.#s.table}": ${
            describeError(error)
          }; the relay polls every ${this.#s.pollInterval} ms`,
          { error },
        ),
    );
  }
}

/**
 * Rows grouped into chains published one after another: the rows of one
 * partition key, in commit order; every row without a key alone.
 */
function chainsOf(rows: readonly Claimed[]): Claimed[][] {
  const chains: Claimed[][] = [];
  const byKey = new Map<string, Claimed[]>();
  for (const row of rows) {
    if (row.key === null) {
      chains.push([row]);
      continue;
    }
    const chain = byKey.get(row.key);
    if (chain === undefined) {
      const created = [row];
      byKey.set(row.key, created);
      chains.push(created);
    } else {
      chain.push(row);
    }
  }
  return chains;
}

/** Exponential backoff with full jitter, at least `initial / 2`. */
function backoff(s: RelaySettings, failures: number): number {
  const ceiling = Math.min(
    s.backoffMax,
    s.backoffInitial * 2 ** Math.min(failures - 1, 30),
  );
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}

function compare(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
