// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * Benchmarks @eventbus/core against the libraries users would pick instead,
 * in one run on one machine, and reports ratios (absolute numbers drift on
 * shared machines; ratios measured side by side hold).
 *
 * Every case runs in its own child process of the same runtime (a warm-up,
 * then at least 5 timed repetitions), so each library's peak RSS is its own.
 *
 * ```sh
 * deno task bench                 # all scenarios, writes bench/results/latest.json
 * deno task bench --quick         # smaller counts, writes .tmp/bench-quick.json
 * deno task bench --only=1,2      # some scenarios
 * bun run bench/main.ts           # scenarios 1-4 on Bun, writes latest-bun.json
 * deno task bench:chart           # bench/results/chart.svg from the JSON
 * ```
 *
 * @module
 */

import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import os from "node:os";
import { dirname, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import {
  type CaseParams,
  type ChildResult,
  formatMb,
  formatRate,
  runtimeName,
  summarize,
  type Summary,
} from "./_util.ts";

const BENCH = dirname(fileURLToPath(import.meta.url));
const ROOT = dirname(BENCH);
const CHILD = join(BENCH, "_child.ts");
const CHILD_TIMEOUT_MS = 300_000;

// ---------------------------------------------------------------- options

const argv = process.argv.slice(2);
const flag = (name: string): string | undefined => {
  const hit = argv.find((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (hit === undefined) return undefined;
  return hit.includes("=") ? hit.slice(hit.indexOf("=") + 1) : "true";
};
if (flag("help") !== undefined) {
  console.log(
    "usage: deno task bench [--quick] [--only=1,2,...] [--reps=N] [--out=path]",
  );
  process.exit(0);
}
const RUNTIME = runtimeName();
const QUICK = flag("quick") !== undefined;
const REPS = Number(flag("reps") ?? 5);
const ONLY = (flag("only") ??
  (RUNTIME === "deno" ? "1,2,3,4,5,6,7" : "1,2,3,4,7"))
  .split(",").map((s) => s.trim());
const OUT = flag("out") ??
  (QUICK
    ? join(
      ROOT,
      ".tmp",
      `bench-quick${RUNTIME === "deno" ? "" : `-${RUNTIME}`}.json`,
    )
    : join(
      BENCH,
      "results",
      RUNTIME === "deno" ? "latest.json" : `latest-${RUNTIME}.json`,
    ));
if (!Number.isInteger(REPS) || REPS < 1) throw new RangeError("--reps >= 1");

/** Picks the full or the --quick value. */
function q(full: number, quick: number): number {
  return QUICK ? quick : full;
}

// ---------------------------------------------------------------- model

/** One measured case as stored in latest.json. */
interface CaseReport {
  case: string;
  label: string;
  note?: string;
  params: CaseParams;
  /** Events per second over the repetitions (throughput scenarios). */
  rate?: Summary;
  /** Wall time per repetition in ms. */
  ms: Summary;
  peakRssBytes: number;
  startRssBytes: number;
  /** Median over repetitions of each extra number a case reported. */
  extra?: Record<string, Summary | number[]>;
  samples: ChildResult["samples"];
  error?: string;
}

/** A ratio, oriented so that more than 1 means the bus did better. */
interface Ratio {
  key: string;
  label: string;
  value: number;
  /** The target from issue #5, when there is one. */
  target?: number;
  met?: boolean;
}

/** An absolute target (not a ratio). */
interface Check {
  key: string;
  label: string;
  value: number;
  unit: string;
  target: number;
  /** "min": value must be >= target; "max": value must be <= target. */
  kind: "min" | "max";
  met: boolean;
}

interface ScenarioReport {
  id: string;
  title: string;
  status: "ok" | "pending" | "failed" | "skipped";
  reason?: string;
  method: string;
  cases: CaseReport[];
  ratios: Ratio[];
  checks: Check[];
}

interface Scenario {
  id: string;
  module: string;
  title: string;
  method: string;
  /** Returns a reason to skip, or undefined when the scenario can run. */
  available?: () => Promise<string | undefined>;
  runs: () => {
    case: string;
    label: string;
    note?: string;
    params: CaseParams;
  }[];
  analyse: (cases: CaseReport[]) => { ratios: Ratio[]; checks: Check[] };
}

// ---------------------------------------------------------------- scenarios

const PEERS_1 = ["emittery", "p-queue", "p-limit", "fastq", "floor"];
/** Scenario 1's bus with otel() (issue #13): no SDK, and a real SDK. */
const OTEL_1 = ["bus+otel-noop", "bus+otel-sdk"];

const SCENARIOS: Scenario[] = [
  {
    id: "1",
    module: "async_dispatch",
    title: "In-process async dispatch: 1 no-op async handler",
    method:
      "`await bus.emit()` into the default WorkerPool (10 workers, queue 1 000) vs emittery (`await emit`, one async listener), p-queue (concurrency 10, `await onSizeLessThan(1000)` before each `add`), p-limit(10) and fastq.promise (concurrency 10), each with at most 1 000 calls outstanding, and the floor: a loop awaiting an async no-op. The bus also runs with `otel({ api })` and no SDK registered (the no-op tracer; target: within 5 %), and with a real SDK (a batch span processor exporting every span to an in-memory exporter, metrics aggregated).",
    runs: () =>
      ["bus", ...OTEL_1, ...PEERS_1].map((name) => ({
        case: name,
        label: name === "bus"
          ? "@eventbus/core emit → WorkerPool"
          : name === "bus+otel-noop"
          ? "@eventbus/core + otel(), no SDK (no-op)"
          : name === "bus+otel-sdk"
          ? "@eventbus/core + otel(), SDK, in-memory exporter"
          : name === "floor"
          ? "floor: await async no-op"
          : name,
        // The SDK case is some 20 times slower: fewer events, same rate.
        params: name === "bus+otel-sdk"
          ? {
            events: q(100_000, 20_000),
            warmupEvents: q(20_000, 5_000),
            repetitions: REPS,
          }
          : {
            events: q(1_000_000, 200_000),
            warmupEvents: q(200_000, 50_000),
            repetitions: REPS,
          },
      })),
    analyse(cases) {
      const bus = rateOf(cases, "bus");
      const ratios: Ratio[] = PEERS_1.map((peer) => {
        // The issue sets scenario 1's targets for Deno.
        const target = RUNTIME !== "deno" ? undefined : ({
          "p-limit": 1,
          emittery: 2.5,
          "p-queue": 10,
        } as Record<string, number>)[peer];
        return ratio(
          `bus/${peer}`,
          `bus ÷ ${peer} (events/s)`,
          bus / rateOf(cases, peer),
          target,
        );
      });
      ratios.push(
        ratio(
          "otel-noop/bus",
          "bus + otel() without SDK ÷ bus (events/s)",
          rateOf(cases, "bus+otel-noop") / bus,
          0.95,
        ),
        ratio(
          "otel-sdk/bus",
          "bus + otel() with SDK, in-memory exporter ÷ bus (events/s)",
          rateOf(cases, "bus+otel-sdk") / bus,
        ),
      );
      const rss = find(cases, "bus")?.peakRssBytes ?? NaN;
      for (const peer of ["emittery", "p-queue", "p-limit", "fastq"]) {
        ratios.push(
          ratio(
            `rss/${peer}`,
            `peak RSS: ${peer} ÷ bus`,
            (find(cases, peer)?.peakRssBytes ?? NaN) / rss,
          ),
        );
      }
      if (RUNTIME !== "deno") return { ratios, checks: [] };
      return {
        ratios,
        checks: [
          check("events/s", "bus events/s", bus, "events/s", 1_500_000, "min"),
          check("peak RSS", "bus peak RSS", rss / 1e6, "MB", 100, "max"),
        ],
      };
    },
  },
  {
    id: "2",
    module: "sync_path",
    title: "Sync path: 1 sync handler",
    method:
      "`await bus.emitSync()` (builds a CloudEvents envelope with a UUID v7 and a time, runs the handler with a context, aggregates errors) vs emittery `await emit`, and the synchronous eventemitter3 and mitt `emit`, which do less: no envelope, no id, no promise, no error aggregation.",
    runs: () =>
      ["bus", "emittery", "eventemitter3", "mitt"].map((name) => ({
        case: name,
        label: name === "bus" ? "@eventbus/core emitSync" : name,
        ...(name === "eventemitter3" || name === "mitt"
          ? { note: "does less: sync, no envelope/id/promise" }
          : {}),
        params: {
          events: q(1_000_000, 200_000),
          warmupEvents: q(200_000, 50_000),
          repetitions: REPS,
        },
      })),
    analyse(cases) {
      const bus = rateOf(cases, "bus");
      return {
        ratios: [
          ratio(
            "bus/emittery",
            "emitSync ÷ emittery",
            bus / rateOf(cases, "emittery"),
            3,
          ),
          ratio(
            "bus/eventemitter3",
            "emitSync ÷ eventemitter3 (does less)",
            bus / rateOf(cases, "eventemitter3"),
          ),
          ratio(
            "bus/mitt",
            "emitSync ÷ mitt (does less)",
            bus / rateOf(cases, "mitt"),
          ),
        ],
        checks: [],
      };
    },
  },
  {
    id: "3",
    module: "io_bound",
    title: "I/O-bound handlers: each awaits a 1 ms timer",
    method:
      "Throughput with W = 1, 10 and 100 workers: the bus (WorkerPool with W workers, queue 1 000), p-limit(W) with at most 1 000 outstanding, and the floor: W plain loops awaiting the same timer. Events per worker per repetition are fixed, so each repetition lasts about as long at every W.",
    runs: () =>
      [1, 10, 100].flatMap((workers) =>
        ["bus", "p-limit", "floor"].map((name) => ({
          case: name,
          label: `${
            name === "bus" ? "@eventbus/core" : name
          } (${workers} workers)`,
          params: {
            workers,
            events: workers * q(200, 50),
            warmupEvents: workers * q(50, 20),
            repetitions: REPS,
          },
        }))
      ),
    analyse(cases) {
      const at = (name: string, w: number): number =>
        cases.find((c) => c.case === name && c.params.workers === w)?.rate
          ?.median ?? NaN;
      const ratios: Ratio[] = [1, 10, 100].map((w) =>
        ratio(
          `bus/floor@${w}`,
          `bus ÷ floor, ${w} workers`,
          at("bus", w) / at("floor", w),
          0.9,
        )
      );
      const busScale = at("bus", 100) / at("bus", 1);
      const floorScale = at("floor", 100) / at("floor", 1);
      ratios.push(
        ratio(
          "scaling",
          "bus speed-up 1→100 workers ÷ floor's",
          busScale / floorScale,
          0.9,
        ),
      );
      return { ratios, checks: [] };
    },
  },
  {
    id: "4",
    module: "memory",
    title: "Memory under backpressure: queue 1 000, slow handler",
    method:
      'Events through 10 workers and a queue of 1 000 whose handler waits for the next macrotask (slower than the emit loop, so the queue stays full): the bus with `overflow: "wait"` vs p-queue (concurrency 10, `onSizeLessThan(1000)`). Peak RSS of each child process, and RSS sampled at every tenth of the last repetition to show it stays flat.',
    runs: () => [
      ...["bus", "p-queue"].map((name) => ({
        case: name,
        label: name === "bus" ? '@eventbus/core overflow "wait"' : name,
        params: {
          events: q(1_000_000, 100_000),
          warmupEvents: q(100_000, 20_000),
          repetitions: REPS,
        },
      })),
      {
        case: "bus-failing",
        label: "@eventbus/core, handler always fails (3 tries, 20 ms apart)",
        params: {
          events: q(100_000, 10_000),
          warmupEvents: q(10_000, 2_000),
          repetitions: REPS,
        },
      },
    ],
    analyse(cases) {
      const bus = find(cases, "bus");
      const pq = find(cases, "p-queue");
      const growth = (c: CaseReport | undefined): number => {
        const curve = c?.samples.at(-1)?.extra?.rssCurve;
        if (!Array.isArray(curve) || curve.length < 2) return NaN;
        return (curve.at(-1)! - curve[0]!) / 1e6;
      };
      return {
        ratios: [
          ratio(
            "p-queue/bus RSS",
            "p-queue peak RSS ÷ bus peak RSS",
            (pq?.peakRssBytes ?? NaN) / (bus?.peakRssBytes ?? NaN),
            1,
          ),
          ratio(
            "bus/p-queue",
            "bus ÷ p-queue (events/s)",
            rateOf(cases, "bus") / rateOf(cases, "p-queue"),
          ),
        ],
        checks: [
          check(
            "RSS growth",
            "bus RSS growth from 10 % to 100 % of the run",
            growth(bus),
            "MB",
            10,
            "max",
          ),
          check(
            "RSS growth, failing handler",
            "bus RSS growth from 10 % to 100 % of the run, handler always fails",
            growth(find(cases, "bus-failing")),
            "MB",
            10,
            "max",
          ),
        ],
      };
    },
  },
  {
    id: "5",
    module: "nats",
    title: "NATS JetStream on the local server",
    method:
      "Against nats-server on 127.0.0.1:4222: (a) publish: bus `emit` with 256 emits in flight vs raw `js.publish` with `msgID` and the same window, on a connection with `noAsyncTraces: true` as the bus's; (b) consume: a bus that `listen()`s (one async handler) draining a pre-filled stream vs a raw `consume()` loop with `ack()`; (c) end-to-end latency, one event at a time, emitted by one bus and handled by another vs raw publish → consume. Publish and consume also run with `otel({ api })` and no SDK (target: within 5 %) and with a real SDK and the in-memory exporter.",
    available: () => natsAvailable(),
    runs: () => {
      const events = q(20_000, 5_000);
      const latency = q(2_000, 500);
      return [
        {
          case: "bus-publish",
          label: "bus emit (256 in flight)",
          params: {
            events,
            window: 256,
            warmupEvents: 2_000,
            repetitions: REPS,
          },
        },
        ...(["noop", "sdk"] as const).map((otel) => ({
          case: `bus-publish+otel-${otel}`,
          label: `bus emit + otel() ${
            otel === "noop" ? "without SDK" : "with SDK"
          } (256 in flight)`,
          params: {
            events,
            window: 256,
            warmupEvents: 2_000,
            repetitions: REPS,
          },
        })),
        {
          case: "raw-publish",
          label: "raw js.publish (256 in flight)",
          params: {
            events,
            window: 256,
            warmupEvents: 2_000,
            repetitions: REPS,
          },
        },
        {
          case: "bus-consume",
          label: "bus listen → handler → ack",
          params: { events, warmupEvents: 2_000, repetitions: REPS },
        },
        ...(["noop", "sdk"] as const).map((otel) => ({
          case: `bus-consume+otel-${otel}`,
          label: `bus listen → handler → ack + otel() ${
            otel === "noop" ? "without SDK" : "with SDK"
          }`,
          params: { events, warmupEvents: 2_000, repetitions: REPS },
        })),
        {
          case: "raw-consume",
          label: "raw consume() + ack()",
          params: { events, warmupEvents: 2_000, repetitions: REPS },
        },
        {
          case: "bus-e2e",
          label: "bus emit → other bus handler",
          params: { events: latency, warmupEvents: 200, repetitions: REPS },
        },
        {
          case: "raw-e2e",
          label: "raw publish → consume",
          params: { events: latency, warmupEvents: 200, repetitions: REPS },
        },
      ];
    },
    analyse(cases) {
      return {
        ratios: [
          ratio(
            "publish",
            "bus emit ÷ raw js.publish (events/s)",
            rateOf(cases, "bus-publish") / rateOf(cases, "raw-publish"),
            1.5, // issue #16
          ),
          ratio(
            "consume",
            "bus consume+ack ÷ raw consume+ack (events/s)",
            rateOf(cases, "bus-consume") / rateOf(cases, "raw-consume"),
            0.8,
          ),
          ...(["publish", "consume"] as const).flatMap((op) =>
            (["noop", "sdk"] as const).map((otel) =>
              ratio(
                `${op} otel-${otel}/bus`,
                `bus ${op} + otel() ${
                  otel === "noop" ? "without SDK" : "with SDK"
                } ÷ bus ${op} (events/s)`,
                rateOf(cases, `bus-${op}+otel-${otel}`) /
                  rateOf(cases, `bus-${op}`),
                otel === "noop" ? 0.95 : undefined,
              )
            )
          ),
          ratio(
            "e2e p50",
            "raw p50 ÷ bus p50 (latency)",
            p50Of(cases, "raw-e2e") / p50Of(cases, "bus-e2e"),
            1 / 1.2,
          ),
        ],
        checks: [],
      };
    },
  },
  {
    id: "6",
    module: "brokers",
    title: "Redis Streams and RabbitMQ backends vs their raw clients",
    method:
      "Publish with a window of 256 and consume+ack through the bus vs the raw client doing the same work (XADD / XREADGROUP + XACK on Redis; confirmed publish / consume + ack on RabbitMQ), and end-to-end latency, one event at a time, emitted by one bus and handled by another vs raw publish → consume on separate connections (Redis: XADD, and a loop of blocking XREADGROUP that XACKs each entry after handling it; RabbitMQ: confirmed persistent publish, and a consumer with prefetch 256 on the same quorum queue acknowledging each message).",
    available: () => brokersAvailable(),
    runs: () => brokerRuns(),
    analyse(cases) {
      const ratios: Ratio[] = [];
      for (const broker of ["redis", "rabbitmq"]) {
        for (const what of ["publish", "consume"]) {
          const bus = rateOf(cases, `${broker}-bus-${what}`);
          const raw = rateOf(cases, `${broker}-raw-${what}`);
          if (Number.isFinite(bus) && Number.isFinite(raw)) {
            ratios.push(
              ratio(
                `${broker} ${what}`,
                `${broker}: bus ÷ raw ${what} (events/s)`,
                bus / raw,
              ),
            );
          }
        }
        // Shown whenever it ran, so a failed case reads as a missed target.
        if (cases.some((c) => c.case === `${broker}-bus-e2e`)) {
          const bus = p50Of(cases, `${broker}-bus-e2e`);
          const raw = p50Of(cases, `${broker}-raw-e2e`);
          ratios.push(
            ratio(
              `${broker} e2e p50`,
              `${broker}: raw p50 ÷ bus p50 (latency)`,
              raw / bus,
              1 / 1.2,
            ),
          );
        }
      }
      return { ratios, checks: [] };
    },
  },
  {
    id: "7",
    module: "validation",
    title: "Validation: a small zod or valibot schema per event type",
    method:
      "`await bus.emitSync()` with one sync handler and `await bus.emit()` into the WorkerPool with one async handler, on a bus with `schemas` (zod 4 or valibot 1: an object of a string, a non-negative number and an array of strings), vs the same bus without schemas calling the validator by hand before each emit, and vs no validation.",
    runs: () =>
      ["sync", "pool"].flatMap((path) =>
        ["none", "zod", "zod-hand", "valibot", "valibot-hand"].map((v) => ({
          case: `${path}-${v}`,
          label: `${path === "sync" ? "emitSync" : "emit → pool"}, ${
            v === "none"
              ? "no schema"
              : v.endsWith("-hand")
              ? `${v.slice(0, -5)} by hand`
              : `${v} on the bus`
          }`,
          params: {
            events: q(300_000, 50_000),
            warmupEvents: q(50_000, 10_000),
            repetitions: REPS,
          },
        }))
      ),
    analyse(cases) {
      const ratios: Ratio[] = [];
      for (const path of ["sync", "pool"]) {
        for (const v of ["zod", "valibot"]) {
          ratios.push(
            ratio(
              `${path} ${v} overhead`,
              `${path}: on the bus ÷ by hand (${v}; ≥ 0.87 = overhead under 15 %)`,
              rateOf(cases, `${path}-${v}`) /
                rateOf(cases, `${path}-${v}-hand`),
              1 / 1.15,
            ),
          );
        }
      }
      return { ratios, checks: [] };
    },
  },
];

// ---------------------------------------------------------------- helpers

function find(cases: CaseReport[], name: string): CaseReport | undefined {
  return cases.find((c) => c.case === name && c.error === undefined);
}

function rateOf(cases: CaseReport[], name: string): number {
  return find(cases, name)?.rate?.median ?? NaN;
}

/** The median over repetitions of a latency case's p50, in ms. */
function p50Of(cases: CaseReport[], name: string): number {
  const x = find(cases, name)?.extra?.p50;
  return x !== undefined && !Array.isArray(x) ? x.median : NaN;
}

function ratio(
  key: string,
  label: string,
  value: number,
  target?: number,
): Ratio {
  const r: Ratio = { key, label, value };
  if (target !== undefined) {
    r.target = target;
    r.met = Number.isFinite(value) && value >= target;
  }
  return r;
}

function check(
  key: string,
  label: string,
  value: number,
  unit: string,
  target: number,
  kind: "min" | "max",
): Check {
  const met = Number.isFinite(value) &&
    (kind === "min" ? value >= target : value <= target);
  return { key, label, value, unit, target, kind, met };
}

function tcpReachable(port: number, host = "127.0.0.1"): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host });
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), 1000);
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

