// Copyright 2026 the @eventbus/core authors. MIT license.
// A cross-runtime smoke test of every core feature, as plain assertions with
// a tiny runner, so that one file runs unchanged in Deno, Bun, Node (through
// tsx) and a browser page. It imports only the package's public entry points
// (mod.ts and src/testing.ts) and uses web-standard APIs only: no node:*,
// no Deno.*, no Bun.*, no DOM. Every wait is bounded by a deadline; nothing
// sleeps to wait for a result.

import {
  BackendError,
  backoffDelay,
  createEvent,
  DeadLetterError,
  decodeEvent,
  describeError,
  encodeEvent,
  type Event,
  EventBus,
  EventBusClosedError,
  HandlerError,
  HandlerTimeoutError,
  InvalidEventTypeError,
  isValidEventType,
  type Logger,
  QueueFullError,
  resolveRetryPolicy,
  Semaphore,
  SerializationError,
  WorkerPool,
} from "../../mod.ts";
import { RecordingBackend } from "../../src/testing.ts";

/** One named check. */
export interface SmokeCheck {
  /** What the check proves, named for the symbol and the behaviour. */
  readonly name: string;
  /** Throws (or rejects) when the behaviour is wrong. */
  readonly run: () => void | Promise<void>;
}

/** Options of {@linkcode runSmoke}. */
export interface SmokeOptions {
  /** Where each result line goes. @default {console.log} */
  write?: (line: string) => void;
  /** Prefix of the summary line, such as the runtime's name. @default {"smoke"} */
  label?: string;
  /** Deadline of each check, in ms. @default {15000} */
  timeout?: number;
  /** Write the summary line (off when a caller adds checks of its own). @default {true} */
  summary?: boolean;
}

/** What {@linkcode runSmoke} found. */
export interface SmokeResult {
  passed: number;
  failed: number;
  /** Every line written, the summary last. */
  lines: string[];
}

/**
 * Runs every check one after another, writes one line per check and a last
 * line `<label>: N passed, N failed`.
 */
export async function runSmoke(
  options: SmokeOptions = {},
): Promise<SmokeResult> {
  const {
    write = (line) => console.log(line),
    label = "smoke",
    timeout = 15_000,
    summary = true,
  } = options;
  const lines: string[] = [];
  const emit = (line: string): void => {
    lines.push(line);
    write(line);
  };
  let passed = 0;
  let failed = 0;
  for (const check of CHECKS) {
    const start = performance.now();
    try {
      await withDeadline(
        Promise.resolve().then(check.run),
        timeout,
        `check did not finish within ${timeout} ms`,
      );
      passed++;
      emit(`ok   ${check.name} (${Math.round(performance.now() - start)} ms)`);
    } catch (error) {
      failed++;
      emit(`FAIL ${check.name}: ${describeError(error)}`);
      if (error instanceof Error && error.stack) {
        for (const frame of error.stack.split("\n").slice(1, 4)) {
          emit(`       ${frame.trim()}`);
        }
      }
    }
  }
  if (summary) emit(`${label}: ${passed} passed, ${failed} failed`);
  return { passed, failed, lines };
}

// ---------------------------------------------------------------------------
// Assertions and helpers (web-standard only).

class AssertionFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AssertionFailure";
  }
}

function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionFailure(message);
}

function equal(actual: unknown, expected: unknown, what: string): void {
  const a = stringify(actual);
  const e = stringify(expected);
  if (a !== e) throw new AssertionFailure(`${what}: expected ${e}, got ${a}`);
}

function stringify(value: unknown): string {
  return JSON.stringify(
    value,
    (_key, v: unknown) => typeof v === "bigint" ? `${v}n` : v,
  ) ?? String(value);
}

/** Awaits a rejection and checks its class; returns the error. */
async function rejects<E extends Error>(
  promise: Promise<unknown>,
  // deno-lint-ignore no-explicit-any
  ErrorClass: abstract new (...args: any[]) => E,
  what: string,
): Promise<E> {
  try {
    await promise;
  } catch (error) {
    assert(
      error instanceof ErrorClass,
      `${what}: expected ${ErrorClass.name}, got ${describeError(error)}`,
    );
    return error;
  }
  throw new AssertionFailure(
    `${what}: expected ${ErrorClass.name}, it resolved`,
  );
}

function throws<E extends Error>(
  fn: () => unknown,
  // deno-lint-ignore no-explicit-any
  ErrorClass: abstract new (...args: any[]) => E,
  what: string,
): E {
  try {
    fn();
  } catch (error) {
    assert(
      error instanceof ErrorClass,
      `${what}: expected ${ErrorClass.name}, got ${describeError(error)}`,
    );
    return error;
  }
  throw new AssertionFailure(
    `${what}: expected ${ErrorClass.name}, nothing thrown`,
  );
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
}

