// Copyright 2026 the @eventbus/core authors. MIT license.
// Creates or updates what the backend keeps on the broker: the event
// stream, the dead-letter stream, the hand-back stream and the durable
// consumer of each handler name; says clearly when one of that name exists
// in a form the backend cannot use, and logs where a new consumer starts.

import {
  AckPolicy,
  type ConsumerConfig,
  type ConsumerInfo,
  DeliverPolicy,
  type JetStreamManager,
  type StreamConfig,
  type StreamInfo,
} from "@nats-io/jetstream";
import { nanos } from "@nats-io/nats-core";
import {
  BackendError,
  type ConsumerSpec,
  describeError,
  type Logger,
} from "@eventbus/core";
import type { ResolvedOptions } from "./_options.ts";
import {
  BACKEND,
  CONSUMER_NOT_FOUND,
  isApiError,
  isClosedConnection,
  isTransient,
  STREAM_NOT_FOUND,
} from "./_util.ts";
import type { StartAt } from "./options.ts";

const STREAM_NAME_IN_USE = 10058;
const SUBJECTS_OVERLAP = 10065;

type Wanted =
  & Pick<
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
  >
  & Partial<Pick<StreamConfig, "max_msgs_per_subject">>;

type Kind = "events" | "dead letters" | "hand-backs";

/** The durable consumer of one handler name. */
export interface DurableConsumer {
  /** The handler name and the event type it consumes. */
  readonly spec: ConsumerSpec;
  /** The consumer's name, made NATS-safe from the handler name. */
  readonly durable: string;
  /** Where its creation is told. */
  readonly logger: Logger;
}

/** What {@linkcode ensureConsumer} found. */
export interface ConsumerState {
  /** Whether it created the consumer (else it existed). */
  readonly created: boolean;
  /** The events the consumer has not delivered yet. */
  readonly pending: number;
}

/** The configuration of the event stream. */
export function eventStreamConfig(options: ResolvedOptions): Wanted {
  return {
    name: options.stream,
    subjects: [`${options.subjectPrefix}.>`],
    // Kept for maxAge whether handled or not: a handler name whose first
    // worker starts after the emit still finds the event (interest
    // retention would have kept it only for consumers that existed).
    retention: "limits",
    storage: "file",
    // A full stream refuses new events (emit rejects at once) instead of
    // dropping stored ones, which some handler name may not have had yet.
    discard: "new",
    ...limits(options, options.maxAge),
  };
}

/**
 * The configuration of the dead-letter stream: dead letters stay until they
 * are purged (no maximum age); when it is full, storing one fails and the
 * event stays in the event stream.
 */
export function deadLetterStreamConfig(options: ResolvedOptions): Wanted {
  return {
    name: options.deadLetterStream,
    subjects: [`${options.deadLetterStream}.>`],
    retention: "limits",
    storage: "file",
    discard: "new",
    ...limits(options, 0),
  };
}

/**
 * The configuration of the hand-back stream: one small record per event a
 * closing worker handed back unstarted, per handler name, on the subject
 * `"<stream>_HANDBACK.<durable>.<sequence>"` (the last one kept), for as
 * long as the event stream keeps the event.
 */
export function handbackStreamConfig(options: ResolvedOptions): Wanted {
  return {
    name: options.handbackStream,
    subjects: [`${options.handbackStream}.>`],
    retention: "limits",
    storage: "file",
    discard: "old",
    max_msgs_per_subject: 1,
    duplicate_window: nanos(window(options.duplicateWindow, options.maxAge)),
    max_age: nanos(options.maxAge),
    max_bytes: -1,
    max_msgs: -1,
    num_replicas: options.replicas,
  };
}

/**
 * Creates the event and dead-letter streams, or updates their limits when
 * they exist.
 *
 * @throws {BackendError} When a stream exists in a form the backend cannot
 *   use, or the server refuses the configuration.
 * @throws The client's error when it is transient (worth another try).
 */
export async function ensureStreams(
  jsm: JetStreamManager,
  options: ResolvedOptions,
): Promise<void> {
  await ensureStream(jsm, eventStreamConfig(options), "events");
  await ensureStream(jsm, deadLetterStreamConfig(options), "dead letters");
}

