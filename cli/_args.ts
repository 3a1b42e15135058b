// Copyright 2026 the @eventbus/core authors. MIT license.
// The command line: which command, which flags, and what each command
// accepts. A flag that a command or a backend would ignore is an error, so a
// typo never runs a different selection than the one the user meant.

import { parseArgs } from "node:util";

/** The commands of the CLI. */
export const COMMANDS = [
  "list",
  "show",
  "count",
  "replay",
  "purge",
  "dashboard",
] as const;

/** One of {@linkcode COMMANDS}. */
export type Command = typeof COMMANDS[number];

/**
 * The flags of a command line, parsed. Backend-specific flags are given to
 * the backend's open function, which reads those it knows.
 *
 * @example A backend of your own, opened from the `--url` flag
 * ```ts
 * import type { CliFlags, OpenBackend } from "@eventbus/cli";
 * import { WorkerPool } from "@eventbus/core";
 *
 * const openMine: OpenBackend = (flags: CliFlags) => {
 *   console.assert(flags.url === undefined || flags.url.startsWith("mine:"));
 *   return Promise.resolve(new WorkerPool());
 * };
 * ```
 */
export interface CliFlags {
  /** `--backend`: the name of the backend in the registry. */
  readonly backend: string;
  /** `--handler`: only this handler name's dead letters. */
  readonly handler?: string | undefined;
  /** `--type`: only events of this type. */
  readonly type?: string | undefined;
  /** `--ref` (repeatable) and the positional arguments: these dead letters. */
  readonly refs: readonly string[];
  /** `--id` (repeatable): the dead letters of these event ids. */
  readonly ids: readonly string[];
  /** `--limit`: at most this many. */
  readonly limit?: number | undefined;
  /** `--json`: one JSON object per line instead of tables. */
  readonly json: boolean;
  /** `--dry-run`: count what replay or purge would do, change nothing. */
  readonly dryRun: boolean;
  /** `--yes`: purge without asking. */
  readonly yes: boolean;
  /** `--servers` (NATS; repeatable or comma-separated). */
  readonly servers: readonly string[];
  /** `--stream` (NATS). */
  readonly stream?: string | undefined;
  /** `--url` (Redis, RabbitMQ). */
  readonly url?: string | undefined;
  /** `--prefix` (Redis). */
  readonly prefix?: string | undefined;
  /** `--exchange` (RabbitMQ). */
  readonly exchange?: string | undefined;
  /** `--brokers` (Kafka; repeatable or comma-separated). */
  readonly brokers: readonly string[];
  /** `--topic` (Kafka). */
  readonly topic?: string | undefined;
  /** `--endpoint` (SQS). */
  readonly endpoint?: string | undefined;
  /** `--region` (SQS). */
  readonly region?: string | undefined;
  /** `--queue-prefix` (SQS). */
  readonly queuePrefix?: string | undefined;
  /** `--port` (dashboard). */
  readonly port?: number | undefined;
  /** `--allow-writes` (dashboard). */
  readonly allowWrites: boolean;
}

/** What the command line asks for. */
export type Parsed =
  | { readonly help: true }
  | {
    readonly help: false;
    readonly command: Command;
    readonly flags: CliFlags;
  };

/** A command line the CLI cannot run; its message says how to fix it. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

const OPTIONS = {
  backend: { type: "string" },
  handler: { type: "string" },
  type: { type: "string" },
  ref: { type: "string", multiple: true },
  id: { type: "string", multiple: true },
  limit: { type: "string" },
  json: { type: "boolean" },
  "dry-run": { type: "boolean" },
  yes: { type: "boolean", short: "y" },
  help: { type: "boolean", short: "h" },
  servers: { type: "string", multiple: true },
  stream: { type: "string" },
  url: { type: "string" },
  prefix: { type: "string" },
  exchange: { type: "string" },
  brokers: { type: "string", multiple: true },
  topic: { type: "string" },
  endpoint: { type: "string" },
  region: { type: "string" },
  "queue-prefix": { type: "string" },
  port: { type: "string" },
  "allow-writes": { type: "boolean" },
} as const;

type FlagName = keyof typeof OPTIONS;

/** The flags each built-in backend reads. */
export const BACKEND_FLAGS: Readonly<Record<string, readonly FlagName[]>> = {
  nats: ["servers", "stream"],
  redis: ["url", "prefix"],
  rabbitmq: ["url", "exchange"],
  kafka: ["brokers", "topic"],
  sqs: ["endpoint", "region", "queue-prefix"],
};

