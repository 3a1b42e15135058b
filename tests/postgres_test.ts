// Copyright 2026 the @eventbus/core authors. MIT license.
// The PostgreSQL transactional outbox against the real PostgreSQL 15 on
// 127.0.0.1:5432 (database eventbus_test) and the real NATS JetStream on
// 127.0.0.1:4222 (a unique stream per test), with the postgres.js and pg
// drivers: atomicity, de-duplication after a relay crash, concurrent
// writers and relays, commit order per partition key, a killed relay
// connection, a broker outage (on a private nats-server), dead rows, close,
// stats, NOTIFY, and bad input.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { describe, it } from "node:test";
import { jetstream } from "@nats-io/jetstream";
import postgres from "postgres";
import PG from "pg";
import {
  type AsyncBackend,
  BackendError,
  createEvent,
  type DeadLetter,
  type DeadLetterFilter,
  type DeadLetters,
  type Event,
  EventBus,
  EventBusClosedError,
  SerializationError,
} from "../mod.ts";
import { JetStreamBackend } from "@eventbus/nats";
import {
  bunSql,
  migrationSql,
  OutboxNotMigratedError,
  pg,
  postgresJs,
  PostgresOutbox,
  type PostgresOutboxOptions,
  type SqlExecutor,
} from "../src/postgres.ts";
import { RecordingBackend } from "../src/testing.ts";
import { brokerMissing, reachable } from "./fixtures/_brokers.ts";
import { NatsServer, natsServerBinary } from "./fixtures/_nats_server.ts";
import { Counter, Deliveries, MemoryLogger } from "./fixtures/_util.ts";
import { Admin, uniqueNames } from "./fixtures/_nats.ts";
import { scriptCommand } from "./fixtures/_util.ts";
import {
  Db,
  type Driver,
  DRIVERS,
  PG_URL,
  postgresMissing,
  PostgresServer,
  privatePostgresMissing,
  uniqueTable,
  until,
} from "./fixtures/_postgres.ts";

type Events = {
  "order.placed": { n: number; pad?: string };
};

const NATS = "127.0.0.1:4222";
const TIMEOUT = 60_000;
const RELAY_SCRIPT = fileURLToPath(
  new URL("./fixtures/_outbox_relay.ts", import.meta.url),
);

/**
 * One test's world: a database client of one driver, a unique outbox table
 * and JetStream stream, and everything opened in it, closed and dropped on
 * dispose.
 */
class World implements AsyncDisposable {
  readonly db: Db;
  readonly table: string;
  readonly names: { stream: string; subjectPrefix: string };
  readonly admin: Admin;
  readonly logger: MemoryLogger = new MemoryLogger();
  readonly #closers: (() => Promise<unknown>)[] = [];
  readonly #servers: string;

  private constructor(
    db: Db,
    table: string,
    names: { stream: string; subjectPrefix: string },
    admin: Admin,
    servers: string,
  ) {
    this.db = db;
    this.table = table;
    this.names = names;
    this.admin = admin;
    this.#servers = servers;
  }

  static async open(
    driver: Driver,
    tag: string,
    servers = NATS,
  ): Promise<World> {
    const db = Db.open(driver);
    const names = uniqueNames(tag);
    const admin = await Admin.open(servers, names.stream);
    return new World(db, uniqueTable(tag), names, admin, servers);
  }

  /** A JetStream target on this world's stream. */
  target(options: { publishTimeout?: number } = {}): Promise<JetStreamBackend> {
    return JetStreamBackend.connect({ servers: this.#servers }, {
      ...this.names,
      ...options,
    });
  }

  /** An outbox on this world's table, closed on dispose. */
  outbox(
    options: Partial<PostgresOutboxOptions> & { target: AsyncBackend },
  ): PostgresOutbox {
    const outbox = new PostgresOutbox({
      sql: this.db.executor,
      table: this.table,
      pollInterval: 50,
      logger: this.logger,
      ...options,
    });
    this.#closers.push(() => outbox.close({ timeout: 5_000 }));
    return outbox;
  }

  /**
   * A bus that writes rows to this world's (migrated) table and relays
   * nothing: a producer whose relay runs elsewhere.
   */
  async writer(): Promise<EventBus<Events>> {
    const outbox = this.outbox({
      target: new RecordingBackend(),
      relay: false,
    });
    await outbox.migrate();
    return this.bus(outbox);
  }

  /** A bus on `backend`, closed on dispose. */
  bus(backend: AsyncBackend): EventBus<Events> {
    const bus = new EventBus<Events>({ backend, logger: this.logger });
    this.#closers.push(() => bus.close({ timeout: 5_000 }));
    return bus;
  }

  /**
   * A worker: a bus on its own JetStream connection whose async handler
   * "worker" records every delivery, listening before it returns.
   */
  async worker(
    options: { ordered?: boolean; ackWait?: number } = {},
  ): Promise<{ deliveries: Deliveries; events: Event[] }> {
    const deliveries = new Deliveries();
    const events: Event[] = [];
    const backend = await JetStreamBackend.connect(
      { servers: this.#servers },
      { ...this.names, ...options, concurrency: 32 },
    );
    const bus = this.bus(backend);
    bus.subscribe("order.placed", (event) => {
      events.push(event);
      deliveries.record(event.id);
    }, { async: true, name: "worker" });
    await bus.listen();
    return { deliveries, events };
  }

  /** Messages the stream ever stored (duplicates dropped are not stored). */
  async stored(): Promise<number> {
    const info = await this.admin.jsm.streams.info(this.names.stream);
    return info.state.last_seq;
  }

  /** Rows waiting in the outbox table. */
  rows(): Promise<number> {
    return this.db.count(this.table);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const close of this.#closers.reverse()) {
      await close().catch(() => {});
    }
    await this.db.drop(this.table).catch(() => {});
    await this.db[Symbol.asyncDispose]();
    await this.admin[Symbol.asyncDispose]();
  }
}

/** Rows in the dead table of `world`. */
async function deadRows(world: World): Promise<number> {
  return await world.db.count(`${world.table}_dead`);
}

/** Every dead letter `filter` selects, in order. */
async function listed(
  dlq: DeadLetters,
  filter?: DeadLetterFilter,
): Promise<DeadLetter[]> {
  const letters: DeadLetter[] = [];
  for await (const letter of dlq.list(filter)) letters.push(letter);
  return letters;
}

