// Copyright 2026 the @eventbus/core authors. MIT license.
// Scenario 6: the Redis Streams and RabbitMQ backends against their raw
// clients doing the same work, on the shared brokers (Redis 127.0.0.1:6379,
// RabbitMQ 127.0.0.1:5672). Every repetition uses its own keys, exchange and
// queues and deletes them afterwards.
//
// - publish: bus `emit` with `window` emits in flight vs the raw client with
//   the same window (Redis: XADD MAXLEN ~; RabbitMQ: a confirmed, persistent
//   publish to a durable topic exchange bound to a quorum queue). The bus
//   also de-duplicates by event id on Redis (a Lua script and a marker key).
// - consume: a pre-filled stream/queue drained by a bus that `listen()`s
//   (one async handler, concurrency 10; on RabbitMQ the backend's default
//   prefetch, or `params.prefetch`) vs the raw client (Redis: reading 256
//   entries per XREADGROUP and acknowledging them with one XACK; RabbitMQ: a
//   consumer with prefetch 256, or `params.rawPrefetch`, on the same quorum
//   queue, acknowledging each message).
// - e2e: latency of one event at a time, emitted by one bus and handled by
//   another (separate connections) vs the raw client, publisher and consumer
//   on separate connections (Redis: XADD, and a loop of blocking XREADGROUP
//   that XACKs each entry it handled; RabbitMQ: a confirmed persistent
//   publish, and a consumer with prefetch 256 on the same quorum queue that
//   acknowledges each message).

import { createClient } from "@redis/client";
import { Connection } from "rabbitmq-client";
import { RabbitMqBackend } from "@eventbus/rabbitmq";
import { RedisStreamsBackend } from "@eventbus/redis";
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

const REDIS = "redis://127.0.0.1:6379";
const RABBIT = "amqp://guest:guest@127.0.0.1:5672";
const TYPE = "bench.broker";
const CONCURRENCY = 10;
/** The raw RabbitMQ consumer's prefetch, as a careful user would set it. */
const RAW_PREFETCH = 256;

type Events = { "bench.broker": { i: number; pad?: string } };
type Redis = ReturnType<typeof newRedis>;

