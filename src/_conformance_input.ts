// Copyright 2026 the @eventbus/core authors. MIT license.
// The conformance cases of bad input at emit: a closed bus, an invalid
// event type, a payload JSON cannot carry. Declared by declareConformance()
// for every backend.

import * as assert from "./_conformance_assert.ts";
import type { Harness } from "./_conformance_world.ts";
import {
  EventBusClosedError,
  InvalidEventTypeError,
  SerializationError,
} from "./errors.ts";

/** Declares the bad-input cases inside the suite's group. */
export function declareInputCases(
  it: (name: string, body: () => Promise<void>) => unknown,
  harness: Harness,
): void {
  const { buses, scenario, closeAll } = harness;

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
}
