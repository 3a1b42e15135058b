// Copyright 2026 the @eventbus/core authors. MIT license.
import assert from "node:assert/strict";
import { AsyncResource } from "node:async_hooks";
import process from "node:process";
import { test } from "node:test";
import v8 from "node:v8";
import { runInNewContext } from "node:vm";
import {
  type AsyncBackend,
  type CloseReport,
  type ConsumeOptions,
  createEvent,
  type DeadLetterError,
  type Deliver,
  type Event,
  EventBus,
  EventBusClosedError,
  type EventBusOptions,
  HandlerError,
  HandlerTimeoutError,
  InvalidEventTypeError,
  type Logger,
  QueueFullError,
  SerializationError,
  WorkerPool,
} from "../mod.ts";
import { RecordingBackend } from "../src/testing.ts";
import {
  collectUnhandled,
  Counter,
  MemoryLogger,
  nextMacrotask,
  withDeadline,
} from "./fixtures/_util.ts";

type Events = {
  "user.signup": { id: string };
  "user.login.before": { user: string };
  "cache.cleared": undefined;
};

function quietBus(options: EventBusOptions = {}) {
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
    /onError failed: Error: onError broke/,
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
    handlers: { w: { completed: 2, failed: 3, retried: 2, deadLettered: 1 } },
  });
  await bus.close();
});

test("EventBus: stats().handlers counts completed, failed, retried and deadLettered per handler name", async () => {
  const dead = new Counter();
  const done = new Counter();
  const { bus } = quietBus({
    retry: { attempts: 2, backoff: { initial: 1, max: 2 } },
    onError: () => dead.add(),
  });
  bus.subscribe("user.signup", () => {
    throw new Error("down");
  }, { async: true, name: "A" });
  bus.subscribe("user.signup", () => done.add(), { async: true, name: "B" });
  bus.subscribe("user.signup", () => {}); // sync: no deliveries, no line
  assert.deepEqual(bus.stats().handlers, {
    A: { completed: 0, failed: 0, retried: 0, deadLettered: 0 },
    B: { completed: 0, failed: 0, retried: 0, deadLettered: 0 },
  });
  for (let i = 0; i < 3; i++) await bus.emit("user.signup", { id: `u${i}` });
  await done.reach(3);
  await dead.reach(3);
  const stats = bus.stats();
  assert.deepEqual(stats.handlers, {
    A: { completed: 0, failed: 6, retried: 3, deadLettered: 3 },
    B: { completed: 3, failed: 0, retried: 0, deadLettered: 0 },
  });
  assert.deepEqual(
    [stats.completed, stats.failed, stats.retried, stats.deadLettered],
    [3, 6, 3, 3],
    "the bus-wide totals are the sums per name",
  );
  stats.handlers.A!.failed = 100; // a snapshot: changing it changes nothing
  assert.equal(bus.stats().handlers.A!.failed, 6);
  await bus.close();
});

