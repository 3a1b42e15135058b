// Copyright 2026 the @eventbus/core authors. MIT license.
// The backend's link to JetStream: one connection, the event and
// dead-letter streams, and requests that try again until publishTimeout.
// While the connection is down a request waits for the reconnect; a
// reconnect during a request sends it again at once (its reply may be
// lost); a stream that vanished is created again before the next try. The
// backend publishes events through it, and each consumer loop sets up its
// consumer and stores dead letters through it. Publishes go out through one
// Publisher (`_publisher.ts`); while the link is up and the streams exist,
// an event's publish is just that, and only a failed first try enters the
// retry loop.

import {
  jetstream,
  type JetStreamClient,
  type JetStreamManager,
  jetstreamManager,
} from "@nats-io/jetstream";
import type { MsgHdrs, NatsConnection, Status } from "@nats-io/nats-core";
import { BackendError, describeError, QueueFullError } from "@eventbus/core";
import {
  deadline,
  type Resolvers,
  sleep,
  untilDeadline,
  withResolvers,
} from "@eventbus/core/backend-kit";
import type { ResolvedOptions } from "./_options.ts";
import { Publisher } from "./_publisher.ts";
import { ensureStreams } from "./_streams.ts";
import {
  BACKEND,
  Interrupted,
  isClosedConnection,
  isNoResponders,
  isStreamFull,
  isTooLarge,
  isTransient,
  refusedLimit,
} from "./_util.ts";

/** The longest one request waits before it is sent again. */
const REQUEST_TIMEOUT = 5_000;

/** Options of {@linkcode Link.retry}. */
export interface RetryOptions {
  /** What the request does, for its errors: `publish "user.signup" (id "1")`. */
  readonly what: string;
  /** Stops trying, rejecting with its reason; closing the link always does. */
  readonly signal?: AbortSignal | undefined;
}

/** Where a retry loop resumes after a first try made outside it. */
interface Resumed {
  /** When `publishTimeout` passes (`Date.now()` ms). */
  readonly until: number;
  /** What the first try failed with (transient). */
  readonly error: unknown;
  /** Whether to pause before the next try. */
  readonly pause: boolean;
}

/** Options of {@linkcode Link.publish}. */
export interface LinkPublishOptions extends RetryOptions {
  /** Told of every failed try, before the next one. */
  readonly onFailure?: ((error: unknown) => void) | undefined;
}

/** The connection, the streams, and requests that outlast broker restarts. */
export class Link {
  /** The connection; the link never closes it. */
  readonly nc: NatsConnection;
  /** Every backend option, resolved. */
  readonly options: ResolvedOptions;
  /** The JetStream client. */
  readonly js: JetStreamClient;
  /** The JetStream manager, once the client made it. */
  readonly jsm: Promise<JetStreamManager>;
  readonly #reconnected: () => void;
  #streams: Promise<void> | undefined;
  /** Whether `#streams` resolved: publishes skip the wait for it. */
  #streamsReady = false;
  /** Aborted by close(): every request stops trying. */
  #closing = new AbortController();
  #status: AsyncIterable<Status>;
  #disconnected = false;
  /** Resolves at the next reconnect (or close); renewed at each one. */
  #reconnect: Resolvers<void> = withResolvers<void>();
  /** Rejects a request in flight: Interrupted on reconnect, reason on close. */
  #interrupts = new Set<(error: unknown) => void>();
  /** Sends every publish and matches its PubAck. */
  #publisher: Publisher;

  /**
   * Links to JetStream over `nc` and watches its status.
   *
   * @param nc The connection.
   * @param options The resolved backend options.
   * @param reconnected Told when the connection is re-established, after
   *   the requests in flight were sent again.
   */
  constructor(
    nc: NatsConnection,
    options: ResolvedOptions,
    reconnected: () => void,
  ) {
    this.nc = nc;
    this.options = options;
    this.#reconnected = reconnected;
    const timeout = Math.min(REQUEST_TIMEOUT, options.publishTimeout);
    this.js = jetstream(nc, { timeout });
    this.jsm = jetstreamManager(nc, { timeout, checkAPI: false });
    this.jsm.catch(() => {});
    // The first try of a publish waits for its PubAck at most this long,
    // so it cannot outlast publishTimeout either.
    this.#publisher = new Publisher(nc, { timeout });
    this.#status = nc.status();
    this.#watch();
  }

  /** Whether the connection is down (waiting for a reconnect). */
  get disconnected(): boolean {
    return this.#disconnected;
  }

