// Copyright 2026 the @eventbus/core authors. MIT license.
// Scenario 5: the JetStream backend against raw nats.js on the local server
// (127.0.0.1:4222). Every repetition uses its own stream and subjects and
// deletes them afterwards.
//
// - publish: bus `emit` with `window` emits in flight vs raw `js.publish`
//   with `msgID` and the same window (both await the PubAck);
// - consume: a pre-filled stream drained by a bus that `listen()`s with one
//   async handler (fetch, decode, run, ack) vs a raw `consume()` loop that
//   acks each message;
// - e2e: latency of one event at a time, emitted by one bus and handled by
//   another (separate connections) vs raw publish → consume.

import {
  AckPolicy,
  DeliverPolicy,
  jetstream,
  jetstreamManager,
} from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { JetStreamBackend } from "@eventbus/nats";
import { EventBus } from "../../mod.ts";
import {
  busEndToEnd,
  type CaseParams,
  type CaseRun,
  deferred,
  fill,
  OneByOne,
  type Sample,
  timeWindowed,
} from "../_util.ts";
import type { OtelMode } from "../_otel.ts";

const SERVER = "127.0.0.1:4222";
const TYPE = "bench.nats";

type Events = { "bench.nats": { i: number } };

/** The cases of scenario 5, by name. */
export const cases: Record<string, CaseRun> = {
  "bus-publish": (params: CaseParams): Promise<Sample> =>
    busPublish(params, "none"),

  /** bus-publish with `otel({ api })` and no SDK registered (no-op tracer). */
  "bus-publish+otel-noop": (params: CaseParams): Promise<Sample> =>
    busPublish(params, "noop"),

  /** bus-publish with `otel()` on a real SDK and the in-memory exporter. */
  "bus-publish+otel-sdk": (params: CaseParams): Promise<Sample> =>
    busPublish(params, "sdk"),

  async "raw-publish"(params: CaseParams): Promise<Sample> {
    return await withNames(async (names) => {
      // The bus's own connection setting: no stack trace per request.
      const nc = await connect({ servers: SERVER, noAsyncTraces: true });
      try {
        await addStream(nc, names);
        const js = jetstream(nc);
        const subject = `${names.prefix}.${TYPE}`;
        return await timeWindowed(
          params,
          (i) =>
            js.publish(subject, JSON.stringify({ i }), {
              msgID: crypto.randomUUID(),
            }),
        );
      } finally {
        await nc.close();
      }
    });
  },

  "bus-consume": (params: CaseParams): Promise<Sample> =>
    busConsume(params, "none"),

  /** bus-consume, producer and worker with `otel({ api })`, no SDK. */
  "bus-consume+otel-noop": (params: CaseParams): Promise<Sample> =>
    busConsume(params, "noop"),

  /** bus-consume, producer and worker with `otel()` on a real SDK. */
  "bus-consume+otel-sdk": (params: CaseParams): Promise<Sample> =>
    busConsume(params, "sdk"),

  async "raw-consume"(params: CaseParams): Promise<Sample> {
    const n = Number(params.events);
    return await withNames(async (names) => {
      const nc = await connect({ servers: SERVER });
      try {
        await addStream(nc, names);
        const js = jetstream(nc);
        const subject = `${names.prefix}.${TYPE}`;
        await fill(
          n,
          (i) =>
            js.publish(subject, JSON.stringify({ i }), {
              msgID: crypto.randomUUID(),
            }),
        );
        const start = performance.now();
        const jsm = await jetstreamManager(nc);
        await jsm.consumers.add(names.stream, {
          durable_name: "bench",
          ack_policy: AckPolicy.Explicit,
          deliver_policy: DeliverPolicy.All,
        });
        const consumer = await js.consumers.get(names.stream, "bench");
        const messages = await consumer.consume();
        let handled = 0;
        for await (const m of messages) {
          JSON.parse(m.string());
          m.ack();
          if (++handled === n) break;
        }
        const ms = performance.now() - start;
        await messages.close();
        return { ms, ops: n };
      } finally {
        await nc.close();
      }
    });
  },

  async "bus-e2e"(params: CaseParams): Promise<Sample> {
    const n = Number(params.events);
    return await withNames(async (names) => {
      const producer = await openBus(names);
      const worker = await openBus(names);
      return await busEndToEnd(producer, worker, TYPE, n);
    });
  },

  async "raw-e2e"(params: CaseParams): Promise<Sample> {
    const n = Number(params.events);
    return await withNames(async (names) => {
      // The bus's own connection setting, as in raw-publish.
      const pub = await connect({ servers: SERVER, noAsyncTraces: true });
      const sub = await connect({ servers: SERVER, noAsyncTraces: true });
      try {
        await addStream(pub, names);
        const subject = `${names.prefix}.${TYPE}`;
        const js = jetstream(pub);
        const jsm = await jetstreamManager(sub);
        await jsm.consumers.add(names.stream, {
          durable_name: "bench",
          ack_policy: AckPolicy.Explicit,
          deliver_policy: DeliverPolicy.New,
        });
        const consumer = await jetstream(sub).consumers.get(
          names.stream,
          "bench",
        );
        const messages = await consumer.consume({ max_messages: 10 });
        const arrivals = new OneByOne();
        const loop = (async () => {
          for await (const m of messages) {
            const { i } = JSON.parse(m.string()) as { i: number };
            m.ack();
            arrivals.arrive(i);
          }
        })();
        const sample = await arrivals.run(
          n,
          (i) =>
            js.publish(subject, JSON.stringify({ i }), {
              msgID: crypto.randomUUID(),
            }),
        );
        await messages.close();
        await loop;
        return sample;
      } finally {
        await pub.close();
        await sub.close();
      }
    });
  },
};

