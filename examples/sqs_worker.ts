// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * A worker for the orders that `examples/sqs_producer.ts` emits: two
 * handler names (two queues, each gets every order), one of them flaky so
 * visibility-timeout retries and a dead letter in `<queue>-dlq` show. Start
 * it in several terminals: workers sharing a handler name poll the same
 * queue. Stops on Ctrl-C, making unfinished messages visible again.
 *
 * Run: `SQS_ENDPOINT=http://127.0.0.1:4566 deno run -A examples/sqs_worker.ts`
 * (or `AWS_REGION=...` for AWS).
 *
 * @module
 */

import process from "node:process";
import { fileURLToPath } from "node:url";
import { EventBus } from "@eventbus/core";
import {
  explainFailures,
  type ShopEvents,
  sqsFromEnv,
} from "./sqs_producer.ts";

// import.meta.main: Deno and Bun; Node (through tsx) has none before 24.2.
if (import.meta.main ?? process.argv[1] === fileURLToPath(import.meta.url)) {
  await explainFailures(async () => {
    const bus = new EventBus<ShopEvents>({
      backend: await sqsFromEnv({ waitTimeSeconds: 5 }),
      retry: { attempts: 3, backoff: { initial: 1000, max: 5000 } },
      onError: (error) => console.log(`dead letter: ${error.message}`),
    });
    subscribe(bus, console.log);
    await bus.listen();
    console.log("worker polling its SQS queues, Ctrl-C to stop");
    const stop = async () => {
      const report = await bus.close({ timeout: 5000 });
      console.log(`closed: ${report.completed} deliveries completed`);
      process.exit(0);
    };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
}

/**
 * Subscribes the example's two handlers: "shipping" (fails once on order
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
    if (orderId === 7 && ctx.attempt < 2) {
      throw new Error(`courier busy (receive ${ctx.attempt})`);
    }
    log(`shipping order ${orderId} (receive ${ctx.attempt})`);
  }, { async: true, name: "shipping" });
  bus.subscribe("order.placed", (event) => {
    log(`invoicing order ${event.data.orderId}: ${event.data.total}`);
  }, { async: true, name: "invoicing" });
}
