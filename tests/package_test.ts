// Copyright 2026 the @eventbus/core authors. MIT license.
// Package hygiene. The repository is a Deno workspace: the root deno.json is
// the core, @eventbus/core, and each broker backend (and the CLI) is a member
// package of its own, so that a Node or Bun user of one backend installs one
// broker client. Deno reads each deno.json, Bun and Node read the
// package.json beside it (npm workspaces), so the two must name the same
// third-party packages with the same ranges; each package imports only its
// own dependencies; and what is published to JSR is the package, not its
// tests or tools.

import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = new URL("../", import.meta.url);

interface DenoJson {
  name?: string;
  version?: string;
  license?: string;
  workspace?: string[];
  exports?: string | Record<string, string>;
  imports?: Record<string, string>;
  publish?: { include?: string[]; exclude?: string[] };
}

interface PackageJson {
  name?: string;
  version?: string;
  private?: boolean;
  type?: string;
  license?: string;
  workspaces?: string[];
  exports?: string | Record<string, string>;
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
}

function readJson<T>(path: string): T {
  return JSON.parse(readFileSync(fileURLToPath(new URL(path, ROOT)), "utf8"));
}

const deno = readJson<DenoJson>("deno.json");
const pkg = readJson<PackageJson>("package.json");

/** The broker client(s) each backend package may import, and nothing else. */
const BROKER_CLIENTS: Record<string, string[]> = {
  "@eventbus/nats": [
    "@nats-io/jetstream",
    "@nats-io/nats-core",
    "@nats-io/transport-node",
  ],
  "@eventbus/redis": ["@redis/client"],
  "@eventbus/rabbitmq": ["rabbitmq-client"],
  "@eventbus/kafka": ["kafkajs"],
  "@eventbus/sqs": ["@aws-sdk/client-sqs"],
  "@eventbus/cli": [],
};

/** What a member may import of the core: its public entries only. */
const CORE_ENTRIES = ["@eventbus/core", "@eventbus/core/backend-kit"];

interface Member {
  /** The folder, such as "backends/redis/". */
  folder: string;
  deno: DenoJson;
  pkg: PackageJson;
}

const members: Member[] = (deno.workspace ?? []).map((path) => {
  const folder = `${path.replace(/^\.\//, "").replace(/\/$/, "")}/`;
  return {
    folder,
    deno: readJson<DenoJson>(`${folder}deno.json`),
    pkg: readJson<PackageJson>(`${folder}package.json`),
  };
});

/** `npm:<name>@<range>` split into name and range; scoped names keep their `@`. */
function parseNpm(specifier: string): { name: string; range: string } {
  const rest = specifier.slice("npm:".length);
  const at = rest.indexOf("@", rest.startsWith("@") ? 1 : 0);
  assert.ok(at > 0, `${specifier} has a version range after the name`);
  return { name: rest.slice(0, at), range: rest.slice(at + 1) };
}

/** The npm dependencies a deno.json maps bare names to, as name -> range. */
function denoNpmDependencies(config: DenoJson): Map<string, string> {
  const found = new Map<string, string>();
  for (const [key, target] of Object.entries(config.imports ?? {})) {
    if (!target.startsWith("npm:")) continue;
    const { name, range } = parseNpm(target);
    assert.equal(key, name, `deno.json imports "${key}" maps to npm "${name}"`);
    found.set(name, range);
  }
  return found;
}

/** A package.json's registry dependencies (not the workspace's file: links). */
function npmDependencies(
  deps: Record<string, string> = {},
): [string, string][] {
  return Object.entries(deps).filter(([, range]) => !range.startsWith("file:"));
}

function sorted(entries: Iterable<[string, string]>): Record<string, string> {
  return Object.fromEntries(
    [...entries].sort(([a], [b]) => a.localeCompare(b)),
  );
}

test("the workspace lists each backend package and the CLI, in deno.json and package.json", () => {
  assert.deepEqual(
    members.map((m) => m.deno.name).sort(),
    Object.keys(BROKER_CLIENTS).sort(),
  );
  assert.deepEqual(
    (pkg.workspaces ?? []).map((p) => `${p.replace(/^\.\//, "")}/`).sort(),
    members.map((m) => m.folder).sort(),
    "package.json workspaces (npm) are deno.json workspace (Deno)",
  );
});