const SELECT: readonly FlagName[] = ["handler", "type", "ref", "id", "limit"];

/** The flags each command reads, besides --backend, the backend's and --help. */
const COMMAND_FLAGS: Readonly<Record<Command, readonly FlagName[]>> = {
  list: [...SELECT, "json"],
  show: ["ref", "id", "json"],
  count: ["handler", "type", "json"],
  replay: [...SELECT, "json", "dry-run"],
  purge: [...SELECT, "json", "dry-run", "yes"],
  dashboard: ["port", "allow-writes"],
};

/** The flags no built-in backend reads: a custom backend may. */
const ALL_BACKEND_FLAGS = new Set(Object.values(BACKEND_FLAGS).flat());

/**
 * Parses a command line: `<command> [refs...] --flag value ...`.
 *
 * @param args The arguments after the program name; a `--` first or
 *   right after the command (as `deno task dlq -- list` and `deno task
 *   dashboard -- --backend nats` pass it) is skipped.
 * @param backends The names `--backend` may take. A name that is not
 *   built in is a backend of the caller's, which may read any backend flag.
 * @throws {UsageError} For an unknown command, flag or backend, a missing
 *   value, a flag the command or the backend would ignore.
 */
export function parseCommandLine(
  args: readonly string[],
  backends: readonly string[],
): Parsed {
  const rest = [...args];
  const dashes = rest.indexOf("--");
  if (
    dashes === 0 ||
    (dashes === 1 && (COMMANDS as readonly string[]).includes(rest[0]!))
  ) rest.splice(dashes, 1);
  // A first pass that accepts anything finds unknown flags by name.
  const { tokens } = parseArgs({
    args: rest,
    options: OPTIONS,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  for (const token of tokens) {
    if (token.kind === "option" && !Object.hasOwn(OPTIONS, token.name)) {
      throw new UsageError(
        `Unknown flag "${token.rawName}": run with --help for the flags`,
      );
    }
  }
  const { values, positionals } = strictParse(rest);
  if (values.help === true || positionals[0] === "help") return { help: true };
  const [name, ...refs] = positionals;
  if (name === undefined) {
    throw new UsageError(
      `Missing command: use one of ${COMMANDS.join(", ")} (or --help)`,
    );
  }
  if (!(COMMANDS as readonly string[]).includes(name)) {
    throw new UsageError(
      `Unknown command "${name}": use one of ${COMMANDS.join(", ")}`,
    );
  }
  const command = name as Command;
  if (refs.length > 0 && !COMMAND_FLAGS[command].includes("ref")) {
    throw new UsageError(
      `Unexpected argument "${refs[0]}": "${command}" takes flags only`,
    );
  }
  const backend = values.backend;
  if (backend === undefined || backend === "") {
    throw new UsageError(
      `Missing --backend: use one of ${
        Object.keys(BACKEND_FLAGS).join(", ")
      }, with its address (for example --backend nats --servers 127.0.0.1:4222)`,
    );
  }
  if (!backends.includes(backend)) {
    throw new UsageError(
      `Unknown backend "${backend}": use one of ${backends.join(", ")}`,
    );
  }
  const given = tokens.flatMap((token) =>
    token.kind === "option" ? [token.name as FlagName] : []
  );
  const own = BACKEND_FLAGS[backend];
  for (const flag of new Set(given)) {
    if (flag === "backend" || flag === "help") continue;
    if (ALL_BACKEND_FLAGS.has(flag)) {
      if (own === undefined) continue; // the caller's backend reads its own
      if (own?.includes(flag) === true) continue;
      const owners = Object.entries(BACKEND_FLAGS)
        .filter(([, flags]) => flags.includes(flag))
        .map(([owner]) => owner);
      throw new UsageError(
        `The flag "--${flag}" is for ${owners.join(" and ")}, not ${backend}${
          own === undefined ? "" : `: ${backend} reads ${list(own)}`
        }`,
      );
    }
    if (!commandsReading(flag).includes(command)) {
      throw new UsageError(
        `The flag "--${flag}" does nothing for "${command}": it is for ${
          commandsReading(flag).join(", ")
        }`,
      );
    }
  }
  return {
    help: false,
    command,
    flags: {
      backend,
      handler: nonEmpty(values.handler, "handler"),
      type: nonEmpty(values.type, "type"),
      refs: [...(values.ref ?? []), ...refs],
      ids: values.id ?? [],
      limit: integer(values.limit, "limit", 1),
      json: values.json === true,
      dryRun: values["dry-run"] === true,
      yes: values.yes === true,
      servers: splitList(values.servers),
      stream: values.stream,
      url: values.url,
      prefix: values.prefix,
      exchange: values.exchange,
      brokers: splitList(values.brokers),
      topic: values.topic,
      endpoint: values.endpoint,
      region: values.region,
      queuePrefix: values["queue-prefix"],
      port: integer(values.port, "port", 0, 65_535),
      allowWrites: values["allow-writes"] === true,
    },
  };
}

/** The usage text of `--help`. */
export const USAGE: string =
  `Work with the dead letters of an @eventbus/core backend.

Usage:
  dlq list      --backend B [backend flags] [--handler H] [--type T] [--ref R]... [--id ID]... [--limit N] [--json]
  dlq show      --backend B [backend flags] (REF | --ref R | --id ID)... [--json]
  dlq count     --backend B [backend flags] [--handler H] [--type T] [--json]
  dlq replay    --backend B [backend flags] [selection] [--dry-run] [--json]
  dlq purge     --backend B [backend flags] [selection] [--dry-run] [--yes] [--json]
  dlq dashboard --backend B [backend flags] [--port N] [--allow-writes]

Selection (replay, purge; every given criterion must match, none selects all):
  --handler H    dead letters of handler name H
  --type T       events of type T
  --ref R        the dead letter R (repeatable; refs may also follow the command)
  --id ID        the dead letters of event id ID (repeatable)
  --limit N      at most N, oldest first

Backends and their flags:
  nats       --servers HOST:PORT (default 127.0.0.1:4222)  --stream NAME (default EVENTS)
  redis      --url redis://HOST:PORT (default redis://127.0.0.1:6379)  --prefix P
  rabbitmq   --url amqp://USER:PASS@HOST:PORT (default amqp://guest:guest@127.0.0.1:5672)  --exchange NAME
  kafka      --brokers HOST:PORT,... (default 127.0.0.1:9092)  --topic NAME
  sqs        --endpoint URL  --region R  --queue-prefix P (credentials: the AWS environment)

Output: tables by default; --json prints one JSON object per line. A dead
letter's fields: ref, event, handler, attempts, reason, error, time.

Exit codes: 0 done, 2 nothing matched, 1 error (bad command line, broker
unreachable, a purge not confirmed).
`;

function strictParse(args: string[]) {
  try {
    return parseArgs({
      args,
      options: OPTIONS,
      strict: true,
      allowPositionals: true,
    });
  } catch (error) {
    // node:util's messages ("Option '--limit <value>' argument missing")
    // name the flag; keep their first sentence.
    throw new UsageError(
      `${
        error instanceof Error ? error.message.split(". ")[0] : String(error)
      }: run with --help for the flags`,
    );
  }
}

function commandsReading(flag: FlagName): Command[] {
  return COMMANDS.filter((command) => COMMAND_FLAGS[command].includes(flag));
}

function list(flags: readonly string[]): string {
  return flags.map((flag) => `--${flag}`).join(", ");
}

function nonEmpty(value: string | undefined, flag: string): string | undefined {
  if (value === "") {
    throw new UsageError(`The flag "--${flag}" needs a value, got ""`);
  }
  return value;
}

function integer(
  value: string | undefined,
  flag: string,
  min: number,
  max: number = Number.MAX_SAFE_INTEGER,
): number | undefined {
  if (value === undefined) return undefined;
  const number = Number(value);
  if (!/^\d+$/.test(value) || number < min || number > max) {
    throw new UsageError(
      `The flag "--${flag}" takes a whole number from ${min} to ${max}, got "${value}"`,
    );
  }
  return number;
}

function splitList(values: readonly string[] | undefined): string[] {
  return (values ?? []).flatMap((value) =>
    value.split(",").map((part) => part.trim()).filter((part) => part !== "")
  );
}
