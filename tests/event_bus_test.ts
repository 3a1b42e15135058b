// Copyright 2026 the @eventbus/core authors. MIT license.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  type AsyncBackend,
  type DeadLetterError,
  type Event,
  EventBus,
  EventBusClosedError,
  HandlerError,
  HandlerTimeoutError,
  InvalidEventTypeError,
  QueueFullError,
  SerializationError,
  WorkerPool,
} from "../mod.ts";
import { RecordingBackend } from "../src/testing.ts";
import { Counter, MemoryLogger } from "./_util.ts";

type Events = {
  "user.signup": { id: string };
  "user.login.before": { user: string };
  "cache.cleared": undefined;
};

function quietBus(options: ConstructorParameters<typeof EventBus>[0] = {}) {
  const logger = new MemoryLogger();
  return { bus: new EventBus<Events>({ logger, ...options }), logger };
}

test("EventBus.emitSync() runs every handler, sync and async, in subscription order", async () => {
  const { bus } = quietBus();
  const order: string[] = [];
  bus.subscribe("user.signup", () => void order.push("sync-1"));
  bus.subscribe("user.signup", async () => {
    await Promise.resolve();
    order.push("async-2");
  }, { async: true, name: "a2" });
  bus.subscribe("user.signup", () => void order.push("sync-3"));
  await bus.emitSync("user.signup", { id: "u1" });
  assert.deepEqual(order, ["sync-1", "async-2", "sync-3"]);
  assert.equal(bus.stats().completed, 0, "emitSync never touches the backend");
  await bus.close();
});

test("EventBus.emitSync() rejects with HandlerError holding every failure, after all ran", async () => {
  const { bus } = quietBus();
  const ran: number[] = [];
  bus.subscribe("user.signup", () => {
    ran.push(1);
    throw new Error("one");
  });
  bus.subscribe("user.signup", () => void ran.push(2));
  bus.subscribe("user.signup", async () => {
    ran.push(3);
    await Promise.resolve();
    throw "two"; // a non-Error
  });
  await assert.rejects(
    bus.emitSync("user.signup", { id: "u1" }),
    (error: unknown) => {
      assert.ok(error instanceof HandlerError);
      assert.equal(error.errors.length, 2);
      assert.equal((error.errors[0] as Error).message, "one");
      assert.equal(error.errors[1], "two");
      assert.equal(error.event.type, "user.signup");
      return true;
    },
  );
  assert.deepEqual(ran, [1, 2, 3]);
  await bus.close();
});

test("EventBus.emitSync() works as a rate-limit gate", async () => {
  const { bus } = quietBus();
  const attempts = new Map<string, number>();
  bus.subscribe("user.login.before", (event) => {
    const n = (attempts.get(event.data.user) ?? 0) + 1;
    attempts.set(event.data.user, n);
    if (n > 3) throw new Error(`rate limited: ${event.data.user}`);
  });
  const results: boolean[] = [];
  for (let i = 0; i < 5; i++) {
    results.push(
      await bus.emitSync("user.login.before", { user: "mallory" }).then(
        () => true,
        () => false,
      ),
    );
  }
  assert.deepEqual(results, [true, true, true, false, false]);
  await bus.close();
});

test("EventBus.emit() runs sync handlers inline and hands the event once to the backend", async () => {
  const backend = new RecordingBackend();
  const bus = new EventBus<Events>({ backend });
  let sync = 0;
  bus.subscribe("user.signup", () => void sync++);
  bus.subscribe("user.signup", () => {}, { async: true, name: "a" });
  bus.subscribe("user.signup", () => {}, { async: true, name: "b" });
  const event = await bus.emit("user.signup", { id: "u1" });
  assert.equal(sync, 1);
  assert.deepEqual(backend.published, [event]);
  await bus.close();
});