/**
 * `target` whose publishes go through `publish`, which calls `pass()` to
 * hand the event on; consume and close go to `target` as they are.
 */
function intercepted(
  target: AsyncBackend,
  publish: (event: Event, pass: () => Promise<void>) => Promise<void>,
  name: string = target.name,
): AsyncBackend {
  return {
    name,
    remote: true,
    publish: (event, options) =>
      publish(event, () => target.publish(event, options)),
    consume: (deliver, options) => target.consume(deliver, options),
    close: (options) => target.close(options),
  };
}

/**
 * `target`, refusing each event for good (a `BackendError` with
 * `permanent: true`) while `refuse()` says so.
 */
function refusing(target: AsyncBackend, refuse: () => boolean): AsyncBackend {
  return intercepted(target, (_event, pass) =>
    refuse()
      ? Promise.reject(
        new BackendError("picky", "Cannot take it", { permanent: true }),
      )
      : pass(), "picky");
}

/**
 * An outbox of `world` whose target refuses every event for good, once it
 * dead-lettered `count` events emitted without a transaction.
 */
async function deadEvents(
  world: World,
  count: number,
): Promise<{ outbox: PostgresOutbox; events: Event[] }> {
  const outbox = world.outbox({
    target: refusing(new RecordingBackend(), () => true),
  });
  await outbox.migrate();
  const bus = world.bus(outbox);
  const events: Event[] = [];
  for (let n = 0; n < count; n++) {
    events.push(await bus.emit("order.placed", { n }));
  }
  await until(
    async () => await deadRows(world) === count,
    `${count} dead rows`,
  );
  return { outbox, events };
}

/** Resolves after `ms`. */
function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

const missing = await postgresMissing();
const natsUp = await reachable("127.0.0.1", 4222);

