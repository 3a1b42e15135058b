// Copyright 2026 the @eventbus/core authors. MIT license.
// Creates or updates the event stream and the dead-letter stream, and says
// clearly when a stream of that name exists in a form the backend cannot use.

import {
  JetStreamApiError,
  type JetStreamManager,
  type StreamConfig,
  type StreamInfo,
} from "@nats-io/jetstream";
import { nanos } from "@nats-io/nats-core";
import { BackendError, describeError } from "../../src/errors.ts";
import type { ResolvedOptions } from "./_options.ts";
import { isTransient } from "./_util.ts";

const BACKEND = "nats-jetstream";
const STREAM_NOT_FOUND = 10059;
const STREAM_NAME_IN_USE = 10058;
const SUBJECTS_OVERLAP = 10065;

type Wanted = Pick<
  StreamConfig,
  | "name"
  | "subjects"
  | "retention"
  | "storage"
  | "discard"
  | "duplicate_window"
  | "max_age"
  | "max_bytes"
  | "max_msgs"
  | "num_replicas"
>;

/** The configuration of the event stream. */
export function eventStreamConfig(options: ResolvedOptions): Wanted {
  return {
    name: options.stream,
    subjects: [`${options.subjectPrefix}.>`],
    // Kept until every handler name acknowledged it; nothing is kept for
    // event types no handler consumes.
    retention: "interest",
    storage: "file",
    // A full stream refuses new events (emit rejects) instead of dropping
    // accepted ones.
    discard: "new",
    ...limits(options),
  };
}

/** The configuration of the dead-letter stream. */
export function deadLetterStreamConfig(options: ResolvedOptions): Wanted {
  return {
    name: options.deadLetterStream,
    subjects: [`${options.deadLetterStream}.>`],
    retention: "limits",
    storage: "file",
    discard: "old",
    ...limits(options),
  };
}

/**
 * Creates both streams, or updates their limits when they exist.
 *
 * @throws {BackendError} When a stream exists in a form the backend cannot
 *   use, or the server refuses the configuration.
 * @throws The client's error when it is transient (worth another try).
 */
export async function ensureStreams(
  jsm: JetStreamManager,
  options: ResolvedOptions,
): Promise<void> {
  await ensureStream(jsm, eventStreamConfig(options), true);
  await ensureStream(jsm, deadLetterStreamConfig(options), false);
}

async function ensureStream(
  jsm: JetStreamManager,
  wanted: Wanted,
  events: boolean,
): Promise<void> {
  let lastError: unknown;
  for (let round = 0; round < 3; round++) {
    let info: StreamInfo | undefined;
    try {
      info = await jsm.streams.info(wanted.name);
    } catch (error) {
      if (!isApiError(error, STREAM_NOT_FOUND)) throw wrap(error, wanted);
    }
    try {
      if (info === undefined) {
        await jsm.streams.add(wanted);
        return;
      }
      checkUsable(info.config, wanted, events);
      if (differs(info.config, wanted)) {
        await jsm.streams.update(wanted.name, {
          ...info.config,
          discard: wanted.discard,
          duplicate_window: wanted.duplicate_window,
          max_age: wanted.max_age,
          max_bytes: wanted.max_bytes,
          max_msgs: wanted.max_msgs,
          num_replicas: wanted.num_replicas,
        });
      }
      return;
    } catch (error) {
      // Another process created it at the same moment (the server answers
      // "name in use" or "subjects overlap"): look again, then update it.
      if (
        isApiError(error, STREAM_NAME_IN_USE) ||
        isApiError(error, SUBJECTS_OVERLAP)
      ) {
        lastError = error;
        continue;
      }
      throw wrap(error, wanted);
    }
  }
  throw wrap(lastError, wanted);
}

function checkUsable(config: StreamConfig, wanted: Wanted, events: boolean) {
  const problems: string[] = [];
  const subject = wanted.subjects[0]!;
  if (!config.subjects?.includes(subject)) {
    problems.push(
      `subjects ${
        JSON.stringify(config.subjects ?? [])
      } instead of ["${subject}"]`,
    );
  }
  if (events && config.retention === "workqueue") {
    problems.push(
      `retention "workqueue" (every handler name needs every event: use "interest" or "limits")`,
    );
  }
  if (config.storage !== "file") {
    problems.push(
      `storage "${config.storage}" (events must survive a restart)`,
    );
  }
  if (config.no_ack) {
    problems.push("no_ack set (publishes are never acknowledged)");
  }
  if (config.sealed) problems.push("sealed set");
  if (config.mirror) problems.push("a mirror source");
  if (problems.length > 0) {
    throw new BackendError(
      BACKEND,
      `Cannot use stream "${wanted.name}": it exists with ${
        problems.join(", ")
      }, delete the stream or set the backend's stream option to another name`,
    );
  }
}

function differs(config: StreamConfig, wanted: Wanted): boolean {
  return config.discard !== wanted.discard ||
    config.duplicate_window !== wanted.duplicate_window ||
    config.max_age !== wanted.max_age ||
    config.max_bytes !== wanted.max_bytes ||
    config.max_msgs !== wanted.max_msgs ||
    config.num_replicas !== wanted.num_replicas;
}

function limits(options: ResolvedOptions) {
  return {
    duplicate_window: nanos(options.duplicateWindow),
    max_age: nanos(options.maxAge),
    max_bytes: options.maxBytes,
    max_msgs: options.maxMessages,
    num_replicas: options.replicas,
  };
}

function isApiError(error: unknown, code: number): boolean {
  return error instanceof JetStreamApiError && error.code === code;
}

function wrap(error: unknown, wanted: Wanted): unknown {
  if (error instanceof BackendError || isTransient(error)) return error;
  return new BackendError(
    BACKEND,
    `Cannot create or update stream "${wanted.name}" on subjects ${
      JSON.stringify(wanted.subjects)
    }: ${
      describeError(error)
    }, check the stream options (replicas need a cluster; subjects may not overlap another stream)`,
    { cause: error },
  );
}
