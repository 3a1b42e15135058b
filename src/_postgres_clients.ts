// Copyright 2026 the @eventbus/core authors. MIT license.
// How the outbox runs SQL: the one-method executor interface, and the
// adapters for postgres.js, Bun.sql and pg. Re-exported by src/postgres.ts.

const ADAPTED = new WeakSet<object>();

/**
 * What an executor's `query` resolves with: the rows, as objects keyed by
 * column name.
 *
 * @example The result of a query
 * ```ts
 * import type { SqlResult } from "@eventbus/core/postgres";
 * const result: SqlResult = { rows: [{ waiting: 0 }] };
 * console.assert(result.rows.length === 1);
 * ```
 */
export interface SqlResult {
  /** The rows returned (none for most statements). */
  readonly rows: readonly Record<string, unknown>[];
}

/**
 * A subscription to notifications, from {@linkcode SqlExecutor.listen}.
 *
 * @example A listener that does nothing
 * ```ts
 * import type { SqlListener } from "@eventbus/core/postgres";
 * const listener: SqlListener = { close: () => Promise.resolve() };
 * await listener.close();
 * ```
 */
export interface SqlListener {
  /** Stops listening. */
  close(): Promise<void>;
}

/**
 * How the outbox runs SQL: one method, as pg-boss's `executeSql`. Wrap a
 * client with {@linkcode postgresJs}, {@linkcode pg} or {@linkcode bunSql},
 * or write your own for an ORM's transaction (Drizzle, Kysely, Prisma): it
 * must run `text` with the positional parameters `$1`, `$2`, … on one
 * connection (the transaction's, for `emit(…, { tx })`).
 *
 * @example An executor for any client with a `query(text, params)` method
 * ```ts
 * import type { SqlExecutor } from "@eventbus/core/postgres";
 * interface Client {
 *   query(text: string, params: unknown[]): Promise<{ rows: Record<string, unknown>[] }>;
 * }
 * function fromClient(client: Client): SqlExecutor {
 *   return { query: (text, params) => client.query(text, [...params]) };
 * }
 * const executor = fromClient({ query: () => Promise.resolve({ rows: [] }) });
 * console.assert((await executor.query("SELECT 1", [])).rows.length === 0);
 * ```
 */
export interface SqlExecutor {
  /**
   * Runs one statement.
   *
   * @param text SQL with `$1`, `$2`, … placeholders.
   * @param params The values: strings or null.
   * @returns The rows.
   */
  query(text: string, params: readonly unknown[]): Promise<SqlResult>;
  /**
   * Optional: listens for `NOTIFY` on a dedicated connection that outlives
   * reconnects, for the relay's `notify` option.
   *
   * @param channel The channel name.
   * @param onNotification Called with each notification's payload.
   * @returns Once listening.
   */
  listen?(
    channel: string,
    onNotification: (payload: string) => void,
  ): Promise<SqlListener>;
}

/**
 * The part of a postgres.js `Sql` or `TransactionSql` (and of `Bun.sql`)
 * the adapters use.
 *
 * @example A postgres.js client fits
 * ```ts ignore
 * import postgres from "postgres";
 * import type { UnsafeSql } from "@eventbus/core/postgres";
 * const sql: UnsafeSql = postgres("postgres://127.0.0.1/shop");
 * ```
 */
export interface UnsafeSql {
  /** Runs `query` with positional parameters; resolves with the rows. */
  unsafe(query: string, parameters?: unknown[]): PromiseLike<readonly object[]>;
  /** Listens for notifications (not on a transaction). */
  listen?(
    channel: string,
    onNotification: (payload: string) => void,
  ): PromiseLike<{ unlisten(): PromiseLike<unknown> }>;
}

/**
 * The part of a `pg` `Client`, `PoolClient` or `Pool` the adapter uses.
 *
 * @example A pg pool fits
 * ```ts ignore
 * import PG from "pg";
 * import type { PgQueryable } from "@eventbus/core/postgres";
 * const pool: PgQueryable = new PG.Pool();
 * ```
 */
export interface PgQueryable {
  /** Runs `text` with positional values; resolves with the result. */
  query(text: string, values?: unknown[]): Promise<{ rows: unknown[] }>;
}

