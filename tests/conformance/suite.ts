// Copyright 2026 the @eventbus/core authors. MIT license.
// One suite, every backend: the backend contract of DESIGN.md stated as
// tests (after Watermill's universal pub/sub tests, adapted to handler names,
// retries, dead letters and close reports). A backend's test file calls
// runConformance() once; see tests/conformance/worker_pool_test.ts.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  type AsyncBackend,
  DeadLetterError,
  type Event,
  EventBus,
  EventBusClosedError,
  type EventBusOptions,
  InvalidEventTypeError,
  SerializationError,
} from "../../mod.ts";
import { brokerMissing } from "../_brokers.ts";
import { Counter, MemoryLogger, tally, withDeadline, work } from "../_util.ts";

/** One isolated world (its own stream, queue or topic names) for one test. */
export interface World {
  /**
   * A backend attached to this world. Remote backends: a new instance per
   * call (one per process in real life), all sharing the world's names.
   * In-process backends: the same instance every call.
   */
  backend(): Promise<AsyncBackend>;
  /** Removes what the world created on the broker. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** What a backend promises beyond the common contract. */
export interface Features {
  /**
   * Events left unfinished at close stay on the broker and reach the next
   * consumer of the same name (instead of being reported abandoned).
   * @default false
   */
  durable?: boolean;
  /** How many events the bulk test sends. @default 1000 */
  bulk?: number;
  /** Deadline for each wait, in ms. @default 20000 */
  timeout?: number;
}

/** A backend under test. */
export interface ConformanceTarget {
  /** Shown in every test name. */
  name: string;
  /** Resolves a reason when the broker is unreachable; undefined to run. */
  unavailable?: () => Promise<string | undefined>;
  /** Opens a fresh world for one test. */
  open(): Promise<World>;
  features?: Features;
}

type Events = {
  "conf.order.placed": { n: number; tags?: string[] };
  "conf.other": { n: number };
};

const FAST_RETRY = { attempts: 3, backoff: { initial: 5, max: 20 } } as const;

/** Declares the conformance tests for one backend. */
export async function runConformance(target: ConformanceTarget): Promise<void> {
  const reason = await target.unavailable?.();
  if (reason !== undefined) {
    brokerMissing(`${target.name} conformance`, reason);
    return;
  }
  const { durable = false, bulk = 1000, timeout = 20_000 } = target.features ??
    {};

  /** Producer bus plus worker buses; for in-process backends all one bus. */
  async function buses(
    world: World,
    workers: number,
    options: EventBusOptions = {},
  ): Promise<
    {
      producer: EventBus<Events>;
      workers: EventBus<Events>[];
      all: EventBus<Events>[];
    }
  > {
    const first = await world.backend();
    const make = (backend: AsyncBackend) =>
      new EventBus<Events>({ logger: new MemoryLogger(), ...options, backend });
    if (!first.remote) {
      const bus = make(first);
      return { producer: bus, workers: Array(workers).fill(bus), all: [bus] };
    }
    const producer = make(first);
    const ws: EventBus<Events>[] = [];
    for (let i = 0; i < workers; i++) ws.push(make(await world.backend()));
    return { producer, workers: ws, all: [producer, ...ws] };
  }

  async function scenario(
    body: (world: World) => Promise<void>,
  ): Promise<void> {
    await using world = await target.open();
    await body(world);
  }

  async function closeAll(list: EventBus<Events>[]): Promise<void> {
    await Promise.all(
      [...new Set(list)].map((bus) => bus.close({ timeout: 5000 })),
    );
  }

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
        const { producer, workers, all } = await buses(world, 1);
        const types: string[] = [];
        const count = new Counter();
        workers[0]!.subscribe("conf.other", (event) => {
          types.push(event.type);
          count.add();
        }, { async: true, name: "other-only" });
        await workers[0]!.listen();
        await producer.emit("conf.order.placed", { n: 1 });
        await producer.emit("conf.other", { n: 2 });
        await count.reach(1, timeout, "deliveries");
        await closeAll(all);
        assert.deepEqual(types, ["conf.other"]);
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

    it("rejects emit() after close() with EventBusClosedError", () =>
      scenario(async (world) => {
        const { producer, all } = await buses(world, 1);
        await producer.close();
        await assert.rejects(
          producer.emit("conf.order.placed", { n: 1 }),
          EventBusClosedError,
        );
        await closeAll(all);
      }));

    it("rejects an invalid event type before anything runs or is published", () =>
      scenario(async (world) => {
        const { producer, workers, all } = await buses(world, 1);
        let calls = 0;
        workers[0]!.subscribe("conf.order.placed", () => void calls++, {
          async: true,
          name: "never",
        });
        await workers[0]!.listen();
        for (const bad of ["", "a..b", "a.*", "a b", ".a", "a.", ">"]) {
          await assert.rejects(
            // deno-lint-ignore no-explicit-any
            producer.emit(bad as any, { n: 1 }),
            InvalidEventTypeError,
          );
        }
        await closeAll(all);
        assert.equal(calls, 0);
      }));

    it("rejects a payload JSON cannot carry when the backend is remote", () =>
      scenario(async (world) => {
        const { producer, all } = await buses(world, 1);
        if (!producer.backend.remote) {
          await closeAll(all);
          return; // in-process delivery passes data by reference
        }
        await assert.rejects(
          // deno-lint-ignore no-explicit-any
          producer.emit("conf.order.placed", { n: 1n } as any),
          (error: unknown) =>
            error instanceof SerializationError && error.path === "data.n",
        );
        await closeAll(all);
      }));
  });
}
