// Copyright 2026 the @eventbus/core authors. MIT license.
// RabbitMqBackend.deadLetters against the RabbitMQ on 127.0.0.1:5672 (a
// unique exchange per test, its queues deleted after): list and count
// without losing or reordering the queue, replay to the failed handler's
// queue only, a replay failing or killed between the confirm and the
// acknowledgement, a handler without a queue, purge, dead letters of older
// versions, and messages that are not events.

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { encodeEvent, EventBus } from "../../mod.ts";
import type { RabbitMqDeadLetters } from "../../backends/rabbitmq/_dead_letters.ts";
import { brokerMissing, reachable } from "../fixtures/_brokers.ts";
import { Child } from "../fixtures/_nats.ts";
import {
  collect,
  MemoryLogger,
  withDeadline,
  work,
} from "../fixtures/_util.ts";
import {
  A_ERROR,
  ATTEMPTS,
  deadLetterWorld,
  type Events,
  SHARED_RABBITMQ,
  TIMEOUT,
  TRACEPARENT,
} from "../fixtures/_rabbitmq_dead_letters.ts";

const REPLAYER = fileURLToPath(
  new URL("../fixtures/_rabbitmq_replayer.ts", import.meta.url),
);

if (!await reachable("127.0.0.1", 5672)) {
  brokerMissing(
    "RabbitMqBackend.deadLetters",
    "no RabbitMQ on 127.0.0.1:5672",
  );
} else {
  describe("RabbitMqBackend.deadLetters", () => {
    it("list() returns one handler's dead letters oldest first, with the emitted event, and leaves the queue as it was", async () => {
      await using world = await deadLetterWorld("list");
      const dead = world.backend.deadLetters;
      const dlq = `${world.exchange}.dead-letter`;
      const before = Date.now();
      const letters = await collect(dead.list({ handler: "A" }));
      assert.equal(letters.length, 5);
      assert.deepEqual(
        letters.map((l) => l.event.id).sort(),
        world.events.map((e) => e.id).sort(),
      );
      for (const letter of letters) {
        assert.deepEqual(
          letter.event,
          world.events.find((e) => e.id === letter.event.id),
        );
        assert.equal(letter.event.metadata.traceparent, TRACEPARENT);
        assert.equal(letter.handler, "A");
        assert.equal(letter.attempts, ATTEMPTS);
        assert.equal(letter.reason, "failed");
        assert.equal(letter.error, A_ERROR);
        assert.match(letter.ref, /^[0-9a-f]{16}$/);
        const time = Date.parse(letter.time);
        assert.ok(time <= before && time > before - TIMEOUT, letter.time);
      }
      assert.equal(new Set(letters.map((l) => l.ref)).size, 5);
      // Read again: the same dead letters in the same order, all still
      // there.
      assert.deepEqual(await collect(dead.list({ handler: "A" })), letters);
      assert.equal(await world.ready(dlq), 5);
      assert.equal(await dead.count({ handler: "A" }), 5);
      assert.equal(await dead.count(), 5);
      assert.equal(await dead.count({ handler: "B" }), 0);
      assert.equal(await dead.count({ type: "order.placed" }), 5);
      assert.equal(await dead.count({ handler: "A", type: "order.other" }), 0);
      assert.deepEqual(await collect(dead.list({ type: "order.other" })), []);
      assert.deepEqual(
        await collect(dead.list({ handler: "A", limit: 2 })),
        letters.slice(0, 2),
      );
      assert.deepEqual(await collect(dead.list({ limit: 0 })), []);
      assert.equal(await world.ready(dlq), 5);
      assert.equal(world.b.done.value, 5, "B completed every event");
    });

    it("runs calls made at once one at a time, so none sees the queue while another reads it", async () => {
      await using world = await deadLetterWorld("turns", 3);
      const dead = world.backend.deadLetters;
      const counts = await Promise.all([
        dead.count({ handler: "A" }),
        dead.count({ handler: "A" }),
        collect(dead.list()).then((l) => l.length),
        dead.count(),
        dead.count({ type: "order.placed" }),
      ]);
      assert.deepEqual(counts, [3, 3, 3, 3, 3]);
    });

    it("replay() runs the fixed handler once more per event, at attempt 1, and no other handler name", async () => {
      await using world = await deadLetterWorld("replay");
      const dead = world.backend.deadLetters;
      world.fix();
      assert.deepEqual(await dead.replay({ handler: "A", dryRun: true }), {
        replayed: 5,
      });
      assert.equal(await dead.count({ handler: "A" }), 5, "dry run");
      assert.equal(world.a.done.value, 0, "dry run");
      assert.deepEqual(await dead.replay({ handler: "A" }), { replayed: 5 });
      assert.equal(await dead.count(), 0, "removed when replay() resolves");
      await world.a.done.reach(5, TIMEOUT, "A's runs of the replayed events");
      assert.deepEqual(
        [...world.a.ids].sort(),
        world.events.map((e) => e.id).sort(),
      );
      for (const event of world.a.events) {
        assert.deepEqual(event, world.events.find((e) => e.id === event.id));
        assert.equal(event.metadata.traceparent, TRACEPARENT);
      }
      assert.deepEqual(world.a.attempts, [1, 1, 1, 1, 1]);
      // One more event through the exchange: once B handled it, B's queue
      // (FIFO) held no replayed copy before it.
      const last = await world.producer.emit("order.placed", { n: 99 });
      await world.b.done.reach(6, TIMEOUT, "B's run of the last event");
      await world.a.done.reach(6, TIMEOUT, "A's run of the last event");
      assert.deepEqual(
        [...world.b.ids].sort(),
        [...world.events.map((e) => e.id), last.id].sort(),
      );
      assert.equal(world.a.ids.length, 6);
      assert.equal(await dead.count(), 0);
    });

    it("replay() that fails between the confirm and the acknowledgement leaves the dead letter in place", async () => {
      await using world = await deadLetterWorld("fail", 3);
      const dead = world.backend.deadLetters as RabbitMqDeadLetters;
      world.fix();
      const letters = await collect(dead.list());
      const published: string[] = [];
      dead.afterPublish = (ref) => {
        published.push(ref);
        return Promise.reject(new Error("crash before the ack"));
      };
      await assert.rejects(dead.replay({ handler: "A" }), /crash before/);
      dead.afterPublish = undefined;
      assert.deepEqual(published, [letters[0]!.ref]);
      await world.a.done.reach(1, TIMEOUT, "A's run of the published copy");
      // Not one dead letter went, and the order is the same.
      assert.deepEqual(await collect(dead.list()), letters);
      assert.deepEqual(await dead.replay({ handler: "A" }), { replayed: 3 });
      await world.a.done.reach(4, TIMEOUT, "A's runs");
      assert.deepEqual(
        [...world.a.ids].sort(),
        [letters[0]!.event.id, ...world.events.map((e) => e.id)].sort(),
        "delivered, once more for the one published before the failure",
      );
      assert.equal(await dead.count(), 0);
    });

    it("replay() by a process killed between the confirm and the acknowledgement leaves every event dead-lettered or delivered", async () => {
      await using world = await deadLetterWorld("kill");
      const dead = world.backend.deadLetters;
      const dlq = `${world.exchange}.dead-letter`;
      world.fix();
      const child = new Child(REPLAYER, [SHARED_RABBITMQ, world.exchange, "A"]);
      try {
        await child.waitFor(
          (l) => "published" in l || "replayed" in l,
          1,
          "the replayer's first publish",
          TIMEOUT,
        );
      } finally {
        await child.kill("SIGKILL");
      }
      const line = child.lines.find((l) => "published" in l);
      assert.ok(line !== undefined, JSON.stringify(child.lines));
      // The broker puts back what the dead connection held.
      await world.readyReach(dlq, 5);
      await world.a.done.reach(1, TIMEOUT, "A's run of the published copy");
      const left = await collect(dead.list({ handler: "A" }));
      assert.equal(left.length, 5, "every dead letter stays after the kill");
      const [copy] = world.a.ids;
      assert.equal(
        left.find((l) => l.ref === line.published)?.event.id,
        copy,
        "the copy is of the dead letter being replayed",
      );
      assert.deepEqual(await dead.replay({ handler: "A" }), { replayed: 5 });
      await world.a.done.reach(6, TIMEOUT, "A's runs");
      assert.deepEqual(
        [...world.a.ids].sort(),
        [copy!, ...world.events.map((e) => e.id)].sort(),
      );
      assert.equal(await dead.count(), 0);
    });

    it("replay() keeps the dead letters of a handler whose queue does not exist, and reaches a queue without a worker", async () => {
      await using world = await deadLetterWorld("noqueue", 2);
      const queue = `${world.exchange}.A`;
      await world.worker.close({ timeout: 5_000 });
      await world.admin.queueDelete({ queue });
      const operator = world.open();
      const logger = new MemoryLogger();
      // A process that consumes nothing, with the logger a bus would give.
      await operator.consume(() => Promise.resolve({ status: "completed" }), {
        consumers: [],
        logger,
      });
      const dead = operator.deadLetters;
      assert.deepEqual(await dead.replay({ handler: "A", dryRun: true }), {
        replayed: 2,
      });
      assert.deepEqual(await dead.replay({ handler: "A" }), { replayed: 0 });
      assert.equal(await dead.count({ handler: "A" }), 2);
      const warnings = logger.lines.filter((e) => e.level === "warn");
      assert.equal(warnings.length, 2);
      for (const warning of warnings) {
        assert.match(warning.message, /queue ".*\.A" does not exist/);
      }
      // A new producer that lists the name declares its queue again: the
      // copy waits there for the handler's next worker.
      await using producer = new EventBus<Events>({
        backend: world.open(),
        logger: new MemoryLogger(),
      });
      await producer.emit("order.placed", { n: 2 });
      const [first] = await collect(dead.list({ limit: 1 }));
      assert.deepEqual(await dead.replay({ refs: [first!.ref] }), {
        replayed: 1,
      });
      await world.readyReach(queue, 2);
      assert.equal(await dead.count({ handler: "A" }), 1);
      const ran: string[] = [];
      await using next = new EventBus<Events>({
        backend: world.open(),
        logger: new MemoryLogger(),
      });
      next.subscribe("order.placed", (event) => void ran.push(event.id), {
        async: true,
        name: "A",
      });
      await next.listen();
      await withDeadline(
        (async () => {
          while (ran.length < 2) await work(20);
        })(),
        TIMEOUT,
        () => `the new worker of A ran ${ran.length} of 2`,
      );
      assert.ok(ran.includes(first!.event.id), "the replayed event ran");
    });

    it("purge() with dryRun counts and changes nothing; by ref, id and handler it removes those only", async () => {
      await using world = await deadLetterWorld("purge", 4);
      const dead = world.backend.deadLetters;
      const dlq = `${world.exchange}.dead-letter`;
      const letters = await collect(dead.list());
      assert.deepEqual(await dead.purge({ handler: "A", dryRun: true }), {
        purged: 4,
      });
      assert.deepEqual(await dead.purge({ dryRun: true }), { purged: 4 });
      assert.equal(await world.ready(dlq), 4);
      assert.deepEqual(
        await dead.purge({ refs: [letters[1]!.ref], dryRun: true }),
        { purged: 1 },
      );
      assert.deepEqual(await dead.purge({ refs: [letters[1]!.ref] }), {
        purged: 1,
      });
      assert.deepEqual(await dead.purge({ ids: [letters[2]!.event.id] }), {
        purged: 1,
      });
      assert.deepEqual(await dead.purge({ handler: "B" }), { purged: 0 });
      assert.deepEqual(await dead.purge({ refs: ["nope"] }), { purged: 0 });
      assert.deepEqual(
        (await collect(dead.list())).map((l) => l.ref),
        [letters[0]!.ref, letters[3]!.ref],
        "the others stay, in order",
      );
      assert.deepEqual(await dead.purge({ handler: "A" }), { purged: 2 });
      assert.equal(await world.ready(dlq), 0);
      assert.equal(world.aTries.value, 4 * ATTEMPTS, "nothing ran again");
    });

    it("lists a message that is not one of our events with reason invalid-event and its body, skips it in replay() and purges it", async () => {
      await using world = await deadLetterWorld("foreign", 1);
      const dead = world.backend.deadLetters;
      const dlq = `${world.exchange}.dead-letter`;
      // Not JSON on the events exchange: A's and B's consumers each
      // dead-letter it; then one published to the dead letters by others.
      const raw = world.admin.createPublisher({ confirm: true });
      await raw.send(
        { exchange: world.exchange, routingKey: "order.placed" },
        Buffer.from("garbage"),
      );
      await world.readyReach(dlq, 3);
      await raw.send(
        { exchange: dlq, routingKey: "", contentType: "text/plain" },
        Buffer.from("hello from elsewhere"),
      );
      await raw.close();
      await world.readyReach(dlq, 4);
      const all = await collect(dead.list());
      assert.equal(all.length, 4);
      const [ours, ...others] = all;
      assert.deepEqual(ours!.event, world.events[0]);
      const invalid = others.filter((l) => l.handler !== "");
      assert.deepEqual(invalid.map((l) => l.handler).sort(), ["A", "B"]);
      for (const letter of invalid) {
        assert.equal(letter.reason, "invalid-event");
        assert.equal(letter.event.data, "garbage");
        assert.match(letter.error, /SerializationError/);
        assert.match(letter.error, /"garbage"/);
      }
      const foreign = others.find((l) => l.handler === "")!;
      assert.equal(foreign.reason, "invalid-event");
      assert.equal(foreign.event.data, "hello from elsewhere");
      assert.match(foreign.error, /text\/plain, 20 bytes: "hello from/);
      assert.match(foreign.ref, /^h[0-9a-f]{8}$/);
      assert.equal(foreign.attempts, 0);
      world.fix();
      assert.deepEqual(await dead.replay({ dryRun: true }), { replayed: 4 });
      assert.deepEqual(await dead.replay({}), { replayed: 1 });
      await world.a.done.reach(1, TIMEOUT, "A's run");
      assert.deepEqual(world.a.ids, [world.events[0]!.id]);
      assert.deepEqual(
        (await collect(dead.list())).map((l) => l.ref),
        others.map((l) => l.ref),
        "skipped, with the same refs",
      );
      assert.deepEqual(
        await dead.purge({ refs: others.map((l) => l.ref) }),
        { purged: 3 },
      );
      assert.equal(await dead.count(), 0);
    });

    it("lists and replays a dead letter written without a ref or time (by an older version)", async () => {
      await using world = await deadLetterWorld("legacy", 0);
      const dead = world.backend.deadLetters;
      const dlq = `${world.exchange}.dead-letter`;
      const event = await world.producer.emit("order.placed", { n: 7 });
      await world.b.done.reach(1, TIMEOUT, "B's run");
      await world.readyReach(dlq, 1);
      await dead.purge({});
      const sent = Math.floor(Date.now() / 1000);
      const raw = world.admin.createPublisher({ confirm: true });
      await raw.send({
        exchange: dlq,
        routingKey: `${world.exchange}.A`,
        durable: true,
        contentType: "application/cloudevents+json",
        messageId: event.id,
        type: event.type,
        timestamp: sent,
        headers: {
          "x-eventbus-handler": "A",
          "x-eventbus-attempts": 2,
          "x-eventbus-reason": "failed",
          "x-eventbus-error": A_ERROR,
          "x-eventbus-queue": `${world.exchange}.A`,
        },
      }, Buffer.from(encodeEvent(event)));
      await raw.close();
      await world.readyReach(dlq, 1);
      const [letter] = await collect(dead.list());
      assert.deepEqual(letter!.event, event);
      assert.equal(letter!.handler, "A");
      assert.equal(letter!.attempts, 2);
      assert.match(letter!.ref, /^h[0-9a-f]{8}$/);
      assert.equal(letter!.time, new Date(sent * 1000).toISOString());
      assert.deepEqual(
        (await collect(dead.list())).map((l) => l.ref),
        [letter!.ref],
        "the same ref every time",
      );
      world.fix();
      assert.deepEqual(await dead.replay({ refs: [letter!.ref] }), {
        replayed: 1,
      });
      await world.a.done.reach(1, TIMEOUT, "A's run");
      assert.deepEqual(world.a.ids, [event.id]);
      assert.equal(world.b.done.value, 1, "B ran it once");
    });

    it("lists and replays a message RabbitMQ dead-lettered itself (a quorum queue's delivery limit)", async () => {
      await using world = await deadLetterWorld("limit", 0, {
        deliveryLimit: 3,
      });
      await world.worker.close({ timeout: 5_000 });
      const dead = world.open().deadLetters;
      const dlq = `${world.exchange}.dead-letter`;
      const queue = `${world.exchange}.A`;
      const event = await world.producer.emit("order.placed", { n: 1 });
      // Returned unacknowledged until the queue gives up on it.
      const channel = await world.admin.acquire();
      try {
        for (let i = 0; i < 10; i++) {
          const message = await channel.basicGet({ queue });
          if (message === undefined) break;
          channel.basicNack({ deliveryTag: message.deliveryTag });
        }
      } finally {
        await channel.close();
      }
      await world.readyReach(dlq, 1);
      const [letter] = await collect(dead.list());
      assert.deepEqual(letter!.event, event);
      assert.equal(letter!.handler, "A");
      assert.equal(letter!.reason, "delivery_limit");
      assert.match(letter!.ref, /^h[0-9a-f]{8}$/);
      assert.ok(!Number.isNaN(Date.parse(letter!.time)), letter!.time);
      assert.deepEqual(await dead.replay({ handler: "A" }), { replayed: 1 });
      await world.readyReach(queue, 1);
      assert.equal(await dead.count(), 0);
      assert.equal(
        await world.ready(`${world.exchange}.B`),
        1,
        "B's copy only",
      );
    });

    it("count() and list() find nothing, and replay() and purge() change nothing, without a dead-letter queue", async () => {
      await using world = await deadLetterWorld("none", 0);
      await world.admin.queueDelete({ queue: `${world.exchange}.dead-letter` });
      const dead = world.backend.deadLetters;
      assert.equal(await dead.count(), 0);
      assert.equal(await dead.count({ handler: "A" }), 0);
      assert.deepEqual(await collect(dead.list()), []);
      assert.deepEqual(await dead.replay({ handler: "A" }), { replayed: 0 });
      assert.deepEqual(await dead.purge({}), { purged: 0 });
    });

    it("rejects with EventBusClosedError after close()", async () => {
      await using world = await deadLetterWorld("closed", 0);
      await world.backend.close();
      await assert.rejects(
        world.backend.deadLetters.count(),
        (error: unknown) =>
          error instanceof Error && error.name === "EventBusClosedError",
      );
    });
  });
}
