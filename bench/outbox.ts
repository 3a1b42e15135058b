// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * The PostgreSQL outbox, measured on its own (not part of `deno task bench`):
 *
 * 1. commit → handler latency, p50 / p99, of events committed one at a time,
 *    with the relay polling (default 500 ms) and with `notify: true`;
 * 2. throughput: one relay draining committed rows to a JetStream worker,
 *    against 16 writers doing a raw `INSERT` and a JetStream publish by hand
 *    (no outbox: not atomic).
 *
 * ```sh
 * deno run -A bench/outbox.ts           # PostgreSQL on 127.0.0.1:5432, NATS on 4222
 * deno run -A bench/outbox.ts --quick
 * ```
 *
 * @module
 */

import postgres from "postgres";
import process from "node:process";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { EventBus } from "@eventbus/core";
import { JetStreamBackend } from "@eventbus/nats";
import { postgresJs, PostgresOutbox } from "@eventbus/core/postgres";
import { quantile, sleep } from "./_util.ts";

type Events = { "order.placed": { n: number } };

const QUICK = process.argv.includes("--quick");
const DATABASE_URL = process.env.EVENTBUS_PG_URL ??
  "postgres://postgres@127.0.0.1:5432/eventbus_test";
const SERVERS = process.env.NATS_URL ?? "127.0.0.1:4222";
const LATENCY_EVENTS = QUICK ? 40 : 200;
const THROUGHPUT_EVENTS = QUICK ? 2_000 : 20_000;
const WRITERS = 16;

const sql = postgres(DATABASE_URL, { max: WRITERS + 4, onnotice() {} });
const cleanups: (() => Promise<unknown>)[] = [];

try {
  for (const notify of [false, true]) {
    const { p50, p99 } = await latency(notify);
    console.log(
      `1. commit → handler, ${notify ? "notify" : "polling 500 ms"}: p50 ${
        p50.toFixed(1)
      } ms, p99 ${p99.toFixed(1)} ms (${LATENCY_EVENTS} events)`,
    );
  }
  const outbox = await throughput("outbox");
  const raw = await throughput("raw");
  console.log(
    `2. ${THROUGHPUT_EVENTS} events: one relay ${
      outbox.toFixed(0)
    }/s (committed rows to handler), raw INSERT + publish by ${WRITERS} writers ${
      raw.toFixed(0)
    }/s (${(outbox / raw).toFixed(2)}×)`,
  );
} finally {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
  await sql.end();
}

/** A unique table and stream, dropped and deleted at the end. */
function names(tag: string): { table: string; stream: string; prefix: string } {
  const id = crypto.randomUUID().slice(0, 8);
  const table = `bench_${tag}_${id}`;
  const stream = `BENCH_${tag.toUpperCase()}_${id}`;
  cleanups.push(async () => {
    await sql.unsafe(
      `DROP TABLE IF EXISTS ${table}, ${table}_dead; DROP SEQUENCE IF EXISTS ${table}_commit_seq; DROP FUNCTION IF EXISTS ${table}_commit()`,
    );
    const nc = await connect({ servers: SERVERS });
    const jsm = await jetstreamManager(nc);
    for (const name of [stream, `${stream}_DLQ`]) {
      await jsm.streams.delete(name).catch(() => false);
    }
    await nc.close();
  });
  return { table, stream, prefix: stream.toLowerCase() };
}

function target(stream: string, prefix: string): Promise<JetStreamBackend> {
  return JetStreamBackend.connect({ servers: SERVERS }, {
    stream,
    subjectPrefix: prefix,
  });
}

/** A worker bus calling `onEvent` for each delivery. */
async function worker(
  stream: string,
  prefix: string,
  onEvent: (n: number) => void,
): Promise<EventBus<Events>> {
  const bus = new EventBus<Events>({
    backend: await target(stream, prefix),
  });
  bus.subscribe("order.placed", (event) => onEvent(event.data.n), {
    async: true,
    name: "bench",
  });
  await bus.listen();
  cleanups.push(() => bus.close({ timeout: 5_000 }));
  return bus;
}

async function latency(notify: boolean): Promise<{ p50: number; p99: number }> {
  const { table, stream, prefix } = names(notify ? "notify" : "poll");
  const committedAt = new Map<number, number>();
  const receivedAt = new Map<number, number>();
  let done!: () => void;
  const all = new Promise<void>((resolve) => (done = resolve));
  await worker(stream, prefix, (n) => {
    receivedAt.set(n, performance.now());
    if (receivedAt.size === LATENCY_EVENTS) done();
  });
  const outbox = new PostgresOutbox({
    sql: postgresJs(sql),
    target: await target(stream, prefix),
    table,
    notify,
  });
  cleanups.push(() => outbox.close({ timeout: 5_000 }));
  await outbox.migrate();
  const bus = new EventBus<Events>({ backend: outbox });
  for (let n = 0; n < LATENCY_EVENTS; n++) {
    await sql.begin((tx) =>
      bus.emit("order.placed", { n }, { tx: postgresJs(tx) })
    );
    committedAt.set(n, performance.now());
    await sleep(10 + Math.random() * 40);
  }
  await all;
  // A notified event can reach the handler before the commit's reply
  // reaches the writer: that latency counts as 0.
  const sorted = Float64Array.from(
    [...receivedAt].map(([n, at]) => Math.max(0, at - committedAt.get(n)!)),
  ).sort();
  return { p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99) };
}

/**
 * "outbox": rows already committed (100 per transaction) are relayed by one
 * relay until the worker received them all. "raw": 16 writers each INSERT a
 * row and publish its event by hand, as an application without an outbox.
 */
async function throughput(mode: "outbox" | "raw"): Promise<number> {
  const { table, stream, prefix } = names(mode);
  let received = 0;
  let done!: () => void;
  const all = new Promise<void>((resolve) => (done = resolve));
  await worker(stream, prefix, () => {
    if (++received === THROUGHPUT_EVENTS) done();
  });
  const backend = await target(stream, prefix);
  if (mode === "outbox") {
    const writer = new PostgresOutbox({
      sql: postgresJs(sql),
      target: backend,
      table,
      relay: false,
    });
    await writer.migrate();
    const bus = new EventBus<Events>({ backend: writer });
    for (let n = 0; n < THROUGHPUT_EVENTS; n += 100) {
      await sql.begin(async (tx) => {
        for (let i = n; i < Math.min(n + 100, THROUGHPUT_EVENTS); i++) {
          await bus.emit("order.placed", { n: i }, { tx: postgresJs(tx) });
        }
      });
    }
    const started = performance.now();
    const relay = new PostgresOutbox({
      sql: postgresJs(sql),
      target: backend,
      table,
      batchSize: 500,
      concurrency: 64,
    });
    cleanups.push(() => relay.close({ timeout: 5_000 }));
    await all;
    return THROUGHPUT_EVENTS / ((performance.now() - started) / 1000);
  }
  cleanups.push(() => backend.close({ timeout: 5_000 }));
  await sql.unsafe(`CREATE TABLE ${table} (id text PRIMARY KEY, n int)`);
  const bus = new EventBus<Events>({ backend });
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: WRITERS }, async () => {
      while (next < THROUGHPUT_EVENTS) {
        const n = next++;
        const id = crypto.randomUUID();
        await sql.unsafe(`INSERT INTO ${table} (id, n) VALUES ($1, $2)`, [
          id,
          n,
        ]);
        await bus.emit("order.placed", { n }, { id });
      }
    }),
  );
  await all;
  return THROUGHPUT_EVENTS / ((performance.now() - started) / 1000);
}
