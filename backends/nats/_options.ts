// Copyright 2026 the @eventbus/core authors. MIT license.
// Defaults and checks of JetStreamBackendOptions.

import type { JetStreamBackendOptions, StartAt } from "./options.ts";

/** Every option with its default, after checks. */
export interface ResolvedOptions {
  readonly stream: string;
  readonly deadLetterStream: string;
  /** Where hand-backs (events returned unstarted) are counted. */
  readonly handbackStream: string;
  readonly subjectPrefix: string;
  readonly publishTimeout: number;
  readonly ackWait: number;
  readonly ordered: boolean;
  readonly replicas: number;
  readonly concurrency: number;
  /** Events pulled ahead per consumer: at least `concurrency`. */
  readonly prefetch: number;
  readonly duplicateWindow: number;
  readonly maxAge: number;
  readonly maxBytes: number;
  readonly maxMessages: number;
  readonly connectTimeout: number;
  readonly startAt: StartAt;
}

/** Seven days, in ms: the default `maxAge`. */
export const DEFAULT_MAX_AGE = 7 * 24 * 60 * 60 * 1000;

/** Every key of {@linkcode JetStreamBackendOptions}. */
export const BACKEND_OPTION_KEYS: ReadonlySet<string> = new Set([
  "stream",
  "subjectPrefix",
  "publishTimeout",
  "ackWait",
  "ordered",
  "replicas",
  "concurrency",
  "prefetch",
  "duplicateWindow",
  "maxAge",
  "maxBytes",
  "maxMessages",
  "connectTimeout",
  "startAt",
]);

/**
 * Connection options that belong in the first argument of `connect()` (or
 * in the connection given to the constructor), never in backend options.
 */
const CONNECTION_OPTION_KEYS: ReadonlySet<string> = new Set([
  "servers",
  "port",
  "user",
  "pass",
  "token",
  "authenticator",
  "tls",
  "maxReconnectAttempts",
  "reconnectTimeWait",
  "noAsyncTraces",
  "inboxPrefix",
]);

const STREAM_NAME = /^[A-Za-z0-9_-]{1,200}$/;
const SUBJECT_PREFIX = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

/**
 * Fills in defaults and checks every option.
 *
 * @param options The user's options.
 * @returns Every option with its value.
 * @throws {RangeError} When a value is out of range.
 */
export function resolveOptions(
  options: JetStreamBackendOptions = {},
): ResolvedOptions {
  const {
    stream = "EVENTS",
    subjectPrefix = "events",
    publishTimeout = 30_000,
    ackWait = 30_000,
    ordered = false,
    replicas = 1,
    concurrency = 10,
    prefetch,
    duplicateWindow = 120_000,
    maxAge = DEFAULT_MAX_AGE,
    maxBytes = -1,
    maxMessages = -1,
    connectTimeout = 0,
    startAt = "oldest",
  } = options;
  for (const key of Object.keys(options)) {
    if (CONNECTION_OPTION_KEYS.has(key)) {
      throw new TypeError(
        `Cannot create JetStream backend: "${key}" is a connection option, not a backend option; pass it in the first argument: JetStreamBackend.connect({ ${key} }, backendOptions), or open the connection yourself`,
      );
    }
  }
  if (typeof stream !== "string" || !STREAM_NAME.test(stream)) {
    throw new RangeError(
      `Cannot create JetStream backend: stream must be 1 to 200 characters of [A-Za-z0-9_-], got ${
        JSON.stringify(stream)
      }`,
    );
  }
  const deadLetterStream = `${stream}_DLQ`;
  const handbackStream = `${stream}_HANDBACK`;
  if (
    typeof subjectPrefix !== "string" || !SUBJECT_PREFIX.test(subjectPrefix)
  ) {
    throw new RangeError(
      `Cannot create JetStream backend: subjectPrefix must be tokens of [A-Za-z0-9_-] joined by ".", got ${
        JSON.stringify(subjectPrefix)
      }`,
    );
  }
  for (const own of [deadLetterStream, handbackStream]) {
    if (subjectPrefix === own || subjectPrefix.startsWith(`${own}.`)) {
      throw new RangeError(
        `Cannot create JetStream backend: subjectPrefix "${subjectPrefix}" overlaps the subjects "${own}.>" the backend keeps for itself, choose another prefix`,
      );
    }
  }
  positive("publishTimeout", publishTimeout, 1);
  positive("ackWait", ackWait, 100);
  positive("duplicateWindow", duplicateWindow, 100);
  positive("connectTimeout", connectTimeout, 0);
  positive("maxAge", maxAge, 0);
  integer("replicas", replicas, 1, 5);
  integer("concurrency", concurrency, 1, 10_000);
  if (prefetch !== undefined) integer("prefetch", prefetch, 1, 10_000);
  if (maxBytes !== -1) {
    integer("maxBytes", maxBytes, 1, Number.MAX_SAFE_INTEGER);
  }
  if (maxMessages !== -1) {
    integer("maxMessages", maxMessages, 1, Number.MAX_SAFE_INTEGER);
  }
  checkStartAt(startAt);
  return {
    stream,
    deadLetterStream,
    handbackStream,
    subjectPrefix,
    publishTimeout,
    ackWait,
    ordered: ordered === true,
    replicas,
    concurrency: ordered === true ? 1 : concurrency,
    // Ordered: the broker has one event in flight (max_ack_pending 1) anyway.
    prefetch: ordered === true
      ? 1
      : Math.max(concurrency, prefetch ?? defaultPrefetch(concurrency)),
    duplicateWindow,
    maxAge,
    maxBytes,
    maxMessages,
    connectTimeout,
    startAt,
  };
}

/**
 * Rejects backend options given among the connection options of
 * `connect()`, which would otherwise be ignored without a word.
 *
 * @param server The connection options.
 * @throws {TypeError} When one of its keys is a backend option.
 */
export function checkConnectionOptions(server: object): void {
  for (const key of Object.keys(server)) {
    if (BACKEND_OPTION_KEYS.has(key)) {
      throw new TypeError(
        `Cannot connect to NATS: "${key}" is a backend option, not a connection option; pass it in the second argument: JetStreamBackend.connect({ servers }, { ${key} })`,
      );
    }
  }
}

function checkStartAt(startAt: unknown): void {
  if (startAt === "oldest" || startAt === "now") return;
  if (startAt instanceof Date && Number.isFinite(startAt.getTime())) return;
  throw new RangeError(
    `Cannot create JetStream backend: startAt must be "oldest", "now" or a valid Date, got ${
      startAt instanceof Date ? "an invalid Date" : JSON.stringify(startAt)
    }`,
  );
}

/**
 * A pull of 100 events is what nats.js itself asks for by default: pulling
 * only `concurrency` (10) at a time halved a raw consume loop's rate.
 */
function defaultPrefetch(concurrency: number): number {
  return Math.min(1000, Math.max(100, 4 * concurrency));
}

function positive(name: string, value: number, min: number): void {
  if (typeof value !== "number" || !Number.isFinite(value) || value < min) {
    throw new RangeError(
      `Cannot create JetStream backend: ${name} must be a finite number of at least ${min} (ms), got ${value}`,
    );
  }
}

function integer(name: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(
      `Cannot create JetStream backend: ${name} must be an integer from ${min} to ${max}, got ${value}`,
    );
  }
}
