// Copyright 2026 the @eventbus/core authors. MIT license.
// RedisStreamsBackend beyond the conformance suite: the Redis idioms it
// promises (dead-letter stream, de-duplication, trimming, XAUTOCLAIM
// recovery, consumer clean-up) and a fault test that kills the backend's
// connections with CLIENT KILL while events flow. Runs against the Redis on
// 127.0.0.1:6379; the outage test starts its own redis-server on a free port.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { after, before, describe, it } from "node:test";
import { createClient } from "@redis/client";
import {
  BackendError,
  createEvent,
  DeadLetterError,
  EventBus,
  EventBusClosedError,
} from "../../mod.ts";
import { RedisStreamsBackend } from "../../backends/redis.ts";
import { brokerMissing, reachable } from "../_brokers.ts";
import {
  Counter,
  Deliveries,
  MemoryLogger,
  tally,
  withDeadline,
  work,
} from "../_util.ts";

const URL = "redis://127.0.0.1:6379";
const TIMEOUT = 20_000;

type Admin = ReturnType<typeof createClient>;

if (!await reachable("127.0.0.1", 6379)) {
  brokerMissing("RedisStreamsBackend", "no Redis on 127.0.0.1:6379");
} else {
  describe("RedisStreamsBackend", () => {
    let admin: Admin;
    const prefixes: string[] = [];
    function prefix(): string {
      const p = `redis-test-${crypto.randomUUID()}`;
      prefixes.push(p);
      return p;
    }
    function command(args: string[]): Promise<unknown> {
      return admin.sendCommand(args);
    }

    before(async () => {
      admin = createClient({ url: URL });
      admin.on("error", () => {});
      await admin.connect();
    });
    after(async () => {
      for (const p of prefixes) await deleteKeys(admin, `${p}*`);
      admin.destroy();
    });

    it("dead-letters the last failed try to the dead-letter stream with the error", async () => {
      const p = prefix();
      const dead = new Counter();
      const backend = await RedisStreamsBackend.connect({ url: URL }, {
        prefix: p,
      });
      const bus = new EventBus({
        backend,
        logger: new MemoryLogger(),
        retry: { attempts: 2, backoff: { initial: 1, max: 5 } },
        onError: (error) => {
          if (error instanceof DeadLetterError) dead.add();
        },
      });
      bus.subscribe("order.placed", () => {
        throw new Error("card declined");
      }, { async: true, name: "charge" });
      await bus.listen();
      const event = await bus.emit("order.placed", { total: 3 });
      await dead.reach(1, TIMEOUT, "dead letters");
      await bus.close({ timeout: 5000 });

      const entries = await command(["XRANGE", `${p}-dead-letter`, "-", "+"]);
      const rows = fieldsOf(entries);
      assert.equal(rows.length, 1);
      const row = rows[0]!;
      assert.equal(JSON.parse(row.event!).id, event.id);
      assert.equal(row.handler, "charge");
      assert.equal(row.attempts, "2");
      assert.equal(row.error, "Error: card declined");
      assert.equal(row.stream, `${p}:order.placed`);
      const pending = await command([
        "XPENDING",
        `${p}:order.placed`,
        "charge",
      ]);
      assert.equal(
        (pending as unknown[])[0],
        0,
        "the original is acknowledged",
      );
    });

    it("dead-letters an entry that is not an event, logs it and keeps consuming", async () => {
      const p = prefix();
      const logger = new MemoryLogger();
      const backend = await RedisStreamsBackend.connect({ url: URL }, {
        prefix: p,
      });
      const bus = new EventBus({ backend, logger });
      const handled = new Counter();
      bus.subscribe("user.signup", () => handled.add(), {
        async: true,
        name: "welcome",
      });
      await bus.listen();
      await command(["XADD", `${p}:user.signup`, "*", "event", "not json"]);
      await command(["XADD", `${p}:user.signup`, "*", "other", "field"]);
      await bus.emit("user.signup", { id: "u1" });
      await handled.reach(1, TIMEOUT, "valid events");
      await withDeadline(
        (async () => {
          while (await command(["XLEN", `${p}-dead-letter`]) !== 2) {
            await work(10);
          }
        })(),
        TIMEOUT,
        () => "two dead letters",
      );
      await bus.close({ timeout: 5000 });
      const rows = fieldsOf(
        await command(["XRANGE", `${p}-dead-letter`, "-", "+"]),
      );
      assert.equal(rows[0]!.event, "not json");
      assert.match(rows[0]!.error!, /^SerializationError: Cannot decode event/);
      assert.match(rows[1]!.error!, /has no "event" field/);
      assert.equal(handled.value, 1);
      assert.equal(
        logger.lines.filter((l) =>
          l.level === "error" && l.message.includes("it is not an event")
        ).length,
        2,
      );
    });

    it("adds one entry when the same event id is published twice", async () => {
      const p = prefix();
      const backend = await RedisStreamsBackend.connect({ url: URL }, {
        prefix: p,
      });
      const event = createEvent("user.signup", { id: "u1" });
      await backend.publish(event);
      await backend.publish(event);
      await backend.publish(createEvent("user.signup", { id: "u2" }));
      await backend.close();
      assert.equal(await command(["XLEN", `${p}:user.signup`]), 2);
    });

    it("trims each stream to about maxLen entries", async () => {
      const p = prefix();
      const backend = await RedisStreamsBackend.connect({ url: URL }, {
        prefix: p,
        maxLen: 10,
        duplicateWindow: 0,
      });
      for (let i = 0; i < 500; i++) {
        await backend.publish(createEvent("metric.sample", { i }));
      }
      await backend.close();
      const length = await command(["XLEN", `${p}:metric.sample`]) as number;
      // MAXLEN ~ trims whole macro nodes (100 entries by default).
      assert.ok(length >= 10 && length < 500, `length ${length}`);
      assert.deepEqual(
        await command(["KEYS", `${p}:metric.sample:dedupe:*`]),
        [],
        "no de-duplication markers with duplicateWindow 0",
      );
    });

    it("recovers an entry left pending by a dead consumer with XAUTOCLAIM and counts the delivery", async () => {
      const p = prefix();
      const stream = `${p}:job.run`;
      const producer = await RedisStreamsBackend.connect({ url: URL }, {
        prefix: p,
      });
      const event = createEvent("job.run", { n: 1 });
      await producer.publish(event);
      await producer.close();
      // A worker that read the entry and died before acknowledging it.
      await command(["XGROUP", "CREATE", stream, "runner", "0", "MKSTREAM"]);
      await command([
        "XREADGROUP",
        "GROUP",
        "runner",
        "dead-worker",
        "COUNT",
        "1",
        "STREAMS",
        stream,
        ">",
      ]);
      const backend = await RedisStreamsBackend.connect({ url: URL }, {
        prefix: p,
        claimIdle: 200,
        block: 50,
      });
      const bus = new EventBus({ backend, logger: new MemoryLogger() });
      const attempts: number[] = [];
      const done = new Counter();
      bus.subscribe("job.run", (received, ctx) => {
        assert.equal(received.id, event.id);
        attempts.push(ctx.attempt);
        done.add();
      }, { async: true, name: "runner" });
      await bus.listen();
      await done.reach(1, TIMEOUT, "recovered deliveries");
      const report = await bus.close({ timeout: 5000 });
      assert.deepEqual(attempts, [2]);
      assert.equal(report.completed, 1);
      const pending = await command(["XPENDING", stream, "runner"]);
      assert.equal((pending as unknown[])[0], 0);
    });

    it("removes its consumer from the group on close when it holds no entry", async () => {
      const p = prefix();
      const backend = await RedisStreamsBackend.connect({ url: URL }, {
        prefix: p,
      });
      const bus = new EventBus({ backend, logger: new MemoryLogger() });
      const done = new Counter();
      bus.subscribe("user.signup", () => done.add(), {
        async: true,
        name: "audit",
      });
      await bus.listen();
      await bus.emit("user.signup", {});
      await done.reach(1, TIMEOUT, "deliveries");
      const during = await command([
        "XINFO",
        "CONSUMERS",
        `${p}:user.signup`,
        "audit",
      ]) as unknown[];
      assert.equal(during.length, 1);
      await bus.close({ timeout: 5000 });
      assert.deepEqual(
        await command(["XINFO", "CONSUMERS", `${p}:user.signup`, "audit"]),
        [],
      );
    });

    it("rejects publish() with EventBusClosedError after close(), and closes twice harmlessly", async () => {
      const backend = await RedisStreamsBackend.connect({ url: URL }, {
        prefix: prefix(),
      });
      const first = await backend.close();
      const second = await backend.close();
      assert.equal(first, second);
      await assert.rejects(
        backend.publish(createEvent("user.signup", {})),
        EventBusClosedError,
      );
    });

    it("rejects publish() with BackendError after publishTimeout while Redis is down", async () => {
      await using server = await RedisServer.start();
      const backend = await RedisStreamsBackend.connect({
        url: `redis://127.0.0.1:${server.port}`,
        socket: { reconnectStrategy: () => 50 },
      }, { publishTimeout: 300 });
      await backend.publish(createEvent("user.signup", { n: 1 }));
      await server.stop();
      const started = performance.now();
      await assert.rejects(
        backend.publish(createEvent("user.signup", { n: 2 })),
        (error: unknown) =>
          error instanceof BackendError && error.backend === "redis-streams" &&
          /publishTimeout \(300 ms\)/.test(error.message),
      );
      assert.ok(performance.now() - started >= 250);
      await backend.close({ timeout: 100 });
    });

    for (let run = 1; run <= 3; run++) {
      it(`handles every accepted event at least once while CLIENT KILL drops its connections (run ${run})`, async () => {
        const p = prefix();
        const name = `eventbus-fault-${crypto.randomUUID().slice(0, 8)}`;
        const options = { prefix: p, claimIdle: 1000, block: 200 };
        const logger = new MemoryLogger();
        const producer = new EventBus({
          backend: await RedisStreamsBackend.connect(
            { url: URL, name },
            options,
          ),
          logger,
        });
        const worker = new EventBus({
          backend: await RedisStreamsBackend.connect(
            { url: URL, name },
            options,
          ),
          logger,
        });
        const deliveries = new Deliveries();
        const { all: handled, distinct: reached } = deliveries;
        worker.subscribe("order.placed", async (event) => {
          await work(2);
          deliveries.record(event.id);
        }, { async: true, name: "fulfil" });
        await worker.listen();

        const total = 300;
        const accepted: string[] = [];
        let refused = 0;
        let kills = 0;
        for (let n = 0; n < total; n += 20) {
          const batch = Array.from(
            { length: 20 },
            (_, i) => producer.emit("order.placed", { n: n + i }),
          );
          // Kill while this batch is in flight and the worker has a backlog.
          if (n % 60 === 20) kills += await killClients(admin, name);
          for (const result of await Promise.allSettled(batch)) {
            if (result.status === "fulfilled") accepted.push(result.value.id);
            else refused++;
          }
        }
        assert.ok(kills >= 10, `killed ${kills} connections`);
        await reached.reach(accepted.length, TIMEOUT, "handled events");
        await producer.close({ timeout: 5000 });
        await worker.close({ timeout: 5000 });
        const counts = tally(handled);
        for (const id of accepted) {
          assert.ok((counts.get(id) ?? 0) >= 1, `event ${id} handled`);
        }
        assert.equal(refused, 0, "emit retried through every reconnect");
        assert.ok(
          logger.lines.some((l) => l.message.includes("lost its connection")),
          "the reader saw its connection drop",
        );
        assert.equal(accepted.length, total);
      });
    }
  });
}

