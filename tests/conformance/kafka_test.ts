// Copyright 2026 the @eventbus/core authors. MIT license.
// The conformance suite on Kafka: librdkafka's mock cluster by default, a
// real cluster when KAFKA_BROKERS is set (see tests/fixtures/_kafka.ts).

import { after, describe, it } from "node:test";
import { Kafka, logLevel } from "kafkajs";
import {
  type ConformanceTarget,
  runConformance,
} from "@eventbus/core/conformance";
import { otelRoundTrip } from "./_otel_round_trip.ts";
import { uuidv7 } from "../../mod.ts";
import type { AsyncBackend } from "../../mod.ts";
import { brokerMissing } from "../fixtures/_brokers.ts";
import { startKafka } from "../fixtures/_kafka.ts";

const started = await startKafka();
const kafka = started.kafka;
if (kafka !== undefined) {
  console.log(`Kafka conformance runs against ${kafka.description}`);
  after(() => kafka.stop());
}

const target: ConformanceTarget = {
  name: `KafkaBackend (${
    kafka?.mock === false ? "real cluster" : "mock cluster"
  })`,
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
      async inject(type, body) {
        // What another producer on the topic might write: the type header
        // says "ours", the value is not a CloudEvent.
        const producer = new Kafka({
          brokers: k.brokers,
          logLevel: logLevel.NOTHING,
        }).producer();
        await producer.connect();
        try {
          await producer.send({
            topic,
            acks: -1,
            messages: [{ value: body, headers: { "eventbus-type": type } }],
          });
        } finally {
          await producer.disconnect();
        }
      },
      async [Symbol.asyncDispose]() {
        await Promise.all(backends.map((b) => b.close({ timeout: 1000 })));
        await k.cleanup([topic, `${topic}.dlq`], []);
      },
    };
  },
  features: { durable: true, bulk: 1000 },
};

const reason = started.reason;
if (reason === undefined) {
  runConformance(target, { describe, it });
  otelRoundTrip(target);
} else brokerMissing(`${target.name} conformance`, reason);
