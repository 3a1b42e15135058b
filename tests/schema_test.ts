// Copyright 2026 the @eventbus/core authors. MIT license.
import assert from "node:assert/strict";
import { test } from "node:test";
import * as v from "valibot";
import { z } from "zod";
import {
  type AsyncBackend,
  createEvent,
  type DeadLetterError,
  type Deliver,
  EventBus,
  EventValidationError,
  NonRetriableError,
  type StandardSchemaV1,
  WorkerPool,
} from "../mod.ts";
import { RecordingBackend } from "../src/testing.ts";
import { Counter, MemoryLogger } from "./fixtures/_util.ts";

const signup = z.object({
  id: z.string(),
  email: z.string().email(),
  at: z.coerce.date(),
});

/** A remote backend whose deliveries the test drives by hand. */
function manualBackend(): AsyncBackend & { deliver(): Deliver } {
  let deliver: Deliver | undefined;
  return {
    name: "manual",
    remote: true,
    publish: () => Promise.resolve(),
    consume(d) {
      deliver = d;
      return Promise.resolve();
    },
    close: () => Promise.resolve({ completed: 0, abandoned: [] }),
    deliver: () => deliver!,
  };
}

test("EventBus.emit() rejects invalid data with EventValidationError before anything runs or is published", async () => {
  const backend = new RecordingBackend();
  const bus = new EventBus({
    backend,
    logger: new MemoryLogger(),
    schemas: { "user.signup": signup },
  });
  let runs = 0;
  bus.subscribe("user.signup", () => void runs++);
  for (const method of ["emit", "emitSync"] as const) {
    await assert.rejects(
      bus[method]("user.signup", { id: "u1", email: "not-an-email", at: 0 }),
      (error: unknown) =>
        error instanceof EventValidationError &&
        error.type === "user.signup" && error.phase === "emit" &&
        error.issues[0]?.path?.[0] === "email",
    );
  }
  assert.equal(runs, 0);
  assert.deepEqual(backend.published, []);
  await bus.close();
});

test("EventBus.emit() sends the input form and runs sync handlers with the output", async () => {
  const backend = new RecordingBackend();
  const bus = new EventBus({
    backend,
    logger: new MemoryLogger(),
    schemas: { "user.signup": signup },
  });
  const seen: unknown[] = [];
  bus.subscribe("user.signup", (event) => void seen.push(event.data.at));
  const sent = await bus.emit("user.signup", {
    id: "u1",
    email: "ada@example.com",
    at: "2026-01-02T03:04:05.000Z",
  });
  assert.equal(sent.data.at, "2026-01-02T03:04:05.000Z");
  assert.equal(backend.published[0]!.data, sent.data, "the input travels");
  assert.ok(seen[0] instanceof Date);
  assert.equal((seen[0] as Date).toISOString(), "2026-01-02T03:04:05.000Z");
  await bus.close();
});

test("EventBus.emit() awaits an async schema; emitSync() rejects it with TypeError", async () => {
  const checked = z.object({ n: z.number() }).refine(
    async (value) => {
      await Promise.resolve();
      return value.n > 0;
    },
    { message: "n must be positive", path: ["n"] },
  );
  const backend = new RecordingBackend();
  const bus = new EventBus({
    backend,
    logger: new MemoryLogger(),
    schemas: { "job.run": checked },
  });
  await bus.emit("job.run", { n: 1 });
  await assert.rejects(
    bus.emit("job.run", { n: -1 }),
    (error: unknown) =>
      error instanceof EventValidationError &&
      error.issues[0]?.path?.[0] === "n",
  );
  await assert.rejects(
    bus.emitSync("job.run", { n: 1 }),
    (error: unknown) =>
      error instanceof TypeError && /asynchronously/.test(error.message),
  );
  assert.equal(backend.published.length, 1);
  await bus.close();
});

test("EventBus dead-letters data that fails its schema at consume after one try, without running the handler", async () => {
  const backend = manualBackend();
  const dead: DeadLetterError[] = [];
  const bus = new EventBus({
    backend,
    logger: new MemoryLogger(),
    schemas: { "user.signup": signup },
    retry: { attempts: 5 },
    onError: (error) => void dead.push(error as DeadLetterError),
  });
  const handled: Date[] = [];
  bus.subscribe("user.signup", (event) => void handled.push(event.data.at), {
    async: true,
    name: "welcome",
  });
  await bus.listen();
  const deliver = backend.deliver();
  const foreign = createEvent("user.signup", { id: 7, email: "x" });
  const result = await deliver({
    event: foreign,
    handler: "welcome",
    attempt: 1,
  });
  assert.equal(result.status, "dead-letter");
  const valid = createEvent("user.signup", {
    id: "u1",
    email: "ada@example.com",
    at: 86_400_000,
  });
  assert.equal(
    (await deliver({ event: valid, handler: "welcome", attempt: 1 })).status,
    "completed",
  );
  assert.equal(handled.length, 1, "only the valid event ran the handler");
  assert.equal(handled[0]!.getTime(), 86_400_000, "the handler got the output");
  assert.equal(dead.length, 1);
  assert.equal(dead[0]!.reason, "invalid-data");
  assert.equal(dead[0]!.attempts, 1);
  const cause = dead[0]!.cause as EventValidationError;
  assert.ok(cause instanceof EventValidationError);
  assert.equal(cause.phase, "consume");
  assert.deepEqual(cause.issues.map((i) => i.path?.[0]).sort(), [
    "at",
    "email",
    "id",
  ]);
  assert.equal(bus.stats().deadLettered, 1);
  await bus.close();
});

