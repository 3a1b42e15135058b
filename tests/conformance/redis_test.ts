// Copyright 2026 the @eventbus/core authors. MIT license.
// The conformance suite against the Redis on 127.0.0.1:6379: each world gets
// its own key prefix, and its keys are deleted when the world closes.
// inject() adds a raw entry with XADD where the backend reads its events.

import { describe, it } from "node:test";
import { createClient } from "@redis/client";
import {
  type ConformanceTarget,
  runConformance,
} from "@eventbus/core/conformance";
import { otelRoundTrip } from "./_otel_round_trip.ts";
import { RedisStreamsBackend } from "@eventbus/redis";
import { brokerMissing, reachable } from "../fixtures/_brokers.ts";

const URL = "redis://127.0.0.1:6379";

const target: ConformanceTarget = {
  name: "RedisStreamsBackend",
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
      async inject(type: string, body: string) {
        await withClient((client) =>
          client.sendCommand(["XADD", `${prefix}:${type}`, "*", "event", body])
        );
      },
      async [Symbol.asyncDispose]() {
        await Promise.all(backends.map((b) => b.close({ timeout: 1000 })));
        await deleteKeys(`${prefix}*`);
      },
    });
  },
  features: { durable: true },
};

const reason = await reachable("127.0.0.1", 6379)
  ? undefined
  : "no Redis on 127.0.0.1:6379";
if (reason === undefined) {
  runConformance(target, { describe, it });
  otelRoundTrip(target);
} else brokerMissing(`${target.name} conformance`, reason);

/** Runs `body` with a fresh raw client, then closes it. */
async function withClient<T>(
  body: (
    client: { sendCommand(args: string[]): Promise<unknown> },
  ) => Promise<T>,
): Promise<T> {
  const client = createClient({ url: URL });
  client.on("error", () => {});
  await client.connect();
  try {
    return await body(client);
  } finally {
    client.destroy();
  }
}

/** Deletes every key matching `pattern` (SCAN, then DEL). */
function deleteKeys(pattern: string): Promise<void> {
  return withClient(async (client) => {
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
  });
}
