// Copyright 2026 the @eventbus/core authors. MIT license.
// Runs the browser smoke in headless Chromium:
//   1. esbuild bundles browser_entry.ts (core_smoke.ts, mod.ts, src/) for
//      platform "browser" into one ES module, in memory;
//   2. a node:http server on 127.0.0.1 (a free port) serves a page that
//      loads it as <script type="module">;
//   3. playwright-core starts Debian's /usr/bin/chromium, headless, with a
//      fresh user data directory, opens the page and waits (bounded) until
//      the page reports its result;
//   4. prints every check line and "chromium: N passed, N failed"; exits 1
//      on any failure, including a missing browser.
//
// Run it under Node with the root devDependencies (tsx, esbuild,
// playwright-core):
//   npm ci && npx tsx tests/smoke/browser_run.ts
// CHROMIUM=/path/to/chrome overrides the browser.

import { createServer, type Server } from "node:http";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];
const LAUNCH_TIMEOUT = 60_000;
const RUN_TIMEOUT = 180_000;

// The two dev tools are imported by a computed name, so that `deno check`
// does not download and type-check these Node-only tools (deno.json lists
// them only to mirror package.json). Node resolves them from the root
// node_modules. The interfaces below declare the little of each API this
// script uses.
const ESBUILD = "esbuild";
const PLAYWRIGHT = "playwright-core";

interface Esbuild {
  build(options: {
    entryPoints: string[];
    bundle: boolean;
    format: "esm";
    platform: "browser";
    target: string;
    sourcemap: "inline";
    write: false;
    logLevel: "silent";
  }): Promise<{ outputFiles: { text: string }[] }>;
}

interface ConsoleMessage {
  text(): string;
}

interface Page {
  on(event: "console", listener: (message: ConsoleMessage) => void): void;
  on(event: "pageerror", listener: (error: Error) => void): void;
  goto(url: string, options: { timeout: number }): Promise<unknown>;
  waitForFunction(
    expression: string,
    arg: undefined,
    options: { timeout: number; polling: number },
  ): Promise<unknown>;
  evaluate<T>(expression: string): Promise<T>;
}

interface BrowserContext {
  newPage(): Promise<Page>;
  close(): Promise<void>;
}

interface Playwright {
  chromium: {
    launchPersistentContext(userDataDir: string, options: {
      executablePath: string;
      headless: boolean;
      args: string[];
      timeout: number;
    }): Promise<BrowserContext>;
  };
}

interface SmokeState {
  done: boolean;
  passed: number;
  failed: number;
  lines: string[];
}

const PAGE = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>@eventbus/core smoke</title></head>
<body><script type="module" src="/smoke.js"></script></body>
</html>
`;

let exitCode = 1;
try {
  exitCode = await main();
} catch (error) {
  console.log(`FAIL browser smoke could not run: ${describe(error)}`);
  console.log("chromium: 0 passed, 1 failed");
}
process.exit(exitCode);

async function main(): Promise<number> {
  const esbuild = await import(ESBUILD) as Esbuild;
  const { chromium } = await import(PLAYWRIGHT) as Playwright;

  const bundle = await esbuild.build({
    entryPoints: [join(HERE, "browser_entry.ts")],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    sourcemap: "inline",
    write: false,
    logLevel: "silent",
  });
  const script = bundle.outputFiles[0]?.text;
  if (script === undefined) throw new Error("esbuild produced no output");

  const server = createServer((request, response) => {
    const path = new URL(request.url ?? "/", "http://127.0.0.1").pathname;
    if (request.method !== "GET") {
      response.writeHead(405).end();
    } else if (path === "/") {
      response.writeHead(200, { "content-type": "text/html; charset=utf-8" })
        .end(PAGE);
    } else if (path === "/smoke.js") {
      response.writeHead(200, {
        "content-type": "text/javascript; charset=utf-8",
      }).end(script);
    } else {
      response.writeHead(404).end();
    }
  });
  const port = await listen(server);
  const profile = await mkdtemp(join(tmpdir(), "eventbus-chromium-"));
  let context: BrowserContext | undefined;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: FLAGS,
      timeout: LAUNCH_TIMEOUT,
    });
    const page = await context.newPage();
    const seen: string[] = [];
    const errors: string[] = [];
    page.on("console", (message) => void seen.push(message.text()));
    page.on("pageerror", (error) => void errors.push(describe(error)));
    await page.goto(`http://127.0.0.1:${port}/`, { timeout: LAUNCH_TIMEOUT });
    const agent = await page.evaluate<string>("navigator.userAgent");
    console.log(`# core smoke on ${agent}`);
    try {
      await page.waitForFunction(
        "globalThis.__smoke?.done === true",
        undefined,
        {
          timeout: RUN_TIMEOUT,
          polling: 100,
        },
      );
    } catch (error) {
      for (const line of seen) console.log(line);
      for (const line of errors) console.log(`FAIL page error: ${line}`);
      console.log(`FAIL the page did not finish: ${describe(error)}`);
      const state = await page.evaluate<SmokeState | undefined>(
        "globalThis.__smoke",
      ).catch(() => undefined);
      const passed = state?.passed ?? 0;
      console.log(
        `chromium: ${passed} passed, ${(state?.failed ?? 0) + 1} failed`,
      );
      return 1;
    }
    const state = await page.evaluate<SmokeState>("globalThis.__smoke");
    for (const line of state.lines) console.log(line);
    let { passed, failed } = state;
    // Errors outside the checks (the bundle failing to load, say).
    for (const line of errors) {
      console.log(`FAIL page error: ${line}`);
      failed++;
    }
    if (passed + failed === 0) {
      console.log("FAIL the page ran no check");
      failed++;
    }
    console.log(`chromium: ${passed} passed, ${failed} failed`);
    return failed === 0 ? 0 : 1;
  } finally {
    await context?.close().catch(() => {});
    const closed = new Promise<void>((resolve) =>
      server.close(() => resolve())
    );
    server.closeAllConnections();
    await closed;
    await rm(profile, { recursive: true, force: true });
  }
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      if (address === null || typeof address === "string") {
        reject(new Error("the server has no port"));
      } else {
        resolve(address.port);
      }
    });
  });
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    return `${error.name}: ${error.message.split("\n")[0]}`;
  }
  return String(error);
}
