// Copyright 2026 the @eventbus/core authors. MIT license.
// deno-lint-ignore-file require-await -- the handlers are async no-ops on purpose
// Scenario 1: in-process async dispatch of N events to one no-op async
// handler, through the bus's default WorkerPool and through the libraries a
// user would pick instead. Every case bounds what is outstanding to about
// 1 000 queued + 10 running, as the bus's default pool does.

import { EventBus } from "../../mod.ts";
import Emittery from "emittery";
import fastq from "fastq";
import pLimit from "p-limit";
import PQueue from "p-queue";
import {
  type CaseParams,
  type CaseRun,
  deferred,
  type Sample,
} from "../_util.ts";
import type { OtelMode } from "../_otel.ts";

const CONCURRENCY = 10;
const WINDOW = 1000;

/** The cases of scenario 1, by name. */
export const cases: Record<string, CaseRun> = {
  /** `await bus.emit()` into the default WorkerPool (10 workers, queue 1000). */
  bus: (params: CaseParams): Promise<Sample> => busCase(params, "none"),

  /** The same with `otel({ api })` and no SDK registered (no-op tracer). */
  "bus+otel-noop": (params: CaseParams): Promise<Sample> =>
    busCase(params, "noop"),

  /** The same with `otel()` on a real SDK and the in-memory exporter. */
  "bus+otel-sdk": (params: CaseParams): Promise<Sample> =>
    busCase(params, "sdk"),

  /** `await emitter.emit()` with one async listener (emittery awaits it). */
  async emittery(params: CaseParams): Promise<Sample> {
    const n = Number(params.events);
    const emitter = new Emittery<{ tick: number }>();
    let handled = 0;
    emitter.on("tick", async () => {
      handled++;
    });
    const start = performance.now();
    for (let i = 0; i < n; i++) await emitter.emit("tick", i);
    const ms = performance.now() - start;
    check(handled, n);
    return { ms, ops: n };
  },

  /** p-queue, concurrency 10, submit loop bounded by `onSizeLessThan(1000)`. */
  async "p-queue"(params: CaseParams): Promise<Sample> {
    const n = Number(params.events);
    const queue = new PQueue({ concurrency: CONCURRENCY });
    let handled = 0;
    const task = async (): Promise<void> => {
      handled++;
    };
    const start = performance.now();
    for (let i = 0; i < n; i++) {
      await queue.onSizeLessThan(WINDOW);
      void queue.add(task);
    }
    await queue.onIdle();
    const ms = performance.now() - start;
    check(handled, n);
    return { ms, ops: n };
  },

  /** p-limit(10), at most 1 000 calls outstanding (awaits the oldest). */
  async "p-limit"(params: CaseParams): Promise<Sample> {
    const n = Number(params.events);
    const limit = pLimit(CONCURRENCY);
    let handled = 0;
    const task = async (): Promise<void> => {
      handled++;
    };
    const window = new Array<Promise<void> | undefined>(WINDOW);
    const start = performance.now();
    for (let i = 0; i < n; i++) {
      const slot = i % WINDOW;
      if (window[slot] !== undefined) await window[slot];
      window[slot] = limit(task);
    }
    await Promise.all(window);
    const ms = performance.now() - start;
    check(handled, n);
    return { ms, ops: n };
  },

  /** fastq.promise, concurrency 10, at most 1 000 pushes outstanding. */
  async fastq(params: CaseParams): Promise<Sample> {
    const n = Number(params.events);
    let handled = 0;
    const queue = fastq.promise(async (_: number): Promise<void> => {
      handled++;
    }, CONCURRENCY);
    const window = new Array<Promise<void> | undefined>(WINDOW);
    const start = performance.now();
    for (let i = 0; i < n; i++) {
      const slot = i % WINDOW;
      if (window[slot] !== undefined) await window[slot];
      window[slot] = queue.push(i);
    }
    await Promise.all(window);
    const ms = performance.now() - start;
    check(handled, n);
    return { ms, ops: n };
  },

  /** The floor: a loop that awaits an async no-op, nothing else. */
  async floor(params: CaseParams): Promise<Sample> {
    const n = Number(params.events);
    let handled = 0;
    const noop = async (_: number): Promise<void> => {
      handled++;
    };
    const start = performance.now();
    for (let i = 0; i < n; i++) await noop(i);
    const ms = performance.now() - start;
    check(handled, n);
    return { ms, ops: n };
  },
};

async function busCase(params: CaseParams, otel: OtelMode): Promise<Sample> {
  const n = Number(params.events);
  // Loaded only by the +otel cases, so the others carry no SDK in memory.
  const options = otel === "none"
    ? {}
    : (await import("../_otel.ts")).instrumentationFor(otel);
  const bus = new EventBus<{ "bench.tick": number }>(options);
  const all = deferred();
  let handled = 0;
  bus.subscribe("bench.tick", async () => {
    if (++handled === n) all.resolve();
  }, { async: true, name: "noop" });
  const start = performance.now();
  for (let i = 0; i < n; i++) await bus.emit("bench.tick", i);
  await all.promise;
  const ms = performance.now() - start;
  await bus.close();
  return { ms, ops: n };
}

function check(handled: number, expected: number): void {
  if (handled !== expected) {
    throw new Error(`handled ${handled} of ${expected} events`);
  }
}
