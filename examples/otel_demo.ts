// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * The OpenTelemetry demo: one `emit` → NATS JetStream → worker round trip,
 * traced. A producer bus and a worker bus, each on its own connection as
 * two processes would be, share one SDK that prints every span with the
 * console exporter: the producer's `send order.placed`, and one
 * `process order.placed` per try (the first try fails, so there are two),
 * all in one trace, linked to the creation context that travelled inside
 * the event as `metadata.traceparent`.
 *
 * Run: `deno task example:otel` (needs `nats-server -js` on
 * 127.0.0.1:4222, or `NATS_URL`). With Deno's built-in OpenTelemetry
 * (`OTEL_DENO=true`) the same spans go to your collector instead, with no
 * SDK at all: Deno registers its providers with the same API.
 *
 * @module
 */

import process from "node:process";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import * as api from "@opentelemetry/api";
import {
  ConsoleSpanExporter,
  SimpleSpanProcessor,
  TracerProvider,
} from "@opentelemetry/sdk-trace";
import { EventBus } from "@eventbus/core";
import { JetStreamBackend } from "@eventbus/nats";
import { otel } from "@eventbus/core/otel";

type Events = { "order.placed": { order: number; total: number } };

const servers = process.env.NATS_URL ?? "127.0.0.1:4222";
const id = crypto.randomUUID().slice(0, 8);
const names = { stream: `DEMO_OTEL_${id}`, subjectPrefix: `demo_otel_${id}` };

// What an application does once at startup: register an SDK with the API.
const provider = new TracerProvider({
  spanProcessors: [
    new SimpleSpanProcessor({ exporter: new ConsoleSpanExporter() }),
  ],
});
api.trace.setGlobalTracerProvider(provider);

const quiet = { debug() {}, info() {}, warn() {}, error: console.error };
const producer = new EventBus<Events>({
  backend: await JetStreamBackend.connect({ servers }, names),
  instrumentation: otel({ api }),
  logger: quiet,
});
const worker = new EventBus<Events>({
  backend: await JetStreamBackend.connect({ servers }, names),
  instrumentation: otel({ api }),
  logger: quiet,
  retry: { attempts: 3, backoff: { initial: 100 } },
});

const done = Promise.withResolvers<void>();
worker.subscribe("order.placed", (event, ctx) => {
  console.log(
    `worker: order ${event.data.order}, try ${ctx.attempt}, traceparent ${event.metadata.traceparent}`,
  );
  if (ctx.attempt === 1) throw new Error("invoice service busy");
  done.resolve();
}, { async: true, name: "invoicing" });
await worker.listen();

const event = await producer.emit("order.placed", { order: 42, total: 99.5 });
console.log(
  `producer: emitted ${event.id}, traceparent ${event.metadata.traceparent}`,
);

const timer = setTimeout(
  () => done.reject(new Error("the worker did not finish in 30 s")),
  30_000,
);
try {
  await done.promise;
} finally {
  clearTimeout(timer);
  await producer.close({ timeout: 5_000 });
  await worker.close({ timeout: 5_000 });
  await provider.shutdown(); // flushes the last spans to the console
  const nc = await connect({ servers });
  const jsm = await jetstreamManager(nc);
  for (const stream of [names.stream, `${names.stream}_DLQ`]) {
    await jsm.streams.delete(stream).catch(() => false);
  }
  await nc.close();
}
console.log(
  "3 spans above: send order.placed (PRODUCER) and two process order.placed (CONSUMER, attempts 1 and 2), one trace id",
);
