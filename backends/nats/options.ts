// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * Options of the NATS JetStream backend.
 *
 * @module
 */

/**
 * Options of {@linkcode JetStreamBackend}.
 *
 * @example A worker that handles one event at a time, in stream order
 * ```ts ignore
 * import { JetStreamBackend, type JetStreamBackendOptions } from "@eventbus/core/nats";
 * const options: JetStreamBackendOptions = { stream: "ORDERS", subjectPrefix: "orders", ordered: true };
 * const backend = await JetStreamBackend.connect({ servers: "127.0.0.1:4222" }, options);
 * await backend.close();
 * ```
 */
export interface JetStreamBackendOptions {
  /**
   * The stream that holds the events, created or updated on first use.
   * Dead letters go to the stream `"<stream>_DLQ"`, on the subjects
   * `"<stream>_DLQ.<handler>.<event type>"`.
   * @default {"EVENTS"}
   */
  stream?: string;
  /**
   * Events are published on the subject `"<subjectPrefix>.<event type>"`;
   * the stream takes `"<subjectPrefix>.>"`.
   * @default {"events"}
   */
  subjectPrefix?: string;
  /**
   * How long `emit` (and `listen` while it sets up its consumers) keeps
   * trying while the broker is unreachable, in ms. Each try re-publishes
   * with the same message id, so the broker stores the event once. After
   * this, `emit` rejects with `BackendError`.
   * @default {30000}
   */
  publishTimeout?: number;
  /**
   * How long the broker waits for an acknowledgement before it redelivers,
   * in ms. A handler running longer than half of it tells the broker it is
   * still working, so long handlers are not redelivered.
   * @default {30000}
   */
  ackWait?: number;
  /**
   * One event in flight per handler name, across every worker process, in
   * stream order: the next event waits until the previous one completed or
   * was dead-lettered (its retries come first).
   * @default {false}
   */
  ordered?: boolean;
  /**
   * How many servers of a JetStream cluster keep each stream. 3 survives
   * losing one server.
   * @default {1}
   */
  replicas?: number;
  /**
   * How many handler calls each consumer runs at once in this process.
   * Always 1 when `ordered`.
   * @default {10}
   */
  concurrency?: number;
  /**
   * How many events each consumer asks the broker for ahead of its free
   * handler slots (at least `concurrency`; always 1 when `ordered`). More
   * makes draining a backlog faster (the broker sends them in fewer, larger
   * pulls), but an event waiting here is not yet reported as in progress:
   * if it waits longer than `ackWait` (about `prefetch / concurrency`
   * handler runs), the broker delivers it once more. For handlers that run
   * for seconds, lower it towards `concurrency` or raise `ackWait`.
   * @default {"max(100, 4 × concurrency), at most 1000"}
   */
  prefetch?: number;
  /**
   * The window in which the broker drops a second event with the same id,
   * in ms.
   * @default {120000}
   */
  duplicateWindow?: number;
  /**
   * The oldest an event may get in the stream before it is removed, in ms;
   * 0 keeps events until every handler name acknowledged them.
   * @default {0}
   */
  maxAge?: number;
  /**
   * The most bytes the stream holds; -1 for no limit. When full, `emit`
   * rejects with `BackendError` instead of dropping older events.
   * @default {-1}
   */
  maxBytes?: number;
  /**
   * The most events the stream holds; -1 for no limit. When full, `emit`
   * rejects with `BackendError` instead of dropping older events.
   * @default {-1}
   */
  maxMessages?: number;
  /**
   * Only for {@linkcode JetStreamBackend.connect}: how long to keep trying
   * when no server answers at startup, in ms; 0 fails at once.
   * @default {0}
   */
  connectTimeout?: number;
}
