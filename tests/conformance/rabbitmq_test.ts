// Copyright 2026 the @eventbus/core authors. MIT license.
// The conformance suite against the RabbitMQ on 127.0.0.1:5672 (guest/guest):
// each world gets its own exchange, and the queues and exchanges it declared
// are deleted when the world closes.

import { Connection } from "rabbitmq-client";
import { RabbitMqBackend } from "../../backends/rabbitmq.ts";
import { reachable } from "../_brokers.ts";
import { runConformance } from "./suite.ts";

const URL = "amqp://guest:guest@127.0.0.1:5672";

await runConformance({
  name: "RabbitMqBackend",
  async unavailable() {
    return await reachable("127.0.0.1", 5672)
      ? undefined
      : "no RabbitMQ on 127.0.0.1:5672";
  },
  open() {
    const exchange = `conformance-${crypto.randomUUID()}`;
    const connections: Connection[] = [];
    const backends: RabbitMqBackend[] = [];
    const queues = new Set<string>([`${exchange}.dead-letter`]);
    return Promise.resolve({
      backend() {
        const connection = recording(new Connection(URL), queues);
        connections.push(connection);
        const backend = new RabbitMqBackend(connection, { exchange });
        backends.push(backend);
        return Promise.resolve(backend);
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
});

/** Notes every queue the backend declares on `connection`, for clean-up. */
function recording(connection: Connection, queues: Set<string>): Connection {
  connection.on("error", () => {});
  const createConsumer = connection.createConsumer.bind(connection);
  connection.createConsumer = (props, handler) => {
    if (props.queue !== undefined) queues.add(props.queue);
    return createConsumer(props, handler);
  };
  const queueDeclare = connection.queueDeclare.bind(connection);
  connection.queueDeclare = ((params: { queue?: string }) => {
    if (params.queue !== undefined) queues.add(params.queue);
    return queueDeclare(params);
  }) as typeof connection.queueDeclare;
  return connection;
}