async function natsAvailable(): Promise<string | undefined> {
  if (!existsSync(join(ROOT, "backends", "nats", "mod.ts"))) {
    return "pending: backends/nats/mod.ts (JetStreamBackend) does not exist yet";
  }
  if (!existsSync(join(BENCH, "_scenarios", "nats.ts"))) {
    return "pending: bench/_scenarios/nats.ts is not written yet";
  }
  if (!(await tcpReachable(4222))) {
    return "skipped: no NATS server on 127.0.0.1:4222";
  }
  return undefined;
}

const BROKER_BACKENDS = [
  { broker: "redis", file: "redis/mod.ts", port: 6379 },
  { broker: "rabbitmq", file: "rabbitmq/mod.ts", port: 5672 },
];

async function brokersAvailable(): Promise<string | undefined> {
  if (!existsSync(join(BENCH, "_scenarios", "brokers.ts"))) {
    return "pending: bench/_scenarios/brokers.ts is not written yet";
  }
  const ready = [];
  for (const b of BROKER_BACKENDS) {
    if (
      existsSync(join(ROOT, "backends", b.file)) &&
      await tcpReachable(b.port)
    ) ready.push(b.broker);
  }
  if (ready.length === 0) {
    return "pending: neither backends/redis/mod.ts nor backends/rabbitmq/mod.ts exists with its broker reachable";
  }
  return undefined;
}

