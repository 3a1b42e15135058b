// Copyright 2026 the @eventbus/core authors. MIT license.
// RabbitMqBackend beyond the conformance suite: the dead-letter exchange and
// its headers, messages that are not events, delayed retries through TTL
// queues, publish timeouts, unroutable events and declared handler names,
// attaching consumers, crash loops and hand-backs at close, the content type
// of every message read raw, options given in the wrong argument, and a
// fault test that closes the backend's connections from the broker side
// (`rabbitmqctl close_connection`, only the test's own connections, found by
// their connection name) while events flow. Runs against the RabbitMQ on
// 127.0.0.1:5672 (guest/guest).

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { Buffer } from "node:buffer";
import { createServer } from "node:net";
import { after, before, describe, it } from "node:test";
import { AMQPChannelError, Connection } from "rabbitmq-client";
import {
  BackendError,
  createEvent,
  DeadLetterError,
  EventBus,
  EventBusClosedError,
  UnroutableEventError,
} from "../../mod.ts";
import { RabbitMqBackend } from "@eventbus/rabbitmq";
import { brokerMissing, reachable } from "../fixtures/_brokers.ts";
import {
  Counter,
  Deliveries,
  MemoryLogger,
  tally,
  withDeadline,
  work,
} from "../fixtures/_util.ts";

const URL = "amqp://guest:guest@127.0.0.1:5672";
const TIMEOUT = 20_000;
const CLOUDEVENTS = "application/cloudevents+json";

