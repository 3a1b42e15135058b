// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * A transactional outbox on PostgreSQL (13 or later): `emit(…, { tx })`
 * writes the event as a row inside your own transaction, so the event
 * exists if and only if the transaction commits; a relay then publishes
 * committed rows to any backend (NATS JetStream first) with the event id as
 * the broker's de-duplication key, and deletes each row only once the broker
 * accepted it.
 *
 * No PostgreSQL client is a dependency: the outbox runs SQL through a
 * one-method {@linkcode SqlExecutor}, and {@linkcode postgresJs},
 * {@linkcode pg} and {@linkcode bunSql} wrap the client you already use.
 *
 * @example An order and its event, committed together
 * ```ts ignore
 * import postgres from "postgres";
 * import { EventBus } from "@eventbus/core";
 * import { JetStreamBackend } from "@eventbus/nats";
 * import { PostgresOutbox, postgresJs } from "@eventbus/core/postgres";
 *
 * type Events = { "order.placed": { id: string } };
 * const sql = postgres("postgres://postgres@127.0.0.1:5432/shop");
 * const outbox = new PostgresOutbox({
 *   sql: postgresJs(sql),
 *   target: await JetStreamBackend.connect({ servers: "127.0.0.1:4222" }),
 * });
 * await outbox.migrate();
 * const bus = new EventBus<Events>({ backend: outbox });
 *
 * await sql.begin(async (tx) => {
 *   await tx`insert into orders (id) values ('o-1')`;
 *   await bus.emit("order.placed", { id: "o-1" }, { tx: postgresJs(tx) });
 * });
 * // The relay publishes the committed row to JetStream; workers listen() there.
 * await bus.close();
 * await sql.end();
 * ```
 *
 * @module
 */

import type {
  AsyncBackend,
  CloseOptions,
  CloseReport,
  ConsumeOptions,
  Deliver,
  Logger,
  PublishOptions,
} from "./backend.ts";
import { BackendError, describeError, EventBusClosedError } from "./errors.ts";
import { encodeEvent, type Event } from "./event.ts";
import { deadline, untilDeadline, withTimeout } from "./_async.ts";
import type { DeadLetters } from "./dead_letters.ts";
import {
  type MigrationSqlOptions,
  type OutboxCloseReport,
  OutboxNotMigratedError,
  type OutboxStats,
  type PostgresOutboxOptions,
} from "./_postgres_types.ts";
import {
  checkExecutor,
  type SqlExecutor,
  type SqlResult,
} from "./_postgres_clients.ts";
import { Relay } from "./_outbox_relay.ts";
import { DEFAULT_TABLE, resolveOutboxOptions } from "./_outbox_options.ts";
import { OutboxDeadLetters } from "./_outbox_dead_letters.ts";
import { isMissingTable, outboxSqlError } from "./_outbox_errors.ts";
import {
  migrationBlock,
  migrationText,
  type OutboxNames,
  outboxNames,
  type OutboxStatements,
} from "./_outbox_sql.ts";

export { OutboxNotMigratedError } from "./_postgres_types.ts";
export type {
  MigrationSqlOptions,
  OutboxCloseReport,
  OutboxStats,
  PostgresOutboxOptions,
} from "./_postgres_types.ts";
export {
  bunSql,
  pg,
  type PgQueryable,
  postgresJs,
  type SqlExecutor,
  type SqlListener,
  type SqlResult,
  type UnsafeSql,
} from "./_postgres_clients.ts";

const BACKEND = "postgres-outbox";
/** How long close() waits for the count of waiting rows. */
const COUNT_TIMEOUT = 5_000;

/**
 * The SQL that creates the outbox table, its dead table, indexes, commit
 * sequence and trigger: idempotent statements for your own migration tool
 * ({@linkcode PostgresOutbox.migrate} runs the same). Needs PostgreSQL 13
 * or later.
 *
 * @param options The table name.
 * @returns The DDL, one statement after another.
 * @throws {TypeError} When the table name is not a lower-case SQL name.
 *
 * @example Writing the migration to a file
 * ```ts
 * import { migrationSql } from "@eventbus/core/postgres";
 * const ddl = migrationSql();
 * console.assert(ddl.includes('CREATE TABLE IF NOT EXISTS "eventbus_outbox"'));
 * ```
 */
