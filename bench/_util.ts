// Copyright 2026 the @eventbus/core authors. MIT license.
// Helpers shared by the benchmark runner, its child processes and the chart.

import { readFileSync } from "node:fs";
import process from "node:process";

/** One timed repetition of a case. */
export interface Sample {
  /** Wall time of the repetition, in ms. */
  ms: number;
  /** How many operations (events) it did. */
  ops: number;
  /** Extra numbers a case reports (latency percentiles, RSS curve). */
  extra?: Record<string, number | number[]>;
}

/** What a case runs once per repetition. */
export type CaseRun = (params: CaseParams) => Promise<Sample>;

/** Parameters handed from the runner to a case. */
export type CaseParams = Record<string, number | string | boolean>;

/** A scenario module: its cases by name. */
export interface ScenarioModule {
  cases: Record<string, CaseRun>;
}

/** What a child process prints (one JSON line) after its repetitions. */
export interface ChildResult {
  scenario: string;
  case: string;
  params: CaseParams;
  warmup: Sample;
  samples: Sample[];
  /** Peak resident set size of the whole child process, in bytes. */
  peakRss: number;
  /** Resident set size right after the modules loaded, in bytes. */
  startRss: number;
}

/** Summary of a list of numbers. */
export interface Summary {
  median: number;
  min: number;
  max: number;
  /** (max - min) / median, as a fraction. */
  spread: number;
}

/** Median, min, max and relative spread of `values`. */
export function summarize(values: readonly number[]): Summary {
  const sorted = [...values].sort((a, b) => a - b);
  const n = sorted.length;
  if (n === 0) return { median: NaN, min: NaN, max: NaN, spread: NaN };
  const median = n % 2 === 1
    ? sorted[(n - 1) / 2]!
    : (sorted[n / 2 - 1]! + sorted[n / 2]!) / 2;
  const min = sorted[0]!;
  const max = sorted[n - 1]!;
  return { median, min, max, spread: median === 0 ? 0 : (max - min) / median };
}

/** The value at quantile `q` (0..1) of an ascending array (nearest rank). */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(
    sorted.length - 1,
    Math.max(0, Math.ceil(q * sorted.length) - 1),
  );
  return sorted[rank]!;
}

/**
 * Peak resident set size of this process in bytes: VmHWM from
 * /proc/self/status on Linux, else `process.resourceUsage().maxRSS`.
 */
export function peakRss(): number {
  try {
    const status = readFileSync("/proc/self/status", "utf8");
    const match = /^VmHWM:\s+(\d+)\s+kB/m.exec(status);
    if (match) return Number(match[1]) * 1024;
  } catch {
    // not Linux
  }
  try {
    return process.resourceUsage().maxRSS * 1024;
  } catch {
    return process.memoryUsage.rss();
  }
}

/** Current resident set size in bytes. */
export function rss(): number {
  return process.memoryUsage.rss();
}

/**
 * Calls `publish(i)` for every `i` below `n` with at most `window` calls in
 * flight, as a producer keeps a window of unacknowledged publishes, and
 * resolves once every call settled.
 */
export async function windowed(
  n: number,
  window: number,
  publish: (i: number) => Promise<unknown>,
): Promise<void> {
  const ring = new Array<Promise<unknown> | undefined>(window);
  for (let i = 0; i < n; i++) {
    const slot = i % window;
    if (ring[slot] !== undefined) await ring[slot];
    ring[slot] = publish(i);
  }
  await Promise.all(ring);
}

/** Times {@linkcode windowed} with the case's `events` and `window`. */
export async function timeWindowed(
  params: CaseParams,
  publish: (i: number) => Promise<unknown>,
): Promise<Sample> {
  const n = Number(params.events);
  const start = performance.now();
  await windowed(n, Number(params.window), publish);
  return { ms: performance.now() - start, ops: n };
}

/** Publishes `n` events, 256 at a time, untimed (to fill a stream or queue). */
export function fill(
  n: number,
  publish: (i: number) => Promise<unknown>,
): Promise<void> {
  return windowed(n, 256, publish);
}

