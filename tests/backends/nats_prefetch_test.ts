// Copyright 2026 the @eventbus/core authors. MIT license.
// JetStreamBackend's `prefetch`: events pulled ahead of the handler slots
// must be validated, must never outlive the ack wait unnoticed (no
// redelivery of a healthy handler, no try counted for waiting), must not be
// stranded in the local buffer when a worker closes, and must reach the
// next worker within seconds, not after the ack wait.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DeadLetterError, EventBus } from "../../mod.ts";
import { JetStreamBackend } from "@eventbus/nats";
import { brokerMissing, reachable } from "../fixtures/_brokers.ts";
import {
  Counter,
  MemoryLogger,
  withDeadline,
  work,
} from "../fixtures/_util.ts";
import { Admin, SHARED_NATS, uniqueNames } from "../fixtures/_nats.ts";

type Events = { "order.placed": { n: number } };
const TIMEOUT = 20_000;

describe("JetStreamBackend prefetch options", () => {
  it("rejects a prefetch that is not an integer from 1 to 10 000 with RangeError", async () => {
    for (const prefetch of [0, -1, 1.5, 10_001, Number.NaN]) {
      await assert.rejects(
        JetStreamBackend.connect({ servers: SHARED_NATS }, { prefetch }),
        RangeError,
        `prefetch ${prefetch}`,
      );
    }
  });
});

