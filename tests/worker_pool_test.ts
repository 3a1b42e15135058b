// Copyright 2026 the @eventbus/core authors. MIT license.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  createEvent,
  EventBus,
  EventBusClosedError,
  QueueFullError,
  WorkerPool,
} from "../mod.ts";
import { Counter, MemoryLogger, nextMacrotask } from "./fixtures/_util.ts";

type Events = { "job.run": { n: number } };

/** A pool behind a bus with one async handler that waits on a gate. */
function gated(options: ConstructorParameters<typeof WorkerPool>[0]) {
  const pool = new WorkerPool(options);
  const bus = new EventBus<Events>({
    backend: pool,
    logger: new MemoryLogger(),
  });
  let open: () => void = () => {};
  const gate = new Promise<void>((resolve) => (open = resolve));
  const started = new Counter();
  const finished = new Counter();
  let running = 0;
  let peak = 0;
  const handled: number[] = [];
  bus.subscribe("job.run", async (event) => {
    started.add();
    peak = Math.max(peak, ++running);
    await gate;
    running--;
    handled.push(event.data.n);
    finished.add();
  }, { async: true, name: "gated" });
  return {
    pool,
    bus,
    open: () => open(),
    started,
    finished,
    handled,
    peak: () => peak,
  };
}

test("WorkerPool() rejects invalid options with RangeError", () => {
  assert.throws(() => new WorkerPool({ workers: 0 }), RangeError);
  assert.throws(() => new WorkerPool({ queueSize: -1 }), RangeError);
  // deno-lint-ignore no-explicit-any
  assert.throws(() => new WorkerPool({ overflow: "drop" as any }), RangeError);
});

test("WorkerPool runs at most `workers` handler calls at once", async () => {
  const { bus, open, started, finished, peak } = gated({
    workers: 4,
    queueSize: 100,
  });
  for (let n = 0; n < 50; n++) await bus.emit("job.run", { n });
  await started.reach(4);
  assert.equal(started.value, 4, "only four started while the gate is shut");
  assert.equal(bus.stats().inFlight, 4);
  assert.equal(bus.stats().queued, 46);
  open();
  await finished.reach(50);
  assert.equal(peak(), 4);
  await bus.close();
});

test('WorkerPool with overflow "reject" rejects a full queue with QueueFullError and keeps what it accepted', async () => {
  const { bus, open, finished, handled } = gated({
    workers: 2,
    queueSize: 3,
    overflow: "reject",
  });
  const accepted: number[] = [];
  const refused: unknown[] = [];
  for (let n = 0; n < 10; n++) {
    await bus.emit("job.run", { n }).then(
      () => accepted.push(n),
      (e) => refused.push(e),
    );
  }
  // Two run (taken off the queue), three wait; the rest are refused.
  assert.deepEqual(accepted, [0, 1, 2, 3, 4]);
  assert.equal(refused.length, 5);
  for (const error of refused) {
    assert.ok(error instanceof QueueFullError);
    assert.equal(error.queueSize, 3);
  }
  open();
  await finished.reach(5);
  assert.deepEqual([...handled].sort((a, b) => a - b), accepted);
  await bus.close();
});

test('WorkerPool with overflow "wait" makes emit wait for room (backpressure)', async () => {
  const { bus, open, finished } = gated({ workers: 1, queueSize: 2 });
  for (let n = 0; n < 3; n++) await bus.emit("job.run", { n }); // 1 running + 2 queued
  let resolved = false;
  const waiting = bus.emit("job.run", { n: 3 }).then(() => (resolved = true));
  await Promise.resolve();
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(resolved, false, "emit waits while the queue is full");
  open();
  await waiting;
  await finished.reach(4);
  await bus.close();
});

