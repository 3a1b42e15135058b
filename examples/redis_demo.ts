// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * The Redis Streams demo: two workers and a producer, each with its own
 * connection as if they were separate processes, on a fresh key prefix.
 * Shows competing workers, a second handler name, retries and a dead letter
 * in the stream `<prefix>-dead-letter`, then deletes the demo's keys.
 *
 * Run: `deno task example:redis`.
 * `REDIS_URL` picks the server, default `redis://127.0.0.1:6379`.
 *
 * @module
 */

import process from "node:process";
import { createClient } from "@redis/client";
import { EventBus } from "@eventbus/core";
import { connectOrExplain, type ShopEvents } from "./redis_producer.ts";
import { subscribe } from "./redis_worker.ts";

const ORDERS = 30;
const url = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const prefix = `demo-${crypto.randomUUID().slice(0, 8)}`;

const producer = new EventBus<ShopEvents>({
  backend: await connectOrExplain(url, prefix),
});
const done = Promise.withResolvers<void>();
let handled = 0;
let deadLetters = 0;
const expected = ORDERS * 2 - 1; // order 13 never ships
const workers: EventBus<ShopEvents>[] = [];
for (const name of ["worker-a", "worker-b"]) {
  const bus = new EventBus<ShopEvents>({
    backend: await connectOrExplain(url, prefix),
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
      if (handled + deadLetters === expected + 1) done.resolve();
    },
  });
  subscribe(bus, (line) => {
    console.log(`${name}: ${line}`);
    if (++handled + deadLetters === expected + 1) done.resolve();
  });
  await bus.listen();
  workers.push(bus);
}

for (let orderId = 1; orderId <= ORDERS; orderId++) {
  await producer.emit("order.placed", { orderId, total: orderId * 10 });
}
console.log(`producer: emitted ${ORDERS} orders`);
const timer = setTimeout(
  () => done.reject(new Error("demo timed out")),
  30_000,
);
await done.promise.finally(() => clearTimeout(timer));
await producer.close();
for (const bus of workers) await bus.close({ timeout: 5000 });

const admin = createClient({ url });
await admin.connect();
const dead = await admin.sendCommand(["XLEN", `${prefix}-dead-letter`]);
console.log(
  `\n${handled} deliveries handled, ${deadLetters} dead-lettered; ` +
    `stream "${prefix}-dead-letter" holds ${dead} entry`,
);
const keys = await admin.sendCommand(["KEYS", `${prefix}*`]) as string[];
if (keys.length > 0) await admin.sendCommand(["DEL", ...keys]);
admin.destroy();
