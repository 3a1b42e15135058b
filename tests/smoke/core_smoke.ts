// Copyright 2026 the @eventbus/core authors. MIT license.
// What only a browser must prove: the core runs in a page with web APIs
// only. Deno, Bun and Node run the whole test suite (tests/); this file is
// bundled for Chromium by browser_run.ts (esbuild, platform "browser", so a
// node:* import anywhere in the core fails the build) and checks the core's
// moving parts there: emit and emitSync, the worker pool, retries, handler
// timeouts, abort signals, close at its deadline, the CloudEvents wire
// format with web crypto, and the published conformance suite on the
// WorkerPool. browser_entry.ts adds the check that no rejection escaped.
// The assertions and waiting helpers are the conformance suite's own
// (web-standard). Every wait is bounded; nothing sleeps to wait for a result.

import {
  DeadLetterError,
  decodeEvent,
  describeError,
  encodeEvent,
  EventBus,
  EventBusClosedError,
  HandlerError,
  HandlerTimeoutError,
  SerializationError,
  WorkerPool,
} from "../../mod.ts";
import { runConformance } from "../../src/conformance.ts";
import { workerPoolTarget } from "../fixtures/_worker_pool.ts";
import { RecordingBackend } from "../../src/testing.ts";
import { withResolvers } from "../../src/_async.ts";
import * as assert from "../../src/_conformance_assert.ts";
import {
  Counter,
  MemoryLogger,
  withDeadline,
} from "../../src/_conformance_util.ts";

/** One named check. */
export interface SmokeCheck {
  /** What the check proves, named for the symbol and the behaviour. */
  readonly name: string;
  /** Throws (or rejects) when the behaviour is wrong. */
  readonly run: () => Promise<void>;
}

/** Options of {@linkcode runSmoke}. */
export interface SmokeOptions {
  /** Where each result line goes. @default {console.log} */
  write?: (line: string) => void;
  /** Deadline of each check, in ms. @default {30000} */
  timeout?: number;
}

/** What {@linkcode runSmoke} found. */
export interface SmokeResult {
  passed: number;
  failed: number;
}

const UUID_V7 =
  /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const WAIT = 10_000;

/** Runs every check one after another and writes one line per check. */
export async function runSmoke(
  options: SmokeOptions = {},
): Promise<SmokeResult> {
  const { write = (line) => console.log(line), timeout = 30_000 } = options;
  let passed = 0;
  let failed = 0;
  for (const check of [...CHECKS, ...conformanceChecks()]) {
    const start = performance.now();
    try {
      await withDeadline(
        check.run(),
        timeout,
        () => `${check.name} did not finish`,
      );
      passed++;
      write(`ok   ${check.name} (${Math.round(performance.now() - start)} ms)`);
    } catch (error) {
      failed++;
      write(`FAIL ${check.name}: ${describeError(error)}`);
      for (
        const frame of (error as Error)?.stack?.split("\n").slice(1, 4) ?? []
      ) {
        write(`       ${frame.trim()}`);
      }
    }
  }
  return { passed, failed };
}

/** The published conformance suite on the WorkerPool, one check per test. */
function conformanceChecks(): SmokeCheck[] {
  const checks: SmokeCheck[] = [];
  let group = "";
  runConformance(workerPoolTarget({ bulk: 500 }), {
    describe(name, body) {
      group = name;
      body();
    },
    it: (name, run) => checks.push({ name: `${group} > ${name}`, run }),
  });
  return checks;
}

type AppEvents = {
  "user.signup": { id: string; email: string };
  "user.login": { user: string };
  "job.run": { n: number };
};

