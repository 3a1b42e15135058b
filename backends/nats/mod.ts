// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * The NATS JetStream backend of `@eventbus/core`: async handlers run in
 * worker processes on any number of machines, at least once, with retries,
 * de-duplication by event id and a dead-letter stream.
 *
 * A producer and a worker are the same bus with a {@linkcode JetStreamBackend};
 * the worker subscribes with a stable handler `name` and calls `listen()`.
 * Workers sharing a name share the events; each name gets every event. An
 * accepted event (`emit` resolved) is kept in the stream for `maxAge` (7
 * days by default), so a handler name whose first worker starts after the
 * emit still gets it: start producers and workers in any order. A new
 * handler name starts at the oldest event kept, or where the `startAt`
 * option says.
 *
 * @example Producer and worker
 * ```ts ignore
 * import { EventBus } from "@eventbus/core";
 * import { JetStreamBackend } from "@eventbus/nats";
 *
 * type Events = { "user.signup": { email: string } };
 * const bus = new EventBus<Events>({
 *   backend: await JetStreamBackend.connect({ servers: "127.0.0.1:4222" }),
 * });
 *
 * // In a worker process:
 * bus.subscribe("user.signup", async (event, { signal }) => {
 *   console.log("welcome", event.data.email, signal.aborted);
 * }, { async: true, name: "send-welcome-email" });
 * await bus.listen();
 *
 * // In a producer process: resolves once JetStream stored the event.
 * await bus.emit("user.signup", { email: "ada@example.com" });
 *
 * await bus.close();
 * ```
 *
 * @module
 */

export { JetStreamBackend } from "./backend.ts";
export type { JetStreamBackendOptions, StartAt } from "./options.ts";