function brokerRuns(): ReturnType<Scenario["runs"]> {
  const runs: ReturnType<Scenario["runs"]> = [];
  const events = q(10_000, 2_000);
  const latency = q(2_000, 500);
  for (const b of BROKER_BACKENDS) {
    if (!existsSync(join(ROOT, "backends", b.file))) continue;
    for (const who of ["bus", "raw"]) {
      for (const what of ["publish", "consume"]) {
        runs.push({
          case: `${b.broker}-${who}-${what}`,
          label: `${b.broker}: ${who} ${what}`,
          params: {
            events,
            window: 256,
            warmupEvents: 1_000,
            repetitions: REPS,
          },
        });
      }
    }
    for (const who of ["bus", "raw"]) {
      runs.push({
        case: `${b.broker}-${who}-e2e`,
        label: `${b.broker}: ${
          who === "bus"
            ? "bus emit → other bus handler"
            : "raw publish → consume"
        }`,
        params: { events: latency, warmupEvents: 200, repetitions: REPS },
      });
    }
  }
  return runs;
}

/** Runs one case in a child process of this runtime. */
function runChild(
  module: string,
  name: string,
  params: CaseParams,
): Promise<ChildResult> {
  const args = RUNTIME === "deno"
    ? ["run", "-A", "--config", join(ROOT, "deno.json"), CHILD]
    : [CHILD];
  args.push(module, name, JSON.stringify(params));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout!.setEncoding("utf8");
    child.stderr!.setEncoding("utf8");
    child.stdout!.on("data", (chunk: string) => out += chunk);
    child.stderr!.on("data", (chunk: string) => err += chunk);
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`timed out after ${CHILD_TIMEOUT_MS} ms`));
    }, CHILD_TIMEOUT_MS);
    child.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      const line = out.trim().split("\n").at(-1) ?? "";
      if (code !== 0 || !line.startsWith("{")) {
        reject(
          new Error(
            `exit ${code}: ${err.trim().split("\n").slice(-5).join(" | ")}`,
          ),
        );
        return;
      }
      resolve(JSON.parse(line) as ChildResult);
    });
  });
}