test("WorkerPool: an aborted emit waiting for room rejects with the reason and leaks no slot", async () => {
  const { bus, open, started, finished, peak } = gated({
    workers: 2,
    queueSize: 2,
  });
  for (let n = 0; n < 4; n++) await bus.emit("job.run", { n });
  const controller = new AbortController();
  const waiting = bus.emit("job.run", { n: 99 }, { signal: controller.signal });
  const reason = new Error("caller gave up");
  controller.abort(reason);
  await assert.rejects(waiting, (error) => error === reason);
  open();
  await finished.reach(4);
  // Capacity is intact: two workers at once and two queue slots again.
  for (let n = 4; n < 40; n++) await bus.emit("job.run", { n });
  await finished.reach(40);
  assert.equal(peak(), 2);
  assert.equal(started.value, 40, "the aborted event never ran");
  await bus.close();
});

test("WorkerPool moves 100 000 events through a queue of 1 000 exactly once, queue bounded", async () => {
  const pool = new WorkerPool({ workers: 10, queueSize: 1000 });
  const bus = new EventBus<Events>({ backend: pool });
  const seen = new Uint8Array(100_000);
  const done = new Counter();
  bus.subscribe("job.run", async (event) => {
    await Promise.resolve();
    seen[event.data.n]!++;
    done.add();
  }, { async: true, name: "bulk" });
  let maxQueued = 0;
  for (let n = 0; n < 100_000; n++) {
    await bus.emit("job.run", { n });
    if ((n & 255) === 0) maxQueued = Math.max(maxQueued, pool.queued);
  }
  await done.reach(100_000, 60_000);
  await bus.close();
  assert.ok(seen.every((count) => count === 1), "every event exactly once");
  assert.ok(maxQueued <= 1000, `queued stayed within the queue: ${maxQueued}`);
});

test("WorkerPool waits out a retry's backoff without holding a worker", async () => {
  const pool = new WorkerPool({ workers: 1 });
  const bus = new EventBus<Events>({
    backend: pool,
    logger: new MemoryLogger(),
    retry: { attempts: 2, backoff: { initial: 300, jitter: false } },
  });
  const order: string[] = [];
  const done = new Counter();
  bus.subscribe("job.run", (event, ctx) => {
    order.push(`${event.data.n}@${ctx.attempt}`);
    if (event.data.n === 0 && ctx.attempt === 1) throw new Error("later");
    done.add();
  }, { async: true, name: "one-worker" });
  await bus.emit("job.run", { n: 0 });
  await bus.emit("job.run", { n: 1 });
  await done.reach(2);
  assert.deepEqual(order, ["0@1", "1@1", "0@2"]);
  assert.equal(bus.stats().retried, 1);
  await bus.close();
});

test("WorkerPool.close() rejects emits waiting for room with EventBusClosedError", async () => {
  const { bus, pool, open } = gated({ workers: 1, queueSize: 1 });
  await bus.emit("job.run", { n: 0 });
  await bus.emit("job.run", { n: 1 });
  const waiting = pool.publish(
    {
      specversion: "1.0",
      id: "x",
      type: "job.run",
      source: "t",
      time: "",
      data: { n: 2 },
      metadata: {},
    },
  );
  const closing = pool.close({ timeout: 5000 });
  await assert.rejects(waiting, EventBusClosedError);
  open();
  const report = await closing;
  assert.equal(report.completed, 2);
  assert.deepEqual(report.abandoned, []);
  await bus.close();
});

test("WorkerPool.close() twice returns the same report", async () => {
  const pool = new WorkerPool();
  const first = pool.close();
  assert.equal(pool.close(), first);
  assert.deepEqual(await first, { completed: 0, abandoned: [] });
});

test("WorkerPool.close() abandons queued events at the deadline, once each", async () => {
  const { bus, started } = gated({ workers: 1, queueSize: 10 });
  const ids: string[] = [];
  for (let n = 0; n < 5; n++) ids.push((await bus.emit("job.run", { n })).id);
  await started.reach(1);
  const report = await bus.close({ timeout: 20 });
  assert.deepEqual(report.abandoned.map((e) => e.id), ids);
  assert.equal(bus.stats().queued, 0);
});

