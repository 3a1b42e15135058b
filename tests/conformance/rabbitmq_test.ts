// Copyright 2026 the @eventbus/core authors. MIT license.
// The conformance suite against the RabbitMQ on 127.0.0.1:5672 (guest/guest):
// each world gets its own exchange, and the queues and exchanges it declared
// are deleted when the world closes.
//
// A world is one deployment whose producers list their handler names in the
// backend's `handlers` option: the names of every hint the world was given,
// plus a "conformance-tap" handler of every suite event type. The tap stands
// for the deployment's other consumers: without any queue bound for a type,
// `emit` rejects with UnroutableEventError (tested in
// tests/backends/rabbitmq_test.ts), and "keeps event types apart" emits a
// type that no test handler subscribes.

import { Buffer } from "node:buffer";
import { describe, it } from "node:test";
import { Connection } from "rabbitmq-client";
import {
  type ConformanceTarget,
  runConformance,
} from "@eventbus/core/conformance";
import { otelRoundTrip } from "./_otel_round_trip.ts";
import { RabbitMqBackend } from "@eventbus/rabbitmq";
import { brokerMissing, reachable } from "../fixtures/_brokers.ts";
import { recording } from "../fixtures/_rabbitmq_dead_letters.ts";

const URL = "amqp://guest:guest@127.0.0.1:5672";
const SUITE_TYPES = ["conf.order.placed", "conf.other"];

const target: ConformanceTarget = {
  name: "RabbitMqBackend",
  open() {
    const exchange = `conformance-${crypto.randomUUID()}`;
    const connections: Connection[] = [];
    const backends: RabbitMqBackend[] = [];
    const queues = new Set<string>([`${exchange}.dead-letter`]);
    const handlers = new Map(
      SUITE_TYPES.map((type) => [type, ["conformance-tap"]]),
    );
    return Promise.resolve({
      backend(hint) {
        for (const { type, name } of hint?.handlers ?? []) {
          handlers.set(type, [...handlers.get(type) ?? [], name]);
        }
        const connection = recording(new Connection(URL), queues);
        connections.push(connection);
        const backend = new RabbitMqBackend(connection, {
          exchange,
          handlers: Object.fromEntries(handlers),
        });
        backends.push(backend);
        return Promise.resolve(backend);
      },
      async inject(type, body) {
        const admin = new Connection(URL);
        admin.on("error", () => {});
        const raw = admin.createPublisher({ confirm: true });
        await raw.send({ exchange, routingKey: type }, Buffer.from(body));
        await raw.close();
        await admin.close();
      },
      async [Symbol.asyncDispose]() {
        await Promise.all(backends.map((b) => b.close({ timeout: 1000 })));
        const admin = new Connection(URL);
        admin.on("error", () => {});
        for (const queue of queues) await admin.queueDelete({ queue });
        for (const name of [exchange, `${exchange}.dead-letter`]) {
          await admin.exchangeDelete({ exchange: name });
        }
        await admin.close();
        await Promise.all(connections.map((c) => c.close()));
      },
    });
  },
  features: { durable: true },
};

const reason = await reachable("127.0.0.1", 5672)
  ? undefined
  : "no RabbitMQ on 127.0.0.1:5672";
if (reason === undefined) {
  runConformance(target, { describe, it });
  otelRoundTrip(target);
} else brokerMissing(`${target.name} conformance`, reason);