/** The cases of scenario 6, by name. */
export const cases: Record<string, CaseRun> = {
  async "redis-bus-publish"(params: CaseParams): Promise<Sample> {
    return await withRedisNames(async (prefix) => {
      const bus = await redisBus(prefix);
      try {
        await bus.emit(TYPE, data(-1));
        return await timeWindowed(params, (i) => bus.emit(TYPE, data(i)));
      } finally {
        await bus.close({ timeout: 1000 });
      }
    });
  },

  async "redis-raw-publish"(params: CaseParams): Promise<Sample> {
    return await withRedisNames(async (prefix) => {
      const client = await redisClient();
      try {
        const stream = `${prefix}:${TYPE}`;
        return await timeWindowed(params, (i) => xadd(client, stream, i));
      } finally {
        await client.close();
      }
    });
  },

  async "redis-bus-consume"(params: CaseParams): Promise<Sample> {
    const n = Number(params.events);
    return await withRedisNames(async (prefix) => {
      const producer = await redisBus(prefix);
      try {
        await fill(n, (i) => producer.emit(TYPE, data(i)));
      } finally {
        await producer.close({ timeout: 1000 });
      }
      const worker = await redisBus(prefix);
      try {
        return await timeBusConsume(worker, n);
      } finally {
        await worker.close({ timeout: 1000 });
      }
    });
  },

  async "redis-raw-consume"(params: CaseParams): Promise<Sample> {
    const n = Number(params.events);
    return await withRedisNames(async (prefix) => {
      const client = await redisClient();
      try {
        const stream = `${prefix}:${TYPE}`;
        await fill(n, (i) => xadd(client, stream, i));
        const start = performance.now();
        await client.sendCommand(["XGROUP", "CREATE", stream, "bench", "0"]);
        let handled = 0;
        while (handled < n) {
          const reply = await client.sendCommand([
            "XREADGROUP",
            "GROUP",
            "bench",
            "c1",
            "COUNT",
            String(RAW_REDIS_COUNT),
            "BLOCK",
            "1000",
            "STREAMS",
            stream,
            ">",
          ]);
          const ids: string[] = [];
          for (const [id, fields] of entries(reply)) {
            JSON.parse(fields[fields.indexOf("event") + 1] ?? "null");
            ids.push(id);
          }
          if (ids.length === 0) continue;
          await client.sendCommand(["XACK", stream, "bench", ...ids]);
          handled += ids.length;
        }
        return { ms: performance.now() - start, ops: n };
      } finally {
        await client.close();
      }
    });
  },

  async "redis-bus-e2e"(params: CaseParams): Promise<Sample> {
    const n = Number(params.events);
    return await withRedisNames(async (prefix) => {
      const producer = await redisBus(prefix);
      const worker = await redisBus(prefix);
      return await busEndToEnd(producer, worker, TYPE, n, data);
    });
  },

  async "redis-raw-e2e"(params: CaseParams): Promise<Sample> {
    const n = Number(params.events);
    return await withRedisNames(async (prefix) => {
      const stream = `${prefix}:${TYPE}`;
      const pub = await redisClient();
      const sub = await redisClient();
      try {
        await sub.sendCommand(
          ["XGROUP", "CREATE", stream, "bench", "$", "MKSTREAM"],
        );
        const arrivals = new OneByOne();
        // The consumer: a blocking read, then the entries handled, then one
        // XACK for them, sent before the next read on the same connection.
        const loop = (async () => {
          for (let seen = 0; seen < n + 1;) {
            const reply = await sub.sendCommand([
              "XREADGROUP",
              "GROUP",
              "bench",
              "c1",
              "COUNT",
              String(RAW_REDIS_COUNT),
              "BLOCK",
              "5000",
              "STREAMS",
              stream,
              ">",
            ]);
            const ids: string[] = [];
            for (const [id, fields] of entries(reply)) {
              const event = fields[fields.indexOf("event") + 1] ?? "null";
              arrivals.arrive((JSON.parse(event) as { i: number }).i);
              ids.push(id);
            }
            if (ids.length === 0) continue;
            await sub.sendCommand(["XACK", stream, "bench", ...ids]);
            seen += ids.length;
          }
        })();
        loop.catch(() => {}); // awaited below, once the run went well
        const sample = await arrivals.run(n, (i) => xadd(pub, stream, i));
        await loop;
        return sample;
      } finally {
        await pub.close();
        await sub.close();
      }
    });
  },

  async "rabbitmq-bus-publish"(params: CaseParams): Promise<Sample> {
    return await withRabbitNames(async (exchange) => {
      await declareRabbitQueue(exchange); // a worker's queue, so events are kept
      const bus = await rabbitBus(exchange);
      try {
        await bus.emit(TYPE, { i: -1 });
        return await timeWindowed(params, (i) => bus.emit(TYPE, { i }));
      } finally {
        await bus.close({ timeout: 1000 });
      }
    });
  },

  async "rabbitmq-raw-publish"(params: CaseParams): Promise<Sample> {
    return await withRabbitNames(async (exchange) => {
      await declareRabbitQueue(exchange);
      const connection = new Connection(RABBIT);
      const publisher = connection.createPublisher({ confirm: true });
      try {
        return await timeWindowed(params, (i) =>
          publisher.send({
            exchange,
            routingKey: TYPE,
            durable: true,
            messageId: crypto.randomUUID(),
          }, JSON.stringify({ i })));
      } finally {
        await publisher.close();
        await connection.close();
      }
    });
  },

  async "rabbitmq-bus-consume"(params: CaseParams): Promise<Sample> {
    const n = Number(params.events);
    return await withRabbitNames(async (exchange) => {
      await declareRabbitQueue(exchange);
      const producer = await rabbitBus(exchange);
      try {
        await fill(n, (i) => producer.emit(TYPE, { i }));
      } finally {
        await producer.close({ timeout: 1000 });
      }
      const worker = await rabbitBus(exchange, prefetchOf(params));
      try {
        return await timeBusConsume(worker, n);
      } finally {
        await worker.close({ timeout: 1000 });
      }
    });
  },

  async "rabbitmq-raw-consume"(params: CaseParams): Promise<Sample> {
    const n = Number(params.events);
    return await withRabbitNames(async (exchange) => {
      const queue = await declareRabbitQueue(exchange);
      const connection = new Connection(RABBIT);
      const publisher = connection.createPublisher({ confirm: true });
      try {
        await fill(n, (i) =>
          publisher.send({
            exchange,
            routingKey: TYPE,
            durable: true,
            messageId: crypto.randomUUID(),
          }, JSON.stringify({ i })));
        const all = deferred();
        let handled = 0;
        const start = performance.now();
        const consumer = connection.createConsumer({
          queue,
          queueOptions: queueOptions(exchange),
          qos: { prefetchCount: rawPrefetchOf(params) },
        }, (message) => {
          JSON.parse(String(message.body));
          if (++handled === n) all.resolve();
          // resolving acknowledges the message
        });
        await all.promise;
        const ms = performance.now() - start;
        await consumer.close();
        return { ms, ops: n };
      } finally {
        await publisher.close();
        await connection.close();
      }
    });
  },

  async "rabbitmq-bus-e2e"(params: CaseParams): Promise<Sample> {
    const n = Number(params.events);
    return await withRabbitNames(async (exchange) => {
      const producer = await rabbitBus(exchange);
      const worker = await rabbitBus(exchange, prefetchOf(params));
      return await busEndToEnd(producer, worker, TYPE, n);
    });
  },

  async "rabbitmq-raw-e2e"(params: CaseParams): Promise<Sample> {
    const n = Number(params.events);
    return await withRabbitNames(async (exchange) => {
      const queue = await declareRabbitQueue(exchange);
      const pub = new Connection(RABBIT);
      const sub = new Connection(RABBIT);
      const publisher = pub.createPublisher({ confirm: true });
      try {
        const arrivals = new OneByOne();
        const consumer = sub.createConsumer({
          queue,
          queueOptions: queueOptions(exchange),
          qos: { prefetchCount: RAW_PREFETCH },
        }, (message) => {
          arrivals.arrive(
            (JSON.parse(String(message.body)) as { i: number }).i,
          );
          // resolving acknowledges the message
        });
        // The untimed first event waits in the queue until it consumes.
        const sample = await arrivals.run(n, (i) =>
          publisher.send({
            exchange,
            routingKey: TYPE,
            durable: true,
            messageId: crypto.randomUUID(),
          }, JSON.stringify({ i })));
        await consumer.close();
        return sample;
      } finally {
        await publisher.close();
        await pub.close();
        await sub.close();
      }
    });
  },
};