test("EventBus: stats().handlers keeps a name's counters while a subscription uses it, drops them after", async () => {
  const done = new Counter();
  const { bus } = quietBus();
  const handler = () => done.add();
  const first = bus.subscribe("user.signup", handler, {
    async: true,
    name: "twice",
  });
  const second = bus.subscribe("user.signup", handler, {
    async: true,
    name: "twice",
  });
  const proto = bus.subscribe("user.signup", handler, {
    async: true,
    name: "__proto__",
  });
  for (let i = 0; i < 4; i++) await bus.emit("user.signup", { id: `u${i}` });
  await done.reach(8);
  const zero = { completed: 0, failed: 0, retried: 0, deadLettered: 0 };
  const four = { ...zero, completed: 4 };
  assert.deepEqual(
    bus.stats().handlers,
    Object.fromEntries([["twice", four], ["__proto__", four]]),
    'competing subscriptions share their name\'s line; "__proto__" is a name',
  );
  first.unsubscribe();
  proto.unsubscribe();
  assert.deepEqual(bus.stats().handlers, { twice: four });
  second.unsubscribe();
  assert.deepEqual(bus.stats().handlers, {}, "a freed name's line is gone");
  bus.subscribe("user.signup", handler, { async: true, name: "twice" });
  await bus.emit("user.signup", { id: "u4" });
  await done.reach(9);
  assert.deepEqual(
    bus.stats().handlers,
    { twice: { ...zero, completed: 1 } },
    "subscribed again, it starts from zero",
  );
  assert.equal(bus.stats().completed, 9, "the bus-wide totals keep counting");
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

test("EventBus: a delivery past its attempts is dead-lettered as crashed without running", async () => {
  let deliver: Deliver | undefined;
  const backend: AsyncBackend = {
    name: "replaying",
    remote: true,
    publish: () => Promise.resolve(),
    consume(d) {
      deliver = d;
      return Promise.resolve();
    },
    close: () => Promise.resolve({ completed: 0, abandoned: [] }),
  };
  const dead: DeadLetterError[] = [];
  const { bus } = quietBus({
    backend,
    retry: { attempts: 3 },
    onError: (error) => void dead.push(error as DeadLetterError),
  });
  let runs = 0;
  bus.subscribe("user.signup", () => void runs++, {
    async: true,
    name: "mailer",
  });
  await bus.listen();
  const event = createEvent("user.signup", { id: "u1" });
  const third = await deliver!({ event, handler: "mailer", attempt: 3 });
  assert.equal(third.status, "completed");
  const fourth = await deliver!({ event, handler: "mailer", attempt: 4 });
  assert.equal(fourth.status, "dead-letter");
  assert.equal(runs, 1, "the fourth delivery did not run");
  assert.equal(dead.length, 1);
  assert.equal(dead[0]!.reason, "crashed");
  assert.equal(dead[0]!.attempts, 3);
  assert.equal(dead[0]!.event, event);
  assert.equal(bus.stats().deadLettered, 1);
  await bus.close();
});

// --- Hardening: user callbacks, unsubscribe, emit, names, bounds, listen ---

/** A logger whose every method throws (or rejects, when `async`). */
function brokenLogger(async = false): Logger & { calls: number } {
  const logger = { calls: 0 } as Logger & { calls: number };
  for (const level of ["debug", "info", "warn", "error"] as const) {
    logger[level] = () => {
      logger.calls++;
      const error = new Error(`logger.${level} broke`);
      if (async) return Promise.reject(error) as unknown as void;
      throw error;
    };
  }
  return logger;
}

for (const async of [false, true]) {
  test(
    `EventBus: a ${
      async ? "rejecting" : "throwing"
    } logger never adds a try, stalls no timer and leaks no rejection`,
    async () => {
      using unhandled = collectUnhandled();
      const quiet = silenceConsoleError();
      try {
        const logger = brokenLogger(async);
        const bus = new EventBus<Events>({
          logger,
          retry: { attempts: 3, backoff: { initial: 1, max: 2 } },
        });
        const attempts: number[] = [];
        bus.subscribe("user.signup", (_event, ctx) => {
          attempts.push(ctx.attempt);
          throw new Error("always");
        }, { async: true, name: "failing" });
        let fired = false;
        const timer = new Promise<void>((resolve) =>
          setTimeout(() => {
            fired = true;
            resolve();
          }, 0)
        );
        await bus.emit("user.signup", { id: "1" });
        await withDeadline(timer, 5000, () => "a 0 ms timer never fired");
        const report = await bus.close({ timeout: 5000 });
        assert.ok(fired);
        assert.deepEqual(attempts, [1, 2, 3]);
        assert.deepEqual(report.abandoned, []);
        assert.equal(bus.stats().deadLettered, 1);
        assert.equal(bus.stats().failed, 3);
        assert.ok(logger.calls >= 3, "the logger was called (and broke)");
        await nextMacrotask();
        assert.deepEqual(unhandled.reasons, []);
      } finally {
        quiet.restore();
      }
    },
  );
}

test("EventBus: an async onError that rejects is caught and logged, even by a throwing logger", async () => {
  using unhandled = collectUnhandled();
  const quiet = silenceConsoleError();
  try {
    const logger = new MemoryLogger();
    const dead = new Counter();
    const bus = new EventBus<Events>({
      logger,
      retry: { attempts: 1 },
      onError: async () => {
        dead.add();
        await Promise.resolve();
        throw new Error("onError rejected");
      },
    });
    bus.subscribe("user.signup", () => {
      throw new Error("nope");
    }, { async: true, name: "bad" });
    await bus.emit("user.signup", { id: "1" });
    await dead.reach(1);
    await nextMacrotask();
    assert.ok(
      logger.lines.some((l) =>
        l.level === "error" && /onError.*onError rejected/.test(l.message)
      ),
      JSON.stringify(logger.lines),
    );
    await bus.close();

    // The same with a logger that throws: the fallback is console.error.
    const bus2 = new EventBus<Events>({
      logger: brokenLogger(),
      retry: { attempts: 1 },
      onError: () => Promise.reject(new Error("onError rejected again")),
    });
    bus2.subscribe("user.signup", () => {
      throw new Error("nope");
    }, { async: true, name: "bad" });
    await bus2.emit("user.signup", { id: "1" });
    await bus2.close();
    await nextMacrotask();
    assert.ok(
      quiet.lines.some((line) => /onError rejected again/.test(line)),
      JSON.stringify(quiet.lines),
    );
    assert.deepEqual(unhandled.reasons, []);
  } finally {
    quiet.restore();
  }
});

test("EventBus: unsubscribe stops new deliveries only; accepted ones still run", async () => {
  const { bus } = quietBus({
    backend: new WorkerPool({ workers: 1, queueSize: 200 }),
    retry: { attempts: 2, backoff: { initial: 1, max: 1 } },
  });
  const handled: string[] = [];
  let calls = 0;
  const sub = bus.subscribe("user.signup", (event) => {
    calls++;
    if (calls === 1) {
      sub.unsubscribe();
      throw new Error("first try fails: a retry waits");
    }
    handled.push(event.data.id);
  }, { async: true, name: "leaver" });
  // All 100 are queued before the first try runs and unsubscribes.
  const accepted = (await Promise.all(
    Array.from(
      { length: 100 },
      (_, i) => bus.emit("user.signup", { id: `${i}` }),
    ),
  )).map((event) => event.data.id);
  const report = await bus.close({ timeout: 5000 });
  assert.deepEqual(report.abandoned, []);
  assert.deepEqual([...handled].sort(), [...accepted].sort());
  assert.equal(bus.stats().completed, 100);
  assert.equal(bus.stats().retried, 1);
  // After the unsubscribe, new events reach nobody.
  const { bus: later } = quietBus();
  let after = 0;
  later.subscribe("user.signup", () => void after++, {
    async: true,
    name: "gone",
  }).unsubscribe();
  await later.emit("user.signup", { id: "x" });
  await later.close();
  assert.equal(after, 0);
});

test("EventBus.emit(): no async handler code runs inside the emit() call", async () => {
  for (const backend of [new WorkerPool(), inlineBackend()]) {
    const { bus } = quietBus({ backend });
    const order: string[] = [];
    const done = new Counter();
    bus.subscribe("user.signup", () => {
      order.push("handler body");
      done.add();
    }, { async: true, name: "eager" });
    order.push("before emit");
    const promise = bus.emit("user.signup", { id: "1" });
    order.push("emit returned");
    await promise;
    await done.reach(1);
    await bus.close();
    assert.deepEqual(
      order,
      ["before emit", "emit returned", "handler body"],
      backend.name,
    );
  }
});

test("EventBus.emit() accepts a payload nested 100 000 deep and names the path of a bad leaf", async () => {
  const backend = new RecordingBackend();
  const { bus } = quietBus({ backend });
  const deep = (leaf: unknown) => {
    let value: unknown = leaf;
    for (let i = 0; i < 100_000; i++) value = { a: value };
    return value;
  };
  // deno-lint-ignore no-explicit-any
  const emit = bus.emit as (type: string, data: unknown) => Promise<any>;
  await emit.call(bus, "user.signup", deep("ok"));
  assert.equal(backend.published.length, 1);
  await assert.rejects(
    emit.call(bus, "user.signup", deep(1n)),
    (error: unknown) =>
      error instanceof SerializationError &&
      error.path === `data${".a".repeat(100_000)}` &&
      error.message.length < 1000,
  );
  assert.equal(backend.published.length, 1);
  await bus.close();
});

test("EventBus: unsubscribe frees a handler name for any type, and default names restart", async () => {
  const backend = new RecordingBackend();
  const { bus } = quietBus({ backend });
  await bus.listen();
  const sub = bus.subscribe("user.signup", () => {}, {
    async: true,
    name: "worker",
  });
  sub.unsubscribe();
  bus.subscribe("user.login.before", () => {}, {
    async: true,
    name: "worker",
  });
  bus.subscribe("cache.cleared", () => {}, { async: true }).unsubscribe();
  bus.subscribe("cache.cleared", () => {}, { async: true });
  await bus.listen();
  assert.deepEqual(backend.consumers.map((c) => `${c.type}:${c.name}`), [
    "user.signup:worker",
    "user.login.before:worker",
    "cache.cleared:cache.cleared#1",
    "cache.cleared:cache.cleared#1",
  ]);
  await bus.close();
});

// node --test (Node 20) files each async resource a test creates in a Map
// whose table keeps its size: churning in a scope made outside any test
// keeps the runner's bookkeeping out of the heap measured (Deno, Bun: no-op).
const OUTSIDE_TESTS = new AsyncResource("heap-churn");

test("EventBus: subscribe/unsubscribe churn with unique names keeps the heap flat", async () => {
  const gc = exposeGc();
  if (gc === undefined) return; // no way to force a collection here
  const { bus } = quietBus();
  const churn = (from: number, count: number) =>
    OUTSIDE_TESTS.runInAsyncScope(() => {
      for (let i = from; i < from + count; i++) {
        bus.subscribe(`churn.t${i}` as "user.signup", () => {}, {
          async: true,
          name: `unique-${i}`,
        }).unsubscribe();
      }
    });
  churn(0, 20_000); // warm up
  await nextMacrotask(); // let the microtasks of the loop run, then collect
  gc();
  const before = process.memoryUsage().heapUsed;
  churn(20_000, 200_000);
  await nextMacrotask();
  gc();
  const grown = process.memoryUsage().heapUsed - before;
  await bus.close();
  // Names that were never forgotten grew the heap by ~18 MB here.
  assert.ok(grown < 4_000_000, `heap grew by ${grown} bytes`);
});

test("EventBus rejects an event type over 255 characters and a bad id before anything runs", async () => {
  const backend = new RecordingBackend();
  const { bus } = quietBus({ backend });
  let runs = 0;
  bus.subscribe("user.signup", () => void runs++);
  const long = `${"a".repeat(250)}.bcdef`; // 256 characters
  assert.throws(
    () => bus.subscribe(long as "user.signup", () => {}),
    InvalidEventTypeError,
  );
  await assert.rejects(
    bus.emit(long as "user.signup", { id: "1" }),
    (error: unknown) =>
      error instanceof InvalidEventTypeError && /255/.test(error.message),
  );
  await bus.emit(`${"a".repeat(249)}.bcdef` as "user.signup", { id: "1" });
  for (
    const id of [
      "",
      " padded",
      "padded ",
      "line\nbreak",
      "tab\tid",
      "nul\0id",
      "del\x7fid",
      "nbsp\u00a0id",
      "x".repeat(257),
    ]
  ) {
    for (const method of ["emit", "emitSync"] as const) {
      await assert.rejects(
        bus[method]("user.signup", { id: "1" }, { id }),
        (error: unknown) =>
          error instanceof TypeError &&
          /1 to 256 characters/.test(error.message),
        JSON.stringify(id),
      );
    }
  }
  await bus.emit("user.signup", { id: "1" }, { id: "x".repeat(256) });
  await bus.emit("user.signup", { id: "1" }, { id: "order-42/é" });
  assert.equal(runs, 2, "only the valid user.signup emits ran it");
  assert.equal(backend.published.length, 3);
  await bus.close();
});

test("EventBus.listen() again after later subscriptions resolves once their consumers are attached", async () => {
  const backend = new SlowAttachBackend();
  const { bus } = quietBus({ backend });
  bus.subscribe("user.signup", () => {}, { async: true, name: "first" });
  const first = bus.listen();
  backend.release();
  await first;
  assert.deepEqual(backend.attached, ["first"]);
  bus.subscribe("user.signup", () => {}, { async: true, name: "second" });
  let resolved = false;
  const second = bus.listen().then(() => void (resolved = true));
  await nextMacrotask();
  assert.equal(resolved, false, "listen() waits for the new consumer");
  backend.release();
  await second;
  assert.deepEqual(backend.attached, ["first", "second"]);
  await bus.close();
});

test("EventBus.close() while listen() is pending rejects it with EventBusClosedError", async () => {
  const backend = new SlowAttachBackend();
  const { bus } = quietBus({ backend });
  bus.subscribe("user.signup", () => {}, { async: true, name: "slow" });
  const listening = bus.listen();
  await nextMacrotask();
  await bus.close();
  await assert.rejects(listening, EventBusClosedError);
  backend.release();
});

test("EventBus.listen() on a remote backend warns once for each async handler without a name", async () => {
  const backend = new RecordingBackend();
  const { bus, logger } = quietBus({ backend });
  bus.subscribe("user.signup", () => {}, { async: true });
  bus.subscribe("user.signup", () => {}, { async: true, name: "named" });
  bus.subscribe("cache.cleared", () => {}, { async: true });
  await bus.listen();
  bus.subscribe("user.login.before", () => {}, { async: true });
  await bus.listen();
  const warnings = logger.lines.filter((l) => l.level === "warn");
  assert.equal(warnings.length, 3, JSON.stringify(warnings));
  assert.match(warnings[0]!.message, /"user\.signup#1".*name/);
  // In-process: no broker keeps a consumer, so no warning.
  const { bus: local, logger: localLogger } = quietBus();
  local.subscribe("user.signup", () => {}, { async: true });
  await local.listen();
  assert.equal(localLogger.lines.length, 0);
  await Promise.all([bus.close(), local.close()]);
});

/** A backend that runs every delivery at once, inside publish(). */
function inlineBackend(): AsyncBackend {
  const consumers: { type: string; name: string; deliver: Deliver }[] = [];
  return {
    name: "inline",
    remote: false,
    async publish(event) {
      for (const c of consumers.filter((c) => c.type === event.type)) {
        await c.deliver({ event, handler: c.name, attempt: 1 });
      }
    },
    consume(deliver, { consumers: specs }) {
      for (const { type, name } of specs) {
        consumers.push({ type, name, deliver });
      }
      return Promise.resolve();
    },
    close: () => Promise.resolve({ completed: 0, abandoned: [] }),
  };
}

/** A remote backend whose consume() resolves only when released. */
class SlowAttachBackend implements AsyncBackend {
  readonly name = "slow-attach";
  readonly remote = true;
  readonly attached: string[] = [];
  #pending: (() => void)[] = [];
  publish(): Promise<void> {
    return Promise.resolve();
  }
  consume(_deliver: Deliver, options: ConsumeOptions): Promise<void> {
    return new Promise((resolve) =>
      this.#pending.push(() => {
        for (const spec of options.consumers) this.attached.push(spec.name);
        resolve();
      })
    );
  }
  release(): void {
    for (const resolve of this.#pending.splice(0)) resolve();
  }
  close(): Promise<CloseReport> {
    return Promise.resolve({ completed: 0, abandoned: [] });
  }
}

/** Replaces console.error while a test expects the library's fallback. */
function silenceConsoleError(): { lines: string[]; restore(): void } {
  const original = console.error;
  const lines: string[] = [];
  console.error = (...args: unknown[]) => void lines.push(args.join(" "));
  return { lines, restore: () => void (console.error = original) };
}

/** `gc()` where the runtime lets a test force a collection. */
function exposeGc(): (() => void) | undefined {
  const bun = (globalThis as { Bun?: { gc(force: boolean): void } }).Bun;
  if (bun !== undefined) return () => bun.gc(true);
  try {
    v8.setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    return typeof gc === "function" ? gc : undefined;
  } catch {
    return undefined;
  }
}
