// Copyright 2026 the @eventbus/core authors. MIT license.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  abortable,
  deadline,
  sharedTimeout,
  withResolvers,
} from "../src/_async.ts";
import { ABANDONED, drain, InFlight } from "../src/_inflight.ts";

test("InFlight.idle() waits for every tracked task, including tasks tracked meanwhile", async () => {
  const tries = new InFlight();
  const first = withResolvers<void>();
  const second = withResolvers<void>();
  tries.track(first.promise);
  let idle = false;
  const waiting = tries.idle().then(() => void (idle = true));
  tries.track(second.promise);
  first.reject(new Error("a failed task still settles"));
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.equal(idle, false);
  assert.equal(tries.size, 1);
  second.resolve();
  await waiting;
  assert.equal(tries.size, 0);
});

test("InFlight.run() gives each try the signal and resolves abandoned once abandon() is called", async () => {
  const tries = new InFlight();
  let seen: AbortSignal | undefined;
  const result = tries.run((signal) => {
    seen = signal;
    return new Promise<string>(() => {}); // a handler that never ends
  }, "abandoned");
  assert.equal(seen, tries.signal);
  const reason = new Error("closed");
  tries.abandon(reason);
  assert.equal(await result, "abandoned");
  assert.equal(tries.abandoned, true);
  assert.equal(seen?.reason, reason);
  assert.equal(ABANDONED.status, "abandoned");
});

test("drain() waits until the deadline, then abandons the tries of every tracker", async () => {
  const quick = new InFlight();
  const stuck = new InFlight();
  quick.track(Promise.resolve());
  const result = stuck.run(() => new Promise<number>(() => {}), -1);
  stuck.track(result);
  using limit = deadline(20);
  const settled = await drain([quick, stuck], limit, { reason: "late" });
  assert.equal(settled, false);
  assert.equal(await result, -1);
  assert.equal(stuck.signal.reason, "late");
  assert.equal(quick.abandoned, true);
});

test("drain() resolves true when the tasks settle in time, after the work alongside", async () => {
  const tries = new InFlight();
  tries.track(Promise.resolve());
  let polled = false;
  const alongside = new Promise<void>((resolve) =>
    setTimeout(() => resolve(void (polled = true)), 10)
  );
  using limit = deadline(10_000);
  assert.equal(await drain([tries], limit, { reason: "x", alongside }), true);
  assert.equal(polled, true);
  assert.equal(tries.abandoned, true);
});

test("sharedTimeout() gives calls of one 50 ms step one signal, and abortable() rejects each wait on it with its TimeoutError", async () => {
  const created = performance.now();
  const a = sharedTimeout(60);
  const b = sharedTimeout(60);
  // Two calls this close almost always share a step; they may straddle one.
  assert.ok(a === b || sharedTimeout(60) === b);
  // AbortSignal.timeout's timer does not keep Node's event loop alive.
  const alive = setTimeout(() => {}, 5_000);
  const settled = abortable(Promise.resolve("done"), a);
  const never = new Promise<string>(() => {});
  const waits = Array.from({ length: 1000 }, () => abortable(never, a));
  assert.equal(await settled, "done");
  const outcomes = await Promise.allSettled(waits);
  const elapsed = performance.now() - created;
  assert.equal(outcomes.length, 1000);
  for (const outcome of outcomes) {
    assert.equal(outcome.status, "rejected");
    assert.equal((outcome as PromiseRejectedResult).reason, a.reason);
  }
  assert.equal((a.reason as DOMException).name, "TimeoutError");
  // Not long before its 60 ms: Node counts a timer from the event loop's
  // cached clock, which may lag performance.now() under load.
  assert.ok(elapsed >= 40, `aborted after ${elapsed} ms, long before 60 ms`);
  // Once aborted, a step's signal is never handed out again.
  assert.notEqual(sharedTimeout(60), a);
  await assert.rejects(abortable(never, a), (e) => e === a.reason);
  clearTimeout(alive);
});
