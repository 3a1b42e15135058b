// Copyright 2026 the @eventbus/core authors. MIT license.
// Scenario 4: memory under backpressure. N events go through a queue of
// 1 000 to 10 workers whose handler is slower than the emit loop (it waits
// for the next macrotask), so the queue is full almost all the time. The bus
// uses `overflow: "wait"`; p-queue bounds its submit loop with
// `onSizeLessThan(1000)`. Peak RSS should stay flat as N grows; the case
// also samples RSS at every tenth of the run. A third case gives the bus a
// handler that always fails (3 tries, 20 ms apart): retries waiting out
// their backoff count against the queue, so RSS stays flat there too.

import { EventBus, WorkerPool } from "../../mod.ts";
import { setImmediate } from "node:timers";
import PQueue from "p-queue";
import {
  type CaseParams,
  type CaseRun,
  deferred,
  rss,
  type Sample,
} from "../_util.ts";

/** The cases of scenario 4, by name. */
export const cases: Record<string, CaseRun> = {
  async bus(params: CaseParams): Promise<Sample> {
    const n = Number(params.events);
    const bus = new EventBus<{ "bench.slow": number }>({
      backend: new WorkerPool({
        workers: 10,
        queueSize: 1000,
        overflow: "wait",
      }),
    });
    const all = deferred();
    let handled = 0;
    bus.subscribe("bench.slow", async () => {
      await nextMacrotask();
      if (++handled === n) all.resolve();
    }, { async: true, name: "slow" });
    const curve: number[] = [];
    const step = Math.max(1, Math.floor(n / 10));
    const start = performance.now();
    for (let i = 0; i < n; i++) {
      await bus.emit("bench.slow", i);
      if ((i + 1) % step === 0) curve.push(rss());
    }
    await all.promise;
    const ms = performance.now() - start;
    await bus.close();
    return { ms, ops: n, extra: { rssCurve: curve } };
  },

  async "bus-failing"(params: CaseParams): Promise<Sample> {
    const n = Number(params.events);
    const silent = () => {};
    const bus = new EventBus<{ "bench.fail": number }>({
      backend: new WorkerPool({
        workers: 10,
        queueSize: 1000,
        overflow: "wait",
      }),
      logger: { debug: silent, info: silent, warn: silent, error: silent },
      retry: { attempts: 3, backoff: { initial: 20, max: 20, jitter: false } },
      onError: () => {
        if (++dead === n) all.resolve();
      },
    });
    const all = deferred();
    let dead = 0;
    bus.subscribe("bench.fail", () => {
      throw new Error("always fails");
    }, { async: true, name: "failing" });
    const curve: number[] = [];
    const step = Math.max(1, Math.floor(n / 10));
    const start = performance.now();
    for (let i = 0; i < n; i++) {
      await bus.emit("bench.fail", i);
      if ((i + 1) % step === 0) curve.push(rss());
    }
    await all.promise;
    const ms = performance.now() - start;
    await bus.close();
    return { ms, ops: n, extra: { rssCurve: curve } };
  },

  async "p-queue"(params: CaseParams): Promise<Sample> {
    const n = Number(params.events);
    const queue = new PQueue({ concurrency: 10 });
    let handled = 0;
    const task = async (): Promise<void> => {
      await nextMacrotask();
      handled++;
    };
    const curve: number[] = [];
    const step = Math.max(1, Math.floor(n / 10));
    const start = performance.now();
    for (let i = 0; i < n; i++) {
      await queue.onSizeLessThan(1000);
      void queue.add(task);
      if ((i + 1) % step === 0) curve.push(rss());
    }
    await queue.onIdle();
    const ms = performance.now() - start;
    if (handled !== n) throw new Error(`handled ${handled} of ${n} events`);
    return { ms, ops: n, extra: { rssCurve: curve } };
  },
};

function nextMacrotask(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
