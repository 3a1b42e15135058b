// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * The NATS JetStream backend: events cross the wire to worker processes on
 * any number of machines, at least once, with retries and a dead-letter
 * stream.
 *
 * @module
 */

import {
  jetstream,
  type JetStreamClient,
  type JetStreamManager,
  jetstreamManager,
  type JsMsg,
  type PubAck,
} from "@nats-io/jetstream";
import {
  type ConnectionOptions,
  headers as createHeaders,
  type MsgHdrs,
  MsgHdrsImpl,
  type NatsConnection,
  type Status,
} from "@nats-io/nats-core";
import { connect as connectNode } from "@nats-io/transport-node";
import type {
  AsyncBackend,
  CloseOptions,
  CloseReport,
  ConsumeOptions,
  Deliver,
  Logger,
  PublishOptions,
} from "../../src/backend.ts";
import {
  BackendError,
  describeError,
  EventBusClosedError,
} from "../../src/errors.ts";
import { encodeEvent, type Event } from "../../src/event.ts";
import { ConsumerLoop, type DeadLetter } from "./_consumer.ts";
import { type ResolvedOptions, resolveOptions } from "./_options.ts";
import { ensureStreams } from "./_streams.ts";
import {
  durableName,
  headerValue,
  Interrupted,
  isClosedConnection,
  isNoResponders,
  isTransient,
  pause,
} from "./_util.ts";
import type { JetStreamBackendOptions } from "./options.ts";

const BACKEND = "nats-jetstream";
/** The longest one request waits before it is sent again. */
const REQUEST_TIMEOUT = 5_000;
/** The longest close() waits for the connection to flush or drain. */
const FLUSH_TIMEOUT = 5_000;
/** The header JetStream de-duplicates by (`msgID` of `js.publish`). */
const MSG_ID = "Nats-Msg-Id";
const CONTENT_TYPE = "application/cloudevents+json; charset=utf-8";
/** A line break, or white space at either end (which headers trim). */
const NOT_PLAIN = /[\r\n]|^\s|\s$/;
const SILENT_LOGGER: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
};

