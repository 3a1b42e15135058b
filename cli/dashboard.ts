// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * A small web page for a backend's dead letters: per handler name the
 * dead-letter count and — when it is served in the worker's process, with
 * the bus's `stats` — the delivered and failed counts; the dead letters
 * themselves (type, id, attempts, reason, error, time, the payload on
 * click); and — when started with `allowWrites` — replay and purge buttons
 * behind a confirmation. It serves on 127.0.0.1 only, needs
 * no framework and no CDN (everything is inline), and guards its write
 * endpoints with a per-run token embedded in the page plus Host, Origin and
 * Fetch-Metadata checks against cross-site requests.
 *
 * `deno task dashboard -- --backend nats --servers 127.0.0.1:4222
 * [--port 8080] [--allow-writes]` runs it from the command line (on Node
 * and Bun: `runCli(["dashboard", ...])`). That process has no bus, so the
 * page says the delivered and failed counts are not known in it; a worker
 * that calls `serveDashboard({ backend, stats: () => bus.stats() })` shows
 * its own.
 *
 * HTTP API (JSON answers; errors are `{ "error": "..." }`):
 * - `GET /api/summary`: `{ backend, writes, total, scanned, truncated,
 *   inProcess, handlers: [{ handler, deadLettered, types: { [type]: count },
 *   totals }] }`. `deadLettered` is what the backend holds now;
 *   `totals` is `{ completed, failed, retried, deadLettered }` of the
 *   name since its subscription in this process (`stats().handlers`), or
 *   `null` when not known here: without `stats` (`inProcess: false`), or for
 *   a name this process's bus does not handle. The names are those of the
 *   dead letters and, with `stats`, those subscribed on the bus.
 * - `GET /api/dead-letters?handler=H&limit=N`: `{ items: DeadLetter[],
 *   total, more }`
 * - `POST /api/replay` and `POST /api/purge` with a JSON body `{ handler?,
 *   refs?, ids?, dryRun? }` (at least one of handler, refs, ids) and the
 *   header `X-Dashboard-Token`: `{ replayed }` / `{ purged }`. 403 without
 *   `allowWrites`, without the token or with a wrong one, or from another
 *   origin.
 *
 * @example Serving a worker pool's dead letters on a free port
 * ```ts
 * import { serveDashboard } from "@eventbus/cli";
 * import { WorkerPool } from "@eventbus/core";
 *
 * const pool = new WorkerPool();
 * const dashboard = await serveDashboard({ backend: pool });
 * const summary = await (await fetch(new URL("api/summary", dashboard.url))).json();
 * console.assert(summary.total === 0 && dashboard.url.startsWith("http://127.0.0.1:"));
 * await dashboard.close();
 * await pool.close();
 * ```
 *
 * @example Serving the page inside a worker, with its delivery counts
 * ```ts
 * import { serveDashboard } from "@eventbus/cli";
 * import { EventBus } from "@eventbus/core";
 *
 * await using bus = new EventBus();
 * bus.subscribe("user.signup", () => {}, { async: true, name: "send-welcome-email" });
 * await using dashboard = await serveDashboard({
 *   backend: bus.backend,
 *   stats: () => bus.stats(),
 * });
 * const summary = await (await fetch(new URL("api/summary", dashboard.url))).json();
 * console.assert(summary.inProcess && summary.handlers[0].totals.completed === 0);
 * ```
 *
 * @module
 */

