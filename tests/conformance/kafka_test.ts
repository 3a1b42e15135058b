// Copyright 2026 the @eventbus/core authors. MIT license.
// The conformance suite on Kafka: librdkafka's mock cluster by default, a
// real cluster when KAFKA_BROKERS is set (see tests/_kafka.ts).

import { after } from "node:test";
import { uuidv7 } from "../../mod.ts";
import type { AsyncBackend } from "../../mod.ts";
import { startKafka } from "../_kafka.ts";
import { runConformance } from "./suite.ts";

const started = await startKafka();
const kafka = started.kafka;
if (kafka !== undefined) {
  console.log(`Kafka conformance runs against ${kafka.description}`);
  after(() => kafka.stop());
}

await runConformance({
  name: `KafkaBackend (${
    kafka?.mock === false ? "real cluster" : "mock cluster"
  })`,
  unavailable: () => Promise.resolve(started.reason),
  async open() {
    const k = kafka!;
    const topic = `conf-${uuidv7()}`;
    const options = k.backendOptions(topic);
    await k.createTopic(topic, 4);
    await k.createTopic(`${topic}.dlq`, 1);
    const backends: AsyncBackend[] = [];
    return {
      backend() {
        const backend = k.backend(options);
        backends.push(backend);
        return Promise.resolve(backend);
      },
      async [Symbol.asyncDispose]() {
        await Promise.all(backends.map((b) => b.close({ timeout: 1000 })));
        await k.cleanup([topic, `${topic}.dlq`], []);
      },
    };
  },
  features: { durable: true, bulk: 1000 },
});
