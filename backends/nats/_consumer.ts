// Copyright 2026 the @eventbus/core authors. MIT license.
// One durable pull consumer of one handler name: fetches events, runs a
// bounded number of tries at once, and maps each try's result to ack, nak
// with delay, dead letter + term, or nak for prompt redelivery.

import {
  AckPolicy,
  type Consumer,
  type ConsumerConfig,
  type ConsumerMessages,
  DeliverPolicy,
  JetStreamApiError,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from "@nats-io/jetstream";
import { nanos } from "@nats-io/nats-core";
import type {
  ConsumerSpec,
  Deliver,
  DeliveryResult,
  Logger,
} from "../../src/backend.ts";
import {
  BackendError,
  describeError,
  EventBusClosedError,
  SerializationError,
} from "../../src/errors.ts";
import { decodeEvent, type Event } from "../../src/event.ts";
import { type Permit, Semaphore } from "../../src/semaphore.ts";
import type { ResolvedOptions } from "./_options.ts";
import { isClosedConnection, isTransient, pause } from "./_util.ts";

const BACKEND = "nats-jetstream";
const CONSUMER_NOT_FOUND = 10014;
/** Deliveries allowed beyond the retry policy's tries (crashes, close). */
export const MAX_DELIVER_MARGIN = 5;
/** How long one pull request waits on the server. */
const PULL_EXPIRES = 5_000;
/** How often the server heartbeats a waiting pull request. */
const PULL_HEARTBEAT = 1_000;
/**
 * The delay of a nak sent after this consumer stopped fetching. nats-server
 * 2.9 loses an immediate redelivery when the only waiting pull request is
 * one whose client just unsubscribed (its delivery loop takes the
 * redelivery, finds no live request, and rewinds the wrong sequence); it
 * drops such requests at the next heartbeat, so handing the message back
 * after two heartbeats makes the redelivery reach the next consumer.
 */
const RELEASE_DELAY = 2 * PULL_HEARTBEAT;
/** The delay before a message whose dead letter could not be stored returns. */
const DEAD_LETTER_RETRY_DELAY = 5_000;

/** What a consumer loop needs from its backend. */
export interface LoopContext {
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly options: ResolvedOptions;
  readonly deliver: Deliver;
  readonly spec: ConsumerSpec;
  readonly durable: string;
  readonly logger: Logger;
  /** Stores a copy in the dead-letter stream; rejects when it could not. */
  readonly deadLetter: (msg: JsMsg, letter: DeadLetter) => Promise<void>;
  /** Counts one completed delivery. */
  readonly completed: () => void;
  /** Whether the connection is closed for good. */
  readonly connectionClosed: () => boolean;
  /** Runs a setup request, retrying transient failures until a deadline. */
  readonly setup: <T>(attempt: () => Promise<T>) => Promise<T>;
}

/** What the dead-letter copy says about its failure. */
export interface DeadLetter {
  readonly reason: "handler-failed" | "invalid-event";
  readonly error: unknown;
  readonly attempts: number;
  readonly handler: string;
  readonly durable: string;
}

interface InFlight {
  readonly msg: JsMsg;
  readonly controller: AbortController;
  released: boolean;
  /** While the handler runs: when the broker last heard of it (ms). */
  beat: number | undefined;
}

/** The consumer config for a handler. */
export function consumerConfig(
  options: ResolvedOptions,
  spec: ConsumerSpec,
  durable: string,
): Partial<ConsumerConfig> {
  return {
    durable_name: durable,
    ack_policy: AckPolicy.Explicit,
    // A new handler name gets the events emitted from now on, as a new
    // in-process subscriber would; an existing durable resumes where it was.
    deliver_policy: DeliverPolicy.New,
    filter_subject: `${options.subjectPrefix}.${spec.type}`,
    ack_wait: nanos(options.ackWait),
    max_deliver: spec.attempts + MAX_DELIVER_MARGIN,
    max_ack_pending: options.ordered ? 1 : 1000,
  };
}

/** Runs one durable consumer until stopped. */
export class ConsumerLoop {
  #context: LoopContext;
  #slots: Semaphore;
  #inFlight = new Set<InFlight>();
  #stop = new AbortController();
  #messages: ConsumerMessages | undefined;
  #running = false;
  #idle: (() => void)[] = [];
  #repairing: Promise<void> | undefined;
  /** The one timer that tells the broker running tries are in progress. */
  #beatTimer: ReturnType<typeof setTimeout> | undefined;
  #beatEvery: number;
  /** Acks of completed tries, sent together at the next macrotask. */
  #acks: JsMsg[] = [];
  #ackTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(context: LoopContext) {
    this.#context = context;
    this.#slots = new Semaphore(context.options.concurrency);
    // Ticking every quarter ack wait and beating for tries silent for a
    // quarter, no try goes longer than half the ack wait without a beat.
    this.#beatEvery = Math.max(25, Math.floor(context.options.ackWait / 4));
  }

  /** Creates or updates the consumer, starts fetching; resolves when ready. */
  async start(): Promise<void> {
    await this.#context.setup(() => this.#ensureConsumer());
    const consumer = await this.#context.setup(() => this.#consumer());
    const messages = await this.#open(consumer);
    this.#running = true;
    this.#run(messages).catch((error: unknown) => {
      this.#context.logger.error(
        `Consumer "${this.#context.durable}" stopped: ${describeError(error)}`,
        { error },
      );
    }).finally(() => {
      this.#running = false;
      this.#checkIdle();
    });
  }

  /** Stops fetching; running tries go on and are acknowledged as usual. */
  stop(): void {
    if (this.#stop.signal.aborted) return;
    this.#stop.abort(new EventBusClosedError());
    this.#closeMessages();
  }

  /** Resolves once nothing runs and the fetch loop has ended. */
  whenIdle(): Promise<void> {
    if (this.#isIdle()) {
      this.#flushAcks(); // before close() drains the connection
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /**
   * At the close deadline: aborts the running tries' signals and hands their
   * messages back to the broker at once (nak), without waiting for them.
   */
  release(): void {
    this.stop();
    this.#flushAcks();
    for (const entry of this.#inFlight) {
      entry.released = true;
      entry.beat = undefined;
      respond(entry.msg, (m) => m.nak(RELEASE_DELAY));
      entry.controller.abort(new EventBusClosedError());
    }
    this.#inFlight.clear();
    this.#stopBeats();
    this.#checkIdle();
  }

  async #ensureConsumer(): Promise<void> {
    const { jsm, options, spec, durable } = this.#context;
    const wanted = consumerConfig(options, spec, durable);
    let existing;
    try {
      existing = await jsm.consumers.info(options.stream, durable);
    } catch (error) {
      if (
        !(error instanceof JetStreamApiError &&
          error.code === CONSUMER_NOT_FOUND)
      ) throw this.#wrap(error);
    }
    try {
      if (existing === undefined) {
        await jsm.consumers.add(options.stream, wanted);
        return;
      }
      const filter = existing.config.filter_subject ?? "";
      if (filter !== wanted.filter_subject) {
        throw new BackendError(
          BACKEND,
          `Cannot consume "${spec.type}" as handler "${spec.name}": consumer "${durable}" of stream "${options.stream}" exists for subject "${filter}", give the handler another name or delete the consumer`,
        );
      }
      if (existing.config.ack_policy !== AckPolicy.Explicit) {
        throw new BackendError(
          BACKEND,
          `Cannot consume "${spec.type}" as handler "${spec.name}": consumer "${durable}" of stream "${options.stream}" exists with ack policy "${existing.config.ack_policy}", delete the consumer so it is created with explicit acks`,
        );
      }
      const { config } = existing;
      if (
        config.ack_wait !== wanted.ack_wait ||
        config.max_deliver !== wanted.max_deliver ||
        config.max_ack_pending !== wanted.max_ack_pending
      ) {
        await jsm.consumers.update(options.stream, durable, {
          ack_wait: wanted.ack_wait!,
          max_deliver: wanted.max_deliver!,
          max_ack_pending: wanted.max_ack_pending!,
        });
      }
    } catch (error) {
      throw this.#wrap(error);
    }
  }

  #consumer(): Promise<Consumer> {
    const { js, options, durable } = this.#context;
    return js.consumers.get(options.stream, durable);
  }

  async #open(consumer: Consumer): Promise<ConsumerMessages> {
    const messages = await consumer.consume({
      // More than the handler slots: the next events are here when a slot
      // frees. They wait in nats.js's buffer until a slot takes them.
      max_messages: this.#context.options.prefetch,
      expires: PULL_EXPIRES,
      idle_heartbeat: PULL_HEARTBEAT,
    });
    this.#messages = messages;
    this.#watch(messages);
    if (this.#stop.signal.aborted) this.#closeMessages();
    return messages;
  }

  async #run(first: ConsumerMessages): Promise<void> {
    let messages: ConsumerMessages | undefined = first;
    let failures = 0;
    while (true) {
      if (messages !== undefined) {
        try {
          await this.#pump(messages);
          failures = 0;
        } catch (error) {
          if (this.#stop.signal.aborted) return;
          this.#context.logger.warn(
            `Consumer "${this.#context.durable}" lost its fetch: ${
              describeError(error)
            }, fetching again`,
            { error },
          );
        }
      }
      if (this.#stop.signal.aborted) return;
      // The fetch ended without stop(): the connection closed, or the server
      // refused it. Open a new one unless the connection is gone for good.
      if (this.#context.connectionClosed()) {
        this.#context.logger.error(
          `Consumer "${this.#context.durable}" stopped: the NATS connection is closed`,
        );
        return;
      }
      try {
        await pause(Math.min(100 * 2 ** failures++, 5_000), this.#stop.signal);
        const consumer = await this.#context.setup(() => this.#consumer());
        messages = await this.#open(consumer);
      } catch (error) {
        if (this.#stop.signal.aborted) return;
        messages = undefined;
        this.#context.logger.warn(
          `Consumer "${this.#context.durable}" cannot fetch: ${
            describeError(error)
          }, trying again`,
          { error },
        );
      }
    }
  }

  /** Takes one message per free slot; after stop(), hands the rest back. */
  async #pump(messages: ConsumerMessages): Promise<void> {
    const iterator = messages[Symbol.asyncIterator]();
    while (true) {
      let permit: Permit | undefined;
      if (!this.#stop.signal.aborted) {
        // A free slot is taken at once, without a turn of the event loop.
        permit = this.#slots.tryAcquire();
        if (permit === undefined) {
          try {
            permit = await this.#slots.acquire({ signal: this.#stop.signal });
          } catch {
            // stopping: hand back what is buffered
          }
        }
      }
      let next: IteratorResult<JsMsg>;
      try {
        next = await iterator.next();
      } catch (error) {
        permit?.release();
        throw error;
      }
      if (next.done) {
        permit?.release();
        return;
      }
      if (permit === undefined || this.#stop.signal.aborted) {
        permit?.release();
        respond(next.value, (m) => m.nak(RELEASE_DELAY));
        continue;
      }
      void this.#handle(next.value, permit);
    }
  }

  async #handle(msg: JsMsg, permit: Permit): Promise<void> {
    const entry: InFlight = {
      msg,
      controller: new AbortController(),
      released: false,
      beat: undefined,
    };
    this.#inFlight.add(entry);
    try {
      await this.#process(entry);
    } catch (error) {
      this.#context.logger.error(
        `Cannot handle message ${msg.seq} of "${msg.subject}" for handler "${this.#context.spec.name}": ${
          describeError(error)
        }, it will be delivered again`,
        { error },
      );
      if (!entry.released) respond(msg, (m) => m.nak(this.#nakDelay(1_000)));
    } finally {
      entry.beat = undefined;
      permit.release();
      this.#inFlight.delete(entry);
      if (this.#inFlight.size === 0) {
        this.#stopBeats();
        // Ordered: the broker sends the next event only once this ack
        // arrives. Otherwise the ack waits for its macrotask: written at
        // once, it delays the reading of everything else, such as the
        // PubAcks of a producer in the same process.
        if (this.#context.options.ordered) this.#flushAcks();
      }
      this.#checkIdle();
    }
  }

  async #process(entry: InFlight): Promise<void> {
    const { msg } = entry;
    const { spec, durable } = this.#context;
    const attempt = msg.info.deliveryCount;
    let event: Event;
    try {
      event = decodeEvent(msg.data);
      if (event.type !== spec.type) {
        throw new SerializationError(
          `Cannot decode event: type "${event.type}" arrived on subject "${msg.subject}", publish events through an EventBus`,
        );
      }
    } catch (error) {
      this.#context.logger.error(
        `Cannot deliver message ${msg.seq} of "${msg.subject}" to handler "${spec.name}": ${
          describeError(error)
        }; moved it to the dead-letter stream "${this.#context.options.deadLetterStream}"`,
        { error, subject: msg.subject, sequence: msg.seq },
      );
      await this.#deadLetter(entry, {
        reason: "invalid-event",
        error,
        attempts: attempt,
        handler: spec.name,
        durable,
      });
      return;
    }
    this.#keepAlive(entry);
    let result: DeliveryResult;
    try {
      result = await this.#context.deliver({
        event,
        handler: spec.name,
        attempt,
        signal: entry.controller.signal,
      });
    } catch (error) {
      // Deliver never rejects by contract; a broken one must not lose events.
      result = { status: "retry", delay: 1_000, error };
    }
    entry.beat = undefined;
    if (entry.released) return; // close() already handed it back
    switch (result.status) {
      case "completed":
        this.#ack(msg);
        this.#context.completed();
        return;
      case "retry":
        respond(msg, (m) => m.nak(this.#nakDelay(result.delay)));
        return;
      case "dead-letter":
        await this.#deadLetter(entry, {
          reason: "handler-failed",
          error: result.error.cause,
          attempts: result.error.attempts,
          handler: spec.name,
          durable,
        });
        return;
      case "abandoned":
        respond(msg, (m) => m.nak(this.#nakDelay(0)));
        return;
    }
  }

  async #deadLetter(entry: InFlight, letter: DeadLetter): Promise<void> {
    try {
      await this.#context.deadLetter(entry.msg, letter);
    } catch (error) {
      this.#context.logger.error(
        `Cannot store the dead letter of message ${entry.msg.seq} for handler "${letter.handler}": ${
          describeError(error)
        }, it will be delivered again in ${DEAD_LETTER_RETRY_DELAY} ms`,
        { error },
      );
      if (!entry.released) {
        respond(entry.msg, (m) => m.nak(DEAD_LETTER_RETRY_DELAY));
      }
      return;
    }
    // Plain term(): nats-server 2.9 ignores a term with a reason.
    if (!entry.released) respond(entry.msg, (m) => m.term());
  }

  /** A nak delay that is safe once this consumer stopped fetching. */
  #nakDelay(delay: number): number {
    const ms = Math.max(0, Math.round(delay));
    return this.#stop.signal.aborted ? Math.max(ms, RELEASE_DELAY) : ms;
  }

  /** Tells the broker a long try is still running, every half ack wait. */
  #keepAlive(entry: InFlight): void {
    entry.beat = Date.now();
    this.#beatTimer ??= setTimeout(this.#beats, this.#beatEvery);
  }

  #beats = (): void => {
    this.#beatTimer = undefined;
    const now = Date.now();
    let running = false;
    for (const entry of this.#inFlight) {
      if (entry.beat === undefined || entry.released) continue;
      running = true;
      if (now - entry.beat >= this.#beatEvery) {
        entry.beat = now;
        respond(entry.msg, (m) => m.working());
      }
    }
    if (running) this.#beatTimer = setTimeout(this.#beats, this.#beatEvery);
  };

  /**
   * Queues an ack. Acks sent one by one each cost a socket write; queued
   * until the next macrotask (or until close() waits for this consumer or
   * hands the rest back; at once when ordered), the completions of one
   * batch go out in one write.
   */
  #ack(msg: JsMsg): void {
    this.#acks.push(msg);
    this.#ackTimer ??= setTimeout(this.#flushAcks, 0);
  }

  #flushAcks = (): void => {
    clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
    const acks = this.#acks;
    if (acks.length === 0) return;
    this.#acks = [];
    for (const msg of acks) respond(msg, (m) => m.ack());
  };

  #stopBeats(): void {
    clearTimeout(this.#beatTimer);
    this.#beatTimer = undefined;
  }

  #watch(messages: ConsumerMessages): void {
    (async () => {
      for await (const status of messages.status()) {
        switch (status.type) {
          case "consumer_deleted":
          case "consumer_not_found":
            this.#context.logger.warn(
              `Consumer "${this.#context.durable}" of stream "${this.#context.options.stream}" is gone, creating it again`,
            );
            this.#repair();
            break;
          case "heartbeats_missed":
            this.#context.logger.debug(
              `Consumer "${this.#context.durable}" missed ${status.count} heartbeats, pulling again`,
            );
            break;
          default:
            break;
        }
      }
    })().catch(() => {});
  }

  #repair(): void {
    if (this.#repairing !== undefined || this.#stop.signal.aborted) return;
    this.#repairing = this.#ensureConsumer().catch((error: unknown) => {
      this.#context.logger.warn(
        `Cannot create consumer "${this.#context.durable}" again: ${
          describeError(error)
        }`,
        { error },
      );
    }).finally(() => {
      this.#repairing = undefined;
    });
  }

  #closeMessages(): void {
    const messages = this.#messages;
    if (messages === undefined) return;
    try {
      messages.close().catch(() => {});
    } catch {
      // already closed
    }
  }

  #isIdle(): boolean {
    return !this.#running && this.#inFlight.size === 0;
  }

  #checkIdle(): void {
    if (!this.#isIdle() || this.#idle.length === 0) return;
    this.#flushAcks(); // before close() drains the connection
    const waiters = this.#idle;
    this.#idle = [];
    for (const resolve of waiters) resolve();
  }

  #wrap(error: unknown): unknown {
    if (error instanceof BackendError || isTransient(error)) return error;
    if (isClosedConnection(error)) return error;
    const { options, spec, durable } = this.#context;
    return new BackendError(
      BACKEND,
      `Cannot create consumer "${durable}" of stream "${options.stream}" for handler "${spec.name}": ${
        describeError(error)
      }, check the stream and the consumer's configuration`,
      { cause: error },
    );
  }
}

/** Sends ack, nak, term or working; a closed connection is not an error here. */
function respond(msg: JsMsg, action: (msg: JsMsg) => void): void {
  try {
    action(msg);
  } catch {
    // The connection is closed: the broker redelivers after the ack wait.
  }
}
