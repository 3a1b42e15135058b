// Copyright 2026 the @eventbus/core authors. MIT license.
// Reads `deno doc --json <entries>` on stdin and checks what JSR scores and
// STYLE.md asks for beyond `deno doc --lint`: every entry has a @module doc,
// and every exported symbol has a titled @example (`@example Title` then a
// fenced block). Prints one line per problem; exits 1 when there is any.
import process from "node:process";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const doc = JSON.parse(input);
const modules = doc.nodes ?? {};
const problems = [];
let symbols = 0;
for (const [specifier, module] of Object.entries(modules)) {
  const file = specifier.replace(
    /^file:\/\/.*?\/(?=(mod\.ts|src\/|backends\/|cli\/))/,
    "",
  );
  const moduleTags = module.module_doc?.tags ?? [];
  if (!moduleTags.some((tag) => tag.kind === "module")) {
    problems.push(`${file}: no @module doc`);
  }
  for (const symbol of module.symbols ?? []) {
    for (const declaration of symbol.declarations ?? []) {
      symbols++;
      const at = `${file}: ${symbol.name}`;
      const examples = (declaration.jsDoc?.tags ?? [])
        .filter((tag) => tag.kind === "example");
      if (declaration.jsDoc === undefined) {
        problems.push(`${at} has no JSDoc`);
      } else if (examples.length === 0) {
        problems.push(`${at} has no @example`);
      } else if (examples.some((tag) => /^\s*```/.test(tag.doc ?? ""))) {
        problems.push(`${at} has an @example without a title`);
      }
    }
  }
}
for (const problem of problems) console.log(problem);
console.log(
  `${symbols} exported declarations, ${problems.length} documentation problems`,
);
process.exitCode = problems.length === 0 ? 0 : 1;
