// Copyright 2026 the @eventbus/core authors. MIT license.
// JetStream publishes as nats.go's PublishAsync sends them: one reply
// subscription on a wildcard inbox shared by every publish, each PubAck
// matched to its publish by the last token of the reply subject, at most
// a window of publishes in flight (the rest wait in order), and one timer
// that sweeps expired publishes instead of a timer, a request object and a
// promise race per publish. A publish made while none is in flight leaves
// at once; those made while some are go out together at the end of the
// turn of the event loop (setImmediate), in one socket write, as
// nats.go's flusher coalesces them; nats.js alone writes each publish
// awaited in turn on its own. Answers fail as `js.publish` fails: no
// responders, the server's API errors, an invalid ack, a timeout. A reply
// whose publish already expired, or was interrupted, matches nothing and
// is dropped.

import { setImmediate } from "node:timers";
import { JetStreamApiError, JetStreamError } from "@nats-io/jetstream";
import {
  createInbox,
  errors,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  RequestError,
  type Subscription,
} from "@nats-io/nats-core";

/** nats.go's default limit of asynchronous publishes awaiting a PubAck. */
export const MAX_IN_FLIGHT = 4_000;
/** The shortest pause between two sweeps, in ms: expiries are batched. */
const SWEEP_PAUSE = 20;
/** JetStream's API error code for an account without JetStream. */
const NOT_ENABLED_FOR_ACCOUNT = 10039;
const decoder = new TextDecoder();

/** What the stream answered to a publish (nats.js `PubAck`). */
export interface PubAck {
  /** The stream that stored the message. */
  readonly stream: string;
  /** Its sequence in the stream. */
  readonly seq: number;
  /** Whether the stream already had a message with its `Nats-Msg-Id`. */
  readonly duplicate: boolean;
}

/** Options of {@linkcode Publisher}. */
export interface PublisherOptions {
  /** How long a publish waits for its PubAck, in ms, queued time included. */
  readonly timeout: number;
  /** The most publishes awaiting a PubAck at once. @default {MAX_IN_FLIGHT} */
  readonly window?: number | undefined;
}

/**
 * The error of a publish nothing answered, as `js.publish` throws it: no
 * stream takes the subject, or JetStream is not ready.
 */
export class JetStreamNotEnabled extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "JetStreamNotEnabled";
  }
}

/** One publish: queued until the window has room, then in flight. */
interface Entry {
  readonly token: string;
  readonly subject: string;
  readonly body: string | Uint8Array;
  readonly headers: MsgHdrs;
  /** When it fails with a timeout (`Date.now()` ms). */
  readonly expires: number;
  readonly resolve: (ack: PubAck) => void;
  readonly reject: (error: unknown) => void;
  /** Sent and awaiting its PubAck (counted in the window). */
  sent: boolean;
}

/**
 * Publishes to JetStream with a shared reply subscription, a bounded window
 * and one deadline sweep. Does not try again: its caller does.
 */
export class Publisher {
  readonly #nc: NatsConnection;
  readonly #timeout: number;
  readonly #window: number;
  /** The reply subjects' common part, `"_INBOX.<nuid>."`. */
  readonly #inbox: string;
  #subscription: Subscription | undefined;
  /** Every publish not settled yet, by token, oldest (first to expire) first. */
  readonly #entries = new Map<string, Entry>();
  /** Publishes waiting for room in the window, oldest first, from `#head`. */
  #queue: Entry[] = [];
  #head = 0;
  #inFlight = 0;
  #counter = 0;
  #sweep: ReturnType<typeof setTimeout> | undefined;
  /** Whether a flush of the queue is scheduled. */
  #flushing = false;
  #closed: unknown = undefined;
  #isClosed = false;

  /**
   * @param nc The connection; the publisher subscribes on it at the first
   *   publish and never closes it.
   * @param options The PubAck timeout and the window.
   */
  constructor(nc: NatsConnection, options: PublisherOptions) {
    this.#nc = nc;
    this.#timeout = options.timeout;
    this.#window = options.window ?? MAX_IN_FLIGHT;
    const prefix = (nc as { options?: { inboxPrefix?: string } }).options
      ?.inboxPrefix;
    this.#inbox = `${createInbox(prefix)}.`;
  }

