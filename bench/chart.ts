// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * Renders the ratios of bench/results/latest.json (and of latest-bun.json
 * beside it, when present) as an SVG bar chart: bench/results/chart.svg.
 * Plain string building: no network, no browser, no dependency.
 *
 * ```sh
 * deno task bench:chart
 * ```
 *
 * @module
 */

import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const RESULTS = join(dirname(fileURLToPath(import.meta.url)), "results");

interface Ratio {
  key: string;
  label: string;
  value: number;
  target?: number;
  met?: boolean;
}

interface Results {
  date: string;
  runtime: { name: string; version: string };
  machine: { cpu: string; cores: number; memoryGB: number; os: string };
  versions: Record<string, string>;
  scenarios: {
    id: string;
    title: string;
    status: string;
    reason?: string;
    ratios: Ratio[];
  }[];
}

const WIDTH = 980;
const LABEL_W = 390;
const PLOT_X = LABEL_W + 10;
const PLOT_W = 470;
const BAR_H = 12;
const ROW_GAP = 8;
const MIN = 0.01;
const MAX = 100;
const COLORS: Record<string, string> = { deno: "#2f6fde", bun: "#d9822b" };

function escape(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(
    ">",
    "&gt;",
  ).replaceAll('"', "&quot;");
}

function x(value: number): number {
  const v = Math.min(MAX, Math.max(MIN, value));
  return PLOT_X +
    (Math.log10(v) - Math.log10(MIN)) / (Math.log10(MAX) - Math.log10(MIN)) *
      PLOT_W;
}

function fmt(value: number): string {
  if (!Number.isFinite(value)) return "n/a";
  return value >= 10
    ? `${value.toFixed(1)}×`
    : value >= 0.1
    ? `${value.toFixed(2)}×`
    : `${value.toFixed(3)}×`;
}