function toReport(
  run: ReturnType<Scenario["runs"]>[number],
  result: ChildResult,
): CaseReport {
  const rates = result.samples.map((s) => s.ops / s.ms * 1000);
  const report: CaseReport = {
    case: run.case,
    label: run.label,
    params: run.params,
    rate: summarize(rates),
    ms: summarize(result.samples.map((s) => s.ms)),
    peakRssBytes: result.peakRss,
    startRssBytes: result.startRss,
    samples: result.samples,
  };
  if (run.note !== undefined) report.note = run.note;
  const keys = new Set(
    result.samples.flatMap((s) => Object.keys(s.extra ?? {})),
  );
  if (keys.size > 0) {
    report.extra = {};
    for (const key of keys) {
      const values = result.samples.map((s) => s.extra?.[key]);
      if (values.every((v) => typeof v === "number")) {
        report.extra[key] = summarize(values as number[]);
      } else {
        const last = values.at(-1);
        if (Array.isArray(last)) report.extra[key] = last;
      }
    }
  }
  return report;
}

function versions(): Record<string, string> {
  const deno = JSON.parse(readFileSync(join(ROOT, "deno.json"), "utf8")) as {
    version: string;
    imports: Record<string, string>;
  };
  const out: Record<string, string> = { "@eventbus/core": deno.version };
  let lock: { specifiers?: Record<string, string> } = {};
  try {
    lock = JSON.parse(readFileSync(join(ROOT, "deno.lock"), "utf8"));
  } catch {
    // no lock file
  }
  const names = [
    "emittery",
    "p-queue",
    "p-limit",
    "fastq",
    "eventemitter3",
    "mitt",
    "@nats-io/jetstream",
    "@nats-io/transport-node",
  ];
  for (const name of names) {
    const spec = deno.imports[name];
    if (spec === undefined) continue;
    let version: string | undefined;
    try {
      const pkg = JSON.parse(
        readFileSync(join(ROOT, "node_modules", name, "package.json"), "utf8"),
      ) as { version: string };
      if (RUNTIME !== "deno") version = pkg.version;
    } catch {
      // not installed in node_modules
    }
    // deno.lock: "npm:<name>@<range>": "<version>", possibly under another
    // range written elsewhere in the repo.
    const locked = lock.specifiers?.[spec] ??
      Object.entries(lock.specifiers ?? {}).find(([key]) =>
        key.startsWith(`npm:${name}@`)
      )?.[1];
    version ??= locked?.replace(/_.*$/, "");
    out[name] = version ?? spec.replace(/^npm:[^@]*(@[^@]*)?@/, "");
  }
  return out;
}