test("deno.json imports and package.json list the same packages and ranges", () => {
  // The root import map serves tests, examples and benchmarks: every
  // package's npm dependencies, each under one range.
  const fromDeno = sorted(denoNpmDependencies(deno));
  const fromPackages = new Map<string, string>();
  for (
    const [name, range] of [
      ...npmDependencies(pkg.devDependencies),
      ...members.flatMap((m) => npmDependencies(m.pkg.dependencies)),
    ]
  ) {
    const seen = fromPackages.get(name);
    assert.ok(seen === undefined || seen === range, `${name}: one range`);
    fromPackages.set(name, range);
  }
  assert.deepEqual(sorted(fromPackages), fromDeno);
  for (const member of members) {
    assert.deepEqual(
      sorted(denoNpmDependencies(member.deno)),
      sorted(npmDependencies(member.pkg.dependencies)),
      `${member.folder}deno.json imports and package.json dependencies`,
    );
    for (const [name, range] of denoNpmDependencies(member.deno)) {
      assert.equal(range, fromDeno[name], `${member.folder}: ${name} range`);
    }
  }
});

test("each backend package depends on its own broker client only", () => {
  for (const member of members) {
    const name = member.deno.name!;
    const files = publishedFiles(member.folder);
    assert.ok(files.length > 0, `${member.folder} has files`);
    const imported = new Set<string>();
    for (const file of files) {
      for (const specifier of bareImports(file)) imported.add(specifier);
      for (const local of localImports(file)) {
        assert.ok(
          local.startsWith(member.folder),
          `${file} imports ${local}, outside its package: import @eventbus/core or @eventbus/core/backend-kit`,
        );
      }
      for (const specifier of specifiers(file)) {
        if (!specifier.startsWith("@eventbus/core")) continue;
        assert.ok(
          CORE_ENTRIES.includes(specifier),
          `${file} imports ${specifier}: backends use ${
            CORE_ENTRIES.join(" and ")
          }`,
        );
      }
    }
    const npm = [...imported].filter((n) => !n.startsWith("@eventbus/"));
    assert.deepEqual(npm.sort(), [...BROKER_CLIENTS[name]!].sort(), name);
    assert.deepEqual(
      Object.keys(member.deno.imports ?? {}).sort(),
      npm.sort(),
      `${member.folder}deno.json imports exactly the clients it uses`,
    );
    // Workspace packages it uses are linked for Node and Bun.
    const linked = Object.keys(member.pkg.dependencies ?? {})
      .filter((n) => n.startsWith("@eventbus/")).sort();
    assert.deepEqual(
      linked,
      [...imported].filter((n) => n.startsWith("@eventbus/")).sort(),
      `${member.folder}package.json links the @eventbus packages it imports`,
    );
  }
});

test("the core depends on no broker client: mod.ts and src/ import no third-party module but optional peers", () => {
  const imported = new Set<string>();
  for (const file of publishedFiles("src/", ["mod.ts"])) {
    for (const name of bareImports(file)) imported.add(name);
    for (const local of localImports(file)) {
      assert.ok(!local.startsWith("backends/"), `${file} imports ${local}`);
    }
  }
  assert.deepEqual(
    [...imported].sort(),
    Object.keys(pkg.peerDependencies ?? {}).sort(),
    "the core imports its optional peers only",
  );
  assert.deepEqual(
    pkg.dependencies ?? {},
    {},
    "the core has no dependencies; broker clients belong to their backend's package",
  );
});

test("mod.ts imports no third-party module, directly or through src/", () => {
  const seen = new Set<string>();
  const visit = (file: string): void => {
    if (seen.has(file)) return;
    seen.add(file);
    assert.deepEqual(bareImports(file), [], `${file} imports only local files`);
    for (const local of localImports(file)) visit(local);
  };
  visit("mod.ts");
  assert.ok(seen.size > 5, `followed mod.ts through ${seen.size} files`);
});

/** The .ts files JSR publishes from `folder`, with `extra` files. */
function publishedFiles(folder: string, extra: string[] = []): string[] {
  const files = [...extra];
  const walk = (dir: string): void => {
    for (
      const entry of readdirSync(fileURLToPath(new URL(dir, ROOT)), {
        withFileTypes: true,
      })
    ) {
      const path = `${dir}${entry.name}`;
      if (entry.name === "node_modules") continue;
      if (entry.isDirectory()) walk(`${path}/`);
      else if (path.endsWith(".ts")) files.push(path);
    }
  };
  walk(folder);
  return files;
}

