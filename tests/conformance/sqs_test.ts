// Copyright 2026 the @eventbus/core authors. MIT license.
// The conformance suite on SQS, against the fauxqs emulator with standard
// queues (FIFO queues serialise each message group, which the parallel
// tests of the suite do not expect; tests/backends/sqs_test.ts covers FIFO).
// A producer declares the handler names a test announces in its hint (the
// option `handlers`), so events emitted before the first worker are kept.

import { after, describe, it } from "node:test";
import {
  ListQueuesCommand,
  ListQueueTagsCommand,
  SendMessageCommand,
} from "@aws-sdk/client-sqs";
import {
  type ConformanceTarget,
  runConformance,
} from "@eventbus/core/conformance";
import { otelRoundTrip } from "./_otel_round_trip.ts";
import { type AsyncBackend, uuidv7 } from "../../mod.ts";
import { brokerMissing } from "../fixtures/_brokers.ts";
import { startSqs } from "../fixtures/_sqs.ts";

const started = await startSqs();
const sqs = started.sqs;
if (sqs !== undefined) {
  console.log(`SQS conformance runs against ${sqs.description}`);
  after(() => sqs.stop());
}

const target: ConformanceTarget = {
  name: "SqsBackend (fauxqs emulator)",
  open() {
    const s = sqs!;
    const queuePrefix = `conf-${uuidv7().slice(-12)}-`;
    const backends: AsyncBackend[] = [];
    return Promise.resolve({
      async backend(hint) {
        const handlers: Record<string, string[]> = {};
        for (const { type, name } of hint?.handlers ?? []) {
          (handlers[type] ??= []).push(name);
        }
        const backend = await s.backend({
          queuePrefix,
          waitTimeSeconds: 1,
          discoveryInterval: 500,
          handlers,
        });
        backends.push(backend);
        return backend;
      },
      async inject(type, body) {
        // Raw, to every handler queue of the type, as the backend routes.
        const client = s.client();
        try {
          const { QueueUrls = [] } = await client.send(
            new ListQueuesCommand({ QueueNamePrefix: queuePrefix }),
          );
          let sent = 0;
          for (const QueueUrl of QueueUrls) {
            const { Tags } = await client.send(
              new ListQueueTagsCommand({ QueueUrl }),
            );
            if (Tags?.["eventbus:type"] !== type) continue;
            await client.send(
              new SendMessageCommand({ QueueUrl, MessageBody: body }),
            );
            sent++;
          }
          if (sent === 0) throw new Error(`No handler queue of "${type}"`);
        } finally {
          client.destroy();
        }
      },
      async [Symbol.asyncDispose]() {
        await Promise.all(backends.map((b) => b.close({ timeout: 1000 })));
        await s.deleteQueues(queuePrefix);
      },
    });
  },
  features: { durable: true, bulk: 1000 },
};

const reason = started.reason;
if (reason === undefined) {
  runConformance(target, { describe, it });
  otelRoundTrip(target);
} else brokerMissing(`${target.name} conformance`, reason);