// ---------------------------------------------------------------- shared

async function timeBusConsume(
  worker: EventBus<Events>,
  n: number,
): Promise<Sample> {
  const all = deferred();
  let handled = 0;
  worker.subscribe(TYPE, () => {
    if (++handled === n) all.resolve();
  }, { async: true, name: "bench" });
  const start = performance.now();
  await worker.listen();
  await all.promise;
  return { ms: performance.now() - start, ops: n };
}

// ---------------------------------------------------------------- Redis

function newRedis() {
  const client = createClient({ url: REDIS });
  client.on("error", () => {});
  return client;
}

async function redisClient(): Promise<Redis> {
  const client = newRedis();
  await client.connect();
  return client;
}

function redisBus(prefix: string): Promise<EventBus<Events>> {
  return RedisStreamsBackend.connect({ url: REDIS }, {
    prefix,
    concurrency: CONCURRENCY,
    block: 200,
  }).then((backend) => new EventBus<Events>({ backend }));
}

/**
 * Entries the raw Redis consumer reads per `XREADGROUP` (then one `XACK` for
 * them): what a careful user picks to drain a stream (issue #16).
 */
const RAW_REDIS_COUNT = 256;

/**
 * The data of Redis event `i`: 128 bytes of JSON, the event size issue #16
 * measured with; the raw client adds these bytes, the bus wraps them in
 * its envelope.
 */
