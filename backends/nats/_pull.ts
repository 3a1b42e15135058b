// Copyright 2026 the @eventbus/core authors. MIT license.
// Pull requests of one durable consumer over one subscription that lives as
// long as the consumer loop: requests for exactly as many events as the loop
// has room for, with a count of what they still owe. Nothing the server
// sends to a live request is lost to an unsubscribed inbox, and the loop
// knows when no request of its own can take a redelivery any more.

import {
  createInbox,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  type Subscription,
} from "@nats-io/nats-core";

/** How long one pull request waits on the server, in ms. */
export const PULL_EXPIRES = 1_000;
/** How long after its expiry a request that never ended counts as lost. */
const LOST_AFTER = 2_000;
const ENCODER = new TextEncoder();
const ACK = ENCODER.encode("+ACK");
const NAK = ENCODER.encode("-NAK");
const WPI = ENCODER.encode("+WPI");
const TERM = ENCODER.encode("+TERM");
const PENDING_MESSAGES = "Nats-Pending-Messages";

/** Why a pull request ended without being fulfilled. */
export type PullEnd =
  | { readonly kind: "expired" }
  | { readonly kind: "lost" }
  | { readonly kind: "no-responders" }
  | { readonly kind: "consumer-deleted" }
  | { readonly kind: "refused"; readonly code: number; readonly text: string };

/** What a puller tells its consumer loop. */
export interface PullerEvents {
  /** An event arrived. */
  message(msg: Pulled): void;
  /** A request ended without its batch: expired, lost or refused. */
  ended(end: PullEnd): void;
}

/**
 * One event delivered by a pull request, with its ack subject parsed. Its
 * answers never throw (on a closed connection the broker redelivers after
 * the ack wait), and it sends nothing after its final answer.
 */
export class Pulled {
  /** The subject it was published on. */
  readonly subject: string;
  /** Its body. */
  readonly data: Uint8Array;
  /** Its headers. */
  readonly headers: MsgHdrs | undefined;
  /** The stream that holds it. */
  readonly stream: string;
  /** Its sequence number in the stream. */
  readonly seq: number;
  /** How often the broker delivered it to this consumer, this one included. */
  readonly deliveryCount: number;
  readonly #msg: Msg;
  #final = false;

  constructor(msg: Msg) {
    this.#msg = msg;
    this.subject = msg.subject;
    this.data = msg.data;
    this.headers = msg.headers;
    // $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>,
    // or with <domain>.<account hash> after ACK and a token at the end.
    const tokens = (msg.reply ?? "").split(".");
    const at = tokens.length >= 11 ? 4 : 2;
    this.stream = tokens[at] ?? "";
    this.deliveryCount = Number(tokens[at + 2]);
    this.seq = Number(tokens[at + 3]);
  }

  /** Acknowledges it: done. */
  ack(): void {
    this.#send(ACK, true);
  }

  /** Hands it back for redelivery, after `delay` ms. */
  nak(delay = 0): void {
    const ms = Math.max(0, Math.round(delay));
    this.#send(
      ms === 0 ? NAK : ENCODER.encode(`-NAK {"delay":${ms * 1_000_000}}`),
      true,
    );
  }

  /** Tells the broker it is still in progress (resets its ack wait). */
  working(): void {
    this.#send(WPI, false);
  }

  /** Tells the broker never to deliver it again. Plain: 2.9 ignores a reason. */
  term(): void {
    this.#send(TERM, true);
  }

  /** Sends one answer; nothing after the final one (ack, nak or term). */
  #send(payload: Uint8Array, final: boolean): void {
    if (this.#final) return;
    this.#final = final;
    try {
      this.#msg.respond(payload);
    } catch {
      // The connection is closed: the broker redelivers after the ack wait.
    }
  }
}