  /**
   * Creates the event and dead-letter streams, or updates them; once per
   * link, and again after a publish found no stream.
   *
   * @throws {BackendError} When a stream cannot be used or set up.
   * @throws The client's error when it is transient.
   */
  ensureStreams(): Promise<void> {
    if (this.#streams === undefined) {
      const pending = this.jsm.then((jsm) => ensureStreams(jsm, this.options));
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
   * Stores a message in the event or dead-letter stream, creating the
   * streams first when needed, and tries again (the headers hold its
   * `Nats-Msg-Id`, so it is stored once) as {@linkcode Link.retry} does.
   *
   * @param subject `<subjectPrefix>.<type>`, or a dead-letter subject.
   * @param body The body.
   * @param headers The headers, `Nats-Msg-Id` included.
   * @param options What it is, the signal, a listener for failed tries.
   * @returns Once the stream stored it (or already had it).
   * @throws {QueueFullError} When the event stream is full.
   * @throws {BackendError} When the stream refused it for another limit, or
   *   as {@linkcode Link.retry} says.
   */
  publish(
    subject: string,
    body: string | Uint8Array,
    headers: MsgHdrs,
    options: LinkPublishOptions,
  ): Promise<void> {
    const { what, onFailure, signal } = options;
    const send = (): Promise<void> => this.#send(subject, body, headers, what);
    const store = (): Promise<void> =>
      this.#streamsReady ? send() : this.ensureStreams().then(send);
    if (
      signal === undefined && onFailure === undefined && this.#streamsReady &&
      !this.#disconnected && !this.#closing.signal.aborted
    ) {
      // The common case: one publish and its PubAck, no retry state unless
      // it fails (the publisher fails it on a reconnect or close).
      const until = Date.now() + this.options.publishTimeout;
      return this.#publisher.send(subject, body, headers).then(
        ignore,
        (error: unknown) => {
          const failure = this.#sendFailed(subject, what, error);
          const stop = this.#closing.signal;
          if (stop.aborted) throw stop.reason;
          const pause = this.#failed(failure, what);
          return this.retry(store, options, { until, error: failure, pause });
        },
      );
    }
    return this.retry(
      onFailure === undefined
        ? store
        : () =>
          store().catch((error: unknown) => {
            onFailure(error);
            throw error;
          }),
      options,
    );
  }

  /**
   * Runs `attempt` until it succeeds, fails for good, `publishTimeout`
   * passes, or the signal (or close()) stops it. While disconnected it
   * waits for the reconnect instead of trying; a reconnect during a try
   * starts the next try at once.
   *
   * @returns What `attempt` resolved with.
   * @throws {BackendError} After `publishTimeout`, on a closed connection,
   *   or when a request failed for a reason that is not transient.
   * @throws {QueueFullError} As `attempt` threw it.
   * @throws The signal's reason when it stopped trying.
   */
  async retry<T>(
    attempt: () => Promise<T>,
    options: RetryOptions,
    resumed?: Resumed,
  ): Promise<T> {
    const { what, signal } = options;
    const stop = signal === undefined
      ? this.#closing.signal
      : AbortSignal.any([signal, this.#closing.signal]);
    const until = resumed?.until ?? Date.now() + this.options.publishTimeout;
    let lastError: unknown = resumed?.error;
    let tries = 0;
    if (resumed !== undefined) {
      tries = 1;
      if (resumed.pause) {
        await sleep(Math.max(0, Math.min(25, until - Date.now())), stop);
      }
    }
    for (;; tries++) {
      stop.throwIfAborted();
      const remaining = until - Date.now();
      if (remaining <= 0) {
        throw new BackendError(
          BACKEND,
          `Cannot ${what}: NATS did not answer within publishTimeout (${this.options.publishTimeout} ms)${
            lastError === undefined
              ? ""
              : `, last error: ${describeError(lastError)}`
          }; check that nats-server runs with JetStream (-js) and is reachable`,
          { cause: lastError },
        );
      }
      if (this.nc.isClosed()) {
        throw new BackendError(
          BACKEND,
          `Cannot ${what}: the NATS connection is closed, open a new connection and backend`,
          { cause: lastError },
        );
      }
      if (this.#disconnected) {
        const wait = deadline(remaining, stop);
        await untilDeadline(this.#reconnect.promise, wait);
        wait[Symbol.dispose]();
        continue;
      }
      // A try may not outlast publishTimeout: a broker that stops
      // answering with the request in flight (killed before the client
      // saw the connection drop, or hung) would hold it for the client's
      // own request timeout.
      const wait = deadline(remaining, stop);
      try {
        const request = this.#interruptible(attempt());
        if (!await untilDeadline(request, wait)) {
          request.catch(() => {});
          stop.throwIfAborted();
          continue; // the next round rejects: publishTimeout passed
        }
        return await request;
      } catch (error) {
        if (stop.aborted) throw stop.reason;
        lastError = error;
        if (this.#failed(error, what)) {
          await sleep(Math.min(25 * 2 ** tries, 1_000, remaining), stop);
        }
      } finally {
        wait[Symbol.dispose]();
      }
    }
  }

  /**
   * Judges a failed try: throws the error the request ends with when
   * trying again cannot help, else returns whether to pause before the next
   * try (not after a reconnect, nor for a closed connection, which the next
   * round reports).
   */
  #failed(error: unknown, what: string): boolean {
    if (error instanceof BackendError || error instanceof QueueFullError) {
      throw error;
    }
    if (isClosedConnection(error)) return false;
    if (!isTransient(error)) {
      throw new BackendError(
        BACKEND,
        `Cannot ${what}: ${
          describeError(error)
        }, check the stream's limits and the server's log`,
        { cause: error, permanent: isTooLarge(error) },
      );
    }
    return !(error instanceof Interrupted);
  }

  /**
   * Stops every request with `reason` and stops watching the connection;
   * leaves the connection open.
   */
  close(reason: unknown): void {
    this.#closing.abort(reason);
    this.#publisher.close(reason);
    for (const interrupt of [...this.#interrupts]) interrupt(reason);
    try {
      (this.#status as { stop?: () => void }).stop?.();
    } catch {
      // already stopped
    }
    this.#reconnect.resolve();
  }

  /** Publishes once; a missing stream is created again on the next try. */
  #send(
    subject: string,
    body: string | Uint8Array,
    headers: MsgHdrs,
    what: string,
  ): Promise<void> {
    return this.#publisher.send(subject, body, headers).then(
      ignore,
      (error: unknown) => {
        throw this.#sendFailed(subject, what, error);
      },
    );
  }

  /**
   * The error a failed publish stands for: a refusal for a limit as
   * {@linkcode QueueFullError} or `BackendError`, else `error` itself. No
   * responders means no stream takes the subject (it may have been
   * deleted, or JetStream restarted without it): the streams are set up
   * again before the next try.
   */
  #sendFailed(subject: string, what: string, error: unknown): unknown {
    if (isNoResponders(error)) {
      this.#streams = undefined;
      this.#streamsReady = false;
    }
    return refusal(subject, what, error, this.options) ?? error;
  }

  /**
   * Settles as `request`, unless the connection is re-established first
   * (the reply may be lost: rejects with Interrupted) or the link closes.
   */
  #interruptible<T>(request: Promise<T>): Promise<T> {
    const { promise, resolve, reject } = withResolvers<T>();
    const interrupt = (error: unknown): void => {
      this.#interrupts.delete(interrupt);
      reject(error);
    };
    this.#interrupts.add(interrupt);
    // A lost race settles nothing: the promise is already settled.
    request.then((value) => {
      this.#interrupts.delete(interrupt);
      resolve(value);
    }, interrupt);
    return promise;
  }

  #watch(): void {
    (async () => {
      for await (const status of this.#status) {
        if (status.type === "disconnect") {
          this.#disconnected = true;
        } else if (status.type === "reconnect") {
          this.#disconnected = false;
          const { resolve } = this.#reconnect;
          this.#reconnect = withResolvers<void>();
          resolve();
          this.#publisher.interrupt(new Interrupted());
          for (const interrupt of [...this.#interrupts]) {
            interrupt(new Interrupted());
          }
          this.#reconnected();
        } else if (status.type === "close") {
          this.#reconnect.resolve();
        }
      }
    })().catch(() => {});
  }
}

/** Resolves a publish with nothing: callers need no PubAck. */
function ignore(): void {}

/**
 * The error of a message a stream refused for one of its limits, or
 * undefined when `error` is no such refusal. A full event stream is a
 * {@linkcode QueueFullError}; a full dead-letter stream, or another limit,
 * a `BackendError`.
 */
function refusal(
  subject: string,
  what: string,
  error: unknown,
  options: ResolvedOptions,
): Error | undefined {
  const answer = refusedLimit(error);
  if (answer === undefined) return undefined;
  if (!isStreamFull(error)) {
    return new BackendError(
      BACKEND,
      `Cannot ${what}: the server refused it for a limit ("${answer}"), check the stream's limits (maxBytes, maxMessages), the server's max_payload and the account's JetStream limits`,
      { cause: error, permanent: isTooLarge(error) },
    );
  }
  const { stream, deadLetterStream, subjectPrefix, maxMessages, maxBytes } =
    options;
  const deadLetters = subject.startsWith(`${deadLetterStream}.`);
  const limits = [
    maxMessages > 0 ? `maxMessages ${maxMessages}` : "",
    maxBytes > 0 ? `maxBytes ${maxBytes}` : "",
  ].filter((x) => x !== "").join(", ");
  const message = `Cannot ${what}: stream "${
    deadLetters ? deadLetterStream : stream
  }" is full (the server answered "${answer}"${
    limits === "" ? "" : `; ${limits}`
  }) and refuses new messages rather than drop stored ones; ${
    deadLetters
      ? "replay or purge dead letters, or raise the stream's limits"
      : `emit again once older events aged out (maxAge ${options.maxAge} ms), or raise the stream's limits`
  }`;
  if (deadLetters) return new BackendError(BACKEND, message, { cause: error });
  return new QueueFullError(
    subject.slice(subjectPrefix.length + 1),
    /bytes/i.test(answer) ? maxBytes : maxMessages,
    { message, cause: error },
  );
}
