// Copyright 2026 the @eventbus/core authors. MIT license.
// The conformance suite on SQS, against the fauxqs emulator with standard
// queues (FIFO queues serialise each message group, which the parallel
// tests of the suite do not expect; tests/backends/sqs_test.ts covers FIFO).

import { after } from "node:test";
import { type AsyncBackend, uuidv7 } from "../../mod.ts";
import { startSqs } from "../_sqs.ts";
import { runConformance } from "./suite.ts";

const started = await startSqs();
const sqs = started.sqs;
if (sqs !== undefined) {
  console.log(`SQS conformance runs against ${sqs.description}`);
  after(() => sqs.stop());
}

await runConformance({
  name: "SqsBackend (fauxqs emulator)",
  unavailable: () => Promise.resolve(started.reason),
  open() {
    const s = sqs!;
    const queuePrefix = `conf-${uuidv7().slice(-12)}-`;
    const backends: AsyncBackend[] = [];
    return Promise.resolve({
      backend() {
        const backend = s.backend({ queuePrefix, waitTimeSeconds: 1 });
        backends.push(backend);
        return Promise.resolve(backend);
      },
      async [Symbol.asyncDispose]() {
        await Promise.all(backends.map((b) => b.close({ timeout: 1000 })));
        await s.deleteQueues(queuePrefix);
      },
    });
  },
  features: { durable: true, bulk: 1000 },
});
