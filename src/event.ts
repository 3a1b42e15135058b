// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * Events: the CloudEvents 1.0 envelope, event type rules, time-ordered ids,
 * and the JSON wire format every remote backend shares.
 *
 * @module
 */

import { InvalidEventTypeError, SerializationError } from "./errors.ts";

const EVENT_TYPE = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;
const MAX_TYPE_LENGTH = 255;
const MAX_ID_LENGTH = 256;
/** Whitespace or a control character: never in an event id. */
const ID_FORBIDDEN = /[\s\p{Cc}]/u;
const METADATA_KEY = /^[a-z0-9]{1,20}$/;
const RESERVED_ATTRIBUTES: ReadonlySet<string> = new Set([
  "specversion",
  "id",
  "type",
  "source",
  "time",
  "data",
  "data_base64",
  "datacontenttype",
  "dataschema",
  "subject",
]);
const HEX: readonly string[] = Array.from(
  { length: 256 },
  (_, i) => i.toString(16).padStart(2, "0"),
);
const RANDOM_POOL_SIZE = 4096;
const VALID_TYPES_CACHE_SIZE = 1024;

/**
 * An event: a CloudEvents 1.0 envelope around `data`.
 *
 * @typeParam T The payload type.
 * @typeParam K The event type name.
 *
 * @example Reading an event in a handler
 * ```ts
 * import { EventBus, type Event } from "@eventbus/core";
 * const bus = new EventBus<{ "user.signup": { id: string } }>();
 * bus.subscribe("user.signup", (event: Event<{ id: string }, "user.signup">) => {
 *   console.assert(event.specversion === "1.0" && event.data.id === "u1");
 * });
 * await bus.emitSync("user.signup", { id: "u1" });
 * await bus.close();
 * ```
 */
export interface Event<T = unknown, K extends string = string> {
  /** Always `"1.0"` (CloudEvents 1.0). */
  readonly specversion: "1.0";
  /** Unique id; a time-ordered UUID v7 unless given to `emit`. */
  readonly id: string;
  /** The event type, such as `"user.signup"`. */
  readonly type: K;
  /** The emitting bus's `source` option, default `"eventbus"`. */
  readonly source: string;
  /** When the event was created, RFC 3339 in UTC. */
  readonly time: string;
  /** The payload. */
  readonly data: T;
  /**
   * String attributes such as `traceparent` or `partitionkey`. Keys are
   * CloudEvents extension names (`[a-z0-9]{1,20}`), so on the wire each is a
   * top-level attribute of the structured JSON event.
   */
  readonly metadata: Readonly<Record<string, string>>;
}

/**
 * Options of {@linkcode createEvent}.
 *
 * @example Creating an event with a fixed id and source
 * ```ts
 * import { createEvent } from "@eventbus/core";
 * const event = createEvent("user.signup", { id: "u1" }, {
 *   id: "signup-u1",
 *   source: "accounts",
 * });
 * console.assert(event.id === "signup-u1" && event.source === "accounts");
 * ```
 */
export interface CreateEventOptions {
  /**
   * The event id.
   * @default {a new UUID v7}
   */
  id?: string | undefined;
  /**
   * The event source.
   * @default {"eventbus"}
   */
  source?: string | undefined;
  /**
   * Extension attributes; keys must match `[a-z0-9]{1,20}`.
   * @default {{}}
   */
  metadata?: Record<string, string> | undefined;
}

/**
 * Tells whether a value is a valid event type: one or more tokens of
 * `[A-Za-z0-9_-]` joined by `.`, at most 255 characters.
 *
 * @param type Any value.
 * @returns `true` when `type` is a valid event type.
 *
 * @example Checking event types
 * ```ts
 * import { isValidEventType } from "@eventbus/core";
 * console.assert(isValidEventType("user.signup"));
 * console.assert(!isValidEventType("user.*"));
 * ```
 */
