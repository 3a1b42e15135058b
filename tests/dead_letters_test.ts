// Copyright 2026 the @eventbus/core authors. MIT license.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  type DeadLetter,
  type Event,
  EventBus,
  matchesDeadLetter,
  WorkerPool,
} from "../mod.ts";
import { collect, Counter, MemoryLogger } from "./fixtures/_util.ts";

type Events = { "user.signup": { id: string } };

/** A bus on a pool where handler "A" fails until fixed and "B" succeeds. */
function setup(deadLetterLimit?: number) {
  const pool = new WorkerPool(
    deadLetterLimit === undefined ? {} : { deadLetterLimit },
  );
  const logger = new MemoryLogger();
  const dead = new Counter();
  const bus = new EventBus<Events>({
    backend: pool,
    logger,
    retry: { attempts: 2, backoff: { initial: 1, max: 1 } },
    onError: () => dead.add(),
  });
  const runs = { A: [] as string[], B: [] as string[] };
  const ran = new Counter();
  let fixed = false;
  bus.subscribe("user.signup", (event) => {
    runs.A.push(event.id);
    ran.add();
    if (!fixed) throw new Error(`mail server down for ${event.data.id}`);
  }, { async: true, name: "A" });
  bus.subscribe("user.signup", (event) => {
    runs.B.push(event.id);
    ran.add();
  }, { async: true, name: "B" });
  return { pool, bus, logger, dead, runs, ran, fix: () => void (fixed = true) };
}

test("WorkerPool.deadLetters lists what handler A gave up on, with its event, attempts, reason and error", async () => {
  const { pool, bus, dead } = setup();
  const sent: Event[] = [];
  for (let i = 0; i < 5; i++) {
    sent.push(await bus.emit("user.signup", { id: `u${i}` }));
  }
  await dead.reach(5);
  assert.equal(await pool.deadLetters.count(), 5);
  assert.equal(await pool.deadLetters.count({ handler: "A" }), 5);
  assert.equal(await pool.deadLetters.count({ handler: "B" }), 0);
  assert.equal(await pool.deadLetters.count({ type: "other.type" }), 0);
  const letters = await collect(pool.deadLetters.list({ handler: "A" }));
  assert.equal(letters.length, 5);
  letters.forEach((letter, i) => {
    assert.deepEqual(letter.event, sent[i]);
    assert.equal(letter.handler, "A");
    assert.equal(letter.attempts, 2);
    assert.equal(letter.reason, "failed");
    assert.equal(letter.error, `Error: mail server down for u${i}`);
    assert.ok(!Number.isNaN(Date.parse(letter.time)));
  });
  assert.equal(
    (await collect(pool.deadLetters.list({ limit: 2 }))).length,
    2,
  );
  await bus.close();
});

test("WorkerPool.deadLetters.replay() runs only the failed handler again, with the same ids", async () => {
  const { pool, bus, dead, runs, ran, fix } = setup();
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) {
    ids.push((await bus.emit("user.signup", { id: `u${i}` })).id);
  }
  await dead.reach(5);
  await ran.reach(15); // A twice and B once per event
  fix();
  const before = { A: runs.A.length, B: runs.B.length };
  assert.deepEqual(
    await pool.deadLetters.replay({ handler: "A", dryRun: true }),
    { replayed: 5 },
  );
  assert.equal(await pool.deadLetters.count({ handler: "A" }), 5);
  assert.deepEqual(await pool.deadLetters.replay({ handler: "A" }), {
    replayed: 5,
  });
  await ran.reach(20);
  await bus.close();
  assert.deepEqual(runs.A.slice(before.A).sort(), [...ids].sort());
  assert.equal(runs.B.length, before.B, "B runs 0 more times");
  assert.equal(await pool.deadLetters.count({ handler: "A" }), 0);
  assert.equal(dead.value, 5, "no new dead letter");
});

test("WorkerPool.deadLetters.purge() removes by ref or id, and dryRun changes nothing", async () => {
  const { pool, bus, dead } = setup();
  const ids: string[] = [];
  for (let i = 0; i < 4; i++) {
    ids.push((await bus.emit("user.signup", { id: `u${i}` })).id);
  }
  await dead.reach(4);
  const [first, second] = await collect(pool.deadLetters.list());
  assert.deepEqual(await pool.deadLetters.purge({ dryRun: true }), {
    purged: 4,
  });
  assert.equal(await pool.deadLetters.count(), 4);
  assert.deepEqual(await pool.deadLetters.purge({ refs: [first!.ref] }), {
    purged: 1,
  });
  assert.deepEqual(await pool.deadLetters.purge({ ids: [second!.event.id] }), {
    purged: 1,
  });
  assert.deepEqual(
    (await collect(pool.deadLetters.list())).map((l) => l.event.id),
    ids.slice(2),
  );
  assert.deepEqual(await pool.deadLetters.purge({ handler: "A" }), {
    purged: 2,
  });
  assert.equal(await pool.deadLetters.count(), 0);
  await bus.close();
});

test("WorkerPool.deadLetters keeps the last deadLetterLimit, dropping the oldest with a warning", async () => {
  const { pool, bus, dead, logger } = setup(3);
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) {
    ids.push((await bus.emit("user.signup", { id: `u${i}` })).id);
  }
  await dead.reach(5);
  assert.deepEqual(
    (await collect(pool.deadLetters.list())).map((l) => l.event.id),
    ids.slice(2),
  );
  const warnings = logger.lines.filter((l) =>
    l.level === "warn" && /Dropped the oldest dead letter/.test(l.message)
  );
  assert.equal(warnings.length, 2);
  assert.throws(() => new WorkerPool({ deadLetterLimit: -1 }), RangeError);
  await bus.close();
});

test("WorkerPool.deadLetters.replay() keeps a dead letter whose handler is gone", async () => {
  const pool = new WorkerPool();
  const dead = new Counter();
  const bus = new EventBus<Events>({
    backend: pool,
    logger: new MemoryLogger(),
    retry: { attempts: 1 },
    onError: () => dead.add(),
  });
  const sub = bus.subscribe("user.signup", () => {
    throw new Error("no");
  }, { async: true, name: "gone" });
  await bus.emit("user.signup", { id: "u1" });
  await dead.reach(1);
  sub.unsubscribe();
  assert.deepEqual(await pool.deadLetters.replay({ handler: "gone" }), {
    replayed: 0,
  });
  assert.equal(await pool.deadLetters.count(), 1);
  await bus.close();
});

test("matchesDeadLetter() requires every given criterion", () => {
  const letter: DeadLetter = {
    ref: "7",
    event: {
      specversion: "1.0",
      id: "e1",
      type: "a.b",
      source: "s",
      time: "",
      data: 1,
      metadata: {},
    },
    handler: "h",
    attempts: 1,
    reason: "failed",
    error: "",
    time: "",
  };
  assert.ok(matchesDeadLetter(letter, {}));
  assert.ok(matchesDeadLetter(letter, { handler: "h", type: "a.b" }));
  assert.ok(matchesDeadLetter(letter, { refs: ["7"], ids: ["e1"] }));
  assert.ok(!matchesDeadLetter(letter, { refs: ["8"] }));
  assert.ok(!matchesDeadLetter(letter, { handler: "h", ids: ["e2"] }));
});
