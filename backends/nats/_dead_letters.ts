// Copyright 2026 the @eventbus/core authors. MIT license.
// The whole dead-letter path of one message: its copy on
// "<stream>_DLQ.<durable>.<type>" with the failure in headers (a reference
// to the original instead when the copy would not fit the server's
// max_payload), stored with retries until publishTimeout under one message
// id, so it is stored once; then the original is terminated. When the copy
// cannot be stored, the original comes back later instead, and its next
// delivery dead-letters it again without running the handler.

import { headers as createHeaders, type MsgHdrsImpl } from "@nats-io/nats-core";
import {
  type DeadLetterReason,
  describeError,
  type Logger,
} from "@eventbus/core";
import type { Link } from "./_link.ts";
import type { Pulled } from "./_pull.ts";
import { headerValue, MSG_ID } from "./_util.ts";

/** The delay before a message whose dead letter could not be stored returns. */
export const DEAD_LETTER_RETRY_DELAY = 5_000;

/** What the dead-letter copy says about its failure. */
export interface DeadLetter {
  readonly reason: DeadLetterReason;
  readonly error: unknown;
  readonly attempts: number;
  readonly handler: string;
  /** The durable consumer of the handler, in the copy's subject. */
  readonly durable: string;
}

/**
 * Stores the dead-letter copy of `msg`, then terminates it; when the copy
 * cannot be stored, logs why and hands `msg` back for a later delivery.
 * Never rejects.
 *
 * @param link Where the copy is stored.
 * @param msg The message given up on.
 * @param letter Why, after how many tries, for which handler.
 * @param logger Where the waits and failures are told.
 */
export async function deadLetter(
  link: Link,
  msg: Pulled,
  letter: DeadLetter,
  logger: Logger,
): Promise<void> {
  try {
    await store(link, msg, letter, logger);
  } catch (error) {
    logger.error(
      `Cannot store the dead letter of message ${msg.seq} for handler "${letter.handler}": ${
        describeError(error)
      }, it will be delivered again in ${DEAD_LETTER_RETRY_DELAY} ms`,
      { error },
    );
    msg.nak(DEAD_LETTER_RETRY_DELAY);
    return;
  }
  // Plain term(): nats-server 2.9 ignores a term with a reason.
  msg.term();
}

/**
 * Stores the copy, trying again (with the same message id) until
 * `publishTimeout`; a missing dead-letter stream is created again first.
 */
async function store(
  link: Link,
  msg: Pulled,
  letter: DeadLetter,
  logger: Logger,
): Promise<void> {
  const { subjectPrefix, deadLetterStream, publishTimeout } = link.options;
  const type = msg.subject.startsWith(`${subjectPrefix}.`)
    ? msg.subject.slice(subjectPrefix.length + 1)
    : "_unknown";
  const headers = createHeaders();
  for (const [key, values] of msg.headers ?? []) {
    if (key.startsWith("Nats-")) continue;
    for (const value of values) headers.append(key, value);
  }
  headers.set("EventBus-Reason", letter.reason);
  headers.set("EventBus-Error", headerValue(describeError(letter.error)));
  headers.set("EventBus-Attempts", String(letter.attempts));
  headers.set("EventBus-Handler", headerValue(letter.handler));
  headers.set("EventBus-Original-Stream", msg.stream);
  headers.set("EventBus-Original-Subject", msg.subject);
  headers.set("EventBus-Original-Sequence", String(msg.seq));
  headers.set(MSG_ID, `${msg.stream}:${msg.seq}:${letter.durable}`);
  let body: Uint8Array = msg.data;
  const limit = link.nc.info?.max_payload ?? Infinity;
  if ((headers as MsgHdrsImpl).encode().length + body.length > limit) {
    headers.set("EventBus-Body", "reference");
    headers.set("EventBus-Body-Size", String(body.length));
    body = new Uint8Array(0);
    logger.warn(
      `Dead letter of message ${msg.seq} of "${msg.subject}" for handler "${letter.handler}": the event (${msg.data.length} bytes) does not fit the server's max_payload (${limit} bytes) with the dead-letter headers, so the copy in "${deadLetterStream}" refers to it (stream "${msg.stream}", sequence ${msg.seq}) instead, readable while that stream keeps it`,
    );
  }
  let failures = 0;
  await link.publish(
    `${deadLetterStream}.${letter.durable}.${type}`,
    body,
    headers,
    {
      what: `dead-letter message ${msg.seq} of "${msg.subject}"`,
      onFailure: (error) => {
        if (failures++ > 0) return;
        logger.warn(
          `Cannot store the dead letter of message ${msg.seq} of "${msg.subject}" for handler "${letter.handler}" yet: ${
            describeError(error)
          }, trying again for up to ${publishTimeout} ms`,
          { error },
        );
      },
    },
  );
}
