// Copyright 2026 the @eventbus/core authors. MIT license.
// The option, report and error types of PostgresOutbox. Re-exported by
// src/postgres.ts.

import type { AsyncBackend, CloseReport, Logger } from "./backend.ts";
import { BackendError } from "./errors.ts";
import type { SqlExecutor } from "./_postgres_clients.ts";
// deno-lint-ignore no-unused-vars -- for {@linkcode PostgresOutbox} in the docs
import type { PostgresOutbox } from "./postgres.ts";

/**
 * Options of {@linkcode PostgresOutbox}.
 *
 * @example A relay that wakes on NOTIFY and publishes bigger batches
 * ```ts ignore
 * import postgres from "postgres";
 * import { JetStreamBackend } from "@eventbus/nats";
 * import { PostgresOutbox, type PostgresOutboxOptions, postgresJs } from "@eventbus/core/postgres";
 * const sql = postgres("postgres://postgres@127.0.0.1:5432/shop");
 * const options: PostgresOutboxOptions = {
 *   sql: postgresJs(sql),
 *   target: await JetStreamBackend.connect({ servers: "127.0.0.1:4222" }),
 *   table: "shop.outbox",
 *   notify: true,
 *   batchSize: 500,
 * };
 * const outbox = new PostgresOutbox(options);
 * await outbox.close();
 * await sql.end();
 * ```
 */
export interface PostgresOutboxOptions {
  /**
   * Runs the outbox's own SQL: inserts without `tx`, `migrate()`, `stats()`
   * and, unless `relaySql` is given, the relay. A pool fits.
   */
  sql: SqlExecutor;
  /**
   * Where the relay publishes committed rows, and what `consume` attaches
   * to. The outbox closes it on `close()`.
   */
  target: AsyncBackend;
  /**
   * The outbox table, `[schema.]name` in lower case; the dead table is
   * `<name>_dead` beside it.
   * @default {"eventbus_outbox"}
   */
  table?: string;
  /**
   * Runs a relay in this process. Several relays (processes) may run at
   * once; a process that only emits or only consumes may run none.
   * @default {true}
   */
  relay?: boolean;
  /**
   * Runs the relay's SQL, for a relay on its own connection or pool.
   * @default {sql}
   */
  relaySql?: SqlExecutor;
  /**
   * The most rows the relay claims at once.
   * @default {100}
   */
  batchSize?: number;
  /**
   * How long the relay waits between polls when no row is waiting, in ms.
   * @default {500}
   */
  pollInterval?: number;
  /**
   * How long a claimed row stays with its relay, in ms. A relay that dies
   * leaves its rows to the others after this; the target must drop the
   * copies it then receives again, so keep it (plus a restart) below the
   * target's duplicate window (2 minutes on JetStream and Redis).
   * @default {30000}
   */
  lease?: number;
  /**
   * Wakes the relay with `NOTIFY` at each commit instead of waiting for the
   * next poll (polling goes on as a fallback). Off by default: a
   * transaction that notifies takes a database-wide lock at commit, which
   * slows many concurrent writers. Needs an executor with `listen()`.
   * @default {false}
   */
  notify?: boolean;
  /**
   * How many events the relay publishes at once (rows of one partition key
   * always one after another).
   * @default {16}
   */
  concurrency?: number;
  /**
   * How many times the relay tries a row that the target refuses while it
   * accepts other events, before it moves the row to the dead table. An
   * error that says no try can succeed (a `SerializationError`, or a
   * `BackendError` with `permanent: true`) moves it at once.
   * @default {10}
   */
  maxAttempts?: number;
  /**
   * The relay's pauses after failures, in ms: exponential from `initial`
   * up to `max`, with jitter. Applies while the target or the database is
   * down, and between tries of a refused row.
   * @default {{ initial: 200, max: 10000 }}
   */
  backoff?: { initial?: number; max?: number };
  /**
   * Receives the relay's warnings and errors.
   * @default {console for warn and error}
   */
  logger?: Logger;
}

/**
 * What {@linkcode PostgresOutbox.stats} reports.
 *
 * @example Alerting on a growing outbox
 * ```ts ignore
 * const { waiting, oldestAge } = await outbox.stats();
 * if (oldestAge > 60_000) console.warn(`${waiting} events wait, the oldest for ${oldestAge} ms`);
 * ```
 */
export interface OutboxStats {
  /** Rows in the outbox table: committed events not yet published. */
  waiting: number;
  /** Age of the oldest row, in ms; 0 when none waits. */
  oldestAge: number;
  /** Rows in the dead table: the outbox's `deadLetters`. */
  dead: number;
  /** Events this process's relay published since start. */
  published: number;
  /** Events per second this process's relay published over the last 10 s. */
  publishedPerSecond: number;
  /** Rows this process's relay moved to the dead table since start. */
  deadLettered: number;
}

/**
 * What {@linkcode PostgresOutbox.close} reports: the target's report, and
 * how many rows still wait in the table (safe there, so not abandoned).
 *
 * @example Logging what is left for the next relay
 * ```ts ignore
 * const report = await outbox.close();
 * console.log(`${report.waiting ?? "unknown"} events wait for the next relay`);
 * ```
 */
export interface OutboxCloseReport extends CloseReport {
  /**
   * Rows left in the outbox table; `undefined` when the database did not
   * answer. The next relay publishes them.
   */
  waiting: number | undefined;
}

/**
 * Options of {@linkcode migrationSql}.
 *
 * @example The DDL of a table in another schema
 * ```ts
 * import { migrationSql } from "@eventbus/core/postgres";
 * console.assert(migrationSql({ table: "app.outbox" }).includes('"app"."outbox"'));
 * ```
 */
export interface MigrationSqlOptions {
  /**
   * The outbox table, as in {@linkcode PostgresOutboxOptions.table}.
   * @default {"eventbus_outbox"}
   */
  table?: string;
}

/**
 * The outbox table (or its dead table) is missing: the outbox was used
 * before {@linkcode PostgresOutbox.migrate} (or your own migration of
 * {@linkcode migrationSql}) created it.
 *
 * @example Telling a missing migration from other failures
 * ```ts
 * import { OutboxNotMigratedError } from "@eventbus/core/postgres";
 * const error = new OutboxNotMigratedError("eventbus_outbox");
 * console.assert(error.name === "OutboxNotMigratedError");
 * console.assert(error.table === "eventbus_outbox");
 * ```
 */
export class OutboxNotMigratedError extends BackendError {
  /** The outbox table's name, as given to the outbox. */
  readonly table: string;

  /**
   * Creates the error.
   *
   * @param table The outbox table's name.
   * @param options Standard error options; `cause` is the driver's error.
   */
  constructor(table: string, options?: ErrorOptions) {
    super(
      "postgres-outbox",
      `Cannot use outbox table "${table}": it does not exist, call outbox.migrate() once at startup or run migrationSql() in your migrations`,
      options,
    );
    this.name = "OutboxNotMigratedError";
    this.table = table;
  }
}