const CHECKS: SmokeCheck[] = [
  {
    name:
      "EventBus.emit() runs sync handlers inline and resolves with a CloudEvents event (web crypto id)",
    async run() {
      const bus = new EventBus<AppEvents>({ source: "smoke" });
      const seen: string[] = [];
      bus.subscribe("user.signup", (event) => void seen.push(event.data.email));
      const event = await bus.emit("user.signup", {
        id: "u1",
        email: "ada@example.com",
      }, { metadata: { traceparent: "00-abc-def-01" } });
      assert.deepEqual(
        seen,
        ["ada@example.com"],
        "handled before emit resolved",
      );
      assert.equal(event.specversion, "1.0");
      assert.equal(event.source, "smoke");
      assert.ok(UUID_V7.test(event.id), `id ${event.id} is a UUID v7`);
      assert.deepEqual(
        decodeEvent(encodeEvent(event)),
        event,
        "wire round trip",
      );
      await bus.close();
    },
  },
  {
    name:
      "EventBus.emitSync() rejects with HandlerError holding every failure of a sync gate",
    async run() {
      const bus = new EventBus<AppEvents>();
      const first = new Error("rate limited");
      const second = new Error("invalid");
      let ranAfterFailure = 0;
      bus.subscribe("user.login", () => {
        throw first;
      });
      bus.subscribe("user.login", () => void ranAfterFailure++);
      bus.subscribe("user.login", () => Promise.reject(second));
      let caught: unknown;
      await assert.rejects(
        bus.emitSync("user.login", { user: "mallory" }).catch((error) => {
          caught = error;
          throw error;
        }),
        HandlerError,
      );
      assert.deepEqual((caught as HandlerError).errors, [first, second]);
      assert.equal(ranAfterFailure, 1, "handlers after a failure still ran");
      await bus.close();
    },
  },
  {
    name:
      "WorkerPool runs async handlers after emit() resolved: each name gets every event, shared names compete",
    async run() {
      const total = 100;
      const bus = new EventBus<AppEvents>({
        backend: new WorkerPool({ workers: 4, queueSize: 16 }),
      });
      const audit: number[] = [];
      const mailer: [number[], number[]] = [[], []];
      const done = new Counter();
      bus.subscribe("job.run", async (event) => {
        await new Promise((resolve) => setTimeout(resolve, 0));
        audit.push(event.data.n);
        done.add();
      }, { async: true, name: "audit" });
      for (const i of [0, 1] as const) {
        bus.subscribe("job.run", (event) => {
          mailer[i].push(event.data.n);
          done.add();
        }, { async: true, name: "mailer" });
      }
      for (let n = 0; n < total; n++) await bus.emit("job.run", { n });
      await done.reach(2 * total, WAIT, "deliveries");
      const report = await bus.close();
      const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
      const all = Array.from({ length: total }, (_, n) => n);
      assert.deepEqual(sorted(audit), all, "audit got every event once");
      assert.deepEqual(sorted([...mailer[0], ...mailer[1]]), all, "mailer");
      assert.ok(mailer[0].length > 0 && mailer[1].length > 0, "both competed");
      assert.deepEqual(report, { completed: 2 * total, abandoned: [] });
    },
  },
  {
    name:
      "a handler timeout aborts ctx.signal with HandlerTimeoutError, the try is retried, then dead-lettered to onError",
    async run() {
      const dead = withResolvers<DeadLetterError>();
      const bus = new EventBus<AppEvents>({
        logger: new MemoryLogger(),
        onError: (error) => {
          if (error instanceof DeadLetterError) dead.resolve(error);
        },
      });
      const reasons: unknown[] = [];
      bus.subscribe("job.run", async (_event, ctx) => {
        await new Promise((resolve) =>
          ctx.signal.addEventListener("abort", resolve, { once: true })
        );
        reasons.push(ctx.signal.reason);
      }, {
        async: true,
        name: "slow",
        timeout: 20,
        retry: { attempts: 2, backoff: { initial: 1, max: 2 } },
      });
      await bus.emit("job.run", { n: 1 });
      const error = await withDeadline(dead.promise, WAIT, () => "dead letter");
      await bus.close();
      assert.equal(reasons.length, 2, "both tries were aborted");
      assert.ok(reasons.every((r) => r instanceof HandlerTimeoutError));
      assert.equal(error.cause, reasons[1], "the cause is the last timeout");
      assert.equal(error.attempts, 2);
    },
  },
  {
    name:
      'WorkerPool overflow "wait": an aborted emit() rejects with the signal\'s reason and leaks no slot',
    async run() {
      const bus = new EventBus<AppEvents>({
        backend: new WorkerPool({ workers: 1, queueSize: 1, overflow: "wait" }),
      });
      const gate = withResolvers<void>();
      const started = new Counter();
      const handled: number[] = [];
      bus.subscribe("job.run", async (event) => {
        started.add();
        await gate.promise;
        handled.push(event.data.n);
      }, { async: true, name: "resizer" });
      await bus.emit("job.run", { n: 1 });
      await started.reach(1, WAIT, "first handler started");
      await bus.emit("job.run", { n: 2 });
      const controller = new AbortController();
      const reason = new Error("caller gave up");
      const third = bus.emit("job.run", { n: 3 }, {
        signal: controller.signal,
      });
      controller.abort(reason);
      await assert.rejects(third, (error) => error === reason);
      const fourth = bus.emit("job.run", { n: 4 }); // needs the slot back
      gate.resolve();
      await withDeadline(fourth, WAIT, () => "emit after an aborted wait");
      const report = await bus.close({ timeout: WAIT });
      assert.deepEqual(handled, [1, 2, 4]);
      assert.deepEqual(report, { completed: 3, abandoned: [] });
    },
  },
  {
    name:
      "EventBus.close() at its timeout aborts a handler that ignores its signal and reports the events abandoned",
    async run() {
      const bus = new EventBus<AppEvents>({
        backend: new WorkerPool({ workers: 1 }),
      });
      const signals: AbortSignal[] = [];
      const started = new Counter();
      bus.subscribe("job.run", async (_event, ctx) => {
        signals.push(ctx.signal);
        started.add();
        await new Promise(() => {}); // never settles
      }, { async: true, name: "stubborn" });
      const e1 = await bus.emit("job.run", { n: 1 });
      const e2 = await bus.emit("job.run", { n: 2 });
      await started.reach(1, WAIT, "first handler started");
      const report = await withDeadline(
        bus.close({ timeout: 30 }),
        WAIT,
        () => "close() waited for a handler that ignores its signal",
      );
      assert.equal(report.completed, 0);
      assert.deepEqual(
        report.abandoned.map((e) => e.id).sort(),
        [e1.id, e2.id].sort(),
      );
      assert.ok(signals[0]?.reason instanceof EventBusClosedError);
      await assert.rejects(bus.emit("job.run", { n: 3 }), EventBusClosedError);
    },
  },
  {
    name:
      "a remote backend rejects a payload JSON cannot carry with SerializationError and publishes nothing",
    async run() {
      const backend = new RecordingBackend();
      const bus = new EventBus({ backend });
      await assert.rejects(
        bus.emit("job.run", { n: 1n }),
        (error) =>
          error instanceof SerializationError && error.path === "data.n",
      );
      assert.equal(backend.published.length, 0);
      await bus.emit("job.run", { n: 1 });
      assert.equal(backend.published.length, 1);
      await bus.close();
    },
  },
];
