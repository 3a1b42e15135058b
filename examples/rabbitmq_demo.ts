// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * The RabbitMQ demo: two workers and a producer, each with its own
 * connection as if they were separate processes, on a fresh exchange. Shows
 * publisher confirms, competing workers on one queue, a second handler name
 * with its own queue, retries through TTL delay queues and a dead letter in
 * the queue `<exchange>.dead-letter`, then deletes what it declared (the
 * delay queues delete themselves a minute after their last use, `x-expires`).
 *
 * Run: `deno task example:rabbitmq`. `AMQP_URL` picks the broker, default
 * `amqp://guest:guest@127.0.0.1:5672`.
 *
 * @module
 */

import process from "node:process";
import { Connection } from "rabbitmq-client";
import { EventBus } from "@eventbus/core";
import { connectOrExplain, type ShopEvents } from "./rabbitmq_producer.ts";
import { subscribe } from "./rabbitmq_worker.ts";

const ORDERS = 30;
const url = process.env.AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672";
const exchange = `demo-${crypto.randomUUID().slice(0, 8)}`;

const done = Promise.withResolvers<void>();
let handled = 0;
let deadLetters = 0;
const expected = ORDERS * 2; // every order reaches both handlers, once each
const settle = () => {
  if (handled + deadLetters === expected) done.resolve();
};
const workers: EventBus<ShopEvents>[] = [];
for (const name of ["worker-a", "worker-b"]) {
  const bus = new EventBus<ShopEvents>({
    backend: await connectOrExplain(url, exchange),
    retry: { attempts: 3, backoff: { initial: 50, max: 500 } },
    logger: {
      ...console,
      warn: (m) => console.log(`${name}: retry: ${m.split(":")[0]}`),
      debug() {},
      info() {},
    },
    onError: (error) => {
      deadLetters++;
      console.log(`${name}: dead letter: ${error.message.split(":")[0]}`);
      settle();
    },
  });
  subscribe(bus, (line) => {
    console.log(`${name}: ${line}`);
    handled++;
    settle();
  });
  await bus.listen(); // declares the queues before anything is published
  workers.push(bus);
}

const producer = new EventBus<ShopEvents>({
  backend: await connectOrExplain(url, exchange),
});
for (let orderId = 1; orderId <= ORDERS; orderId++) {
  await producer.emit("order.placed", { orderId, total: orderId * 10 });
}
console.log(`producer: ${ORDERS} orders emitted and confirmed`);
const timer = setTimeout(
  () => done.reject(new Error("demo timed out")),
  30_000,
);
await done.promise.finally(() => clearTimeout(timer));
await producer.close();
for (const bus of workers) await bus.close({ timeout: 5000 });

const admin = new Connection(url);
admin.on("error", () => {});
const dead = await admin.queueDeclare({
  queue: `${exchange}.dead-letter`,
  passive: true,
});
console.log(
  `\n${handled} deliveries handled, ${deadLetters} dead-lettered; ` +
    `queue "${exchange}.dead-letter" holds ${dead.messageCount} message`,
);
for (const queue of ["invoice", "ship", "dead-letter"]) {
  await admin.queueDelete({ queue: `${exchange}.${queue}` });
}
for (const name of [exchange, `${exchange}.dead-letter`]) {
  await admin.exchangeDelete({ exchange: name });
}
await admin.close();
