// Copyright 2026 the @eventbus/core authors. MIT license.
// One durable pull consumer of one handler name: pulls exactly as many
// events as it has room for, keeps every event it holds (waiting or running)
// reported to the broker as in progress, runs a bounded number of tries at
// once, and maps each try's result to ack, nak with delay, or dead letter
// (`_dead_letters.ts`); a replayed dead letter meant for another handler
// name is acknowledged unrun (`_dead_letter_ops.ts`). A closing worker
// hands back the events it did not start, counted (`_handback.ts`) so they
// are not tries. It reaches the broker through the backend's link
// (`_link.ts`) and its own pull requests (`_pull.ts`).

import {
  type ConsumerSpec,
  decodeEvent,
  type Deliver,
  type DeliveryResult,
  describeError,
  type Event,
  EventBusClosedError,
  type Logger,
  SerializationError,
} from "@eventbus/core";
import { type Resolvers, withResolvers } from "@eventbus/core/backend-kit";
import { type DeadLetter, deadLetter } from "./_dead_letters.ts";
import type { Handbacks } from "./_handback.ts";
import type { Link } from "./_link.ts";
import type { ResolvedOptions } from "./_options.ts";
import { type Pulled, type PullEnd, Puller } from "./_pull.ts";
import { type ConsumerState, ensureConsumer } from "./_streams.ts";
import { durableName, headerValue, TARGET_HANDLER } from "./_util.ts";

/**
 * How long after the expiry of a request given up (unsubscribed while it
 * waited) a hand-back may return: nats-server 2.9 loses a redelivery when
 * every request waiting on the consumer is dead (it takes the redelivery,
 * finds no live request, and rewinds the wrong sequence); it drops a dead
 * request at its expiry.
 */
const RELEASE_MARGIN = 500;
/** The longest pause between pulls after failures. */
const MAX_PULL_PAUSE = 5_000;

/** The handler a consumer loop runs, and where it logs. */
export interface LoopHandler {
  /** The handler name and event type; the durable is named after it. */
  readonly spec: ConsumerSpec;
  /** Runs one try. */
  readonly deliver: Deliver;
  readonly logger: Logger;
}

/** One event this loop holds: waiting for a slot, running, or on its way back. */
interface Held {
  readonly msg: Pulled;
  /** When the broker last heard of it (ms); undefined: no more beats. */
  beat: number | undefined;
  /** Set when it runs. */
  controller: AbortController | undefined;
  /** Handed back at the close deadline: its try's result is ignored. */
  released: boolean;
}

/** Runs one durable consumer until stopped. */
export class ConsumerLoop {
  readonly #link: Link;
  readonly #handbacks: Handbacks;
  readonly #options: ResolvedOptions;
  readonly #spec: ConsumerSpec;
  readonly #deliver: Deliver;
  readonly #logger: Logger;
  readonly #durable: string;
  /** The handler name as a replayed copy's target header holds it. */
  readonly #target: string;
  /** Received, waiting for a free slot, in arrival order. */
  #queue: Held[] = [];
  #running = new Set<Held>();
  /** Everything the broker must hear about until it gets a final answer. */
  #held = new Set<Held>();
  #puller: Puller | undefined;
  #pullerClosed = false;
  /** After a forced unsubscribe: when no request of ours can exist (ms). */
  #safeAt = 0;
  #stopping = false;
  #released = false;
  #stop = new AbortController();
  /** Resolves when idle; made by the first whenIdle() that must wait. */
  #idle: Resolvers<void> | undefined;
  #handingBack = new Set<Promise<void>>();
  #failures = 0;
  #pullTimer: ReturnType<typeof setTimeout> | undefined;
  #repairing: Promise<unknown> | undefined;
  /** The one timer that tells the broker held events are in progress. */
  #beatTimer: ReturnType<typeof setTimeout> | undefined;
  #beatEvery: number;
  /** Acks of completed tries, sent together at the next macrotask. */
  #acks: Pulled[] = [];
  #ackTimer: ReturnType<typeof setTimeout> | undefined;
  #lookupWarned = false;
  #completed = 0;