test("EventBus.emit() still hands the event on when a sync handler fails, then rejects with HandlerError", async () => {
  const { bus } = quietBus();
  const handled = new Counter();
  bus.subscribe("user.signup", () => {
    throw new Error("side effect failed");
  });
  bus.subscribe("user.signup", () => handled.add(), {
    async: true,
    name: "mail",
  });
  await assert.rejects(bus.emit("user.signup", { id: "u1" }), HandlerError);
  await handled.reach(1);
  await bus.close();
});

test("EventBus.emit() rejects with the backend's error over a sync handler's failure", async () => {
  const pool = new WorkerPool({ workers: 1, queueSize: 1, overflow: "reject" });
  const { bus } = quietBus({ backend: pool });
  let release: () => void = () => {};
  const gate = new Promise<void>((resolve) => (release = resolve));
  bus.subscribe("user.signup", () => gate, { async: true, name: "slow" });
  await bus.emit("user.signup", { id: "1" });
  await bus.emit("user.signup", { id: "2" });
  bus.subscribe("user.signup", () => {
    throw new Error("sync");
  });
  await assert.rejects(bus.emit("user.signup", { id: "3" }), QueueFullError);
  release();
  await bus.close();
});

test("EventBus.emit() with an in-process backend skips the backend when no async handler exists", async () => {
  const published: string[] = [];
  const backend: AsyncBackend = {
    name: "counting",
    remote: false,
    publish: (event) => (published.push(event.type), Promise.resolve()),
    consume: () => Promise.resolve(),
    close: () => Promise.resolve({ completed: 0, abandoned: [] }),
  };
  const bus = new EventBus<Events>({ backend });
  bus.subscribe("user.signup", () => {}); // sync only
  for (let i = 0; i < 5; i++) await bus.emit("user.signup", { id: `${i}` });
  await bus.emit("cache.cleared", undefined); // no handler at all
  assert.deepEqual(published, []);
  bus.subscribe("user.signup", () => {}, { async: true, name: "now-async" });
  await bus.emit("user.signup", { id: "5" });
  assert.deepEqual(published, ["user.signup"], "handed on once when async");
  await bus.close();
});

test("EventBus rejects an invalid event type with InvalidEventTypeError before anything runs", async () => {
  const backend = new RecordingBackend();
  const bus = new EventBus({ backend });
  let ran = 0;
  bus.subscribe("a", () => void ran++);
  for (const bad of ["", "a b", "a.*", "a.>", ".a", "a.", "a..b"]) {
    assert.throws(() => bus.subscribe(bad, () => {}), InvalidEventTypeError);
    await assert.rejects(bus.emit(bad, 1), InvalidEventTypeError);
    await assert.rejects(bus.emitSync(bad, 1), InvalidEventTypeError);
  }
  assert.equal(ran, 0);
  assert.equal(backend.published.length, 0);
  await bus.close();
});

test("EventBus.emit() rejects a payload JSON cannot carry on a remote backend, nothing run or published", async () => {
  const backend = new RecordingBackend();
  const bus = new EventBus({ backend });
  let ran = 0;
  bus.subscribe("a", () => void ran++);
  const cycle: Record<string, unknown> = {};
  cycle.me = cycle;
  for (const data of [{ n: 1n }, cycle, { f: () => {} }, { x: NaN }]) {
    await assert.rejects(bus.emit("a", data), SerializationError);
  }
  assert.equal(ran, 0);
  assert.equal(backend.published.length, 0);
  await bus.close();
});

test("EventBus.emit() passes data by reference, unchecked, in-process", async () => {
  const { bus } = quietBus();
  const data = { n: 1n, when: new Date() };
  let got: unknown;
  const done = new Counter();
  bus.subscribe("user.signup", (event) => {
    got = event.data;
    done.add();
  }, { async: true, name: "ref" });
  // deno-lint-ignore no-explicit-any
  await bus.emit("user.signup", data as any);
  await done.reach(1);
  assert.equal(got, data);
  await bus.close();
});

