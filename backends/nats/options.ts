// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * Options of the NATS JetStream backend.
 *
 * @module
 */

/**
 * Where the durable consumer of a handler name starts when it is created,
 * that is when the first worker of that name calls `listen()`:
 *
 * - `"oldest"`: at the oldest event the stream keeps (within `maxAge`), so
 *   the first worker also gets the events emitted before it existed;
 * - `"now"`: at the events emitted from then on; earlier ones are skipped;
 * - a `Date`: at the events stored since then.
 *
 * A name whose consumer exists resumes where it stopped, whatever this says.
 *
 * @example A new handler name that only wants events from today on
 * ```ts ignore
 * import { JetStreamBackend, type StartAt } from "@eventbus/nats";
 * const startAt: StartAt = new Date(new Date().toDateString());
 * const backend = await JetStreamBackend.connect({ servers: "127.0.0.1:4222" }, { startAt });
 * await backend.close();
 * ```
 */
export type StartAt = "oldest" | "now" | Date;

/**
 * Options of {@linkcode JetStreamBackend}.
 *
 * @example A worker that handles one event at a time, in stream order
 * ```ts ignore
 * import { JetStreamBackend, type JetStreamBackendOptions } from "@eventbus/nats";
 * const options: JetStreamBackendOptions = { stream: "ORDERS", subjectPrefix: "orders", ordered: true };
 * const backend = await JetStreamBackend.connect({ servers: "127.0.0.1:4222" }, options);
 * await backend.close();
 * ```
 */
export interface JetStreamBackendOptions {
  /**
   * The stream that holds the events, created or updated on first use with
   * limits retention: it keeps every event for `maxAge`, whether handled or
   * not, so a handler name whose first worker starts later still gets it.
   * Dead letters go to the stream `"<stream>_DLQ"`, on the subjects
   * `"<stream>_DLQ.<handler>.<event type>"`. The stream
   * `"<stream>_HANDBACK"`, created when first needed, counts the events a
   * closing worker handed back unstarted, so they do not count as tries.
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
   * this, `emit` rejects with `BackendError`, also when the broker stopped
   * answering with the publish in flight (no try outlasts it).
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
   * How many events each consumer keeps waiting in this process for a free
   * handler slot (at least `concurrency`; always 1 when `ordered`). More
   * makes draining a backlog faster (the broker sends them in fewer, larger
   * pulls). A waiting event is reported to the broker as in progress, like
   * a running one, so it is never delivered twice for waiting; a worker that
   * closes hands the waiting events back at once, and they do not count as
   * tries.
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
   * How long the stream keeps each event, handled or not, in ms: the window
   * in which a handler name whose first worker starts later still gets it,
   * and in which an event can be read again. An event no worker of a name
   * took within it is gone for that name. 0 keeps events until `maxBytes`
   * or `maxMessages` is reached.
   * @default {604800000}
   */
  maxAge?: number;
  /**
   * The most bytes the stream holds, handled events included (they stay
   * until `maxAge`); -1 for no limit. When full, `emit` rejects at once with
   * `QueueFullError` naming the stream and the limit (its `queueSize` is
   * this value); no stored event is dropped for room.
   * @default {-1}
   */
  maxBytes?: number;
  /**
   * The most events the stream holds, handled events included (they stay
   * until `maxAge`); -1 for no limit. When full, `emit` rejects at once with
   * `QueueFullError` naming the stream and the limit (its `queueSize` is
   * this value); no stored event is dropped for room.
   * @default {-1}
   */
  maxMessages?: number;
  /**
   * Only for {@linkcode JetStreamBackend.connect}: how long to keep trying
   * when no server answers at startup, in ms; 0 fails at once.
   * @default {0}
   */
  connectTimeout?: number;
  /**
   * Where the consumer of a handler name starts when it is created (its
   * first worker's `listen()`): `"oldest"` delivers every event the stream
   * still keeps, `"now"` only later ones, a `Date` those stored since then.
   * An existing name always resumes where it stopped. The backend logs what
   * a new consumer does: a warning when it will deliver earlier events.
   * @default {"oldest"}
   */
  startAt?: StartAt;
}
