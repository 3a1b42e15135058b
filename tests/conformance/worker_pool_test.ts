// Copyright 2026 the @eventbus/core authors. MIT license.
import { WorkerPool } from "../../mod.ts";
import { runConformance } from "./suite.ts";

await runConformance({
  name: "WorkerPool",
  open() {
    const pool = new WorkerPool();
    return Promise.resolve({
      backend: () => Promise.resolve(pool),
      [Symbol.asyncDispose]: async () =>
        void await pool.close({ timeout: 1000 }),
    });
  },
  features: { bulk: 2000 },
});
