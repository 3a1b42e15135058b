// Copyright 2026 the @eventbus/core authors. MIT license.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  backoffDelay,
  DEFAULT_RETRY_POLICY,
  resolveRetryPolicy,
} from "../mod.ts";

test("backoffDelay() grows exponentially without jitter and stops at max", () => {
  const policy = {
    attempts: 10,
    backoff: { initial: 100, multiplier: 2, max: 1000, jitter: false },
  };
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6].map((attempt) => backoffDelay(policy, attempt)),
    [100, 200, 400, 800, 1000, 1000],
  );
});

test("backoffDelay() applies full jitter between 0 and the ceiling", () => {
  const policy = { attempts: 5, backoff: { initial: 100, max: 30_000 } };
  assert.equal(backoffDelay(policy, 3, () => 0), 0);
  assert.equal(backoffDelay(policy, 3, () => 0.5), 200);
  assert.equal(backoffDelay(policy, 3, () => 0.999), 400);
  for (let i = 0; i < 1000; i++) {
    const delay = backoffDelay(policy, 4);
    assert.ok(delay >= 0 && delay <= 800, `delay ${delay} within [0, 800]`);
  }
});

test("resolveRetryPolicy() fills defaults and keeps given values", () => {
  assert.equal(resolveRetryPolicy(undefined), DEFAULT_RETRY_POLICY);
  const policy = resolveRetryPolicy({ attempts: 5, backoff: { initial: 7 } });
  assert.deepEqual(policy, {
    attempts: 5,
    backoff: { initial: 7, max: 30_000, multiplier: 2, jitter: true },
  });
});

test("resolveRetryPolicy() rejects out-of-range values with RangeError", () => {
  assert.throws(() => resolveRetryPolicy({ attempts: 0 }), RangeError);
  assert.throws(() => resolveRetryPolicy({ attempts: 2.5 }), RangeError);
  assert.throws(
    () => resolveRetryPolicy({ attempts: 2, backoff: { initial: -1 } }),
    RangeError,
  );
  assert.throws(
    () => resolveRetryPolicy({ attempts: 2, backoff: { multiplier: 0.5 } }),
    RangeError,
  );
  assert.throws(
    () => resolveRetryPolicy({ attempts: 2, backoff: { max: Infinity } }),
    RangeError,
  );
});