test("EventBus.emit() uses the given id, metadata and source", async () => {
  const backend = new RecordingBackend();
  const bus = new EventBus<Events>({ backend, source: "auth-service" });
  const event = await bus.emit("cache.cleared", undefined, {
    id: "fixed-id",
    metadata: { traceparent: "00-1-2-01" },
  });
  assert.equal(event.id, "fixed-id");
  assert.equal(event.source, "auth-service");
  assert.deepEqual(event.metadata, { traceparent: "00-1-2-01" });
  await bus.close();
});

test("EventBus.emit() rejects with the signal's reason when aborted before it starts", async () => {
  const { bus } = quietBus();
  const reason = new Error("cancelled");
  await assert.rejects(
    bus.emit("user.signup", { id: "1" }, { signal: AbortSignal.abort(reason) }),
    (error) => error === reason,
  );
  await bus.close();
});

test("EventBus handler timeout aborts ctx.signal with HandlerTimeoutError (sync path)", async () => {
  const { bus } = quietBus({ handlerTimeout: 30 });
  let reason: unknown;
  bus.subscribe("user.signup", (_e, ctx) =>
    new Promise<void>((resolve) => {
      ctx.signal.addEventListener("abort", () => {
        reason = ctx.signal.reason;
        resolve();
      });
    }));
  await assert.rejects(
    bus.emitSync("user.signup", { id: "1" }),
    (error: unknown) => {
      assert.ok(error instanceof HandlerError);
      assert.ok(error.errors[0] instanceof HandlerTimeoutError);
      return true;
    },
  );
  assert.ok(reason instanceof HandlerTimeoutError);
  assert.equal(reason.timeout, 30);
  await bus.close();
});

test("EventBus: a handler that never settles times out and is dead-lettered after its attempts", async () => {
  const dead = new Counter();
  const errors: DeadLetterError[] = [];
  const { bus } = quietBus({
    retry: { attempts: 2, backoff: { initial: 1 } },
    onError: (error) => {
      errors.push(error as DeadLetterError);
      dead.add();
    },
  });
  bus.subscribe("user.signup", () => new Promise(() => {}), {
    async: true,
    name: "hangs",
    timeout: 20,
  });
  await bus.emit("user.signup", { id: "1" });
  await dead.reach(1);
  assert.ok(errors[0]!.cause instanceof HandlerTimeoutError);
  assert.equal(errors[0]!.attempts, 2);
  const stats = bus.stats();
  assert.equal(stats.failed, 2);
  assert.equal(stats.deadLettered, 1);
  await bus.close({ timeout: 10 });
});

test("EventBus: failed tries that will be retried go to the logger at warn level", async () => {
  const done = new Counter();
  const { bus, logger } = quietBus({
    retry: { attempts: 3, backoff: { initial: 1 } },
  });
  bus.subscribe("user.signup", (_e, ctx) => {
    if (ctx.attempt < 3) throw new Error(`try ${ctx.attempt}`);
    done.add();
  }, { async: true, name: "flaky" });
  await bus.emit("user.signup", { id: "1" });
  await done.reach(1);
  const warnings = logger.lines.filter((l) => l.level === "warn");
  assert.equal(warnings.length, 2);
  assert.match(warnings[0]!.message, /try 1 of 3.*Error: try 1/);
  await bus.close();
});

test("EventBus: without onError a dead letter goes to the logger at error level; a throwing onError is contained", async () => {
  const { bus, logger } = quietBus({ retry: { attempts: 1 } });
  bus.subscribe("user.signup", () => {
    throw new Error("nope");
  }, { async: true, name: "bad" });
  await bus.emit("user.signup", { id: "1" });
  await bus.close();
  assert.equal(logger.lines.filter((l) => l.level === "error").length, 1);

  const logger2 = new MemoryLogger();
  const bus2 = new EventBus<Events>({
    logger: logger2,
    retry: { attempts: 1 },
    onError: () => {
      throw new Error("onError broke");
    },
  });
  bus2.subscribe("user.signup", () => {
    throw new Error("nope");
  }, { async: true, name: "bad" });
  await bus2.emit("user.signup", { id: "1" });
  await bus2.close();
  assert.match(
    logger2.lines[0]!.message,
    /onError threw: Error: onError broke/,
  );
});

