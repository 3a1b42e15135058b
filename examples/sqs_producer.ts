// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * Emits orders to the SQS queues of their handlers and exits. Pair it with
 * `examples/sqs_worker.ts` running in other terminals, started before or
 * after it: the producer declares the worker's handler names (the option
 * `handlers`), so their queues exist and keep every order from the first
 * emit on, until a worker takes them.
 *
 * Run against an emulator (fauxqs, LocalStack, ElasticMQ):
 * `SQS_ENDPOINT=http://127.0.0.1:4566 deno run -A examples/sqs_producer.ts [count]`;
 * against AWS: `AWS_REGION=eu-west-1 deno run -A examples/sqs_producer.ts`
 * with credentials from the usual AWS sources. `SQS_PREFIX` picks the queue
 * name prefix, default `"example-"`.
 *
 * @module
 */

import process from "node:process";
import { fileURLToPath } from "node:url";
import type { SQSClientConfig } from "@aws-sdk/client-sqs";
import { EventBus } from "@eventbus/core";
import { SqsBackend, type SqsBackendOptions } from "@eventbus/sqs";

/** The events of the SQS examples. */
export type ShopEvents = {
  "order.placed": { orderId: number; total: number };
};

/** The handler names of `examples/sqs_worker.ts`, per event type. */
export const SHOP_HANDLERS: Readonly<Record<string, readonly string[]>> = {
  "order.placed": ["shipping", "invoicing"],
};

// import.meta.main: Deno and Bun; Node (through tsx) has none before 24.2.
if (import.meta.main ?? process.argv[1] === fileURLToPath(import.meta.url)) {
  const count = Number(process.argv[2] ?? 20);
  await explainFailures(async () => {
    await using bus = new EventBus<ShopEvents>({
      backend: await sqsFromEnv({ handlers: SHOP_HANDLERS }),
    });
    for (let orderId = 1; orderId <= count; orderId++) {
      await bus.emit("order.placed", { orderId, total: orderId * 10 });
    }
    console.log(`emitted ${count} "order.placed" events`);
  });
}

/**
 * Builds the backend from `SQS_ENDPOINT` or `AWS_REGION` and `SQS_PREFIX`;
 * with neither, prints how to point the example at SQS and exits.
 *
 * @param options Extra backend options.
 * @param endpoint An endpoint that overrides `SQS_ENDPOINT`.
 * @returns A backend that owns its client.
 */
export async function sqsFromEnv(
  options: SqsBackendOptions = {},
  endpoint: string | undefined = process.env.SQS_ENDPOINT,
): Promise<SqsBackend> {
  const region = process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION;
  if (!endpoint && !region) {
    console.log(
      "No SQS configured. Point the example at SQS:\n\n" +
        "  an emulator:  SQS_ENDPOINT=http://127.0.0.1:4566 deno task example:sqs\n" +
        "  AWS itself:   AWS_REGION=eu-west-1 deno task example:sqs  (AWS credentials as usual)\n" +
        "  in-process:   SQS_EMULATOR=1 deno task example:sqs  (starts fauxqs on 127.0.0.1)",
    );
    process.exit(0);
  }
  const config: SQSClientConfig = { region: region ?? "us-east-1" };
  if (endpoint) {
    config.endpoint = endpoint;
    // Emulators accept any credentials; AWS's own come from the usual chain.
    if (!process.env.AWS_ACCESS_KEY_ID) {
      config.credentials = { accessKeyId: "test", secretAccessKey: "test" };
    }
  }
  return await SqsBackend.connect(config, {
    queuePrefix: process.env.SQS_PREFIX ?? "example-",
    ...options,
  });
}

/**
 * Runs `body`, turning an unreachable endpoint into a short explanation
 * instead of a stack trace.
 *
 * @param body The example's work.
 */
export async function explainFailures(
  body: () => Promise<void>,
): Promise<void> {
  try {
    await body();
  } catch (error) {
    const cause = (error as { cause?: unknown }).cause ?? error;
    console.error(
      `Cannot reach SQS: ${(cause as Error).message ?? String(cause)}\n` +
        "Check SQS_ENDPOINT or AWS_REGION and your credentials.",
    );
    process.exit(1);
  }
}
