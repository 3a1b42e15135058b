// Copyright 2026 the @eventbus/core authors. MIT license.
// Measures two cases of one scenario side by side in one process: a warm-up
// of each, then repetitions alternating (A, B, A, B, ...), and prints the
// median events/s of each and the ratio A ÷ B. Alternating in one process
// keeps slow drifts of a shared machine out of the ratio.
//
//   deno run -A bench/pair.ts brokers rabbitmq-bus-consume rabbitmq-raw-consume '{"events":20000}' [--reps=9]
//   bun bench/pair.ts brokers rabbitmq-bus-consume rabbitmq-raw-consume '{"events":20000}'

import process from "node:process";
import {
  type CaseParams,
  runtimeName,
  type Sample,
  type ScenarioModule,
  summarize,
} from "./_util.ts";

const args = process.argv.slice(2).filter((a) => !a.startsWith("--"));
const reps = Number(
  process.argv.find((a) => a.startsWith("--reps="))?.slice(7) ?? 9,
);
const [scenario = "", a = "", b = "", json = "{}"] = args;
const module = await import(
  new URL(`./_scenarios/${scenario}.ts`, import.meta.url).href
) as ScenarioModule;
const runA = module.cases[a];
const runB = module.cases[b];
if (runA === undefined || runB === undefined) {
  throw new Error(`unknown case "${runA === undefined ? a : b}"`);
}
const params = JSON.parse(json) as CaseParams;
const warmup = { ...params, events: Math.ceil(Number(params.events) / 5) };
await runA(warmup);
await runB(warmup);
const rates: [number[], number[]] = [[], []];
// The p50 and p99 latencies (ms) of cases that report them (the e2e cases).
const p50s: [number[], number[]] = [[], []];
const p99s: [number[], number[]] = [[], []];
for (let i = 0; i < reps; i++) {
  for (const [k, run] of [runA, runB].entries()) {
    const sample: Sample = await run(params);
    rates[k]!.push(sample.ops / (sample.ms / 1000));
    const { p50, p99 } = sample.extra ?? {};
    if (typeof p50 === "number") p50s[k]!.push(p50);
    if (typeof p99 === "number") p99s[k]!.push(p99);
  }
}
const [sa, sb] = [summarize(rates[0]), summarize(rates[1])];
const latency = p50s[0].length === reps && p50s[1].length === reps
  ? {
    p50: { [a]: summarize(p50s[0]), [b]: summarize(p50s[1]) },
    p99: { [a]: summarize(p99s[0]), [b]: summarize(p99s[1]) },
    // B's p50 ÷ A's: more than 1 when A is faster, as the runner orients it.
    p50Ratio: summarize(p50s[1]).median / summarize(p50s[0]).median,
  }
  : {};
console.log(JSON.stringify({
  runtime: runtimeName(),
  scenario,
  params,
  reps,
  [a]: sa,
  [b]: sb,
  ratio: sa.median / sb.median,
  ratios: rates[0].map((r, i) => r / rates[1][i]!),
  ...latency,
}));
process.exit(0);