/**
 * Creates the hand-back stream, or updates it when it exists.
 *
 * @throws {BackendError} When it exists in a form the backend cannot use.
 * @throws The client's error when it is transient (worth another try).
 */
export async function ensureHandbackStream(
  jsm: JetStreamManager,
  options: ResolvedOptions,
): Promise<void> {
  await ensureStream(jsm, handbackStreamConfig(options), "hand-backs");
}

/** The consumer config for a handler. */
export function consumerConfig(
  options: ResolvedOptions,
  spec: ConsumerSpec,
  durable: string,
): Partial<ConsumerConfig> {
  return {
    durable_name: durable,
    ack_policy: AckPolicy.Explicit,
    // Only for a new durable: an existing one resumes where it stopped.
    ...startPolicy(options.startAt),
    filter_subject: `${options.subjectPrefix}.${spec.type}`,
    ack_wait: nanos(options.ackWait),
    // No broker limit: the bus dead-letters a delivery past its attempts
    // (reason "crashed") from the count the consumer loop passes on, so the
    // broker never parks an event before the bus saw it.
    max_deliver: -1,
    max_ack_pending: options.ordered ? 1 : 1000,
  };
}

/**
 * Creates the durable consumer of a handler name, logging where it starts
 * (a warning when it delivers events emitted before it existed); or checks
 * the existing one and updates its limits.
 *
 * @returns Whether it was created, and how many events it has pending.
 * @throws {BackendError} When the consumer exists for another subject or
 *   with another ack policy, or cannot be created.
 * @throws The client's error when it is transient (worth another try).
 */
export async function ensureConsumer(
  jsm: JetStreamManager,
  options: ResolvedOptions,
  consumer: DurableConsumer,
): Promise<ConsumerState> {
  const { spec, durable, logger } = consumer;
  const { stream } = options;
  const wanted = consumerConfig(options, spec, durable);
  let existing: ConsumerInfo | undefined;
  try {
    existing = await jsm.consumers.info(stream, durable);
  } catch (error) {
    if (!isApiError(error, CONSUMER_NOT_FOUND)) {
      throw consumerError(error, consumer, stream);
    }
  }
  try {
    if (existing === undefined) {
      const info = await jsm.consumers.add(stream, wanted);
      const where =
        `Created consumer "${durable}" of stream "${stream}" for handler "${spec.name}" ("${spec.type}")`;
      const { startAt } = options;
      if (startAt === "oldest" && info.num_pending > 0) {
        logger.warn(
          `${where}: it starts at the oldest event the stream keeps, so ${info.num_pending} events emitted before its first worker are delivered now; set the backend option startAt to "now" to skip earlier events`,
          { consumer: durable, pending: info.num_pending },
        );
      } else {
        logger.info(
          `${where}: it starts ${describeStart(startAt)}${
            startAt === "now" ? "" : ` (${info.num_pending} waiting)`
          }`,
          { consumer: durable, pending: info.num_pending },
        );
      }
      return { created: true, pending: info.num_pending };
    }
    const filter = existing.config.filter_subject ?? "";
    if (filter !== wanted.filter_subject) {
      throw new BackendError(
        BACKEND,
        `Cannot consume "${spec.type}" as handler "${spec.name}": consumer "${durable}" of stream "${stream}" exists for subject "${filter}", give the handler another name or delete the consumer`,
      );
    }
    if (existing.config.ack_policy !== AckPolicy.Explicit) {
      throw new BackendError(
        BACKEND,
        `Cannot consume "${spec.type}" as handler "${spec.name}": consumer "${durable}" of stream "${stream}" exists with ack policy "${existing.config.ack_policy}", delete the consumer so it is created with explicit acks`,
      );
    }
    const { config } = existing;
    if (
      config.ack_wait !== wanted.ack_wait ||
      config.max_deliver !== wanted.max_deliver ||
      config.max_ack_pending !== wanted.max_ack_pending
    ) {
      await jsm.consumers.update(stream, durable, {
        ack_wait: wanted.ack_wait!,
        max_deliver: wanted.max_deliver!,
        max_ack_pending: wanted.max_ack_pending!,
      });
    }
    return { created: false, pending: existing.num_pending };
  } catch (error) {
    throw consumerError(error, consumer, stream);
  }
}

