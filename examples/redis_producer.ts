// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * Emits orders to Redis Streams and exits. Pair it with
 * `examples/redis_worker.ts` running in other terminals.
 *
 * Run: `deno run -A examples/redis_producer.ts [count]`. `REDIS_URL` picks the server, default
 * `redis://127.0.0.1:6379`; `EVENTBUS_PREFIX` the key prefix, default
 * `"example"`.
 *
 * @module
 */

import process from "node:process";
import { EventBus } from "@eventbus/core";
import { RedisStreamsBackend } from "@eventbus/core/redis";

/** The events of the Redis examples. */
export type ShopEvents = {
  "order.placed": { orderId: number; total: number };
};

const url = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const prefix = process.env.EVENTBUS_PREFIX ?? "example";

if (import.meta.main) {
  const count = Number(process.argv[2] ?? 20);
  const backend = await connectOrExplain(url, prefix);
  await using bus = new EventBus<ShopEvents>({ backend });
  for (let orderId = 1; orderId <= count; orderId++) {
    await bus.emit("order.placed", { orderId, total: orderId * 10 });
  }
  console.log(
    `emitted ${count} "order.placed" events to ${url} (prefix "${prefix}")`,
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