/**
 * An async backend on NATS JetStream. `emit` resolves once the stream
 * acknowledged the event (PubAck); processes that call `listen()` consume
 * it through one durable pull consumer per handler name: workers sharing a
 * name compete for events, different names each get every event.
 *
 * - Publish: subject `"<subjectPrefix>.<event type>"`, CloudEvents JSON,
 *   message id = event id, so an event emitted twice within the duplicate
 *   window is stored once. While the connection is down it tries again until
 *   `publishTimeout`, then rejects with `BackendError`.
 * - Consume: explicit acks; a failed try is redelivered after the retry
 *   policy's delay (attempt = the broker's delivery count); a long try tells
 *   the broker it is still working; after the last try a copy goes to the
 *   stream `"<stream>_DLQ"` with the error and attempts in headers.
 * - Close: stops fetching, lets running tries finish until the timeout, then
 *   aborts them and hands their events back to the broker, which redelivers
 *   them to the next worker of the name about 2 s later; unfinished events
 *   never leave the broker, so the report's `abandoned` is empty.
 *
 * @example Producer and worker (two processes)
 * ```ts ignore
 * import { EventBus } from "@eventbus/core";
 * import { JetStreamBackend } from "@eventbus/core/nats";
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
 * import { JetStreamBackend } from "@eventbus/core/nats";
 * import { connect } from "@nats-io/transport-node";
 *
 * const nc = await connect({
 *   servers: "127.0.0.1:4222",
 *   maxReconnectAttempts: -1, // outlive broker restarts
 *   noAsyncTraces: true, // no stack trace captured per publish
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

  #nc: NatsConnection;
  #owned: boolean;
  #options: ResolvedOptions;
  #js: JetStreamClient;
  #jsm: Promise<JetStreamManager>;
  #streams: Promise<void> | undefined;
  /** Whether `#streams` resolved: publishes skip the wait for it. */
  #streamsReady = false;
  #loops = new Set<ConsumerLoop>();
  #publishing = new Set<Promise<unknown>>();
  #abort = new AbortController();
  #status: AsyncIterable<Status>;
  #disconnected = false;
  #reconnected!: Promise<void>;
  #onReconnect!: () => void;
  /** Rejects a request in flight: Interrupted on reconnect, reason on close. */
  #interrupts = new Set<(error: unknown) => void>();
  #completed = 0;
  #closed = false;
  #closing: Promise<CloseReport> | undefined;

  /**
   * Creates a backend on a connection you opened; streams and consumers are
   * set up on first use.
   *
   * @param nc An open connection, from any transport. The backend never
   *   closes it; give it `maxReconnectAttempts: -1` so it outlives broker
   *   restarts, and `noAsyncTraces: true` for faster publishes (nats.js
   *   otherwise captures a stack trace for every request).
   * @param options Stream, subjects, timeouts, ordering and limits.
   * @throws {RangeError} When an option is out of range.
   */
  constructor(nc: NatsConnection, options: JetStreamBackendOptions = {}) {
    this.#options = resolveOptions(options);
    this.#nc = nc;
    this.#owned = false;
    const timeout = Math.min(REQUEST_TIMEOUT, this.#options.publishTimeout);
    this.#js = jetstream(nc, { timeout });
    this.#jsm = jetstreamManager(nc, { timeout, checkAPI: false });
    this.#jsm.catch(() => {});
    this.#renewReconnect();
    this.#status = nc.status();
    this.#watch();
  }

  /**
   * Opens a TCP connection (`@nats-io/transport-node`, which runs on Deno,
   * Bun and Node) that the backend owns and drains on `close()`. Unless
   * given, `maxReconnectAttempts` is -1: the connection waits for a
   * restarted broker for as long as it takes, and `noAsyncTraces` is true:
   * nats.js then no longer captures a stack trace for every request, which
   * makes each publish markedly cheaper (errors keep their type and
   * message, without the caller's stack).
   *
   * @param server Connection options, such as `{ servers: "127.0.0.1:4222" }`.
   * @param options Backend options; `connectTimeout` waits for a server
   *   that is not up yet.
   * @returns A backend that owns its connection.
   * @throws {BackendError} When no server answered within `connectTimeout`.
   * @throws {RangeError} When an option is out of range.
   *
   * @example Waiting up to 10 s for the broker at startup
   * ```ts ignore
   * import { JetStreamBackend } from "@eventbus/core/nats";
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
    const { connectTimeout } = resolveOptions(options);
    const deadline = Date.now() + connectTimeout;
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
        const remaining = deadline - Date.now();
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
        await pause(Math.min(100 * 2 ** tries++, 1_000, remaining));
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
   * @throws {BackendError} When the stream did not acknowledge the event in
   *   time, refused it (full, too large), or cannot be set up.
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
   * fetching; resolves once they are ready. Stops them when `signal` aborts.
   *
   * @param deliver Runs one try.
   * @param options The consumers, the signal that stops them, the logger.
   * @returns Once every consumer is fetching.
   * @throws {EventBusClosedError} After `close()`.
   * @throws {BackendError} When a stream or consumer cannot be set up.
   */
  async consume(deliver: Deliver, options: ConsumeOptions): Promise<void> {
    if (this.#closed) throw new EventBusClosedError();
    const { consumers, signal, logger = SILENT_LOGGER } = options;
    if (signal?.aborted) return;
    const deadline = Date.now() + this.#options.publishTimeout;
    await this.#retry(() => this.#ensureStreams(), "set up streams", deadline);
    const jsm = await this.#jsm;
    const loops = consumers.map((spec) =>
      new ConsumerLoop({
        js: this.#js,
        jsm,
        options: this.#options,
        deliver,
        spec,
        durable: durableName(spec.name),
        logger,
        deadLetter: (msg, letter) => this.#deadLetter(msg, letter),
        completed: () => void this.#completed++,
        connectionClosed: () => this.#nc.isClosed(),
        setup: (attempt) =>
          this.#retry(
            attempt,
            `set up consumer for "${spec.name}"`,
            Date.now() + this.#options.publishTimeout,
          ),
      })
    );
    for (const loop of loops) this.#loops.add(loop);
    const detach = (): void => {
      for (const loop of loops) {
        loop.stop();
        loop.whenIdle().then(() => this.#loops.delete(loop));
      }
    };
    signal?.addEventListener("abort", detach, { once: true });
    try {
      await Promise.all(loops.map((loop) => loop.start()));
    } catch (error) {
      signal?.removeEventListener("abort", detach);
      detach();
      throw error;
    }
    if (this.#closed) detach();
  }

  /**
   * Stops fetching, lets running tries finish until `timeout`, then aborts
   * their signals and hands their events back to the broker, which
   * redelivers them about 2 s later (not after the ack wait). Waits (within the same timeout) for publishes in flight.
   * Drains the connection when the backend owns it. Closing twice returns
   * the same report.
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
    const work = Promise.all([
      ...loops.map((loop) => loop.whenIdle()),
      ...[...this.#publishing].map((p) => p.catch(() => {})),
    ]);
    await waitAtMost(work, timeout, signal);
    for (const loop of loops) loop.release();
    this.#abort.abort(
      new BackendError(
        BACKEND,
        "Cannot publish: the backend closed before NATS acknowledged the event, it may or may not be stored; emit it again with the same id",
      ),
    );
    for (const interrupt of [...this.#interrupts]) {
      interrupt(this.#abort.signal.reason);
    }
    stopIterator(this.#status);
    this.#onReconnect();
    if (!this.#nc.isClosed()) {
      try {
        if (this.#owned && this.#disconnected) {
          // Nothing can be flushed; the broker redelivers what was unacked.
          await this.#nc.close();
        } else if (this.#owned) {
          const drained = await waitAtMost(
            this.#nc.drain().then(() => true),
            FLUSH_TIMEOUT,
          );
          if (drained !== true) await this.#nc.close();
        } else if (!this.#disconnected) {
          await waitAtMost(this.#nc.flush(), FLUSH_TIMEOUT);
        }
      } catch {
        // already closed or draining
      }
    }
    return { completed: this.#completed, abandoned: [] };
  }

  async #publish(event: Event, signal: AbortSignal | undefined): Promise<void> {
    signal?.throwIfAborted();
    const body = encodeEvent(event);
    const subject = `${this.#options.subjectPrefix}.${event.type}`;
    const headers = publishHeaders(event);
    const deadline = Date.now() + this.#options.publishTimeout;
    const stop = signal === undefined
      ? this.#abort.signal
      : AbortSignal.any([signal, this.#abort.signal]);
    await this.#retry(
      () =>
        this.#streamsReady
          ? this.#send(subject, body, headers)
          : this.#ensureStreams().then(() =>
            this.#send(subject, body, headers)
          ),
      `publish "${event.type}" (id "${event.id}")`,
      deadline,
      stop,
    );
  }

  /** Publishes with headers that already hold the `Nats-Msg-Id`. */
  async #send(
    subject: string,
    body: string | Uint8Array,
    headers: MsgHdrs,
  ): Promise<PubAck> {
    try {
      return await this.#js.publish(subject, body, {
        headers,
        timeout: REQUEST_TIMEOUT,
      });
    } catch (error) {
      // No stream takes the subject: it may have been deleted, or JetStream
      // restarted without it. Set the streams up again on the next try.
      if (isNoResponders(error)) {
        this.#streams = undefined;
        this.#streamsReady = false;
      }
      throw error;
    }
  }

  async #deadLetter(msg: JsMsg, letter: DeadLetter): Promise<void> {
    const { subjectPrefix, deadLetterStream, publishTimeout } = this.#options;
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
    headers.set("EventBus-Original-Stream", msg.info.stream);
    headers.set("EventBus-Original-Subject", msg.subject);
    headers.set("EventBus-Original-Sequence", String(msg.seq));
    const subject = `${deadLetterStream}.${letter.durable}.${type}`;
    headers.set(MSG_ID, `${msg.info.stream}:${msg.seq}:${letter.durable}`);
    await this.#retry(
      () => this.#send(subject, msg.data, headers),
      `dead-letter message ${msg.seq} of "${msg.subject}"`,
      Date.now() + publishTimeout,
    );
  }

  #ensureStreams(): Promise<void> {
    if (this.#streams === undefined) {
      const pending = this.#jsm.then((jsm) =>
        ensureStreams(jsm, this.#options)
      );
      this.#streams = pending;
      pending.then(() => {
        if (this.#streams === pending) this.#streamsReady = true;
      }, () => {
        if (this.#streams === pending) this.#streams = undefined;
      });
    }
    return this.#streams;
  }

  /**
   * Runs `attempt` until it succeeds, a non-transient error, `deadline`, or
   * `signal`. While disconnected it waits for the reconnect instead of
   * sending; a reconnect during a try starts the next try at once.
   */
  async #retry<T>(
    attempt: () => Promise<T>,
    what: string,
    deadline: number,
    signal: AbortSignal = this.#abort.signal,
  ): Promise<T> {
    let lastError: unknown = undefined;
    for (let tries = 0;; tries++) {
      signal.throwIfAborted();
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new BackendError(
          BACKEND,
          `Cannot ${what}: NATS did not answer within publishTimeout (${this.#options.publishTimeout} ms)${
            lastError === undefined
              ? ""
              : `, last error: ${describeError(lastError)}`
          }; check that nats-server runs with JetStream (-js) and is reachable`,
          { cause: lastError },
        );
      }
      if (this.#nc.isClosed()) {
        throw new BackendError(
          BACKEND,
          `Cannot ${what}: the NATS connection is closed, open a new connection and backend`,
          { cause: lastError },
        );
      }
      if (this.#disconnected) {
        await waitAtMost(this.#reconnected, remaining, signal);
        continue;
      }
      try {
        return await this.#interruptible(attempt(), signal);
      } catch (error) {
        if (signal.aborted) throw signal.reason;
        if (error instanceof BackendError) throw error;
        if (isClosedConnection(error)) {
          lastError = error;
          continue; // reported above on the next round
        }
        if (!isTransient(error)) {
          throw new BackendError(
            BACKEND,
            `Cannot ${what}: ${
              describeError(error)
            }, check the stream's limits and the server's log`,
            { cause: error },
          );
        }
        lastError = error;
        if (!(error instanceof Interrupted)) {
          await pause(
            Math.min(25 * 2 ** tries, 1_000, Math.max(0, remaining)),
            signal,
          ).catch(() => {});
        }
      }
    }
  }

  /**
   * Settles as `request`, unless the connection is re-established first (the
   * reply may be lost: reject with Interrupted) or the signal aborts. One
   * entry in `#interrupts` serves both the reconnect and close(), which
   * aborts the backend's own signal; only a caller's signal gets a listener.
   */
  #interruptible<T>(request: Promise<T>, signal: AbortSignal): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const interrupt = (error: unknown): void => {
        done();
        reject(error);
      };
      const onAbort = signal === this.#abort.signal
        ? undefined
        : (): void => interrupt(signal.reason);
      const done = (): void => {
        this.#interrupts.delete(interrupt);
        if (onAbort !== undefined) {
          signal.removeEventListener("abort", onAbort);
        }
      };
      this.#interrupts.add(interrupt);
      if (onAbort !== undefined) {
        signal.addEventListener("abort", onAbort, { once: true });
      }
      // A lost race settles nothing: the promise is already settled.
      request.then((value) => {
        done();
        resolve(value);
      }, interrupt);
    });
  }

  #renewReconnect(): void {
    // Not Promise.withResolvers: Node 20 lacks it.
    this.#reconnected = new Promise<void>((resolve) => {
      this.#onReconnect = resolve;
    });
  }

  #watch(): void {
    (async () => {
      for await (const status of this.#status) {
        if (status.type === "disconnect") {
          this.#disconnected = true;
        } else if (status.type === "reconnect") {
          this.#disconnected = false;
          const resolve = this.#onReconnect;
          this.#renewReconnect();
          resolve();
          for (const interrupt of [...this.#interrupts]) {
            interrupt(new Interrupted());
          }
        } else if (status.type === "close") {
          this.#onReconnect();
        }
      }
    })().catch(() => {});
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

/** Resolves with the promise's value, or undefined after `ms` or on abort. */
async function waitAtMost<T>(
  promise: Promise<T>,
  ms: number,
  signal?: AbortSignal,
): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let onAbort: (() => void) | undefined;
  const stop = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
    if (signal !== undefined) {
      onAbort = () => resolve(undefined);
      if (signal.aborted) onAbort();
      else signal.addEventListener("abort", onAbort, { once: true });
    }
  });
  try {
    return await Promise.race([promise, stop]);
  } finally {
    clearTimeout(timer);
    if (onAbort !== undefined) signal?.removeEventListener("abort", onAbort);
  }
}

function stopIterator(iterable: AsyncIterable<unknown>): void {
  const stoppable = iterable as { stop?: () => void };
  try {
    stoppable.stop?.();
  } catch {
    // already stopped
  }
}