import { Buffer } from "node:buffer";
import {
  createServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import {
  type AsyncBackend,
  type BusStats,
  type DeadLetter,
  type DeadLetters,
  type DeadLetterTarget,
  describeError,
  type HandlerStats,
} from "@eventbus/core";
import { renderPage } from "./_page.ts";

/**
 * Options of {@linkcode serveDashboard}.
 *
 * @example A dashboard that may replay and purge, on a fixed port
 * ```ts
 * import type { DashboardOptions } from "@eventbus/cli";
 * import { WorkerPool } from "@eventbus/core";
 * const options: DashboardOptions = { backend: new WorkerPool(), port: 8080, allowWrites: true };
 * console.assert(options.allowWrites);
 * await options.backend.close();
 * ```
 */
export interface DashboardOptions {
  /** The backend whose `deadLetters` the page shows; the caller closes it. */
  backend: AsyncBackend;
  /**
   * The counters of the bus in this process, such as `() => bus.stats()`:
   * with it the page shows, per handler name, the deliveries completed and
   * the tries failed since its subscription (`stats().handlers`). Without
   * it (the command line: a process with no bus) the page says they are
   * not known in this process. Called once per summary.
   * @default {undefined}
   */
  stats?: (() => BusStats) | undefined;
  /**
   * The port on 127.0.0.1; 0 picks a free one (read it from `url`).
   * @default {0}
   */
  port?: number | undefined;
  /**
   * Whether the page may replay and purge. Without it the page has no
   * buttons and the write endpoints answer 403.
   * @default {false}
   */
  allowWrites?: boolean | undefined;
  /**
   * How many dead letters the summary reads to find the handler names; past
   * it, each handler's count comes from `count()` and the summary says it
   * is truncated.
   * @default {10000}
   */
  scanLimit?: number | undefined;
}

/**
 * A running dashboard.
 *
 * @example Stopping it with `await using`
 * ```ts
 * import { serveDashboard } from "@eventbus/cli";
 * import { WorkerPool } from "@eventbus/core";
 * await using pool = new WorkerPool();
 * await using dashboard = await serveDashboard({ backend: pool });
 * console.assert(new URL(dashboard.url).hostname === "127.0.0.1");
 * ```
 */
export interface Dashboard extends AsyncDisposable {
  /** The page's address, `http://127.0.0.1:<port>/`. */
  readonly url: string;
  /**
   * Stops serving and closes open connections. Closing twice is harmless.
   *
   * @returns Once the server stopped.
   */
  close(): Promise<void>;
}

/**
 * Serves the dead-letter page of a backend on 127.0.0.1.
 *
 * @param options The backend, the bus's `stats`, the port, and whether
 *   writes are allowed.
 * @returns The running dashboard, with its `url`.
 * @throws {TypeError} When the backend has no `deadLetters`, or `stats` is
 *   given but not a function.
 * @throws {RangeError} When the port or the scan limit is out of range.
 * @throws {Error} When the port cannot be bound (in use), with what to do.
 *
 * @example Replaying through the HTTP API with the page's token
 * ```ts
 * import { serveDashboard } from "@eventbus/cli";
 * import { WorkerPool } from "@eventbus/core";
 *
 * await using pool = new WorkerPool();
 * await using dashboard = await serveDashboard({ backend: pool, allowWrites: true });
 * const page = await (await fetch(dashboard.url)).text();
 * const token = /"token":"([^"]+)"/.exec(page)?.[1] ?? "";
 * const response = await fetch(new URL("api/replay", dashboard.url), {
 *   method: "POST",
 *   headers: { "content-type": "application/json", "x-dashboard-token": token },
 *   body: JSON.stringify({ handler: "send-welcome-email" }),
 * });
 * console.assert((await response.json()).replayed === 0);
 * ```
 */
export async function serveDashboard(
  options: DashboardOptions,
): Promise<Dashboard> {
  const {
    backend,
    stats,
    port = 0,
    allowWrites = false,
    scanLimit = 10_000,
  } = options;
  const dead = backend?.deadLetters;
  if (dead === undefined) {
    throw new TypeError(
      `Cannot serve the dead-letter dashboard: the ${backend?.name} backend has no deadLetters, use a backend that implements them`,
    );
  }
  if (stats !== undefined && typeof stats !== "function") {
    throw new TypeError(
      `Cannot serve the dead-letter dashboard: stats must be a function such as () => bus.stats(), got ${typeof stats}`,
    );
  }
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new RangeError(
      `Cannot serve the dead-letter dashboard: port must be an integer from 0 to 65535, got ${port}`,
    );
  }
  if (!Number.isInteger(scanLimit) || scanLimit < 1) {
    throw new RangeError(
      `Cannot serve the dead-letter dashboard: scanLimit must be an integer of at least 1, got ${scanLimit}`,
    );
  }
  const token = allowWrites ? randomToken() : "";
  const app: App = {
    dead,
    stats,
    backend: backend.name,
    writes: allowWrites,
    token,
    scanLimit,
    port: 0,
  };
  const server = createServer((request, response) => {
    handle(app, request, response).catch((error) => {
      if (!response.headersSent) {
        json(response, 500, { error: describeError(error) });
      } else response.destroy();
    });
  });
  app.port = await listen(server, port);
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    closing ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  return {
    url: `http://127.0.0.1:${app.port}/`,
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** What the request handlers share. */
interface App {
  readonly dead: DeadLetters;
  readonly stats: (() => BusStats) | undefined;
  readonly backend: string;
  readonly writes: boolean;
  readonly token: string;
  readonly scanLimit: number;
  port: number;
}

/** One handler name's line in the summary. */
interface HandlerSummary {
  handler: string;
  /** The backend's dead letters of this name now. */
  deadLettered: number;
  types: Record<string, number>;
  /** This process's totals of the name, or null when not known here. */
  totals: HandlerStats | null;
}

const MAX_BODY = 64 * 1024;
const MAX_LIST = 1_000;
const DEFAULT_LIST = 200;

const SECURITY_HEADERS = {
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cross-origin-resource-policy": "same-origin",
} as const;

async function handle(
  app: App,
  request: IncomingMessage,
  response: ServerResponse,
): Promise<void> {
  const { method = "GET" } = request;
  // DNS rebinding: a page of another site that resolves its own name to
  // 127.0.0.1 reaches us with its own Host header.
  const hosts = [`127.0.0.1:${app.port}`, `localhost:${app.port}`];
  if (!hosts.includes(request.headers.host ?? "")) {
    return json(response, 403, {
      error:
        `Refused: this dashboard answers only to http://127.0.0.1:${app.port}/`,
    });
  }
  const origin = request.headers.origin;
  if (
    origin !== undefined && !hosts.some((host) => origin === `http://${host}`)
  ) {
    return json(response, 403, {
      error: `Refused: requests from ${origin} are cross-site`,
    });
  }
  const path = new URL(request.url ?? "/", "http://127.0.0.1").pathname;
  const url = new URL(request.url ?? "/", `http://127.0.0.1:${app.port}`);
  const route = ROUTES[path];
  if (route === undefined) {
    return json(response, 404, { error: `Not found: ${path}` });
  }
  if (route.method !== method) {
    response.setHeader("allow", route.method);
    return json(response, 405, {
      error: `Method ${method} is not allowed on ${path}, use ${route.method}`,
    });
  }
  if (method === "POST") {
    const refusal = refusePost(app, request);
    if (refusal !== undefined) return json(response, 403, { error: refusal });
  }
  await route.run(app, url, request, response);
}

interface Route {
  readonly method: "GET" | "POST";
  run(
    app: App,
    url: URL,
    request: IncomingMessage,
    response: ServerResponse,
  ): Promise<void>;
}

const ROUTES: Readonly<Record<string, Route>> = {
  "/": {
    method: "GET",
    run(app, _url, _request, response) {
      const nonce = randomToken();
      response.writeHead(200, {
        ...SECURITY_HEADERS,
        "content-type": "text/html; charset=utf-8",
        "content-security-policy":
          `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'nonce-${nonce}'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
      });
      response.end(renderPage({
        nonce,
        config: { backend: app.backend, writes: app.writes, token: app.token },
      }));
      return Promise.resolve();
    },
  },
  "/favicon.ico": {
    method: "GET",
    run(_app, _url, _request, response) {
      response.writeHead(204, SECURITY_HEADERS).end();
      return Promise.resolve();
    },
  },
  "/api/summary": {
    method: "GET",
    async run(app, _url, _request, response) {
      json(response, 200, await summarize(app));
    },
  },
  "/api/dead-letters": {
    method: "GET",
    async run(app, url, _request, response) {
      const handler = url.searchParams.get("handler") ?? undefined;
      const type = url.searchParams.get("type") ?? undefined;
      const limitText = url.searchParams.get("limit");
      const limit = limitText === null ? DEFAULT_LIST : Number(limitText);
      if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIST) {
        return json(response, 400, {
          error:
            `limit must be an integer from 1 to ${MAX_LIST}, got ${limitText}`,
        });
      }
      const items: DeadLetter[] = [];
      let more = false;
      for await (
        const letter of app.dead.list({ handler, type, limit: limit + 1 })
      ) {
        if (items.length === limit) {
          more = true;
          break;
        }
        items.push(pick(letter));
      }
      const total = more
        ? await app.dead.count({ handler, type })
        : items.length;
      json(response, 200, { items, total, more });
    },
  },
  "/api/replay": write((dead, target) => dead.replay(target)),
  "/api/purge": write((dead, target) => dead.purge(target)),
};

/** A POST route that replays or purges the target in its body. */
function write(
  change: (dead: DeadLetters, target: DeadLetterTarget) => Promise<unknown>,
): Route {
  return {
    method: "POST",
    async run(app, _url, request, response) {
      const target = await readTarget(request, response);
      if (target !== undefined) {
        json(response, 200, await change(app.dead, target));
      }
    },
  };
}

/** Why a POST is refused, or undefined when it may go on. */
function refusePost(app: App, request: IncomingMessage): string | undefined {
  if (!app.writes) {
    return "This dashboard is read-only: start it with --allow-writes (allowWrites: true) to replay and purge";
  }
  const site = request.headers["sec-fetch-site"];
  if (site !== undefined && site !== "same-origin" && site !== "none") {
    return `Refused: a ${site} request cannot replay or purge`;
  }
  const given = request.headers["x-dashboard-token"];
  if (typeof given !== "string" || !sameText(given, app.token)) {
    return "Refused: the X-Dashboard-Token header is missing or wrong, reload the page";
  }
  return undefined;
}

/** The JSON body of a replay or purge, checked; answers 4xx when bad. */
async function readTarget(
  request: IncomingMessage,
  response: ServerResponse,
): Promise<DeadLetterTarget | undefined> {
  const type = request.headers["content-type"] ?? "";
  if (!/^application\/json\s*(;|$)/i.test(type)) {
    json(response, 415, { error: "Send the body as application/json" });
    return undefined;
  }
  let body: unknown;
  try {
    body = JSON.parse(await readBody(request));
  } catch (error) {
    json(response, 400, { error: `Bad JSON body: ${describeError(error)}` });
    return undefined;
  }
  const problem = checkTarget(body);
  if (problem !== undefined) {
    json(response, 400, { error: problem });
    return undefined;
  }
  const { handler, refs, ids, dryRun } = body as DeadLetterTarget;
  return {
    ...(handler === undefined ? {} : { handler }),
    ...(refs === undefined ? {} : { refs }),
    ...(ids === undefined ? {} : { ids }),
    dryRun: dryRun === true,
  };
}

function checkTarget(body: unknown): string | undefined {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return "The body is a JSON object: { handler?, refs?, ids?, dryRun? }";
  }
  const target = body as Record<string, unknown>;
  for (const key of Object.keys(target)) {
    if (!["handler", "refs", "ids", "dryRun"].includes(key)) {
      return `Unknown field "${key}": use handler, refs, ids, dryRun`;
    }
  }
  if (target.handler !== undefined && typeof target.handler !== "string") {
    return "handler is a string";
  }
  for (const key of ["refs", "ids"]) {
    const value = target[key];
    if (
      value !== undefined &&
      !(Array.isArray(value) && value.every((v) => typeof v === "string"))
    ) {
      return `${key} is an array of strings`;
    }
  }
  if (target.dryRun !== undefined && typeof target.dryRun !== "boolean") {
    return "dryRun is a boolean";
  }
  if (
    target.handler === undefined && target.refs === undefined &&
    target.ids === undefined
  ) {
    return "Say which dead letters: give handler, refs or ids";
  }
  return undefined;
}

async function summarize(app: App): Promise<{
  backend: string;
  writes: boolean;
  total: number;
  scanned: number;
  truncated: boolean;
  inProcess: boolean;
  handlers: HandlerSummary[];
}> {
  const handlers = new Map<string, HandlerSummary>();
  // Read before the dead letters: a delivery dead-lettered in between shows
  // in the backend's count, not yet in the totals, rather than the reverse.
  const totals = app.stats?.().handlers;
  if (totals !== undefined) {
    for (const [handler, counts] of Object.entries(totals)) {
      const { completed, failed, retried, deadLettered } = counts;
      handlers.set(handler, {
        handler,
        deadLettered: 0,
        types: {},
        totals: { completed, failed, retried, deadLettered },
      });
    }
  }
  let scanned = 0;
  let truncated = false;
  for await (const letter of app.dead.list({ limit: app.scanLimit + 1 })) {
    if (scanned === app.scanLimit) {
      truncated = true;
      break;
    }
    scanned++;
    const name = String(letter.handler ?? "?");
    let line = handlers.get(name);
    if (line === undefined) {
      line = { handler: name, deadLettered: 0, types: {}, totals: null };
      handlers.set(name, line);
    }
    line.deadLettered++;
    const type = String(letter.event?.type ?? "?");
    line.types[type] = (line.types[type] ?? 0) + 1;
  }
  if (truncated) {
    for (const line of handlers.values()) {
      line.deadLettered = await app.dead.count({ handler: line.handler });
    }
  }
  return {
    backend: app.backend,
    writes: app.writes,
    total: truncated ? await app.dead.count() : scanned,
    scanned,
    truncated,
    inProcess: totals !== undefined,
    handlers: [...handlers.values()].sort((a, b) =>
      a.handler < b.handler ? -1 : a.handler > b.handler ? 1 : 0
    ),
  };
}

/** Exactly the fields of a DeadLetter, whatever else a backend added. */
function pick(letter: DeadLetter): DeadLetter {
  const { ref, event, handler, attempts, reason, error, time } = letter;
  return { ref, event, handler, attempts, reason, error, time };
}

function json(response: ServerResponse, status: number, body: unknown): void {
  let text: string;
  try {
    text = JSON.stringify(body);
  } catch (error) {
    status = 500;
    text = JSON.stringify({
      error: `Cannot encode the answer: ${describeError(error)}`,
    });
  }
  response.writeHead(status, {
    ...SECURITY_HEADERS,
    "content-type": "application/json; charset=utf-8",
  });
  response.end(text);
}

function readBody(request: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        reject(new RangeError(`the body is larger than ${MAX_BODY} bytes`));
        request.destroy();
      } else chunks.push(chunk);
    });
    request.once("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    request.once("error", reject);
  });
}

function listen(server: Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", (error: Error & { code?: string }) => {
      reject(
        error.code === "EADDRINUSE"
          ? new Error(
            `Cannot serve the dead-letter dashboard on 127.0.0.1:${port}: the port is in use, pick another --port (0 takes a free one)`,
            { cause: error },
          )
          : error,
      );
    });
    server.listen(port, "127.0.0.1", () => {
      const address = server.address();
      if (address === null || typeof address === "string") {
        reject(new Error("Cannot serve the dead-letter dashboard: no port"));
      } else resolve(address.port);
    });
  });
}

/** 32 random bytes, base64url. */
function randomToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return Buffer.from(bytes).toString("base64url");
}

/** String equality in time independent of where they differ. */
function sameText(a: string, b: string): boolean {
  if (a.length !== b.length || b.length === 0) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}