/** Kills every connection named `name`; resolves how many. */
async function killClients(admin: Admin, name: string): Promise<number> {
  const list = String(await admin.sendCommand(["CLIENT", "LIST"]));
  const ids = list.split("\n")
    .filter((line) => line.includes(` name=${name} `))
    .map((line) => /(?:^|\s)id=(\d+)/.exec(line)?.[1])
    .filter((id): id is string => id !== undefined);
  for (const id of ids) await admin.sendCommand(["CLIENT", "KILL", "ID", id]);
  return ids.length;
}

async function deleteKeys(admin: Admin, pattern: string): Promise<void> {
  let cursor = "0";
  do {
    const reply = await admin.sendCommand([
      "SCAN",
      cursor,
      "MATCH",
      pattern,
      "COUNT",
      "1000",
    ]) as [string, string[]];
    cursor = String(reply[0]);
    if (reply[1].length > 0) await admin.sendCommand(["DEL", ...reply[1]]);
  } while (cursor !== "0");
}

/** XRANGE's reply as one record of fields per entry. */
function fieldsOf(reply: unknown): Record<string, string>[] {
  return (reply as [string, string[]][]).map(([, fields]) => {
    const row: Record<string, string> = {};
    for (let i = 0; i + 1 < fields.length; i += 2) {
      row[fields[i]!] = fields[i + 1]!;
    }
    return row;
  });
}

/** A throwaway redis-server on a free loopback port, without persistence. */
class RedisServer implements AsyncDisposable {
  readonly port: number;
  #child: ReturnType<typeof spawn>;
  #exited: Promise<void>;

  constructor(port: number, child: ReturnType<typeof spawn>) {
    this.port = port;
    this.#child = child;
    this.#exited = new Promise((resolve) =>
      child.once("exit", () => resolve())
    );
  }

  static async start(): Promise<RedisServer> {
    const port = await freePort();
    const child = spawn("redis-server", [
      "--bind",
      "127.0.0.1",
      "--port",
      String(port),
      "--save",
      "",
      "--appendonly",
      "no",
    ], { stdio: "ignore" });
    const server = new RedisServer(port, child);
    await withDeadline(
      (async () => {
        while (!await reachable("127.0.0.1", port, 200)) await work(20);
      })(),
      10_000,
      () => `redis-server on port ${port} did not start`,
    );
    return server;
  }

  async stop(): Promise<void> {
    if (this.#child.exitCode === null) this.#child.kill("SIGKILL");
    await this.#exited;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