if (!await reachable("127.0.0.1", 4222)) {
  brokerMissing(
    "JetStreamBackend prefetch",
    `no NATS server on ${SHARED_NATS}`,
  );
} else {
  describe("JetStreamBackend prefetch", () => {
    it("hands buffered, not yet started events back at close so the next worker gets every one", async () => {
      const names = { ...uniqueNames("prefetch"), ackWait: 4_000 };
      await using _admin = await Admin.open(SHARED_NATS, names.stream);
      const producer = new EventBus<Events>({
        logger: new MemoryLogger(),
        backend: await JetStreamBackend.connect(
          { servers: SHARED_NATS },
          names,
        ),
      });
      // One slot and a buffer of 20: one event runs (stuck), the rest wait
      // in this process when it closes.
      const first = new EventBus<Events>({
        logger: new MemoryLogger(),
        backend: await JetStreamBackend.connect({ servers: SHARED_NATS }, {
          ...names,
          concurrency: 1,
          prefetch: 20,
        }),
      });
      const started = new Counter();
      first.subscribe("order.placed", async () => {
        started.add();
        await new Promise(() => {}); // never settles, ignores the abort
      }, { async: true, name: "buffered" });
      await first.listen();
      const ids: string[] = [];
      for (let n = 0; n < 8; n++) {
        ids.push((await producer.emit("order.placed", { n })).id);
      }
      await started.reach(1, TIMEOUT, "started handlers");
      const report = await withDeadline(
        first.close({ timeout: 200 }),
        TIMEOUT,
        () => "close() did not resolve",
      );
      assert.deepEqual(report.abandoned, []);
      assert.equal(started.value, 1, "only one slot ran");

      const second = new EventBus<Events>({
        logger: new MemoryLogger(),
        backend: await JetStreamBackend.connect(
          { servers: SHARED_NATS },
          names,
        ),
      });
      const seen = new Set<string>();
      const done = new Counter();
      second.subscribe("order.placed", (event) => {
        seen.add(event.id);
        done.add();
      }, { async: true, name: "buffered" });
      await second.listen();
      await done.reach(8, TIMEOUT, "deliveries to the next worker");
      await Promise.all([producer.close(), second.close()]);
      assert.deepEqual([...seen].sort(), [...ids].sort());
    });

    for (const failOnce of [false, true]) {
      it(
        `runs each of 30 events ${
          failOnce ? "twice (failing once)" : "once"
        } when they wait longer than ackWait for a slot: no redelivery, no try counted for waiting`,
        async () => {
          const names = { ...uniqueNames("storm"), ackWait: 1_000 };
          await using admin = await Admin.open(SHARED_NATS, names.stream);
          const producer = new EventBus<Events>({
            logger: new MemoryLogger(),
            backend: await JetStreamBackend.connect(
              { servers: SHARED_NATS },
              names,
            ),
          });
          // Two slots and the default prefetch: all 30 arrive at once, and
          // the last waits 1.5 s (3 s when each fails once) for a slot.
          const worker = new EventBus<Events>({
            logger: new MemoryLogger(),
            retry: { attempts: 3, backoff: { initial: 5, max: 20 } },
            backend: await JetStreamBackend.connect({ servers: SHARED_NATS }, {
              ...names,
              concurrency: 2,
            }),
          });
          const attempts = new Map<string, number[]>();
          let runs = 0;
          const done = new Counter();
          worker.subscribe("order.placed", async (event, ctx) => {
            runs++;
            attempts.set(event.id, [
              ...(attempts.get(event.id) ?? []),
              ctx.attempt,
            ]);
            await work(100);
            if (failOnce && ctx.attempt === 1) throw new Error("first try");
            done.add();
          }, { async: true, name: "slow" });
          await worker.listen();
          const ids: string[] = [];
          for (let n = 0; n < 30; n++) {
            ids.push((await producer.emit("order.placed", { n })).id);
          }
          await done.reach(30, TIMEOUT, "completions");
          // Every event acknowledged: a redelivery would have run by now.
          await withDeadline(
            (async () => {
              while (true) {
                const ci = await admin.jsm.consumers.info(names.stream, "slow");
                if (ci.num_ack_pending === 0 && ci.num_pending === 0) return;
                await work(50);
              }
            })(),
            TIMEOUT,
            () => "the consumer did not drain",
          );
          await Promise.all([producer.close(), worker.close()]);
          const expected = failOnce ? [1, 2] : [1];
          assert.equal(runs, 30 * expected.length, "handler runs");
          for (const id of ids) assert.deepEqual(attempts.get(id), expected);
          assert.equal(worker.stats().deadLettered, 0);
        },
      );
    }

    it("hands events back at close so the surviving worker gets them within seconds, while events keep coming, round after round", async () => {
      // A lost hand-back would come back only after this ack wait.
      const names = { ...uniqueNames("handover"), ackWait: 20_000 };
      await using _admin = await Admin.open(SHARED_NATS, names.stream);
      const producer = new EventBus<Events>({
        logger: new MemoryLogger(),
        backend: await JetStreamBackend.connect(
          { servers: SHARED_NATS },
          names,
        ),
      });
      const rounds: number[] = [];
      for (let round = 1; round <= 4; round++) {
        // Odd rounds: the running try never ends, close() hits its
        // deadline. Even rounds: it ends, close() lets it finish first.
        const hard = round % 2 === 1;
        const leaving = new EventBus<Events>({
          logger: new MemoryLogger(),
          backend: await JetStreamBackend.connect({ servers: SHARED_NATS }, {
            ...names,
            concurrency: 1,
          }),
        });
        const ran: string[] = [];
        const started = new Counter();
        leaving.subscribe("order.placed", async (event) => {
          ran.push(event.id);
          started.add();
          await (hard ? new Promise(() => {}) : work(1_000));
        }, { async: true, name: "relay" });
        await leaving.listen();
        const ids = [(await producer.emit("order.placed", { n: 0 })).id];
        await started.reach(1, TIMEOUT, `round ${round}: first start`);
        const staying = new EventBus<Events>({
          logger: new MemoryLogger(),
          backend: await JetStreamBackend.connect(
            { servers: SHARED_NATS },
            names,
          ),
        });
        const seen = new Set<string>();
        const arrived = new Counter();
        staying.subscribe("order.placed", (event) => {
          if (!seen.has(event.id)) arrived.add();
          seen.add(event.id);
        }, { async: true, name: "relay" });
        await staying.listen();
        // Events keep coming while the leaving worker closes: some are on
        // their way to its pull requests as it stops.
        let next = 1;
        const emitted = new Counter();
        const emitting = Promise.all(
          Array.from({ length: 4 }, async () => {
            while (next <= 200) {
              const n = next++;
              ids.push((await producer.emit("order.placed", { n })).id);
              emitted.add();
            }
          }),
        );
        await emitted.reach(20, TIMEOUT, `round ${round}: emits`);
        const start = performance.now();
        await leaving.close({ timeout: hard ? 100 : 10_000 });
        await emitting;
        const expected = ids.filter((id) => hard || !ran.includes(id));
        await arrived.reach(
          expected.length,
          TIMEOUT,
          `round ${round}: events at the staying worker`,
        );
        rounds.push(Math.round(performance.now() - start));
        await staying.close();
        assert.deepEqual([...seen].sort(), [...expected].sort());
        assert.equal(ran.length, 1, "the leaving worker ran one try");
      }
      await producer.close();
      console.log(`hand-over at close, 4 rounds: ${rounds.join(", ")} ms`);
      for (const ms of rounds) {
        assert.ok(ms < 6_000, `hand-over times ${rounds} ms, ackWait 20 s`);
      }
    });

    it("does not count events handed back unstarted as tries, even twice; started ones do count", async () => {
      const names = { ...uniqueNames("notcounted"), ackWait: 10_000 };
      await using _admin = await Admin.open(SHARED_NATS, names.stream);
      const retry = { attempts: 1 };
      const producer = new EventBus<Events>({
        logger: new MemoryLogger(),
        backend: await JetStreamBackend.connect(
          { servers: SHARED_NATS },
          names,
        ),
      });
      const ids: string[] = [];
      const dead: DeadLetterError[] = [];
      const reported = new Counter();
      const onError = (error: unknown) => {
        if (error instanceof DeadLetterError) dead.push(error);
        reported.add();
      };
      const stuck: string[] = [];
      // Two workers in turn: one slot, a buffer of 20, a try that never
      // ends. Each starts one event and hands the others back at close.
      for (let round = 1; round <= 2; round++) {
        const leaving = new EventBus<Events>({
          logger: new MemoryLogger(),
          retry,
          onError,
          backend: await JetStreamBackend.connect({ servers: SHARED_NATS }, {
            ...names,
            concurrency: 1,
            prefetch: 20,
          }),
        });
        const started = new Counter();
        leaving.subscribe("order.placed", async (event) => {
          stuck.push(event.id);
          started.add();
          await new Promise(() => {});
        }, { async: true, name: "once" });
        await leaving.listen();
        if (round === 1) {
          for (let n = 0; n < 8; n++) {
            ids.push((await producer.emit("order.placed", { n })).id);
          }
        }
        await started.reach(1, TIMEOUT, `round ${round}: first start`);
        await leaving.close({ timeout: 100 });
      }
      const last = new EventBus<Events>({
        logger: new MemoryLogger(),
        retry,
        onError,
        backend: await JetStreamBackend.connect(
          { servers: SHARED_NATS },
          names,
        ),
      });
      const runs: { id: string; attempt: number }[] = [];
      const done = new Counter();
      last.subscribe("order.placed", (event, ctx) => {
        runs.push({ id: event.id, attempt: ctx.attempt });
        done.add();
      }, { async: true, name: "once" });
      await last.listen();
      await done.reach(6, TIMEOUT, "runs in the last worker");
      await reported.reach(2, TIMEOUT, "dead letters");
      await Promise.all([producer.close(), last.close()]);
      assert.equal(stuck.length, 2, "one start per leaving worker");
      assert.equal(runs.length, 6);
      assert.deepEqual(runs.map((r) => r.attempt), [1, 1, 1, 1, 1, 1]);
      assert.deepEqual(
        [...runs.map((r) => r.id), ...stuck].sort(),
        [...ids].sort(),
      );
      assert.deepEqual(dead.map((e) => e.reason), ["crashed", "crashed"]);
      assert.deepEqual(
        dead.map((e) => e.event.id).sort(),
        [...stuck].sort(),
      );
    });
  });
}
