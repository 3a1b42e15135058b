// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * The dead-letter command line of `@eventbus/core`: list, show, count,
 * replay and purge the dead letters of a broker backend, or serve a small
 * web page to do it (`dashboard`).
 *
 * On Deno: `deno task dlq -- list --backend nats --servers 127.0.0.1:4222`.
 * On Node and Bun, a three-line script runs the same thing:
 *
 * ```ts ignore
 * // dlq.mjs — run as: node dlq.mjs list --backend nats --servers 127.0.0.1:4222
 * import process from "node:process";
 * import { runCli } from "@eventbus/cli";
 * process.exitCode = await runCli(process.argv.slice(2));
 * ```
 *
 * Exit codes: 0 done, 2 nothing matched, 1 error (a bad command line, an
 * unreachable broker, a backend without dead letters, a purge not
 * confirmed). With `--json`, `list` and `show` print one JSON object per
 * line with exactly the fields of a `DeadLetter`: `ref`, `event`,
 * `handler`, `attempts`, `reason`, `error`, `time`.
 *
 * @example Listing dead letters as JSON lines, from code
 * ```ts
 * import { runCli } from "@eventbus/cli";
 * import { WorkerPool } from "@eventbus/core";
 *
 * const lines: string[] = [];
 * const code = await runCli(["list", "--backend", "pool", "--json"], {
 *   backends: { pool: () => Promise.resolve(new WorkerPool()) },
 *   stdout: (text) => void lines.push(text),
 *   stderr: () => {},
 * });
 * console.assert(code === 2 && lines.length === 0); // nothing dead-lettered
 * ```
 *
 * @module
 */

import process from "node:process";
import {
  type AsyncBackend,
  type DeadLetter,
  type DeadLetters,
  describeError,
  matchesDeadLetter,
} from "@eventbus/core";
import {
  type CliFlags,
  type Command,
  parseCommandLine,
  USAGE,
  UsageError,
} from "./_args.ts";
import {
  ADDRESS_FLAGS,
  BUILT_IN_BACKENDS,
  type OpenBackend,
} from "./_backends.ts";
import {
  describeSelection,
  details,
  jsonLine,
  plural,
  table,
} from "./_format.ts";
import { serveDashboard } from "./dashboard.ts";

export type { CliFlags } from "./_args.ts";
export type { OpenBackend } from "./_backends.ts";
export {
  type Dashboard,
  type DashboardOptions,
  serveDashboard,
} from "./dashboard.ts";

/**
 * Where the CLI writes: a function that takes text (it may return a promise
 * to apply backpressure).
 *
 * @example Collecting output in a test
 * ```ts
 * import type { Output } from "@eventbus/cli";
 * const lines: string[] = [];
 * const stdout: Output = (text) => void lines.push(text);
 * stdout("hello\n");
 * console.assert(lines[0] === "hello\n");
 * ```
 */
export type Output = (text: string) => void | Promise<void>;

/**
 * Options of {@linkcode runCli}.
 *
 * @example Adding a backend of your own
 * ```ts
 * import { runCli, type RunCliOptions } from "@eventbus/cli";
 * import { WorkerPool } from "@eventbus/core";
 * const options: RunCliOptions = {
 *   backends: { pool: () => Promise.resolve(new WorkerPool()) },
 * };
 * const code = await runCli(["count", "--backend", "pool"], {
 *   ...options,
 *   stdout: () => {},
 * });
 * console.assert(code === 2);
 * ```
 */
export interface RunCliOptions {
  /**
   * Backends by `--backend` name, added to (or replacing) the built-in
   * `nats`, `redis`, `rabbitmq`, `kafka` and `sqs`. Each opens a backend
   * from the parsed flags; the CLI closes it when done.
   * @default {{}}
   */
  backends?: Readonly<Record<string, OpenBackend>> | undefined;
  /**
   * Where results go.
   * @default {process.stdout}
   */
  stdout?: Output | undefined;
  /**
   * Where messages, errors and prompts go.
   * @default {process.stderr}
   */
  stderr?: Output | undefined;
  /**
   * Where `purge` reads its confirmation (one line; `y` or `yes` confirms,
   * anything else or no input declines).
   * @default {process.stdin}
   */
  stdin?: AsyncIterable<Uint8Array | string> | undefined;
  /**
   * Stops the `dashboard` command (by default it runs until SIGINT or
   * SIGTERM).
   */
  signal?: AbortSignal | undefined;
  /**
   * How long closing the backend may take at the end, in ms.
   * @default {10000}
   */
  closeTimeout?: number | undefined;
}

