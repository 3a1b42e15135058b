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
//   (one async handler, concurrency 10) vs the raw client reading 10 at a
//   time and acknowledging each message.

import { createClient } from "@redis/client";
import { Connection } from "rabbitmq-client";
import { RabbitMqBackend } from "../../backends/rabbitmq.ts";
import { RedisStreamsBackend } from "../../backends/redis.ts";
import { EventBus } from "../../mod.ts";
import {
  type CaseParams,
  type CaseRun,
  deferred,
  fill,
  type Sample,
  timeWindowed,
} from "../_util.ts";

const REDIS = "redis://127.0.0.1:6379";
const RABBIT = "amqp://guest:guest@127.0.0.1:5672";
const TYPE = "bench.broker";
const CONCURRENCY = 10;

type Events = { "bench.broker": { i: number } };
type Redis = ReturnType<typeof newRedis>;

/** The cases of scenario 6, by name. */
export const cases: Record<string, CaseRun> = {
  async "redis-bus-publish"(params: CaseParams): Promise<Sample> {
    return await withRedisNames(async (prefix) => {
      const bus = await redisBus(prefix);
      try {
        await bus.emit(TYPE, { i: -1 });
        return await timeWindowed(params, (i) => bus.emit(TYPE, { i }));
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
        await fill(n, (i) => producer.emit(TYPE, { i }));
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
            String(CONCURRENCY),
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
      const worker = await rabbitBus(exchange);
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
          qos: { prefetchCount: CONCURRENCY },
          concurrency: CONCURRENCY,
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

function xadd(client: Redis, stream: string, i: number): Promise<unknown> {
  return client.sendCommand([
    "XADD",
    stream,
    "MAXLEN",
    "~",
    "100000",
    "*",
    "event",
    JSON.stringify({ i }),
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

function rabbitBus(exchange: string): Promise<EventBus<Events>> {
  return RabbitMqBackend.connect(RABBIT, {
    exchange,
    concurrency: CONCURRENCY,
  }).then((backend) => new EventBus<Events>({ backend }));
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
