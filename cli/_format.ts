// Copyright 2026 the @eventbus/core authors. MIT license.
// How dead letters are printed: tables for people, one JSON object per line
// for scripts. Every field is read defensively: a dead letter whose body is
// not one of our events (a foreign message on the dead-letter queue) is
// printed with what it has, never crashing the command.

import type { DeadLetter } from "@eventbus/core";

/** The fields of a dead letter in `--json` output, in this order. */
export const JSON_FIELDS = [
  "ref",
  "event",
  "handler",
  "attempts",
  "reason",
  "error",
  "time",
] as const;

const COLUMNS = [
  "REF",
  "TYPE",
  "ID",
  "HANDLER",
  "ATTEMPTS",
  "REASON",
  "ERROR",
  "TIME",
] as const;

const MAX_CELL = 60;

/** One dead letter as one line of JSON, with exactly {@linkcode JSON_FIELDS}. */
export function jsonLine(letter: DeadLetter): string {
  const picked: Record<string, unknown> = {};
  for (const field of JSON_FIELDS) picked[field] = letter[field] ?? null;
  return stringify(picked) ?? stringify({ ...picked, event: null }) ?? "null";
}

/** Dead letters as a table with a header row, columns padded to fit. */
export function table(letters: readonly DeadLetter[]): string {
  const rows = [
    [...COLUMNS],
    ...letters.map((letter) => [
      cell(letter.ref),
      cell(eventField(letter, "type")),
      cell(eventField(letter, "id")),
      cell(letter.handler),
      cell(letter.attempts),
      cell(letter.reason),
      cell(letter.error),
      cell(letter.time),
    ]),
  ];
  const widths = COLUMNS.map((_, column) =>
    Math.max(...rows.map((row) => width(row[column] ?? "")))
  );
  return rows.map((row) =>
    row.map((text, column) =>
      column === row.length - 1
        ? text
        : text + " ".repeat((widths[column] ?? 0) - width(text))
    ).join("  ")
  ).join("\n") + "\n";
}

/** One dead letter in full: its fields, then its event (payload included) as JSON. */
export function details(letter: DeadLetter): string {
  const fields: [string, unknown][] = [
    ["ref", letter.ref],
    ["type", eventField(letter, "type")],
    ["id", eventField(letter, "id")],
    ["handler", letter.handler],
    ["attempts", letter.attempts],
    ["reason", letter.reason],
    ["error", letter.error],
    ["time", letter.time],
  ];
  const lines = fields.map(([name, value]) =>
    `${name.padEnd(9)}${oneLine(value)}`
  );
  lines.push("event", stringify(letter.event ?? null, 2) ?? "(unprintable)");
  return lines.join("\n") + "\n";
}

/** "5 dead letters", "1 dead letter". */
export function plural(count: number, noun = "dead letter"): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

/** The selection in words, for messages: ` (handler "A", type "T")`. */
export function describeSelection(selection: {
  readonly handler?: string | undefined;
  readonly type?: string | undefined;
  readonly refs?: readonly string[] | undefined;
  readonly ids?: readonly string[] | undefined;
  readonly limit?: number | undefined;
}): string {
  const parts: string[] = [];
  if (selection.handler !== undefined) {
    parts.push(`handler ${JSON.stringify(selection.handler)}`);
  }
  if (selection.type !== undefined) {
    parts.push(`type ${JSON.stringify(selection.type)}`);
  }
  if (selection.refs !== undefined && selection.refs.length > 0) {
    parts.push(
      `ref ${selection.refs.map((r) => JSON.stringify(r)).join(", ")}`,
    );
  }
  if (selection.ids !== undefined && selection.ids.length > 0) {
    parts.push(`id ${selection.ids.map((i) => JSON.stringify(i)).join(", ")}`);
  }
  if (selection.limit !== undefined) parts.push(`at most ${selection.limit}`);
  return parts.length === 0 ? "" : ` (${parts.join(", ")})`;
}

/** `event.type` or `event.id` of a dead letter, or "?" when its body is not an event. */
function eventField(letter: DeadLetter, field: "type" | "id"): unknown {
  const event: unknown = letter.event;
  if (typeof event !== "object" || event === null) return "?";
  const value = (event as Record<string, unknown>)[field];
  return value === undefined || value === "" ? "?" : value;
}

function cell(value: unknown): string {
  const text = oneLine(value);
  return text.length > MAX_CELL ? `${text.slice(0, MAX_CELL - 1)}…` : text;
}

/** A value on one line: control characters and line breaks become spaces. */
function oneLine(value: unknown): string {
  const text = typeof value === "string"
    ? value
    : value === undefined || value === null
    ? "?"
    : typeof value === "object"
    ? stringify(value) ?? "?"
    : String(value);
  // deno-lint-ignore no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g, " ");
}

function width(text: string): number {
  return [...text].length;
}

/** JSON text, or undefined for what JSON cannot carry (a cycle). */
function stringify(value: unknown, indent?: number): string | undefined {
  try {
    return JSON.stringify(
      value,
      (_key, v: unknown) => typeof v === "bigint" ? String(v) : v,
      indent,
    );
  } catch {
    return undefined;
  }
}
