// Copyright 2026 the @eventbus/core authors. MIT license.
// The conformance suite against the Redis on 127.0.0.1:6379: each world gets
// its own key prefix, and its keys are deleted when the world closes.

import { createClient } from "@redis/client";
import { RedisStreamsBackend } from "../../backends/redis.ts";
import { reachable } from "../_brokers.ts";
import { runConformance } from "./suite.ts";

const URL = "redis://127.0.0.1:6379";

await runConformance({
  name: "RedisStreamsBackend",
  async unavailable() {
    return await reachable("127.0.0.1", 6379)
      ? undefined
      : "no Redis on 127.0.0.1:6379";
  },
  open() {
    const prefix = `conformance-${crypto.randomUUID()}`;
    const backends: RedisStreamsBackend[] = [];
    return Promise.resolve({
      async backend() {
        const backend = await RedisStreamsBackend.connect({ url: URL }, {
          prefix,
        });
        backends.push(backend);
        return backend;
      },
      async [Symbol.asyncDispose]() {
        await Promise.all(backends.map((b) => b.close({ timeout: 1000 })));
        await deleteKeys(`${prefix}*`);
      },
    });
  },
  features: { durable: true },
});

/** Deletes every key matching `pattern` (SCAN, then DEL). */
async function deleteKeys(pattern: string): Promise<void> {
  const client = createClient({ url: URL });
  client.on("error", () => {});
  await client.connect();
  try {
    let cursor = "0";
    do {
      const reply = await client.sendCommand([
        "SCAN",
        cursor,
        "MATCH",
        pattern,
        "COUNT",
        "1000",
      ]) as [string, string[]];
      cursor = String(reply[0]);
      if (reply[1].length > 0) await client.sendCommand(["DEL", ...reply[1]]);
    } while (cursor !== "0");
  } finally {
    client.destroy();
  }
}