/** Promise.withResolvers is not in Node 20, so build it by hand. */
function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => resolve = r);
  return { promise, resolve };
}

function withDeadline<T>(
  promise: Promise<T>,
  timeout: number,
  message: string,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new AssertionFailure(`timed out: ${message}`)),
      timeout,
    );
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/** A count that can be awaited, with a deadline. */
class Counter {
  #value = 0;
  #waiters: { target: number; resolve: () => void }[] = [];

  get value(): number {
    return this.#value;
  }

  add(): void {
    this.#value++;
    this.#waiters = this.#waiters.filter((w) => {
      if (this.#value < w.target) return true;
      w.resolve();
      return false;
    });
  }

  reach(target: number, what: string, timeout = 10_000): Promise<void> {
    if (this.#value >= target) return Promise.resolve();
    const { promise, resolve } = deferred();
    this.#waiters.push({ target, resolve });
    return withDeadline(
      promise,
      timeout,
      `${what}: reached ${this.#value} of ${target}`,
    );
  }
}

/** Resolves when the signal aborts (for handlers that honour ctx.signal). */
function aborted(signal: AbortSignal): Promise<unknown> {
  if (signal.aborted) return Promise.resolve(signal.reason);
  return new Promise((resolve) =>
    signal.addEventListener("abort", () => resolve(signal.reason), {
      once: true,
    })
  );
}