/**
 * Runs the dead-letter command line and resolves its exit code: 0 done,
 * 2 nothing matched, 1 error. It never exits the process and never
 * rejects: every failure is a message on `stderr` and exit code 1.
 *
 * Commands: `list`, `show <ref>`, `count`, `replay`, `purge`, `dashboard`;
 * `--help` prints them all with their flags.
 *
 * @param args The arguments after the program name, such as
 *   `process.argv.slice(2)` (a leading `--` is skipped).
 * @param options Backends of your own, and the streams to use.
 * @returns The exit code.
 *
 * @example Purging one handler's dead letters without a prompt
 * ```ts ignore
 * import { runCli } from "@eventbus/cli";
 * const code = await runCli([
 *   "purge", "--backend", "nats", "--servers", "127.0.0.1:4222",
 *   "--handler", "send-welcome-email", "--yes",
 * ]);
 * console.log(code === 0 ? "purged" : code === 2 ? "nothing to purge" : "failed");
 * ```
 */
export async function runCli(
  args: readonly string[],
  options: RunCliOptions = {},
): Promise<number> {
  const {
    backends = {},
    stdout = writeTo(process.stdout),
    stderr = writeTo(process.stderr),
    stdin = process.stdin,
    signal,
    closeTimeout = 10_000,
  } = options;
  const registry: Record<string, OpenBackend> = {
    ...BUILT_IN_BACKENDS,
    ...backends,
  };
  const io: Io = { out: stdout, err: stderr, stdin, signal };
  try {
    let parsed;
    try {
      parsed = parseCommandLine(args, Object.keys(registry));
    } catch (error) {
      if (!(error instanceof UsageError)) throw error;
      await stderr(`error: ${error.message}\n`);
      return 1;
    }
    if (parsed.help) {
      await stdout(USAGE);
      return 0;
    }
    const { command, flags } = parsed;
    const open = registry[flags.backend]!; // checked by parseCommandLine
    let backend: AsyncBackend;
    try {
      backend = await open(flags);
    } catch (error) {
      await stderr(`error: ${messageOf(error)}\n`);
      const address = ADDRESS_FLAGS[flags.backend];
      if (address !== undefined && !(error instanceof TypeError)) {
        await stderr(
          `hint: check that the ${flags.backend} broker runs at ${
            address.value(flags)
          } and is reachable from here, or point ${address.flag} at it\n`,
        );
      }
      return 1;
    }
    try {
      const dead = backend.deadLetters;
      if (dead === undefined) {
        await stderr(
          `error: The ${backend.name} backend (--backend ${flags.backend}) has no dead letters to work with: its module does not implement backend.deadLetters yet, use the broker's own tools meanwhile\n`,
        );
        return 1;
      }
      try {
        return await COMMANDS[command]({ ...io, dead, flags, backend });
      } catch (error) {
        if (error instanceof UsageError) {
          await stderr(`error: ${error.message}\n`);
        } else {
          await stderr(
            `error: Cannot ${command} the dead letters of the ${backend.name} backend: ${
              describeError(error)
            }\n`,
          );
        }
        return 1;
      }
    } finally {
      try {
        await backend.close({ timeout: closeTimeout });
      } catch (error) {
        await stderr(
          `warning: Cannot close the ${backend.name} backend: ${
            describeError(error)
          }\n`,
        );
      }
    }
  } catch (error) {
    // A failing stdout/stderr or an open function that broke its contract.
    try {
      await stderr(`error: ${describeError(error)}\n`);
    } catch {
      // nowhere left to report it
    }
    return 1;
  }
}

