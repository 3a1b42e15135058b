// Copyright 2026 the @eventbus/core authors. MIT license.
// JetStreamBackend: publishes events with their CloudEvents headers through
// the link (`_link.ts`), runs one consumer loop per handler name
// (`_consumer.ts`), and closes in order: stop pulling, wait for running
// tries until the timeout, hand back what is left, then drain.

import {
  type ConnectionOptions,
  headers as createHeaders,
  type MsgHdrs,
  MsgHdrsImpl,
  type NatsConnection,
} from "@nats-io/nats-core";
import { connect as connectNode } from "@nats-io/transport-node";
import {
  type AsyncBackend,
  BackendError,
  type BackendTelemetry,
  type CloseOptions,
  type CloseReport,
  type ConsumeOptions,
  type DeadLetters,
  type Deliver,
  describeError,
  encodeEvent,
  type Event,
  EventBusClosedError,
  type PublishOptions,
} from "@eventbus/core";
import {
  deadline,
  SILENT_LOGGER,
  sleep,
  untilDeadline,
  withTimeout,
} from "@eventbus/core/backend-kit";
import { ConsumerLoop } from "./_consumer.ts";
import { JetStreamDeadLetters } from "./_dead_letter_ops.ts";
import { Handbacks } from "./_handback.ts";
import { Link } from "./_link.ts";
import { checkConnectionOptions, resolveOptions } from "./_options.ts";
import { BACKEND, headerValue, MSG_ID } from "./_util.ts";
import type { JetStreamBackendOptions } from "./options.ts";

/** The longest close() waits to hand events back, and to flush or drain. */
const FLUSH_TIMEOUT = 5_000;
const CONTENT_TYPE = "application/cloudevents+json; charset=utf-8";
/** A line break, or white space at either end (which headers trim). */
const NOT_PLAIN = /[\r\n]|^\s|\s$/;

/**
 * An async backend on NATS JetStream. `emit` resolves once the stream
 * acknowledged the event (PubAck); processes that call `listen()` consume
 * it through one durable pull consumer per handler name: workers sharing a
 * name compete for events, different names each get every event.
 *
 * - Accepted: the stream has limits retention and keeps every event for
 *   `maxAge` (7 days by default), handled or not, so each handler name gets
 *   it, including a name whose first worker starts after the emit (it starts
 *   where `startAt` says, `"oldest"` by default, and the backend logs how
 *   many earlier events it gets). A full stream (`maxMessages`, `maxBytes`)
 *   refuses new events at once with `QueueFullError` naming the stream and
 *   the limit; none is dropped for room.
 * - Publish: subject `"<subjectPrefix>.<event type>"`, CloudEvents JSON,
 *   message id = event id, so an event emitted twice within the duplicate
 *   window is stored once. While the broker does not answer it tries again
 *   until `publishTimeout`, then rejects with `BackendError`. Emits share
 *   one reply subscription; those made in one turn of the event loop go
 *   out in one write at its end, at most 4 000 awaiting their PubAck (the
 *   rest wait their turn, within the same `publishTimeout`).
 * - Consume: explicit acks; each consumer pulls as many events as it has
 *   room for and reports every event it holds, waiting or running, as in
 *   progress. A failed try is redelivered after the retry policy's delay;
 *   the attempt is the broker's delivery count less the deliveries handed
 *   back unstarted, so the bus dead-letters a crash loop as `"crashed"`
 *   (there is no `max_deliver` to park it). A dead letter is copied to the
 *   stream `"<stream>_DLQ"` with its reason, error and attempts in headers
 *   (a reference to the original when the copy would not fit), then the
 *   original is terminated; {@linkcode JetStreamBackend.deadLetters}
 *   counts, lists, replays (to the failed handler name only) and purges
 *   them.
 * - Close: stops pulling, lets running tries finish until the timeout, then
 *   aborts them and hands their events back to the broker; events pulled but
 *   not started go back once the last pull request ended (about a second)
 *   and do not count as tries. Another worker of the name gets them within
 *   about 1.5 s; unfinished events never leave the broker, so the report's
 *   `abandoned` is empty.
 *
 * @example Producer and worker (two processes)
 * ```ts ignore
 * import { EventBus } from "@eventbus/core";
 * import { JetStreamBackend } from "@eventbus/nats";
 *
 * type Events = { "user.signup": { email: string } };
 *
 * // producer.ts
 * const producer = new EventBus<Events>({
 *   backend: await JetStreamBackend.connect({ servers: "127.0.0.1:4222" }),
 * });
 * await producer.emit("user.signup", { email: "ada@example.com" });
 * await producer.close();
 *
 * // worker.ts
 * const worker = new EventBus<Events>({
 *   backend: await JetStreamBackend.connect({ servers: "127.0.0.1:4222" }),
 * });
 * worker.subscribe("user.signup", async (event, { signal }) => {
 *   await fetch("https://mail.example/send", { method: "POST", body: event.data.email, signal });
 * }, { async: true, name: "send-welcome-email" });
 * await worker.listen();
 * ```
 *
 * @example With a connection you opened (any transport)
 * ```ts ignore
 * import { EventBus } from "@eventbus/core";
 * import { JetStreamBackend } from "@eventbus/nats";
 * import { connect } from "@nats-io/transport-node";
 *
 * const nc = await connect({
 *   servers: "127.0.0.1:4222",
 *   maxReconnectAttempts: -1, // outlive broker restarts
 *   noAsyncTraces: true, // no stack trace captured per request
 * });
 * const bus = new EventBus({ backend: new JetStreamBackend(nc, { stream: "EVENTS" }) });
 * await bus.emit("user.signup", { email: "ada@example.com" });
 * await bus.close(); // leaves nc open: you opened it
 * await nc.drain();
 * ```
 */