export function migrationSql(options: MigrationSqlOptions = {}): string {
  return migrationText(outboxNames(options.table ?? DEFAULT_TABLE));
}

/**
 * A transactional outbox on PostgreSQL, as an {@linkcode AsyncBackend}.
 *
 * - `publish` (what `emit` calls) inserts one row: in your transaction when
 *   `emit` got `{ tx }` (the event then exists if and only if it commits),
 *   else on its own. An id already waiting in the table is not added again.
 * - The relay (started by the constructor, stopped by `close()`) claims
 *   committed rows in batches under a lease with `FOR UPDATE SKIP LOCKED`,
 *   in one short statement, publishes each to `target` (the event id is the
 *   broker's de-duplication key), and deletes a row only once the target
 *   accepted it. Several relays may run at once. A relay that dies after
 *   the target's ack and before the delete leaves the row to be published
 *   again after the lease: the target drops the copy within its duplicate
 *   window.
 * - Order: rows are numbered at commit, and rows of one `partitionkey`
 *   (metadata) get their numbers in commit order; one relay publishes them
 *   in that order, one after another, even across retries and restarts.
 *   With several relays, events of one key may overtake each other.
 * - Faults: while the target or the database is down the rows stay and the
 *   relay backs off; a publish that fails with no other succeeding after it
 *   started counts no try against its row, so no outage moves a row to the
 *   dead table. A row the target refuses for good (or fails `maxAttempts`
 *   times while other events get through) moves to the dead table
 *   `<table>_dead`: the outbox's {@linkcode PostgresOutbox.deadLetters}.
 * - `consume` attaches to `target`: workers may use the outbox or the
 *   target alike.
 *
 * @example Emitting inside a postgres.js transaction
 * ```ts ignore
 * import postgres from "postgres";
 * import { EventBus } from "@eventbus/core";
 * import { JetStreamBackend } from "@eventbus/nats";
 * import { PostgresOutbox, postgresJs } from "@eventbus/core/postgres";
 *
 * const sql = postgres("postgres://postgres@127.0.0.1:5432/shop");
 * const outbox = new PostgresOutbox({
 *   sql: postgresJs(sql),
 *   target: await JetStreamBackend.connect({ servers: "127.0.0.1:4222" }),
 * });
 * await outbox.migrate();
 * const bus = new EventBus<{ "order.placed": { id: string } }>({ backend: outbox });
 * await sql.begin(async (tx) => {
 *   await tx`insert into orders (id) values ('o-1')`;
 *   await bus.emit("order.placed", { id: "o-1" }, {
 *     tx: postgresJs(tx),
 *     metadata: { partitionkey: "o-1" }, // ordered with other events of o-1
 *   });
 * });
 * await bus.close(); // stops the relay after its batch, closes the target
 * await sql.end();
 * ```
 *
 * @example Emitting inside a pg transaction
 * ```ts ignore
 * import PG from "pg";
 * import { EventBus } from "@eventbus/core";
 * import { JetStreamBackend } from "@eventbus/nats";
 * import { pg, PostgresOutbox } from "@eventbus/core/postgres";
 *
 * const pool = new PG.Pool({ connectionString: "postgres://postgres@127.0.0.1:5432/shop" });
 * const outbox = new PostgresOutbox({
 *   sql: pg(pool),
 *   target: await JetStreamBackend.connect({ servers: "127.0.0.1:4222" }),
 * });
 * const bus = new EventBus<{ "order.placed": { id: string } }>({ backend: outbox });
 * const client = await pool.connect();
 * try {
 *   await client.query("BEGIN");
 *   await client.query("insert into orders (id) values ($1)", ["o-1"]);
 *   await bus.emit("order.placed", { id: "o-1" }, { tx: pg(client) });
 *   await client.query("COMMIT");
 * } catch (error) {
 *   await client.query("ROLLBACK");
 *   throw error;
 * } finally {
 *   client.release();
 * }
 * await bus.close();
 * await pool.end();
 * ```
 */
