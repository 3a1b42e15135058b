// Copyright 2026 the @eventbus/core authors. MIT license.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Semaphore } from "../mod.ts";

test("Semaphore() rejects a permit count below 1 with RangeError", () => {
  assert.throws(() => new Semaphore(0), RangeError);
  assert.throws(() => new Semaphore(1.5), RangeError);
});

test("Semaphore.acquire() grants permits up to the limit, then queues FIFO", async () => {
  const semaphore = new Semaphore(2);
  const a = await semaphore.acquire();
  const b = await semaphore.acquire();
  assert.equal(semaphore.available, 0);
  const order: number[] = [];
  const c = semaphore.acquire().then((p) => (order.push(3), p));
  const d = semaphore.acquire().then((p) => (order.push(4), p));
  assert.equal(semaphore.waiting, 2);
  a.release();
  (await c).release();
  b.release();
  (await d).release();
  assert.deepEqual(order, [3, 4]);
  assert.equal(semaphore.available, 2);
  assert.equal(semaphore.waiting, 0);
});

test("Semaphore permit release is idempotent and disposable", async () => {
  const semaphore = new Semaphore(1);
  {
    using permit = await semaphore.acquire();
    permit.release();
    permit.release();
    assert.equal(semaphore.available, 1);
  }
  assert.equal(
    semaphore.available,
    1,
    "dispose after release gives nothing back twice",
  );
});

test("Semaphore.acquire() rejects with the signal's reason and leaves no waiter", async () => {
  const semaphore = new Semaphore(1);
  const held = await semaphore.acquire();
  const controller = new AbortController();
  const waiting = semaphore.acquire({ signal: controller.signal });
  assert.equal(semaphore.waiting, 1);
  const reason = new Error("stop");
  controller.abort(reason);
  await assert.rejects(waiting, (error) => error === reason);
  assert.equal(semaphore.waiting, 0);
  held.release();
  assert.equal(semaphore.available, 1, "the aborted waiter took no permit");
});

test("Semaphore.acquire() rejects at once with an already aborted signal", async () => {
  const semaphore = new Semaphore(1);
  const reason = new Error("already");
  await assert.rejects(
    semaphore.acquire({ signal: AbortSignal.abort(reason) }),
    (error) => error === reason,
  );
  assert.equal(semaphore.available, 1);
});

test("Semaphore.tryAcquire() does not jump the queue", async () => {
  const semaphore = new Semaphore(1);
  const held = semaphore.tryAcquire();
  assert.ok(held);
  const waiter = semaphore.acquire();
  assert.equal(semaphore.tryAcquire(), undefined);
  held.release();
  assert.equal(
    semaphore.tryAcquire(),
    undefined,
    "the permit went to the waiter",
  );
  (await waiter).release();
  assert.equal(semaphore.available, 1);
});

test("Semaphore keeps concurrency at its limit under 1000 contending tasks", async () => {
  const semaphore = new Semaphore(3);
  let running = 0;
  let peak = 0;
  await Promise.all(Array.from({ length: 1000 }, async () => {
    using _permit = await semaphore.acquire();
    peak = Math.max(peak, ++running);
    await Promise.resolve();
    running--;
  }));
  assert.equal(peak, 3);
  assert.equal(semaphore.available, 3);
});
