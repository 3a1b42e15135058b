// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * The backend contract as tests: one suite that every `AsyncBackend` must
 * pass, whatever its broker. Delivery with every attribute intact, exactly
 * once per handler name for what the bus accepted, retries with rising
 * attempt numbers, dead letters reported once, handler timeouts, competing
 * consumers, `close()` draining and at its timeout, events kept for a
 * handler name whose first worker starts later, foreign messages on the
 * wire, schemas, and the errors `emit` rejects with.
 *
 * It is not tied to a test runner: give it the `describe` and `it` of the
 * one you use (`node:test` under `deno test` or `node --test`, `bun:test`
 * under `bun test`). Each test runs in a fresh {@linkcode ConformanceWorld}
 * that your target opens: its own stream, queue or topic names, removed
 * when the test ends. Checking that the broker is reachable, and skipping
 * when it is not, is up to your test file.
 *
 * @example Running the suite under `node --test`, `deno test` or `bun test`
 * ```ts ignore
 * // my_backend_test.ts
 * import { describe, it } from "node:test"; // under bun test: "bun:test"
 * import { runConformance } from "@eventbus/core/conformance";
 * import { MyBackend } from "./my_backend.ts";
 *
 * runConformance({
 *   name: "MyBackend",
 *   open() {
 *     const prefix = `conformance-${crypto.randomUUID()}`;
 *     const backends: MyBackend[] = [];
 *     return Promise.resolve({
 *       async backend() {
 *         const backend = await MyBackend.connect({ prefix });
 *         backends.push(backend);
 *         return backend;
 *       },
 *       async [Symbol.asyncDispose]() {
 *         await Promise.all(backends.map((b) => b.close({ timeout: 1000 })));
 *         await MyBackend.deleteEverything(prefix);
 *       },
 *     });
 *   },
 *   features: { durable: true },
 * }, { describe, it });
 * ```
 *
 * @module
 */

import type { AsyncBackend } from "./backend.ts";
import { declareConformance } from "./_conformance_suite.ts";

/**
 * The test functions of your runner: `describe` and `it` (or `test`) of
 * `node:test` (under `node --test` and `deno test`) or of `bun:test`.
 *
 * @example With node:test
 * ```ts ignore
 * import { describe, it } from "node:test";
 * import { runConformance } from "@eventbus/core/conformance";
 * import { target } from "./my_target.ts";
 *
 * runConformance(target, { describe, it });
 * ```
 */
export interface ConformanceRunner {
  /**
   * Declares a group of tests; the suite calls it once, named
   * `"<target name> conformance"`, and declares every test inside `body`.
   *
   * @param name The group's name.
   * @param body Declares the tests of the group, synchronously.
   * @returns Whatever the runner returns; ignored.
   */
  describe(name: string, body: () => void): unknown;
  /**
   * Declares one test. The test fails when `body` rejects. Each test waits
   * at most `features.timeout` per step, so give the runner a per-test
   * timeout of a minute or more (`bun test --timeout 60000`: Bun's default
   * is 5 seconds; `node:test` has none).
   *
   * @param name The test's name.
   * @param body The test.
   * @returns Whatever the runner returns; ignored.
   */
  it(name: string, body: () => Promise<void>): unknown;
}

/**
 * What a test will subscribe, for a backend that declares its handler
 * queues up front (a producer option); other backends ignore it.
 *
 * @example Declaring the handler names a test announces
 * ```ts ignore
 * backend(hint) {
 *   for (const { type, name } of hint?.handlers ?? []) handlers.add(type, name);
 *   return Promise.resolve(new MyBackend({ handlers }));
 * }
 * ```
 */
export interface ConformanceHint {
  /** The async handlers (event type and handler name) the test attaches. */
  readonly handlers: readonly {
    /** The event type. */
    readonly type: string;
    /** The handler name. */
    readonly name: string;
  }[];
}

/**
 * One isolated world for one test: its own stream, queue or topic names,
 * so that tests never see each other's events. Disposed of when the test
 * ends, pass or fail.
 *
 * @example A world on an in-process backend
 * ```ts
 * import { WorkerPool } from "@eventbus/core";
 * import type { ConformanceWorld } from "@eventbus/core/conformance";
 *
 * const pool = new WorkerPool();
 * const world: ConformanceWorld = {
 *   backend: () => Promise.resolve(pool),
 *   async [Symbol.asyncDispose]() {
 *     await pool.close({ timeout: 1000 });
 *   },
 * };
 * await world[Symbol.asyncDispose]();
 * ```
 */
