// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * The Kafka demo: a worker and a producer in one process, each with its own
 * backend as if they were separate processes, on a fresh topic. Shows two
 * consumer groups each getting every order, in-process retries, and a dead
 * letter in `<topic>.dlq`.
 *
 * Run: `KAFKA_BROKERS=127.0.0.1:9092 deno task example:kafka` (without
 * `KAFKA_BROKERS` it prints how to point it at a cluster).
 *
 * @module
 */

import process from "node:process";
import { EventBus } from "@eventbus/core";
import { kafkaFromEnv, type ShopEvents } from "./kafka_producer.ts";
import { subscribe } from "./kafka_worker.ts";

const ORDERS = 20;
const expected = ORDERS * 2; // both handlers; order 13 dead-lettered once
const topic = process.env.KAFKA_TOPIC ??
  `demo-${crypto.randomUUID().slice(0, 8)}`;

const worker = new EventBus<ShopEvents>({
  backend: await kafkaFromEnv({ topic }),
  retry: { attempts: 3, backoff: { initial: 100, max: 1000 } },
  logger: { ...console, warn: (m) => console.log(`retry: ${m.split(":")[0]}`) },
  onError: (error) => {
    console.log(`dead letter: ${error.message.split(":")[0]}`);
    if (++settled === expected) done.resolve();
  },
});
const done = Promise.withResolvers<void>();
let settled = 0;
subscribe(worker, (line) => {
  console.log(line);
  if (++settled === expected) done.resolve();
});
await worker.listen();

const producer = new EventBus<ShopEvents>({
  backend: await kafkaFromEnv({ topic }),
});
for (let orderId = 1; orderId <= ORDERS; orderId++) {
  await producer.emit("order.placed", { orderId, total: orderId * 10 }, {
    metadata: { partitionkey: `customer-${orderId % 5}` },
  });
}
console.log(`producer: emitted ${ORDERS} orders to topic "${topic}"`);
const timer = setTimeout(
  () => done.reject(new Error("demo timed out")),
  60_000,
);
await done.promise.finally(() => clearTimeout(timer));
await producer.close();
const report = await worker.close({ timeout: 5000 });
console.log(
  `\n${report.completed} deliveries completed, 1 dead-lettered to "${topic}.dlq"`,
);