export class PostgresOutbox implements AsyncBackend, AsyncDisposable {
  /** Always `"postgres-outbox"`. */
  readonly name: string = BACKEND;
  /** Always `true`: events reach handlers through the target. */
  readonly remote: boolean = true;
  /**
   * The outbox's own dead letters: the rows of its dead table
   * `<table>_dead`, events the relay could not hand to the target. They
   * never reached the broker, so they were dead-lettered before any handler
   * ran: their `handler` is always `"outbox-relay"` (a filter on another
   * handler name matches none), `ref` is the row's number, `reason` is
   * `"rejected"` (the target refused the event for good, such as too large),
   * `"failed"` (`maxAttempts` tries while other events got through) or
   * `"invalid-event"` (the row's JSON is no event), `error` the target's
   * last error and `time` when the row died.
   *
   * `replay` moves rows back into the outbox table, in one statement (a
   * crash leaves each row dead or waiting, never neither), and the relay
   * publishes them again under the same event id; a row whose event id
   * already waits in the outbox stays dead. `purge` deletes rows.
   *
   * Handlers that fail after the broker delivered an event are dead-lettered
   * by the target: see the target's own `deadLetters`.
   *
   * @example Publishing again what the broker refused, once its limit is raised
   * ```ts ignore
   * for await (const letter of outbox.deadLetters.list({ limit: 20 })) {
   *   console.log(letter.ref, letter.event.type, letter.reason, letter.error);
   * }
   * const { replayed } = await outbox.deadLetters.replay({ ids: [eventId] });
   * ```
   */
  readonly deadLetters: DeadLetters;

  readonly #sql: SqlExecutor;
  readonly #target: AsyncBackend;
  readonly #names: OutboxNames;
  readonly #statements: OutboxStatements;
  readonly #notify: boolean;
  readonly #logger: Logger;
  readonly #relay: Relay | undefined;
  readonly #inserting = new Set<Promise<unknown>>();
  #closed = false;
  #closing: Promise<OutboxCloseReport> | undefined;

  /**
   * Creates the outbox and starts its relay (unless `relay: false`). The
   * relay waits for the table: call {@linkcode PostgresOutbox.migrate} (or
   * run {@linkcode migrationSql} in your migrations) before emitting.
   *
   * @param options The executor, the target, the table and the relay's
   *   settings.
   * @throws {TypeError} When `sql` or `relaySql` is not an executor, `target`
   *   is not a backend, or the table name is not a lower-case SQL name.
   * @throws {RangeError} When a number is out of range.
   */
  constructor(options: PostgresOutboxOptions) {
    const resolved = resolveOutboxOptions(
      options,
      (target) => target instanceof PostgresOutbox,
    );
    this.#sql = resolved.sql;
    this.#target = resolved.target;
    this.#names = resolved.names;
    this.#statements = resolved.statements;
    this.#notify = resolved.notify;
    this.#logger = resolved.logger;
    this.deadLetters = new OutboxDeadLetters(
      (text, params, what) => this.#run(text, params, what),
      this.#statements,
      () => this.#relay?.wake(),
    );
    if (resolved.relay !== undefined) {
      this.#relay = new Relay(resolved.relay);
      this.#relay.start();
    }
  }

  /** The target's queued deliveries in this process, for `bus.stats()`. */
  get queued(): number {
    return this.#target.queued ?? 0;
  }

  /** The outbox table's name, as given. */
  get table(): string {
    return this.#names.name;
  }

