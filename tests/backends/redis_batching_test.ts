// Copyright 2026 the @eventbus/core authors. MIT license.
// RedisStreamsBackend's batching: publishes waiting together share one
// script call with the semantics of separate calls (de-duplication, maxLen);
// readers read ahead of their handler slots within a bound, acknowledge in
// batches (each settled entry once, at close too), hand unstarted entries
// back at close, and leave them pending for another worker when killed.
// Runs against the Redis on 127.0.0.1:6379.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { createClient } from "@redis/client";
import { createEvent, EventBus, QueueFullError } from "../../mod.ts";
import { type RedisConnection, RedisStreamsBackend } from "@eventbus/redis";
import { brokerMissing, reachable } from "../fixtures/_brokers.ts";
import { Child } from "../fixtures/_nats.ts";
import {
  Counter,
  MemoryLogger,
  withDeadline,
  work,
} from "../fixtures/_util.ts";

const REDIS_URL = "redis://127.0.0.1:6379";
const TIMEOUT = 20_000;
const WORKER = fileURLToPath(
  new URL("../fixtures/_redis_worker.ts", import.meta.url),
);

/** A raw client for the tests' own commands. */
interface Admin {
  sendCommand(args: string[]): Promise<unknown>;
  destroy(): void;
}

if (!await reachable("127.0.0.1", 6379)) {
  brokerMissing("RedisStreamsBackend batching", "no Redis on 127.0.0.1:6379");
} else {
  describe("RedisStreamsBackend batching", () => {
    let admin: Admin;
    const clients: Admin[] = [];
    const prefixes: string[] = [];
    function prefix(): string {
      const p = `redis-batch-${crypto.randomUUID()}`;
      prefixes.push(p);
      return p;
    }
    function command(args: string[]): Promise<unknown> {
      return admin.sendCommand(args);
    }
    async function recorded(): Promise<Recorder> {
      const client = createClient({ url: REDIS_URL });
      client.on("error", () => {});
      await client.connect();
      clients.push(client);
      return new Recorder(client as unknown as RedisConnection);
    }

    before(async () => {
      const client = createClient({ url: REDIS_URL });
      client.on("error", () => {});
      await client.connect();
      admin = client;
    });
    after(async () => {
      for (const client of clients) client.destroy();
      for (const p of prefixes) await deleteKeys(admin, `${p}*`);
      admin.destroy();
    });

    it("publish() of events waiting together shares script calls of up to 64 events that de-duplicate and stop at maxLen as separate calls would", async () => {
      const p = prefix();
      const stream = `${p}:job.run`;
      const recorder = await recorded();
      const backend = new RedisStreamsBackend(recorder.client, {
        prefix: p,
        maxLen: 100,
      });
      const events = Array.from(
        { length: 150 },
        (_, n) => createEvent("job.run", { n }),
      );
      // The first 20 again (same ids): duplicates, in the same batch.
      const all = [...events, ...events.slice(0, 20)];
      const results = await Promise.allSettled(
        all.map((event) => backend.publish(event)),
      );
      await backend.close();

      // The first leaves at once (nothing was in flight); the other 169
      // gather behind it, 64 per call.
      assert.equal(
        recorder.scripts,
        1 + Math.ceil((all.length - 1) / 64),
        `script calls for ${all.length} publishes`,
      );
      results.forEach((result, i) => {
        if (i < 100 || i >= 150) {
          assert.equal(result.status, "fulfilled", `publish ${i}`);
        } else {
          assert.equal(result.status, "rejected", `publish ${i}`);
          const error = (result as PromiseRejectedResult).reason;
          assert.ok(error instanceof QueueFullError, String(error));
          assert.match(error.message, /no consumer group reads it yet/);
        }
      });
      const ids = entryEvents(await command(["XRANGE", stream, "-", "+"]));
      assert.deepEqual(ids, events.slice(0, 100).map((e) => e.id));
      // Accepted events keep their marker; refused ones leave none, so they
      // can be published again once there is room.
      for (const [i, event] of events.entries()) {
        assert.equal(
          await command(["EXISTS", `${stream}:dedupe:${event.id}`]),
          i < 100 ? 1 : 0,
          `marker of event ${i}`,
        );
      }
    });

    it("reads ahead at most concurrency + prefetch entries that are read but not settled, and runs each once", async () => {
      const p = prefix();
      const producer = await RedisStreamsBackend.connect({ url: REDIS_URL }, {
        prefix: p,
      });
      const total = 30;
      const events = Array.from(
        { length: total },
        (_, n) => createEvent("job.run", { n }),
      );
      for (const event of events) await producer.publish(event);
      await producer.close();

      const recorder = await recorded();
      const bound = 2 + 5;
      const backend = new RedisStreamsBackend(recorder.client, {
        prefix: p,
        concurrency: 2,
        prefetch: 5,
        block: 100,
      });
      const bus = new EventBus({ backend, logger: new MemoryLogger() });
      const gates = new Gates();
      recorder.settled = () => gates.released;
      bus.subscribe("job.run", (event) => gates.enter(event.id), {
        async: true,
        name: "runner",
      });
      await bus.listen();
      await gates.started.reach(2, TIMEOUT, "first handler calls");
      await waitFor(() => recorder.read >= bound, "the first read");
      assert.equal(recorder.read, bound, "read ahead up to the bound");
      assert.equal(gates.calls.length, 2, "two slots");
      assert.equal(await pendingCount(admin, `${p}:job.run`, "runner"), bound);
      for (let released = 0; released < total; released++) {
        // A slot is free only once the bus settled the call.
        gates.release();
        await gates.started.reach(
          Math.min(total, released + 3),
          TIMEOUT,
          "the next handler call",
        );
      }
      await waitFor(() => recorder.acked.length === total, "every XACK");
      await bus.close({ timeout: 5000 });

      assert.ok(
        recorder.maxUnsettled <= bound,
        `at most ${bound} read and unsettled, saw ${recorder.maxUnsettled}`,
      );
      assert.equal(recorder.read, total, "no entry read twice");
      assert.deepEqual(
        [...gates.calls].sort(),
        events.map((e) => e.id).sort(),
      );
      assert.equal(await pendingCount(admin, `${p}:job.run`, "runner"), 0);
    });

    it("acknowledges every settled entry exactly once in batched XACKs, those settling during close() too, and hands back the unstarted ones", async () => {
      const p = prefix();
      const stream = `${p}:job.run`;
      const producer = await RedisStreamsBackend.connect({ url: REDIS_URL }, {
        prefix: p,
      });
      const total = 60;
      const events = Array.from(
        { length: total },
        (_, n) => createEvent("job.run", { n }),
      );
      for (const event of events) await producer.publish(event);
      await producer.close();

      // First worker: 4 slots, 20 read ahead; close() while 4 handlers run.
      const first = await recorded();
      const leaving = new EventBus({
        backend: new RedisStreamsBackend(first.client, {
          prefix: p,
          concurrency: 4,
          prefetch: 20,
          block: 100,
        }),
        logger: new MemoryLogger(),
      });
      const gates = new Gates();
      leaving.subscribe("job.run", (event) => gates.enter(event.id), {
        async: true,
        name: "runner",
      });
      await leaving.listen();
      await gates.started.reach(4, TIMEOUT, "first handler calls");
      await waitFor(() => first.read >= 24, "the read-ahead");
      const closing = leaving.close({ timeout: 10_000 });
      for (let i = 0; i < 4; i++) gates.release();
      const report = await closing;
      assert.equal(report.completed, 4);
      const eventOf = await eventsById(admin, stream);
      assert.deepEqual(
        first.acked.map((id) => eventOf.get(id)).sort(),
        [...gates.calls].sort(),
      );
      // The 20 read ahead are pending again, unstarted: delivery counter 0.
      const handedBack = await pendingEntries(admin, stream, "runner");
      assert.equal(handedBack.length, 20);
      for (const entry of handedBack) assert.equal(entry.deliveries, 0);

      // Second worker: takes the handed-back entries at once, then the rest.
      const second = await recorded();
      const staying = new EventBus({
        backend: new RedisStreamsBackend(second.client, {
          prefix: p,
          block: 100,
        }),
        logger: new MemoryLogger(),
      });
      const calls: string[] = [];
      const attempts = new Set<number>();
      const done = new Counter();
      staying.subscribe("job.run", (event, ctx) => {
        calls.push(event.id);
        attempts.add(ctx.attempt);
        done.add();
      }, { async: true, name: "runner" });
      await staying.listen();
      await done.reach(total - 4, TIMEOUT, "the other entries");
      await waitFor(() => second.acked.length === total - 4, "every XACK");
      await staying.close({ timeout: 5000 });

      const rest = events.map((e) => e.id).filter((id) =>
        !gates.calls.includes(id)
      );
      assert.deepEqual([...calls].sort(), [...rest].sort());
      assert.deepEqual([...attempts], [1], "handing back counted no try");
      // Each entry acknowledged once, in fewer XACKs than entries.
      assert.equal(new Set(second.acked).size, second.acked.length);
      assert.deepEqual(
        second.acked.map((id) => eventOf.get(id)).sort(),
        [...rest].sort(),
      );
      assert.ok(
        second.xacks < total - 4,
        `${second.xacks} XACKs for ${total - 4} entries`,
      );
      assert.equal(await pendingCount(admin, stream, "runner"), 0);
    });

    it("leaves the entries a killed worker read ahead pending, and another worker takes each once", async () => {
      const p = prefix();
      const stream = `${p}:crash.job`;
      const total = 30;
      const child = new Child(WORKER, [REDIS_URL, p, "2", "5"]);
      let killed = false;
      try {
        await child.waitFor((l) => "ready" in l, 1, "the worker", TIMEOUT);
        const producer = await RedisStreamsBackend.connect({ url: REDIS_URL }, {
          prefix: p,
        });
        const events = Array.from(
          { length: total },
          (_, n) => createEvent("crash.job", { n }),
        );
        for (const event of events) await producer.publish(event);
        await producer.close();
        await child.waitFor((l) => "started" in l, 2, "two calls", TIMEOUT);
        await waitFor(
          async () => await pendingCount(admin, stream, "crashy") === 7,
          "the worker's read-ahead",
        );
        await child.kill("SIGKILL");
        killed = true;

        // Its 7 entries (2 started, 5 waiting) stay pending under its name.
        const held = await pendingEntries(admin, stream, "crashy");
        assert.equal(held.length, 7);
        assert.equal(new Set(held.map((e) => e.consumer)).size, 1);
        for (const entry of held) assert.equal(entry.deliveries, 1);

        const bus = new EventBus({
          backend: await RedisStreamsBackend.connect({ url: REDIS_URL }, {
            prefix: p,
            claimIdle: 300,
            block: 50,
          }),
          logger: new MemoryLogger(),
        });
        const calls = new Map<string, number>();
        const done = new Counter();
        bus.subscribe("crash.job", (event, ctx) => {
          assert.ok(!calls.has(event.id), `${event.id} ran twice`);
          calls.set(event.id, ctx.attempt);
          done.add();
        }, { async: true, name: "crashy" });
        await bus.listen();
        await done.reach(total, TIMEOUT, "every event");
        await bus.close({ timeout: 5000 });

        assert.deepEqual(
          [...calls.keys()].sort(),
          events.map((e) => e.id).sort(),
        );
        const eventOf = await eventsById(admin, stream);
        const reclaimed = new Set(held.map((e) => eventOf.get(e.id)));
        assert.equal(reclaimed.size, 7);
        for (const [id, attempt] of calls) {
          // A killed worker cannot hand back: the reclaim counts a try.
          assert.equal(attempt, reclaimed.has(id) ? 2 : 1, `attempt of ${id}`);
        }
        assert.equal(await pendingCount(admin, stream, "crashy"), 0);
      } finally {
        if (!killed) await child.kill("SIGKILL");
      }
    });
  });
}