/** What a command gets. */
interface Io {
  readonly out: Output;
  readonly err: Output;
  readonly stdin: AsyncIterable<Uint8Array | string>;
  readonly signal: AbortSignal | undefined;
}

interface Context extends Io {
  readonly dead: DeadLetters;
  readonly flags: CliFlags;
  readonly backend: AsyncBackend;
}

/** Exit codes. */
const OK = 0;
const ERROR = 1;
const NOTHING = 2;

const COMMANDS: Readonly<Record<Command, (ctx: Context) => Promise<number>>> = {
  list,
  show,
  count,
  replay: (ctx) => change(ctx, "replay"),
  purge: (ctx) => change(ctx, "purge"),
  dashboard,
};

async function list(ctx: Context): Promise<number> {
  const { out, err, flags } = ctx;
  const letters: DeadLetter[] = [];
  for await (const letter of select(ctx.dead, flags)) {
    if (flags.json) await out(jsonLine(letter) + "\n");
    letters.push(letter);
  }
  if (letters.length === 0) {
    await err(`No dead letters match${describeSelection(flags)}\n`);
    return NOTHING;
  }
  if (!flags.json) {
    await out(table(letters));
    await out(`${plural(letters.length)}${describeSelection(flags)}\n`);
  }
  return OK;
}

async function show(ctx: Context): Promise<number> {
  const { out, err, flags } = ctx;
  if (flags.refs.length === 0 && flags.ids.length === 0) {
    throw new UsageError(
      `"show" needs the ref of a dead letter (as "list" prints it): show REF, or --id EVENT_ID`,
    );
  }
  const missingRefs = new Set(flags.refs);
  const missingIds = new Set(flags.ids);
  let shown = 0;
  for await (const letter of select(ctx.dead, flags)) {
    if (shown > 0 && !flags.json) await out("\n");
    await out(flags.json ? jsonLine(letter) + "\n" : details(letter));
    shown++;
    missingRefs.delete(letter.ref);
    missingIds.delete(letter.event?.id);
    // Refs are unique: stop scanning once every one was found.
    if (flags.ids.length === 0 && missingRefs.size === 0) break;
  }
  for (const ref of missingRefs) {
    await err(`No dead letter has the ref ${JSON.stringify(ref)}\n`);
  }
  for (const id of missingIds) {
    await err(`No dead letter has the event id ${JSON.stringify(id)}\n`);
  }
  return missingRefs.size + missingIds.size > 0 ? NOTHING : OK;
}

async function count(ctx: Context): Promise<number> {
  const { out, flags } = ctx;
  const n = await ctx.dead.count({ handler: flags.handler, type: flags.type });
  await out(flags.json ? JSON.stringify({ count: n }) + "\n" : `${n}\n`);
  return n === 0 ? NOTHING : OK;
}

async function change(
  ctx: Context,
  action: "replay" | "purge",
): Promise<number> {
  const { out, err, flags, dead } = ctx;
  const target = await resolveTarget(dead, flags);
  const run = async (dryRun: boolean): Promise<number> =>
    action === "replay"
      ? (await dead.replay({ ...target, dryRun })).replayed
      : (await dead.purge({ ...target, dryRun })).purged;
  const matched = target === undefined ? 0 : await run(true);
  const selection = describeSelection(flags);
  if (matched === 0) {
    await err(`No dead letters match${selection}\n`);
    return NOTHING;
  }
  const done = action === "replay" ? "replayed" : "purged";
  if (flags.dryRun) {
    await out(
      flags.json
        ? JSON.stringify({ [done]: matched, dryRun: true }) + "\n"
        : `Would ${action} ${
          plural(matched)
        }${selection}; nothing changed (dry run)\n`,
    );
    return OK;
  }
  if (action === "purge" && !flags.yes) {
    await err(
      `Purge ${
        plural(matched)
      }${selection} of the ${ctx.backend.name} backend for good? [y/N] `,
    );
    const answer = await readLine(ctx.stdin);
    if (answer === undefined || !/^\s*y(es)?\s*$/i.test(answer)) {
      await err(
        `${
          answer === undefined ? "\nNo answer: n" : "N"
        }othing purged (pass --yes to purge without asking)\n`,
      );
      return ERROR;
    }
  }
  const n = await run(false);
  await out(
    flags.json
      ? JSON.stringify({ [done]: n, dryRun: false }) + "\n"
      : `${action === "replay" ? "Replayed" : "Purged"} ${
        plural(n)
      }${selection}\n`,
  );
  if (action === "replay" && n < matched) {
    await err(
      `${plural(matched - n)} of ${matched} matched ${
        matched - n === 1 ? "was" : "were"
      } not replayed (removed meanwhile, no handler of that name is left, or its event cannot be read): run list to see what stays\n`,
    );
    return ERROR;
  }
  return OK;
}

