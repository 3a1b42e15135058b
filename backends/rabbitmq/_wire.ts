// Copyright 2026 the @eventbus/core authors. MIT license.
// What the RabbitMQ backend's files share about the messages on the wire.

import { Buffer } from "node:buffer";
import type { MessageBody } from "rabbitmq-client";

/** The backend's name, in errors. */
export const BACKEND = "rabbitmq";
/** The content type of every event message (CloudEvents, structured). */
export const CONTENT_TYPE = "application/cloudevents+json";

/**
 * The bytes of a message body. The client hands over a string for
 * `text/plain` (messages of older versions) and a parsed value for
 * `application/json`; a Buffer body keeps the content type we set, where a
 * string body would be published as `text/plain`.
 */
export function bufferOf(body: MessageBody): Buffer {
  if (Buffer.isBuffer(body)) return body;
  if (typeof body === "string") return Buffer.from(body);
  if (body instanceof Uint8Array) {
    return Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  }
  return Buffer.from(JSON.stringify(body));
}