  /**
   * Creates the outbox table, its dead table, indexes, commit sequence and
   * trigger, if missing; safe to call at every startup and from several
   * processes at once. Then wakes the relay.
   *
   * @returns Once the schema exists.
   * @throws {EventBusClosedError} After `close()`.
   * @throws {BackendError} When the database refused the DDL (it needs
   *   PostgreSQL 13 or later and the right to create tables).
   *
   * @example Migrating at startup
   * ```ts ignore
   * const outbox = new PostgresOutbox({ sql: postgresJs(sql), target });
   * await outbox.migrate();
   * ```
   */
  async migrate(): Promise<void> {
    if (this.#closed) throw new EventBusClosedError();
    try {
      await this.#sql.query(migrationBlock(this.#names), []);
    } catch (error) {
      throw new BackendError(
        BACKEND,
        `Cannot migrate outbox table "${this.#names.name}": ${
          describeError(error)
        }, check that PostgreSQL is 13 or later and that the role may create tables (or run migrationSql() yourself)`,
        { cause: error },
      );
    }
    this.#relay?.wake();
  }

  /**
   * The statement that writes `event` to the outbox, for code that runs
   * SQL through something that is no {@linkcode SqlExecutor} (an ORM's raw
   * query, a trigger, another language): run it in your transaction.
   *
   * @param event The event, as `createEvent` makes it.
   * @returns The SQL text with `$1`…`$4` and its parameters (strings or null).
   * @throws {SerializationError} When the payload is not JSON-safe.
   *
   * @example Writing an event by hand
   * ```ts ignore
   * import { createEvent } from "@eventbus/core";
   * const { text, params } = outbox.insertStatement(createEvent("order.placed", { id: "o-1" }));
   * await tx.unsafe(text, params);
   * ```
   */
  insertStatement(event: Event): { text: string; params: (string | null)[] } {
    return { text: this.#statements.insert, params: this.#insertParams(event) };
  }

  /**
   * Writes the event as a row: with `options.tx`, in that transaction (the
   * event exists if and only if it commits); else on the outbox's own
   * executor. Resolves once the row is written; an event whose id already
   * waits in the table is not written again. The signal is checked before
   * the insert, which is never cut short (it may be part of your
   * transaction).
   *
   * @param event The event.
   * @param options `tx`: an executor of your transaction, such as
   *   `postgresJs(tx)`; `signal`.
   * @returns Once the row is written.
   * @throws {TypeError} When `tx` is not an executor.
   * @throws {EventBusClosedError} After `close()`.
   * @throws {OutboxNotMigratedError} When the table does not exist.
   * @throws {BackendError} When the database refused the insert.
   * @throws The signal's reason when it was aborted.
   */
  async publish(event: Event, options?: PublishOptions): Promise<void> {
    if (this.#closed) throw new EventBusClosedError(event.type);
    options?.signal?.throwIfAborted();
    const tx = options?.tx;
    let executor = this.#sql;
    if (tx !== undefined && tx !== null) {
      checkExecutor(
        tx,
        `Cannot emit "${event.type}" in a transaction: tx`,
        true,
      );
      executor = tx;
    }
    const params = this.#insertParams(event);
    const text = this.#notify
      ? this.#statements.insertNotify
      : this.#statements.insert;
    if (this.#notify) params.push(this.#names.channel);
    const insert = executor.query(text, params);
    this.#inserting.add(insert);
    try {
      await insert;
    } catch (error) {
      throw this.#insertError(error, event);
    } finally {
      this.#inserting.delete(insert);
    }
    if (tx === undefined || tx === null) this.#relay?.wake();
  }

  /**
   * Attaches consumers to the target.
   *
   * @param deliver Runs one try.
   * @param options The consumers, their signal and the logger.
   * @returns Once the target's consumers are ready.
   * @throws {EventBusClosedError} After `close()`.
   */
  consume(deliver: Deliver, options: ConsumeOptions): Promise<void> {
    if (this.#closed) return Promise.reject(new EventBusClosedError());
    return this.#target.consume(deliver, options);
  }

  /**
   * Counts what waits in the table and what this process's relay did.
   *
   * @returns Rows waiting, the oldest row's age, dead rows, and the relay's
   *   totals and rate.
   * @throws {OutboxNotMigratedError} When the table does not exist.
   * @throws {BackendError} When the database did not answer.
   *
   * @example Reading the backlog
   * ```ts ignore
   * const stats = await outbox.stats();
   * console.log(`${stats.waiting} waiting, ${stats.publishedPerSecond.toFixed(0)}/s`);
   * ```
   */
  async stats(): Promise<OutboxStats> {
    const row = await this.#select(this.#statements.stats, [], "count rows");
    return {
      waiting: Number(row?.waiting ?? 0),
      oldestAge: Math.max(0, Math.round(Number(row?.oldest_ms ?? 0))),
      dead: Number(row?.dead ?? 0),
      published: this.#relay?.published ?? 0,
      publishedPerSecond: this.#relay?.publishedPerSecond ?? 0,
      deadLettered: this.#relay?.deadLettered ?? 0,
    };
  }

  /**
   * Stops intake, stops the relay once its batch in flight is settled (at
   * `timeout` its publishes are aborted and its rows handed back to the
   * table), waits for inserts in flight, then closes the target. Rows still
   * in the table are safe there, for the next relay: the report counts them
   * as `waiting`, never as abandoned. Closing twice returns the same report.
   *
   * @param options Deadline (default 30 000 ms) and signal.
   * @returns The target's report and the rows still waiting.
   *
   * @example Closing at shutdown
   * ```ts ignore
   * const { waiting } = await outbox.close({ timeout: 10_000 });
   * console.log(`${waiting} rows left for the next relay`);
   * ```
   */
  close(options?: CloseOptions): Promise<OutboxCloseReport> {
    this.#closing ??= this.#close(options);
    return this.#closing;
  }

  /** Closes the outbox with the default timeout. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #close(options: CloseOptions | undefined): Promise<OutboxCloseReport> {
    const { timeout = 30_000, signal } = options ?? {};
    const end = Date.now() + timeout;
    this.#closed = true;
    const limit = deadline(timeout, signal);
    await this.#relay?.stop(limit);
    await untilDeadline(Promise.allSettled([...this.#inserting]), limit);
    limit[Symbol.dispose]();
    let waiting: number | undefined;
    const count = this.#sql.query(this.#statements.stats, []).then(
      ({ rows }) => {
        waiting = Number(rows[0]?.waiting ?? 0);
      },
      () => {},
    );
    await withTimeout(count, COUNT_TIMEOUT).catch(() => {});
    if (waiting !== undefined && waiting > 0) {
      this.#logger.info(
        `PostgresOutbox "${this.#names.name}" closed with ${waiting} row(s) waiting in the table for the next relay`,
      );
    }
    let report: CloseReport = { completed: 0, abandoned: [] };
    try {
      report = await this.#target.close({
        timeout: Math.max(0, end - Date.now()),
        signal,
      });
    } catch (error) {
      this.#logger.error(
        `Cannot close the target "${this.#target.name}" of outbox "${this.#names.name}": ${
          describeError(error)
        }`,
        { error },
      );
    }
    return { ...report, waiting };
  }

  #insertParams(event: Event): (string | null)[] {
    return [
      event.id,
      event.type,
      event.metadata.partitionkey ?? null,
      encodeEvent(event),
    ];
  }

  #insertError(error: unknown, event: Event): Error {
    if (isMissingTable(error)) {
      return new OutboxNotMigratedError(this.#names.name, { cause: error });
    }
    return new BackendError(
      BACKEND,
      `Cannot insert event "${event.type}" (id "${event.id}") into outbox table "${this.#names.name}": ${
        describeError(error)
      }; the event was not written, nor (in a transaction) anything after it`,
      { cause: error },
    );
  }

  async #run(
    text: string,
    params: readonly unknown[],
    what: string,
  ): Promise<SqlResult> {
    if (this.#closed) throw new EventBusClosedError();
    try {
      return await this.#sql.query(text, params);
    } catch (error) {
      throw outboxSqlError(error, this.#names.name, what);
    }
  }

  async #select(
    text: string,
    params: readonly unknown[],
    what: string,
  ): Promise<Record<string, unknown> | undefined> {
    const { rows } = await this.#run(text, params, what);
    return rows[0];
  }
}
