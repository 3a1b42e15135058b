// Copyright 2026 the @eventbus/core authors. MIT license.
// Lists the JSR packages of the workspace, one line each, for the shell
// scripts that check them (.ci/ok.sh, .ci/cross_runtime.sh):
//
//   <folder> <name> <entry> [<entry>...]
//
// The root deno.json (@eventbus/core, folder ".") comes first, then each
// member of its "workspace" in order. Entries are the package's "exports"
// as paths from the repository root. Run from the repository root.
import { readFileSync } from "node:fs";
import process from "node:process";

/** The exports of the deno.json in `folder`, as paths from the root. */
function describe(folder) {
  const config = JSON.parse(readFileSync(`${folder}/deno.json`, "utf8"));
  const exports = typeof config.exports === "string"
    ? [config.exports]
    : Object.values(config.exports ?? {});
  const entries = exports.map((path) => {
    const file = path.replace(/^\.\//, "");
    return folder === "." ? file : `${folder}/${file}`;
  });
  return { folder, name: config.name, entries, workspace: config.workspace };
}

const root = describe(".");
const members = (root.workspace ?? []).map((path) =>
  describe(path.replace(/^\.\//, "").replace(/\/$/, ""))
);
for (const { folder, name, entries } of [root, ...members]) {
  process.stdout.write(`${folder} ${name} ${entries.join(" ")}\n`);
}
