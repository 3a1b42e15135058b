// Copyright 2026 the @eventbus/core authors. MIT license.
// The published conformance entry itself: its runner check, and the small
// assertions it brings instead of node:assert (web-standard APIs only).
// The suite's cases run against every backend in tests/conformance/.

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  type ConformanceRunner,
  runConformance,
} from "@eventbus/core/conformance";
import * as check from "../src/_conformance_assert.ts";
import { workerPoolTarget } from "./fixtures/_worker_pool.ts";

const TARGET = workerPoolTarget();

test("runConformance() declares one group of named tests with the runner's functions", () => {
  const groups: string[] = [];
  const tests: string[] = [];
  runConformance(TARGET, {
    describe: (name, body) => {
      groups.push(name);
      body();
    },
    it: (name) => void tests.push(name),
  });
  assert.deepEqual(groups, ["WorkerPool conformance"]);
  assert.ok(tests.length >= 17, `${tests.length} tests`);
  assert.equal(new Set(tests).size, tests.length, "names are unique");
  assert.ok(tests.includes("keeps event types apart"));
});

test("runConformance() rejects a runner without describe and it with TypeError", () => {
  assert.throws(
    () => runConformance(TARGET, {} as ConformanceRunner),
    TypeError,
  );
  assert.throws(
    () =>
      runConformance(
        TARGET,
        { describe: () => {} } as unknown as ConformanceRunner,
      ),
    TypeError,
  );
});

test("the suite's equal() and ok() pass on a match and name both values on a mismatch", () => {
  check.equal(1, 1);
  check.equal(NaN, NaN);
  check.ok("yes");
  assert.throws(() => check.equal(1, 2, "count"), {
    name: "AssertionError",
    message: "count: expected 2, got 1",
  });
  assert.throws(() => check.equal("1", 1), /expected 1, got "1"/);
  assert.throws(() => check.ok(0, "flag"), /flag: expected a truthy value/);
});

test("the suite's deepEqual() compares structure, prototypes, Map, Set and Date", () => {
  check.deepEqual(
    { a: [1, { b: "c" }], d: undefined, m: new Map([["k", 1]]) },
    { a: [1, { b: "c" }], d: undefined, m: new Map([["k", 1]]) },
  );
  check.deepEqual(new Set([1, 2]), new Set([2, 1]));
  check.deepEqual(new Date(5), new Date(5));
  check.deepEqual([], []);
  assert.throws(
    () => check.deepEqual({ a: [1, 2] }, { a: [1, 3] }),
    /first difference at \.a\[1\]/,
  );
  assert.throws(
    () => check.deepEqual({ d: undefined }, {}),
    /AssertionError|expected/,
  );
  assert.throws(() => check.deepEqual([1], { 0: 1 }));
  assert.throws(() =>
    check.deepEqual(new Map([["k", 1]]), new Map([["k", 2]]))
  );
  assert.throws(() => check.deepEqual(new Date(5), new Date(6)));
  assert.throws(() => check.deepEqual(1n, 2n), /expected 2n, got 1n/);
});

test("the suite's rejects() checks the class or a predicate, and fails on a resolve", async () => {
  await check.rejects(Promise.reject(new RangeError("r")), RangeError);
  await check.rejects(Promise.reject(new RangeError("r")), Error);
  await check.rejects(
    Promise.reject(new Error("x")),
    (error) => (error as Error).message === "x",
  );
  await assert.rejects(
    check.rejects(Promise.reject(new Error("x")), TypeError, "emit"),
    /emit: expected a rejection with TypeError, got Error: x/,
  );
  await assert.rejects(
    check.rejects(Promise.reject(new Error("x")), () => false),
    /the rejection failed its check/,
  );
  await assert.rejects(
    check.rejects(Promise.resolve(1), TypeError),
    /expected a rejection with TypeError, the promise resolved/,
  );
});