export function isValidEventType(type: unknown): type is string {
  if (typeof type !== "string") return false;
  if (validTypes.has(type)) return true;
  if (type.length > MAX_TYPE_LENGTH || !EVENT_TYPE.test(type)) return false;
  if (validTypes.size < VALID_TYPES_CACHE_SIZE) validTypes.add(type);
  return true;
}

/**
 * Throws unless `type` is a valid event type.
 *
 * @param type Any value.
 * @throws {InvalidEventTypeError} When `type` is not a valid event type.
 *
 * @example Validating an event type
 * ```ts
 * import { assertEventType } from "@eventbus/core";
 * assertEventType("order.placed");
 * ```
 */
export function assertEventType(type: unknown): asserts type is string {
  if (!isValidEventType(type)) throw new InvalidEventTypeError(type);
}

/**
 * Creates an event envelope. The type is validated; `data` is not copied.
 *
 * @typeParam T The payload type.
 * @typeParam K The event type name.
 * @param type The event type.
 * @param data The payload.
 * @param options Id, source and metadata.
 * @returns A new event.
 * @throws {InvalidEventTypeError} When `type` is not a valid event type.
 * @throws {TypeError} When `id`, `source` or a metadata entry is not valid.
 *
 * @example Creating an event with metadata
 * ```ts
 * import { createEvent } from "@eventbus/core";
 * const event = createEvent("user.signup", { id: "u1" }, { metadata: { traceparent: "00-1-2-01" } });
 * console.assert(event.type === "user.signup" && event.id.length === 36);
 * ```
 */
export function createEvent<T, K extends string>(
  type: K,
  data: T,
  options?: CreateEventOptions,
): Event<T, K> {
  assertEventType(type);
  return makeEvent(
    type,
    data,
    options?.id,
    options?.source ?? "eventbus",
    options?.metadata,
  );
}

/**
 * {@linkcode createEvent} for a type already validated, without an options
 * object: the bus calls it once per emit. Internal, not re-exported.
 *
 * @throws {TypeError} When `id` or a metadata entry is not valid.
 */
export function makeEvent<T, K extends string>(
  type: K,
  data: T,
  id: string | undefined,
  source: string,
  metadata: Record<string, string> | undefined,
): Event<T, K> {
  const ms = Date.now();
  if (id === undefined) id = nextUuidv7(ms);
  else if (!isValidEventId(id)) {
    throw new TypeError(
      `Cannot create "${type}": an event id is 1 to 256 characters without whitespace or control characters, got ${
        describeId(id)
      }`,
    );
  }
  if (metadata !== undefined) checkMetadata(type, metadata);
  return {
    specversion: "1.0",
    id,
    type,
    source,
    time: timeAt(ms),
    data,
    metadata: metadata === undefined ? EMPTY_METADATA : { ...metadata },
  };
}

/**
 * Returns a new UUID version 7 (RFC 9562): 48 bits of Unix milliseconds, a
 * 12-bit counter that keeps ids from one process strictly increasing, and 62
 * random bits from the platform's CSPRNG (`crypto.randomUUID`).
 *
 * @returns A lowercase UUID string.
 *
 * @example Time-ordered ids
 * ```ts
 * import { uuidv7 } from "@eventbus/core";
 * const a = uuidv7();
 * const b = uuidv7();
 * console.assert(a < b && a[14] === "7");
 * ```
 */
export function uuidv7(): string {
  return nextUuidv7(Date.now());
}

/**
 * Throws unless `data` survives `JSON.stringify` then `JSON.parse` unchanged:
 * only `null`, booleans, finite numbers, strings, arrays without holes or
 * `undefined`, and plain objects, without cycles. Object properties whose
 * value is `undefined` are allowed (JSON drops them, and reading them still
 * gives `undefined`).
 *
 * @param data The payload to check.
 * @param path The name of the root in messages.
 * @throws {SerializationError} Naming the first offending path, such as
 *   `data.user.id`.
 *
 * @example Checking a payload before it crosses the wire
 * ```ts
 * import { assertJsonSafe, SerializationError } from "@eventbus/core";
 * assertJsonSafe({ user: { id: "u1", tags: ["a"] } });
 * try {
 *   assertJsonSafe({ user: { id: 1n } });
 * } catch (error) {
 *   console.assert(error instanceof SerializationError && error.path === "data.user.id");
 * }
 * ```
 */
