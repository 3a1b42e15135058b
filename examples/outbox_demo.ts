// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * The transactional outbox demo. A shop process writes orders to
 * PostgreSQL and emits `order.placed` in the same transaction (some are
 * declined and rolled back); its relay publishes committed events to NATS
 * JetStream. The demo kills the shop with SIGKILL in the middle of a
 * transaction, starts a new relay, and checks that the worker received
 * exactly the committed orders: none lost, none invented, none twice.
 *
 * Run: `deno task example:outbox` (needs PostgreSQL on 127.0.0.1:5432, or
 * `DATABASE_URL`, and `nats-server -js` on 127.0.0.1:4222, or `NATS_URL`).
 *
 * @module
 */

import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import postgres from "postgres";
import { EventBus } from "@eventbus/core";
import { JetStreamBackend } from "@eventbus/nats";
import { postgresJs, PostgresOutbox } from "@eventbus/core/postgres";

type Events = { "order.placed": { order: string; total: number } };

const databaseUrl = process.env.DATABASE_URL ??
  "postgres://postgres@127.0.0.1:5432/postgres";
const servers = process.env.NATS_URL ?? "127.0.0.1:4222";

if (process.argv[2] === "shop") {
  await shop(process.argv[3]!);
} else {
  await demo();
}

/**
 * The shop process: places orders, each in one transaction with its event,
 * and relays committed events to JetStream, until it is killed.
 */
async function shop(id: string): Promise<void> {
  const sql = postgres(databaseUrl, { onnotice() {} });
  const outbox = new PostgresOutbox({
    sql: postgresJs(sql),
    target: await JetStreamBackend.connect({ servers }, streamNames(id)),
    table: `demo_${id}_outbox`,
    pollInterval: 100,
  });
  const bus = new EventBus<Events>({ backend: outbox });
  for (let n = 1; n <= 1_000; n++) {
    const order = `order-${n}`;
    const declined = n % 4 === 0;
    try {
      await sql.begin(async (tx) => {
        await tx.unsafe(
          `INSERT INTO demo_${id}_orders (id, total) VALUES ($1, $2)`,
          [order, n * 10],
        );
        await bus.emit("order.placed", { order, total: n * 10 }, {
          tx: postgresJs(tx),
          metadata: { partitionkey: order },
        });
        console.log(`writing ${order}`);
        await sleep(40); // the transaction is open: the demo may kill us here
        if (declined) throw new Error("card declined");
      });
      console.log(`placed ${order}`);
    } catch {
      console.log(`declined ${order}`);
    }
  }
}

