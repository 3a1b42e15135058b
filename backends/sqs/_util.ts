// Copyright 2026 the @eventbus/core authors. MIT license.
// What the SQS backend's files share: queue tags, message attribute limits,
// the escaping of text SQS refuses, FIFO ids, copies of message attributes,
// queue names from URLs and the "queue does not exist" test.

import type { MessageAttributeValue } from "@aws-sdk/client-sqs";

/** The tag of a handler queue: the event type it holds. */
export const TYPE_TAG = "eventbus:type";
/** The tag of a dead-letter queue: the handler name whose dead letters it holds. */
export const DEAD_LETTERS_TAG = "eventbus:dead-letters-of";
/** Message attributes per message, SQS's limit. */
export const MAX_ATTRIBUTES = 10;
/**
 * One UTF-16 code unit outside what SQS stores: its allowed set is #x9 | #xA
 * | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF. Surrogates
 * (the halves of #x10000 and up) are matched too: see escapeForSqs().
 */
const OUTSIDE_SQS = /[^\t\n\r\x20-\uD7FF\uE000-\uFFFD]/g;
/** What SQS allows in a FIFO MessageGroupId or MessageDeduplicationId. */
const FIFO_ID = /^[!-~]{1,128}$/;

/**
 * Escapes, as `\uXXXX`, every UTF-16 code unit SQS would refuse in a message
 * body: U+FFFE, U+FFFF, control characters other than tab, line feed and
 * carriage return, lone surrogates, and also both halves of characters
 * from U+10000 up (emoji), which AWS stores but the fauxqs emulator refuses
 * (it checks code units). Applied to JSON text, whose strings are the only
 * place such characters occur, the escapes decode to the same string in
 * every JSON reader; outside JSON (message attributes) they are plain text.
 */
export function escapeForSqs(json: string): string {
  return json.replace(
    OUTSIDE_SQS,
    (unit) => `\\u${unit.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** A String message attribute of any text, escaped where SQS refuses it. */
export function text(value: string): MessageAttributeValue {
  return { DataType: "String", StringValue: escapeForSqs(value) || " " };
}

/**
 * A FIFO MessageGroupId or MessageDeduplicationId for a value: the value
 * when SQS takes it as is (1 to 128 printable ASCII characters), else
 * "sha256:" and the SHA-256 of its JSON form (lone surrogates kept apart),
 * so equal values still group and de-duplicate together.
 */
export async function fifoId(value: string): Promise<string> {
  if (FIFO_ID.test(value)) return value;
  const digest = await crypto.subtle.digest(
    "SHA-256",
    new TextEncoder().encode(JSON.stringify(value)),
  );
  return `sha256:${
    Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0"))
      .join("")
  }`;
}

/**
 * A received message's attributes, fit to send again: data type and value
 * only, none of ours (`eventbus-*`), at most `max` of them.
 */
export function copyAttributes(
  attributes: Record<string, MessageAttributeValue> | undefined,
  max: number,
): Record<string, MessageAttributeValue> {
  const copy: Record<string, MessageAttributeValue> = {};
  let count = 0;
  for (const [name, value] of Object.entries(attributes ?? {})) {
    if (name.startsWith("eventbus-") || count >= max) continue;
    copy[name] = {
      DataType: value.DataType,
      ...(value.StringValue === undefined
        ? {}
        : { StringValue: value.StringValue }),
      ...(value.BinaryValue === undefined
        ? {}
        : { BinaryValue: value.BinaryValue }),
    };
    count++;
  }
  return copy;
}

/** The queue name at the end of a queue URL. */
export function nameOf(url: string): string {
  return url.slice(url.lastIndexOf("/") + 1);
}

/** Whether an SQS error says the queue does not exist. */
export function isMissingQueue(error: unknown): boolean {
  const name = (error as { name?: unknown } | null)?.name;
  return name === "QueueDoesNotExist" ||
    name === "AWS.SimpleQueueService.NonExistentQueue";
}