async function busPublish(
  params: CaseParams,
  otel: OtelMode,
): Promise<Sample> {
  return await withNames(async (names) => {
    const bus = await openBus(names, otel);
    try {
      await bus.emit(TYPE, { i: -1 }); // creates the streams, untimed
      return await timeWindowed(params, (i) => bus.emit(TYPE, { i }));
    } finally {
      await bus.close({ timeout: 1000 });
    }
  });
}

async function busConsume(
  params: CaseParams,
  otel: OtelMode,
): Promise<Sample> {
  const n = Number(params.events);
  return await withNames(async (names) => {
    // The backend's durable consumers start at new events: create the
    // consumer first (listen, close), then fill the stream, untimed.
    const first = await openBus(names);
    first.subscribe(TYPE, () => {}, { async: true, name: "bench" });
    await first.listen();
    await first.close({ timeout: 1000 });
    const producer = await openBus(names, otel);
    try {
      await fill(n, (i) => producer.emit(TYPE, { i }));
    } finally {
      await producer.close({ timeout: 1000 });
    }
    const worker = await openBus(names, otel);
    try {
      const all = deferred();
      let handled = 0;
      worker.subscribe(TYPE, () => {
        if (++handled === n) all.resolve();
      }, { async: true, name: "bench" });
      const start = performance.now();
      await worker.listen();
      await all.promise;
      return { ms: performance.now() - start, ops: n };
    } finally {
      await worker.close({ timeout: 1000 });
    }
  });
}

interface Names {
  stream: string;
  prefix: string;
}

/** Runs `body` with a fresh stream name and subject prefix, then deletes them. */
async function withNames<T>(body: (names: Names) => Promise<T>): Promise<T> {
  const id = crypto.randomUUID().slice(0, 8);
  const names = { stream: `BENCH_${id}`, prefix: `bench_${id}` };
  try {
    return await body(names);
  } finally {
    const nc = await connect({ servers: SERVER });
    try {
      const jsm = await jetstreamManager(nc);
      for (const name of [names.stream, `${names.stream}_DLQ`]) {
        await jsm.streams.delete(name).catch(() => false);
      }
    } finally {
      await nc.close();
    }
  }
}

async function openBus(
  names: Names,
  otel: OtelMode = "none",
): Promise<EventBus<Events>> {
  const backend = await JetStreamBackend.connect({ servers: SERVER }, {
    stream: names.stream,
    subjectPrefix: names.prefix,
  });
  // Loaded only by the +otel cases, so the others carry no SDK in memory.
  const options = otel === "none"
    ? {}
    : (await import("../_otel.ts")).instrumentationFor(otel);
  return new EventBus<Events>({ ...options, backend });
}

async function addStream(nc: NatsConnection, names: Names): Promise<void> {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({
    name: names.stream,
    subjects: [`${names.prefix}.>`],
  });
}
