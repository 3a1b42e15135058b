// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * A worker on NATS JetStream. Every worker started with the same handler
 * name shares the orders (each order goes to one of them); a handler with
 * another name would get every order too. Failed tries are retried with
 * backoff, and dead-lettered to the stream `<stream>_DLQ` after the last.
 *
 * Run: `deno run -A examples/nats_worker.ts [worker name]` in as many
 * terminals as you like, with the environment of `nats_producer.ts`.
 * Ctrl-C closes the bus: running handlers finish (up to 5 s) and whatever
 * is left goes back to the stream for the other workers.
 *
 * @module
 */

import process from "node:process";
import { EventBus } from "@eventbus/core";
import { connectOrExplain, type ShopEvents } from "./nats_producer.ts";

const worker = process.argv[2] ?? `worker-${process.pid}`;
const bus = new EventBus<ShopEvents>({
  backend: await connectOrExplain(),
  retry: { attempts: 3, backoff: { initial: 100, max: 1000 } },
  logger: {
    debug() {},
    info() {},
    warn: (message) =>
      console.log(
        `${worker}: ${message.replace(/ \(id "[^"]+"\)/, "").split(": ")[0]}`,
      ),
    error: (message) => console.error(`${worker}: ${message}`),
  },
});

bus.subscribe("order.placed", async (event, { attempt, signal }) => {
  const { orderId } = event.data;
  // Pretend to send a confirmation mail; honour signal in real I/O.
  await new Promise((resolve) => setTimeout(resolve, 20 + orderId % 5 * 10));
  signal.throwIfAborted();
  if (orderId % 7 === 0 && attempt === 1) {
    throw new Error(`mail server busy for order ${orderId}`);
  }
  console.log(`${worker}: handled order ${orderId} (attempt ${attempt})`);
}, { async: true, name: "send-confirmation" });

await bus.listen();
console.log(`${worker}: ready`);

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, async () => {
    const report = await bus.close({ timeout: 5_000 });
    console.log(`${worker}: closed after ${report.completed} orders`);
    process.exit(0);
  });
}