export class JetStreamBackend implements AsyncBackend, AsyncDisposable {
  /** Always `"nats-jetstream"`. */
  readonly name: string = BACKEND;
  /** Always `true`: events cross the wire. */
  readonly remote: boolean = true;
  /** For instrumentation: system `"nats"`, destination the subject. */
  readonly telemetry: BackendTelemetry = {
    system: "nats",
    destination: (type) => `${this.#link.options.subjectPrefix}.${type}`,
  };
  /**
   * The window in which the broker drops a second event with the same id,
   * in ms (the `duplicateWindow` option, default 120 000): a
   * `PostgresOutbox` warns when its lease is not shorter.
   */
  get duplicateWindow(): number {
    return this.#link.options.duplicateWindow;
  }

  #link: Link;
  #owned: boolean;
  #handbacks: Handbacks;
  #loops = new Set<ConsumerLoop>();
  #publishing = new Set<Promise<unknown>>();
  /** Deliveries completed by loops no longer in `#loops`. */
  #completed = 0;
  #closed = false;
  #closing: Promise<CloseReport> | undefined;

  /**
   * The dead letters in `"<stream>_DLQ"`: count, list (oldest first),
   * replay and purge them, from any process that opens a backend on the
   * same stream (listening or not).
   *
   * - `ref` is the dead letter's sequence in `"<stream>_DLQ"`. A dead letter
   *   stored as a reference (an event too large to copy) lists its event
   *   from the original stream while that stream keeps it. A message there
   *   that is not one of our events lists with reason `invalid-event` and
   *   its body (parsed JSON, or text) as `event`.
   * - `replay` publishes the event's bytes unchanged (same id and
   *   `traceparent`) to the subject it was consumed from
   *   (`"<subjectPrefix>.<type>"`) with the header
   *   `EventBus-Target-Handler`: consumers of every other handler name
   *   acknowledge it without running. Its message id is
   *   `"<event id>:replay:<ref>"`, so the duplicate window does not drop it,
   *   and a replay repeated after a crash is stored once. It starts at
   *   attempt 1. The dead letter is deleted after the PubAck. A dead letter
   *   whose event cannot be read (not an event, or a reference whose
   *   original aged out), whose copy would not fit the server's
   *   `max_payload`, or whose handler name has no consumer on the stream
   *   any more stays, and is not counted in `replayed` (a dry run counts
   *   every selected dead letter).
   * - `purge` deletes by subject (a handler's or a type's dead letters) or
   *   by sequence.
   * - None of them creates or updates a stream, so a process that opens
   *   the backend with other options (the CLI) changes no limit.
   *
   * @example Replaying one handler's dead letters
   * ```ts ignore
   * import { JetStreamBackend } from "@eventbus/nats";
   * const backend = await JetStreamBackend.connect({ servers: "127.0.0.1:4222" });
   * for await (const item of backend.deadLetters.list({ handler: "send-welcome-email" })) {
   *   console.log(item.ref, item.event.id, item.attempts, item.error);
   * }
   * const { replayed } = await backend.deadLetters.replay({ handler: "send-welcome-email" });
   * console.log(`replayed ${replayed}`);
   * await backend.close();
   * ```
   */
  readonly deadLetters: DeadLetters;