  /**
   * Makes the loop of one handler name; {@linkcode ConsumerLoop.start}
   * starts it.
   *
   * @param link The backend's link to JetStream.
   * @param handbacks The backend's hand-back counts.
   * @param handler The handler, its try runner and its logger.
   */
  constructor(link: Link, handbacks: Handbacks, handler: LoopHandler) {
    this.#link = link;
    this.#handbacks = handbacks;
    this.#options = link.options;
    this.#spec = handler.spec;
    this.#deliver = handler.deliver;
    this.#logger = handler.logger;
    this.#durable = durableName(handler.spec.name);
    this.#target = headerValue(handler.spec.name);
    // Ticking every quarter ack wait and beating for events silent for a
    // quarter, no held event goes longer than half the ack wait unheard.
    this.#beatEvery = Math.max(25, Math.floor(link.options.ackWait / 4));
  }

  /** How many deliveries completed (acknowledged) in this loop. */
  get completed(): number {
    return this.#completed;
  }

  /**
   * Creates or updates the consumer and sends its first pull request;
   * resolves once the server has it.
   *
   * @throws {EventBusClosedError} When stopped before it was ready.
   */
  async start(): Promise<void> {
    const { nc } = this.#link;
    const setup = {
      what: `set up consumer for "${this.#spec.name}"`,
      signal: this.#stop.signal,
    };
    const { created, pending } = await this.#link.retry(
      () => this.#ensureConsumer(),
      setup,
    );
    if (!created) {
      this.#logger.debug(
        `Consumer "${this.#durable}" of stream "${this.#options.stream}" exists: handler "${this.#spec.name}" resumes where it stopped (${pending} waiting)`,
      );
    }
    this.#throwIfStopped();
    this.#puller = new Puller(nc, this.#options.stream, this.#durable, {
      message: (msg) => this.#receive(msg),
      ended: (end) => this.#ended(end),
    });
    this.#fill();
    // The request reached the server: the consumer is pulling.
    await this.#link.retry(() => nc.flush(), setup);
    this.#throwIfStopped();
  }

  /** Stops pulling; running tries go on and are acknowledged as usual. */
  stop(): void {
    if (this.#stopping) return;
    this.#stopping = true;
    this.#stop.abort(new EventBusClosedError());
    clearTimeout(this.#pullTimer);
    // Waiting events go back once no request waits on the server: handed
    // back sooner, the broker could send them to such a request again, and
    // an event it sent to an inbox unsubscribed too early would come back
    // only after the ack wait.
    if (this.#puller === undefined || this.#puller.outstanding === 0) {
      this.#closePuller();
    }
    this.#checkIdle();
  }

  /** Resolves once nothing is held or running and pulling has ended. */
  whenIdle(): Promise<void> {
    if (this.#isIdle()) {
      this.#flushAcks(); // before close() drains the connection
      return Promise.resolve();
    }
    this.#idle ??= withResolvers<void>();
    return this.#idle.promise;
  }

  /**
   * At the close deadline: aborts the running tries' signals and hands their
   * events back to the broker at once, without waiting for the tries.
   * Resolves once the waiting events are handed back too: when the pull
   * requests still waiting on the server ended (within about a second), so
   * that an event on its way to one is not lost until the ack wait.
   */
  release(): Promise<void> {
    this.stop();
    this.#released = true;
    this.#flushAcks();
    const delay = this.#safeDelay();
    for (const held of this.#running) {
      // Started: this delivery counts as a try, as if the worker crashed.
      held.beat = undefined;
      held.released = true;
      held.msg.nak(delay);
      held.controller?.abort(new EventBusClosedError());
    }
    this.#running.clear();
    this.#checkIdle();
    return this.whenIdle();
  }

  /** The connection was re-established: the waiting request is gone. */
  reconnected(): void {
    this.#puller?.reset();
  }

  async #ensureConsumer(): Promise<ConsumerState> {
    return ensureConsumer(await this.#link.jsm, this.#options, {
      spec: this.#spec,
      durable: this.#durable,
      logger: this.#logger,
    });
  }

  /** Asks for as many events as there is room for, unless a request waits. */
  #fill(): void {
    const puller = this.#puller;
    if (
      puller === undefined || this.#stopping || this.#pullTimer !== undefined
    ) return;
    const { prefetch } = this.#options;
    const owed = puller.outstanding;
    const room = prefetch - this.#queue.length - owed;
    // Refill in batches of a quarter, or whatever fits once nothing is owed.
    if (
      room >= Math.max(1, Math.floor(prefetch / 4)) || (owed === 0 && room > 0)
    ) {
      puller.pull(room);
    }
  }

  #receive(msg: Pulled): void {
    const held: Held = {
      msg,
      beat: Date.now(),
      controller: undefined,
      released: false,
    };
    this.#held.add(held);
    this.#failures = 0;
    this.#queue.push(held);
    this.#startBeats();
    if (this.#stopping) {
      if (this.#puller?.outstanding === 0) this.#closePuller();
      return;
    }
    this.#dispatch();
  }

  #ended(end: PullEnd): void {
    if (this.#stopping) {
      // A request given up for lost may still wait on the server.
      if (end.kind === "lost" && this.#puller !== undefined) {
        this.#safeAt = this.#puller.lastExpiry + RELEASE_MARGIN;
      }
      if (this.#puller?.outstanding === 0) this.#closePuller();
      this.#checkIdle();
      return;
    }
    const durable = this.#durable;
    const logger = this.#logger;
    if (this.#link.nc.isClosed()) {
      logger.error(
        `Consumer "${durable}" stopped: the NATS connection is closed`,
      );
      this.stop();
      return;
    }
    if (end.kind === "expired" || end.kind === "lost") {
      if (end.kind === "lost") {
        logger.debug(
          `Consumer "${durable}" lost a pull request, pulling again`,
        );
      }
      this.#fill();
      return;
    }
    const { stream } = this.#options;
    const failures = ++this.#failures;
    const pause = Math.min(100 * 2 ** (failures - 1), MAX_PULL_PAUSE);
    if (end.kind === "refused") {
      logger.warn(
        `Consumer "${durable}" of stream "${stream}" cannot pull: the server answered ${end.code} ${end.text}, trying again in ${pause} ms`,
      );
    } else {
      // No consumer answered (it or its stream is gone, or JetStream is
      // restarting), or it was deleted: create it again.
      logger.warn(
        `Consumer "${durable}" of stream "${stream}" ${
          end.kind === "consumer-deleted" ? "was deleted" : "does not answer"
        }, creating it again`,
      );
      this.#repair();
    }
    this.#pullTimer = setTimeout(() => {
      this.#pullTimer = undefined;
      this.#fill();
    }, pause);
  }

  /** Starts waiting events while slots are free, then refills. */
  #dispatch(): void {
    const { concurrency } = this.#options;
    while (
      !this.#stopping && this.#running.size < concurrency &&
      this.#queue.length > 0
    ) {
      void this.#handle(this.#queue.shift()!);
    }
    this.#fill();
  }

  async #handle(held: Held): Promise<void> {
    held.controller = new AbortController();
    this.#running.add(held);
    try {
      await this.#process(held);
    } catch (error) {
      this.#logger.error(
        `Cannot handle message ${held.msg.seq} of "${held.msg.subject}" for handler "${this.#spec.name}": ${
          describeError(error)
        }, it will be delivered again`,
        { error },
      );
      this.#respond(held, (m) => m.nak(this.#nakDelay(1_000)));
    } finally {
      this.#running.delete(held);
      this.#held.delete(held);
      // Ordered: the broker sends the next event only once this ack
      // arrives. Otherwise the ack waits for its macrotask: written at
      // once, it delays the reading of everything else, such as the
      // PubAcks of a producer in the same process.
      if (this.#options.ordered) this.#flushAcks();
      this.#dispatch();
      this.#checkIdle();
    }
  }

  async #process(held: Held): Promise<void> {
    const { msg } = held;
    const spec = this.#spec;
    const durable = this.#durable;
    // A replayed dead letter of another handler name: not ours to run.
    const target = msg.headers?.get(TARGET_HANDLER) ?? "";
    if (target !== "" && target !== this.#target) {
      held.beat = undefined;
      this.#ack(msg);
      return;
    }
    const attempt = await this.#attempt(msg);
    if (held.released) return;
    let event: Event;
    try {
      event = decodeEvent(msg.data);
      if (event.type !== spec.type) {
        throw new SerializationError(
          `Cannot decode event: type "${event.type}" arrived on subject "${msg.subject}", publish events through an EventBus`,
        );
      }
    } catch (error) {
      this.#logger.error(
        `Cannot deliver message ${msg.seq} of "${msg.subject}" to handler "${spec.name}": ${
          describeError(error)
        }; moved it to the dead-letter stream "${this.#options.deadLetterStream}"`,
        { error, subject: msg.subject, sequence: msg.seq },
      );
      await this.#deadLetter(held, {
        reason: "invalid-event",
        error,
        attempts: attempt,
        handler: spec.name,
        durable,
      });
      return;
    }
    let result: DeliveryResult;
    try {
      result = await this.#deliver({
        event,
        handler: spec.name,
        attempt,
        signal: held.controller!.signal,
      });
    } catch (error) {
      // Deliver never rejects by contract; a broken one must not lose events.
      result = { status: "retry", delay: 1_000, error };
    }
    if (held.released) return; // close() already handed it back
    switch (result.status) {
      case "completed":
        held.beat = undefined;
        this.#ack(msg);
        this.#completed++;
        return;
      case "retry":
        this.#respond(held, (m) => m.nak(this.#nakDelay(result.delay)));
        return;
      case "dead-letter":
        await this.#deadLetter(held, {
          reason: result.error.reason,
          error: result.error.cause,
          attempts: result.error.attempts,
          handler: spec.name,
          durable,
        });
        return;
      case "abandoned":
        this.#respond(held, (m) => m.nak(this.#nakDelay(0)));
        return;
    }
  }

  /**
   * The try number: the broker's delivery count less the deliveries a
   * closing worker handed back unstarted. When the count cannot be read,
   * the delivery count alone (which can only end retries sooner).
   */
  async #attempt(msg: Pulled): Promise<number> {
    const deliveries = msg.deliveryCount;
    if (!(deliveries > 1)) return 1;
    try {
      const handedBack = await this.#handbacks.count(this.#durable, msg);
      return Math.max(1, deliveries - handedBack);
    } catch (error) {
      if (!this.#lookupWarned) {
        this.#lookupWarned = true;
        this.#logger.warn(
          `Cannot read how often message ${msg.seq} was handed back to consumer "${this.#durable}": ${
            describeError(error)
          }, counting every delivery as a try`,
          { error },
        );
      }
      return deliveries;
    }
  }

  /** Stores the dead letter, then terms the event (or naks it for later). */
  async #deadLetter(held: Held, letter: DeadLetter): Promise<void> {
    // The broker keeps hearing of it while its copy is stored.
    held.beat ??= Date.now();
    await deadLetter(this.#link, held.msg, letter, this.#logger);
    held.beat = undefined;
  }

  /**
   * Sends a final answer for an event, unless close() already did (the
   * message itself ignores a second final answer).
   */
  #respond(held: Held, action: (msg: Pulled) => void): void {
    held.beat = undefined;
    if (held.released) return;
    action(held.msg);
  }

  /** A nak delay that keeps the event from returning to this loop's request. */
  #nakDelay(delay: number): number {
    const ms = Math.max(0, Math.round(delay));
    return this.#stopping ? Math.max(ms, this.#safeDelay()) : ms;
  }

  /**
   * How long until no request of this loop can take a message: the waiting
   * request's expiry (or, after an unsubscribe while it waited, the dead
   * request's), plus a margin; 0 once pulling ended cleanly.
   */
  #safeDelay(): number {
    const puller = this.#puller;
    const at =
      puller !== undefined && !this.#pullerClosed && puller.outstanding > 0
        ? puller.lastExpiry + RELEASE_MARGIN
        : this.#safeAt;
    return Math.max(0, at - Date.now());
  }

  /** Unsubscribes and hands back every waiting event. */
  #closePuller(): void {
    if (this.#pullerClosed) return;
    this.#pullerClosed = true;
    const puller = this.#puller;
    if (puller !== undefined) {
      if (puller.outstanding > 0) {
        this.#safeAt = Math.max(
          this.#safeAt,
          puller.lastExpiry + RELEASE_MARGIN,
        );
      }
      puller.close();
    }
    this.#handBack(this.#queue.splice(0));
  }

  /**
   * Hands unstarted events back to the broker, each after counting the
   * hand-back, so the redelivery is not taken for a try.
   */
  #handBack(entries: Held[]): void {
    if (entries.length === 0) return;
    const handbacks = this.#handbacks;
    const durable = this.#durable;
    const work = Promise.all(entries.map(async (held) => {
      const { msg } = held;
      try {
        const before = msg.deliveryCount > 1
          ? await handbacks.count(durable, msg)
          : 0;
        await handbacks.record(durable, msg, before + 1);
      } catch (error) {
        this.#logger.warn(
          `Cannot count the hand-back of message ${msg.seq} to consumer "${durable}": ${
            describeError(error)
          }, its next delivery counts as a try`,
          { error },
        );
      }
      this.#held.delete(held);
      held.beat = undefined;
      msg.nak(this.#safeDelay());
    })).then(() => {});
    this.#handingBack.add(work);
    work.finally(() => {
      this.#handingBack.delete(work);
      this.#checkIdle();
    });
  }

  #startBeats(): void {
    this.#beatTimer ??= setTimeout(this.#beats, this.#beatEvery);
  }

  #beats = (): void => {
    this.#beatTimer = undefined;
    const now = Date.now();
    let beating = false;
    for (const held of this.#held) {
      if (held.beat === undefined || held.released) continue;
      beating = true;
      if (now - held.beat >= this.#beatEvery) {
        held.beat = now;
        held.msg.working();
      }
    }
    if (beating) this.#beatTimer = setTimeout(this.#beats, this.#beatEvery);
  };

  /**
   * Queues an ack. Acks sent one by one each cost a socket write; queued
   * until the next macrotask (or until close() waits for this consumer or
   * hands the rest back; at once when ordered), the completions of one
   * batch go out in one write.
   */
  #ack(msg: Pulled): void {
    this.#acks.push(msg);
    this.#ackTimer ??= setTimeout(this.#flushAcks, 0);
  }

  #flushAcks = (): void => {
    clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
    const acks = this.#acks;
    if (acks.length === 0) return;
    this.#acks = [];
    for (const msg of acks) msg.ack();
  };

  #repair(): void {
    if (this.#repairing !== undefined || this.#stopping) return;
    this.#repairing = this.#link.ensureStreams()
      .then(() => this.#ensureConsumer())
      .catch((error: unknown) => {
        this.#logger.warn(
          `Cannot create consumer "${this.#durable}" again: ${
            describeError(error)
          }`,
          { error },
        );
      }).finally(() => {
        this.#repairing = undefined;
      });
  }

  #throwIfStopped(): void {
    if (this.#stopping) throw new EventBusClosedError();
  }

  #isIdle(): boolean {
    return this.#running.size === 0 && this.#queue.length === 0 &&
      this.#handingBack.size === 0 &&
      (this.#puller === undefined || this.#pullerClosed);
  }

  #checkIdle(): void {
    if (this.#held.size === 0 && this.#beatTimer !== undefined) {
      clearTimeout(this.#beatTimer);
      this.#beatTimer = undefined;
    }
    if (!this.#isIdle()) return;
    clearTimeout(this.#pullTimer);
    this.#pullTimer = undefined;
    if (this.#idle === undefined) return;
    this.#flushAcks(); // before close() drains the connection
    this.#idle.resolve();
    this.#idle = undefined;
  }
}
