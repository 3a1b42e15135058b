// Copyright 2026 the @eventbus/core authors. MIT license.
// The conformance suite on JetStreamBackend against the shared NATS on
// 127.0.0.1:4222; each world gets its own stream and subjects, deleted after.

import { describe, it } from "node:test";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import {
  type ConformanceTarget,
  runConformance,
} from "@eventbus/core/conformance";
import { otelRoundTrip } from "./_otel_round_trip.ts";
import { JetStreamBackend } from "@eventbus/nats";
import { brokerMissing, reachable } from "../fixtures/_brokers.ts";
import { streamsOf } from "../fixtures/_nats.ts";

const SERVER = "127.0.0.1:4222";

const target: ConformanceTarget = {
  name: "JetStreamBackend",
  open() {
    const id = crypto.randomUUID().slice(0, 8);
    const stream = `CONF_${id}`;
    const subjectPrefix = `conf_${id}`;
    const backends: JetStreamBackend[] = [];
    return Promise.resolve({
      async backend() {
        const backend = await JetStreamBackend.connect({ servers: SERVER }, {
          stream,
          subjectPrefix,
          publishTimeout: 10_000,
          // On nats-server 2.9 a redelivery at close can go to the closed
          // worker's expiring pull and return only after the ack wait: keep
          // it well inside the suite's deadlines.
          ackWait: 5_000,
        });
        backends.push(backend);
        return backend;
      },
      async inject(type, body) {
        // With nats.js itself, on the subject events of `type` travel on;
        // the stream exists: the test emitted through the bus first.
        const nc = await connect({ servers: SERVER });
        try {
          await jetstream(nc).publish(`${subjectPrefix}.${type}`, body);
        } finally {
          await nc.close();
        }
      },
      async [Symbol.asyncDispose]() {
        await Promise.all(backends.map((b) => b.close({ timeout: 1000 })));
        const nc = await connect({ servers: SERVER });
        try {
          const jsm = await jetstreamManager(nc);
          for (const name of streamsOf(stream)) {
            await jsm.streams.delete(name).catch(() => false);
          }
        } finally {
          await nc.close();
        }
      },
    });
  },
  features: { durable: true },
};

const reason = await reachable("127.0.0.1", 4222)
  ? undefined
  : `no NATS server on ${SERVER}`;
if (reason === undefined) {
  runConformance(target, { describe, it });
  otelRoundTrip(target);
} else brokerMissing(`${target.name} conformance`, reason);
