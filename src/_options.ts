// Copyright 2026 the @eventbus/core authors. MIT license.
// The option checks every backend makes, worded alike: an option given in
// the wrong argument (a backend option among the client's settings, or a
// client setting among the backend's options) or an unknown one throws a
// TypeError that names where it belongs; a number out of range throws a
// RangeError.

import { isValidEventType } from "./event.ts";

/**
 * A backend's two arguments, as its option checks name them.
 *
 * @example The arguments of a Redis backend
 * ```ts
 * import type { BackendArguments } from "@eventbus/core/backend-kit";
 *
 * const ARGS: BackendArguments = {
 *   broker: "Redis Streams",
 *   connect: "RedisStreamsBackend.connect",
 *   config: "{ url }",
 *   setting: "a Redis client setting",
 *   client: "createClient(config)",
 *   options: new Set(["prefix", "batchSize"]),
 *   settings: new Set(["url", "socket"]),
 * };
 * ```
 */
export interface BackendArguments {
  /** The broker, as in "the Kafka backend". */
  readonly broker: string;
  /** The helper that takes client settings first, such as `"KafkaBackend.connect"`. */
  readonly connect: string;
  /** Its first argument as an example writes it, such as `"{ brokers }"`. */
  readonly config: string;
  /** One client setting with its article, such as `"a kafkajs client setting"`. */
  readonly setting: string;
  /** Where else client settings go, such as `"new Kafka(config)"`. */
  readonly client: string;
  /** The keys of the backend's options. */
  readonly options: ReadonlySet<string>;
  /** Client setting keys to name when one lands among the backend options. */
  readonly settings: ReadonlySet<string>;
}

/**
 * A range for {@linkcode checkInteger}.
 *
 * @example A batch size from 1 to 1000
 * ```ts
 * import type { IntegerRange } from "@eventbus/core/backend-kit";
 *
 * const range: IntegerRange = { min: 1, max: 1000 };
 * ```
 */
export interface IntegerRange {
  /** The smallest value allowed. @default {1} */
  min?: number;
  /** The largest value allowed. @default {Number.MAX_SAFE_INTEGER} */
  max?: number;
  /** Whether `Infinity` is allowed too. @default {false} */
  infinity?: boolean;
}

/**
 * Checks the client settings a `connect()` helper was given: a backend
 * option among them throws a TypeError that names the second argument.
 *
 * @param config The client settings, as the user passed them.
 * @param args How the backend's arguments are named.
 * @throws {TypeError} When a backend option is among the settings.
 *
 * @example A backend option passed as a client setting
 * ```ts
 * import { type BackendArguments, checkClientConfig } from "@eventbus/core/backend-kit";
 *
 * const ARGS: BackendArguments = {
 *   broker: "Redis Streams",
 *   connect: "RedisStreamsBackend.connect",
 *   config: "{ url }",
 *   setting: "a Redis client setting",
 *   client: "createClient(config)",
 *   options: new Set(["prefix", "batchSize"]),
 *   settings: new Set(["url", "socket"]),
 * };
 * checkClientConfig({ url: "redis://127.0.0.1:6379" }, ARGS); // fine
 * let message = "";
 * try {
 *   checkClientConfig({ url: "redis://127.0.0.1:6379", prefix: "app" }, ARGS);
 * } catch (error) {
 *   message = (error as TypeError).message;
 * }
 * console.assert(message.includes('"prefix" is a backend option'));
 * ```
 */
export function checkClientConfig(
  config: unknown,
  args: BackendArguments,
): void {
  if (typeof config !== "object" || config === null) return;
  const misplaced = Object.keys(config).filter((key) => args.options.has(key));
  if (misplaced.length === 0) return;
  const one = misplaced.length === 1;
  throw new TypeError(
    `Cannot connect the ${args.broker} backend: ${quoteList(misplaced)} ${
      one ? "is a backend option" : "are backend options"
    }, not ${one ? args.setting : plural(args.setting)}, pass ${
      one ? "it" : "them"
    } in the second argument: ${args.connect}(${args.config}, { ${
      misplaced.join(", ")
    } })`,
  );
}

