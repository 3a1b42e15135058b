// Copyright 2026 the @eventbus/core authors. MIT license.
// Package hygiene: Deno reads deno.json, Bun and Node read package.json, so
// the two must name the same third-party packages with the same ranges, and
// what is published to JSR must be the package, not its tests or tools.

import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = new URL("../", import.meta.url);

interface DenoJson {
  name?: string;
  version?: string;
  license?: string;
  exports?: string | Record<string, string>;
  imports?: Record<string, string>;
  publish?: { include?: string[]; exclude?: string[] };
}

interface PackageJson {
  name?: string;
  version?: string;
  type?: string;
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
}

function readJson<T>(path: string): T {
  return JSON.parse(readFileSync(fileURLToPath(new URL(path, ROOT)), "utf8"));
}

const deno = readJson<DenoJson>("deno.json");
const pkg = readJson<PackageJson>("package.json");

/** `npm:<name>@<range>` split into name and range; scoped names keep their `@`. */
function parseNpm(specifier: string): { name: string; range: string } {
  const rest = specifier.slice("npm:".length);
  const at = rest.indexOf("@", rest.startsWith("@") ? 1 : 0);
  assert.ok(at > 0, `${specifier} has a version range after the name`);
  return { name: rest.slice(0, at), range: rest.slice(at + 1) };
}

/** The npm dependencies deno.json maps bare names to, as name -> range. */
function denoNpmDependencies(): Map<string, string> {
  const found = new Map<string, string>();
  for (const [key, target] of Object.entries(deno.imports ?? {})) {
    if (!target.startsWith("npm:")) continue;
    const { name, range } = parseNpm(target);
    assert.equal(key, name, `deno.json imports "${key}" maps to npm "${name}"`);
    found.set(name, range);
  }
  return found;
}

test("deno.json imports and package.json dependencies list the same packages and ranges", () => {
  const fromDeno = Object.fromEntries(
    [...denoNpmDependencies()].sort(([a], [b]) => a.localeCompare(b)),
  );
  const fromPackage = Object.fromEntries(
    Object.entries(pkg.dependencies ?? {}).sort(([a], [b]) =>
      a.localeCompare(b)
    ),
  );
  assert.deepEqual(fromPackage, fromDeno);
});

test("deno.json npm imports use caret ranges and nothing else leaves the package", () => {
  for (const [key, target] of Object.entries(deno.imports ?? {})) {
    if (target.startsWith("npm:")) {
      const { range } = parseNpm(target);
      assert.match(range, /^\^\d+(\.\d+){0,2}$/, `"${key}": ${target}`);
    } else {
      // jsr: and https: are unreachable from CI and rejected by deno publish
      // without a version; local paths are the package's own entry points.
      assert.ok(target.startsWith("./"), `"${key}": ${target} is local`);
    }
  }
});

test("package.json holds runtime dependencies only, as an ES module package", () => {
  assert.equal(pkg.type, "module");
  assert.equal(
    pkg.devDependencies,
    undefined,
    "dev tools live in tests/smoke/package.json or .ci/package.json",
  );
  assert.equal(pkg.name, deno.name);
  assert.equal(pkg.version, deno.version);
});

test("deno.json names a scoped, versioned, licensed package with existing exports", () => {
  assert.match(deno.name ?? "", /^@[a-z0-9-]+\/[a-z0-9-]+$/);
  assert.match(deno.version ?? "", /^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/);
  assert.equal(deno.license, "MIT");
  assert.ok(
    existsSync(fileURLToPath(new URL("LICENSE", ROOT))),
    "LICENSE exists",
  );
  const exports = typeof deno.exports === "string"
    ? { ".": deno.exports }
    : deno.exports ?? {};
  assert.equal(exports["."], "./mod.ts");
  for (const [key, path] of Object.entries(exports)) {
    assert.ok(
      existsSync(fileURLToPath(new URL(path, ROOT))),
      `exports["${key}"] = ${path} exists`,
    );
    // Docs and examples import "@eventbus/core/<entry>" as users do; the
    // import map must send that name to the same file.
    const self = `${deno.name}${key.slice(1)}`;
    assert.equal(deno.imports?.[self], path, `imports["${self}"]`);
  }
});

test("publish.exclude keeps tests, benchmarks, examples and CI out of the JSR package", () => {
  const exclude = deno.publish?.exclude ?? [];
  for (const folder of ["tests/", "bench/", "examples/", ".ci/"]) {
    assert.ok(
      exclude.some((e) =>
        e.replace(/^\.\//, "").replace(/\/?\*\*$/, "/") === folder
      ),
      `publish.exclude lists ${folder}`,
    );
  }
  for (const include of deno.publish?.include ?? []) {
    assert.ok(
      !/^(\.\/)?(tests|bench|examples|\.ci)(\/|$)/.test(include),
      `publish.include does not bring back ${include}`,
    );
  }
});