async function ensureStream(
  jsm: JetStreamManager,
  wanted: Wanted,
  kind: Kind,
): Promise<void> {
  let lastError: unknown;
  for (let round = 0; round < 3; round++) {
    let info: StreamInfo | undefined;
    try {
      info = await jsm.streams.info(wanted.name);
    } catch (error) {
      if (!isApiError(error, STREAM_NOT_FOUND)) {
        throw streamError(error, wanted);
      }
    }
    try {
      if (info === undefined) {
        await jsm.streams.add(wanted);
        return;
      }
      checkUsable(info.config, wanted, kind);
      if (differs(info.config, wanted)) {
        await jsm.streams.update(wanted.name, {
          ...info.config,
          discard: wanted.discard,
          duplicate_window: wanted.duplicate_window,
          max_age: wanted.max_age,
          max_bytes: wanted.max_bytes,
          max_msgs: wanted.max_msgs,
          num_replicas: wanted.num_replicas,
          ...(wanted.max_msgs_per_subject === undefined
            ? {}
            : { max_msgs_per_subject: wanted.max_msgs_per_subject }),
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
      throw streamError(error, wanted);
    }
  }
  throw streamError(lastError, wanted);
}

function checkUsable(config: StreamConfig, wanted: Wanted, kind: Kind) {
  if (config.retention === "interest" && kind === "events") {
    throw new BackendError(
      BACKEND,
      `Cannot use stream "${wanted.name}": it exists with retention "interest" (made by an earlier version of this backend), which keeps an event only for the handler names that had a consumer when it was emitted, so a handler whose first worker starts later misses it; this backend needs retention "limits", and JetStream cannot change retention in place: let the current workers finish its events, then delete it (nats stream rm ${wanted.name}) so the backend creates it again, or set the backend's stream option to a new name`,
    );
  }
  const problems: string[] = [];
  const subject = wanted.subjects[0]!;
  if (!config.subjects?.includes(subject)) {
    problems.push(
      `subjects ${
        JSON.stringify(config.subjects ?? [])
      } instead of ["${subject}"]`,
    );
  }
  if (config.retention !== wanted.retention) {
    problems.push(
      `retention "${config.retention}" (${
        kind === "events"
          ? "every handler name, including later ones, needs every event"
          : `the ${kind} need it`
      }: use "${wanted.retention}")`,
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
    config.num_replicas !== wanted.num_replicas ||
    (wanted.max_msgs_per_subject !== undefined &&
      config.max_msgs_per_subject !== wanted.max_msgs_per_subject);
}

function limits(options: ResolvedOptions, maxAge: number) {
  return {
    duplicate_window: nanos(window(options.duplicateWindow, maxAge)),
    max_age: nanos(maxAge),
    max_bytes: options.maxBytes,
    max_msgs: options.maxMessages,
    num_replicas: options.replicas,
  };
}

/** JetStream refuses a duplicate window longer than the maximum age. */
function window(duplicateWindow: number, maxAge: number): number {
  return maxAge > 0 ? Math.min(duplicateWindow, maxAge) : duplicateWindow;
}

/** The client's error when it is transient, else a `BackendError`. */
function streamError(error: unknown, wanted: Wanted): unknown {
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

/** The client's error when it is transient, else a `BackendError`. */
function consumerError(
  error: unknown,
  consumer: DurableConsumer,
  stream: string,
): unknown {
  if (error instanceof BackendError || isTransient(error)) return error;
  if (isClosedConnection(error)) return error;
  const { durable, spec } = consumer;
  return new BackendError(
    BACKEND,
    `Cannot create consumer "${durable}" of stream "${stream}" for handler "${spec.name}": ${
      describeError(error)
    }, check the stream and the consumer's configuration`,
    { cause: error },
  );
}

function startPolicy(startAt: StartAt): Partial<ConsumerConfig> {
  if (startAt === "oldest") return { deliver_policy: DeliverPolicy.All };
  if (startAt === "now") return { deliver_policy: DeliverPolicy.New };
  return {
    deliver_policy: DeliverPolicy.StartTime,
    opt_start_time: startAt.toISOString(),
  };
}

function describeStart(startAt: StartAt): string {
  if (startAt === "oldest") return "at the oldest event the stream keeps";
  if (startAt === "now") {
    return `with the events emitted from now on (startAt "now"): earlier ones are skipped`;
  }
  return `at the events stored since ${startAt.toISOString()} (startAt)`;
}