async function dashboard(ctx: Context): Promise<number> {
  const { out, flags, backend } = ctx;
  const served = await serveDashboard({
    backend,
    port: flags.port ?? 0,
    allowWrites: flags.allowWrites,
  });
  try {
    await out(
      `Dead letters of the ${backend.name} backend: ${served.url} (${
        flags.allowWrites
          ? "replay and purge allowed"
          : "read-only; start with --allow-writes to replay and purge"
      })\nPress Ctrl-C to stop.\n`,
    );
    await stopped(ctx.signal);
  } finally {
    await served.close();
  }
  return OK;
}

/** The dead letters the flags select, oldest first, within --limit. */
async function* select(
  dead: DeadLetters,
  flags: CliFlags,
): AsyncIterable<DeadLetter> {
  const { handler, type, limit = Infinity } = flags;
  const refs = flags.refs.length > 0 ? flags.refs : undefined;
  const ids = flags.ids.length > 0 ? flags.ids : undefined;
  const filtered = refs !== undefined || ids !== undefined;
  let given = 0;
  for await (
    const letter of dead.list({
      handler,
      type,
      limit: filtered || limit === Infinity ? undefined : limit,
    })
  ) {
    if (given >= limit) return;
    if (filtered && !matchesDeadLetter(letter, { refs, ids })) continue;
    given++;
    yield letter;
  }
}

/**
 * The replay or purge target of the flags. `--type` and `--limit` are not
 * part of a target: the matching refs are listed first. Undefined when that
 * listing found nothing.
 */
async function resolveTarget(
  dead: DeadLetters,
  flags: CliFlags,
): Promise<
  | { handler?: string; refs?: string[]; ids?: readonly string[] }
  | undefined
> {
  if (flags.type !== undefined || flags.limit !== undefined) {
    const refs: string[] = [];
    for await (const letter of select(dead, flags)) refs.push(letter.ref);
    return refs.length === 0 ? undefined : { refs };
  }
  return {
    ...(flags.handler === undefined ? {} : { handler: flags.handler }),
    ...(flags.refs.length === 0 ? {} : { refs: [...flags.refs] }),
    ...(flags.ids.length === 0 ? {} : { ids: flags.ids }),
  };
}

/** One line of input, or undefined at the end of input before any line. */
async function readLine(
  input: AsyncIterable<Uint8Array | string>,
): Promise<string | undefined> {
  const decoder = new TextDecoder();
  let text = "";
  let any = false;
  for await (const chunk of input) {
    any = true;
    text += typeof chunk === "string"
      ? chunk
      : decoder.decode(chunk, { stream: true });
    const end = text.indexOf("\n");
    if (end >= 0) return text.slice(0, end);
  }
  return any ? text + decoder.decode() : undefined;
}

/** Resolves when the signal aborts, or at SIGINT or SIGTERM without one. */
function stopped(signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal !== undefined) {
      if (signal.aborted) resolve();
      else signal.addEventListener("abort", () => resolve(), { once: true });
      return;
    }
    const stop = (): void => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      resolve();
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
}

function writeTo(
  stream: { write(text: string, callback: () => void): unknown },
): Output {
  return (text) =>
    new Promise((resolve) => {
      stream.write(text, () => resolve());
    });
}

/** An error's message without its class name, for errors that say it all. */
function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : describeError(error);
}