test('EventBus validates on the worker pool at consume when validate is "consume"', async () => {
  const dead = new Counter();
  const reasons: string[] = [];
  const bus = new EventBus({
    logger: new MemoryLogger(),
    schemas: { "order.placed": v.object({ total: v.number() }) },
    validate: "consume",
    onError: (error) => {
      reasons.push((error as DeadLetterError).reason);
      dead.add();
    },
  });
  let runs = 0;
  bus.subscribe("order.placed", () => void runs++, {
    async: true,
    name: "books",
  });
  // deno-lint-ignore no-explicit-any
  await bus.emit("order.placed", { total: "3" } as any); // not checked at emit
  await bus.emit("order.placed", { total: 3 });
  await dead.reach(1);
  await bus.close();
  assert.equal(runs, 1);
  assert.deepEqual(reasons, ["invalid-data"]);
});

test('EventBus with validate "none" or "emit" skips the other checks', async () => {
  const backend = manualBackend();
  const bus = new EventBus({
    backend,
    logger: new MemoryLogger(),
    schemas: { "user.signup": signup },
    validate: "emit",
  });
  let runs = 0;
  bus.subscribe("user.signup", () => void runs++, { async: true, name: "w" });
  await bus.listen();
  const foreign = createEvent("user.signup", { id: 7 });
  const result = await backend.deliver()({
    event: foreign,
    handler: "w",
    attempt: 1,
  });
  assert.equal(result.status, "completed", "no check at consume");
  assert.equal(runs, 1);
  await bus.close();

  const trusting = new EventBus({
    backend: new RecordingBackend(),
    logger: new MemoryLogger(),
    schemas: { "user.signup": signup },
    validate: "none",
  });
  // deno-lint-ignore no-explicit-any
  await trusting.emit("user.signup", { id: 1 } as any);
  await trusting.close();
  assert.throws(
    // deno-lint-ignore no-explicit-any
    () => new EventBus({ validate: "sometimes" as any }),
    RangeError,
  );
});

test("EventBus dead-letters a handler's NonRetriableError (or an error caused by one) at once", async () => {
  const reasons: string[] = [];
  const attempts: number[] = [];
  const dead = new Counter();
  const bus = new EventBus<{ "job.run": { n: number } }>({
    backend: new WorkerPool(),
    logger: new MemoryLogger(),
    retry: { attempts: 5, backoff: { initial: 1 } },
    onError: (error) => {
      reasons.push((error as DeadLetterError).reason);
      attempts.push((error as DeadLetterError).attempts);
      dead.add();
    },
  });
  let tries = 0;
  bus.subscribe("job.run", (event) => {
    tries++;
    if (event.data.n === 1) throw new NonRetriableError("gone for good");
    throw new Error("wrapped", {
      cause: new NonRetriableError("gone as well"),
    });
  }, { async: true, name: "doomed" });
  await bus.emit("job.run", { n: 1 });
  await bus.emit("job.run", { n: 2 });
  await dead.reach(2);
  await bus.close();
  assert.equal(tries, 2);
  assert.deepEqual(reasons, ["not-retriable", "not-retriable"]);
  assert.deepEqual(attempts, [1, 1]);
  assert.equal(bus.stats().retried, 0);
});

test("EventBus takes any Standard Schema, written by hand", async () => {
  const even: StandardSchemaV1<number> = {
    "~standard": {
      version: 1,
      vendor: "hand",
      validate: (value) =>
        typeof value === "number" && value % 2 === 0
          ? { value }
          : { issues: [{ message: "must be even" }] },
    },
  };
  const bus = new EventBus({
    backend: new RecordingBackend(),
    logger: new MemoryLogger(),
    schemas: { "n.even": even, "n.none": undefined },
  });
  await bus.emit("n.even", 2);
  await bus.emit("n.none", undefined);
  await assert.rejects(bus.emit("n.even", 3), EventValidationError);
  await bus.close();
});