  /**
   * Creates a backend on a connection you opened; streams and consumers are
   * set up on first use.
   *
   * @param nc An open connection, from any transport. The backend never
   *   closes it; give it `maxReconnectAttempts: -1` so it outlives broker
   *   restarts, and `noAsyncTraces: true` for cheaper requests (nats.js
   *   otherwise captures a stack trace for every request: consumer set-up,
   *   dead letters, hand-backs; `emit` publishes without a request).
   * @param options Stream, subjects, timeouts, ordering and limits.
   * @throws {RangeError} When an option is out of range.
   * @throws {TypeError} When a connection option (such as `servers`) is
   *   among the backend options.
   */
  constructor(nc: NatsConnection, options: JetStreamBackendOptions = {}) {
    this.#link = new Link(nc, resolveOptions(options), () => {
      for (const loop of this.#loops) loop.reconnected();
    });
    this.#owned = false;
    this.#handbacks = new Handbacks(this.#link);
    this.deadLetters = new JetStreamDeadLetters(
      this.#link,
      () => this.#closed,
    );
  }

  /**
   * Opens a TCP connection (`@nats-io/transport-node`, which runs on Deno,
   * Bun and Node) that the backend owns and drains on `close()`. Unless
   * given, `maxReconnectAttempts` is -1: the connection waits for a
   * restarted broker for as long as it takes, and `noAsyncTraces` is true:
   * nats.js then no longer captures a stack trace for every request, which
   * makes each one markedly cheaper (errors keep their type and message,
   * without the caller's stack).
   *
   * @param server Connection options, such as `{ servers: "127.0.0.1:4222" }`.
   * @param options Backend options; `connectTimeout` waits for a server
   *   that is not up yet.
   * @returns A backend that owns its connection.
   * @throws {BackendError} When no server answered within `connectTimeout`.
   * @throws {RangeError} When an option is out of range.
   * @throws {TypeError} When a backend option (such as `stream`) is among the
   *   connection options, or a connection option among the backend options.
   *
   * @example Waiting up to 10 s for the broker at startup
   * ```ts ignore
   * import { JetStreamBackend } from "@eventbus/nats";
   * const backend = await JetStreamBackend.connect(
   *   { servers: ["127.0.0.1:4222"] },
   *   { connectTimeout: 10_000 },
   * );
   * await backend.close();
   * ```
   */
  static async connect(
    server: ConnectionOptions = {},
    options: JetStreamBackendOptions = {},
  ): Promise<JetStreamBackend> {
    checkConnectionOptions(server);
    const { connectTimeout } = resolveOptions(options);
    const until = Date.now() + connectTimeout;
    const settings = {
      maxReconnectAttempts: -1,
      noAsyncTraces: true,
      ...server,
    };
    let tries = 0;
    while (true) {
      try {
        const nc = await connectNode(settings);
        const backend = new JetStreamBackend(nc, options);
        backend.#owned = true;
        return backend;
      } catch (error) {
        const remaining = until - Date.now();
        if (remaining <= 0) {
          throw new BackendError(
            BACKEND,
            `Cannot connect to NATS at ${
              JSON.stringify(server.servers ?? "127.0.0.1:4222")
            }: ${describeError(error)}${
              connectTimeout > 0
                ? ` (kept trying for ${connectTimeout} ms)`
                : ""
            }, start nats-server with JetStream (-js) or set connectTimeout to wait for it`,
            { cause: error },
          );
        }
        await sleep(Math.min(100 * 2 ** tries++, 1_000, remaining));
      }
    }
  }

  /**
   * Publishes one event and resolves once the stream acknowledged it.
   * Creates the streams first if needed. While the connection is down,
   * tries again with the same message id until `publishTimeout`.
   *
   * @param event The event.
   * @param options The signal that stops waiting.
   * @returns Once the stream stored the event (or already had it).
   * @throws {EventBusClosedError} After `close()`.
   * @throws {QueueFullError} When the stream is full (`maxMessages` or
   *   `maxBytes`): at once, naming the stream and the limit.
   * @throws {BackendError} When the stream did not acknowledge the event in
   *   time, refused it, or cannot be set up; an event larger than the
   *   server's `max_payload` or the stream's message size limit is refused
   *   at once with `permanent: true` (no retry of it can succeed).
   * @throws The signal's reason when it aborts first.
   */
  publish(event: Event, options?: PublishOptions): Promise<void> {
    if (this.#closed) {
      return Promise.reject(new EventBusClosedError(event.type));
    }
    const promise = this.#publish(event, options?.signal);
    this.#publishing.add(promise);
    const forget = (): void => void this.#publishing.delete(promise);
    promise.then(forget, forget);
    return promise;
  }

  /**
   * Creates or updates one durable consumer per handler name and starts
   * pulling; resolves once each consumer exists and its first pull request
   * reached the server. Stops them when `signal` aborts.
   *
   * @param deliver Runs one try.
   * @param options The consumers, the signal that stops them, the logger.
   * @returns Once every consumer is pulling.
   * @throws {EventBusClosedError} After `close()`, or when `close()` runs
   *   while the consumers are being set up.
   * @throws {BackendError} When a stream or consumer cannot be set up.
   */
  async consume(deliver: Deliver, options: ConsumeOptions): Promise<void> {
    if (this.#closed) throw new EventBusClosedError();
    const { consumers, signal, logger = SILENT_LOGGER } = options;
    if (signal?.aborted) return;
    let loops: ConsumerLoop[] = [];
    const detach = (): void => {
      for (const loop of loops) {
        loop.stop();
        loop.whenIdle().then(() => {
          if (this.#loops.delete(loop)) this.#completed += loop.completed;
        });
      }
    };
    try {
      await this.#link.retry(() => this.#link.ensureStreams(), {
        what: "set up streams",
      });
      if (this.#closed) throw new EventBusClosedError();
      loops = consumers.map((spec) =>
        new ConsumerLoop(this.#link, this.#handbacks, {
          spec,
          deliver,
          logger,
        })
      );
      for (const loop of loops) this.#loops.add(loop);
      signal?.addEventListener("abort", detach, { once: true });
      await Promise.all(loops.map((loop) => loop.start()));
    } catch (error) {
      signal?.removeEventListener("abort", detach);
      detach();
      if (this.#closed) {
        throw new EventBusClosedError(undefined, { cause: error });
      }
      if (signal?.aborted) return;
      throw error;
    }
    if (this.#closed) {
      detach();
      throw new EventBusClosedError();
    }
  }

  /**
   * Stops pulling, lets running tries finish until `timeout`, then aborts
   * their signals and hands their events back to the broker. Events pulled
   * but not started go back as soon as the last pull request ended (within
   * about 1 s) and do not count as tries; at the timeout, within about 1.5 s.
   * Waits (within the same timeout) for publishes in flight. Drains the
   * connection when the backend owns it. Closing twice returns the same
   * report.
   *
   * @param options Deadline (default 30 000 ms) and signal.
   * @returns Deliveries completed here; `abandoned` is always empty, since
   *   unfinished events stay on the broker.
   */
  close(options?: CloseOptions): Promise<CloseReport> {
    this.#closing ??= this.#close(options);
    return this.#closing;
  }

  /** Closes the backend with the default timeout. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #close(options: CloseOptions | undefined): Promise<CloseReport> {
    const { timeout = 30_000, signal } = options ?? {};
    this.#closed = true;
    const loops = [...this.#loops];
    for (const loop of loops) loop.stop();
    const grace = deadline(timeout, signal);
    await untilDeadline(
      Promise.all([
        ...loops.map((loop) => loop.whenIdle()),
        ...[...this.#publishing].map((p) => p.catch(() => {})),
      ]),
      grace,
    );
    grace[Symbol.dispose]();
    // Hand back what is left (counting the hand-backs) before the
    // connection drains.
    await withTimeout(
      Promise.all(loops.map((loop) => loop.release())),
      FLUSH_TIMEOUT,
    ).catch(() => {});
    this.#link.close(
      new BackendError(
        BACKEND,
        "Cannot publish: the backend closed before NATS acknowledged the event, it may or may not be stored; emit it again with the same id",
      ),
    );
    await this.#closeConnection();
    let completed = this.#completed;
    for (const loop of this.#loops) completed += loop.completed;
    return { completed, abandoned: [] };
  }

  /** Drains an owned connection, flushes a given one; never throws. */
  async #closeConnection(): Promise<void> {
    const { nc, disconnected } = this.#link;
    if (nc.isClosed()) return;
    try {
      if (this.#owned && disconnected) {
        // Nothing can be flushed; the broker redelivers what was unacked.
        await nc.close();
      } else if (this.#owned) {
        const drain = deadline(FLUSH_TIMEOUT);
        const drained = await untilDeadline(nc.drain(), drain);
        drain[Symbol.dispose]();
        if (!drained) await nc.close();
      } else if (!disconnected) {
        await withTimeout(nc.flush(), FLUSH_TIMEOUT).catch(() => {});
      }
    } catch {
      // already closed or draining
    }
  }

  async #publish(event: Event, signal: AbortSignal | undefined): Promise<void> {
    signal?.throwIfAborted();
    const body = encodeEvent(event);
    const subject = `${this.#link.options.subjectPrefix}.${event.type}`;
    await this.#link.publish(subject, body, publishHeaders(event), {
      what: `publish "${event.type}" (id "${event.id}")`,
      signal,
    });
  }
}

