// Copyright 2026 the @eventbus/core authors. MIT license.
// The RabbitMQ backend's consumer: rabbitmq-client's Consumer, less what
// close() cannot do with it. It sets up a channel (queue, exchanges,
// bindings, qos, basic.consume), sets it up again when the channel or the
// connection is lost, and settles each delivery with what its handler
// returned. A delivery handed back at close (HANDED_BACK) is acknowledged
// with the others in one `multiple` acknowledgement just before the channel
// closes: RabbitMQ's quorum queue client in the channel keeps at most 32
// commands unapplied and stashes further acknowledgements until earlier ones
// are applied; a channel that closes meanwhile loses the stash, and the
// messages come back with one more `x-delivery-count`. One acknowledgement is
// one command, sent before the channel goes down.

import { EventEmitter } from "node:events";
import {
  type AsyncMessage,
  type Channel,
  type Cmd,
  type Connection,
  ConsumerStatus,
  type MethodParams,
} from "rabbitmq-client";
import { nextImmediate } from "@eventbus/core/backend-kit";

/** A handler's answer: the delivery was handed back, acknowledge at close. */
export const HANDED_BACK = "handed-back";

/** What a handler returns for one delivery. */
export type Settlement = ConsumerStatus | typeof HANDED_BACK;

/** What the consumer declares and consumes on each channel it sets up. */
export interface ConsumerSetup {
  queue: string;
  queueOptions: MethodParams[Cmd.QueueDeclare];
  prefetch: number;
  exchanges: MethodParams[Cmd.ExchangeDeclare][];
  queueBindings: MethodParams[Cmd.QueueBind][];
}

/** Shortest and longest pause before setting a lost channel up again. */
const RETRY_LOW = 1000;
const RETRY_HIGH = 30_000;

/**
 * One queue's consumer. Emits `ready` each time it consumes on a new
 * channel, and `error` when setting up, settling or a handler failed (it
 * recovers by itself).
 */
export class QueueConsumer extends EventEmitter {
  #connection: Connection;
  #setup: ConsumerSetup;
  #handler: (message: AsyncMessage) => Promise<Settlement>;
  #channel: Channel | undefined;
  #consumerTag = "";
  /** Deliveries whose handler has not settled yet. */
  #running = new Set<Promise<void>>();
  /** Delivery tags handed back on the current channel, not acknowledged. */
  #handedBack: number[] = [];
  #closing = false;
  #closed: Promise<void> | undefined;
  #settingUp: Promise<void> | undefined;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #retries = 0;

  /**
   * Starts consuming at once.
   *
   * @param connection The connection to open channels on.
   * @param setup What to declare and consume.
   * @param handler Runs each delivery; its answer settles it.
   */
  constructor(
    connection: Connection,
    setup: ConsumerSetup,
    handler: (message: AsyncMessage) => Promise<Settlement>,
  ) {
    super();
    this.#connection = connection;
    this.#setup = setup;
    this.#handler = handler;
    this.#start();
  }

  #start(): void {
    this.#retryTimer = undefined;
    const settingUp = this.#setUp().catch((error: unknown) => {
      if (this.#closing) return;
      // Once per outage, as rabbitmq-client's Consumer does.
      if (this.#retries === 0) this.emit("error", error);
      this.#retry();
    });
    this.#settingUp = settingUp.finally(() => {
      if (this.#settingUp === settingUp) this.#settingUp = undefined;
    });
  }

  #retry(): void {
    if (this.#closing || this.#retryTimer !== undefined) return;
    const delay = Math.min(RETRY_HIGH, RETRY_LOW * 2 ** this.#retries++);
    this.#retryTimer = setTimeout(() => this.#start(), delay);
  }

  async #setUp(): Promise<void> {
    // Deliveries of a lost channel cannot be settled on a new one.
    await Promise.allSettled(this.#running);
    if (this.#closing) return;
    let channel = this.#channel;
    if (channel === undefined || !channel.active) {
      const fresh = await this.#connection.acquire({
        emitErrorsFromChannel: true,
      });
      channel = this.#channel = fresh;
      this.#handedBack = [];
      fresh.on("error", (error: unknown) => this.emit("error", error));
      fresh.once("close", () => {
        if (this.#closing || this.#channel !== fresh) return;
        this.#consumerTag = "";
        this.#retry();
      });
      if (this.#closing) {
        await fresh.close().catch(() => {});
        return;
      }
    }
    const { queue, queueOptions, prefetch, exchanges, queueBindings } =
      this.#setup;
    await channel.queueDeclare({ ...queueOptions, queue });
    for (const exchange of exchanges) await channel.exchangeDeclare(exchange);
    for (const binding of queueBindings) await channel.queueBind(binding);
    await channel.basicQos({ prefetchCount: prefetch });
    const used = channel;
    const { consumerTag } = await channel.basicConsume(
      { queue },
      (message) => this.#deliver(used, message),
    );
    this.#consumerTag = consumerTag;
    // The server cancels a consumer whose queue was deleted.
    channel.once("basic.cancel", (_tag: string, error: unknown) => {
      if (this.#closing || this.#channel !== used) return;
      this.#consumerTag = "";
      this.emit("error", error);
      this.#retry();
    });
    this.#retries = 0;
    if (this.#closing) return;
    queueMicrotask(() => this.emit("ready"));
  }

  #deliver(channel: Channel, message: AsyncMessage): void {
    const settled = this.#settle(channel, message);
    this.#running.add(settled);
    void settled.finally(() => this.#running.delete(settled));
  }

  async #settle(channel: Channel, message: AsyncMessage): Promise<void> {
    let settlement: Settlement;
    try {
      settlement = await this.#handler(message);
    } catch (error) {
      settlement = ConsumerStatus.REQUEUE;
      this.emit("error", error);
    }
    const { deliveryTag } = message;
    try {
      if (settlement === HANDED_BACK) {
        if (channel === this.#channel) this.#handedBack.push(deliveryTag);
      } else if (settlement === ConsumerStatus.REQUEUE) {
        channel.basicNack({ deliveryTag, requeue: true });
      } else {
        channel.basicAck({ deliveryTag });
      }
    } catch (error) {
      // The channel is gone: the broker requeues the message itself.
      (error as Error).message = `failed to ack/nack message; ${
        (error as Error).message
      }`;
      this.emit("error", error);
    }
  }

  /**
   * Cancels the consumer, waits until every delivery settled, acknowledges
   * the ones handed back at once, then closes the channel.
   */
  close(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  async #close(): Promise<void> {
    this.#closing = true;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    await this.#settingUp;
    const channel = this.#channel;
    if (channel?.active && this.#consumerTag !== "") {
      const consumerTag = this.#consumerTag;
      this.#consumerTag = "";
      await channel.basicCancel({ consumerTag }).catch(() => {});
      // Deliveries that came before basic.cancel-ok reach their callback
      // through setImmediate, after this continuation.
      await nextImmediate();
    }
    while (this.#running.size > 0) await Promise.allSettled(this.#running);
    // Every other delivery is settled: `multiple` acknowledges exactly the
    // ones handed back.
    if (channel?.active && this.#handedBack.length > 0) {
      const deliveryTag = this.#handedBack.reduce((a, b) => Math.max(a, b));
      this.#handedBack = [];
      try {
        channel.basicAck({ deliveryTag, multiple: true });
      } catch (error) {
        this.emit("error", error);
      }
    }
    await channel?.close().catch(() => {});
  }
}
