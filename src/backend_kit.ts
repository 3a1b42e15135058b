// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * The toolkit broker backends share, for backend authors: waits a signal
 * can stop, the close sequence's deadline and in-flight tracker, the option
 * checks every backend words alike, a silent logger, a stable name hash and
 * in-memory dead letters. `@eventbus/nats`, `@eventbus/redis`,
 * `@eventbus/rabbitmq`, `@eventbus/kafka` and `@eventbus/sqs` import it, so
 * a helper exists once and its behaviour cannot drift between backends.
 *
 * Applications do not need it: they import a backend package and
 * `@eventbus/core`. It follows the core's version, but its API serves the
 * backends and may change in any 0.x release.
 *
 * @example The close sequence of a backend
 * ```ts
 * import {
 *   ABANDONED,
 *   deadline,
 *   drain,
 *   InFlight,
 * } from "@eventbus/core/backend-kit";
 *
 * const tries = new InFlight();
 * const done = tries.run(async () => ({ status: "completed" as const }), ABANDONED);
 * tries.track(done);
 * using limit = deadline(1000);
 * const settled = await drain([tries], limit, { reason: new Error("closed") });
 * console.assert(settled && (await done).status === "completed");
 * ```
 *
 * @module
 */

export {
  abortable,
  type Deadline,
  deadline,
  nextImmediate,
  type Resolvers,
  sharedTimeout,
  sleep,
  untilDeadline,
  withResolvers,
  withTimeout,
} from "./_async.ts";
export { fnv1a } from "./_hash.ts";
export { ABANDONED, drain, type DrainOptions, InFlight } from "./_inflight.ts";
export { CONSOLE_LOGGER, SILENT_LOGGER } from "./_logger.ts";
export { MemoryDeadLetters, type Replay } from "./_memory_dead_letters.ts";
export {
  type BackendArguments,
  checkBackendOptions,
  checkClientConfig,
  checkHandlers,
  checkInteger,
  checkName,
  checkNumber,
  type IntegerRange,
  quoteList,
} from "./_options.ts";