/** Pull requests of one durable consumer over one subscription. */
export class Puller {
  readonly #nc: NatsConnection;
  readonly #subject: string;
  readonly #base: string;
  readonly #events: PullerEvents;
  readonly #sub: Subscription;
  #serial = 0;
  /** Requests sent and not known to have ended: inbox → expiry (ms). */
  #requests = new Map<string, number>();
  /** Events requested and not yet received, over every waiting request. */
  #outstanding = 0;
  /** When the last request sent expires on the server (ms since epoch). */
  #lastExpiry = 0;
  #watchdog: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  /**
   * Subscribes the inbox of this consumer's requests.
   *
   * @param nc The connection.
   * @param stream The stream.
   * @param durable The durable consumer.
   * @param events Where messages and request ends go.
   */
  constructor(
    nc: NatsConnection,
    stream: string,
    durable: string,
    events: PullerEvents,
  ) {
    this.#nc = nc;
    this.#subject = `$JS.API.CONSUMER.MSG.NEXT.${stream}.${durable}`;
    // The connection's inbox prefix, where permissions restrict inboxes.
    const { inboxPrefix } = (nc as { options?: { inboxPrefix?: string } })
      .options ?? {};
    this.#base = createInbox(inboxPrefix);
    this.#events = events;
    this.#sub = nc.subscribe(`${this.#base}.*`, {
      callback: (error, msg) => {
        if (error === null) this.#receive(msg);
      },
    });
  }

  /**
   * Events requested and not received yet. A request ends when it got its
   * batch (silently) or expired (the server answers 408 with what it still
   * owed), so 0 means no request of this puller waits on the server.
   */
  get outstanding(): number {
    return this.#outstanding;
  }

  /**
   * When the last request sent expires on the server (ms since epoch): after
   * it, no request of this puller can take a message.
   */
  get lastExpiry(): number {
    return this.#lastExpiry;
  }

  /**
   * Sends a request for `batch` more events.
   *
   * @param batch How many events, at least 1.
   */
  pull(batch: number): void {
    if (this.#closed || batch < 1) return;
    const inbox = `${this.#base}.${++this.#serial}`;
    const expiry = Date.now() + PULL_EXPIRES;
    this.#requests.set(inbox, expiry);
    this.#outstanding += batch;
    this.#lastExpiry = expiry;
    // The server answers an expired request with 408; requests that never
    // answer (their server died, the connection dropped) count as lost.
    clearTimeout(this.#watchdog);
    this.#watchdog = setTimeout(this.#lost, PULL_EXPIRES + LOST_AFTER);
    try {
      this.#nc.publish(
        this.#subject,
        JSON.stringify({ batch, expires: PULL_EXPIRES * 1_000_000 }),
        { reply: inbox },
      );
    } catch {
      // Closed connection: the watchdog ends the request.
    }
  }

  /**
   * Forgets every waiting request, as after a reconnect: the server dropped
   * them with the old connection's interest.
   */
  reset(): void {
    this.#lost();
  }

  /** Unsubscribes; later messages for this consumer go to other requests. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#watchdog);
    this.#requests.clear();
    this.#outstanding = 0;
    try {
      this.#sub.unsubscribe();
    } catch {
      // the connection is closed
    }
  }

  #lost = (): void => {
    clearTimeout(this.#watchdog);
    this.#watchdog = undefined;
    if (this.#closed || this.#outstanding === 0) {
      this.#requests.clear();
      return;
    }
    this.#requests.clear();
    this.#outstanding = 0;
    this.#events.ended({ kind: "lost" });
  };

  #receive(msg: Msg): void {
    if (this.#closed) return;
    if (msg.reply?.startsWith("$JS.ACK.")) {
      if (this.#outstanding > 0) this.#outstanding--;
      this.#events.message(new Pulled(msg));
      if (this.#outstanding === 0) this.#quiet();
      return;
    }
    // A status about one request.
    const code = msg.headers?.code ?? 0;
    const text = msg.headers?.description ?? "";
    if (code === 100) return; // idle heartbeat (not asked for)
    if (!this.#requests.delete(msg.subject)) return;
    const owed = Number(msg.headers?.get(PENDING_MESSAGES) ?? "");
    this.#outstanding = Number.isInteger(owed) && owed > 0
      ? Math.max(0, this.#outstanding - owed)
      : this.#requests.size === 0
      ? 0
      : this.#outstanding;
    if (this.#outstanding === 0) this.#quiet();
    switch (code) {
      case 404: // no messages
      case 408: // request timeout
        this.#events.ended({ kind: "expired" });
        return;
      case 503:
        this.#events.ended({ kind: "no-responders" });
        return;
      case 409:
        if (/consumer deleted/i.test(text)) {
          this.#events.ended({ kind: "consumer-deleted" });
        } else if (/leadership change/i.test(text)) {
          this.#lost();
        } else {
          this.#events.ended({ kind: "refused", code, text });
        }
        return;
      default:
        this.#events.ended({ kind: "refused", code, text });
    }
  }

  /** Nothing is owed: no watchdog needed, and no request waits. */
  #quiet(): void {
    clearTimeout(this.#watchdog);
    this.#watchdog = undefined;
    this.#requests.clear();
  }
}