function data(i: number): { i: number; pad: string } {
  const bare = JSON.stringify({ i, pad: "" }).length;
  return { i, pad: "x".repeat(Math.max(0, 128 - bare)) };
}

function xadd(client: Redis, stream: string, i: number): Promise<unknown> {
  return client.sendCommand([
    "XADD",
    stream,
    "MAXLEN",
    "~",
    "100000",
    "*",
    "event",
    JSON.stringify(data(i)),
  ]);
}

/** [id, [field, value, ...]] pairs of an XREADGROUP reply, RESP2 or RESP3. */
function entries(reply: unknown): [string, string[]][] {
  if (reply === null || reply === undefined) return [];
  const streams = Array.isArray(reply)
    ? reply as [string, [string, string[]][]][]
    : Object.entries(reply as Record<string, [string, string[]][]>);
  const out: [string, string[]][] = [];
  for (const [, items] of streams) {
    for (const [id, fields] of items) {
      out.push([String(id), fields.map(String)]);
    }
  }
  return out;
}

async function withRedisNames<T>(
  body: (prefix: string) => Promise<T>,
): Promise<T> {
  const prefix = `bench-${crypto.randomUUID().slice(0, 8)}`;
  try {
    return await body(prefix);
  } finally {
    const client = await redisClient();
    try {
      const keys = await client.sendCommand(["KEYS", `${prefix}*`]) as string[];
      for (let i = 0; i < keys.length; i += 500) {
        await client.sendCommand(["DEL", ...keys.slice(i, i + 500)]);
      }
    } finally {
      await client.close();
    }
  }
}

// ---------------------------------------------------------------- RabbitMQ

function rabbitBus(
  exchange: string,
  options: { prefetch?: number } = {},
): Promise<EventBus<Events>> {
  return RabbitMqBackend.connect(RABBIT, {
    exchange,
    concurrency: CONCURRENCY,
    ...options,
  }).then((backend) => new EventBus<Events>({ backend }));
}

/** The raw consumer's prefetch: `params.rawPrefetch`, else RAW_PREFETCH. */
function rawPrefetchOf(params: CaseParams): number {
  return params.rawPrefetch === undefined
    ? RAW_PREFETCH
    : Number(params.rawPrefetch);
}

/** The bus's RabbitMQ prefetch from `params.prefetch`, else its default. */
function prefetchOf(params: CaseParams): { prefetch?: number } {
  return params.prefetch === undefined
    ? {}
    : { prefetch: Number(params.prefetch) };
}

/**
 * Declares the exchange and the quorum queue of the handler "bench" as the
 * backend does, so published events are kept; returns the queue name.
 */
async function declareRabbitQueue(exchange: string): Promise<string> {
  const queue = `${exchange}.bench`;
  const connection = new Connection(RABBIT);
  try {
    await connection.exchangeDeclare({
      exchange,
      type: "topic",
      durable: true,
    });
    await connection.queueDeclare({ queue, ...queueOptions(exchange) });
    await connection.queueBind({ queue, exchange, routingKey: TYPE });
  } finally {
    await connection.close();
  }
  return queue;
}

/** The handler queue's options, as the backend declares them. */
function queueOptions(exchange: string) {
  return {
    durable: true,
    arguments: {
      "x-queue-type": "quorum" as const,
      "x-dead-letter-exchange": `${exchange}.dead-letter`,
      "x-delivery-limit": 20,
    },
  };
}

async function withRabbitNames<T>(
  body: (exchange: string) => Promise<T>,
): Promise<T> {
  const exchange = `bench-${crypto.randomUUID().slice(0, 8)}`;
  try {
    return await body(exchange);
  } finally {
    const connection = new Connection(RABBIT);
    try {
      for (const queue of [`${exchange}.bench`, `${exchange}.dead-letter`]) {
        await connection.queueDelete({ queue }).catch(() => {});
      }
      for (const name of [exchange, `${exchange}.dead-letter`]) {
        await connection.exchangeDelete({ exchange: name }).catch(() => {});
      }
    } finally {
      await connection.close();
    }
  }
}
