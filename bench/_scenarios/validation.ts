// Copyright 2026 the @eventbus/core authors. MIT license.
// Scenario 7: validation. `await bus.emitSync()` with one sync handler, and
// `await bus.emit()` into the WorkerPool with one async handler, on a bus
// with a small zod or valibot schema for the type, against the same bus
// without schemas calling the validator by hand before each emit (what a
// user would otherwise write), and against no validation at all.

import * as v from "valibot";
import { z } from "zod";
import { EventBus, type StandardSchemaV1 } from "../../mod.ts";
import {
  type CaseParams,
  type CaseRun,
  deferred,
  type Sample,
} from "../_util.ts";

type Order = { id: string; total: number; items: string[] };

const SCHEMAS: Record<string, StandardSchemaV1<Order> | undefined> = {
  none: undefined,
  zod: z.object({
    id: z.string(),
    total: z.number().nonnegative(),
    items: z.array(z.string()),
  }),
  valibot: v.object({
    id: v.string(),
    total: v.pipe(v.number(), v.minValue(0)),
    items: v.array(v.string()),
  }),
};

/** Runs the schema by hand, as a user without bus validation would. */
function byHand(schema: StandardSchemaV1<Order>, data: Order): void {
  const result = schema["~standard"].validate(data);
  if (result instanceof Promise || result.issues !== undefined) {
    throw new Error("invalid order");
  }
}

function order(i: number): Order {
  return { id: `o${i}`, total: i, items: ["a", "b"] };
}

/** A case: `<path>-<validator>[-hand]`, path "sync" or "pool". */
function makeCase(
  path: "sync" | "pool",
  validator: string,
  hand: boolean,
): CaseRun {
  return async (params: CaseParams): Promise<Sample> => {
    const n = Number(params.events);
    const schema = SCHEMAS[validator];
    const onBus = schema !== undefined && !hand;
    const bus = onBus
      ? new EventBus({ schemas: { "bench.order": schema } })
      : new EventBus<{ "bench.order": Order }>();
    const all = deferred();
    let handled = 0;
    const handler = () => {
      if (++handled === n) all.resolve();
    };
    bus.subscribe(
      "bench.order",
      handler,
      path === "pool" ? { async: true, name: "orders" } : {},
    );
    const start = performance.now();
    for (let i = 0; i < n; i++) {
      const data = order(i);
      if (hand) byHand(schema!, data);
      if (path === "sync") await bus.emitSync("bench.order", data);
      else await bus.emit("bench.order", data);
    }
    await all.promise;
    const ms = performance.now() - start;
    await bus.close();
    return { ms, ops: n };
  };
}

/** The cases of scenario 7, by name. */
export const cases: Record<string, CaseRun> = {};
for (const path of ["sync", "pool"] as const) {
  cases[`${path}-none`] = makeCase(path, "none", false);
  for (const validator of ["zod", "valibot"]) {
    cases[`${path}-${validator}`] = makeCase(path, validator, false);
    cases[`${path}-${validator}-hand`] = makeCase(path, validator, true);
  }
}
