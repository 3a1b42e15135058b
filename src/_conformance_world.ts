// Copyright 2026 the @eventbus/core authors. MIT license.
// The conformance suite's harness: its event map, retry policy and schema,
// and the helpers every case uses to open a world and the buses on it.

import type { AsyncBackend } from "./backend.ts";
import type {
  ConformanceHint,
  ConformanceTarget,
  ConformanceWorld,
} from "./conformance.ts";
import { MemoryLogger } from "./_conformance_util.ts";
import { EventBus } from "./event_bus.ts";
import type { StandardSchemaV1 } from "./schema.ts";
import type { EventBusOptions } from "./types.ts";

/** The event map of the suite. */
export type Events = {
  "conf.order.placed": { n: number; tags?: string[] };
  "conf.other": { n: number };
};

/** Fast retries: three tries, 5-20 ms apart. */
export const FAST_RETRY = {
  attempts: 3,
  backoff: { initial: 5, max: 20 },
} as const;

/** A hand-written Standard Schema for "conf.order.placed": `n` is a number. */
export const ORDER_SCHEMA: StandardSchemaV1<Events["conf.order.placed"]> = {
  "~standard": {
    version: 1,
    vendor: "conformance",
    validate: (value) =>
      typeof (value as { n?: unknown } | null)?.n === "number"
        ? { value: value as Events["conf.order.placed"] }
        : { issues: [{ message: "n must be a number", path: ["n"] }] },
  },
};

/** A producer bus and worker buses on one world's backends. */
export interface Buses {
  /** Emits the test's events. */
  producer: EventBus<Events>;
  /** Run the handlers; for an in-process backend, the producer itself. */
  workers: EventBus<Events>[];
  /** Every distinct bus, to close at the end. */
  all: EventBus<Events>[];
}

/** The helpers of the cases, bound to one target. */
export interface Harness {
  /** Producer bus plus worker buses; for in-process backends all one bus. */
  buses(
    world: ConformanceWorld,
    workers: number,
    options?: EventBusOptions,
    hint?: ConformanceHint,
  ): Promise<Buses>;
  /** Runs `body` in a fresh world, disposed of whatever happens. */
  scenario(body: (world: ConformanceWorld) => Promise<void>): Promise<void>;
  /** Closes every bus of the list once, with a 5 s deadline. */
  closeAll(list: EventBus<Events>[]): Promise<void>;
}

/** The helpers of the cases for `target`. */
export function harness(target: ConformanceTarget): Harness {
  async function buses(
    world: ConformanceWorld,
    workers: number,
    options: EventBusOptions = {},
    hint?: ConformanceHint,
  ): Promise<Buses> {
    const first = await world.backend(hint);
    const make = (backend: AsyncBackend) =>
      new EventBus<Events>({ logger: new MemoryLogger(), ...options, backend });
    if (!first.remote) {
      const bus = make(first);
      return { producer: bus, workers: Array(workers).fill(bus), all: [bus] };
    }
    const producer = make(first);
    const ws: EventBus<Events>[] = [];
    for (let i = 0; i < workers; i++) {
      ws.push(make(await world.backend(hint)));
    }
    return { producer, workers: ws, all: [producer, ...ws] };
  }

  async function scenario(
    body: (world: ConformanceWorld) => Promise<void>,
  ): Promise<void> {
    const world = await target.open();
    try {
      await body(world);
    } finally {
      await world[Symbol.asyncDispose]();
    }
  }

  async function closeAll(list: EventBus<Events>[]): Promise<void> {
    await Promise.all(
      [...new Set(list)].map((bus) => bus.close({ timeout: 5000 })),
    );
  }

  return { buses, scenario, closeAll };
}
