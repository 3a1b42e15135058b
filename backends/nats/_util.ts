// Copyright 2026 the @eventbus/core authors. MIT license.
// Small helpers of the JetStream backend: NATS-safe names, header values,
// which client errors are worth another try, and abortable pauses.

import { JetStreamApiError, JetStreamError } from "@nats-io/jetstream";
import { errors, RequestError } from "@nats-io/nats-core";

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

/**
 * Whether a failed JetStream request may succeed when tried again: timeouts,
 * no responders (JetStream restarting, a stream without a leader), a lost
 * connection, and the server's "temporarily unavailable" answers.
 */
export function isTransient(error: unknown): boolean {
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

/** Resolves after `ms`, or rejects with the signal's reason. */
export function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function fnv1a(text: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0).toString(16).padStart(8, "0");
}
