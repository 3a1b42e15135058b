// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * Emits orders to RabbitMQ and exits; each `emit` resolves after the
 * broker's publisher confirm. Start it before or after
 * `examples/rabbitmq_worker.ts`: the producer lists the worker's handler
 * names in the backend's `handlers` option, so it declares their queues
 * before its first emit and the worker gets every order, whenever it starts.
 *
 * Run: `deno run -A examples/rabbitmq_producer.ts [count]`. `AMQP_URL` picks
 * the broker, default `amqp://guest:guest@127.0.0.1:5672`;
 * `EVENTBUS_EXCHANGE` the exchange, default `"example"`.
 *
 * @module
 */

import process from "node:process";
import { fileURLToPath } from "node:url";
import { EventBus } from "@eventbus/core";
import { RabbitMqBackend } from "@eventbus/rabbitmq";

/** The events of the RabbitMQ examples. */
export type ShopEvents = {
  "order.placed": { orderId: number; total: number };
};

/**
 * The handler names of `examples/rabbitmq_worker.ts`, by event type: the
 * producer declares their queues so events are kept for them.
 */
export const HANDLERS: Record<string, string[]> = {
  "order.placed": ["invoice", "ship"],
};

const url = process.env.AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672";
const exchange = process.env.EVENTBUS_EXCHANGE ?? "example";

// import.meta.main: Deno and Bun; Node (through tsx) has none before 24.2.
if (import.meta.main ?? process.argv[1] === fileURLToPath(import.meta.url)) {
  const count = Number(process.argv[2] ?? 20);
  const backend = await connectOrExplain(url, exchange);
  await using bus = new EventBus<ShopEvents>({ backend });
  for (let orderId = 1; orderId <= count; orderId++) {
    await bus.emit("order.placed", { orderId, total: orderId * 10 });
  }
  console.log(
    `emitted ${count} "order.placed" events to exchange "${exchange}", all confirmed`,
  );
}

/**
 * Opens the backend (declaring the queues of {@linkcode HANDLERS} before
 * the first emit), or prints how to start RabbitMQ and exits.
 *
 * @param url The AMQP URL.
 * @param exchange The topic exchange.
 * @returns A connected backend.
 */
export async function connectOrExplain(
  url: string,
  exchange: string,
): Promise<RabbitMqBackend> {
  try {
    return await RabbitMqBackend.connect(url, {
      exchange,
      publishTimeout: 5000,
      handlers: HANDLERS,
    });
  } catch (error) {
    console.error(
      `Cannot reach RabbitMQ at ${url.replace(/\/\/[^@]*@/, "//")}: ${
        (error as Error).message
      }\n` +
        "Start one with `rabbitmq-server -detached` (or `docker run -p 5672:5672 rabbitmq:3`),\n" +
        "or point AMQP_URL at yours: AMQP_URL=amqp://user:pass@host:5672 deno task example:rabbitmq",
    );
    process.exit(1);
  }
}
