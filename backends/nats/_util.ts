// Copyright 2026 the @eventbus/core authors. MIT license.
// Small helpers of the JetStream backend: its name, NATS-safe names, header
// values, and which client errors are worth another try.

import { JetStreamApiError, JetStreamError } from "@nats-io/jetstream";
import { errors, RequestError } from "@nats-io/nats-core";
import { fnv1a } from "@eventbus/core/backend-kit";

/** The backend's name, in its errors and as `JetStreamBackend.name`. */
export const BACKEND = "nats-jetstream";
/** The header JetStream de-duplicates by (`msgID` of `js.publish`). */
export const MSG_ID = "Nats-Msg-Id";
/**
 * The header of a replayed copy naming the one handler it is for: consumers
 * of every other name acknowledge it without running their handler.
 */
export const TARGET_HANDLER = "EventBus-Target-Handler";
/** JetStream API error codes the backend acts on. */
export const STREAM_NOT_FOUND = 10059;
export const CONSUMER_NOT_FOUND = 10014;

const SAFE_NAME = /^[A-Za-z0-9_-]{1,64}$/;
const UNSAFE_CHARACTER = /[^A-Za-z0-9_-]/g;
const LINE_BREAKS = /[\r\n]+/g;

/**
 * A durable consumer name for a handler name: NATS names may not hold `.`,
 * `*`, `>`, whitespace or path separators. Names that are already safe stay
 * as they are; others get their unsafe characters replaced and a hash of the
 * original appended, so two different handler names never share a consumer.
 */
export function durableName(handler: string): string {
  if (SAFE_NAME.test(handler)) return handler;
  const safe = handler.replace(UNSAFE_CHARACTER, "_").slice(0, 48);
  return `${safe}_${fnv1a(handler)}`;
}

/** A header value: one line, at most `max` characters. */
export function headerValue(value: string, max = 1024): string {
  const line = value.replace(LINE_BREAKS, " ");
  return line.length > max ? `${line.slice(0, max - 3)}...` : line;
}

const STORE_FAILED = 10077;
const MESSAGE_TOO_LARGE = 10054;
const ACCOUNT_RESOURCES_EXCEEDED = 10002;
const INSUFFICIENT_RESOURCES = 10023;
/** The descriptions of JetStream's "store failed" answer for a full stream. */
const STREAM_FULL = /^maximum (messages|bytes|messages per subject) exceeded$/i;

/**
 * The limit a stream refused a message for, as the server named it
 * ("maximum messages exceeded", "message size exceeds maximum allowed",
 * ...), or undefined when the error is not a refusal for a limit. The
 * server answers these with status 503 or 400 and error code 10077 (store
 * failed, whose description names the limit), 10054 (message too large),
 * 10002 or 10023 (account or server resources): trying again does not help.
 */
export function refusedLimit(error: unknown): string | undefined {
  if (!(error instanceof JetStreamApiError)) return undefined;
  switch (error.code) {
    case STORE_FAILED:
      return STREAM_FULL.test(error.message) ||
          /too? large/i.test(error.message)
        ? error.message
        : undefined;
    case MESSAGE_TOO_LARGE:
    case ACCOUNT_RESOURCES_EXCEEDED:
    case INSUFFICIENT_RESOURCES:
      return error.message;
    default:
      return undefined;
  }
}

/**
 * Whether a publish failed because the message is too large for the
 * server's `max_payload` (nats.js refuses it before sending) or for the
 * stream (`maxMsgSize`): no retry of the same event can succeed.
 */
export function isTooLarge(error: unknown): boolean {
  if (error instanceof errors.InvalidArgumentError) {
    return /max_payload/i.test(error.message);
  }
  if (!(error instanceof JetStreamApiError)) return false;
  return error.code === MESSAGE_TOO_LARGE ||
    (error.code === STORE_FAILED && /too? large/i.test(error.message));
}

/** Whether the stream refused a message because it is full. */
export function isStreamFull(error: unknown): boolean {
  return error instanceof JetStreamApiError && error.code === STORE_FAILED &&
    STREAM_FULL.test(error.message);
}

/**
 * Whether a failed JetStream request may succeed when tried again: timeouts,
 * no responders (JetStream restarting, a stream without a leader), a lost
 * connection, and the server's "temporarily unavailable" answers. A stream
 * or account refusing a message for one of its limits is not transient.
 */
export function isTransient(error: unknown): boolean {
  if (refusedLimit(error) !== undefined) return false;
  if (error instanceof errors.TimeoutError) return true;
  if (error instanceof errors.ConnectionError) return true;
  if (error instanceof errors.NoRespondersError) return true;
  if (error instanceof RequestError) {
    return error.isNoResponders() || isTransient(error.cause);
  }
  if (error instanceof Interrupted) return true;
  if (error instanceof JetStreamApiError) {
    return error.status === 503 || error.status === 408 ||
      error.code === 10008; // JetStream system temporarily unavailable
  }
  if (error instanceof JetStreamError) {
    return error.name === "JetStreamNotEnabled" ||
      /not enabled|no responders|timeout|temporarily/i.test(error.message);
  }
  if (error instanceof Error && error.name === "JetStreamNotEnabled") {
    return true;
  }
  return false;
}

/** Whether nothing answered the request: no stream, or JetStream not ready. */
export function isNoResponders(error: unknown): boolean {
  if (error instanceof errors.NoRespondersError) return true;
  if (error instanceof RequestError) return error.isNoResponders();
  return error instanceof Error && error.name === "JetStreamNotEnabled";
}

/** Whether the JetStream API answered with error `code`. */
export function isApiError(error: unknown, code: number): boolean {
  return error instanceof JetStreamApiError && error.code === code;
}

/** Whether the connection is gone for good (closed or draining). */
export function isClosedConnection(error: unknown): boolean {
  return error instanceof errors.ClosedConnectionError ||
    error instanceof errors.DrainingConnectionError;
}

/** The reply of a request was lost to a reconnect; try again. */
export class Interrupted extends Error {
  constructor() {
    super("the connection to the server was re-established during the request");
    this.name = "Interrupted";
  }
}
