// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * A producer on NATS JetStream: emits orders and prints each one once the
 * stream acknowledged it. Copy it as the start of your own producer. Start
 * it before or after the workers: the stream keeps each order for 7 days
 * (the `maxAge` option), and a worker that starts later gets them all.
 *
 * Run: `deno run -A examples/nats_producer.ts [count]` (default 20) with a
 * nats-server started as `nats-server -js`. Environment: `NATS_URL`
 * (default `127.0.0.1:4222`), `NATS_STREAM` (default `EVENTS`),
 * `NATS_PREFIX` (default `events`).
 *
 * @module
 */

import process from "node:process";
import { fileURLToPath } from "node:url";
import { BackendError, EventBus } from "@eventbus/core";
import { JetStreamBackend } from "@eventbus/nats";

/** The events of the example shop. */
export type ShopEvents = {
  "order.placed": { orderId: number; total: number };
};

/** Connects to NATS, or explains how to start it and exits. */
export async function connectOrExplain(): Promise<JetStreamBackend> {
  const servers = process.env.NATS_URL ?? "127.0.0.1:4222";
  try {
    return await JetStreamBackend.connect({ servers }, {
      stream: process.env.NATS_STREAM ?? "EVENTS",
      subjectPrefix: process.env.NATS_PREFIX ?? "events",
    });
  } catch (error) {
    if (!(error instanceof BackendError)) throw error;
    console.error(
      `${error.message}\nStart one with: nats-server -js (or set NATS_URL)`,
    );
    process.exit(1);
  }
}

// import.meta.main: Deno and Bun; Node (through tsx) has none before 24.2.
if (import.meta.main ?? process.argv[1] === fileURLToPath(import.meta.url)) {
  const count = Number(process.argv[2] ?? 20);
  const bus = new EventBus<ShopEvents>({ backend: await connectOrExplain() });
  for (let orderId = 1; orderId <= count; orderId++) {
    // Resolves once JetStream stored the order (PubAck); the id makes a
    // retried emit a duplicate the stream drops.
    const event = await bus.emit("order.placed", {
      orderId,
      total: orderId * 10,
    });
    console.log(`producer: emitted order ${orderId} (id ${event.id})`);
  }
  await bus.close();
}