test("WorkerPool.publish() accepts and drops an event nobody consumes", async () => {
  const pool = new WorkerPool({ queueSize: 1, overflow: "reject" });
  const bus = new EventBus({ backend: pool });
  for (let i = 0; i < 5; i++) {
    await pool.publish({
      specversion: "1.0",
      id: `${i}`,
      type: "nobody",
      source: "t",
      time: "",
      data: 1,
      metadata: {},
    });
  }
  assert.equal(pool.queued, 0);
  await bus.close();
});

test("WorkerPool counts deliveries waiting for a retry against queueSize", async () => {
  for (const overflow of ["reject", "wait"] as const) {
    const pool = new WorkerPool({ workers: 2, queueSize: 10, overflow });
    const bus = new EventBus<Events>({
      backend: pool,
      logger: new MemoryLogger(),
      retry: { attempts: 5, backoff: { initial: 60_000, jitter: false } },
    });
    const tries = new Counter();
    bus.subscribe("job.run", () => {
      tries.add();
      throw new Error("always fails");
    }, { async: true, name: "hopeless" });
    let accepted = 0;
    let refused: unknown;
    for (let n = 0; n < 1000 && refused === undefined; n++) {
      try {
        await bus.emit("job.run", { n }, {
          signal: AbortSignal.timeout(200),
        });
        accepted++;
        await nextMacrotask(); // let the pool start (and fail) the try
      } catch (error) {
        refused = error;
      }
    }
    if (overflow === "reject") assert.ok(refused instanceof QueueFullError);
    else assert.equal((refused as Error).name, "TimeoutError");
    assert.ok(accepted >= 10 && accepted <= 12, `${overflow}: ${accepted}`);
    assert.ok(pool.queued <= 12, `queued ${pool.queued}`);
    const report = await pool.close({ timeout: 0 });
    assert.equal(report.abandoned.length, accepted);
    await bus.close();
  }
});

test("WorkerPool never retries on its own: a Deliver that rejects is logged, not tried again", async () => {
  const pool = new WorkerPool();
  const logger = new MemoryLogger();
  let calls = 0;
  await pool.consume(() => {
    calls++;
    return Promise.reject(new Error("broken deliver"));
  }, {
    consumers: [{ name: "broken", type: "job.run", attempts: 3 }],
    logger,
  });
  for (let n = 0; n < 5; n++) await pool.publish(createEvent("job.run", { n }));
  const report = await pool.close({ timeout: 1000 });
  assert.equal(calls, 5);
  assert.equal(report.completed, 0);
  assert.equal(
    logger.lines.filter((l) =>
      l.level === "error" && /broken deliver/.test(l.message)
    ).length,
    5,
  );
});

test("WorkerPool: 50 000 emits waiting for room settle promptly when their signal aborts", async () => {
  const { bus, open, started } = gated({ workers: 1, queueSize: 1 });
  await bus.emit("job.run", { n: 0 });
  await started.reach(1);
  await bus.emit("job.run", { n: 1 }); // fills the queue
  const controllers: AbortController[] = [];
  const waits: Promise<unknown>[] = [];
  for (let n = 2; n < 50_002; n++) {
    const controller = new AbortController();
    controllers.push(controller);
    waits.push(
      bus.emit("job.run", { n }, { signal: controller.signal }).then(
        () => "accepted",
        (error: unknown) => error,
      ),
    );
  }
  const reason = new Error("gave up");
  const began = performance.now();
  for (const controller of controllers) controller.abort(reason);
  const elapsed = performance.now() - began; // every waiter removed by now
  const outcomes = await Promise.all(waits);
  assert.ok(outcomes.every((outcome) => outcome === reason));
  assert.ok(elapsed < 3000, `aborts took ${Math.round(elapsed)} ms`);
  open();
  const report = await bus.close({ timeout: 5000 });
  assert.equal(report.completed, 2);
});
