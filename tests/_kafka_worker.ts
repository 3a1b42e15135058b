// Copyright 2026 the @eventbus/core authors. MIT license.
// A worker process for the Kafka crash test (tests/backends/kafka_test.ts):
// consumes "crash.job" as handler "crashy" and prints "handled <id>" after
// each handler call returned. The test kills it with SIGKILL mid-stream.
// Usage: <runtime> tests/_kafka_worker.ts <brokers> <topic>

import process from "node:process";
import { Kafka, logLevel } from "kafkajs";
import { EventBus } from "../mod.ts";
import { KafkaBackend } from "../backends/kafka.ts";

const [brokers = "", topic = ""] = process.argv.slice(2);
const kafka = new Kafka({
  brokers: brokers.split(","),
  logLevel: logLevel.NOTHING,
});
const bus = new EventBus({
  backend: new KafkaBackend(kafka, {
    topic,
    idempotent: false,
    heartbeatInterval: 300,
    sessionTimeout: 6_000,
    fetchMaxWait: 100,
    concurrency: 4,
  }),
});
bus.subscribe("crash.job", async (event) => {
  await new Promise((resolve) => setTimeout(resolve, 5));
  process.stdout.write(`handled ${event.id}\n`);
}, { async: true, name: "crashy" });
await bus.listen();
process.stdout.write("ready\n");
