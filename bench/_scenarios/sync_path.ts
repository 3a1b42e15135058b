// Copyright 2026 the @eventbus/core authors. MIT license.
// Scenario 2: the sync path. `await bus.emitSync()` with one sync handler
// (builds a CloudEvents envelope with a UUID v7 id and time, validates the
// type, runs the handler with a context, aggregates errors, returns a
// promise) vs emittery (`await emit`, no envelope) and the synchronous
// eventemitter3 and mitt (no envelope, no promise, no error aggregation:
// they do less).

import { EventBus } from "../../mod.ts";
import Emittery from "emittery";
import { EventEmitter } from "eventemitter3";
import mittImport, { type Emitter } from "mitt";
import type { CaseParams, CaseRun, Sample } from "../_util.ts";

// mitt's types say `export default` over a CommonJS build; at run time the
// default import is the function on every runtime.
const mitt = mittImport as unknown as <E extends Record<string, unknown>>() =>
  Emitter<E>;

/** The cases of scenario 2, by name. */
export const cases: Record<string, CaseRun> = {
  async bus(params: CaseParams): Promise<Sample> {
    const n = Number(params.events);
    const bus = new EventBus<{ "bench.tick": number }>();
    let handled = 0;
    bus.subscribe("bench.tick", () => {
      handled++;
    });
    const start = performance.now();
    for (let i = 0; i < n; i++) await bus.emitSync("bench.tick", i);
    const ms = performance.now() - start;
    await bus.close();
    check(handled, n);
    return { ms, ops: n };
  },

  async emittery(params: CaseParams): Promise<Sample> {
    const n = Number(params.events);
    const emitter = new Emittery<{ tick: number }>();
    let handled = 0;
    emitter.on("tick", () => {
      handled++;
    });
    const start = performance.now();
    for (let i = 0; i < n; i++) await emitter.emit("tick", i);
    const ms = performance.now() - start;
    check(handled, n);
    return { ms, ops: n };
  },

  eventemitter3(params: CaseParams): Promise<Sample> {
    const n = Number(params.events);
    const emitter = new EventEmitter<{ tick: [number] }>();
    let handled = 0;
    emitter.on("tick", () => {
      handled++;
    });
    const start = performance.now();
    for (let i = 0; i < n; i++) emitter.emit("tick", i);
    const ms = performance.now() - start;
    check(handled, n);
    return Promise.resolve({ ms, ops: n });
  },

  mitt(params: CaseParams): Promise<Sample> {
    const n = Number(params.events);
    const emitter = mitt<{ tick: number }>();
    let handled = 0;
    emitter.on("tick", () => {
      handled++;
    });
    const start = performance.now();
    for (let i = 0; i < n; i++) emitter.emit("tick", i);
    const ms = performance.now() - start;
    check(handled, n);
    return Promise.resolve({ ms, ops: n });
  },
};

function check(handled: number, expected: number): void {
  if (handled !== expected) {
    throw new Error(`handled ${handled} of ${expected} events`);
  }
}
