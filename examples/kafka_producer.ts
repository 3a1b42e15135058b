// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * Emits orders to a Kafka topic and exits. Pair it with
 * `examples/kafka_worker.ts` running in other terminals.
 *
 * Run: `KAFKA_BROKERS=127.0.0.1:9092 deno run -A examples/kafka_producer.ts [count]`.
 * `KAFKA_TOPIC` picks the topic, default `"example-orders"`. Against
 * librdkafka's mock cluster (`python3 tests/fixtures/_kafka_mock.py` prints its
 * bootstrap servers) also set `KAFKA_IDEMPOTENT=false`: the mock cannot
 * start an idempotent producer.
 *
 * @module
 */

import { connect } from "node:net";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { EventBus } from "@eventbus/core";
import { KafkaBackend, type KafkaBackendOptions } from "@eventbus/kafka";

/** The events of the Kafka examples. */
export type ShopEvents = {
  "order.placed": { orderId: number; total: number };
};

// import.meta.main: Deno and Bun; Node (through tsx) has none before 24.2.
if (import.meta.main ?? process.argv[1] === fileURLToPath(import.meta.url)) {
  const count = Number(process.argv[2] ?? 20);
  const backend = await kafkaFromEnv();
  await using bus = new EventBus<ShopEvents>({ backend });
  for (let orderId = 1; orderId <= count; orderId++) {
    // Orders of one customer share a partition key, so they stay in order.
    await bus.emit("order.placed", { orderId, total: orderId * 10 }, {
      metadata: { partitionkey: `customer-${orderId % 5}` },
    });
  }
  console.log(`emitted ${count} "order.placed" events to "${backend.topic}"`);
}

/**
 * Builds the backend from `KAFKA_BROKERS`, `KAFKA_TOPIC` and
 * `KAFKA_IDEMPOTENT`; without `KAFKA_BROKERS`, or when the first broker does
 * not answer, prints how to point the example at one and exits.
 *
 * @param options Extra backend options.
 * @returns A backend on the configured cluster.
 */
export async function kafkaFromEnv(
  options: KafkaBackendOptions = {},
): Promise<KafkaBackend> {
  const brokers = (process.env.KAFKA_BROKERS ?? "").split(",")
    .map((b) => b.trim()).filter(Boolean);
  if (brokers.length === 0) {
    console.log(
      "No Kafka configured. Point the example at a cluster:\n\n" +
        "  KAFKA_BROKERS=127.0.0.1:9092 deno task example:kafka\n\n" +
        "A local one: `docker run -p 9092:9092 apache/kafka:3.9.0`, or\n" +
        "librdkafka's mock cluster (apt-get install librdkafka1):\n" +
        "  python3 tests/fixtures/_kafka_mock.py   # prints bootstrap=HOST:PORT,...\n" +
        "  KAFKA_BROKERS=HOST:PORT,... KAFKA_IDEMPOTENT=false deno task example:kafka",
    );
    process.exit(0);
  }
  const [host, port] = splitHostPort(brokers[0]!);
  if (!await answers(host, Number(port))) {
    console.error(
      `Cannot reach Kafka at ${brokers[0]}: nothing answers there.\n` +
        "Start a broker or fix KAFKA_BROKERS (comma-separated host:port).",
    );
    process.exit(1);
  }
  return KafkaBackend.connect({ brokers, clientId: "eventbus-example" }, {
    topic: process.env.KAFKA_TOPIC ?? "example-orders",
    idempotent: process.env.KAFKA_IDEMPOTENT !== "false",
    ...options,
  });
}

function answers(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), 2000);
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

function splitHostPort(address: string): [string, string] {
  const index = address.lastIndexOf(":");
  return [address.slice(0, index), address.slice(index + 1)];
}