export function assertJsonSafe(data: unknown, path = "data"): void {
  checkJson(data, path);
}

/**
 * Encodes an event as CloudEvents 1.0 structured JSON: the core attributes,
 * `datacontenttype: "application/json"`, `data` (left out when `undefined`),
 * and each metadata entry as a top-level extension attribute.
 *
 * @param event The event to encode.
 * @returns The JSON text.
 * @throws {SerializationError} When `data` is not JSON-safe.
 *
 * @example Round-tripping an event through JSON
 * ```ts
 * import { createEvent, decodeEvent, encodeEvent } from "@eventbus/core";
 * const event = createEvent("user.signup", { id: "u1" });
 * console.assert(decodeEvent(encodeEvent(event)).id === event.id);
 * ```
 */
export function encodeEvent(event: Event): string {
  assertJsonSafe(event.data);
  const wire: Record<string, unknown> = {
    specversion: "1.0",
    id: event.id,
    type: event.type,
    source: event.source,
    time: event.time,
    datacontenttype: "application/json",
  };
  for (const key in event.metadata) wire[key] = event.metadata[key];
  if (event.data !== undefined) wire.data = event.data;
  return JSON.stringify(wire);
}

/**
 * Decodes a CloudEvents 1.0 structured JSON event, as written by
 * {@linkcode encodeEvent}, and checks its shape.
 *
 * @param input JSON text or its UTF-8 bytes.
 * @returns The event.
 * @throws {SerializationError} When the input is not JSON or not a valid
 *   CloudEvents 1.0 event with a valid event type.
 *
 * @example Rejecting a message that is not an event
 * ```ts
 * import { decodeEvent, SerializationError } from "@eventbus/core";
 * try {
 *   decodeEvent("not json");
 * } catch (error) {
 *   console.assert(error instanceof SerializationError);
 * }
 * ```
 */
export function decodeEvent(input: string | Uint8Array): Event {
  const text = typeof input === "string" ? input : decoder.decode(input);
  let wire: unknown;
  try {
    wire = JSON.parse(text);
  } catch (error) {
    throw new SerializationError(
      `Cannot decode event: the message is not JSON (${
        text.length > 60 ? `${text.slice(0, 60)}...` : text
      }), publish events through an EventBus`,
      { cause: error },
    );
  }
  if (wire === null || typeof wire !== "object" || Array.isArray(wire)) {
    throw notEvent("the message is not a JSON object");
  }
  const w = wire as Record<string, unknown>;
  if (w.specversion !== "1.0") {
    throw notEvent(
      `specversion is ${JSON.stringify(w.specversion)}, not "1.0"`,
    );
  }
  if (!isValidEventId(w.id)) {
    throw notEvent(
      `id ${
        describeId(w.id)
      } is not 1 to 256 characters without whitespace or control characters`,
    );
  }
  for (const attribute of ["source", "time"] as const) {
    if (typeof w[attribute] !== "string" || w[attribute] === "") {
      throw notEvent(`attribute "${attribute}" is missing or not a string`);
    }
  }
  if (!isValidEventType(w.type)) {
    throw notEvent(`type ${JSON.stringify(w.type)} is not a valid event type`);
  }
  const metadata: Record<string, string> = {};
  for (const key in w) {
    if (RESERVED_ATTRIBUTES.has(key)) continue;
    const value = w[key];
    if (typeof value === "string" && METADATA_KEY.test(key)) {
      metadata[key] = value;
    }
  }
  return {
    specversion: "1.0",
    id: w.id as string,
    type: w.type,
    source: w.source as string,
    time: w.time as string,
    data: w.data,
    metadata,
  };
}