const IMPORT = /^\s*(?:import|export)\s[^;]*?from\s+"([^"]+)"/gm;
const DYNAMIC_IMPORT = /\bimport\(\s*"([^"]+)"\s*\)/g;

function specifiers(file: string): string[] {
  const text = readFileSync(fileURLToPath(new URL(file, ROOT)), "utf8");
  // Doc comments (" * import ...") hold examples, not imports.
  const code = text.replace(/\/\*[\s\S]*?\*\//g, "");
  return [
    ...[...code.matchAll(IMPORT)].map((match) => match[1]!),
    ...[...code.matchAll(DYNAMIC_IMPORT)].map((match) => match[1]!),
  ];
}

/** The packages a file imports by bare name (not node: or local). */
function bareImports(file: string): string[] {
  return [
    ...new Set(
      specifiers(file)
        .filter((s) => !s.startsWith(".") && !s.startsWith("node:"))
        .map((s) =>
          s.startsWith("@")
            ? s.split("/").slice(0, 2).join("/")
            : s.split("/")[0]!
        ),
    ),
  ];
}

/** The local files a file imports, as paths from the root. */
function localImports(file: string): string[] {
  return specifiers(file).filter((s) => s.startsWith(".")).map((s) =>
    fileURLToPath(new URL(s, new URL(file, ROOT))).slice(
      fileURLToPath(ROOT).length,
    )
  );
}

test("deno.json npm imports use caret ranges and nothing else leaves the package", () => {
  for (const config of [deno, ...members.map((m) => m.deno)]) {
    for (const [key, target] of Object.entries(config.imports ?? {})) {
      if (target.startsWith("npm:")) {
        const { range } = parseNpm(target);
        assert.match(range, /^\^\d+(\.\d+){0,2}$/, `"${key}": ${target}`);
      } else {
        // jsr: and https: are unreachable from CI and rejected by deno
        // publish without a version; local paths are the workspace's own
        // entry points.
        assert.ok(target.startsWith("./"), `"${key}": ${target} is local`);
      }
    }
  }
});

test("package.json is an ES module package whose peers are optional and installed for the tests", () => {
  assert.equal(pkg.type, "module");
  for (const name of Object.keys(pkg.peerDependencies ?? {})) {
    assert.equal(pkg.peerDependenciesMeta?.[name]?.optional, true, name);
    assert.ok(pkg.devDependencies?.[name], `${name} is a dev dependency`);
  }
  assert.equal(pkg.name, deno.name);
  assert.equal(pkg.version, deno.version);
  for (const member of members) {
    assert.equal(member.pkg.name, member.deno.name, member.folder);
    assert.equal(member.pkg.version, member.deno.version, member.folder);
    assert.equal(member.pkg.type, "module", member.folder);
    assert.equal(member.pkg.private, true, `${member.folder} is not for npm`);
    assert.equal(member.pkg.exports, member.deno.exports, member.folder);
  }
});

test("deno.json names a scoped, versioned, licensed package with existing exports", () => {
  assert.ok(
    existsSync(fileURLToPath(new URL("LICENSE", ROOT))),
    "LICENSE exists",
  );
  for (
    const [folder, config] of [
      ["", deno] as const,
      ...members.map((m) => [m.folder, m.deno] as const),
    ]
  ) {
    assert.match(config.name ?? "", /^@eventbus\/[a-z0-9-]+$/);
    assert.equal(config.version, deno.version, `${folder} follows the core`);
    assert.equal(config.license, "MIT");
    const exports = typeof config.exports === "string"
      ? { ".": config.exports }
      : config.exports ?? {};
    assert.equal(exports["."], "./mod.ts", `${folder}deno.json exports`);
    for (const [key, path] of Object.entries(exports)) {
      const file = `${folder}${path.replace(/^\.\//, "")}`;
      assert.ok(
        existsSync(fileURLToPath(new URL(file, ROOT))),
        `${config.name} exports["${key}"] = ${path} exists`,
      );
      // Docs, tests and examples import "@eventbus/<name>/<entry>" as
      // users do; the root import map must send that name to the same file.
      const self = `${config.name}${key.slice(1)}`;
      assert.equal(deno.imports?.[self], `./${file}`, `imports["${self}"]`);
    }
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
