// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * A worker for the orders that `examples/rabbitmq_producer.ts` emits: two
 * handler names (each gets every order), one of them flaky so retries and a
 * dead letter show. Start it in several terminals: workers sharing a handler
 * name consume one queue and split its messages. Stops on Ctrl-C, requeuing
 * unfinished messages for the other workers. Its handler names are the ones
 * the producer declares (`HANDLERS` in `examples/rabbitmq_producer.ts`), so
 * it also gets the orders emitted before it started.
 *
 * Run: `deno run -A examples/rabbitmq_worker.ts`.
 *
 * @module
 */

import process from "node:process";
import { fileURLToPath } from "node:url";
import { EventBus } from "@eventbus/core";
import { connectOrExplain, type ShopEvents } from "./rabbitmq_producer.ts";

const url = process.env.AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672";
const exchange = process.env.EVENTBUS_EXCHANGE ?? "example";

// import.meta.main: Deno and Bun; Node (through tsx) has none before 24.2.
if (import.meta.main ?? process.argv[1] === fileURLToPath(import.meta.url)) {
  const backend = await connectOrExplain(url, exchange);
  const bus = new EventBus<ShopEvents>({
    backend,
    retry: { attempts: 3, backoff: { initial: 200, max: 2000 } },
    onError: (error) => console.log(`dead letter: ${error.message}`),
  });
  subscribe(bus, console.log);
  await bus.listen();
  console.log(
    `worker listening on ${
      url.replace(/\/\/[^@]*@/, "//")
    } (exchange "${exchange}"), Ctrl-C to stop`,
  );
  const stop = async () => {
    const report = await bus.close({ timeout: 5000 });
    console.log(`closed: ${report.completed} deliveries completed`);
    process.exit(0);
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
}

/**
 * Subscribes the example's handlers.
 *
 * @param bus The bus to subscribe on.
 * @param log Where handlers report.
 */
export function subscribe(
  bus: EventBus<ShopEvents>,
  log: (line: string) => void,
): void {
  bus.subscribe("order.placed", async (event, ctx) => {
    await new Promise((resolve) => setTimeout(resolve, 20));
    ctx.signal.throwIfAborted();
    log(`invoice   order ${event.data.orderId} (${event.data.total} EUR)`);
  }, { async: true, name: "invoice" });
  bus.subscribe("order.placed", (event, ctx) => {
    // Every 7th order fails twice, then succeeds; order 13 never does.
    const { orderId } = event.data;
    if (orderId === 13 || (orderId % 7 === 0 && ctx.attempt < 3)) {
      throw new Error(`warehouse busy for order ${orderId}`);
    }
    log(`ship      order ${orderId} (try ${ctx.attempt})`);
  }, { async: true, name: "ship" });
}