/** Simulated work: resolves after `ms`; never used to wait for a result. */
function work(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Lets timers and microtasks that are due run, once. */
function macrotask(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

class MemoryLogger implements Logger {
  readonly lines: { level: string; message: string }[] = [];
  debug(message: string): void {
    this.lines.push({ level: "debug", message });
  }
  info(message: string): void {
    this.lines.push({ level: "info", message });
  }
  warn(message: string): void {
    this.lines.push({ level: "warn", message });
  }
  error(message: string): void {
    this.lines.push({ level: "error", message });
  }
  count(level: string): number {
    return this.lines.filter((l) => l.level === level).length;
  }
}

const UUID_V7 =
  /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

type AppEvents = {
  "user.signup": { id: string; email: string };
  "cache.cleared": undefined;
};

/**
 * Compile-time checks, verified by `deno check`; never called, because tsx,
 * Bun and esbuild strip types without checking them.
 */
export function typeChecks(bus: EventBus<AppEvents>): void {
  // @ts-expect-error: unknown event name
  void bus.emit("user.signout", { id: "u1", email: "a@b" });
  // @ts-expect-error: wrong payload type
  void bus.emit("user.signup", { id: 1, email: "a@b" });
  // @ts-expect-error: missing payload field
  void bus.emitSync("user.signup", { id: "u1" });
  bus.subscribe("user.signup", (event) => {
    // @ts-expect-error: the payload has no such field
    void event.data.name;
  });
  void bus.emit("cache.cleared", undefined);
}

// ---------------------------------------------------------------------------
// The checks.

const CHECKS: SmokeCheck[] = [
  {
    name:
      "EventBus.emit() runs sync handlers inline and resolves with a CloudEvents event",
    async run() {
      const bus = new EventBus<AppEvents>({ source: "smoke" });
      const seen: string[] = [];
      bus.subscribe("user.signup", (event) => void seen.push(event.data.email));
      const event = await bus.emit("user.signup", {
        id: "u1",
        email: "ada@example.com",
      }, { metadata: { traceparent: "00-abc-def-01" } });
      equal(seen, ["ada@example.com"], "handled before emit resolved");
      equal(event.specversion, "1.0", "specversion");
      equal(event.type, "user.signup", "type");
      equal(event.source, "smoke", "source");
      equal(event.data, { id: "u1", email: "ada@example.com" }, "data");
      equal(event.metadata, { traceparent: "00-abc-def-01" }, "metadata");
      assert(UUID_V7.test(event.id), `id ${event.id} is a UUID v7`);
      equal(new Date(event.time).toISOString(), event.time, "time is RFC 3339");
      const given = await bus.emit("cache.cleared", undefined, {
        id: "fixed-1",
      });
      equal(given.id, "fixed-1", "id option");
      await bus.close();
    },
  },
  {
    name:
      "EventBus.emitSync() runs sync and async handlers inline in order and never touches the backend",
    async run() {
      const backend = new RecordingBackend();
      const bus = new EventBus({ backend });
      const order: string[] = [];
      bus.subscribe("order.placed", () => void order.push("a"));
      bus.subscribe("order.placed", async (_event, ctx) => {
        await macrotask();
        order.push(`b@${ctx.attempt}`);
      }, { async: true, name: "b" });
      bus.subscribe("order.placed", () => void order.push("c"));
      await bus.listen();
      await bus.emitSync("order.placed", { total: 3 });
      equal(order, ["a", "b@1", "c"], "order");
      equal(backend.published.length, 0, "published");
      await bus.close();
    },
  },
  {
    name:
      "EventBus.emitSync() rejects with HandlerError holding every failure (sync gate)",
    async run() {
      const bus = new EventBus();
      const first = new Error("rate limited");
      const second = new Error("invalid");
      let ranAfterFailure = 0;
      bus.subscribe("user.login", () => {
        throw first;
      });
      bus.subscribe("user.login", () => void ranAfterFailure++);
      bus.subscribe("user.login", () => Promise.reject(second));
      const error = await rejects(
        bus.emitSync("user.login", { user: "mallory" }),
        HandlerError,
        "emitSync",
      );
      assert(
        error instanceof AggregateError,
        "HandlerError is an AggregateError",
      );
      equal(error.name, "HandlerError", "name");
      assert(
        error.errors.length === 2 && error.errors[0] === first &&
          error.errors[1] === second,
        "errors holds both failures in subscription order",
      );
      equal(error.event.type, "user.login", "error.event.type");
      equal(ranAfterFailure, 1, "handlers after a failure still ran");
      await bus.emitSync("user.other", {}); // no handlers: resolves
      await bus.close();
    },
  },
  {
    name:
      "EventBus.emit() still hands the event to async handlers when a sync handler fails",
    async run() {
      const bus = new EventBus({ logger: new MemoryLogger() });
      const handled = new Counter();
      bus.subscribe("user.signup", () => {
        throw new Error("side effect failed");
      });
      bus.subscribe("user.signup", () => handled.add(), {
        async: true,
        name: "welcome",
      });
      const error = await rejects(
        bus.emit("user.signup", { id: "u1" }),
        HandlerError,
        "emit",
      );
      equal(error.errors.length, 1, "errors");
      await handled.reach(1, "async handler");
      const report = await bus.close();
      equal(report, { completed: 1, abandoned: [] }, "close report");
    },
  },
  {
    name:
      "WorkerPool runs async handlers: each name gets every event once, shared names compete",
    async run() {
      const N = 200;
      const bus = new EventBus({
        backend: new WorkerPool({ workers: 4, queueSize: 16 }),
      });
      const audit: number[] = [];
      const mailer: [number[], number[]] = [[], []];
      let running = 0;
      let peak = 0;
      const done = new Counter();
      bus.subscribe("order.placed", async (event) => {
        peak = Math.max(peak, ++running);
        await macrotask();
        running--;
        audit.push((event.data as { n: number }).n);
        done.add();
      }, { async: true, name: "audit" });
      for (const i of [0, 1] as const) {
        bus.subscribe("order.placed", (event) => {
          mailer[i].push((event.data as { n: number }).n);
          done.add();
        }, { async: true, name: "mailer" });
      }
      for (let n = 0; n < N; n++) await bus.emit("order.placed", { n });
      await done.reach(2 * N, "deliveries");
      const report = await bus.close();
      const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
      const all = Array.from({ length: N }, (_, n) => n);
      equal(sorted(audit), all, "audit got every event once");
      equal(
        sorted([...mailer[0], ...mailer[1]]),
        all,
        "mailer got every event once",
      );
      assert(
        mailer[0].length > 0 && mailer[1].length > 0,
        `both competing mailers got events (${mailer[0].length}, ${
          mailer[1].length
        })`,
      );
      assert(peak <= 4, `at most 4 handlers ran at once, saw ${peak}`);
      equal(report, { completed: 2 * N, abandoned: [] }, "close report");
      const stats = bus.stats();
      equal(
        [stats.queued, stats.inFlight, stats.completed, stats.failed],
        [0, 0, 2 * N, 0],
        "stats [queued, inFlight, completed, failed]",
      );
    },
  },
  {
    name:
      "WorkerPool retries a failed try after its backoff with a fresh signal and the next attempt",
    async run() {
      const logger = new MemoryLogger();
      const bus = new EventBus({ logger });
      const attempts: number[] = [];
      const signals: AbortSignal[] = [];
      const times: number[] = [];
      const done = deferred();
      bus.subscribe("job.run", (_event, ctx) => {
        attempts.push(ctx.attempt);
        signals.push(ctx.signal);
        times.push(performance.now());
        if (ctx.attempt < 3) throw new Error(`try ${ctx.attempt} failed`);
        done.resolve();
      }, {
        async: true,
        name: "flaky",
        retry: { attempts: 3, backoff: { initial: 5, max: 50, jitter: false } },
      });
      await bus.emit("job.run", {});
      await withDeadline(done.promise, 10_000, "third try");
      await bus.close();
      equal(attempts, [1, 2, 3], "attempts");
      assert(new Set(signals).size === 3, "each try had its own signal");
      const [t1 = 0, t2 = 0, t3 = 0] = times;
      // Timers may fire up to a millisecond early against performance.now().
      assert(t2 - t1 >= 4, `waited the 5 ms backoff before try 2 (${t2 - t1})`);
      assert(
        t3 - t2 >= 9,
        `waited the 10 ms backoff before try 3 (${t3 - t2})`,
      );
      const stats = bus.stats();
      equal(
        [stats.completed, stats.failed, stats.retried, stats.deadLettered],
        [1, 2, 2, 0],
        "stats [completed, failed, retried, deadLettered]",
      );
      equal(logger.count("warn"), 2, "each retried failure logged at warn");
    },
  },
  {
    name:
      "backoffDelay() grows exponentially, caps at max and applies full jitter",
    run() {
      const policy = {
        attempts: 5,
        backoff: { initial: 100, max: 300, multiplier: 2, jitter: false },
      };
      equal(
        [1, 2, 3, 4].map((a) => backoffDelay(policy, a)),
        [100, 200, 300, 300],
        "delays",
      );
      const jittered = { attempts: 5, backoff: { initial: 100, jitter: true } };
      equal(backoffDelay(jittered, 2, () => 0.5), 100, "half of 200");
      equal(backoffDelay(jittered, 2, () => 0), 0, "jitter down to 0");
      equal(resolveRetryPolicy(undefined).attempts, 3, "default attempts");
      throws(
        () => resolveRetryPolicy({ attempts: 0 }),
        RangeError,
        "attempts 0",
      );
    },
  },
  {
    name:
      "a delivery that fails every try is dead-lettered to onError once, cause = last error",
    async run() {
      const got: { error: HandlerError | DeadLetterError; event: Event }[] = [];
      const dead = deferred();
      const bus = new EventBus({
        logger: new MemoryLogger(),
        retry: { attempts: 2, backoff: { initial: 1, max: 2 } },
        onError: (error, event) => {
          got.push({ error, event });
          dead.resolve();
        },
      });
      bus.subscribe("job.run", (_event, ctx) => {
        throw new Error(`boom ${ctx.attempt}`);
      }, { async: true, name: "doomed" });
      const event = await bus.emit("job.run", { n: 1 });
      await withDeadline(dead.promise, 10_000, "dead letter");
      await bus.close();
      equal(got.length, 1, "onError calls");
      const [first] = got;
      assert(first !== undefined, "onError was called");
      const error = first.error;
      assert(error instanceof DeadLetterError, "a DeadLetterError");
      equal(error.name, "DeadLetterError", "name");
      equal(
        [error.handler, error.attempts],
        ["doomed", 2],
        "[handler, attempts]",
      );
      equal(error.event.id, event.id, "error.event");
      equal(first.event.id, event.id, "onError event");
      assert(
        error.cause instanceof Error && error.cause.message === "boom 2",
        `cause is the last try's error, got ${describeError(error.cause)}`,
      );
      equal(
        [bus.stats().failed, bus.stats().deadLettered, bus.stats().completed],
        [2, 1, 0],
        "stats [failed, deadLettered, completed]",
      );
    },
  },
  {
    name: "without onError a dead letter goes to the logger at error level",
    async run() {
      const logger = new MemoryLogger();
      const bus = new EventBus({ logger, retry: { attempts: 1 } });
      const tried = new Counter();
      bus.subscribe("job.run", () => {
        tried.add();
        throw new Error("boom");
      }, { async: true, name: "doomed" });
      await bus.emit("job.run", {});
      await tried.reach(1, "tries");
      const report = await bus.close();
      equal(report, { completed: 0, abandoned: [] }, "close report");
      equal(logger.count("error"), 1, "error lines");
      assert(
        logger.lines.some((l) => l.message.includes('"doomed"')),
        "the error names the handler",
      );
    },
  },
  {
    name:
      "a handler timeout aborts ctx.signal with HandlerTimeoutError and fails the try",
    async run() {
      const dead = deferred<DeadLetterError>();
      const bus = new EventBus({
        logger: new MemoryLogger(),
        onError: (error) => {
          if (error instanceof DeadLetterError) dead.resolve(error);
        },
      });
      let reason: unknown;
      bus.subscribe("job.slow", async (_event, ctx) => {
        reason = await aborted(ctx.signal); // honours the signal, then settles
      }, { async: true, name: "slow", timeout: 20, retry: { attempts: 1 } });
      await bus.emit("job.slow", {});
      const error = await withDeadline(dead.promise, 10_000, "dead letter");
      await bus.close();
      assert(
        reason instanceof HandlerTimeoutError,
        `signal reason is HandlerTimeoutError, got ${describeError(reason)}`,
      );
      assert(error.cause === reason, "the dead letter's cause is the timeout");
      equal(
        [reason.handler, reason.eventType, reason.timeout],
        ["slow", "job.slow", 20],
        "[handler, eventType, timeout]",
      );
      equal(
        [bus.stats().completed, bus.stats().failed],
        [0, 1],
        "settling after the timeout still counts as failed",
      );
    },
  },
  {
    name:
      "handlerTimeout applies to sync handlers in emitSync: HandlerError holds HandlerTimeoutError",
    async run() {
      const bus = new EventBus({ handlerTimeout: 20 });
      bus.subscribe("gate.check", async (_event, ctx) => {
        await aborted(ctx.signal);
      });
      const error = await rejects(
        bus.emitSync("gate.check", {}),
        HandlerError,
        "emitSync",
      );
      assert(
        error.errors[0] instanceof HandlerTimeoutError,
        `errors[0] is HandlerTimeoutError, got ${
          describeError(error.errors[0])
        }`,
      );
      await bus.close();
    },
  },
  {
    name:
      'WorkerPool overflow "reject": emit on a full queue rejects at once with QueueFullError',
    async run() {
      const bus = new EventBus({
        backend: new WorkerPool({
          workers: 1,
          queueSize: 1,
          overflow: "reject",
        }),
      });
      const gate = deferred();
      const started = new Counter();
      const handled: number[] = [];
      bus.subscribe("image.resize", async (event) => {
        started.add();
        await gate.promise;
        handled.push((event.data as { n: number }).n);
      }, { async: true, name: "resizer" });
      await bus.emit("image.resize", { n: 1 }); // taken by the one worker
      await started.reach(1, "first handler started");
      await bus.emit("image.resize", { n: 2 }); // waits in the queue
      equal(bus.stats().queued, 1, "queued");
      const error = await rejects(
        bus.emit("image.resize", { n: 3 }),
        QueueFullError,
        "third emit",
      );
      equal(
        [error.eventType, error.queueSize],
        ["image.resize", 1],
        "error fields",
      );
      assert(
        error.message.startsWith('Cannot enqueue "image.resize"'),
        error.message,
      );
      gate.resolve();
      const report = await bus.close({ timeout: 10_000 });
      equal(handled, [1, 2], "handled");
      equal(report, { completed: 2, abandoned: [] }, "close report");
    },
  },
  {
    name:
      'WorkerPool overflow "wait": emit waits for room, an aborted wait rejects with its reason and leaks no slot',
    async run() {
      const bus = new EventBus({
        backend: new WorkerPool({ workers: 1, queueSize: 1, overflow: "wait" }),
      });
      const gate = deferred();
      const started = new Counter();
      const handled: number[] = [];
      bus.subscribe("image.resize", async (event) => {
        started.add();
        await gate.promise;
        handled.push((event.data as { n: number }).n);
      }, { async: true, name: "resizer" });
      await bus.emit("image.resize", { n: 1 });
      await started.reach(1, "first handler started");
      await bus.emit("image.resize", { n: 2 });
      const controller = new AbortController();
      let settled = false;
      const third = bus.emit("image.resize", { n: 3 }, {
        signal: controller.signal,
      });
      third.then(() => settled = true, () => settled = true);
      await macrotask();
      assert(!settled, "emit waits while the queue is full");
      const reason = new Error("caller gave up");
      controller.abort(reason);
      try {
        await third;
        throw new AssertionFailure("aborted emit resolved");
      } catch (error) {
        assert(
          error === reason,
          `rejects with the signal's reason, got ${describeError(error)}`,
        );
      }
      const fourth = bus.emit("image.resize", { n: 4 }); // needs the slot back
      gate.resolve();
      await withDeadline(fourth, 10_000, "emit after an aborted wait");
      const report = await bus.close({ timeout: 10_000 });
      equal(handled, [1, 2, 4], "handled");
      equal(report, { completed: 3, abandoned: [] }, "close report");
    },
  },
  {
    name:
      "EventBus.close() drains queued and in-flight deliveries, then refuses new work",
    async run() {
      const bus = new EventBus({ backend: new WorkerPool({ workers: 2 }) });
      let handled = 0;
      bus.subscribe("job.run", async () => {
        await work(2);
        handled++;
      }, { async: true, name: "runner" });
      for (let i = 0; i < 20; i++) await bus.emit("job.run", { i });
      const report = await bus.close({ timeout: 10_000 });
      equal(handled, 20, "handled before close resolved");
      equal(report, { completed: 20, abandoned: [] }, "close report");
      equal(await bus.close(), report, "closing twice returns the same report");
      const error = await rejects(
        bus.emit("job.run", {}),
        EventBusClosedError,
        "emit",
      );
      equal(error.eventType, "job.run", "eventType");
      await rejects(
        bus.emitSync("job.run", {}),
        EventBusClosedError,
        "emitSync",
      );
      throws(
        () => bus.subscribe("job.run", () => {}),
        EventBusClosedError,
        "subscribe",
      );
      await rejects(bus.listen(), EventBusClosedError, "listen");
    },
  },
  {
    name:
      "EventBus.close() at its timeout aborts running handlers and reports abandoned events once each",
    async run() {
      const bus = new EventBus({ backend: new WorkerPool({ workers: 1 }) });
      const stuck = deferred(); // the handler ignores its signal until this
      const signals: AbortSignal[] = [];
      const started = new Counter();
      bus.subscribe("job.run", async (_event, ctx) => {
        signals.push(ctx.signal);
        started.add();
        await stuck.promise;
      }, { async: true, name: "stubborn" });
      const e1 = await bus.emit("job.run", { n: 1 });
      const e2 = await bus.emit("job.run", { n: 2 });
      await started.reach(1, "first handler started");
      const report = await withDeadline(
        bus.close({ timeout: 30 }),
        10_000,
        "close() waited for a handler that ignores its signal",
      );
      equal(report.completed, 0, "completed");
      equal(
        report.abandoned.map((e) => e.id).sort(),
        [e1.id, e2.id].sort(),
        "abandoned ids",
      );
      const [signal] = signals;
      assert(
        signal?.aborted === true,
        "the running handler's signal was aborted",
      );
      assert(
        signal.reason instanceof EventBusClosedError,
        `abort reason is EventBusClosedError, got ${
          describeError(signal.reason)
        }`,
      );
      equal(signals.length, 1, "the queued delivery never started");
      stuck.resolve();
    },
  },
  {
    name: "EventBus[Symbol.asyncDispose]() closes the bus",
    async run() {
      const bus = new EventBus();
      assert(
        typeof Symbol.asyncDispose === "symbol",
        "Symbol.asyncDispose exists",
      );
      await bus[Symbol.asyncDispose]();
      await rejects(
        bus.emit("a.b", {}),
        EventBusClosedError,
        "emit after dispose",
      );
      const pool = new WorkerPool();
      await pool[Symbol.asyncDispose]();
      await rejects(
        pool.publish(createEvent("a.b", {})),
        EventBusClosedError,
        "publish after dispose",
      );
    },
  },
  {
    name:
      "RecordingBackend records published events and listen() consumers and runs nothing",
    async run() {
      const backend = new RecordingBackend();
      const bus = new EventBus<{ "job.run": { n: number }; "job.other": null }>(
        {
          backend,
        },
      );
      let asyncRan = 0;
      let syncRan = 0;
      bus.subscribe("job.run", () => void asyncRan++, {
        async: true,
        name: "runner",
        retry: { attempts: 4 },
      });
      bus.subscribe("job.run", () => void syncRan++);
      equal(backend.consumers.length, 0, "no consumer before listen()");
      await bus.listen();
      await bus.emit("job.run", { n: 1 });
      await bus.emit("job.run", { n: 2 });
      await bus.emit("job.other", null); // remote: published without handlers
      equal(
        backend.published.map((e) => [e.type, e.data]),
        [["job.run", { n: 1 }], ["job.run", { n: 2 }], ["job.other", null]],
        "published",
      );
      equal(
        backend.consumers.map((c) => [c.name, c.type, c.attempts]),
        [["runner", "job.run", 4]],
        "consumers",
      );
      equal([asyncRan, syncRan], [0, 2], "[async ran, sync ran]");
      equal(
        [backend.name, backend.remote],
        ["recording", true],
        "[name, remote]",
      );
      backend.clear();
      equal(backend.published.length, 0, "clear()");
      await bus.close();
      await rejects(
        backend.publish(createEvent("job.run", {})),
        EventBusClosedError,
        "publish after close",
      );
    },
  },
  {
    name:
      "invalid event types are rejected by subscribe, emit and emitSync before anything runs",
    async run() {
      const backend = new RecordingBackend();
      const bus = new EventBus({ backend });
      let ran = 0;
      bus.subscribe("user.signup", () => void ran++);
      const bad = [
        "",
        " ",
        "user.*",
        "user.>",
        ".user",
        "user.",
        "a..b",
        "user signup",
      ];
      for (const type of bad) {
        assert(
          !isValidEventType(type),
          `isValidEventType(${JSON.stringify(type)})`,
        );
        const error = throws(
          () => bus.subscribe(type, () => void ran++),
          InvalidEventTypeError,
          `subscribe(${JSON.stringify(type)})`,
        );
        equal(error.eventType, type, "eventType");
        await rejects(
          bus.emit(type, {}),
          InvalidEventTypeError,
          `emit(${JSON.stringify(type)})`,
        );
        await rejects(
          bus.emitSync(type, {}),
          InvalidEventTypeError,
          `emitSync(${JSON.stringify(type)})`,
        );
      }
      for (const type of ["user.signup", "a", "A-1.b_2.c"]) {
        assert(
          isValidEventType(type),
          `isValidEventType(${JSON.stringify(type)})`,
        );
      }
      equal([ran, backend.published.length], [0, 0], "[ran, published]");
      await bus.close();
    },
  },
  {
    name:
      "a remote backend rejects payloads JSON cannot carry with SerializationError, nothing run or published",
    async run() {
      const backend = new RecordingBackend();
      const bus = new EventBus({ backend });
      let ran = 0;
      bus.subscribe("data.sent", () => void ran++);
      const cycle: Record<string, unknown> = {};
      cycle.self = cycle;
      const cases: [unknown, string][] = [
        [{ n: 1n }, "data.n"],
        [{ a: { self: cycle } }, "data.a.self.self"],
        [{ f() {} }, "data.f"],
        [{ x: Number.NaN }, "data.x"],
        [{ d: new Date(0) }, "data.d"],
        [{ s: Symbol("s") }, "data.s"],
        [[1, undefined], "data[1]"],
        [new Map(), "data"],
      ];
      for (const [data, path] of cases) {
        const error = await rejects(
          bus.emit("data.sent", data),
          SerializationError,
          `emit ${path}`,
        );
        equal(error.path, path, "path");
      }
      equal([ran, backend.published.length], [0, 0], "[ran, published]");
      await bus.emit("data.sent", { ok: [1, "two", null, { three: true }] });
      equal(
        [ran, backend.published.length],
        [1, 1],
        "a JSON-safe payload goes through",
      );
      await bus.close();
    },
  },
  {
    name: "an in-process backend passes data by reference, unchecked",
    async run() {
      const bus = new EventBus();
      const data = { n: 1n, when: new Date(0) };
      const got = deferred<unknown>();
      bus.subscribe("data.sent", (event) => got.resolve(event.data), {
        async: true,
        name: "keeper",
      });
      await bus.emit("data.sent", data);
      assert(
        await withDeadline(got.promise, 10_000, "delivery") === data,
        "the handler got the same object",
      );
      await bus.close();
    },
  },
  {
    name:
      "encodeEvent() and decodeEvent() round-trip the CloudEvents JSON wire format",
    run() {
      const event = createEvent("user.signup", { id: "u1", tags: ["a"] }, {
        source: "smoke",
        metadata: { traceparent: "00-1-2-01", partitionkey: "u1" },
      });
      const text = encodeEvent(event);
      const wire = JSON.parse(text) as Record<string, unknown>;
      equal(
        [
          wire.specversion,
          wire.datacontenttype,
          wire.traceparent,
          wire.partitionkey,
        ],
        ["1.0", "application/json", "00-1-2-01", "u1"],
        "wire attributes",
      );
      equal(decodeEvent(text), event, "decoded text");
      equal(
        decodeEvent(new TextEncoder().encode(text)),
        event,
        "decoded bytes",
      );
      for (
        const input of [
          "not json",
          "[1]",
          '{"specversion":"0.3","id":"1","source":"s","time":"t","type":"a"}',
          '{"specversion":"1.0","id":"1","source":"s","time":"t","type":"a.*"}',
          '{"specversion":"1.0","source":"s","time":"t","type":"a"}',
        ]
      ) {
        throws(
          () => decodeEvent(input),
          SerializationError,
          `decodeEvent(${input})`,
        );
      }
      throws(
        () => encodeEvent(createEvent("a", { n: 1n })),
        SerializationError,
        "encode bigint",
      );
    },
  },
  {
    name:
      "subscriptions end by unsubscribe(), by their signal and by Symbol.dispose",
    async run() {
      const bus = new EventBus();
      const calls: string[] = [];
      const a = bus.subscribe("tick", () => void calls.push("a"));
      const controller = new AbortController();
      bus.subscribe("tick", () => void calls.push("b"), {
        signal: controller.signal,
      });
      const c = bus.subscribe("tick", () => void calls.push("c"));
      await bus.emit("tick", {});
      a.unsubscribe();
      a.unsubscribe(); // twice is harmless
      controller.abort();
      c[Symbol.dispose]();
      await bus.emit("tick", {});
      equal(calls, ["a", "b", "c"], "calls");
      const early = new AbortController();
      early.abort();
      bus.subscribe("tick", () => void calls.push("d"), {
        signal: early.signal,
      });
      await bus.emitSync("tick", {});
      equal(calls.length, 3, "an already aborted signal subscribes nothing");
      throws(
        () => {
          bus.subscribe("one.type", () => {}, { async: true, name: "shared" });
          bus.subscribe("other.type", () => {}, {
            async: true,
            name: "shared",
          });
        },
        TypeError,
        "one async name for two types",
      );
      await bus.close();
    },
  },
  {
    name:
      "Semaphore limits holders, serves waiters first come first served, and an aborted wait leaves nothing behind",
    async run() {
      const semaphore = new Semaphore(2);
      const p1 = await semaphore.acquire();
      const p2 = semaphore.tryAcquire();
      assert(p2 !== undefined, "second permit free");
      equal(semaphore.tryAcquire(), undefined, "no third permit");
      const order: number[] = [];
      const w1 = semaphore.acquire().then((p) => {
        order.push(1);
        return p;
      });
      const controller = new AbortController();
      const w2 = semaphore.acquire({ signal: controller.signal });
      const w3 = semaphore.acquire().then((p) => {
        order.push(3);
        return p;
      });
      equal(semaphore.waiting, 3, "waiting");
      const reason = new Error("stop");
      controller.abort(reason);
      await w2.then(
        () => {
          throw new AssertionFailure("aborted acquire resolved");
        },
        (error) => assert(error === reason, "rejects with the signal's reason"),
      );
      equal(semaphore.waiting, 2, "the aborted waiter left");
      p1.release();
      p1.release(); // twice is harmless
      p2[Symbol.dispose]();
      const [q1, q3] = await withDeadline(
        Promise.all([w1, w3]),
        10_000,
        "waiters",
      );
      equal(order, [1, 3], "FIFO");
      q1.release();
      q3.release();
      equal([semaphore.available, semaphore.size], [2, 2], "[available, size]");
      throws(() => new Semaphore(0), RangeError, "new Semaphore(0)");
    },
  },
  {
    name: "constructors reject out-of-range options with RangeError",
    async run() {
      throws(() => new WorkerPool({ workers: 0 }), RangeError, "workers 0");
      throws(
        () => new WorkerPool({ queueSize: 1.5 }),
        RangeError,
        "queueSize 1.5",
      );
      throws(
        () => new WorkerPool({ overflow: "drop" as "wait" }),
        RangeError,
        'overflow "drop"',
      );
      throws(
        () => new EventBus({ handlerTimeout: 0 }),
        RangeError,
        "handlerTimeout 0",
      );
      const bus = new EventBus();
      throws(
        () => bus.subscribe("a", () => {}, { timeout: -1 }),
        RangeError,
        "timeout -1",
      );
      throws(
        () => bus.subscribe("a", 42 as unknown as () => void),
        TypeError,
        "handler not a function",
      );
      await bus.listen(); // in-process: resolves at once
      await bus.close();
    },
  },
  {
    name:
      "every error class has a stable name equal to its class name and keeps cause",
    run() {
      const event = createEvent("a.b", {});
      const cause = new Error("client error");
      const errors: Error[] = [
        new InvalidEventTypeError("a.*", { cause }),
        new SerializationError("Cannot serialize x", { cause, path: "data.x" }),
        new QueueFullError("a.b", 10, { cause }),
        new EventBusClosedError("a.b", { cause }),
        new HandlerError(event, [cause], { cause }),
        new HandlerTimeoutError("a.b", "h", 5, { cause }),
        new DeadLetterError(event, "h", 3, { cause }),
        new BackendError("nats-jetstream", "Cannot publish", { cause }),
      ];
      equal(
        errors.map((e) => e.name),
        [
          "InvalidEventTypeError",
          "SerializationError",
          "QueueFullError",
          "EventBusClosedError",
          "HandlerError",
          "HandlerTimeoutError",
          "DeadLetterError",
          "BackendError",
        ],
        "names",
      );
      for (const error of errors) {
        assert(error instanceof Error, `${error.name} is an Error`);
        assert(error.cause === cause, `${error.name} keeps cause`);
        assert(
          error.message.startsWith("Cannot "),
          `${error.name}: ${error.message}`,
        );
      }
    },
  },
];