function runtimeInfo(): Record<string, string> {
  const v = process.versions as Record<string, string | undefined>;
  if (RUNTIME === "deno") {
    return {
      name: "deno",
      version: v.deno ?? "?",
      v8: v.v8 ?? "?",
      typescript: v.typescript ?? "?",
    };
  }
  if (RUNTIME === "bun") {
    return { name: "bun", version: v.bun ?? "?", engine: "JavaScriptCore" };
  }
  return { name: "node", version: process.version, v8: v.v8 ?? "?" };
}

function machineInfo(): Record<string, string | number> {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model?.trim() ?? "unknown",
    cores: cpus.length,
    memoryGB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.platform()} ${os.release()}`,
    arch: os.arch(),
  };
}

// ---------------------------------------------------------------- output

function fmtRatio(value: number): string {
  return Number.isFinite(value) ? `${value.toFixed(2)}×` : "n/a";
}

function markdownScenario(s: ScenarioReport): string {
  const lines = [`### ${s.id}. ${s.title}`, ""];
  if (s.status !== "ok") {
    lines.push(`_${s.status}: ${s.reason ?? ""}_`, "");
    return lines.join("\n");
  }
  const latency = s.cases.some((c) => c.extra?.p50 !== undefined);
  lines.push(
    latency
      ? "| case | events/s (median) | min – max | spread | p50 / p99 ms | peak RSS |"
      : "| case | events/s (median) | min – max | spread | peak RSS |",
    latency ? "|---|---:|---:|---:|---:|---:|" : "|---|---:|---:|---:|---:|",
  );
  for (const c of s.cases) {
    if (c.error !== undefined) {
      lines.push(
        `| ${c.label} | failed: ${c.error.replaceAll("|", "/")} | | | |`,
      );
      continue;
    }
    const r = c.rate!;
    const label = c.note ? `${c.label} _(${c.note})_` : c.label;
    const cells = [
      label,
      formatRate(r.median),
      `${formatRate(r.min)} – ${formatRate(r.max)}`,
      `±${(r.spread * 50).toFixed(1)} %`,
    ];
    if (latency) {
      const p50 = c.extra?.p50;
      const p99 = c.extra?.p99;
      cells.push(
        p50 && !Array.isArray(p50) && p99 && !Array.isArray(p99)
          ? `${p50.median.toFixed(2)} / ${p99.median.toFixed(2)}`
          : "",
      );
    }
    cells.push(formatMb(c.peakRssBytes));
    lines.push(`| ${cells.join(" | ")} |`);
  }
  lines.push("");
  if (s.ratios.length > 0 || s.checks.length > 0) {
    lines.push(
      "| ratio / check | measured | target | |",
      "|---|---:|---:|---|",
    );
    for (const r of s.ratios) {
      lines.push(
        `| ${r.label} | ${fmtRatio(r.value)} | ${
          r.target === undefined ? "" : `≥ ${r.target.toFixed(2)}×`
        } | ${r.met === undefined ? "" : r.met ? "met" : "**missed**"} |`,
      );
    }
    for (const c of s.checks) {
      const value = c.unit === "events/s"
        ? formatRate(c.value)
        : `${c.value.toFixed(1)} ${c.unit}`;
      const target = c.unit === "events/s"
        ? formatRate(c.target)
        : `${c.target} ${c.unit}`;
      lines.push(
        `| ${c.label} | ${value} | ${
          c.kind === "min" ? "≥" : "≤"
        } ${target} | ${c.met ? "met" : "**missed**"} |`,
      );
    }
    lines.push("");
  }
  return lines.join("\n");
}