/**
 * The headers of one event: the CloudEvents binary-mode attributes, for
 * brokers and tools that route on them without parsing the body, and the
 * message id JetStream de-duplicates by. Built straight from a record: the
 * header object's `set` validates and searches its keys on every call,
 * which cost about a fifth of a publish. Values that `set` would trim or
 * refuse (line breaks) take the checked path, so they fail as before.
 */
function publishHeaders(event: Event): MsgHdrs {
  const { id, type, source, time } = event;
  if (!(plain(id) && plain(type) && plain(source) && plain(time))) {
    const headers = createHeaders();
    headers.set("Content-Type", CONTENT_TYPE);
    headers.set("ce-specversion", "1.0");
    headers.set("ce-id", headerValue(id));
    headers.set("ce-type", type);
    headers.set("ce-source", headerValue(source));
    headers.set("ce-time", time);
    headers.set(MSG_ID, id);
    return headers;
  }
  return MsgHdrsImpl.fromRecord({
    "Content-Type": [CONTENT_TYPE],
    "ce-specversion": ["1.0"],
    "ce-id": [id.length > 1024 ? headerValue(id) : id],
    "ce-type": [type],
    "ce-source": [source.length > 1024 ? headerValue(source) : source],
    "ce-time": [time],
    [MSG_ID]: [id],
  });
}

/** Whether a header value goes on the wire as it is: one line, no edge spaces. */
function plain(value: string): boolean {
  return typeof value === "string" && !NOT_PLAIN.test(value);
}