const EMPTY_METADATA: Readonly<Record<string, string>> = Object.freeze({});
const decoder = new TextDecoder();
// Read once: on Deno the global `crypto` is a lazy getter, and reading it
// once per event id showed in profiles of emit.
const webCrypto: Crypto = globalThis.crypto;
const randomPool = new Uint8Array(RANDOM_POOL_SIZE);
let randomIndex = RANDOM_POOL_SIZE;
let lastMs = 0;
let counter = 0;
let lastTimeMs = -1;
let lastTime = "";
let prefixMs = -1;
let prefix = "";
const validTypes = new Set<string>();

function randomByte(): number {
  if (randomIndex === RANDOM_POOL_SIZE) {
    webCrypto.getRandomValues(randomPool);
    randomIndex = 0;
  }
  return randomPool[randomIndex++]!;
}

/** The next UUID v7 for the clock reading `ms` (see {@linkcode uuidv7}). */
function nextUuidv7(ms: number): string {
  if (ms > lastMs) {
    lastMs = ms;
    counter = randomByte() << 3; // random start in the lower half of 12 bits
  } else {
    counter++;
    if (counter > 0xfff) {
      lastMs++;
      counter = 0;
    }
    ms = lastMs;
  }
  if (ms !== prefixMs) {
    prefixMs = ms;
    const high = Math.floor(ms / 0x1000000); // top 24 bits of 48
    const low = ms % 0x1000000; // bottom 24 bits
    prefix = HEX[(high >>> 16) & 0xff]! + HEX[(high >>> 8) & 0xff]! +
      HEX[high & 0xff]! + HEX[(low >>> 16) & 0xff]! + "-" +
      HEX[(low >>> 8) & 0xff]! + HEX[low & 0xff]! + "-";
  }
  // "7" + 12-bit counter, then the variant and 62 random bits: a random
  // UUID's "-Vxxx-xxxxxxxxxxxx" tail (V is 8, 9, a or b).
  return prefix + HEX[0x70 | (counter >>> 8)]! + HEX[counter & 0xff]! +
    webCrypto.randomUUID().slice(18);
}

/** RFC 3339 of the clock reading `ms`, computed once per millisecond. */
function timeAt(ms: number): string {
  if (ms !== lastTimeMs) {
    lastTimeMs = ms;
    lastTime = new Date(ms).toISOString();
  }
  return lastTime;
}

function checkMetadata(type: string, metadata: Record<string, string>): void {
  if (metadata === null || typeof metadata !== "object") {
    throw new TypeError(
      `Cannot create "${type}": metadata must be an object of strings`,
    );
  }
  for (const key in metadata) {
    if (!METADATA_KEY.test(key) || RESERVED_ATTRIBUTES.has(key)) {
      throw new TypeError(
        `Cannot create "${type}": metadata key ${
          JSON.stringify(key)
        } is not a CloudEvents extension name, use 1 to 20 characters of [a-z0-9] that are not a core attribute`,
      );
    }
    if (typeof metadata[key] !== "string") {
      throw new TypeError(
        `Cannot create "${type}": metadata "${key}" must be a string, got ${typeof metadata[
          key
        ]}`,
      );
    }
  }
}

function isValidEventId(id: unknown): id is string {
  return typeof id === "string" && id.length > 0 &&
    id.length <= MAX_ID_LENGTH && !ID_FORBIDDEN.test(id);
}

function describeId(id: unknown): string {
  if (typeof id !== "string") return `a value of type ${typeof id}`;
  if (id.length > MAX_ID_LENGTH) return `${id.length} characters`;
  return JSON.stringify(id);
}

/** One object or array being walked by {@linkcode checkJson}. */
interface Frame {
  readonly value: object;
  /** Own enumerable keys of an object; undefined for an array. */
  readonly keys: string[] | undefined;
  /** The next index (array) or key position (object) to visit. */
  index: number;
}