// ---------------------------------------------------------------- main

const started = Date.now();
const reports: ScenarioReport[] = [];
console.error(
  `bench: ${RUNTIME} ${runtimeInfo().version}, scenarios ${ONLY.join(",")}${
    QUICK ? " (quick)" : ""
  }, ${REPS} repetitions after a warm-up, one child process per case`,
);
for (const scenario of SCENARIOS) {
  if (!ONLY.includes(scenario.id)) continue;
  const report: ScenarioReport = {
    id: scenario.id,
    title: scenario.title,
    status: "ok",
    method: scenario.method,
    cases: [],
    ratios: [],
    checks: [],
  };
  reports.push(report);
  const reason = await scenario.available?.();
  if (reason !== undefined) {
    report.status = reason.startsWith("skipped") ? "skipped" : "pending";
    report.reason = reason.replace(/^(pending|skipped): /, "");
    console.error(`  ${scenario.id}. ${scenario.title}: ${reason}`);
    continue;
  }
  for (const run of scenario.runs()) {
    const t = Date.now();
    try {
      const result = await runChild(scenario.module, run.case, run.params);
      const c = toReport(run, result);
      report.cases.push(c);
      console.error(
        `  ${scenario.id}. ${run.label}: ${
          formatRate(c.rate!.median)
        } events/s (±${(c.rate!.spread * 50).toFixed(1)} %), peak RSS ${
          formatMb(c.peakRssBytes)
        } [${((Date.now() - t) / 1000).toFixed(1)} s]`,
      );
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      report.cases.push({
        case: run.case,
        label: run.label,
        params: run.params,
        ms: summarize([]),
        peakRssBytes: NaN,
        startRssBytes: NaN,
        samples: [],
        error: message,
      });
      console.error(`  ${scenario.id}. ${run.label}: FAILED ${message}`);
    }
  }
  const failures = report.cases.filter((c) => c.error !== undefined);
  if (failures.length > 0) {
    process.exitCode = 1;
    if (failures.length === report.cases.length) {
      report.status = "failed";
      report.reason = failures[0]!.error!;
    }
  }
  Object.assign(report, scenario.analyse(report.cases));
}

const result = {
  schema: 1,
  date: new Date().toISOString(),
  quick: QUICK,
  repetitions: REPS,
  durationSeconds: Math.round((Date.now() - started) / 1000),
  runtime: runtimeInfo(),
  versions: versions(),
  machine: machineInfo(),
  scenarios: reports,
};
mkdirSync(dirname(OUT), { recursive: true });
writeFileSync(OUT, JSON.stringify(result, null, 2) + "\n");

const header = [
  `## Benchmarks (${
    result.date.slice(0, 10)
  }, ${result.runtime.name} ${result.runtime.version}, ${result.machine.cpu}, ${result.machine.cores} cores)`,
  "",
  `Ratios are measured in the same run on the same machine; absolute numbers vary by machine. ${REPS} repetitions after a warm-up; "spread" is ±half the min–max range around the median.`,
  "",
];
console.log(
  header.join("\n") + "\n" + reports.map(markdownScenario).join("\n"),
);
console.error(`bench: wrote ${OUT} in ${result.durationSeconds} s`);