export interface ConformanceWorld {
  /**
   * A backend attached to this world. A remote backend: a new instance per
   * call (one per process in real life), all sharing the world's names. An
   * in-process backend: the same instance every call.
   *
   * @param hint What the test will subscribe, for a backend that declares
   *   handler queues up front; others ignore it.
   * @returns The backend; the suite closes the buses on it, the world
   *   closes what is left.
   */
  backend(hint?: ConformanceHint): Promise<AsyncBackend>;
  /**
   * Publishes a raw message, not made by an `EventBus`, where events of
   * `type` travel, with the broker's own client. Backends without a wire
   * leave it out, and the tests that need it pass without checking.
   *
   * @param type The event type whose handlers should receive it.
   * @param body The message body, as the broker carries it.
   * @returns Once the broker accepted the message.
   */
  inject?(type: string, body: string): Promise<void>;
  /**
   * Closes the world's backends and removes what it created on the broker.
   *
   * @returns Once everything is removed.
   */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * What a backend promises beyond the common contract, and the suite's
 * sizes and deadlines.
 *
 * @example A durable broker backend
 * ```ts
 * import type { ConformanceFeatures } from "@eventbus/core/conformance";
 *
 * const features: ConformanceFeatures = { durable: true, bulk: 1000 };
 * console.assert(features.durable === true);
 * ```
 */
export interface ConformanceFeatures {
  /**
   * Events left unfinished at close stay on the broker and reach the next
   * consumer of the same name (instead of being reported abandoned).
   *
   * @default {false}
   */
  durable?: boolean;
  /**
   * How many events the bulk test sends.
   *
   * @default {1000}
   */
  bulk?: number;
  /**
   * The backend has `deadLetters` (DESIGN "Dead letters"): the suite lists,
   * counts, replays and purges them. Set `false` for a backend without them
   * (its dead letters then only reach `onError` and the log).
   *
   * @default {true}
   */
  deadLetters?: boolean;
  /**
   * Deadline of each wait, in ms.
   *
   * @default {20000}
   */
  timeout?: number;
}

/**
 * A backend under test.
 *
 * @example The worker pool as a target
 * ```ts
 * import { WorkerPool } from "@eventbus/core";
 * import type { ConformanceTarget } from "@eventbus/core/conformance";
 *
 * const target: ConformanceTarget = {
 *   name: "WorkerPool",
 *   open() {
 *     const pool = new WorkerPool();
 *     return Promise.resolve({
 *       backend: () => Promise.resolve(pool),
 *       [Symbol.asyncDispose]: async () =>
 *         void await pool.close({ timeout: 1000 }),
 *     });
 *   },
 * };
 * console.assert(target.name === "WorkerPool");
 * ```
 */
export interface ConformanceTarget {
  /** Shown in the group's name, `"<name> conformance"`. */
  name: string;
  /**
   * Opens a fresh world for one test.
   *
   * @returns The world; the suite disposes of it when the test ends.
   */
  open(): Promise<ConformanceWorld>;
  /** What the backend promises beyond the common contract. */
  features?: ConformanceFeatures;
}

/**
 * Declares the conformance tests for one backend, as one group of tests
 * named `"<target name> conformance"`, with your runner's `describe` and
 * `it`. Call it once per backend at the top level of a test file.
 *
 * @example Every test of the suite on the worker pool, without a runner
 * ```ts
 * import { WorkerPool } from "@eventbus/core";
 * import { runConformance } from "@eventbus/core/conformance";
 *
 * // A runner of our own: collect the tests, then run them in turn.
 * const tests: [string, () => Promise<void>][] = [];
 * runConformance({
 *   name: "WorkerPool",
 *   open() {
 *     const pool = new WorkerPool();
 *     return Promise.resolve({
 *       backend: () => Promise.resolve(pool),
 *       [Symbol.asyncDispose]: async () =>
 *         void await pool.close({ timeout: 1000 }),
 *     });
 *   },
 *   features: { bulk: 200 },
 * }, {
 *   describe: (_name, body) => body(),
 *   it: (name, body) => tests.push([name, body]),
 * });
 * for (const [name, body] of tests) {
 *   await body().catch((error) => {
 *     throw new Error(`${name} failed`, { cause: error });
 *   });
 * }
 * ```
 *
 * @param target The backend under test.
 * @param runner The `describe` and `it` of your test runner.
 * @throws {TypeError} When `runner.describe` or `runner.it` is not a function.
 */
export function runConformance(
  target: ConformanceTarget,
  runner: ConformanceRunner,
): void {
  if (
    typeof runner?.describe !== "function" || typeof runner.it !== "function"
  ) {
    throw new TypeError(
      "Cannot declare the conformance tests: the runner has no describe and it functions, pass { describe, it } from node:test or bun:test",
    );
  }
  declareConformance(target, runner);
}