/**
 * Walks `root` without recursion (so any depth JSON can carry is checked),
 * tracking the objects on the current path to find cycles in O(1).
 */
function checkJson(root: unknown, rootPath: string): void {
  const problem = jsonProblem(root, true);
  if (problem === "") return;
  if (problem !== undefined) throw unsafe(rootPath, problem);
  const frames: Frame[] = [];
  const onPath = new Set<object>();
  const enter = (value: object): string | undefined => {
    if (onPath.has(value)) return "the value has a cycle";
    const detail = objectProblem(value);
    if (detail !== undefined) return detail;
    onPath.add(value);
    frames.push({
      value,
      keys: Array.isArray(value) ? undefined : Object.keys(value),
      index: 0,
    });
    return undefined;
  };
  const first = enter(root as object);
  if (first !== undefined) throw unsafe(rootPath, first);
  while (frames.length > 0) {
    const frame = frames[frames.length - 1]!;
    const { value, keys } = frame;
    let child: unknown;
    if (keys === undefined) {
      const array = value as unknown[];
      if (frame.index === array.length) {
        onPath.delete(value);
        frames.pop();
        continue;
      }
      if (!(frame.index in array)) {
        frame.index++;
        throw unsafe(pathOf(rootPath, frames), "arrays with holes become null");
      }
      child = array[frame.index++];
    } else {
      if (frame.index === keys.length) {
        onPath.delete(value);
        frames.pop();
        continue;
      }
      child = (value as Record<string, unknown>)[keys[frame.index++]!];
      if (child === undefined) continue; // JSON drops the property
    }
    const detail = jsonProblem(child, false);
    if (detail === "") continue;
    const failure = detail ?? enter(child as object);
    if (failure !== undefined) throw unsafe(pathOf(rootPath, frames), failure);
  }
}

/**
 * What JSON cannot carry about a value that is not an object: `""` when it
 * is fine, a detail when it is not, `undefined` when it is an object to walk.
 */
function jsonProblem(value: unknown, root: boolean): string | undefined {
  switch (typeof value) {
    case "string":
    case "boolean":
      return "";
    case "number":
      return Number.isFinite(value) ? "" : `the number ${value} is not finite`;
    case "undefined":
      return root ? "" : "undefined in an array becomes null";
    case "bigint":
      return "a bigint has no JSON form, send it as a string";
    case "function":
      return "a function has no JSON form";
    case "symbol":
      return "a symbol has no JSON form";
  }
  return value === null ? "" : undefined;
}

/** What JSON cannot carry about an object itself (not its contents). */
function objectProblem(value: object): string | undefined {
  if (Array.isArray(value)) return undefined;
  const proto = Object.getPrototypeOf(value);
  if (proto === Object.prototype || proto === null) return undefined;
  const name = (value as { constructor?: { name?: string } }).constructor
    ?.name ?? "object";
  return `a ${name} is not a plain object, convert it (a Date to an ISO string, a Map to an object)`;
}

/**
 * The path of the child last taken from the innermost frame: each frame
 * adds `[index]` or `.key` of the child it is visiting.
 */
function pathOf(rootPath: string, frames: readonly Frame[]): string {
  let path = rootPath;
  for (const { keys, index } of frames) {
    path += keys === undefined ? `[${index - 1}]` : `.${keys[index - 1]}`;
  }
  return path;
}

function unsafe(path: string, detail: string): SerializationError {
  const shown = path.length > 200
    ? `${path.slice(0, 80)}...${path.slice(-80)} (${path.length} characters)`
    : path;
  return new SerializationError(
    `Cannot serialize the payload at ${shown}: ${detail}`,
    { path },
  );
}

function notEvent(detail: string): SerializationError {
  return new SerializationError(
    `Cannot decode event: ${detail}, publish events through an EventBus`,
  );
}