/**
 * Wraps a postgres.js client or transaction (`postgres` on npm, which runs
 * on Deno, Bun and Node) as an {@linkcode SqlExecutor}. On a client (not a
 * transaction), `listen` uses postgres.js's own reconnecting listener.
 *
 * @param sql `postgres(url)`, or the `tx` of `sql.begin(async (tx) => …)`.
 * @returns An executor.
 * @throws {TypeError} When `sql` has no `unsafe` method.
 *
 * @example Emitting inside `sql.begin`
 * ```ts ignore
 * await sql.begin(async (tx) => {
 *   await tx`insert into orders (id) values (${id})`;
 *   await bus.emit("order.placed", { id }, { tx: postgresJs(tx) });
 * });
 * ```
 */
export function postgresJs(sql: UnsafeSql): SqlExecutor {
  return fromUnsafe(sql, "postgresJs", "a postgres.js client or transaction");
}

/**
 * Wraps a `Bun.sql` client or transaction (`Bun.SQL`) as an
 * {@linkcode SqlExecutor}, with `listen` on a client.
 *
 * @param sql `Bun.sql`, `new Bun.SQL(url)`, or a transaction of `sql.begin`.
 * @returns An executor.
 * @throws {TypeError} When `sql` has no `unsafe` method.
 *
 * @example Emitting inside a Bun.sql transaction
 * ```ts ignore
 * import { sql } from "bun";
 * const outbox = new PostgresOutbox({ sql: bunSql(sql), target });
 * await sql.begin(async (tx) => {
 *   await bus.emit("order.placed", { id }, { tx: bunSql(tx) });
 * });
 * ```
 */
export function bunSql(sql: UnsafeSql): SqlExecutor {
  return fromUnsafe(sql, "bunSql", "a Bun.sql client or transaction");
}

/**
 * Wraps a `pg` (node-postgres) `Pool`, `Client` or `PoolClient` as an
 * {@linkcode SqlExecutor}. For `emit(…, { tx })` pass the client that ran
 * `BEGIN`, never the pool (whose queries may run on any connection). On a
 * `Pool`, `listen` holds one dedicated client and takes a new one when its
 * connection breaks.
 *
 * @param client A pool, or the client of your transaction.
 * @returns An executor.
 * @throws {TypeError} When `client` has no `query` method.
 *
 * @example A pool for the outbox, a client for the transaction
 * ```ts ignore
 * import PG from "pg";
 * const pool = new PG.Pool({ connectionString: "postgres://127.0.0.1/shop" });
 * const outbox = new PostgresOutbox({ sql: pg(pool), target });
 * const client = await pool.connect();
 * await client.query("BEGIN");
 * await bus.emit("order.placed", { id: "o-1" }, { tx: pg(client) });
 * await client.query("COMMIT");
 * client.release();
 * ```
 */
export function pg(client: PgQueryable): SqlExecutor {
  if (
    client === null || typeof client !== "object" ||
    typeof client.query !== "function"
  ) {
    throw new TypeError(
      `Cannot wrap with pg(): expected a pg Pool, Client or PoolClient with a query() method, got ${
        describeValue(client)
      }`,
    );
  }
  const executor: SqlExecutor = {
    query: async (text, params) => {
      const result = await client.query(text, [...params]);
      return { rows: result.rows as Record<string, unknown>[] };
    },
  };
  if (isPgPool(client)) {
    executor.listen = (channel, onNotification) =>
      listenOnPool(client, channel, onNotification);
    POOLS.add(executor);
  }
  ADAPTED.add(executor);
  return executor;
}

/** Executors made by pg() from a Pool: not a transaction. */
const POOLS = new WeakSet<object>();

function fromUnsafe(
  sql: UnsafeSql,
  adapter: string,
  expected: string,
): SqlExecutor {
  if (
    (typeof sql !== "function" && (sql === null || typeof sql !== "object")) ||
    typeof sql.unsafe !== "function"
  ) {
    throw new TypeError(
      `Cannot wrap with ${adapter}(): expected ${expected} (with an unsafe() method), got ${
        describeValue(sql)
      }`,
    );
  }
  const executor: SqlExecutor = {
    query: async (text, params) => {
      const rows = await sql.unsafe(text, [...params]);
      return { rows: rows as Record<string, unknown>[] };
    },
  };
  const listen = sql.listen;
  if (typeof listen === "function") {
    executor.listen = async (channel, onNotification) => {
      const { unlisten } = await listen.call(sql, channel, onNotification);
      return { close: async () => void await unlisten() };
    };
  }
  ADAPTED.add(executor);
  return executor;
}