/** Renders the chart for one or more result files (one series each). */
export function render(series: Results[]): string {
  const main = series[0]!;
  const out: string[] = [];
  let y = 78;
  const rows: string[] = [];
  for (const scenario of main.scenarios) {
    rows.push(
      `<text x="12" y="${y + 12}" class="h">${
        escape(`${scenario.id}. ${scenario.title}`)
      }</text>`,
    );
    y += 22;
    if (scenario.status !== "ok" || scenario.ratios.length === 0) {
      rows.push(
        `<text x="24" y="${y + 10}" class="note">${
          escape(`${scenario.status}: ${scenario.reason ?? "no ratios"}`)
        }</text>`,
      );
      y += 24;
      continue;
    }
    for (const ratio of scenario.ratios) {
      const top = y;
      rows.push(
        `<text x="${LABEL_W}" y="${
          top + (BAR_H * series.length) / 2 + 4
        }" class="label" text-anchor="end">${escape(ratio.label)}</text>`,
      );
      series.forEach((results, i) => {
        const ran = results.scenarios.find((s) => s.id === scenario.id);
        const r = ran?.ratios.find((q) => q.key === ratio.key);
        const by = top + i * BAR_H;
        if (ran === undefined) return; // this runtime did not run it
        if (r === undefined || !Number.isFinite(r.value)) {
          rows.push(
            `<text x="${x(1) + 4}" y="${by + BAR_H - 2}" class="value">${
              escape(results.runtime.name)
            }: not measured</text>`,
          );
          return;
        }
        const x0 = Math.min(x(1), x(r.value));
        const w = Math.max(1, Math.abs(x(r.value) - x(1)));
        const color = COLORS[results.runtime.name] ?? "#555";
        rows.push(
          `<rect x="${x0.toFixed(1)}" y="${by + 1}" width="${
            w.toFixed(1)
          }" height="${BAR_H - 2}" fill="${color}" opacity="${
            r.value >= 1 ? 1 : 0.55
          }"><title>${
            escape(`${results.runtime.name}: ${fmt(r.value)}`)
          }</title></rect>`,
        );
        const missed = r.met === false;
        const tx = Math.max(x(1), x(r.value)) + 4;
        rows.push(
          `<text x="${tx.toFixed(1)}" y="${by + BAR_H - 2}" class="value${
            missed ? " missed" : ""
          }">${fmt(r.value)}${
            series.length > 1 ? ` ${results.runtime.name}` : ""
          }${missed ? " (target missed)" : ""}</text>`,
        );
      });
      if (ratio.target !== undefined) {
        const tx = x(ratio.target);
        rows.push(
          `<line x1="${tx.toFixed(1)}" x2="${tx.toFixed(1)}" y1="${
            top - 2
          }" y2="${
            top + BAR_H * series.length + 2
          }" class="target"><title>target ${fmt(ratio.target)}</title></line>`,
        );
      }
      y += BAR_H * series.length + ROW_GAP;
    }
    y += 6;
  }
  const height = y + 40;
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif">`,
    `<style>.t{font-size:16px;font-weight:600}.s{font-size:11px;fill:#555}.h{font-size:13px;font-weight:600}.label{font-size:11px;fill:#222}.value{font-size:10px;fill:#222}.missed{fill:#c62828;font-weight:600}.note{font-size:11px;fill:#777;font-style:italic}.axis{stroke:#999;stroke-width:1}.grid{stroke:#e3e3e3;stroke-width:1}.one{stroke:#222;stroke-width:1.5}.target{stroke:#c62828;stroke-width:2;stroke-dasharray:3 2}.tick{font-size:10px;fill:#555}</style>`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="12" y="24" class="t">@eventbus/core vs peers: ratios (&gt; 1× = the bus does better), log scale</text>`,
    `<text x="12" y="42" class="s">${
      escape(
        `${main.date.slice(0, 10)} · ${
          series.map((s) => `${s.runtime.name} ${s.runtime.version}`).join(
            " · ",
          )
        } · ${main.machine.cpu}, ${main.machine.cores} cores, ${main.machine.memoryGB} GB, ${main.machine.os}`,
      )
    }</text>`,
    `<text x="12" y="58" class="s">Absolute numbers vary by machine; ratios are measured side by side in one run. Red dashed line: target of issue #5 (in scenario 3, 0.9× is our reading of "scales like the floor").</text>`,
  );
  for (const tick of [0.01, 0.1, 1, 10, 100]) {
    out.push(
      `<line x1="${x(tick)}" x2="${x(tick)}" y1="70" y2="${y}" class="${
        tick === 1 ? "one" : "grid"
      }"/>`,
      `<text x="${x(tick)}" y="${
        y + 14
      }" class="tick" text-anchor="middle">${tick}×</text>`,
    );
  }
  series.forEach((s, i) => {
    const lx = PLOT_X + i * 230;
    out.push(
      `<rect x="${lx}" y="${y + 22}" width="12" height="10" fill="${
        COLORS[s.runtime.name] ?? "#555"
      }"/>`,
      `<text x="${lx + 16}" y="${y + 31}" class="tick">${
        escape(
          `${s.runtime.name} ${s.runtime.version} (scenarios ${
            s.scenarios.map((x) => x.id).join(", ")
          })`,
        )
      }</text>`,
    );
  });
  out.push(...rows, "</svg>");
  return out.join("\n") + "\n";
}

if (import.meta.main) {
  // deno task bench:chart [results.json ...] [--out=chart.svg]
  const args = process.argv.slice(2);
  const outArg = args.find((a) => a.startsWith("--out="));
  const out = outArg?.slice(6) ?? join(RESULTS, "chart.svg");
  let files = args.filter((a) => !a.startsWith("--"));
  if (files.length === 0) {
    files = ["latest.json", "latest-bun.json"].map((f) => join(RESULTS, f))
      .filter((f) => existsSync(f));
  }
  if (files.length === 0) {
    throw new Error(
      `Cannot render the chart: ${
        join(RESULTS, "latest.json")
      } is missing, run deno task bench first`,
    );
  }
  const series = files.map((f) =>
    JSON.parse(readFileSync(f, "utf8")) as Results
  );
  const svg = render(series);
  writeFileSync(out, svg);
  console.log(`wrote ${out} (${svg.length} bytes)`);
}