test("EventBus: a handler that unsubscribes itself while running does not disturb the others", async () => {
  const { bus } = quietBus();
  const calls: string[] = [];
  const sub = bus.subscribe("user.signup", () => {
    calls.push("once");
    sub.unsubscribe();
  });
  bus.subscribe("user.signup", () => void calls.push("always"));
  await bus.emitSync("user.signup", { id: "1" });
  await bus.emitSync("user.signup", { id: "2" });
  assert.deepEqual(calls, ["once", "always", "always"]);
  await bus.close();
});

test("EventBus.subscribe() unsubscribes on abort and with using", async () => {
  const { bus } = quietBus();
  let calls = 0;
  const controller = new AbortController();
  bus.subscribe("user.signup", () => void calls++, {
    signal: controller.signal,
  });
  {
    using _sub = bus.subscribe("user.signup", () => void calls++);
    await bus.emitSync("user.signup", { id: "1" });
  }
  controller.abort();
  await bus.emitSync("user.signup", { id: "2" });
  assert.equal(calls, 2);
  await bus.close();
});

test("EventBus.subscribe() rejects a non-function handler, bad options and a reused name", async () => {
  const { bus } = quietBus();
  // deno-lint-ignore no-explicit-any
  assert.throws(() => bus.subscribe("user.signup", "nope" as any), TypeError);
  assert.throws(
    () => bus.subscribe("user.signup", () => {}, { timeout: 0 }),
    RangeError,
  );
  assert.throws(
    () =>
      bus.subscribe("user.signup", () => {}, {
        async: true,
        retry: { attempts: 0 },
      }),
    RangeError,
  );
  bus.subscribe("user.signup", () => {}, { async: true, name: "mailer" });
  assert.throws(
    () =>
      bus.subscribe("cache.cleared", () => {}, { async: true, name: "mailer" }),
    TypeError,
  );
  assert.throws(() => new EventBus({ handlerTimeout: -5 }), RangeError);
  await bus.close();
  assert.throws(
    () => bus.subscribe("user.signup", () => {}),
    EventBusClosedError,
  );
});

test("EventBus: async handlers without a name each get every event", async () => {
  const { bus } = quietBus();
  const done = new Counter();
  const seen: string[] = [];
  bus.subscribe("user.signup", () => (seen.push("a"), done.add()), {
    async: true,
  });
  bus.subscribe("user.signup", () => (seen.push("b"), done.add()), {
    async: true,
  });
  await bus.emit("user.signup", { id: "1" });
  await done.reach(2);
  assert.deepEqual(seen.sort(), ["a", "b"]);
  await bus.close();
});

test("EventBus: a remote backend runs no async handler in the emitting process and listen() attaches consumers", async () => {
  const backend = new RecordingBackend();
  const bus = new EventBus<Events>({ backend });
  let ran = 0;
  bus.subscribe("user.signup", () => void ran++, { async: true, name: "w1" });
  assert.equal(backend.consumers.length, 0, "no consumer before listen()");
  await bus.listen();
  bus.subscribe("cache.cleared", () => void ran++, { async: true, name: "w2" });
  assert.deepEqual(backend.consumers.map((c) => [c.name, c.type, c.attempts]), [
    ["w1", "user.signup", 3],
    ["w2", "cache.cleared", 3],
  ]);
  await bus.emit("user.signup", { id: "1" });
  await bus.emit("cache.cleared", undefined);
  assert.equal(ran, 0);
  assert.equal(backend.published.length, 2);
  await bus.close();
});