interface PgNotification {
  channel: string;
  payload?: string | undefined;
}

interface PgPoolClient {
  query(text: string, values?: unknown[]): Promise<unknown>;
  on(
    event: "notification",
    listener: (message: PgNotification) => void,
  ): unknown;
  on(event: "error", listener: (error: Error) => void): unknown;
  release(destroy?: boolean | Error): void;
}

interface PgPool {
  connect(): Promise<PgPoolClient>;
  readonly totalCount: number;
}

function isPgPool(client: unknown): client is PgPool {
  const pool = client as Partial<PgPool>;
  return typeof pool.connect === "function" &&
    typeof pool.totalCount === "number";
}

/**
 * LISTEN on a client held out of the pool; when its connection breaks the
 * client is dropped and, after a pause, a new one listens again.
 */
async function listenOnPool(
  pool: PgPool,
  channel: string,
  onNotification: (payload: string) => void,
): Promise<SqlListener> {
  let closed = false;
  let current: PgPoolClient | undefined;
  let retry: ReturnType<typeof setTimeout> | undefined;
  const quoted = `"${channel.replaceAll('"', '""')}"`;
  const attach = async (): Promise<void> => {
    const client = await pool.connect();
    let broken = false;
    client.on("notification", (message) => {
      if (message.channel === channel) onNotification(message.payload ?? "");
    });
    client.on("error", (error) => {
      if (broken) return;
      broken = true;
      if (current === client) current = undefined;
      client.release(error);
      if (!closed) schedule();
    });
    try {
      await client.query(`LISTEN ${quoted}`);
    } catch (error) {
      if (!broken) {
        broken = true;
        client.release(error instanceof Error ? error : true);
      }
      throw error;
    }
    if (closed) {
      client.release(true);
      return;
    }
    current = client;
    onNotification(""); // anything sent while no one listened: poll now
  };
  const schedule = (): void => {
    retry = setTimeout(() => {
      retry = undefined;
      if (!closed) attach().catch(() => schedule());
    }, 1_000);
  };
  await attach();
  return {
    close: async () => {
      closed = true;
      clearTimeout(retry);
      const client = current;
      current = undefined;
      if (client === undefined) return;
      await client.query(`UNLISTEN ${quoted}`).catch(() => {});
      client.release(true);
    },
  };
}

/**
 * Checks that `value` is an executor; names the usual mistakes (a raw
 * postgres.js or Bun.sql transaction, a pg Pool as a transaction).
 */
export function checkExecutor(
  value: unknown,
  what: string,
  transaction = false,
): asserts value is SqlExecutor {
  const candidate = value as Partial<SqlExecutor & UnsafeSql> | null;
  const isObject = candidate !== null &&
    (typeof candidate === "object" || typeof candidate === "function");
  if (isObject && !ADAPTED.has(candidate)) {
    if (typeof candidate.unsafe === "function") {
      throw new TypeError(
        `${what} is a postgres.js or Bun.sql client, not an executor: wrap it as postgresJs(tx) or bunSql(tx)`,
      );
    }
  }
  if (!isObject || typeof candidate.query !== "function") {
    throw new TypeError(
      `${what} must be an SqlExecutor (an object with query(text, params)), such as postgresJs(tx), pg(client) or bunSql(tx); got ${
        describeValue(value)
      }`,
    );
  }
  if (transaction && (POOLS.has(candidate) || isPgPool(candidate))) {
    throw new TypeError(
      `${what} is a pg Pool, whose queries may run on any connection: pass the client that ran BEGIN, as pg(client)`,
    );
  }
}

export function describeValue(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "string") {
    return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  }
  if (typeof value === "number") return String(value);
  if (typeof value === "object") {
    const name = (value as { constructor?: { name?: string } }).constructor
      ?.name;
    return name !== undefined && name !== "Object" ? `a ${name}` : "an object";
  }
  return `a ${typeof value}`;
}
