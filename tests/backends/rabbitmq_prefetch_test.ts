// Copyright 2026 the @eventbus/core authors. MIT license.
// RabbitMqBackend's `prefetch`, apart from `concurrency`: the option's
// checks, the number of unacknowledged messages the broker keeps on their
// way to each consumer (read from the broker: a second channel's passive
// queue declare counts the ready messages, so what is missing is
// unacknowledged), and the messages held by prefetch, which close() hands
// back unstarted, not counted as tries. Runs against the RabbitMQ on
// 127.0.0.1:5672 (guest/guest).

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Connection } from "rabbitmq-client";
import { EventBus, type HandlerContext } from "../../mod.ts";
import { RabbitMqBackend } from "@eventbus/rabbitmq";
import { brokerMissing, reachable } from "../fixtures/_brokers.ts";
import { Counter, Deliveries, MemoryLogger, work } from "../fixtures/_util.ts";

const URL = "amqp://guest:guest@127.0.0.1:5672";
const TIMEOUT = 20_000;
const TYPE = "job.run";

describe("RabbitMqBackend prefetch option", () => {
  it("rejects a prefetch that is not an integer from 1 to 65535 with RangeError, and a non-number with TypeError", async () => {
    // The options are checked before the connection is used.
    const connection = new Connection(URL);
    connection.on("error", () => {});
    try {
      for (const prefetch of [0, -1, 1.5, 65_536, NaN, Infinity]) {
        assert.throws(
          () => new RabbitMqBackend(connection, { prefetch }),
          (error: unknown) =>
            error instanceof RangeError &&
            /prefetch must be an integer from 1 to 65535/.test(
              error.message,
            ) && error.message.endsWith(`got ${prefetch}`),
          `prefetch ${prefetch}`,
        );
        await assert.rejects(
          RabbitMqBackend.connect(URL, { prefetch }),
          RangeError,
          `connect() with prefetch ${prefetch}`,
        );
      }
      for (const prefetch of ["10", null, true]) {
        assert.throws(
          // deno-lint-ignore no-explicit-any
          () => new RabbitMqBackend(connection, { prefetch } as any),
          (error: unknown) =>
            error instanceof TypeError &&
            /prefetch must be a number/.test(error.message),
          `prefetch ${JSON.stringify(prefetch)}`,
        );
      }
    } finally {
      await connection.close();
    }
  });
});

