// Copyright 2026 the @eventbus/core authors. MIT license.
// One suite, every backend: the backend contract of DESIGN.md stated as
// tests (after Watermill's universal pub/sub tests, adapted to handler names,
// retries, dead letters and close reports). Published through
// runConformance() of conformance.ts; the project's backends run it from
// tests/conformance/<name>_test.ts.

import type { ConformanceRunner, ConformanceTarget } from "./conformance.ts";
import { declareDeadLetterCases } from "./_conformance_dead_letters.ts";
import { declareInputCases } from "./_conformance_input.ts";
import * as assert from "./_conformance_assert.ts";
import {
  Counter,
  MemoryLogger,
  tally,
  withDeadline,
  work,
} from "./_conformance_util.ts";
import {
  type Events,
  FAST_RETRY,
  harness,
  ORDER_SCHEMA,
} from "./_conformance_world.ts";
import {
  DeadLetterError,
  EventValidationError,
  NonRetriableError,
} from "./errors.ts";
import type { Delivery } from "./backend.ts";
import { createEvent, encodeEvent, type Event } from "./event.ts";
import { EventBus } from "./event_bus.ts";
import type { Instrumentation } from "./types.ts";

/** Declares the conformance tests for one backend with the runner's functions. */
export function declareConformance(
  target: ConformanceTarget,
  runner: ConformanceRunner,
): void {
  const {
    durable = false,
    bulk = 1000,
    timeout = 20_000,
    deadLetters = true,
  } = target.features ?? {};
  const describe = (name: string, body: () => void): unknown =>
    runner.describe(name, body);
  const it = (name: string, body: () => Promise<void>): unknown =>
    runner.it(name, body);

  const helpers = harness(target);
  const { buses, scenario, closeAll } = helpers;

  describe(`${target.name} conformance`, () => {
    it("delivers an event with id, type, source, time, data and metadata intact", () =>
      scenario(async (world) => {
        const { producer, workers, all } = await buses(world, 1);
        const received: Event[] = [];
        const count = new Counter();
        workers[0]!.subscribe("conf.order.placed", (event) => {
          received.push(event);
          count.add();
        }, { async: true, name: "roundtrip" });
        await workers[0]!.listen();
        const sent = await producer.emit("conf.order.placed", {
          n: 7,
          tags: ["a", "b"],
        }, { metadata: { traceparent: "00-abc-def-01", partitionkey: "k1" } });
        await count.reach(1, timeout, "deliveries");
        await closeAll(all);
        assert.equal(received.length, 1);
        assert.deepEqual(received[0], sent);
      }));

    it("carries the trace context instrumentation writes at emit to the try, and names its telemetry", () =>
      scenario(async (world) => {
        const traceparent =
          "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        const tries: Delivery[] = [];
        const instrumentation: Instrumentation = {
          publish: () => ({ metadata: { traceparent }, end() {} }),
          deliver: (delivery) => {
            tries.push(delivery);
            return { end() {} };
          },
        };
        const { producer, workers, all } = await buses(world, 1, {
          instrumentation,
        });
        const received: Event[] = [];
        const count = new Counter();
        workers[0]!.subscribe("conf.order.placed", (event) => {
          received.push(event);
          count.add();
        }, { async: true, name: "traced" });
        await workers[0]!.listen();
        const sent = await producer.emit("conf.order.placed", { n: 1 });
        await count.reach(1, timeout, "deliveries");
        await closeAll(all);
        assert.equal(sent.metadata.traceparent, traceparent);
        assert.deepEqual(received, [sent]);
        assert.equal(tries.length, 1, "one try");
        assert.equal(tries[0]!.event.metadata.traceparent, traceparent);
        assert.equal(tries[0]!.handler, "traced");
        // Each backend names its messaging system and destinations.
        const telemetry = producer.backend.telemetry;
        assert.ok(telemetry !== undefined, "the backend has telemetry");
        assert.ok(telemetry.system.length > 0, "a messaging system");
        assert.ok(telemetry.destination("conf.order.placed").length > 0);
        assert.ok(
          telemetry.destination("conf.order.placed", "traced").length > 0,
        );
      }));

    it(`delivers every one of ${bulk} accepted events exactly once`, () =>
      scenario(async (world) => {
        const { producer, workers, all } = await buses(world, 1);
        const seen: string[] = [];
        const count = new Counter();
        workers[0]!.subscribe("conf.order.placed", (event) => {
          seen.push(event.id);
          count.add();
        }, { async: true, name: "bulk" });
        await workers[0]!.listen();
        const ids: string[] = [];
        const window: Promise<unknown>[] = [];
        for (let n = 0; n < bulk; n++) {
          window.push(
            producer.emit("conf.order.placed", { n }).then((e) =>
              ids.push(e.id)
            ),
          );
          if (window.length === 100) await Promise.all(window.splice(0));
        }
        await Promise.all(window);
        await count.reach(bulk, timeout, "deliveries");
        await closeAll(all);
        const counts = tally(seen);
        assert.equal(ids.length, bulk);
        assert.equal(counts.size, bulk, "every accepted event arrived");
        for (const id of ids) {
          assert.equal(counts.get(id), 1, `event ${id} once`);
        }
        assert.equal(workers[0]!.stats().completed, bulk);
      }));

    it("keeps event types apart", () =>
      scenario(async (world) => {
        // Both types have a handler: a backend may refuse a type that has
        // none (nothing could keep it for a handler it does not know).
        const { producer, workers, all } = await buses(world, 1);
        const seen = { other: [] as string[], placed: [] as string[] };
        const count = new Counter();
        workers[0]!.subscribe("conf.other", (event) => {
          seen.other.push(event.type);
          count.add();
        }, { async: true, name: "other-only" });
        workers[0]!.subscribe("conf.order.placed", (event) => {
          seen.placed.push(event.type);
          count.add();
        }, { async: true, name: "placed-only" });
        await workers[0]!.listen();
        await producer.emit("conf.order.placed", { n: 1 });
        await producer.emit("conf.other", { n: 2 });
        await count.reach(2, timeout, "deliveries");
        await closeAll(all);
        assert.deepEqual(seen.other, ["conf.other"]);
        assert.deepEqual(seen.placed, ["conf.order.placed"]);
      }));

    it("retries a failing handler with increasing attempt numbers until it succeeds", () =>
      scenario(async (world) => {
        const { producer, workers, all } = await buses(world, 1, {
          retry: FAST_RETRY,
        });
        const attempts = new Map<string, number[]>();
        const done = new Counter();
        workers[0]!.subscribe("conf.order.placed", (event, ctx) => {
          attempts.set(event.id, [
            ...(attempts.get(event.id) ?? []),
            ctx.attempt,
          ]);
          if (ctx.attempt < 3) throw new Error(`fail ${ctx.attempt}`);
          done.add();
        }, { async: true, name: "flaky" });
        await workers[0]!.listen();
        const ids: string[] = [];
        for (let n = 0; n < 10; n++) {
          ids.push((await producer.emit("conf.order.placed", { n })).id);
        }
        await done.reach(10, timeout, "successful tries");
        await closeAll(all);
        for (const id of ids) assert.deepEqual(attempts.get(id), [1, 2, 3]);
        const stats = workers[0]!.stats();
        assert.equal(stats.completed, 10);
        assert.equal(stats.failed, 20);
        assert.equal(stats.retried, 20);
        assert.equal(stats.deadLettered, 0);
      }));

    it("dead-letters a delivery after its last attempt and reports it once to onError", () =>
      scenario(async (world) => {
        const dead: DeadLetterError[] = [];
        const deadCount = new Counter();
        const { producer, workers, all } = await buses(world, 1, {
          retry: FAST_RETRY,
          onError: (error) => {
            if (error instanceof DeadLetterError) dead.push(error);
            deadCount.add();
          },
        });
        let tries = 0;
        workers[0]!.subscribe("conf.order.placed", (_event, ctx) => {
          tries++;
          throw new Error(`always fails (${ctx.attempt})`);
        }, { async: true, name: "hopeless" });
        await workers[0]!.listen();
        const ids: string[] = [];
        for (let n = 0; n < 5; n++) {
          ids.push((await producer.emit("conf.order.placed", { n })).id);
        }
        await deadCount.reach(5, timeout, "dead letters");
        await closeAll(all);
        assert.equal(dead.length, 5);
        assert.deepEqual(dead.map((e) => e.event.id).sort(), [...ids].sort());
        for (const error of dead) {
          assert.equal(error.attempts, 3);
          assert.equal(error.handler, "hopeless");
          assert.equal((error.cause as Error).message, "always fails (3)");
        }
        assert.equal(tries, 15);
        assert.equal(workers[0]!.stats().deadLettered, 5);
      }));

    it("times out a try, aborts its signal with HandlerTimeoutError and retries", () =>
      scenario(async (world) => {
        const { producer, workers, all } = await buses(world, 1, {
          retry: FAST_RETRY,
        });
        const reasons: string[] = [];
        const done = new Counter();
        workers[0]!.subscribe("conf.order.placed", async (_event, ctx) => {
          if (ctx.attempt === 1) {
            await new Promise<void>((resolve) => {
              ctx.signal.addEventListener("abort", () => {
                reasons.push((ctx.signal.reason as Error).name);
                resolve();
              }, { once: true });
            });
            return; // settles after the timeout: still a failed try
          }
          done.add();
        }, { async: true, name: "slow-once", timeout: 50 });
        await workers[0]!.listen();
        await producer.emit("conf.order.placed", { n: 1 });
        await done.reach(1, timeout, "second tries");
        await closeAll(all);
        assert.deepEqual(reasons, ["HandlerTimeoutError"]);
        assert.equal(workers[0]!.stats().failed, 1);
        assert.equal(workers[0]!.stats().completed, 1);
      }));

    it("shares the events of one handler name among competing consumers", () =>
      scenario(async (world) => {
        const { producer, workers, all } = await buses(world, 2);
        const byWorker = [0, 0];
        const seen: string[] = [];
        const count = new Counter();
        workers.forEach((bus, i) =>
          bus.subscribe("conf.order.placed", async (event) => {
            byWorker[i]!++;
            seen.push(event.id);
            await work(2);
            count.add();
          }, { async: true, name: "shared" })
        );
        await Promise.all(workers.map((bus) => bus.listen()));
        const total = 200;
        await Promise.all(
          Array.from(
            { length: total },
            (_, n) => producer.emit("conf.order.placed", { n }),
          ),
        );
        await count.reach(total, timeout, "deliveries");
        await closeAll(all);
        assert.equal(seen.length, total);
        assert.equal(new Set(seen).size, total, "no event handled twice");
        assert.ok(
          byWorker[0]! > 0 && byWorker[1]! > 0,
          `both worked: ${byWorker}`,
        );
      }));

    it("gives every event to each of two handler names", () =>
      scenario(async (world) => {
        const { producer, workers, all } = await buses(world, 2);
        const seen = { audit: [] as string[], mail: [] as string[] };
        const count = new Counter();
        workers[0]!.subscribe("conf.order.placed", (event) => {
          seen.audit.push(event.id);
          count.add();
        }, { async: true, name: "audit" });
        workers[1]!.subscribe("conf.order.placed", (event) => {
          seen.mail.push(event.id);
          count.add();
        }, { async: true, name: "mail" });
        await Promise.all(workers.map((bus) => bus.listen()));
        const ids: string[] = [];
        for (let n = 0; n < 50; n++) {
          ids.push((await producer.emit("conf.order.placed", { n })).id);
        }
        await count.reach(100, timeout, "deliveries");
        await closeAll(all);
        assert.deepEqual([...seen.audit].sort(), [...ids].sort());
        assert.deepEqual([...seen.mail].sort(), [...ids].sort());
      }));

    it("close() lets in-flight deliveries finish before it resolves", () =>
      scenario(async (world) => {
        const { producer, workers, all } = await buses(world, 1);
        const started = new Counter();
        let finished = 0;
        workers[0]!.subscribe("conf.order.placed", async () => {
          started.add();
          await work(100);
          finished++;
        }, { async: true, name: "drain" });
        await workers[0]!.listen();
        for (let n = 0; n < 5; n++) {
          await producer.emit("conf.order.placed", { n });
        }
        await started.reach(5, timeout, "started handlers");
        if (producer !== workers[0]) await producer.close();
        const report = await workers[0]!.close({ timeout: 10_000 });
        assert.equal(finished, 5);
        assert.equal(report.completed, 5);
        assert.deepEqual(report.abandoned, []);
        await closeAll(all);
      }));

    it("close() with a timeout aborts handlers and loses no accepted event", () =>
      scenario(async (world) => {
        const { producer, workers, all } = await buses(world, 1);
        const started = new Counter();
        const aborted = new Counter();
        workers[0]!.subscribe("conf.order.placed", async (_event, ctx) => {
          started.add();
          ctx.signal.addEventListener("abort", () => aborted.add(), {
            once: true,
          });
          await new Promise(() => {}); // ignores the abort: close must not wait
        }, { async: true, name: "stuck" });
        await workers[0]!.listen();
        const ids: string[] = [];
        for (let n = 0; n < 3; n++) {
          ids.push((await producer.emit("conf.order.placed", { n })).id);
        }
        await started.reach(3, timeout, "started handlers");
        if (producer !== workers[0]) await producer.close();
        const report = await withDeadline(
          workers[0]!.close({ timeout: 100 }),
          timeout,
          () => "close() did not resolve after its timeout",
        );
        await aborted.reach(3, timeout, "aborted signals");
        assert.equal(report.completed, 0);
        if (!durable) {
          assert.deepEqual(
            report.abandoned.map((e) => e.id).sort(),
            [...ids].sort(),
          );
          return;
        }
        // Durable: nothing abandoned; the next consumer of the name gets them.
        assert.deepEqual(report.abandoned, []);
        const next = new EventBus<Events>({
          backend: await world.backend(),
          logger: new MemoryLogger(),
        });
        const again: string[] = [];
        const count = new Counter();
        next.subscribe("conf.order.placed", (event) => {
          again.push(event.id);
          count.add();
        }, { async: true, name: "stuck" });
        await next.listen();
        await count.reach(3, timeout, "redeliveries");
        await next.close();
        await closeAll(all);
        assert.deepEqual([...new Set(again)].sort(), [...ids].sort());
      }));

    it("delivers events emitted before the first worker of a handler name started", () =>
      scenario(async (world) => {
        const hint = {
          handlers: [{ type: "conf.order.placed", name: "late" }],
        };
        const producer = new EventBus<Events>({
          backend: await world.backend(hint),
          logger: new MemoryLogger(),
        });
        if (!producer.backend.remote) {
          await producer.close();
          return; // in-process: a handler exists before its events do
        }
        const ids: string[] = [];
        for (let n = 0; n < 5; n++) {
          ids.push((await producer.emit("conf.order.placed", { n })).id);
        }
        const worker = new EventBus<Events>({
          backend: await world.backend(hint),
          logger: new MemoryLogger(),
        });
        const seen: string[] = [];
        const count = new Counter();
        worker.subscribe("conf.order.placed", (event) => {
          seen.push(event.id);
          count.add();
        }, { async: true, name: "late" });
        await worker.listen();
        await count.reach(5, timeout, "deliveries to the first worker");
        await closeAll([producer, worker]);
        assert.deepEqual([...seen].sort(), [...ids].sort());
      }));

    it("dead-letters a delivery whose worker stopped during every allowed try, without running it again", () =>
      scenario(async (world) => {
        if (!durable) return; // in-process: close reports it abandoned
        const retry = { attempts: 2, backoff: { initial: 5, max: 20 } };
        // Emitted before any worker of "poison" exists: a backend that
        // declares handler queues up front needs the hint.
        const hint = {
          handlers: [{ type: "conf.order.placed", name: "poison" }],
        };
        const producer = new EventBus<Events>({
          backend: await world.backend(hint),
          logger: new MemoryLogger(),
        });
        const sent = await producer.emit("conf.order.placed", { n: 1 });
        await producer.close();
        const attempts: number[] = [];
        // Two workers in turn: each starts the try, never finishes it, and
        // is closed at a short deadline, as a crash would leave it.
        for (let round = 1; round <= 2; round++) {
          const started = new Counter();
          const worker = new EventBus<Events>({
            backend: await world.backend(hint),
            logger: new MemoryLogger(),
            retry,
          });
          worker.subscribe("conf.order.placed", async (_event, ctx) => {
            attempts.push(ctx.attempt);
            started.add();
            await new Promise(() => {}); // never settles, ignores the abort
          }, { async: true, name: "poison" });
          await worker.listen();
          await started.reach(1, timeout, `try of round ${round}`);
          const report = await worker.close({ timeout: 50 });
          assert.deepEqual(report.abandoned, [], "left on the broker");
        }
        assert.deepEqual(attempts, [1, 2]);
        const dead: DeadLetterError[] = [];
        const reported = new Counter();
        const last = new EventBus<Events>({
          backend: await world.backend(hint),
          logger: new MemoryLogger(),
          retry,
          onError: (error) => {
            if (error instanceof DeadLetterError) dead.push(error);
            reported.add();
          },
        });
        let runs = 0;
        const after = new Counter();
        last.subscribe("conf.order.placed", (event) => {
          runs++;
          if (event.data.n === 2) after.add();
        }, { async: true, name: "poison" });
        await last.listen();
        await reported.reach(1, timeout, "dead letters");
        // A healthy event after it still flows, and nothing is reported twice.
        const producer2 = new EventBus<Events>({
          backend: await world.backend(hint),
          logger: new MemoryLogger(),
        });
        await producer2.emit("conf.order.placed", { n: 2 });
        await after.reach(1, timeout, "the healthy event");
        await closeAll([last, producer2]);
        assert.equal(runs, 1, "the poison event never ran a third time");
        assert.equal(dead.length, 1);
        assert.equal(dead[0]!.reason, "crashed");
        assert.equal(dead[0]!.event.id, sent.id);
        assert.equal(dead[0]!.handler, "poison");
        assert.equal(dead[0]!.attempts, 2);
        assert.equal(last.stats().deadLettered, 1);
      }));

    it("dead-letters and logs once a message on the wire that is not an event", () =>
      scenario(async (world) => {
        if (world.inject === undefined) return; // no wire to put it on
        const errors = new Counter();
        const logger = new MemoryLogger();
        const { producer, workers, all } = await buses(world, 1, {
          logger: {
            ...logger,
            error: (message: string) => {
              logger.error(message);
              errors.add();
            },
          },
        });
        const seen: number[] = [];
        const count = new Counter();
        workers[0]!.subscribe("conf.order.placed", (event) => {
          seen.push(event.data.n);
          count.add();
        }, { async: true, name: "guarded" });
        await workers[0]!.listen();
        await producer.emit("conf.order.placed", { n: 1 });
        await world.inject("conf.order.placed", "not an event {");
        await producer.emit("conf.order.placed", { n: 2 });
        await count.reach(2, timeout, "valid deliveries");
        await errors.reach(1, timeout, "error lines");
        await producer.emit("conf.order.placed", { n: 3 });
        await count.reach(3, timeout, "valid deliveries");
        await closeAll(all);
        assert.deepEqual([...seen].sort(), [1, 2, 3]);
        assert.equal(errors.value, 1, "logged once");
      }));

    it("dead-letters data that fails its schema after one try, and a NonRetriableError at once", () =>
      scenario(async (world) => {
        if (world.inject === undefined) return; // no wire to put it on
        const hint = {
          handlers: [{ type: "conf.order.placed", name: "validated" }],
        };
        const dead: DeadLetterError[] = [];
        const reported = new Counter();
        const worker = new EventBus({
          backend: await world.backend(hint),
          logger: new MemoryLogger(),
          retry: FAST_RETRY,
          schemas: { "conf.order.placed": ORDER_SCHEMA },
          onError: (error) => {
            if (error instanceof DeadLetterError) dead.push(error);
            reported.add();
          },
        });
        const producer = new EventBus<Events>({
          backend: await world.backend(hint),
          logger: new MemoryLogger(),
        });
        const tries = new Map<number, number>();
        const handled = new Counter();
        worker.subscribe("conf.order.placed", (event) => {
          const { n } = event.data;
          tries.set(n, (tries.get(n) ?? 0) + 1);
          if (n === 13) throw new NonRetriableError(`order ${n} cannot be`);
          handled.add();
        }, { async: true, name: "validated" });
        await worker.listen();
        await producer.emit("conf.order.placed", { n: 1 });
        const foreign = createEvent("conf.order.placed", { n: "one" });
        await world.inject("conf.order.placed", encodeEvent(foreign));
        const doomed = await producer.emit("conf.order.placed", { n: 13 });
        await producer.emit("conf.order.placed", { n: 2 });
        await handled.reach(2, timeout, "valid deliveries");
        await reported.reach(2, timeout, "dead letters");
        await closeAll([worker, producer]);
        assert.deepEqual([...tries].sort(([a], [b]) => a - b), [
          [1, 1],
          [2, 1],
          [13, 1],
        ]);
        const byId = new Map(dead.map((error) => [error.event.id, error]));
        assert.equal(dead.length, 2);
        const invalid = byId.get(foreign.id);
        assert.equal(invalid?.reason, "invalid-data");
        assert.equal(invalid?.attempts, 1);
        assert.ok(invalid?.cause instanceof EventValidationError);
        assert.equal(byId.get(doomed.id)?.reason, "not-retriable");
        assert.equal(byId.get(doomed.id)?.attempts, 1);
      }));

    declareInputCases(it, helpers);
    if (deadLetters) declareDeadLetterCases(it, helpers, timeout);
  });
}
