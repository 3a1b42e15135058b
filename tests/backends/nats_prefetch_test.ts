// Copyright 2026 the @eventbus/core authors. MIT license.
// JetStreamBackend's `prefetch`: events pulled ahead of the handler slots
// must be validated and must not be stranded in the local buffer when a
// worker closes. The hand-back is usually ~2 s, but on nats-server 2.9 a
// redelivery can go to the closed worker's expiring pull and return only
// after the ack wait, so the test keeps ackWait short and proves that every
// event arrives, not how fast.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { EventBus } from "../../mod.ts";
import { JetStreamBackend } from "../../backends/nats/mod.ts";
import { brokerMissing, reachable } from "../_brokers.ts";
import { Counter, MemoryLogger, withDeadline } from "../_util.ts";
import { Admin, SHARED_NATS, uniqueNames } from "./_nats.ts";

type Events = { "order.placed": { n: number } };
const TIMEOUT = 20_000;

describe("JetStreamBackend prefetch options", () => {
  it("rejects a prefetch that is not an integer from 1 to 10 000 with RangeError", async () => {
    for (const prefetch of [0, -1, 1.5, 10_001, Number.NaN]) {
      await assert.rejects(
        JetStreamBackend.connect({ servers: SHARED_NATS }, { prefetch }),
        RangeError,
        `prefetch ${prefetch}`,
      );
    }
  });
});

if (!await reachable("127.0.0.1", 4222)) {
  brokerMissing(
    "JetStreamBackend prefetch",
    `no NATS server on ${SHARED_NATS}`,
  );
} else {
  describe("JetStreamBackend prefetch", () => {
    it("hands buffered, not yet started events back at close so the next worker gets every one", async () => {
      const names = { ...uniqueNames("prefetch"), ackWait: 4_000 };
      await using _admin = await Admin.open(SHARED_NATS, names.stream);
      const producer = new EventBus<Events>({
        logger: new MemoryLogger(),
        backend: await JetStreamBackend.connect(
          { servers: SHARED_NATS },
          names,
        ),
      });
      // One slot and a buffer of 20: one event runs (stuck), the rest wait
      // in this process when it closes.
      const first = new EventBus<Events>({
        logger: new MemoryLogger(),
        backend: await JetStreamBackend.connect({ servers: SHARED_NATS }, {
          ...names,
          concurrency: 1,
          prefetch: 20,
        }),
      });
      const started = new Counter();
      first.subscribe("order.placed", async () => {
        started.add();
        await new Promise(() => {}); // never settles, ignores the abort
      }, { async: true, name: "buffered" });
      await first.listen();
      const ids: string[] = [];
      for (let n = 0; n < 8; n++) {
        ids.push((await producer.emit("order.placed", { n })).id);
      }
      await started.reach(1, TIMEOUT, "started handlers");
      const report = await withDeadline(
        first.close({ timeout: 200 }),
        TIMEOUT,
        () => "close() did not resolve",
      );
      assert.deepEqual(report.abandoned, []);
      assert.equal(started.value, 1, "only one slot ran");

      const second = new EventBus<Events>({
        logger: new MemoryLogger(),
        backend: await JetStreamBackend.connect(
          { servers: SHARED_NATS },
          names,
        ),
      });
      const seen = new Set<string>();
      const done = new Counter();
      second.subscribe("order.placed", (event) => {
        seen.add(event.id);
        done.add();
      }, { async: true, name: "buffered" });
      await second.listen();
      await done.reach(8, TIMEOUT, "deliveries to the next worker");
      await Promise.all([producer.close(), second.close()]);
      assert.deepEqual([...seen].sort(), [...ids].sort());
    });
  });
}