/** Runs the shop, kills it mid-transaction, relays the rest, checks. */
async function demo(): Promise<void> {
  const id = crypto.randomUUID().slice(0, 8);
  const sql = postgres(databaseUrl, { onnotice() {} });
  const orders = `demo_${id}_orders`;
  const table = `demo_${id}_outbox`;
  let shopProcess: ChildProcess | undefined;
  let worker: EventBus<Events> | undefined;
  let outbox: PostgresOutbox | undefined;
  let failed = false;
  try {
    await sql.unsafe(
      `CREATE TABLE ${orders} (id text PRIMARY KEY, total int NOT NULL)`,
    );
    // The relay's table: migrate() once at startup (or put migrationSql()
    // into your own migrations).
    const setup = new PostgresOutbox({
      sql: postgresJs(sql),
      target: await JetStreamBackend.connect({ servers }, streamNames(id)),
      table,
      relay: false,
    });
    await setup.migrate();
    await setup.close();

    // The worker: a bus on JetStream that handles order.placed.
    const received: string[] = [];
    worker = new EventBus<Events>({
      backend: await JetStreamBackend.connect({ servers }, streamNames(id)),
    });
    worker.subscribe("order.placed", (event) => {
      received.push(event.data.order);
    }, { async: true, name: "fulfilment" });
    await worker.listen();

    // The shop, killed in the middle of its 11th transaction.
    const placed: string[] = [];
    const declined: string[] = [];
    let inFlight = "";
    shopProcess = start(["shop", id]);
    const killed = new Promise<void>((resolve, reject) => {
      let writing = 0;
      shopProcess!.once("exit", (code, signal) => {
        if (signal === "SIGKILL") resolve();
        else reject(new Error(`the shop exited with ${code}`));
      });
      createInterface({ input: shopProcess!.stdout! }).on("line", (line) => {
        const [what, order] = line.split(" ");
        if (what === "placed") placed.push(order!);
        if (what === "declined") declined.push(order!);
        if (what === "writing") {
          inFlight = order!;
          if (++writing === 11) shopProcess!.kill("SIGKILL");
        }
      });
    });
    await killed;
    console.log(
      `shop: ${placed.length} orders committed, ${declined.length} declined (rolled back), killed with SIGKILL while writing ${inFlight}`,
    );
    const committed = (await sql.unsafe(`SELECT id FROM ${orders} ORDER BY id`))
      .map((row) => String(row.id));
    const waiting = Number(
      (await sql.unsafe(`SELECT count(*)::int AS n FROM ${table}`))[0]?.n,
    );
    console.log(
      `database: ${committed.length} orders, ${waiting} events still in the outbox (the in-flight transaction left neither)`,
    );

    // Restart: a new relay publishes what the dead shop left. Rows it had
    // claimed come back after their lease (2 s here; JetStream drops a
    // copy the dead relay had already published).
    outbox = new PostgresOutbox({
      sql: postgresJs(sql),
      target: await JetStreamBackend.connect({ servers }, streamNames(id)),
      table,
      lease: 2_000,
      pollInterval: 100,
    });
    const deadline = Date.now() + 30_000;
    while (
      (received.length < committed.length ||
        (await outbox.stats()).waiting > 0) && Date.now() < deadline
    ) {
      await sleep(100);
    }
    await sleep(500); // a duplicate would arrive now
    const got = [...received].sort();
    const exact = got.length === committed.length &&
      got.every((order, i) => order === committed[i]);
    console.log(
      `worker: received ${received.length} orders: ${
        exact
          ? "exactly the committed ones, each once"
          : `MISMATCH with the ${committed.length} committed`
      }`,
    );
    if (!exact) failed = true;
  } catch (error) {
    failed = true;
    console.error(`demo failed: ${(error as Error).message}`);
  } finally {
    shopProcess?.kill("SIGKILL");
    await outbox?.close({ timeout: 5_000 });
    await worker?.close({ timeout: 5_000 });
    for (
      const statement of [
        `DROP TABLE IF EXISTS ${orders}, ${table}, ${table}_dead`,
        `DROP SEQUENCE IF EXISTS ${table}_commit_seq`,
        `DROP FUNCTION IF EXISTS ${table}_commit()`,
      ]
    ) {
      await sql.unsafe(statement).catch(() => {});
    }
    await sql.end();
    const nc = await connect({ servers }).catch(() => undefined);
    if (nc !== undefined) {
      const jsm = await jetstreamManager(nc);
      const { stream } = streamNames(id);
      for (const name of [stream, `${stream}_DLQ`]) {
        await jsm.streams.delete(name).catch(() => false);
      }
      await nc.close();
    }
  }
  if (failed) process.exit(1);
}

function streamNames(id: string): { stream: string; subjectPrefix: string } {
  return { stream: `DEMO_OUTBOX_${id}`, subjectPrefix: `demo_outbox_${id}` };
}

function start(args: string[]): ChildProcess {
  const path = fileURLToPath(import.meta.url);
  const argv = process.versions.bun !== undefined
    ? [path, ...args]
    : ["run", "-A", path, ...args];
  return spawn(process.execPath, argv, {
    env: process.env,
    stdio: ["ignore", "pipe", "inherit"],
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
