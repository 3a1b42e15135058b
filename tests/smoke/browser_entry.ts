// Copyright 2026 the @eventbus/core authors. MIT license.
// The page side of the browser smoke: bundled by browser_run.ts (esbuild,
// platform "browser", so any node:* import in the core fails the build),
// loaded as a module script from 127.0.0.1, it runs the checks of
// core_smoke.ts and leaves the result on globalThis.__smoke for the driver.
// A browser swallows unhandled rejections into an event instead of exiting,
// so one more check asserts that the core let none escape.

import { runSmoke } from "./core_smoke.ts";

interface SmokeState {
  done: boolean;
  passed: number;
  failed: number;
  lines: string[];
}

const state: SmokeState = { done: false, passed: 0, failed: 0, lines: [] };
(globalThis as { __smoke?: SmokeState }).__smoke = state;

const escaped: string[] = [];
globalThis.addEventListener("unhandledrejection", (event) => {
  escaped.push(`unhandled rejection: ${String(event.reason)}`);
});
globalThis.addEventListener("error", (event) => {
  escaped.push(`uncaught error: ${event.message}`);
});

function write(line: string): void {
  state.lines.push(line);
  console.log(line);
}

try {
  const result = await runSmoke({ write });
  // Rejections are reported at the end of a task: let one task pass.
  await new Promise((resolve) => setTimeout(resolve, 0));
  let { passed, failed } = result;
  const name = "no unhandled rejection or uncaught error escaped the core";
  if (escaped.length === 0) {
    passed++;
    write(`ok   ${name}`);
  } else {
    failed++;
    write(`FAIL ${name}: ${escaped.join("; ")}`);
  }
  state.passed = passed;
  state.failed = failed;
} catch (error) {
  state.failed++;
  write(`FAIL the smoke runner itself threw: ${String(error)}`);
} finally {
  state.done = true;
}
