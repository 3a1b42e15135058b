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
  QueueFullError,
} from "../../mod.ts";
import {
  type RedisConnection,
  RedisStreamsBackend,
  type RedisStreamsBackendOptions,
} from "@eventbus/redis";
import { brokerMissing, reachable } from "../fixtures/_brokers.ts";
import {
  Counter,
  Deliveries,
  MemoryLogger,
  tally,
  withDeadline,
  work,
} from "../fixtures/_util.ts";

const URL = "redis://127.0.0.1:6379";
const TIMEOUT = 20_000;

type Jobs = { "job.run": { kind: string; n: number } };

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
      assert.equal(row.reason, "failed");
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
      assert.deepEqual(rows.map((r) => r.reason), [
        "invalid-event",
        "invalid-event",
      ]);
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

    it("trims only the entries every group acknowledged when a stream reaches maxLen", async () => {
      const p = prefix();
      const options = { prefix: p, maxLen: 10, duplicateWindow: 0 };
      const worker = new EventBus({
        backend: await RedisStreamsBackend.connect({ url: URL }, options),
        logger: new MemoryLogger(),
      });
      const handled = new Counter();
      worker.subscribe("metric.sample", () => handled.add(), {
        async: true,
        name: "audit",
      });
      await worker.listen();
      const backend = await RedisStreamsBackend.connect({ url: URL }, options);
      for (let i = 0; i < 200; i++) {
        await backend.publish(createEvent("metric.sample", { i }));
        await handled.reach(i + 1, TIMEOUT, "handled samples");
      }
      await backend.close();
      await worker.close({ timeout: 5000 });
      assert.equal(handled.value, 200);
      const length = await command(["XLEN", `${p}:metric.sample`]) as number;
      assert.ok(length >= 1 && length <= 10, `length ${length}`);
      assert.deepEqual(
        await command(["KEYS", `${p}:metric.sample:dedupe:*`]),
        [],
        "no de-duplication markers with duplicateWindow 0",
      );
    });

    it("keeps entries waiting for a retry when the stream reaches maxLen: every second try runs", async () => {
      const p = prefix();
      const options = { prefix: p, maxLen: 20 };
      const reported = new Counter();
      const worker = new EventBus<Jobs>({
        backend: await RedisStreamsBackend.connect({ url: URL }, options),
        logger: new MemoryLogger(),
        // Long enough that the fillers below pass the limit while the
        // failed entries wait for their second try.
        retry: {
          attempts: 2,
          backoff: { initial: 1500, max: 1500, jitter: false },
        },
        onError: () => reported.add(),
      });
      const firstTries = new Counter();
      const secondTries = new Counter();
      const fillers = new Deliveries();
      let open = () => {};
      const gate = new Promise<void>((resolve) => open = resolve);
      worker.subscribe("job.run", async (event, ctx) => {
        if (event.data.kind === "filler") return fillers.record(event.id);
        if (ctx.attempt === 1) {
          firstTries.add();
          throw new Error("fails once");
        }
        await gate; // holds the entry pending until the fillers are in
        secondTries.add();
      }, { async: true, name: "runner" });
      await worker.listen();
      const producer = new EventBus<Jobs>({
        backend: await RedisStreamsBackend.connect({ url: URL }, options),
        logger: new MemoryLogger(),
      });
      for (let n = 0; n < 10; n++) {
        await producer.emit("job.run", { kind: "flaky", n });
      }
      await firstTries.reach(10, TIMEOUT, "first tries");
      const accepted: string[] = [];
      const refused: unknown[] = [];
      for (let n = 0; n < 300; n++) {
        await producer.emit("job.run", { kind: "filler", n }).then(
          (event) => accepted.push(event.id),
          (error) => refused.push(error),
        );
      }
      open();
      await secondTries.reach(10, TIMEOUT, "second tries");
      await fillers.distinct.reach(accepted.length, TIMEOUT, "fillers");
      await producer.close();
      await worker.close({ timeout: 5000 });
      assert.equal(firstTries.value, 10);
      assert.equal(secondTries.value, 10, "no failed entry was trimmed away");
      // 10 failed entries pin the stream's head: 10 more fit under maxLen.
      assert.equal(accepted.length, 10);
      assert.equal(refused.length, 290);
      for (const error of refused) {
        assert.ok(error instanceof QueueFullError, String(error));
        assert.equal(error.queueSize, 20);
        assert.match(error.message, /maxLen limit \(20\)/);
        assert.match(error.message, /consumer group "runner"/);
      }
      assert.equal(fillers.all.length, accepted.length, "each filler once");
      assert.equal(reported.value, 0);
      assert.equal(await command(["XLEN", `${p}-dead-letter`]), 0);
    });

    it("rejects emit() with QueueFullError at maxLen while a group is offline, and the group gets every accepted event when it returns", async () => {
      const p = prefix();
      const options = { prefix: p, maxLen: 50 };
      const subscribe = (bus: EventBus<Jobs>, deliveries: Deliveries) =>
        bus.subscribe("job.run", (event) => deliveries.record(event.id), {
          async: true,
          name: "offline",
        });
      const before = new EventBus<Jobs>({
        backend: await RedisStreamsBackend.connect({ url: URL }, options),
        logger: new MemoryLogger(),
      });
      subscribe(before, new Deliveries());
      await before.listen(); // creates the group, then goes away
      await before.close();
      const producer = new EventBus<Jobs>({
        backend: await RedisStreamsBackend.connect({ url: URL }, options),
        logger: new MemoryLogger(),
      });
      const accepted: string[] = [];
      const refusedAt: number[] = [];
      for (let n = 0; n < 300; n++) {
        await producer.emit("job.run", { kind: "job", n }).then(
          (event) => accepted.push(event.id),
          (error) => {
            assert.ok(error instanceof QueueFullError, String(error));
            assert.equal(error.queueSize, 50);
            assert.match(error.message, /consumer group "offline"/);
            refusedAt.push(n);
          },
        );
      }
      assert.equal(accepted.length, 50);
      assert.equal(refusedAt.length, 250);
      assert.equal(refusedAt[0], 50, "rejected from the limit on");
      const deliveries = new Deliveries();
      const back = new EventBus<Jobs>({
        backend: await RedisStreamsBackend.connect({ url: URL }, options),
        logger: new MemoryLogger(),
      });
      subscribe(back, deliveries);
      await back.listen();
      await deliveries.distinct.reach(50, TIMEOUT, "handled backlog");
      // The backlog is handled: there is room again.
      accepted.push(
        (await producer.emit("job.run", { kind: "job", n: 300 })).id,
      );
      await deliveries.distinct.reach(51, TIMEOUT, "handled events");
      await producer.close();
      await back.close({ timeout: 5000 });
      assert.deepEqual([...deliveries.all].sort(), [...accepted].sort());
    });

    it("rejects emit() with QueueFullError when no group reads a full stream yet, and the first worker gets every accepted event", async () => {
      const p = prefix();
      const options = { prefix: p, maxLen: 20 };
      const producer = new EventBus<Jobs>({
        backend: await RedisStreamsBackend.connect({ url: URL }, options),
        logger: new MemoryLogger(),
      });
      const accepted: string[] = [];
      const refused: unknown[] = [];
      for (let n = 0; n < 30; n++) {
        await producer.emit("job.run", { kind: "job", n }).then(
          (event) => accepted.push(event.id),
          (error) => refused.push(error),
        );
      }
      assert.equal(accepted.length, 20);
      assert.equal(refused.length, 10);
      for (const error of refused) {
        assert.ok(error instanceof QueueFullError, String(error));
        assert.match(error.message, /no consumer group reads it yet/);
      }
      const worker = new EventBus<Jobs>({
        backend: await RedisStreamsBackend.connect({ url: URL }, options),
        logger: new MemoryLogger(),
      });
      const deliveries = new Deliveries();
      worker.subscribe("job.run", (event) => deliveries.record(event.id), {
        async: true,
        name: "first",
      });
      await worker.listen();
      await deliveries.distinct.reach(20, TIMEOUT, "handled events");
      await producer.close();
      await worker.close({ timeout: 5000 });
      assert.deepEqual([...deliveries.all].sort(), [...accepted].sort());
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

    it("dead-letters an entry delivered past its attempts as crashed, without running it, reported once", async () => {
      const p = prefix();
      const stream = `${p}:job.run`;
      const producer = await RedisStreamsBackend.connect({ url: URL }, {
        prefix: p,
      });
      const event = createEvent("job.run", { n: 1 });
      await producer.publish(event);
      await producer.close();
      // Two workers took it and died during their try: delivery counter 2.
      await command(["XGROUP", "CREATE", stream, "runner", "0"]);
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
      const [id] = (await command(["XRANGE", stream, "-", "+"]) as [
        string,
      ][])[0]!;
      await command([
        "XCLAIM",
        stream,
        "runner",
        "dead-worker",
        "0",
        id,
        "IDLE",
        "60000",
        "RETRYCOUNT",
        "2",
        "JUSTID",
      ]);
      const dead: DeadLetterError[] = [];
      const reported = new Counter();
      const bus = new EventBus({
        backend: await RedisStreamsBackend.connect({ url: URL }, {
          prefix: p,
          claimIdle: 200,
          block: 50,
        }),
        logger: new MemoryLogger(),
        retry: { attempts: 2 },
        onError: (error) => {
          if (error instanceof DeadLetterError) dead.push(error);
          reported.add();
        },
      });
      let runs = 0;
      bus.subscribe("job.run", () => void runs++, {
        async: true,
        name: "runner",
      });
      await bus.listen();
      await reported.reach(1, TIMEOUT, "dead letters");
      await waitFor(
        async () => await command(["XLEN", `${p}-dead-letter`]) === 1,
        "the dead-letter entry",
      );
      await bus.close({ timeout: 5000 });
      assert.equal(runs, 0);
      assert.equal(dead.length, 1);
      assert.equal(dead[0]!.reason, "crashed");
      assert.equal(dead[0]!.attempts, 2);
      const [row] = fieldsOf(
        await command(["XRANGE", `${p}-dead-letter`, "-", "+"]),
      );
      assert.equal(row!.reason, "crashed");
      assert.equal(row!.attempts, "2");
      assert.equal(row!.id, id);
      assert.equal(JSON.parse(row!.event!).id, event.id);
      assert.equal(
        ((await command(["XPENDING", stream, "runner"])) as unknown[])[0],
        0,
      );
    });

    it("logs at error the pending entries XAUTOCLAIM reports deleted from the stream", async () => {
      const p = prefix();
      const stream = `${p}:job.run`;
      const producer = await RedisStreamsBackend.connect({ url: URL }, {
        prefix: p,
      });
      for (let n = 0; n < 5; n++) {
        await producer.publish(createEvent("job.run", { n }));
      }
      await producer.close();
      await command(["XGROUP", "CREATE", stream, "runner", "0"]);
      await command([
        "XREADGROUP",
        "GROUP",
        "runner",
        "dead-worker",
        "COUNT",
        "5",
        "STREAMS",
        stream,
        ">",
      ]);
      const ids = (await command(["XRANGE", stream, "-", "+"]) as [
        string,
      ][]).map(([id]) => id);
      await command(["XDEL", stream, ids[1]!, ids[3]!]);
      const logger = new MemoryLogger();
      const bus = new EventBus({
        backend: await RedisStreamsBackend.connect({ url: URL }, {
          prefix: p,
          claimIdle: 100,
          block: 50,
        }),
        logger,
      });
      const handled = new Counter();
      bus.subscribe("job.run", () => handled.add(), {
        async: true,
        name: "runner",
      });
      await bus.listen();
      await handled.reach(3, TIMEOUT, "surviving entries");
      await waitFor(
        () => Promise.resolve(lostIds(logger).length === 2),
        "the error lines",
      );
      await bus.close({ timeout: 5000 });
      assert.deepEqual(lostIds(logger), [ids[1]!, ids[3]!].sort());
      assert.equal(handled.value, 3);
    });

    it("logs at error the entries deleted from the stream while they wait for a retry", async () => {
      const p = prefix();
      const stream = `${p}:job.run`;
      const logger = new MemoryLogger();
      const bus = new EventBus({
        backend: await RedisStreamsBackend.connect({ url: URL }, {
          prefix: p,
        }),
        logger,
        retry: {
          attempts: 2,
          backoff: { initial: 300, max: 300, jitter: false },
        },
      });
      const failed = new Counter();
      let secondTries = 0;
      bus.subscribe("job.run", (_event, ctx) => {
        if (ctx.attempt > 1) return void secondTries++;
        failed.add();
        throw new Error("fails once");
      }, { async: true, name: "runner" });
      await bus.listen();
      for (let n = 0; n < 3; n++) await bus.emit("job.run", { n });
      await failed.reach(3, TIMEOUT, "first tries");
      const ids = (await command(["XRANGE", stream, "-", "+"]) as [
        string,
      ][]).map(([id]) => id);
      await command(["XDEL", stream, ...ids]);
      await waitFor(
        () => Promise.resolve(lostIds(logger).length === 3),
        "the error lines",
      );
      await bus.close({ timeout: 5000 });
      assert.deepEqual(lostIds(logger), [...ids].sort());
      assert.equal(secondTries, 0);
    });

    it("recovers the 500 pending entries of a dead consumer back to back, not one page per block", async () => {
      const p = prefix();
      const stream = `${p}:job.run`;
      const total = 500;
      const producer = await RedisStreamsBackend.connect({ url: URL }, {
        prefix: p,
      });
      await Promise.all(
        Array.from(
          { length: total },
          (_, n) => producer.publish(createEvent("job.run", { n })),
        ),
      );
      await producer.close();
      await command(["XGROUP", "CREATE", stream, "runner", "0"]);
      await command([
        "XREADGROUP",
        "GROUP",
        "runner",
        "dead-worker",
        "COUNT",
        String(total),
        "STREAMS",
        stream,
        ">",
      ]);
      // Default block (2000 ms) and concurrency (10): one XAUTOCLAIM page
      // per block would take 100 s.
      const bus = new EventBus({
        backend: await RedisStreamsBackend.connect({ url: URL }, {
          prefix: p,
          claimIdle: 100,
        }),
        logger: new MemoryLogger(),
      });
      const deliveries = new Deliveries();
      const attempts = new Set<number>();
      let first = 0;
      bus.subscribe("job.run", (event, ctx) => {
        first ||= performance.now();
        attempts.add(ctx.attempt);
        deliveries.record(event.id);
      }, { async: true, name: "runner" });
      const started = performance.now();
      await bus.listen();
      await deliveries.distinct.reach(total, 30_000, "recovered entries");
      const done = performance.now();
      await bus.close({ timeout: 5000 });
      console.log(
        `recovered ${total} pending entries in ${
          Math.round(done - first)
        } ms after the first (${Math.round(done - started)} ms after listen)`,
      );
      assert.equal(deliveries.all.length, total, "each once");
      assert.deepEqual([...attempts], [2]);
      assert.equal(
        ((await command(["XPENDING", stream, "runner"])) as unknown[])[0],
        0,
      );
    });

    it("hands 200 entries over at close() to a surviving worker, which takes them back to back", async () => {
      const p = prefix();
      const total = 200;
      const options = { prefix: p, claimIdle: 1000 };
      const leaving = new EventBus({
        backend: await RedisStreamsBackend.connect({ url: URL }, {
          ...options,
          concurrency: total,
        }),
        logger: new MemoryLogger(),
      });
      const held = new Counter();
      leaving.subscribe("job.run", async () => {
        held.add();
        await new Promise(() => {}); // stuck: close() hands it over
      }, { async: true, name: "runner" });
      await leaving.listen();
      const producer = new EventBus({
        backend: await RedisStreamsBackend.connect({ url: URL }, options),
        logger: new MemoryLogger(),
      });
      await Promise.all(
        Array.from(
          { length: total },
          (_, n) => producer.emit("job.run", { n }),
        ),
      );
      await held.reach(total, TIMEOUT, "entries held by the leaving worker");
      const survivor = new EventBus({
        backend: await RedisStreamsBackend.connect({ url: URL }, options),
        logger: new MemoryLogger(),
      });
      const deliveries = new Deliveries();
      const attempts = new Set<number>();
      survivor.subscribe("job.run", (event, ctx) => {
        attempts.add(ctx.attempt);
        deliveries.record(event.id);
      }, { async: true, name: "runner" });
      await survivor.listen();
      const started = performance.now();
      const report = await leaving.close({ timeout: 50 });
      await deliveries.distinct.reach(total, 30_000, "handed-over entries");
      console.log(
        `took over ${total} entries in ${
          Math.round(performance.now() - started)
        } ms after close()`,
      );
      await producer.close();
      await survivor.close({ timeout: 5000 });
      assert.deepEqual(report.abandoned, []);
      assert.equal(deliveries.all.length, total, "each once");
      assert.deepEqual([...attempts], [2], "the stopped try counts");
    });

    it("starts a new group newGroupLookback back and logs what it takes and what it skips", async () => {
      const p = prefix();
      const producer = await RedisStreamsBackend.connect({ url: URL }, {
        prefix: p,
      });
      const old: string[] = [];
      for (let n = 0; n < 3; n++) {
        const event = createEvent("job.run", { n });
        await producer.publish(event);
        old.push(event.id);
      }
      await work(1000); // the entries above age past the lookback below
      const recent: string[] = [];
      for (let n = 3; n < 5; n++) {
        const event = createEvent("job.run", { n });
        await producer.publish(event);
        recent.push(event.id);
      }
      await producer.close();
      async function group(
        name: string,
        options: { newGroupLookback?: number },
        expected: number,
      ) {
        const logger = new MemoryLogger();
        const bus = new EventBus({
          backend: await RedisStreamsBackend.connect({ url: URL }, {
            prefix: p,
            ...options,
          }),
          logger,
        });
        const deliveries = new Deliveries();
        bus.subscribe("job.run", (event) => deliveries.record(event.id), {
          async: true,
          name,
        });
        await bus.listen();
        await deliveries.distinct.reach(expected, TIMEOUT, `${name} events`);
        await bus.close({ timeout: 5000 });
        const lines = logger.lines.filter((l) =>
          l.message.startsWith("Created consumer group")
        );
        return { seen: [...deliveries.all].sort(), lines };
      }
      const recentOnly = await group("recent", { newGroupLookback: 600 }, 2);
      assert.deepEqual(recentOnly.seen, [...recent].sort());
      assert.equal(recentOnly.lines.length, 1);
      assert.equal(recentOnly.lines[0]!.level, "warn");
      assert.match(
        recentOnly.lines[0]!.message,
        /skips the entries added before/,
      );
      const everything = await group("all", { newGroupLookback: Infinity }, 5);
      assert.deepEqual(everything.seen, [...old, ...recent].sort());
      assert.equal(everything.lines[0]!.level, "info");
      assert.match(everything.lines[0]!.message, /handles the 5 entries/);
      const byDefault = await group("default", {}, 5); // one hour back
      assert.deepEqual(byDefault.seen, [...old, ...recent].sort());
      // An existing group keeps its place, whatever its lookback says.
      const again = await group("recent", { newGroupLookback: Infinity }, 0);
      assert.deepEqual(again.seen, []);
      assert.deepEqual(again.lines, []);
    });

    it("rejects consume() with EventBusClosedError when close() comes while it attaches", async () => {
      const p = prefix();
      const backend = await RedisStreamsBackend.connect({ url: URL }, {
        prefix: p,
      });
      let runs = 0;
      const consuming = backend.consume(() => {
        runs++;
        return Promise.resolve({ status: "completed" });
      }, { consumers: [{ name: "late", type: "job.run", attempts: 1 }] });
      const report = await backend.close();
      await assert.rejects(consuming, EventBusClosedError);
      assert.deepEqual(report, { completed: 0, abandoned: [] });
      assert.equal(runs, 0);
      assert.deepEqual(
        await command(["XINFO", "CONSUMERS", `${p}:job.run`, "late"]),
        [],
        "no consumer left reading",
      );
    });

    it("connect() rejects a backend option among the client options with a TypeError naming the right argument", async () => {
      await assert.rejects(
        RedisStreamsBackend.connect(
          { url: URL, prefix: "orders" } as Parameters<
            typeof RedisStreamsBackend.connect
          >[0],
        ),
        (error: unknown) =>
          error instanceof TypeError &&
          error.message.includes('"prefix" is a backend option') &&
          error.message.includes("second argument"),
      );
      await assert.rejects(
        RedisStreamsBackend.connect(
          { url: URL },
          { url: URL } as Parameters<typeof RedisStreamsBackend.connect>[1],
        ),
        (error: unknown) =>
          error instanceof TypeError &&
          error.message.includes('unknown option "url"') &&
          error.message.includes("first argument"),
      );
      assert.throws(
        () =>
          new RedisStreamsBackend(
            admin as unknown as RedisConnection,
            { maxlen: 10 } as RedisStreamsBackendOptions,
          ),
        (error: unknown) =>
          error instanceof TypeError &&
          error.message.includes('unknown option "maxlen"'),
      );
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

/** Polls `check` every 10 ms until it holds, for state Redis cannot push. */
async function waitFor(
  check: () => Promise<boolean>,
  what: string,
): Promise<void> {
  await withDeadline(
    (async () => {
      while (!await check()) await work(10);
    })(),
    TIMEOUT,
    () => what,
  );
}

/**
 * The entry ids the backend logged as lost, sorted; asserts that every
 * error line is such a report.
 */
function lostIds(logger: MemoryLogger): string[] {
  const ids: string[] = [];
  for (const line of logger.lines.filter((l) => l.level === "error")) {
    const match = /^Lost \d+ entries of stream .* reported ids ([^)]*)\)/
      .exec(line.message);
    assert.ok(match, line.message);
    ids.push(...match[1]!.split(", "));
  }
  return ids.sort();
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