if (missing !== undefined) {
  brokerMissing("PostgresOutbox", missing);
} else if (!natsUp) {
  brokerMissing("PostgresOutbox", `no NATS server on ${NATS}`);
} else {
  for (const driver of DRIVERS) {
    describe(`PostgresOutbox with ${driver}`, () => {
      it("migrate() is idempotent and safe from several processes at once", {
        timeout: TIMEOUT,
      }, async () => {
        await using world = await World.open(driver, "migrate");
        const outbox = world.outbox({
          target: new RecordingBackend(),
          relay: false,
        });
        await Promise.all([outbox.migrate(), outbox.migrate()]);
        await outbox.migrate();
        assert.equal(await world.rows(), 0);
        assert.equal(await deadRows(world), 0);
        const [trigger] = await world.db.query(
          `SELECT count(*)::int AS n FROM pg_trigger WHERE tgrelid = $1::regclass`,
          [`"${world.table}"`],
        );
        assert.equal(trigger?.n, 1, "one commit trigger");
        // A dead table of an older migration, without the reason column,
        // gets it.
        await world.db.query(
          `ALTER TABLE "${world.table}_dead" DROP COLUMN reason`,
          [],
        );
        await outbox.migrate();
        const [column] = await world.db.query(
          `SELECT count(*)::int AS n FROM information_schema.columns
            WHERE table_name = $1 AND column_name = 'reason'`,
          [`${world.table}_dead`],
        );
        assert.equal(column?.n, 1, "the reason column");
      });

      it(
        "emit() in a rolled-back transaction leaves 0 rows and 0 deliveries; a committed one gives exactly 1 broker message with Nats-Msg-Id = event id",
        {
          timeout: TIMEOUT,
        },
        async () => {
          await using world = await World.open(driver, "atomic");
          const { deliveries, events } = await world.worker();
          // A probe consumer keeps the message in the (interest) stream so
          // its headers can be read after the worker acknowledged it.
          await world.admin.jsm.consumers.add(world.names.stream, {
            durable_name: "probe",
            ack_policy: "explicit",
          });
          const outbox = world.outbox({ target: await world.target() });
          await outbox.migrate();
          const bus = world.bus(outbox);

          let rolledBack: Event | undefined;
          await assert.rejects(
            world.db.begin(async (tx) => {
              rolledBack = await bus.emit("order.placed", { n: 1 }, { tx });
              assert.equal(
                Number(
                  (await tx.query(
                    `SELECT count(*)::int AS n FROM "${world.table}"`,
                    [],
                  )).rows[0]?.n,
                ),
                1,
                "the row exists inside the transaction",
              );
              throw new Error("roll back");
            }),
            /roll back/,
          );
          assert.equal(await world.rows(), 0, "no row after the rollback");

          const committed = await world.db.begin((tx) =>
            bus.emit("order.placed", { n: 2 }, { tx })
          );
          await deliveries.distinct.reach(1, 20_000, "deliveries");
          await until(async () => await world.rows() === 0, "the row deleted");
          await sleep(300); // a late second delivery would show now
          assert.deepEqual(deliveries.all, [committed.id]);
          assert.deepEqual(events[0]?.data, { n: 2 });
          assert.notEqual(rolledBack?.id, committed.id);
          assert.equal(await world.stored(), 1, "exactly one broker message");

          const js = jetstream(world.admin.nc);
          const probe = await js.consumers.get(world.names.stream, "probe");
          const message = await probe.next({ expires: 5_000 });
          assert.ok(message !== null, "the probe sees the message");
          assert.equal(message.headers?.get("Nats-Msg-Id"), committed.id);
          message.ack();
        },
      );

      it(
        "a relay that crashed after the broker's ack and before the delete republishes after the lease; the broker drops the copy and the handler sees the event once",
        {
          timeout: TIMEOUT,
        },
        async () => {
          await using world = await World.open(driver, "crash");
          const { deliveries } = await world.worker();
          const writer = world.outbox({
            target: new RecordingBackend(),
            relay: false,
          });
          await writer.migrate();
          const lease = 1_500;
          const [command, args] = scriptCommand(RELAY_SCRIPT, [
            driver,
            world.table,
            world.names.stream,
            world.names.subjectPrefix,
            String(lease),
          ]);
          const child = spawn(command, args, {
            stdio: ["ignore", "pipe", "inherit"],
          });
          const exited = new Promise<void>((resolve) =>
            child.once("exit", () => resolve())
          );
          try {
            const lines = createInterface({ input: child.stdout! });
            const acked = new Promise<string>((resolve, reject) => {
              lines.on("line", (line) => {
                if (line.startsWith("acked ")) resolve(line.slice(6));
              });
              child.once(
                "exit",
                (code) =>
                  reject(new Error(`the relay process exited with ${code}`)),
              );
            });
            const event = await world.db.begin((tx) =>
              world.bus(writer).emit("order.placed", { n: 1 }, { tx })
            );
            const id = await Promise.race([
              acked,
              sleep(30_000).then(() => {
                throw new Error("the relay process never acked");
              }),
            ]);
            assert.equal(id, event.id);
            child.kill("SIGKILL"); // crash: acked, not deleted
            await exited;
            assert.equal(await world.rows(), 1, "the row survived the crash");
            await deliveries.distinct.reach(1, 20_000, "the first delivery");
            assert.equal(await world.stored(), 1);

            // Restart: a new relay takes the row once the lease ran out.
            const relay = world.outbox({
              target: await world.target(),
              lease,
            });
            await until(
              async () => await world.rows() === 0,
              "the republished row deleted",
            );
            assert.equal(await world.stored(), 1, "the copy was dropped");
            assert.equal((await relay.stats()).published, 1, "republished");
            await sleep(500);
            assert.deepEqual(deliveries.all, [event.id], "handled once");
          } finally {
            child.kill("SIGKILL");
            await exited;
          }
        },
      );

      it(
        "closes with the relay's batch in flight published and reports the rows still waiting",
        {
          timeout: TIMEOUT,
        },
        async () => {
          await using world = await World.open(driver, "close");
          const recording = new RecordingBackend();
          let started = 0;
          const slow: AsyncBackend = {
            name: "slow",
            remote: true,
            async publish(event, options) {
              started++;
              await sleep(300);
              await recording.publish(event, options);
            },
            consume: (deliver, options) => recording.consume(deliver, options),
            close: () => recording.close(),
          };
          const writer = world.outbox({ target: recording, relay: false });
          await writer.migrate();
          const bus = world.bus(writer);
          for (let n = 0; n < 5; n++) {
            await bus.emit("order.placed", { n });
          }
          const idle = world.outbox({
            target: new RecordingBackend(),
            relay: false,
          });
          const report = await idle.close();
          assert.equal(report.waiting, 5, "5 rows wait for a relay");
          assert.deepEqual(report.abandoned, []);

          const relay = world.outbox({ target: slow, batchSize: 5 });
          await until(() => started === 5, "the batch in flight");
          const closed = await relay.close();
          assert.equal(recording.published.length, 5, "the batch finished");
          assert.equal(closed.waiting, 0);
          assert.equal(await world.rows(), 0);
          await assert.rejects(
            relay.publish(createEvent("order.placed", { n: 9 })),
            EventBusClosedError,
          );
          await assert.rejects(relay.migrate(), EventBusClosedError);
        },
      );

      it(
        "close() at its deadline hands the batch in flight back to the table untried",
        {
          timeout: TIMEOUT,
        },
        async () => {
          await using world = await World.open(driver, "deadline");
          let started = 0;
          const hanging: AsyncBackend = {
            name: "hanging",
            remote: true,
            publish(_event, options) {
              started++;
              return new Promise((_, reject) =>
                options?.signal?.addEventListener(
                  "abort",
                  () => reject(options.signal?.reason),
                  { once: true },
                )
              );
            },
            consume: () => Promise.resolve(),
            close: () => Promise.resolve({ completed: 0, abandoned: [] }),
          };
          const writer = world.outbox({
            target: new RecordingBackend(),
            relay: false,
          });
          await writer.migrate();
          for (let n = 0; n < 3; n++) {
            await world.bus(writer).emit("order.placed", { n });
          }
          const relay = world.outbox({ target: hanging });
          await until(() => started === 3, "the batch in flight");
          const report = await relay.close({ timeout: 200 });
          assert.equal(report.waiting, 3);
          const rows = await world.db.query(
            `SELECT attempts, lease_until FROM "${world.table}"`,
          );
          assert.deepEqual(
            rows.map((r) => [r.attempts, r.lease_until]),
            [[0, null], [0, null], [0, null]],
            "free again, the claim's attempt taken back",
          );
        },
      );

      it(
        "pg_terminate_backend on the relay's connection mid-batch: the relay resumes and no event is lost",
        {
          timeout: TIMEOUT,
        },
        async () => {
          const application = `relay-${crypto.randomUUID().slice(0, 8)}`;
          await using relayDb = Db.open(driver, { max: 1, application });
          await using world = await World.open(driver, "terminate");
          const { deliveries } = await world.worker();
          const total = 1_000;
          const bus = await world.writer();
          await world.db.begin(async (tx) => {
            for (let n = 0; n < total; n++) {
              await bus.emit("order.placed", { n }, { tx });
            }
          });
          const jetstreamTarget = await world.target();
          let published = 0;
          let killing: Promise<boolean> | undefined;
          const target = intercepted(jetstreamTarget, async (_event, pass) => {
            await pass();
            if (++published !== 150) return;
            // Mid-batch (the second one): block the table so that the
            // relay's next statement waits on the lock, then terminate
            // the relay's connection while that statement runs.
            let locked!: () => void;
            const lockTaken = new Promise<void>((r) => (locked = r));
            killing = world.db.begin(async (tx) => {
              await tx.query(`LOCK TABLE "${world.table}" IN SHARE MODE`, []);
              locked();
              let terminated = false;
              await until(async () => {
                const { rows } = await tx.query(
                  `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity
                      WHERE application_name = $1::text AND wait_event_type = 'Lock'`,
                  [application],
                );
                terminated = rows.some((r) => r.ok === true);
                return terminated;
              }, "the relay waiting on the lock");
              return terminated;
            });
            await lockTaken;
          }, "killing");
          world.outbox({ target, relaySql: relayDb.executor });
          await deliveries.distinct.reach(total, 40_000, "deliveries");
          await until(
            async () => await world.rows() === 0,
            "every row deleted",
          );
          assert.equal(await killing, true, "the relay's connection died");
          assert.equal(deliveries.unique.size, total);
          assert.equal(await world.stored(), total, "no event published twice");
          assert.ok(
            world.logger.lines.some((l) => /database failed/.test(l.message)),
            "the relay saw the database fail",
          );
        },
      );

      it(
        "publishes the events of one partition key in commit order, not in the order their transactions started",
        {
          timeout: TIMEOUT,
        },
        async () => {
          await using world = await World.open(driver, "commitorder");
          const { events } = await world.worker({ ordered: true });
          const bus = await world.writer();
          const metadata = { partitionkey: "order-1" };
          // T1 writes first (lower xid, lower seq) and commits last.
          let release!: () => void;
          const hold = new Promise<void>((resolve) => (release = resolve));
          let firstWritten!: () => void;
          const written = new Promise<void>((
            resolve,
          ) => (firstWritten = resolve));
          const first = world.db.begin(async (tx) => {
            const event = await bus.emit("order.placed", { n: 1 }, {
              tx,
              metadata,
            });
            firstWritten();
            await hold;
            return event;
          });
          await written;
          const second = await world.db.begin((tx) =>
            bus.emit("order.placed", { n: 2 }, { tx, metadata })
          );
          release();
          const late = await first;
          // Both committed before any relay ran: only the commit numbers
          // can tell their order.
          world.outbox({ target: await world.target() });
          await until(() => events.length === 2, "both events");
          assert.deepEqual(events.map((e) => e.id), [second.id, late.id]);
        },
      );

      it("NOTIFY wakes the relay at commit long before its next poll", {
        timeout: TIMEOUT,
      }, async () => {
        await using world = await World.open(driver, "notify");
        const { deliveries } = await world.worker();
        const setup = world.outbox({
          target: new RecordingBackend(),
          relay: false,
        });
        await setup.migrate();
        const outbox = world.outbox({
          target: await world.target(),
          notify: true,
          pollInterval: 120_000,
        });
        await sleep(500); // the relay polled once and listens
        const started = Date.now();
        const event = await world.db.begin((tx) =>
          world.bus(outbox).emit("order.placed", { n: 1 }, { tx })
        );
        await deliveries.distinct.reach(1, 10_000, "the notified event");
        assert.deepEqual(deliveries.all, [event.id]);
        assert.ok(Date.now() - started < 10_000);
      });

      it(
        "deadLetters lists a row the broker refuses (too large) with its ref, event, handler, attempts, reason, error and time, and counts it",
        {
          timeout: TIMEOUT,
        },
        async () => {
          await using world = await World.open(driver, "dead");
          const { deliveries } = await world.worker();
          const outbox = world.outbox({
            target: await world.target(),
            maxAttempts: 1,
            relay: false,
          });
          await outbox.migrate();
          const bus = world.bus(outbox);
          const big = await world.db.begin(async (tx) => {
            const event = await bus.emit("order.placed", {
              n: 0,
              pad: "x".repeat(1_200_000), // above NATS's 1 MB max_payload
            }, { tx });
            for (let n = 1; n <= 5; n++) {
              await bus.emit("order.placed", { n }, { tx });
            }
            return event;
          });
          const before = Date.now();
          world.outbox({ target: await world.target(), maxAttempts: 1 });
          await deliveries.distinct.reach(5, 20_000, "the small events");
          await until(async () => await deadRows(world) === 1, "a dead row");
          assert.equal(await world.rows(), 0);
          assert.ok(!deliveries.unique.has(big.id));
          const dlq = outbox.deadLetters;
          const [seq] = await world.db.query(
            `SELECT seq::text AS seq FROM "${world.table}_dead"`,
            [],
          );
          const letters = await listed(dlq);
          assert.equal(letters.length, 1);
          const [letter] = letters;
          assert.equal(letter?.ref, seq?.seq);
          assert.deepEqual(letter?.event, big);
          assert.equal(letter?.handler, "outbox-relay");
          assert.equal(letter?.attempts, 1);
          // "failed" (1 of maxAttempts 1 while others got through), or
          // "rejected" once the target marks the refusal permanent.
          assert.match(letter?.reason ?? "", /^(failed|rejected)$/);
          assert.match(letter?.error ?? "", /BackendError/);
          assert.match(
            letter?.time ?? "",
            /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/,
          );
          const time = Date.parse(letter!.time);
          assert.ok(
            time >= before - 5_000 && time <= Date.now() + 5_000,
            `time ${letter!.time}`,
          );
          assert.equal(await dlq.count(), 1);
          assert.equal(await dlq.count({ handler: "outbox-relay" }), 1);
          assert.equal(await dlq.count({ type: "order.placed" }), 1);
          assert.equal(await dlq.count({ handler: "worker" }), 0);
          assert.equal(await dlq.count({ type: "order.cancelled" }), 0);
          assert.deepEqual(await listed(dlq, { handler: "worker" }), []);
          assert.deepEqual(await listed(dlq, { limit: 0 }), []);
          assert.equal((await outbox.stats()).dead, 1);
        },
      );

      it(
        "a target that goes down mid-batch: the relay stops the batch, counts no try against its rows, backs off, and moves none to the dead table",
        {
          timeout: TIMEOUT,
        },
        async () => {
          await using world = await World.open(driver, "down");
          const bus = await world.writer();
          const total = 40;
          for (let n = 0; n < total; n++) {
            await bus.emit("order.placed", { n });
          }
          // Takes 5 events, then is down until the relay says it backs off.
          const taken = new RecordingBackend();
          let down = false;
          let refused = 0;
          const target = intercepted(taken, (_event, pass) => {
            if (!down && taken.published.length === 5 && refused === 0) {
              down = true;
            }
            if (!down) return pass();
            refused++;
            return Promise.reject(
              new BackendError("flaky", "Cannot publish: the broker is down"),
            );
          }, "flaky");
          const logger = new MemoryLogger();
          world.outbox({
            target,
            // One publish at a time: the batch's order is the broker's.
            concurrency: 1,
            maxAttempts: 1,
            backoff: { initial: 100, max: 100 },
            logger: {
              ...logger,
              warn: (message: string) => {
                logger.warn(message);
                // Back in the pause after the outage batch, not within it.
                if (/backs off/.test(message)) down = false;
              },
            },
          });
          await until(async () => await world.rows() === 0, "0 rows left");
          assert.equal(
            await deadRows(world),
            0,
            "an outage moves no row to the dead table",
          );
          assert.equal(refused, 1, "no publish after the first refusal");
          const ids = taken.published.map((event) => event.id);
          assert.equal(ids.length, total, "each event published once");
          assert.equal(new Set(ids).size, total);
          assert.equal(
            logger.lines.filter((l) => /backs off/.test(l.message)).length,
            1,
          );
          assert.ok(
            logger.lines.some((l) =>
              l.level === "info" && /works again .*"flaky" takes events/.test(
                l.message,
              )
            ),
            "and said it works again",
          );
        },
      );

      it(
        "a row the target refuses while it takes the others is tried maxAttempts times, then moves to the dead table as failed",
        {
          timeout: TIMEOUT,
        },
        async () => {
          await using world = await World.open(driver, "own");
          const bus = await world.writer();
          const events: Event[] = [];
          await world.db.begin(async (tx) => {
            for (let n = 0; n < 6; n++) {
              events.push(await bus.emit("order.placed", { n }, { tx }));
            }
          });
          const bad = events[0]!;
          const taken = new RecordingBackend();
          let tries = 0;
          const target = intercepted(taken, async (event, pass) => {
            if (event.id !== bad.id) return await pass();
            tries++;
            // Fails after the others of its batch were taken.
            await sleep(50);
            throw new BackendError("picky", "Cannot publish: refused");
          }, "picky");
          // The first try shares a batch with the other events; a later one
          // with an event emitted meanwhile (a try alone in its batch is an
          // outage, not counted).
          const relay = world.outbox({
            target,
            maxAttempts: 2,
            backoff: { initial: 10, max: 10 },
          });
          await until(
            () => tries === 1 && taken.published.length === 5,
            "try 1",
          );
          const late = await bus.emit("order.placed", { n: 6 });
          await until(async () => await deadRows(world) === 1, "a dead row");
          const [letter] = await listed(relay.deadLetters);
          assert.equal(letter?.event.id, bad.id);
          assert.equal(letter?.reason, "failed");
          assert.equal(letter?.attempts, 2);
          assert.match(letter?.error ?? "", /refused/);
          await until(async () => await world.rows() === 0, "0 rows left");
          assert.deepEqual(
            taken.published.map((event) => event.id).sort(),
            [...events.slice(1), late].map((event) => event.id).sort(),
          );
        },
      );

      it(
        "deadLetters.purge() with dryRun counts and changes nothing; without it deletes exactly the selected rows",
        {
          timeout: TIMEOUT,
        },
        async () => {
          await using world = await World.open(driver, "purge");
          const { outbox, events } = await deadEvents(world, 3);
          const dlq = outbox.deadLetters;
          const refs = (await listed(dlq)).map((letter) => letter.ref);
          assert.equal(refs.length, 3);
          assert.deepEqual(await dlq.purge({ dryRun: true }), { purged: 3 });
          assert.deepEqual(
            await dlq.purge({ refs: [refs[0]!], dryRun: true }),
            { purged: 1 },
          );
          assert.equal(await dlq.count(), 3, "a dry run removes nothing");
          assert.deepEqual(await dlq.purge({ handler: "worker" }), {
            purged: 0,
          });
          assert.deepEqual(await dlq.purge({ ids: ["no-such-id"] }), {
            purged: 0,
          });
          assert.deepEqual(await dlq.purge({ refs: ["not-a-seq"] }), {
            purged: 0,
          });
          assert.equal(await dlq.count(), 3);
          assert.deepEqual(await dlq.purge({ refs: [refs[0]!] }), {
            purged: 1,
          });
          assert.deepEqual(await dlq.purge({ ids: [events[1]!.id] }), {
            purged: 1,
          });
          assert.deepEqual(
            (await listed(dlq)).map((letter) => letter.event.id),
            [events[2]!.id],
          );
          assert.deepEqual(await dlq.purge({}), { purged: 1 });
          assert.equal(await dlq.count(), 0);
          assert.equal(await deadRows(world), 0);
        },
      );

      it(
        "deadLetters.replay() publishes a row the target refused for good again, delivered once with the same id",
        {
          timeout: TIMEOUT,
        },
        async () => {
          await using world = await World.open(driver, "replay");
          const { deliveries, events } = await world.worker();
          let refuse = true;
          let tries = 0;
          const outbox = world.outbox({
            target: refusing(await world.target(), () => {
              tries++;
              return refuse;
            }),
          });
          await outbox.migrate();
          const event = await world.db.begin((tx) =>
            world.bus(outbox).emit("order.placed", { n: 1 }, { tx })
          );
          await until(async () => await deadRows(world) === 1, "a dead row");
          assert.equal(tries, 1, "no retry of a permanent refusal");
          assert.equal((await outbox.stats()).deadLettered, 1);
          const dlq = outbox.deadLetters;
          const [letter] = await listed(dlq);
          assert.equal(letter?.reason, "rejected");
          assert.equal(letter?.attempts, 1);
          assert.match(letter?.error ?? "", /Cannot take it/);
          assert.deepEqual(letter?.event, event);

          assert.deepEqual(await dlq.replay({ dryRun: true }), {
            replayed: 1,
          });
          assert.deepEqual(await dlq.replay({ handler: "worker" }), {
            replayed: 0,
          });
          assert.deepEqual(await dlq.replay({ ids: ["no-such-id"] }), {
            replayed: 0,
          });
          assert.equal(await dlq.count(), 1, "nothing replayed yet");
          assert.equal(await world.rows(), 0);

          refuse = false;
          assert.deepEqual(await dlq.replay({ ids: [event.id] }), {
            replayed: 1,
          });
          assert.equal(await dlq.count(), 0);
          await deliveries.distinct.reach(1, 20_000, "the replayed event");
          await until(async () => await world.rows() === 0, "row deleted");
          await sleep(300); // a late second delivery would show now
          assert.deepEqual(deliveries.all, [event.id]);
          assert.deepEqual(events[0], event);
          assert.equal(tries, 2);
          assert.deepEqual(await dlq.replay({ ids: [event.id] }), {
            replayed: 0,
          });
        },
      );

      it(
        "deadLetters.replay() leaves a row dead while its event id waits in the outbox",
        {
          timeout: TIMEOUT,
        },
        async () => {
          await using world = await World.open(driver, "replay_taken");
          const { outbox, events: [event] } = await deadEvents(world, 1);
          await outbox.close();
          const writer = world.outbox({
            target: new RecordingBackend(),
            relay: false,
          });
          await world.bus(writer).emit("order.placed", { n: 2 }, {
            id: event!.id,
          });
          assert.equal(await world.rows(), 1);
          const dlq = writer.deadLetters;
          assert.deepEqual(await dlq.replay({ dryRun: true }), {
            replayed: 0,
          });
          assert.deepEqual(await dlq.replay({}), { replayed: 0 });
          assert.equal(await dlq.count(), 1, "still dead");
          assert.equal(await world.rows(), 1);
          await writer.close();
          await assert.rejects(dlq.count(), EventBusClosedError);
        },
      );

      it(
        "stats() counts the rows waiting, the oldest row's age and the relay's rate",
        {
          timeout: TIMEOUT,
        },
        async () => {
          await using world = await World.open(driver, "stats");
          const writer = world.outbox({
            target: new RecordingBackend(),
            relay: false,
          });
          await writer.migrate();
          const bus = world.bus(writer);
          for (let n = 0; n < 3; n++) await bus.emit("order.placed", { n });
          await sleep(200);
          const before = await writer.stats();
          assert.equal(before.waiting, 3);
          assert.ok(before.oldestAge >= 150, `age ${before.oldestAge}`);
          assert.equal(before.published, 0);
          const recording = new RecordingBackend();
          const relay = world.outbox({ target: recording });
          await until(async () => await world.rows() === 0, "rows published");
          const after = await relay.stats();
          assert.equal(after.waiting, 0);
          assert.equal(after.oldestAge, 0);
          assert.equal(after.published, 3);
          assert.ok(after.publishedPerSecond > 0);
          assert.equal(recording.published.length, 3);
        },
      );

      it("rejects bad input with typed errors and writes nothing", {
        timeout: TIMEOUT,
      }, async () => {
        await using world = await World.open(driver, "input");
        const target = new RecordingBackend();
        const outbox = world.outbox({ target, relay: false });
        const bus = world.bus(outbox);
        // Before migrate(): the table is missing.
        const early = bus.emit("order.placed", { n: 1 });
        await assert.rejects(early, OutboxNotMigratedError);
        await assert.rejects(early, BackendError);
        await assert.rejects(outbox.stats(), OutboxNotMigratedError);
        await assert.rejects(
          outbox.deadLetters.count(),
          OutboxNotMigratedError,
        );
        await outbox.migrate();

        await world.db.begin(async (tx) => {
          await assert.rejects(
            bus.emit("order.placed", { n: 1 }, { tx: { not: "an executor" } }),
            (error: unknown) =>
              error instanceof TypeError && /SqlExecutor/.test(error.message),
          );
          // The transaction is untouched: it still runs statements.
          await tx.query("SELECT 1", []);
        });
        const raw = postgres(PG_URL, { max: 1, onnotice() {} });
        try {
          await raw.begin(async (tx) => {
            await assert.rejects(
              bus.emit("order.placed", { n: 1 }, { tx }),
              (error: unknown) =>
                error instanceof TypeError &&
                /postgresJs\(tx\)/.test(error.message),
            );
          });
        } finally {
          await raw.end();
        }
        const pool = new PG.Pool({ connectionString: PG_URL, max: 1 });
        try {
          await assert.rejects(
            bus.emit("order.placed", { n: 1 }, { tx: pg(pool) }),
            (error: unknown) =>
              error instanceof TypeError && /pg Pool/.test(error.message),
          );
        } finally {
          await pool.end();
        }
        await assert.rejects(
          // @ts-expect-error: a bigint is not JSON
          bus.emit("order.placed", { n: 1n }),
          SerializationError,
        );
        assert.equal(await world.rows(), 0, "nothing was written");

        // An id already waiting is written once.
        await bus.emit("order.placed", { n: 1 }, { id: "same-id" });
        await bus.emit("order.placed", { n: 2 }, { id: "same-id" });
        assert.equal(await world.rows(), 1);

        assert.throws(
          () =>
            new PostgresOutbox({
              sql: world.db.executor,
              target,
              table: "Bad-Name",
            }),
          TypeError,
        );
        assert.throws(
          // @ts-expect-error: not an executor
          () => new PostgresOutbox({ sql: {}, target }),
          /SqlExecutor/,
        );
        assert.throws(
          // @ts-expect-error: not a backend
          () => new PostgresOutbox({ sql: world.db.executor, target: {} }),
          /AsyncBackend/,
        );
        assert.throws(
          () =>
            new PostgresOutbox({
              sql: world.db.executor,
              target,
              batchSize: 0,
            }),
          RangeError,
        );
        assert.throws(() => postgresJs({} as never), TypeError);
        assert.throws(() => pg(null as never), TypeError);
        assert.throws(() => bunSql(42 as never), TypeError);
        await assert.rejects(
          listed(outbox.deadLetters, { limit: -1 }),
          RangeError,
        );
        await assert.rejects(
          outbox.deadLetters.replay({ ids: "id" as never }),
          TypeError,
        );
        await assert.rejects(
          outbox.deadLetters.purge({ refs: [1] as never }),
          TypeError,
        );
      });
    });
  }

  describe("PostgresOutbox with several writers and relays", () => {
    it(
      "8 writers with random commit delays and 4 relays (postgres.js and pg) deliver 10 000 committed events, none lost, no rolled-back one, 0 rows left",
      {
        timeout: 120_000,
      },
      async () => {
        await using pgjsDb = Db.open("postgres.js", { max: 8 });
        await using pgDb = Db.open("pg", { max: 8 });
        const dbs = [pgjsDb, pgDb];
        await using world = await World.open("postgres.js", "load");
        const { deliveries } = await world.worker();
        const setup = world.outbox({
          target: new RecordingBackend(),
          relay: false,
        });
        await setup.migrate();
        {
          const relays: PostgresOutbox[] = [];
          for (let i = 0; i < 4; i++) {
            relays.push(world.outbox({
              target: await world.target(),
              sql: dbs[i % 2]!.executor,
              batchSize: 200,
              concurrency: 64,
            }));
          }
          const writer = world.bus(world.outbox({
            target: new RecordingBackend(),
            relay: false,
          }));
          const total = 10_000;
          const committed = new Set<string>();
          const rolledBack = new Set<string>();
          let reserved = 0;
          const lane = async (w: number): Promise<void> => {
            const db = dbs[w % 2]!;
            for (let round = 0; reserved < total && round < 10_000; round++) {
              const size = Math.min(
                1 + Math.floor(Math.random() * 40),
                total - reserved,
              );
              const rollBack = round % 7 === 3;
              if (!rollBack) reserved += size;
              const ids: string[] = [];
              try {
                await db.begin(async (tx) => {
                  for (let n = 0; n < size; n++) {
                    const event = await writer.emit("order.placed", { n }, {
                      tx,
                      metadata: { partitionkey: `k${n % 16}` },
                    });
                    ids.push(event.id);
                  }
                  await sleep(Math.random() * 20);
                  if (rollBack) throw new Error("roll back");
                });
                for (const id of ids) committed.add(id);
              } catch (error) {
                if (!rollBack) throw error;
                for (const id of ids) rolledBack.add(id);
              }
            }
          };
          await Promise.all(Array.from({ length: 8 }, (_, w) => lane(w)));
          assert.equal(committed.size, total);
          assert.ok(rolledBack.size > 0);
          await deliveries.distinct.reach(total, 60_000, "deliveries");
          await until(
            async () => await world.rows() === 0,
            "0 rows left",
            30_000,
          );
          for (const id of committed) {
            assert.ok(deliveries.unique.has(id), `delivered ${id}`);
          }
          for (const id of rolledBack) {
            assert.ok(!deliveries.unique.has(id), `not delivered ${id}`);
          }
          assert.equal(deliveries.unique.size, total);
          const stored = await world.stored();
          assert.equal(stored, total, "each event stored once");
          const published = await Promise.all(relays.map((r) => r.stats()));
          assert.equal(
            published.reduce((sum, s) => sum + s.published, 0),
            total,
            "each row published by one relay, once",
          );
          assert.ok(
            published.filter((s) => s.published > 0).length >= 2,
            "the relays shared the work",
          );
        }
      },
    );

    it(
      "with one relay, per partition key the broker receives events in commit order while a transaction holds an early row open for 2 s",
      {
        timeout: TIMEOUT,
      },
      async () => {
        await using world = await World.open("pg", "ordering");
        const { events } = await world.worker({ ordered: true });
        const writer = world.outbox({
          target: new RecordingBackend(),
          relay: false,
        });
        await writer.migrate();
        world.outbox({ target: await world.target() });
        const bus = world.bus(writer);
        const keys = ["a", "b", "c"];
        const commitOrder = new Map<string, string[]>(keys.map((k) => [k, []]));
        const emit = (tx: SqlExecutor, key: string, n: number) =>
          bus.emit("order.placed", { n }, {
            tx,
            metadata: { partitionkey: key },
          });

        let heldOpen!: () => void;
        const opened = new Promise<void>((resolve) => (heldOpen = resolve));
        const long = world.db.begin(async (tx) => {
          const event = await emit(tx, "a", 0);
          heldOpen();
          await sleep(2_000);
          return event;
        }).then((event) => commitOrder.get("a")!.push(event.id));
        await opened;
        // Later transactions commit one after another while the first is open.
        let n = 1;
        const until2s = Date.now() + 1_800;
        while (Date.now() < until2s && n < 200) {
          const key = keys[n % keys.length]!;
          const event = await world.db.begin((tx) => emit(tx, key, n));
          commitOrder.get(key)!.push(event.id);
          n++;
          await sleep(20);
        }
        await long;
        const total = [...commitOrder.values()].reduce(
          (s, l) => s + l.length,
          0,
        );
        await until(() => events.length === total, `${total} events`);
        for (const key of keys) {
          const delivered = events
            .filter((e) => e.metadata.partitionkey === key)
            .map((e) => e.id);
          assert.deepEqual(
            delivered,
            commitOrder.get(key),
            `order of key ${key}`,
          );
        }
        const a = commitOrder.get("a")!;
        assert.ok(a.length > 2, "later transactions of key a committed");
        assert.equal(
          (events.filter((e) => e.metadata.partitionkey === "a").at(-1)
            ?.data as { n: number } | undefined)?.n,
          0,
          "the long transaction's event comes last: it committed last",
        );
      },
    );
  });

  const binary = natsServerBinary();
  if (binary === undefined) {
    brokerMissing(
      "PostgresOutbox with a private nats-server",
      "nats-server not found",
    );
  } else {
    describe("PostgresOutbox with a private nats-server", () => {
      // A broker outage does not depend on the database driver: one run.
      for (const driver of ["pg"] as const) {
        it(
          `keeps every row while the broker is down for 5 s, backs off, and resumes (${driver})`,
          {
            timeout: TIMEOUT,
          },
          async () => {
            await using server = await NatsServer.start();
            await using world = await World.open(driver, "outage", server.url);
            // A 2.9 server killed with -9 may lose the last messages it
            // acknowledged and reuse their sequence numbers; the consumer
            // then sees the new ones after its ack wait (README, "Server
            // versions"): keep that wait short.
            const { deliveries } = await world.worker({ ackWait: 3_000 });
            const bus = await world.writer();
            const total = 300;
            const jetstreamTarget = await world.target({
              publishTimeout: 1_000,
            });
            const down = new Counter();
            const target = intercepted(jetstreamTarget, async (_, pass) => {
              await pass();
              down.add();
            });
            world.outbox({ target, backoff: { initial: 100, max: 1_000 } });
            const emitting = (async () => {
              for (let n = 0; n < total; n++) {
                await bus.emit("order.placed", { n });
                await sleep(5);
              }
            })();
            await down.reach(50, 20_000, "published before the outage");
            await server.kill();
            const outageStart = Date.now();
            await sleep(5_000);
            assert.ok(await world.rows() > 0, "rows wait during the outage");
            await server.restart();
            await emitting;
            await deliveries.distinct.reach(total, 40_000, "deliveries");
            await until(async () => await world.rows() === 0, "0 rows left");
            assert.equal(deliveries.unique.size, total);
            assert.ok(
              world.logger.lines.some((l) =>
                l.level === "warn" && /backs off/.test(l.message)
              ),
              "the relay backed off",
            );
            assert.ok(
              world.logger.lines.some((l) => /works again/.test(l.message)),
              "and said it works again",
            );
            assert.ok(Date.now() - outageStart >= 5_000);
          },
        );
      }
    });
  }

  const noPrivatePostgres = privatePostgresMissing();
  if (noPrivatePostgres !== undefined) {
    brokerMissing(
      "PostgresOutbox with a private PostgreSQL server",
      noPrivatePostgres,
    );
  } else {
    describe("PostgresOutbox with a private PostgreSQL server", () => {
      for (const driver of DRIVERS) {
        it(
          `keeps every row while PostgreSQL is down for 3 s, backs off, and resumes (${driver})`,
          {
            timeout: TIMEOUT,
          },
          async () => {
            await using server = await PostgresServer.start();
            await using db = Db.open(driver, { url: server.url });
            await using world = await World.open(driver, "pgdown");
            const { deliveries } = await world.worker();
            const recording = new RecordingBackend();
            const writer = new PostgresOutbox({
              sql: db.executor,
              target: recording,
              table: world.table,
              relay: false,
            });
            await writer.migrate();
            const bus = new EventBus<Events>({ backend: writer });
            const total = 400;
            await db.begin(async (tx) => {
              for (let n = 0; n < total; n++) {
                await bus.emit("order.placed", { n }, { tx });
              }
            });
            await bus.close();
            const jetstreamTarget = await world.target();
            const published = new Counter();
            const target = intercepted(jetstreamTarget, async (_, pass) => {
              await sleep(2); // slow enough to stop the server mid-way
              await pass();
              published.add();
            });
            const relay = new PostgresOutbox({
              sql: db.executor,
              target,
              table: world.table,
              pollInterval: 50,
              concurrency: 1,
              backoff: { initial: 100, max: 500 },
              logger: world.logger,
            });
            try {
              await published.reach(100, 20_000, "published before the stop");
              await server.stop();
              await sleep(3_000);
              assert.ok(deliveries.unique.size < total, "the relay stalled");
              await server.startServer();
              await deliveries.distinct.reach(total, 40_000, "deliveries");
              await until(
                async () => await db.count(world.table) === 0,
                "0 rows left",
              );
              assert.equal(deliveries.unique.size, total);
              assert.ok(
                world.logger.lines.some((l) =>
                  /database failed/.test(l.message)
                ),
                "the relay saw the database fail",
              );
            } finally {
              await relay.close({ timeout: 5_000 });
            }
          },
        );
      }
    });
  }

  describe("PostgresOutbox configuration", () => {
    it("warns at start when the lease is not shorter than the target's duplicate window", async () => {
      const logger = new MemoryLogger();
      const recording = new RecordingBackend();
      const target = Object.assign(recording, { duplicateWindow: 10_000 });
      const executor = { query: () => Promise.resolve({ rows: [] }) };
      const quiet = new PostgresOutbox({
        sql: executor,
        target,
        lease: 5_000,
        logger,
      });
      assert.equal(logger.lines.length, 0);
      const idle = new PostgresOutbox({
        sql: executor,
        target,
        lease: 30_000,
        relay: false, // no relay, nothing to warn about
        logger,
      });
      assert.equal(logger.lines.length, 0);
      const loud = new PostgresOutbox({
        sql: executor,
        target,
        lease: 30_000,
        logger,
      });
      assert.equal(logger.lines.length, 1);
      assert.match(logger.lines[0]!.message, /duplicate window/);
      await Promise.all([quiet.close(), idle.close(), loud.close()]);
    });

    it("warns at start when the lease is not shorter than a JetStreamBackend's duplicateWindow", async () => {
      const logger = new MemoryLogger();
      const executor = { query: () => Promise.resolve({ rows: [] }) };
      const names = uniqueNames("window"); // no stream is created
      const short = await JetStreamBackend.connect({ servers: NATS }, {
        ...names,
        duplicateWindow: 1_000,
      });
      const standard = await JetStreamBackend.connect({ servers: NATS }, names);
      assert.equal(short.duplicateWindow, 1_000);
      assert.equal(standard.duplicateWindow, 120_000);
      const quiet = new PostgresOutbox({
        sql: executor,
        target: standard,
        logger,
      });
      assert.equal(logger.lines.length, 0);
      const loud = new PostgresOutbox({
        sql: executor,
        target: short,
        lease: 5_000,
        logger,
      });
      assert.equal(logger.lines.length, 1);
      assert.match(
        logger.lines[0]!.message,
        /lease \(5000 ms\).*duplicate window of "nats-jetstream" \(1000 ms\)/,
      );
      await Promise.all([quiet.close(), loud.close()]);
    });

    it("migrationSql() returns idempotent DDL for the named table", () => {
      const ddl = migrationSql({ table: "app.outbox" });
      assert.match(ddl, /CREATE TABLE IF NOT EXISTS "app"."outbox"/);
      assert.match(ddl, /CREATE TABLE IF NOT EXISTS "app"."outbox_dead"/);
      assert.match(ddl, /CONSTRAINT TRIGGER "outbox_commit"/);
      assert.throws(() => migrationSql({ table: "drop table x;" }), TypeError);
    });
  });

  const bun = (globalThis as { Bun?: { SQL: new (url: string) => unknown } })
    .Bun;
  describe("PostgresOutbox with Bun.sql", () => {
    it("emits in a Bun.sql transaction and relays the committed row", {
      timeout: TIMEOUT,
      skip: bun === undefined ? "Bun.sql runs on Bun only" : false,
    }, async () => {
      type BunSql = Parameters<typeof bunSql>[0] & {
        begin<T>(
          work: (tx: Parameters<typeof bunSql>[0]) => Promise<T>,
        ): Promise<T>;
        close(): Promise<void>;
      };
      const sql = new bun!.SQL(PG_URL) as BunSql;
      try {
        await using world = await World.open("postgres.js", "bunsql");
        const recording = new RecordingBackend();
        const outbox = world.outbox({ sql: bunSql(sql), target: recording });
        await outbox.migrate();
        const bus = world.bus(outbox);
        const event = await sql.begin((tx) =>
          bus.emit("order.placed", { n: 1 }, { tx: bunSql(tx) })
        );
        await until(() => recording.published.length === 1, "relayed");
        assert.equal(recording.published[0]?.id, event.id);
      } finally {
        await sql.close();
      }
    });
  });
}