if (!await reachable("127.0.0.1", 5672)) {
  brokerMissing("RabbitMqBackend", "no RabbitMQ on 127.0.0.1:5672");
} else {
  const ctl = await rabbitmqctlMissing();
  describe("RabbitMqBackend", () => {
    let admin: Connection;
    const exchanges: string[] = [];
    const queues: string[] = [];
    function world(): string {
      const exchange = `rabbitmq-test-${crypto.randomUUID()}`;
      exchanges.push(exchange, `${exchange}.dead-letter`);
      queues.push(`${exchange}.dead-letter`);
      return exchange;
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

    it("dead-letters the last failed try to the dead-letter exchange with headers", async () => {
      const exchange = world();
      queues.push(`${exchange}.charge`);
      const dead = new Counter();
      const bus = new EventBus({
        backend: await RabbitMqBackend.connect(URL, { exchange }),
        logger: new MemoryLogger(),
        retry: { attempts: 2, backoff: { initial: 1, max: 5 } },
        onError: (error) => {
          if (error instanceof DeadLetterError) dead.add();
        },
      });
      bus.subscribe("order.placed", () => {
        throw new Error("card declined");
      }, { async: true, name: "charge" });
      await bus.listen();
      const event = await bus.emit("order.placed", { total: 3 });
      await dead.reach(1, TIMEOUT, "dead letters");
      await bus.close({ timeout: 5000 });

      const message = await withDeadline(
        basicGetEventually(admin, `${exchange}.dead-letter`),
        TIMEOUT,
        () => "a dead letter in the queue",
      );
      assert.equal(JSON.parse(String(message.body)).id, event.id);
      assert.equal(message.messageId, event.id);
      assert.equal(message.headers?.["x-eventbus-handler"], "charge");
      assert.equal(message.headers?.["x-eventbus-attempts"], 2);
      assert.equal(message.headers?.["x-eventbus-reason"], "failed");
      assert.equal(message.contentType, CLOUDEVENTS);
      assert.equal(
        message.headers?.["x-eventbus-error"],
        "Error: card declined",
      );
      assert.equal(message.headers?.["x-eventbus-queue"], `${exchange}.charge`);
      const { messageCount } = await admin.queueDeclare({
        queue: `${exchange}.charge`,
        passive: true,
      });
      assert.equal(messageCount, 0, "the original is acknowledged");
    });

    it("dead-letters a message that is not an event, logs it and keeps consuming", async () => {
      const exchange = world();
      queues.push(`${exchange}.welcome`);
      const logger = new MemoryLogger();
      const bus = new EventBus({
        backend: await RabbitMqBackend.connect(URL, { exchange }),
        logger,
      });
      const handled = new Counter();
      bus.subscribe("user.signup", () => handled.add(), {
        async: true,
        name: "welcome",
      });
      await bus.listen();
      const raw = admin.createPublisher({ confirm: true });
      await raw.send({
        exchange,
        routingKey: "user.signup",
        contentType: "application/octet-stream",
      }, Buffer.from("not json"));
      await raw.close();
      await bus.emit("user.signup", { id: "u1" });
      await handled.reach(1, TIMEOUT, "valid events");
      const message = await withDeadline(
        basicGetEventually(admin, `${exchange}.dead-letter`),
        TIMEOUT,
        () => "a dead letter in the queue",
      );
      await bus.close({ timeout: 5000 });
      assert.equal(String(message.body), "not json");
      assert.equal(message.headers?.["x-eventbus-reason"], "invalid-event");
      assert.equal(message.contentType, "application/octet-stream");
      assert.match(
        String(message.headers?.["x-eventbus-error"]),
        /^SerializationError: Cannot decode event/,
      );
      assert.equal(handled.value, 1);
      assert.equal(
        logger.lines.filter((l) =>
          l.level === "error" && l.message.includes("it is not an event")
        ).length,
        1,
      );
    });

    it("waits at least the retry delay before the next try, through a TTL queue", async () => {
      const exchange = world();
      queues.push(`${exchange}.slow`, `${exchange}.slow.retry.320`);
      const bus = new EventBus({
        backend: await RabbitMqBackend.connect(URL, { exchange }),
        logger: new MemoryLogger(),
        retry: {
          attempts: 2,
          backoff: { initial: 300, max: 300, jitter: false },
        },
      });
      const tries: { attempt: number; at: number }[] = [];
      const done = new Counter();
      bus.subscribe("job.run", (_event, ctx) => {
        tries.push({ attempt: ctx.attempt, at: performance.now() });
        if (ctx.attempt === 1) throw new Error("not yet");
        done.add();
      }, { async: true, name: "slow" });
      await bus.listen();
      await bus.emit("job.run", {});
      await done.reach(1, TIMEOUT, "second tries");
      await bus.close({ timeout: 5000 });
      assert.deepEqual(tries.map((t) => t.attempt), [1, 2]);
      // 300 ms rounds up to the 320 ms step; allow for timer granularity.
      assert.ok(tries[1]!.at - tries[0]!.at >= 290, "waited for the delay");
    });

    it("rejects emit() with UnroutableEventError when no queue is bound for the type, and stores nothing", async () => {
      const exchange = world();
      queues.push(`${exchange}.late`);
      const producer = new EventBus({
        backend: await RabbitMqBackend.connect(URL, { exchange }),
        logger: new MemoryLogger(),
      });
      await assert.rejects(
        producer.emit("user.signup", { id: "u1" }),
        (error: unknown) =>
          error instanceof UnroutableEventError &&
          error instanceof BackendError && error.backend === "rabbitmq" &&
          error.name === "UnroutableEventError" &&
          error.eventType === "user.signup" &&
          error.searched === `exchange "${exchange}"` &&
          /start a worker/.test(error.message) &&
          /handlers/.test(error.message),
      );
      // A worker started afterwards finds nothing: the event was refused, not
      // kept somewhere. Events emitted once its queue exists are delivered.
      const worker = new EventBus({
        backend: await RabbitMqBackend.connect(URL, { exchange }),
        logger: new MemoryLogger(),
      });
      const seen: string[] = [];
      const count = new Counter();
      worker.subscribe("user.signup", (event) => {
        seen.push((event.data as { id: string }).id);
        count.add();
      }, { async: true, name: "late" });
      await worker.listen();
      await producer.emit("user.signup", { id: "u2" });
      await count.reach(1, TIMEOUT, "deliveries");
      await producer.close({ timeout: 5000 });
      await worker.close({ timeout: 5000 });
      assert.deepEqual(seen, ["u2"]);
    });

    it("keeps events for the handler names a producer declares, for workers started after the emit", async () => {
      const exchange = world();
      queues.push(`${exchange}.invoice`, `${exchange}.ship`);
      const handlers = { "order.placed": ["invoice", "ship"] };
      const producer = new EventBus({
        backend: await RabbitMqBackend.connect(URL, { exchange, handlers }),
        logger: new MemoryLogger(),
      });
      const ids: string[] = [];
      for (let n = 0; n < 5; n++) {
        ids.push((await producer.emit("order.placed", { n })).id);
      }
      await producer.close({ timeout: 5000 });
      const seen = { invoice: [] as string[], ship: [] as string[] };
      const count = new Counter();
      const logger = new MemoryLogger();
      const workers: EventBus[] = [];
      for (const name of ["invoice", "ship"] as const) {
        // Each name's first worker starts after every emit, on its own.
        const worker = new EventBus({
          backend: await RabbitMqBackend.connect(URL, { exchange }),
          logger,
        });
        worker.subscribe("order.placed", (event) => {
          seen[name].push(event.id);
          count.add();
        }, { async: true, name });
        await worker.listen();
        workers.push(worker);
      }
      await count.reach(10, TIMEOUT, "deliveries");
      await Promise.all(workers.map((bus) => bus.close({ timeout: 5000 })));
      assert.deepEqual([...seen.invoice].sort(), [...ids].sort());
      assert.deepEqual([...seen.ship].sort(), [...ids].sort());
      assert.equal(
        logger.lines.filter((l) => l.message.includes("Created queue")).length,
        0,
        "the producer declared both queues",
      );
    });

    it("rejects emit() with BackendError at once when the broker refuses a declared handler queue", async () => {
      const exchange = world();
      queues.push(`${exchange}.audit`);
      // The queue exists with another delivery limit: RabbitMQ refuses to
      // declare it again with different arguments.
      const worker = await RabbitMqBackend.connect(URL, {
        exchange,
        deliveryLimit: 5,
      });
      await worker.consume(() => Promise.resolve({ status: "completed" }), {
        consumers: [{ name: "audit", type: "user.signup", attempts: 3 }],
      });
      const producer = await RabbitMqBackend.connect(URL, {
        exchange,
        deliveryLimit: 7,
        handlers: { "user.signup": ["audit"] },
      });
      const started = performance.now();
      await assert.rejects(
        producer.publish(createEvent("user.signup", {})),
        (error: unknown) =>
          error instanceof BackendError &&
          !(error instanceof UnroutableEventError) &&
          /PRECONDITION_FAILED/.test(error.message) &&
          /same exchange and queue options/.test(error.message),
      );
      assert.ok(
        performance.now() - started < 10_000,
        "not retried until publishTimeout",
      );
      await producer.close({ timeout: 1000 });
      await worker.close({ timeout: 1000 });
    });

    it("warns once when a worker creates the queue of a new handler name, saying it gets no earlier events", async () => {
      const exchange = world();
      queues.push(`${exchange}.audit`, `${exchange}.mail`);
      const logger = new MemoryLogger();
      const open = async () => {
        const bus = new EventBus({
          backend: await RabbitMqBackend.connect(URL, { exchange }),
          logger,
        });
        bus.subscribe("user.signup", () => {}, {
          async: true,
          name: "audit",
        });
        await bus.listen();
        return bus;
      };
      await (await open()).close({ timeout: 5000 });
      await (await open()).close({ timeout: 5000 }); // the queue exists now
      const created = logger.lines.filter((l) =>
        l.message.includes("Created queue")
      );
      assert.equal(created.length, 1);
      assert.equal(created[0]!.level, "warn");
      assert.match(created[0]!.message, /"audit"/);
      assert.match(created[0]!.message, /none from before/);
    });

    it("rejects consume() with EventBusClosedError when close() comes while consumers attach", async () => {
      const exchange = world();
      queues.push(`${exchange}.attach`);
      const backend = await RabbitMqBackend.connect(URL, { exchange });
      const consuming = backend.consume(
        () => Promise.resolve({ status: "completed" }),
        { consumers: [{ name: "attach", type: "job.run", attempts: 3 }] },
      );
      const closing = backend.close({ timeout: 1000 });
      await withDeadline(
        assert.rejects(consuming, EventBusClosedError),
        TIMEOUT,
        () => "consume() neither resolved nor rejected after close()",
      );
      await closing;
    });

    it("resolves consume() once the handler queue is bound and consumed", async () => {
      const exchange = world();
      queues.push(`${exchange}.ready`);
      const backend = await RabbitMqBackend.connect(URL, { exchange });
      const runs = new Counter();
      await backend.consume(() => {
        runs.add();
        return Promise.resolve({ status: "completed" });
      }, { consumers: [{ name: "ready", type: "job.run", attempts: 3 }] });
      const { consumerCount } = await admin.queueDeclare({
        queue: `${exchange}.ready`,
        passive: true,
      });
      assert.equal(consumerCount, 1);
      await backend.publish(createEvent("job.run", {})); // routable at once
      await runs.reach(1, TIMEOUT, "deliveries");
      await backend.close({ timeout: 5000 });
    });

    it("rejects consume() with RangeError when a handler's attempts are not below deliveryLimit", async () => {
      const exchange = world();
      queues.push(`${exchange}.many`); // in case it was declared after all
      const backend = await RabbitMqBackend.connect(URL, {
        exchange,
        deliveryLimit: 5,
      });
      await assert.rejects(
        backend.consume(() => Promise.resolve({ status: "completed" }), {
          consumers: [{ name: "many", type: "job.run", attempts: 5 }],
        }),
        (error: unknown) =>
          error instanceof RangeError &&
          /deliveryLimit \(5\)/.test(error.message),
      );
      await backend.close({ timeout: 1000 });
    });

    it("dead-letters a crash loop itself with reason crashed, before the broker's delivery limit", async () => {
      const exchange = world();
      queues.push(`${exchange}.crashy`);
      // The tightest limit consume() accepts for 2 attempts: the broker would
      // dead-letter (without headers or onError) at the 4th return.
      const options = { exchange, deliveryLimit: 3 };
      const retry = { attempts: 2, backoff: { initial: 1, max: 5 } };
      const producer = new EventBus({
        backend: await RabbitMqBackend.connect(URL, {
          ...options,
          handlers: { "job.run": ["crashy"] },
        }),
        logger: new MemoryLogger(),
      });
      const sent = await producer.emit("job.run", {});
      await producer.close({ timeout: 5000 });
      const attempts: number[] = [];
      for (let round = 1; round <= 2; round++) {
        const started = new Counter();
        const worker = new EventBus({
          backend: await RabbitMqBackend.connect(URL, options),
          logger: new MemoryLogger(),
          retry,
        });
        worker.subscribe("job.run", async (_event, ctx) => {
          attempts.push(ctx.attempt);
          started.add();
          await new Promise(() => {}); // as if the worker died mid-try
        }, { async: true, name: "crashy" });
        await worker.listen();
        await started.reach(1, TIMEOUT, `try of round ${round}`);
        await worker.close({ timeout: 50 });
      }
      const dead: DeadLetterError[] = [];
      const reported = new Counter();
      const last = new EventBus({
        backend: await RabbitMqBackend.connect(URL, options),
        logger: new MemoryLogger(),
        retry,
        onError: (error) => {
          if (error instanceof DeadLetterError) dead.push(error);
          reported.add();
        },
      });
      let runs = 0;
      last.subscribe("job.run", () => void runs++, {
        async: true,
        name: "crashy",
      });
      await last.listen();
      await reported.reach(1, TIMEOUT, "dead letters");
      const message = await withDeadline(
        basicGetEventually(admin, `${exchange}.dead-letter`),
        TIMEOUT,
        () => "a dead letter in the queue",
      );
      await last.close({ timeout: 5000 });
      assert.deepEqual(attempts, [1, 2]);
      assert.equal(runs, 0);
      assert.equal(dead.length, 1);
      assert.equal(dead[0]!.reason, "crashed");
      assert.equal(message.messageId, sent.id);
      assert.equal(message.headers?.["x-eventbus-reason"], "crashed");
      assert.equal(message.headers?.["x-eventbus-attempts"], 2);
      assert.equal(message.headers?.["x-death"], undefined, "not the broker's");
      assert.equal(message.contentType, CLOUDEVENTS);
    });

    it(
      "does not count deliveries that reach a closing worker unstarted as tries",
      {
        timeout: 60_000,
      },
      async () => {
        const exchange = world();
        queues.push(`${exchange}.steady`);
        const producer = new EventBus({
          backend: await RabbitMqBackend.connect(URL, { exchange }),
          logger: new MemoryLogger(),
        });
        const deliveries = new Deliveries();
        const attempts: number[] = [];
        const worker = async () => {
          const bus = new EventBus({
            backend: await RabbitMqBackend.connect(URL, { exchange }),
            logger: new MemoryLogger(),
          });
          bus.subscribe("job.run", (event, ctx) => {
            attempts.push(ctx.attempt);
            deliveries.record(event.id);
          }, { async: true, name: "steady" });
          await bus.listen();
          return bus;
        };
        // Workers come and go while events flow: each one is closed while the
        // broker is still pushing messages to it.
        let current = await worker();
        const accepted: string[] = [];
        let flowing = true;
        const flow = (async () => {
          for (let n = 0; flowing && n < 20_000; n += 20) {
            const batch = await Promise.all(
              Array.from(
                { length: 20 },
                (_, i) => producer.emit("job.run", { n: n + i }),
              ),
            );
            accepted.push(...batch.map((event) => event.id));
          }
        })();
        for (let round = 0; round < 6; round++) {
          await deliveries.distinct.reach(
            deliveries.unique.size + 50,
            TIMEOUT,
            `deliveries in round ${round}`,
          );
          const next = worker();
          await current.close({ timeout: 5000 });
          current = await next;
        }
        flowing = false;
        await flow;
        await producer.close({ timeout: 5000 });
        await deliveries.distinct.reach(accepted.length, TIMEOUT, "deliveries");
        await current.close({ timeout: 5000 });
        const late = attempts.filter((attempt) => attempt !== 1).length;
        assert.equal(
          late,
          0,
          `${late} deliveries counted a hand-back as a try`,
        );
        assert.equal(deliveries.all.length, accepted.length, "each event once");
      },
    );

    it("publishes events, retry copies and dead-letter copies as application/cloudevents+json, payloads unchanged", async () => {
      const exchange = world();
      const queue = `${exchange}.raw`;
      const delayQueue = `${exchange}.later.retry.40960`;
      queues.push(
        queue,
        delayQueue,
        `${exchange}.picky`,
        `${exchange}.later`,
        `${exchange}.never`,
      );
      const payloads = [
        { text: "plain ascii" },
        { text: "emoji 😀 and 𝄞, accents é ü ñ, CJK 漢字" },
        { text: "\uFFFF \uFFFE \u0000 \u0001 \u001f \u007f \u2028 \u2029" },
        { text: "lone surrogates \uD800 \uDFFF" },
        { text: 'quotes " \\ / \n\r\t', n: -0.5, big: 2 ** 53 - 1 },
        { nested: [[], {}, null, true, "ß"] },
      ];
      // Events, read raw from a queue nobody consumes.
      await admin.exchangeDeclare({ exchange, type: "topic", durable: true });
      await admin.queueDeclare({ queue, durable: true });
      await admin.queueBind({ queue, exchange, routingKey: "raw.event" });
      const producer = await RabbitMqBackend.connect(URL, { exchange });
      const sent = [];
      for (const data of payloads) {
        const event = createEvent("raw.event", data);
        await producer.publish(event);
        sent.push(event);
      }
      await producer.close({ timeout: 5000 });
      for (const event of sent) {
        const message = await basicGetEventually(admin, queue);
        assert.equal(message.contentType, CLOUDEVENTS);
        assert.ok(Buffer.isBuffer(message.body));
        assert.equal(message.messageId, event.id);
        assert.deepEqual(JSON.parse(message.body.toString("utf8")), {
          specversion: "1.0",
          id: event.id,
          type: event.type,
          source: event.source,
          time: event.time,
          datacontenttype: "application/json",
          data: event.data,
        });
      }
      // Delivered to a handler unchanged; a first failure leaves a retry
      // copy in the delay queue, a last failure a dead-letter copy.
      const received: unknown[] = [];
      const dead = new Counter();
      const bus = new EventBus({
        backend: await RabbitMqBackend.connect(URL, { exchange }),
        logger: new MemoryLogger(),
        onError: () => dead.add(),
      });
      bus.subscribe("raw.picky", (event) => {
        received.push(event.data);
      }, { async: true, name: "picky" });
      bus.subscribe("raw.later", () => {
        throw new Error("not yet");
      }, {
        async: true,
        name: "later",
        // 40 960 ms is a delay step: the copy waits in "<queue>.retry.40960".
        retry: {
          attempts: 2,
          backoff: { initial: 40_960, max: 40_960, jitter: false },
        },
      });
      bus.subscribe("raw.never", () => {
        throw new Error("never");
      }, { async: true, name: "never", retry: { attempts: 1 } });
      await bus.listen();
      for (const data of payloads) await bus.emit("raw.picky", data);
      await bus.emit("raw.later", { text: "😀" });
      await bus.emit("raw.never", { text: "\uFFFF" });
      await dead.reach(1, TIMEOUT, "dead letters");
      const retried = await withDeadline(
        basicGetEventually(admin, delayQueue),
        TIMEOUT,
        () => "a retry copy in the delay queue",
      );
      const deadLetter = await withDeadline(
        basicGetEventually(admin, `${exchange}.dead-letter`),
        TIMEOUT,
        () => "a dead letter in the queue",
      );
      await bus.close({ timeout: 5000 });
      assert.deepEqual(received, payloads);
      assert.equal(retried.contentType, CLOUDEVENTS);
      assert.equal(retried.headers?.["x-eventbus-tries"], 1);
      assert.deepEqual(JSON.parse(retried.body.toString("utf8")).data, {
        text: "😀",
      });
      assert.equal(deadLetter.contentType, CLOUDEVENTS);
      assert.equal(deadLetter.headers?.["x-eventbus-reason"], "failed");
      assert.deepEqual(JSON.parse(deadLetter.body.toString("utf8")).data, {
        text: "\uFFFF",
      });
    });

    it("rejects connect() and the constructor with TypeError naming the right argument for a misplaced option", async () => {
      const exchange = world();
      await assert.rejects(
        // deno-lint-ignore no-explicit-any
        RabbitMqBackend.connect({ url: URL, exchange } as any),
        (error: unknown) =>
          error instanceof TypeError && /"exchange"/.test(error.message) &&
          /second argument/.test(error.message),
      );
      await assert.rejects(
        // deno-lint-ignore no-explicit-any
        RabbitMqBackend.connect(URL, { exchange, url: URL } as any),
        (error: unknown) =>
          error instanceof TypeError && /"url"/.test(error.message) &&
          /first argument/.test(error.message),
      );
      const connection = new Connection(URL);
      connection.on("error", () => {});
      assert.throws(
        // deno-lint-ignore no-explicit-any
        () => new RabbitMqBackend(connection, { exchnage: exchange } as any),
        (error: unknown) =>
          error instanceof TypeError &&
          /unknown option "exchnage"/.test(error.message),
      );
      assert.throws(
        () =>
          new RabbitMqBackend(connection, {
            handlers: { "user.*": ["audit"] },
          }),
        TypeError,
      );
      await connection.close();
    });

    it("rejects publish() with EventBusClosedError after close(), and closes twice harmlessly", async () => {
      const backend = await RabbitMqBackend.connect(URL, { exchange: world() });
      const first = await backend.close();
      assert.equal(await backend.close(), first);
      await assert.rejects(
        backend.publish(createEvent("user.signup", {})),
        EventBusClosedError,
      );
    });

    it("rejects publish() with BackendError after publishTimeout while the broker is unreachable", async () => {
      const port = await freePort(); // nothing listens there
      const connection = new Connection({
        url: `amqp://guest:guest@127.0.0.1:${port}`,
        retryLow: 50,
        retryHigh: 100,
      });
      const backend = new RabbitMqBackend(connection, {
        exchange: world(),
        publishTimeout: 300,
      });
      await assert.rejects(
        backend.publish(createEvent("user.signup", {})),
        (error: unknown) =>
          error instanceof BackendError && error.backend === "rabbitmq" &&
          /publishTimeout \(300 ms\)/.test(error.message),
      );
      await backend.close({ timeout: 100 });
      connection.unsafeDestroy();
    });

    it("rejects connect() with BackendError when the broker cannot be reached", async () => {
      const port = await freePort();
      await assert.rejects(
        RabbitMqBackend.connect(`amqp://guest:guest@127.0.0.1:${port}`, {
          publishTimeout: 300,
        }),
        BackendError,
      );
    });

    if (ctl !== undefined) brokerMissing("RabbitMqBackend fault test", ctl);
    for (let run = 1; run <= 2 && ctl === undefined; run++) {
      it(
        `handles every accepted event at least once while the broker closes its connections (run ${run})`,
        { timeout: 90_000 },
        async () => {
          const exchange = world();
          queues.push(`${exchange}.fulfil`);
          const connectionName = `eventbus-fault-${crypto.randomUUID()}`;
          const logger = new MemoryLogger();
          const open = () =>
            RabbitMqBackend.connect({
              url: URL,
              connectionName,
              retryLow: 100,
              retryHigh: 500,
            }, { exchange });
          const producer = new EventBus({ backend: await open(), logger });
          const worker = new EventBus({ backend: await open(), logger });
          const deliveries = new Deliveries();
          const { all: handled, distinct: reached } = deliveries;
          worker.subscribe("order.placed", async (event) => {
            await work(2);
            deliveries.record(event.id);
          }, { async: true, name: "fulfil" });
          await worker.listen();

          let closed = 0;
          let killing = true;
          const kills = (async () => {
            for (let round = 0; round < 3; round++) {
              await work(150);
              closed += await closeConnections(connectionName);
            }
          })().finally(() => killing = false);
          const accepted: string[] = [];
          let refused = 0;
          let n = 0;
          while ((killing || n < 300) && n < 5000) {
            const batch = Array.from(
              { length: 20 },
              () => producer.emit("order.placed", { n: n++ }),
            );
            for (const result of await Promise.allSettled(batch)) {
              if (result.status === "fulfilled") accepted.push(result.value.id);
              else refused++;
            }
          }
          await kills;
          assert.ok(closed >= 4, `closed ${closed} connections`);
          await reached.reach(accepted.length, TIMEOUT * 2, "handled events");
          await producer.close({ timeout: 5000 });
          await worker.close({ timeout: 5000 });
          const counts = tally(handled);
          for (const id of accepted) {
            assert.ok((counts.get(id) ?? 0) >= 1, `event ${id} handled`);
          }
          assert.equal(refused, 0, "emit retried through every reconnect");
          assert.ok(
            logger.lines.some((l) => l.message.includes("reconnecting")),
            "the backend saw its connection drop",
          );
        },
      );
    }
  });
}

/**
 * Resolves the first message of `queue`, polling while it is empty or not
 * declared yet.
 */
async function basicGetEventually(admin: Connection, queue: string) {
  while (true) {
    const message = await admin.basicGet({ queue, noAck: true }).catch(
      (error: unknown) => {
        if (error instanceof AMQPChannelError && error.code === "NOT_FOUND") {
          return undefined;
        }
        throw error;
      },
    );
    if (message !== undefined) return message;
    await work(20);
  }
}

function run(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile("rabbitmqctl", args, { timeout: 30_000 }, (error, stdout) => {
      if (error) reject(error);
      else resolve(stdout);
    });
  });
}

/** Resolves why rabbitmqctl cannot be used here, or undefined. */
async function rabbitmqctlMissing(): Promise<string | undefined> {
  try {
    await run(["list_connections", "pid", "-q", "--no-table-headers"]);
    return undefined;
  } catch (error) {
    return `rabbitmqctl is not usable: ${(error as Error).message}`;
  }
}

/** Closes, from the broker side, every connection named `name`. */
async function closeConnections(name: string): Promise<number> {
  const list = await run([
    "list_connections",
    "pid",
    "client_properties",
    "-q",
    "--no-table-headers",
  ]);
  const pids = list.split("\n")
    .filter((line) => line.includes(`{"connection_name","${name}"}`))
    .map((line) => line.split("\t")[0]!);
  let closed = 0;
  for (const pid of pids) {
    // The connection may have gone in between; only count what was closed.
    await run(["close_connection", pid, "eventbus fault test"]).then(
      () => closed++,
      () => {},
    );
  }
  return closed;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
