// Copyright 2026 the @eventbus/core authors. MIT license.
// Scenario 3: I/O-bound handlers. Each handler awaits a 1 ms timer; with W
// workers the bus should finish W times as many events per second, as the
// floor (W plain async loops awaiting the same timer) does.

import { EventBus, WorkerPool } from "../../mod.ts";
import pLimit from "p-limit";
import {
  type CaseParams,
  type CaseRun,
  deferred,
  type Sample,
  sleep,
} from "../_util.ts";

/** The cases of scenario 3, by name; `params.workers` sets the concurrency. */
export const cases: Record<string, CaseRun> = {
  async bus(params: CaseParams): Promise<Sample> {
    const n = Number(params.events);
    const workers = Number(params.workers);
    const bus = new EventBus<{ "bench.io": number }>({
      backend: new WorkerPool({ workers, queueSize: 1000 }),
    });
    const all = deferred();
    let handled = 0;
    bus.subscribe("bench.io", async () => {
      await sleep(1);
      if (++handled === n) all.resolve();
    }, { async: true, name: "io" });
    const start = performance.now();
    for (let i = 0; i < n; i++) await bus.emit("bench.io", i);
    await all.promise;
    const ms = performance.now() - start;
    await bus.close();
    return { ms, ops: n };
  },

  async "p-limit"(params: CaseParams): Promise<Sample> {
    const n = Number(params.events);
    const limit = pLimit(Number(params.workers));
    let handled = 0;
    const task = async (): Promise<void> => {
      await sleep(1);
      handled++;
    };
    const window = new Array<Promise<void> | undefined>(1000);
    const start = performance.now();
    for (let i = 0; i < n; i++) {
      const slot = i % 1000;
      if (window[slot] !== undefined) await window[slot];
      window[slot] = limit(task);
    }
    await Promise.all(window);
    const ms = performance.now() - start;
    check(handled, n);
    return { ms, ops: n };
  },

  /** W loops, each awaiting the 1 ms timer for its share of the events. */
  async floor(params: CaseParams): Promise<Sample> {
    const n = Number(params.events);
    const workers = Number(params.workers);
    let next = 0;
    let handled = 0;
    const loop = async (): Promise<void> => {
      while (next < n) {
        next++;
        await sleep(1);
        handled++;
      }
    };
    const start = performance.now();
    await Promise.all(Array.from({ length: workers }, loop));
    const ms = performance.now() - start;
    check(handled, n);
    return { ms, ops: n };
  },
};

function check(handled: number, expected: number): void {
  if (handled !== expected) {
    throw new Error(`handled ${handled} of ${expected} events`);
  }
}