/**
 * Checks the keys of a backend's options: a client setting or an unknown
 * key throws a TypeError that says where it belongs.
 *
 * @param options The backend's options, as the user passed them.
 * @param args How the backend's arguments are named.
 * @throws {TypeError} When `options` is no object, or has a client setting
 * or an unknown key.
 *
 * @example An unknown option
 * ```ts
 * import { type BackendArguments, checkBackendOptions } from "@eventbus/core/backend-kit";
 *
 * const ARGS: BackendArguments = {
 *   broker: "Redis Streams",
 *   connect: "RedisStreamsBackend.connect",
 *   config: "{ url }",
 *   setting: "a Redis client setting",
 *   client: "createClient(config)",
 *   options: new Set(["prefix", "batchSize"]),
 *   settings: new Set(["url", "socket"]),
 * };
 * checkBackendOptions({ prefix: "app" }, ARGS); // fine
 * let failed = false;
 * try {
 *   checkBackendOptions({ batchSise: 10 }, ARGS);
 * } catch (error) {
 *   failed = error instanceof TypeError;
 * }
 * console.assert(failed);
 * ```
 */
export function checkBackendOptions(
  options: unknown,
  args: BackendArguments,
): void {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(
      `Cannot create the ${args.broker} backend: options must be an object, got ${
        options === null ? "null" : typeof options
      }`,
    );
  }
  const keys = Object.keys(options).filter((key) => !args.options.has(key));
  const settings = keys.filter((key) => args.settings.has(key));
  if (settings.length > 0) {
    const one = settings.length === 1;
    throw new TypeError(
      `Cannot create the ${args.broker} backend: ${quoteList(settings)} ${
        one ? `is ${args.setting}` : `are ${plural(args.setting)}`
      }, not ${one ? "a backend option" : "backend options"}, pass ${
        one ? "it" : "them"
      } in the first argument: ${args.connect}({ ${
        settings.join(", ")
      } }, options), or to ${args.client}`,
    );
  }
  if (keys.length > 0) {
    throw new TypeError(
      `Cannot create the ${args.broker} backend: unknown option${
        keys.length === 1 ? "" : "s"
      } ${quoteList(keys)}, use one of ${[...args.options].join(", ")}; ${
        plural(args.setting)
      } go in the first argument of ${args.connect}() or to ${args.client}`,
    );
  }
}

/**
 * Throws a RangeError unless `value` is an integer within `range`.
 *
 * @param args How the backend's arguments are named.
 * @param name The option's name, for the message.
 * @param value The option's value.
 * @param range The integers allowed.
 * @throws {RangeError} When `value` is out of range or not an integer.
 *
 * @example Checking a batch size
 * ```ts
 * import { type BackendArguments, checkInteger } from "@eventbus/core/backend-kit";
 *
 * const ARGS: BackendArguments = {
 *   broker: "Redis Streams",
 *   connect: "RedisStreamsBackend.connect",
 *   config: "{ url }",
 *   setting: "a Redis client setting",
 *   client: "createClient(config)",
 *   options: new Set(["prefix", "batchSize"]),
 *   settings: new Set(["url", "socket"]),
 * };
 * checkInteger(ARGS, "batchSize", 10, { max: 1000 }); // fine
 * let failed = false;
 * try {
 *   checkInteger(ARGS, "batchSize", 0, { max: 1000 });
 * } catch (error) {
 *   failed = error instanceof RangeError;
 * }
 * console.assert(failed);
 * ```
 */
export function checkInteger(
  args: BackendArguments,
  name: string,
  value: number,
  range: IntegerRange = {},
): void {
  const { min = 1, max = Number.MAX_SAFE_INTEGER, infinity = false } = range;
  if (infinity && value === Infinity) return;
  if (Number.isInteger(value) && value >= min && value <= max) return;
  const allowed = max === Number.MAX_SAFE_INTEGER
    ? `an integer of at least ${min}`
    : `an integer from ${min} to ${max}`;
  throw new RangeError(
    `Cannot create the ${args.broker} backend: ${name} must be ${allowed}${
      infinity ? " or Infinity" : ""
    }, got ${value}`,
  );
}

/**
 * Throws a RangeError unless `value` is a finite number of at least `min`.
 *
 * @param args How the backend's arguments are named.
 * @param name The option's name, for the message.
 * @param value The option's value.
 * @param min The smallest value allowed.
 * @throws {RangeError} When `value` is below `min` or not finite.
 *
 * @example Checking a poll interval
 * ```ts
 * import { type BackendArguments, checkNumber } from "@eventbus/core/backend-kit";
 *
 * const ARGS: BackendArguments = {
 *   broker: "Redis Streams",
 *   connect: "RedisStreamsBackend.connect",
 *   config: "{ url }",
 *   setting: "a Redis client setting",
 *   client: "createClient(config)",
 *   options: new Set(["prefix", "batchSize"]),
 *   settings: new Set(["url", "socket"]),
 * };
 * checkNumber(ARGS, "pollInterval", 250); // fine
 * let failed = false;
 * try {
 *   checkNumber(ARGS, "pollInterval", NaN);
 * } catch (error) {
 *   failed = error instanceof RangeError;
 * }
 * console.assert(failed);
 * ```
 */