/** A promise and its resolver. */
export function deferred<T = void>(): {
  promise: Promise<T>;
  resolve: (value: T) => void;
} {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => resolve = r);
  return { promise, resolve };
}

/**
 * End-to-end latency, one event at a time: the handler on the receiving side
 * calls {@linkcode OneByOne.arrive} with the number of each event it gets;
 * {@linkcode OneByOne.run} sends an untimed first event (-1), then event
 * `i` for every `i` below `n`, each once the previous one arrived, and
 * reports p50/p99/mean of send → arrival in ms. An event out of order, or a
 * count other than `n + 1` arrivals, throws.
 */
export class OneByOne {
  #arrived = deferred<number>();
  #count = 0;

  /** Called by the receiving handler for each event it handles. */
  arrive(i: number): void {
    this.#count++;
    this.#arrived.resolve(i);
  }

  /** Sends the events one at a time and times each until it arrives. */
  async run(
    n: number,
    send: (i: number) => Promise<unknown>,
  ): Promise<Sample> {
    await this.#one(-1, send);
    const latencies = new Float64Array(n);
    const start = performance.now();
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      await this.#one(i, send);
      latencies[i] = performance.now() - t0;
    }
    const ms = performance.now() - start;
    if (this.#count !== n + 1) {
      throw new Error(`expected ${n + 1} arrivals, got ${this.#count}`);
    }
    return { ms, ops: n, extra: percentiles(latencies) };
  }

  async #one(i: number, send: (i: number) => Promise<unknown>): Promise<void> {
    this.#arrived = deferred<number>();
    await send(i);
    const got = await this.#arrived.promise;
    if (got !== i) throw new Error(`expected event ${i}, got ${got}`);
  }
}

/** What {@linkcode busEndToEnd} needs of an EventBus. */
export interface EndToEndBus {
  subscribe(
    type: string,
    handler: (event: { data: { i: number } }) => void,
    options: { async: true; name: string },
  ): unknown;
  listen(): Promise<void>;
  emit(type: string, data: { i: number }): Promise<unknown>;
  close(options: { timeout: number }): Promise<unknown>;
}

/**
 * End-to-end latency through a broker: `worker` (one async handler)
 * handles the events `producer` emits, one at a time (`data(i)` is event
 * i's payload); closes both buses.
 */
export async function busEndToEnd(
  producer: EndToEndBus,
  worker: EndToEndBus,
  type: string,
  n: number,
  data: (i: number) => { i: number } = (i) => ({ i }),
): Promise<Sample> {
  try {
    const arrivals = new OneByOne();
    worker.subscribe(type, (event) => {
      arrivals.arrive(event.data.i);
    }, { async: true, name: "bench" });
    await worker.listen();
    return await arrivals.run(n, (i) => producer.emit(type, data(i)));
  } finally {
    await producer.close({ timeout: 1000 });
    await worker.close({ timeout: 1000 });
  }
}

/** p50, p99 and mean of latencies in ms. */
export function percentiles(latencies: Float64Array): Record<string, number> {
  const sorted = latencies.slice().sort();
  return {
    p50: quantile(sorted, 0.5),
    p99: quantile(sorted, 0.99),
    mean: sorted.reduce((a, b) => a + b, 0) / sorted.length,
  };
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Which runtime runs this code. */
export function runtimeName(): "deno" | "bun" | "node" {
  if (process.versions.bun !== undefined) return "bun";
  if ((process.versions as Record<string, string | undefined>).deno) {
    return "deno";
  }
  return "node";
}

/** Formats events per second compactly: 1.23M, 456k. */
export function formatRate(value: number): string {
  if (!Number.isFinite(value)) return "n/a";
  if (value >= 1e6) return `${(value / 1e6).toFixed(2)}M`;
  if (value >= 1e3) return `${(value / 1e3).toFixed(1)}k`;
  return value.toFixed(0);
}

/** Formats bytes as MB (10^6). */
export function formatMb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(0)} MB`;
}