  /** How many publishes await a PubAck. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** How many publishes are not settled yet, queued or in flight. */
  get pending(): number {
    return this.#entries.size;
  }

  /**
   * Publishes one message and resolves with the stream's PubAck.
   *
   * @param subject The subject a stream takes.
   * @param body The body.
   * @param headers The headers (`Nats-Msg-Id`, `Nats-Expected-*`, ...).
   * @returns The PubAck (`duplicate` when the stream already had it).
   * @throws {errors.TimeoutError} When no PubAck came within the timeout.
   * @throws {JetStreamNotEnabled} When nothing answered (no responders).
   * @throws {JetStreamApiError} When the stream refused the message.
   * @throws The connection's error when it cannot publish, the reason given
   *   to {@linkcode Publisher.close}, or to {@linkcode Publisher.interrupt}.
   */
  send(
    subject: string,
    body: string | Uint8Array,
    headers: MsgHdrs,
  ): Promise<PubAck> {
    if (this.#isClosed) return Promise.reject(this.#closed);
    return new Promise<PubAck>((resolve, reject) => {
      const token = (this.#counter++).toString(36);
      const entry: Entry = {
        token,
        subject,
        body,
        headers,
        expires: Date.now() + this.#timeout,
        resolve,
        reject,
        sent: false,
      };
      this.#entries.set(token, entry);
      if (this.#sweep === undefined) this.#arm(this.#timeout);
      this.#queue.push(entry);
      // Idle (nothing awaits a PubAck): a lone publish leaves at once, so an
      // event emitted now and then waits for no turn of the event loop; the
      // publishes that follow it in this turn gather behind it.
      if (this.#inFlight === 0 && !this.#flushing) this.#pump();
      else this.#schedule();
    });
  }

  /**
   * Fails every publish in flight with `error` (their PubAcks may be lost,
   * as after a reconnect); queued publishes are sent as the window frees.
   */
  interrupt(error: unknown): void {
    for (const entry of [...this.#entries.values()]) {
      if (entry.sent) this.#settle(entry)?.reject(error);
    }
    this.#pump();
  }

  /**
   * Fails every publish not settled yet, and every later one, with
   * `reason`, and unsubscribes; leaves the connection open.
   */
  close(reason: unknown): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    this.#closed = reason;
    const entries = [...this.#entries.values()];
    this.#entries.clear();
    this.#queue = [];
    this.#head = 0;
    this.#inFlight = 0;
    clearTimeout(this.#sweep);
    this.#sweep = undefined;
    for (const entry of entries) entry.reject(reason);
    try {
      this.#subscription?.unsubscribe();
    } catch {
      // the connection is already closed
    }
    this.#subscription = undefined;
  }

  /** Sends `entry` with its reply subject, subscribing first if needed. */
  #transmit(entry: Entry): void {
    try {
      this.#subscription ??= this.#subscribe();
      this.#nc.publish(entry.subject, entry.body, {
        headers: entry.headers,
        reply: this.#inbox + entry.token,
      });
      entry.sent = true;
      this.#inFlight++;
    } catch (error) {
      this.#settle(entry);
      entry.reject(error);
    }
  }

  #subscribe(): Subscription {
    const subscription = this.#nc.subscribe(`${this.#inbox}*`, {
      callback: (error, msg) => this.#reply(error, msg),
    });
    // Closed with the connection (close or drain): nothing in flight can
    // be answered any more, as nats.js fails its requests then.
    subscription.closed.then(() => {
      if (this.#subscription !== subscription) return;
      this.#subscription = undefined;
      const closed = new RequestError("connection closed");
      for (const entry of [...this.#entries.values()]) {
        if (entry.sent) this.#settle(entry)?.reject(closed);
      }
      this.#pump();
    }, () => {});
    return subscription;
  }

  #reply(error: Error | null, msg: Msg): void {
    if (error !== null) {
      // The subscription failed (a permission violation): nothing in
      // flight can be answered.
      for (const entry of [...this.#entries.values()]) {
        if (entry.sent) this.#settle(entry)?.reject(error);
      }
      this.#pump();
      return;
    }
    const entry = this.#entries.get(msg.subject.slice(this.#inbox.length));
    if (entry === undefined || !entry.sent) return; // expired or interrupted
    this.#settle(entry);
    let ack: PubAck | undefined;
    let failure: unknown;
    try {
      ack = parsePubAck(msg, entry.subject);
    } catch (error) {
      failure = error;
    }
    if (ack === undefined) entry.reject(failure);
    else entry.resolve(ack);
    this.#pump();
  }

  /** Forgets `entry`, freeing its room in the window; returns it. */
  #settle(entry: Entry): Entry | undefined {
    if (!this.#entries.delete(entry.token)) return undefined;
    if (entry.sent) this.#inFlight--;
    if (this.#entries.size === 0 && this.#sweep !== undefined) {
      // Nothing left to expire: no timer keeps the process alive.
      clearTimeout(this.#sweep);
      this.#sweep = undefined;
    }
    return entry;
  }

  /** Sends the queue at the end of this turn of the event loop. */
  #schedule(): void {
    if (this.#flushing) return;
    this.#flushing = true;
    setImmediate(this.#flush);
  }

  readonly #flush = (): void => {
    this.#flushing = false;
    if (!this.#isClosed) this.#pump();
  };

  /** Sends queued publishes while the window has room. */
  #pump(): void {
    const queue = this.#queue;
    while (this.#head < queue.length && this.#inFlight < this.#window) {
      const entry = queue[this.#head++]!;
      if (this.#entries.has(entry.token)) this.#transmit(entry);
    }
    if (this.#head === queue.length) {
      this.#queue = [];
      this.#head = 0;
    } else if (this.#head > 1_024 && this.#head * 2 > queue.length) {
      this.#queue = queue.slice(this.#head);
      this.#head = 0;
    }
  }

  #arm(delay: number): void {
    this.#sweep = setTimeout(
      () => this.#expire(),
      Math.max(delay, SWEEP_PAUSE),
    );
  }

  /** Fails the publishes whose time passed; arms the next sweep. */
  #expire(): void {
    this.#sweep = undefined;
    const now = Date.now();
    const expired: Entry[] = [];
    let next: Entry | undefined;
    // Same timeout for all: insertion order is expiry order.
    for (const entry of this.#entries.values()) {
      if (entry.expires > now) {
        next = entry;
        break;
      }
      expired.push(entry);
    }
    for (const entry of expired) {
      this.#settle(entry);
      entry.reject(new errors.TimeoutError());
    }
    if (expired.length > 0) this.#pump();
    if (next !== undefined) this.#arm(next.expires - now);
  }
}

/**
 * The PubAck in `msg`, as `js.publish` reads it.
 *
 * @throws {JetStreamNotEnabled} For a no-responders status.
 * @throws {JetStreamApiError} For the server's API error.
 * @throws {JetStreamError} For an answer without a stream.
 */
function parsePubAck(msg: Msg, subject: string): PubAck {
  if (msg.data.length === 0 && msg.headers?.code === 503) {
    throw new JetStreamNotEnabled("jetstream is not enabled", {
      cause: new RequestError(`no responders: '${subject}'`, {
        cause: new errors.NoRespondersError(subject),
      }),
    });
  }
  const answer = JSON.parse(decoder.decode(msg.data)) as {
    stream?: string;
    seq?: number;
    duplicate?: boolean;
    error?: { code: number; err_code: number; description: string };
  };
  if (answer.error !== undefined) {
    const error = new JetStreamApiError(answer.error);
    if (answer.error.err_code === NOT_ENABLED_FOR_ACCOUNT) {
      throw new JetStreamNotEnabled(error.message, { cause: error });
    }
    throw error;
  }
  if (typeof answer.stream !== "string" || answer.stream === "") {
    throw new JetStreamError("invalid ack response");
  }
  return {
    stream: answer.stream,
    seq: answer.seq ?? 0,
    duplicate: answer.duplicate === true,
  };
}