export function checkNumber(
  args: BackendArguments,
  name: string,
  value: number,
  min = 0,
): void {
  if (Number.isFinite(value) && value >= min) return;
  throw new RangeError(
    `Cannot create the ${args.broker} backend: ${name} must be a finite number of at least ${min}, got ${value}`,
  );
}

/**
 * Throws a TypeError unless `value` is a non-empty string.
 *
 * @param args How the backend's arguments are named.
 * @param name The option's name, for the message.
 * @param value The option's value.
 * @throws {TypeError} When `value` is not a non-empty string.
 *
 * @example Checking a prefix
 * ```ts
 * import { type BackendArguments, checkName } from "@eventbus/core/backend-kit";
 *
 * const ARGS: BackendArguments = {
 *   broker: "Redis Streams",
 *   connect: "RedisStreamsBackend.connect",
 *   config: "{ url }",
 *   setting: "a Redis client setting",
 *   client: "createClient(config)",
 *   options: new Set(["prefix", "batchSize"]),
 *   settings: new Set(["url", "socket"]),
 * };
 * checkName(ARGS, "prefix", "app"); // fine
 * let failed = false;
 * try {
 *   checkName(ARGS, "prefix", "");
 * } catch (error) {
 *   failed = error instanceof TypeError;
 * }
 * console.assert(failed);
 * ```
 */
export function checkName(
  args: BackendArguments,
  name: string,
  value: unknown,
): void {
  if (typeof value === "string" && value !== "") return;
  throw new TypeError(
    `Cannot create the ${args.broker} backend: ${name} must be a non-empty string, got ${
      JSON.stringify(value) ?? typeof value
    }`,
  );
}

/**
 * Checks the option `handlers` (handler names to keep events for, by event
 * type) and copies it, without repeated names.
 *
 * @param args How the backend's arguments are named.
 * @param handlers Handler names by event type.
 * @returns A copy, each list without repeated names.
 * @throws {TypeError} When a key is no event type or a list holds no names.
 *
 * @example Handler names to keep events for
 * ```ts
 * import { type BackendArguments, checkHandlers } from "@eventbus/core/backend-kit";
 *
 * const ARGS: BackendArguments = {
 *   broker: "Redis Streams",
 *   connect: "RedisStreamsBackend.connect",
 *   config: "{ url }",
 *   setting: "a Redis client setting",
 *   client: "createClient(config)",
 *   options: new Set(["prefix", "batchSize"]),
 *   settings: new Set(["url", "socket"]),
 * };
 * const handlers = checkHandlers(ARGS, {
 *   "order.placed": ["shipping", "billing", "shipping"],
 * });
 * console.assert(handlers.get("order.placed")?.length === 2);
 * ```
 */
export function checkHandlers(
  args: BackendArguments,
  handlers: Readonly<Record<string, readonly string[]>>,
): ReadonlyMap<string, readonly string[]> {
  if (
    typeof handlers !== "object" || handlers === null || Array.isArray(handlers)
  ) {
    throw new TypeError(
      `Cannot create the ${args.broker} backend: handlers must map event types to arrays of handler names, such as { "order.placed": ["shipping"] }`,
    );
  }
  const map = new Map<string, readonly string[]>();
  for (const [type, names] of Object.entries(handlers)) {
    if (!isValidEventType(type)) {
      throw new TypeError(
        `Cannot create the ${args.broker} backend: handlers has the key ${
          JSON.stringify(type)
        }, which is not a valid event type, use tokens of [A-Za-z0-9_-] joined by "."`,
      );
    }
    if (
      !Array.isArray(names) ||
      !names.every((name) => typeof name === "string" && name !== "")
    ) {
      throw new TypeError(
        `Cannot create the ${args.broker} backend: handlers["${type}"] must be an array of non-empty handler names`,
      );
    }
    map.set(type, [...new Set<string>(names)]);
  }
  return map;
}

/**
 * Names as a message lists them: `"a", "b"`.
 *
 * @param names The names to list.
 * @returns Each name in double quotes, joined by commas.
 *
 * @example Listing unknown options in a message
 * ```ts
 * import { quoteList } from "@eventbus/core/backend-kit";
 *
 * console.assert(quoteList(["a", "b"]) === '"a", "b"');
 * ```
 */
export function quoteList(names: readonly string[]): string {
  return names.map((name) => `"${name}"`).join(", ");
}

/** "a kafkajs client setting" -> "kafkajs client settings". */
function plural(setting: string): string {
  return `${setting.replace(/^an? /, "")}s`;
}
