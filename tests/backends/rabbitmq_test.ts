// Copyright 2026 the @eventbus/core authors. MIT license.
// RabbitMqBackend beyond the conformance suite: the dead-letter exchange and
// its headers, messages that are not events, delayed retries through TTL
// queues, publish timeouts, and a fault test that closes the backend's
// connections from the broker side (`rabbitmqctl close_connection`, only the
// test's own connections, found by their connection name) while events flow.
// Runs against the RabbitMQ on 127.0.0.1:5672 (guest/guest).

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createServer } from "node:net";
import { after, before, describe, it } from "node:test";
import { Connection } from "rabbitmq-client";
import {
  BackendError,
  createEvent,
  DeadLetterError,
  EventBus,
  EventBusClosedError,
} from "../../mod.ts";
import { RabbitMqBackend } from "../../backends/rabbitmq.ts";
import { brokerMissing, reachable } from "../_brokers.ts";
import {
  Counter,
  Deliveries,
  MemoryLogger,
  tally,
  withDeadline,
  work,
} from "../_util.ts";

const URL = "amqp://guest:guest@127.0.0.1:5672";
const TIMEOUT = 20_000;

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

/** Resolves the first message of `queue`, polling while it is empty. */
async function basicGetEventually(admin: Connection, queue: string) {
  while (true) {
    const message = await admin.basicGet({ queue, noAck: true });
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
