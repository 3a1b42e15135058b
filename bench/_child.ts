// Copyright 2026 the @eventbus/core authors. MIT license.
// Runs one case of one scenario in a fresh process: a warm-up, then the
// timed repetitions, then prints one JSON line (ChildResult) on stdout. The
// runner starts one such process per case so that each library's peak RSS
// is its own.
//
//   <runtime> bench/_child.ts <scenario> <case> '<params json>'

import process from "node:process";
import {
  type CaseParams,
  type ChildResult,
  peakRss,
  rss,
  type Sample,
  type ScenarioModule,
} from "./_util.ts";

const SCENARIOS = [
  "async_dispatch",
  "sync_path",
  "io_bound",
  "memory",
  "nats",
  "brokers",
  "validation",
];

const [scenario = "", name = "", json = "{}"] = process.argv.slice(2);
if (!SCENARIOS.includes(scenario)) {
  throw new Error(`unknown scenario "${scenario}"`);
}
// A computed specifier: scenarios whose backend is not written yet are
// neither loaded nor type-checked through this file.
const module = await import(
  new URL(`./_scenarios/${scenario}.ts`, import.meta.url).href
) as ScenarioModule;
const run = module.cases[name];
if (run === undefined) {
  throw new Error(`unknown case "${name}" in scenario "${scenario}"`);
}
const params = JSON.parse(json) as CaseParams;
const startRss = rss();
const repetitions = Number(params.repetitions ?? 5);
const warmup = await run({ ...params, ...warmupParams(params) });
const samples: Sample[] = [];
for (let i = 0; i < repetitions; i++) samples.push(await run(params));
const result: ChildResult = {
  scenario,
  case: name,
  params,
  warmup,
  samples,
  peakRss: peakRss(),
  startRss,
};
process.stdout.write(JSON.stringify(result) + "\n");
// Sockets or timers a client library left behind must not keep us alive.
process.exit(0);

/** The warm-up runs the `warmup*` overrides, if any, else the same params. */
function warmupParams(p: CaseParams): CaseParams {
  const out: CaseParams = {};
  for (const [key, value] of Object.entries(p)) {
    if (key.startsWith("warmup") && key.length > 6) {
      out[key[6]!.toLowerCase() + key.slice(7)] = value;
    }
  }
  return out;
}
