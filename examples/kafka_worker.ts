// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * A worker for the orders that `examples/kafka_producer.ts` emits: two
 * handler names (two consumer groups, each gets every order), one of them
 * flaky so in-process retries and a dead letter in `<topic>.dlq` show.
 * Start it in several terminals: workers sharing a handler name split the
 * topic's partitions. Stops on Ctrl-C, leaving uncommitted offsets to the
 * group.
 *
 * Run: `KAFKA_BROKERS=127.0.0.1:9092 deno run -A examples/kafka_worker.ts`.
 *
 * @module
 */

import process from "node:process";
import { fileURLToPath } from "node:url";
import { EventBus } from "@eventbus/core";
import { kafkaFromEnv, type ShopEvents } from "./kafka_producer.ts";

// import.meta.main: Deno and Bun; Node (through tsx) has none before 24.2.
if (import.meta.main ?? process.argv[1] === fileURLToPath(import.meta.url)) {
  const backend = await kafkaFromEnv();
  const bus = new EventBus<ShopEvents>({
    backend,
    retry: { attempts: 3, backoff: { initial: 200, max: 2000 } },
    onError: (error) => console.log(`dead letter: ${error.message}`),
  });
  subscribe(bus, console.log);
  await bus.listen();
  console.log(`worker consuming "${backend.topic}", Ctrl-C to stop`);
  const stop = async () => {
    const report = await bus.close({ timeout: 5000 });
    console.log(`closed: ${report.completed} deliveries completed`);
    process.exit(0);
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
}

/**
 * Subscribes the example's two handlers: "shipping" (fails twice on order
 * 7, and always on order 13) and "invoicing".
 *
 * @param bus The bus to subscribe on.
 * @param log Where each handled order is reported.
 */
export function subscribe(
  bus: EventBus<ShopEvents>,
  log: (line: string) => void,
): void {
  bus.subscribe("order.placed", (event, ctx) => {
    const { orderId } = event.data;
    if (orderId === 13) throw new Error(`no address for order ${orderId}`);
    if (orderId === 7 && ctx.attempt < 3) {
      throw new Error(`courier busy (try ${ctx.attempt})`);
    }
    log(`shipping order ${orderId} (try ${ctx.attempt})`);
  }, { async: true, name: "shipping" });
  bus.subscribe("order.placed", (event) => {
    log(`invoicing order ${event.data.orderId}: ${event.data.total}`);
  }, { async: true, name: "invoicing" });
}