if (!await reachable("127.0.0.1", 5672)) {
  brokerMissing("RabbitMqBackend prefetch", "no RabbitMQ on 127.0.0.1:5672");
} else {
  describe("RabbitMqBackend prefetch", () => {
    let admin: Connection;
    const exchanges: string[] = [];
    const queues: string[] = [];
    /** A fresh exchange and the queue of handler `name` on it. */
    function world(name: string): { exchange: string; queue: string } {
      const exchange = `rabbitmq-prefetch-test-${crypto.randomUUID()}`;
      exchanges.push(exchange, `${exchange}.dead-letter`);
      queues.push(`${exchange}.dead-letter`, `${exchange}.${name}`);
      return { exchange, queue: `${exchange}.${name}` };
    }
    /** Messages ready in `queue`, neither delivered nor acknowledged. */
    async function ready(queue: string): Promise<number> {
      const { messageCount } = await admin.queueDeclare({
        queue,
        passive: true,
      });
      return messageCount;
    }
    /**
     * Waits until `queue` holds `count` ready messages, then reads it a few
     * more times: it must stay there (no consumer takes more).
     */
    async function settlesAt(queue: string, count: number): Promise<void> {
      const deadline = performance.now() + TIMEOUT;
      let seen = await ready(queue);
      while (seen > count && performance.now() < deadline) {
        await work(20);
        seen = await ready(queue);
      }
      for (let i = 0; i < 5; i++) {
        assert.equal(seen, count, `ready messages in "${queue}"`);
        await work(50);
        seen = await ready(queue);
      }
      assert.equal(seen, count, `ready messages in "${queue}"`);
    }
    /** Emits `n` events for handler `name`, declared by the producer. */
    async function fill(
      exchange: string,
      name: string,
      n: number,
    ): Promise<string[]> {
      const producer = new EventBus({
        backend: await RabbitMqBackend.connect(URL, {
          exchange,
          handlers: { [TYPE]: [name] },
        }),
        logger: new MemoryLogger(),
      });
      try {
        const sent = await Promise.all(
          Array.from({ length: n }, (_, i) => producer.emit(TYPE, { i })),
        );
        return sent.map((event) => event.id);
      } finally {
        await producer.close({ timeout: 5000 });
      }
    }
    /** A worker bus whose handler `name` runs `handler`. */
    async function worker(
      exchange: string,
      name: string,
      options: { prefetch?: number; concurrency?: number },
      handler: (id: string, ctx: HandlerContext) => Promise<void> | void,
    ): Promise<EventBus> {
      const bus = new EventBus({
        backend: await RabbitMqBackend.connect(URL, { exchange, ...options }),
        logger: new MemoryLogger(),
        retry: { attempts: 3, backoff: { initial: 1, max: 5 } },
      });
      bus.subscribe(TYPE, (event, ctx) => handler(event.id, ctx), {
        async: true,
        name,
      });
      await bus.listen();
      return bus;
    }

    before(() => {
      admin = new Connection(URL);
      admin.on("error", () => {});
    });
    after(async () => {
      for (const queue of queues) await admin.queueDelete({ queue });
      for (const exchange of exchanges) {
        await admin.exchangeDelete({ exchange });
      }
      await admin.close();
    });

    it("keeps exactly prefetch messages unacknowledged per consumer while concurrency handlers run", async () => {
      const prefetch = 7;
      const concurrency = 2;
      const { exchange, queue } = world("slow");
      const ids = await fill(exchange, "slow", 2 * prefetch + 6);
      const started = new Counter();
      const deliveries = new Deliveries();
      const attempts: number[] = [];
      let open!: () => void;
      const gate = new Promise<void>((resolve) => open = resolve);
      const handler = async (id: string, ctx: HandlerContext) => {
        started.add();
        await gate;
        attempts.push(ctx.attempt);
        deliveries.record(id);
      };
      const first = await worker(
        exchange,
        "slow",
        { prefetch, concurrency },
        handler,
      );
      await settlesAt(queue, ids.length - prefetch);
      assert.equal(started.value, concurrency, "handlers running");
      const second = await worker(
        exchange,
        "slow",
        { prefetch, concurrency },
        handler,
      );
      await settlesAt(queue, ids.length - 2 * prefetch);
      assert.equal(started.value, 2 * concurrency, "handlers running");
      open();
      await deliveries.distinct.reach(ids.length, TIMEOUT, "deliveries");
      await first.close({ timeout: 5000 });
      await second.close({ timeout: 5000 });
      assert.deepEqual([...deliveries.unique].sort(), [...ids].sort());
      assert.equal(deliveries.all.length, ids.length, "each event once");
      assert.deepEqual(attempts, ids.map(() => 1));
      assert.equal(await ready(queue), 0);
    });

    it("keeps 30 messages unacknowledged per consumer by default, and concurrency when that is more", async () => {
      const { exchange, queue } = world("default");
      const ids = await fill(exchange, "default", 110);
      const started = new Counter();
      let open!: () => void;
      const gate = new Promise<void>((resolve) => open = resolve);
      const handled = new Counter();
      const bus = await worker(exchange, "default", {}, async () => {
        started.add();
        await gate;
        handled.add();
      });
      await settlesAt(queue, ids.length - 30);
      assert.equal(started.value, 10, "handlers running (concurrency 10)");
      const wide = await worker(
        exchange,
        "default",
        { concurrency: 50 },
        async () => {
          started.add();
          await gate;
          handled.add();
        },
      );
      // 30 held by the first worker, 50 by the second (its concurrency).
      await settlesAt(queue, ids.length - 30 - 50);
      assert.equal(started.value, 10 + 50, "handlers running");
      open();
      await handled.reach(ids.length, TIMEOUT, "deliveries");
      await bus.close({ timeout: 5000 });
      await wide.close({ timeout: 5000 });
      assert.equal(handled.value, ids.length);
    });

    /**
     * Fills `held` + `extra` messages; a first worker (concurrency 1) holds
     * `held` by prefetch and runs one of them until close() aborts it; then a
     * second worker runs everything. Resolves with the ids, the one started
     * by the first worker, and the attempts each id ran with in the second.
     */
    async function handBack(name: string, held: number, extra: number) {
      const { exchange, queue } = world(name);
      const ids = await fill(exchange, name, held + extra);
      const started: string[] = [];
      const running = new Counter();
      const first = await worker(
        exchange,
        name,
        { prefetch: held, concurrency: 1 },
        async (id, ctx) => {
          started.push(id);
          running.add();
          // Runs until close() aborts it: a try that started counts.
          await new Promise<void>((resolve) =>
            ctx.signal.addEventListener("abort", () => resolve(), {
              once: true,
            })
          );
          throw ctx.signal.reason;
        },
      );
      await running.reach(1, TIMEOUT, "the first try");
      await settlesAt(queue, ids.length - held);
      await first.close({ timeout: 100 });
      assert.equal(started.length, 1, "only one handler ran");
      const deliveries = new Deliveries();
      const attempts = new Map<string, number[]>();
      const second = await worker(exchange, name, {}, (id, ctx) => {
        attempts.set(id, [...attempts.get(id) ?? [], ctx.attempt]);
        deliveries.record(id);
      });
      await deliveries.distinct.reach(ids.length, TIMEOUT, "deliveries");
      // Anything still on its way back would arrive while the queue drains.
      await settlesAt(queue, 0);
      await second.close({ timeout: 5000 });
      assert.equal(deliveries.all.length, ids.length, "each event once");
      return { ids, started: started[0]!, attempts };
    }

    it("hands the messages held by prefetch back at close unstarted, not counted as tries", async () => {
      const { ids, started, attempts } = await handBack("held", 6, 4);
      for (const id of ids) {
        assert.deepEqual(
          attempts.get(id),
          [id === started ? 2 : 1],
          id === started
            ? "the started try counts"
            : "a message held by prefetch is no try",
        );
      }
    });

    it(
      "hands back a full prefetch window of 256 held messages at close, none counted as a try, each run once",
      async () => {
        // More acknowledgements at once than a quorum queue's client sends
        // before it stashes the rest (32 pending commands): every held message
        // must still come back as attempt 1 and run exactly once overall.
        const { ids, started, attempts } = await handBack("window", 256, 20);
        const counted = ids.filter((id) =>
          id !== started && attempts.get(id)?.[0] !== 1
        );
        assert.equal(counted.length, 0, `${counted.length} hand-backs counted`);
        assert.deepEqual(attempts.get(started), [2], "the started try counts");
      },
    );
  });
}
