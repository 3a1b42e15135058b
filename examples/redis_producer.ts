// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * Emits orders to Redis Streams and exits. Pair it with
 * `examples/redis_worker.ts` running in other terminals, started before or
 * after it: a handler name's first worker takes the events emitted up to an
 * hour before it started (`newGroupLookback`). When a stream is full (the
 * slowest handler name is `maxLen` events behind, or no worker ever ran),
 * `emit` rejects with `QueueFullError`, which this program reports.
 *
 * Run: `deno run -A examples/redis_producer.ts [count]`. `REDIS_URL` picks the server, default
 * `redis://127.0.0.1:6379`; `EVENTBUS_PREFIX` the key prefix, default
 * `"example"`.
 *
 * @module
 */

import process from "node:process";
import { fileURLToPath } from "node:url";
import { EventBus, QueueFullError } from "@eventbus/core";
import { RedisStreamsBackend } from "@eventbus/redis";

/** The events of the Redis examples. */
export type ShopEvents = {
  "order.placed": { orderId: number; total: number };
};

const url = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const prefix = process.env.EVENTBUS_PREFIX ?? "example";

// import.meta.main: Deno and Bun; Node (through tsx) has none before 24.2.
if (import.meta.main ?? process.argv[1] === fileURLToPath(import.meta.url)) {
  const count = Number(process.argv[2] ?? 20);
  const backend = await connectOrExplain(url, prefix);
  await using bus = new EventBus<ShopEvents>({ backend });
  let emitted = 0;
  for (let orderId = 1; orderId <= count; orderId++) {
    try {
      await bus.emit("order.placed", { orderId, total: orderId * 10 });
      emitted++;
    } catch (error) {
      if (!(error instanceof QueueFullError)) throw error;
      console.error(`order ${orderId} refused: ${error.message}`);
      process.exitCode = 1;
      break;
    }
  }
  console.log(
    `emitted ${emitted} "order.placed" events to ${url} (prefix "${prefix}")`,
  );
}

/**
 * Opens the backend, or prints how to start Redis and exits.
 *
 * @param url The Redis URL.
 * @param prefix The key prefix.
 * @returns A connected backend.
 */
export async function connectOrExplain(
  url: string,
  prefix: string,
): Promise<RedisStreamsBackend> {
  try {
    return await RedisStreamsBackend.connect({ url }, { prefix });
  } catch (error) {
    console.error(
      `Cannot reach Redis at ${url}: ${(error as Error).message}\n` +
        "Start one with `redis-server --port 6379` (or `docker run -p 6379:6379 redis:7`),\n" +
        "or point REDIS_URL at yours: REDIS_URL=redis://host:6379 deno task example:redis",
    );
    process.exit(1);
  }
}
