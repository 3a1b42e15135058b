// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * The SQS demo: a worker and a producer in one process, each with its own
 * backend as if they were separate processes, on fresh queue names. Shows
 * a queue per handler name each getting every order, a retry through the
 * visibility timeout (one second, as SQS counts), and a dead letter in
 * `<queue>-dlq`; then deletes the demo's queues.
 *
 * Run: `SQS_EMULATOR=1 deno task example:sqs` starts the fauxqs emulator
 * in-process on 127.0.0.1; `SQS_ENDPOINT=http://127.0.0.1:4566` uses
 * yours; `AWS_REGION=eu-west-1` uses AWS. With none of them it prints how
 * to point it at SQS.
 *
 * @module
 */

import process from "node:process";
import {
  DeleteQueueCommand,
  ListQueuesCommand,
  SQSClient,
} from "@aws-sdk/client-sqs";
import { EventBus } from "@eventbus/core";
import {
  explainFailures,
  SHOP_HANDLERS,
  type ShopEvents,
  sqsFromEnv,
} from "./sqs_producer.ts";
import { subscribe } from "./sqs_worker.ts";

const ORDERS = 20;
const expected = ORDERS * 2; // both handlers; order 13 dead-lettered once
const queuePrefix = `demo-${crypto.randomUUID().slice(0, 8)}-`;

let endpoint = process.env.SQS_ENDPOINT;
let emulator: { close(): Promise<void> } | undefined;
if (process.env.SQS_EMULATOR === "1") {
  const { buildApp } = await import("fauxqs");
  const app = buildApp({ logger: false });
  await app.listen({ port: 0, host: "127.0.0.1" });
  const { port } = app.server.address() as { port: number };
  endpoint = `http://127.0.0.1:${port}`;
  emulator = app;
  console.log(`fauxqs emulator on ${endpoint}`);
}

await explainFailures(async () => {
  const done = Promise.withResolvers<void>();
  let settled = 0;
  const settle = () => ++settled === expected && done.resolve();
  const worker = new EventBus<ShopEvents>({
    backend: await sqsFromEnv(
      { queuePrefix, waitTimeSeconds: 1, discoveryInterval: 1000 },
      endpoint,
    ),
    retry: { attempts: 3, backoff: { initial: 100, max: 1000 } },
    logger: {
      ...console,
      warn: (m) => console.log(`retry: ${m.split(":")[0]}`),
    },
    onError: (error) => {
      console.log(`dead letter: ${error.message.split(":")[0]}`);
      settle();
    },
  });
  subscribe(worker, (line) => {
    console.log(line);
    settle();
  });
  await worker.listen();

  const producer = new EventBus<ShopEvents>({
    backend: await sqsFromEnv(
      { queuePrefix, discoveryInterval: 1000, handlers: SHOP_HANDLERS },
      endpoint,
    ),
  });
  for (let orderId = 1; orderId <= ORDERS; orderId++) {
    await producer.emit("order.placed", { orderId, total: orderId * 10 });
  }
  console.log(`producer: emitted ${ORDERS} orders`);
  const timer = setTimeout(
    () => done.reject(new Error("demo timed out")),
    60_000,
  );
  await done.promise.finally(() => clearTimeout(timer));
  await producer.close();
  const report = await worker.close({ timeout: 5000 });
  console.log(
    `\n${report.completed} deliveries completed, 1 dead-lettered to "${queuePrefix}shipping-dlq"`,
  );

  const client = new SQSClient({
    region: process.env.AWS_REGION ?? "us-east-1",
    ...(endpoint ? { endpoint } : {}),
    ...(endpoint && !process.env.AWS_ACCESS_KEY_ID
      ? { credentials: { accessKeyId: "test", secretAccessKey: "test" } }
      : {}),
  });
  const { QueueUrls = [] } = await client.send(
    new ListQueuesCommand({ QueueNamePrefix: queuePrefix }),
  );
  for (const QueueUrl of QueueUrls) {
    await client.send(new DeleteQueueCommand({ QueueUrl }));
  }
  client.destroy();
});
await emulator?.close();