test("EventBus.close() stops intake, is harmless twice, and reports completed", async () => {
  const { bus } = quietBus();
  const done = new Counter();
  bus.subscribe("user.signup", async () => {
    await new Promise((resolve) => setTimeout(resolve, 5));
    done.add();
  }, { async: true, name: "w" });
  for (let i = 0; i < 20; i++) await bus.emit("user.signup", { id: `${i}` });
  const first = bus.close();
  const second = bus.close();
  await assert.rejects(
    bus.emit("user.signup", { id: "late" }),
    EventBusClosedError,
  );
  await assert.rejects(
    bus.emitSync("user.signup", { id: "late" }),
    EventBusClosedError,
  );
  await assert.rejects(bus.listen(), EventBusClosedError);
  const report = await first;
  assert.equal(await second, report);
  assert.equal(report.completed, 20);
  assert.equal(done.value, 20);
  assert.deepEqual(report.abandoned, []);
});

test("EventBus.close() during emits loses no accepted event", async () => {
  const { bus } = quietBus({
    backend: new WorkerPool({ workers: 2, queueSize: 5 }),
  });
  const handled = new Set<string>();
  bus.subscribe("user.signup", async (event) => {
    await new Promise((resolve) => setTimeout(resolve, 1));
    handled.add(event.id);
  }, { async: true, name: "w" });
  const accepted: Event[] = [];
  const refused: unknown[] = [];
  const emits = Array.from(
    { length: 50 },
    (_, i) =>
      bus.emit("user.signup", { id: `${i}` }).then(
        (e) => void accepted.push(e),
        (e) => void refused.push(e),
      ),
  );
  const report = await bus.close({ timeout: 5000 });
  await Promise.all(emits);
  assert.equal(accepted.length + refused.length, 50);
  for (const error of refused) assert.ok(error instanceof EventBusClosedError);
  for (const event of accepted) {
    assert.ok(
      handled.has(event.id) || report.abandoned.includes(event),
      `${event.id} handled or reported`,
    );
  }
  assert.equal(report.completed, handled.size);
});

test("EventBus: stats() counts queued, inFlight, completed, failed, retried and deadLettered", async () => {
  const dead = new Counter();
  const done = new Counter();
  const { bus } = quietBus({
    retry: { attempts: 2, backoff: { initial: 1 } },
    onError: () => dead.add(),
  });
  bus.subscribe("user.signup", (event, ctx) => {
    if (event.data.id === "bad") throw new Error("bad");
    if (ctx.attempt === 1 && event.data.id === "flaky") {
      throw new Error("flaky");
    }
    done.add();
  }, { async: true, name: "w" });
  await bus.emit("user.signup", { id: "ok" });
  await bus.emit("user.signup", { id: "flaky" });
  await bus.emit("user.signup", { id: "bad" });
  await done.reach(2);
  await dead.reach(1);
  assert.deepEqual(bus.stats(), {
    queued: 0,
    inFlight: 0,
    completed: 2,
    failed: 3,
    retried: 2,
    deadLettered: 1,
  });
  await bus.close();
});

test("EventBus: no unhandled rejection escapes from failing async handlers", async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (event: PromiseRejectionEvent) => {
    unhandled.push(event.reason);
    event.preventDefault();
  };
  globalThis.addEventListener?.("unhandledrejection", onUnhandled);
  const dead = new Counter();
  const { bus } = quietBus({
    retry: { attempts: 1 },
    onError: () => dead.add(),
  });
  bus.subscribe("user.signup", () => Promise.reject(new Error("async fail")), {
    async: true,
    name: "r",
  });
  bus.subscribe("user.signup", () => {
    throw new Error("sync fail");
  }, { async: true, name: "t" });
  for (let i = 0; i < 10; i++) await bus.emit("user.signup", { id: `${i}` });
  await dead.reach(20);
  await bus.close();
  await new Promise((resolve) => setTimeout(resolve, 0));
  globalThis.removeEventListener?.("unhandledrejection", onUnhandled);
  assert.deepEqual(unhandled, []);
});