/** A client wrapper that records what the backend read and acknowledged. */
class Recorder {
  readonly client: RedisConnection;
  /** Entries returned by XREADGROUP, in total. */
  read = 0;
  /** Ids of the XACKs that went through, in order. */
  readonly acked: string[] = [];
  /** XACK commands sent. */
  xacks = 0;
  /** EVALSHA and EVAL commands sent. */
  scripts = 0;
  /** How many handler calls settled so far (set by the test). */
  settled: () => number = () => 0;
  /** The most entries read and not settled, at any XREADGROUP reply. */
  maxUnsettled = 0;

  constructor(client: RedisConnection) {
    this.client = this.#wrap(client);
  }

  #wrap(client: RedisConnection): RedisConnection {
    return {
      sendCommand: (args) => {
        const name = String(args[0]).toUpperCase();
        if (name === "XACK") this.xacks++;
        if (name === "EVALSHA" || name === "EVAL") this.scripts++;
        const reply = client.sendCommand(args);
        if (name === "XREADGROUP") {
          reply.then((value) => {
            this.read += countEntries(value);
            this.maxUnsettled = Math.max(
              this.maxUnsettled,
              this.read - this.settled(),
            );
          }, () => {});
        } else if (name === "XACK") {
          reply.then(() => this.acked.push(...args.slice(3)), () => {});
        }
        return reply;
      },
      duplicate: () => this.#wrap(client.duplicate()),
      connect: () => client.connect(),
      close: () => client.close(),
      destroy: () => client.destroy(),
      on: (event, listener) => client.on(event, listener),
    };
  }
}

