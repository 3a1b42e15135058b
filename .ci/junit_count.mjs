// Copyright 2026 the @eventbus/core authors. MIT license.
// Counts leaf test cases in JUnit XML files written by `deno test`,
// `bun test` and `node --test`: a case named "A > B" is a step of "A", so
// "A" is not counted on its own. Prints "passed failed skipped" for the
// files given.
import { readFileSync } from "node:fs";

let passed = 0, failed = 0, skipped = 0;
for (const file of process.argv.slice(2)) {
  let xml;
  try {
    xml = readFileSync(file, "utf8");
  } catch {
    console.error(`junit_count: ${file} is missing: counting one failure`);
    failed++;
    continue;
  }
  const cases = [];
  // Attribute values may hold a raw ">" (node --test escapes only "<").
  const re = /<testcase\b((?:[^>"]|"[^"]*")*?)(\/>|>([\s\S]*?)<\/testcase>)/g;
  for (const m of xml.matchAll(re)) {
    const name = /\bname="([^"]*)"/.exec(m[1])?.[1] ?? "";
    const suite = /\bclassname="([^"]*)"/.exec(m[1])?.[1] ?? "";
    const body = m[3] ?? "";
    cases.push({
      name,
      suite,
      failed: /<(failure|error)\b/.test(body),
      skipped: /<skipped\b/.test(body),
    });
  }
  for (const c of cases) {
    const steps = cases.filter((s) => s.name.startsWith(`${c.name} &gt; `));
    // A group counts through its steps, unless it failed on its own.
    if (steps.length > 0 && !(c.failed && !steps.some((s) => s.failed))) {
      continue;
    }
    if (c.failed) failed++;
    else if (c.skipped) skipped++;
    else passed++;
  }
}
console.log(`${passed} ${failed} ${skipped}`);
