// Copyright 2026 the @eventbus/core authors. MIT license.
// Runs the core smoke in a server-side runtime and exits non-zero on any
// failure. It uses no runtime-specific API, so the same file runs as
//   npx tsx tests/smoke/run.ts        (Node >= 20, through tsx)
//   deno run tests/smoke/run.ts       (Deno)
//   bun tests/smoke/run.ts            (Bun)
// The summary line is "<runtime>: N passed, N failed".

import { runSmoke } from "./core_smoke.ts";

const [label, version] = runtime();
console.log(`# core smoke on ${label} ${version}`);
const { failed } = await runSmoke({ label });
if (failed > 0) {
  // An uncaught error exits non-zero in every runtime.
  throw new Error(`${label}: ${failed} smoke check(s) failed`);
}

function runtime(): [name: string, version: string] {
  const g = globalThis as {
    Deno?: { version: { deno: string } };
    Bun?: { version: string };
    process?: { versions?: { node?: string } };
  };
  if (g.Deno !== undefined) return ["deno", g.Deno.version.deno];
  if (g.Bun !== undefined) return ["bun", g.Bun.version];
  const node = g.process?.versions?.node;
  return node === undefined ? ["unknown", "?"] : ["node", node];
}