/** Handler calls that wait until the test releases them, oldest first. */
class Gates {
  readonly calls: string[] = [];
  readonly started: Counter = new Counter();
  released = 0;
  readonly #open: (() => void)[] = [];

  enter(id: string): Promise<void> {
    this.calls.push(id);
    this.started.add();
    return new Promise((resolve) => this.#open.push(resolve));
  }

  /** Lets the oldest waiting call return. */
  release(): void {
    const open = this.#open.shift();
    if (open === undefined) return;
    this.released++;
    open();
  }
}

/** Polls `check` every 10 ms until it holds, for state Redis cannot push. */
async function waitFor(
  check: () => boolean | Promise<boolean>,
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

/** Entries in an XREADGROUP reply, RESP2 or RESP3. */
function countEntries(reply: unknown): number {
  if (reply === null || reply === undefined) return 0;
  const streams = Array.isArray(reply)
    ? reply.map((item) => (item as unknown[])[1])
    : reply instanceof Map
    ? [...reply.values()]
    : Object.values(reply as Record<string, unknown>);
  return streams.reduce(
    (n: number, entries) => n + (Array.isArray(entries) ? entries.length : 0),
    0,
  );
}

/** The event ids of an XRANGE reply, in stream order. */
function entryEvents(reply: unknown): string[] {
  return (reply as [string, string[]][]).map(([, fields]) =>
    JSON.parse(fields[fields.indexOf("event") + 1]!).id
  );
}

/** The event id of each entry of a stream, by entry id. */
async function eventsById(
  admin: Admin,
  stream: string,
): Promise<Map<string, string>> {
  const reply = await admin.sendCommand(["XRANGE", stream, "-", "+"]);
  return new Map(
    (reply as [string, string[]][]).map(([id, fields]) => [
      String(id),
      JSON.parse(fields[fields.indexOf("event") + 1]!).id as string,
    ]),
  );
}

async function pendingCount(
  admin: Admin,
  stream: string,
  group: string,
): Promise<number> {
  const reply = await admin.sendCommand(["XPENDING", stream, group]);
  return Number((reply as unknown[])[0]);
}

/** The group's pending entries: id, consumer, delivery counter. */
async function pendingEntries(
  admin: Admin,
  stream: string,
  group: string,
): Promise<{ id: string; consumer: string; deliveries: number }[]> {
  const reply = await admin.sendCommand([
    "XPENDING",
    stream,
    group,
    "-",
    "+",
    "1000",
  ]) as [string, string, number, number][];
  return reply.map(([id, consumer, , deliveries]) => ({
    id: String(id),
    consumer: String(consumer),
    deliveries: Number(deliveries),
  }));
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
