// Copyright 2026 the @eventbus/core authors. MIT license.
// KafkaBackend.deadLetters beyond the conformance cases: a replay that
// fails between the accepted copy and its removal marker (the event is
// delivered and still listed, never neither), a handler name whose
// consumer group never consumed (the dead letter stays, with a warning,
// and nothing is written), a message that is not an event (listed with
// its body, skipped by replay, purged by ref), the replayed copy on the
// wire, a replaying process killed between copy and marker, and calls
// after close(). On librdkafka's mock cluster unless
// KAFKA_BROKERS names a real one (tests/fixtures/_kafka.ts).

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { after, describe, it } from "node:test";
import { Kafka, logLevel } from "kafkajs";
import {
  type DeadLetter,
  type DeadLetters,
  encodeEvent,
  type Event,
  EventBus,
  EventBusClosedError,
} from "../../mod.ts";
import type { KafkaDeadLetters } from "../../backends/kafka/_dead_letters.ts";
import { brokerMissing } from "../fixtures/_brokers.ts";
import {
  freshTopic,
  header,
  readRaw,
  startKafka,
  type TestKafka,
} from "../fixtures/_kafka.ts";
import {
  collect,
  Counter,
  MemoryLogger,
  scriptCommand,
  withDeadline,
} from "../fixtures/_util.ts";
import { sleep } from "../../src/_async.ts";

const TIMEOUT = 30_000;
const REPLAYER = fileURLToPath(
  new URL("../fixtures/_kafka_replayer.ts", import.meta.url),
);
const TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

const started = await startKafka();

if (started.kafka === undefined) {
  brokerMissing("KafkaBackend.deadLetters", started.reason);
} else {
  const kafka = started.kafka;
  console.log(`Kafka dead-letter tests run against ${kafka.description}`);
  after(() => kafka.stop());
  declareTests(kafka);
}

/** Polls `count(filter)` until it is `target` (dead letters are written after onError). */
async function countReaches(
  dlq: DeadLetters,
  filter: { handler?: string },
  target: number,
): Promise<void> {
  let seen = -1;
  const poll = async () => {
    while ((seen = await dlq.count(filter)) !== target) await sleep(20);
  };
  await withDeadline(
    poll(),
    TIMEOUT,
    () => `dead letters reached ${seen} of ${target}`,
  );
}

/** Each partition's high watermark of `topic`, as text. */
async function ends(kafka: TestKafka, topic: string): Promise<string> {
  const admin = client(kafka).admin();
  await admin.connect();
  try {
    const offsets = await admin.fetchTopicOffsets(topic);
    return offsets.sort((a, b) => a.partition - b.partition)
      .map((o) => `${o.partition}:${o.high}`).join(",");
  } finally {
    await admin.disconnect();
  }
}

function client(kafka: TestKafka): Kafka {
  return new Kafka({ brokers: kafka.brokers, logLevel: logLevel.NOTHING });
}

function declareTests(kafka: TestKafka): void {
  describe(`KafkaBackend.deadLetters (${kafka.mock ? "mock cluster" : "real cluster"})`, () => {
    it("replay() failing after the copy was accepted leaves the event delivered and still dead-lettered, and a second replay removes it", async () => {
      const topic = await freshTopic(kafka, "kdl");
      const options = kafka.backendOptions(topic);
      let fixed = false;
      const handledByA: { event: Event; attempt: number }[] = [];
      const aDone = new Counter();
      const bDone = new Counter();
      const worker = new EventBus({
        backend: kafka.backend(options),
        logger: new MemoryLogger(),
        retry: { attempts: 1 },
        onError: () => {},
      });
      worker.subscribe("dl.order", (event, ctx) => {
        if (!fixed) throw new Error("mail server down");
        handledByA.push({ event, attempt: ctx.attempt });
        aDone.add();
      }, { async: true, name: "a" });
      worker.subscribe("dl.order", () => bDone.add(), {
        async: true,
        name: "b",
      });
      await using operator = kafka.backend(options);
      try {
        await worker.listen();
        const sent = await worker.emit("dl.order", { n: 1 }, {
          metadata: { traceparent: TRACEPARENT, partitionkey: "customer-7" },
        });
        await bDone.reach(1, TIMEOUT, "deliveries to b");
        const dlq = operator.deadLetters as KafkaDeadLetters;
        await countReaches(dlq, { handler: "a" }, 1);
        fixed = true;
        let failures = 0;
        dlq.afterPublish = () => {
          failures++;
          return Promise.reject(new Error("process died before the marker"));
        };
        await assert.rejects(
          dlq.replay({ handler: "a" }),
          /process died before the marker/,
        );
        assert.equal(failures, 1);
        await aDone.reach(1, TIMEOUT, "the copy delivered to a");
        // Delivered, and still dead-lettered: never neither.
        assert.equal(await dlq.count({ handler: "a" }), 1);
        dlq.afterPublish = undefined;
        assert.deepEqual(await dlq.replay({ handler: "a" }), { replayed: 1 });
        assert.equal(await dlq.count({ handler: "a" }), 0);
        await aDone.reach(2, TIMEOUT, "the second copy delivered to a");
        await worker.close({ timeout: 5000 });
        // At least once: a repeated replay delivers again, to a only.
        assert.deepEqual(
          handledByA.map(({ event, attempt }) => [event, attempt]),
          [[sent, 1], [sent, 1]],
        );
        assert.equal(bDone.value, 1);
        // On the wire: the original and two copies, same key and body,
        // each copy for handler a only, without the dead-letter headers.
        const messages = await readRaw(kafka, topic, 3);
        assert.equal(messages.length, 3);
        const copies = messages.filter((m) =>
          header(m, "eventbus-target-handler") !== undefined
        );
        assert.equal(copies.length, 2);
        for (const copy of copies) {
          assert.equal(header(copy, "eventbus-target-handler"), "a");
          assert.equal(String(copy.key), "customer-7");
          assert.equal(String(copy.value), encodeEvent(sent));
          assert.equal(header(copy, "eventbus-type"), "dl.order");
          assert.equal(header(copy, "eventbus-handler"), undefined);
          assert.equal(header(copy, "eventbus-reason"), undefined);
        }
      } finally {
        await worker.close({ timeout: 1000 });
      }
    });

    it("a replaying process killed between the accepted copy and its marker leaves every event delivered or dead-lettered", async () => {
      const topic = await freshTopic(kafka, "kdl");
      const options = kafka.backendOptions(topic);
      let fixed = false;
      const handledByA: string[] = [];
      const aDone = new Counter();
      const bDone = new Counter();
      const worker = new EventBus({
        backend: kafka.backend(options),
        logger: new MemoryLogger(),
        retry: { attempts: 1 },
        onError: () => {},
      });
      worker.subscribe("dl.order", (event) => {
        if (!fixed) throw new Error("mail server down");
        handledByA.push(event.id);
        aDone.add();
      }, { async: true, name: "a" });
      worker.subscribe("dl.order", () => bDone.add(), {
        async: true,
        name: "b",
      });
      try {
        await worker.listen();
        const sent: Event[] = [];
        for (let n = 0; n < 3; n++) {
          sent.push(await worker.emit("dl.order", { n }));
        }
        await bDone.reach(3, TIMEOUT, "deliveries to b");
        const dlq = worker.backend.deadLetters!;
        await countReaches(dlq, { handler: "a" }, 3);
        fixed = true;
        const [command, args] = scriptCommand(REPLAYER, [
          kafka.brokers.join(","),
          topic,
          "a",
        ]);
        const child = spawn(command, args, {
          stdio: ["ignore", "pipe", "pipe"],
        });
        const exited = new Promise<void>((resolve) =>
          child.once("exit", () => resolve())
        );
        let output = "";
        let stderr = "";
        child.stderr!.on("data", (chunk) => stderr += String(chunk));
        try {
          await withDeadline(
            new Promise<void>((resolve) => {
              child.stdout!.on("data", (chunk) => {
                output += String(chunk);
                if (output.includes("\n")) resolve();
              });
            }),
            TIMEOUT,
            () => `the replayer's first publish (stderr: ${stderr})`,
          );
        } finally {
          child.kill("SIGKILL");
          await exited;
        }
        const line = JSON.parse(output.split("\n")[0]!);
        assert.equal(typeof line.published, "string", output);
        // The copy it published reaches a; its dead letter is still listed.
        await aDone.reach(1, TIMEOUT, "the killed replayer's copy");
        const left = await collect(dlq.list({ handler: "a" }));
        assert.equal(left.length, 3, "no dead letter removed by the kill");
        for (const event of sent) {
          assert.ok(
            handledByA.includes(event.id) ||
              left.some((l) => l.event.id === event.id),
            `event ${event.id} is neither delivered nor dead-lettered`,
          );
        }
        assert.deepEqual(await dlq.replay({ handler: "a" }), { replayed: 3 });
        await aDone.reach(4, TIMEOUT, "the second replay's copies");
        assert.equal(await dlq.count({ handler: "a" }), 0);
        await worker.close({ timeout: 5000 });
        // At least once: the event replayed twice ran twice, each other once.
        assert.deepEqual(
          [...new Set(handledByA)].sort(),
          sent.map((e) => e.id).sort(),
        );
        assert.equal(handledByA.length, 4);
        assert.equal(bDone.value, 3);
      } finally {
        await worker.close({ timeout: 1000 });
      }
    });

    it("replay() keeps the dead letter of a handler name whose consumer group never consumed, warns, and writes nothing", async () => {
      const topic = await freshTopic(kafka, "kdl");
      const logger = new MemoryLogger();
      const backend = kafka.backend(kafka.backendOptions(topic));
      const worker = new EventBus({ backend, logger });
      worker.subscribe("dl.order", () => {}, { async: true, name: "a" });
      try {
        await worker.listen();
        // What a worker of "ghost" wrote before its group went away.
        const event = await worker.emit("dl.order", { n: 1 });
        const producer = client(kafka).producer();
        await producer.connect();
        await producer.send({
          topic: `${topic}.dlq`,
          acks: -1,
          messages: [{
            key: event.id,
            value: encodeEvent(event),
            headers: {
              "eventbus-type": "dl.order",
              "eventbus-handler": "ghost",
              "eventbus-reason": "failed",
              "eventbus-attempts": "3",
              "eventbus-error": "Error: gone",
              "eventbus-source-topic": topic,
              "eventbus-source-partition": "0",
              "eventbus-source-offset": "0",
            },
          }],
        });
        await producer.disconnect();
        const before = await ends(kafka, topic);
        assert.deepEqual(
          await backend.deadLetters.replay({ handler: "ghost" }),
          { replayed: 0 },
        );
        assert.equal(await ends(kafka, topic), before);
        assert.equal(await backend.deadLetters.count({ handler: "ghost" }), 1);
        const warnings = logger.lines.filter((l) =>
          l.level === "warn" && l.message.includes(`"${topic}.ghost"`)
        );
        assert.equal(warnings.length, 1);
        assert.match(warnings[0]!.message, /stays in the dead letters/);
        // A dry run still counts it: it is selected, only not replayable.
        assert.deepEqual(
          await backend.deadLetters.replay({ handler: "ghost", dryRun: true }),
          { replayed: 1 },
        );
      } finally {
        await worker.close({ timeout: 1000 });
      }
    });

    it("a message that is not an event is listed with its body, skipped by replay() with a warning, and purged by ref", async () => {
      const topic = await freshTopic(kafka, "kdl");
      const logger = new MemoryLogger();
      const backend = kafka.backend(kafka.backendOptions(topic));
      const worker = new EventBus({ backend, logger, onError: () => {} });
      worker.subscribe("junk.test", () => {}, {
        async: true,
        name: "reader",
      });
      try {
        await worker.listen();
        const producer = client(kafka).producer();
        await producer.connect();
        await producer.send({
          topic,
          acks: -1,
          messages: [{
            value: "not json at all",
            headers: { "eventbus-type": "junk.test" },
          }],
        });
        await producer.disconnect();
        const dlq = backend.deadLetters;
        await countReaches(dlq, {}, 1);
        const [letter] = await collect(dlq.list()) as [DeadLetter];
        assert.equal(letter.reason, "invalid-event");
        assert.equal(letter.handler, "reader");
        assert.equal(letter.attempts, 0);
        assert.equal(letter.event.type, "junk.test");
        assert.equal(letter.event.data, "not json at all");
        assert.match(letter.error, /SerializationError/);
        assert.ok(letter.error.includes('"not json at all"'), letter.error);
        assert.match(letter.ref, /^0:\d+$/);
        const before = await ends(kafka, topic);
        assert.deepEqual(await dlq.replay({}), { replayed: 0 });
        assert.equal(await ends(kafka, topic), before);
        assert.equal(
          logger.lines.filter((l) =>
            l.level === "warn" && l.message.includes("not one of our events")
          ).length,
          1,
        );
        assert.equal(await dlq.count(), 1);
        assert.deepEqual(await dlq.purge({ refs: [letter.ref] }), {
          purged: 1,
        });
        assert.equal(await dlq.count(), 0);
        assert.deepEqual(await collect(dlq.list()), []);
      } finally {
        await worker.close({ timeout: 1000 });
      }
    });

    it("purge(), replay(), count() and list() reject a malformed target with a TypeError or RangeError and remove nothing", async () => {
      const topic = await freshTopic(kafka, "kdl");
      await using backend = kafka.backend(kafka.backendOptions(topic));
      const dlq = backend.deadLetters;
      const producer = client(kafka).producer();
      await producer.connect();
      await producer.send({
        topic: `${topic}.dlq`,
        acks: -1,
        messages: [{
          value: "{}",
          headers: { "eventbus-handler": "a", "eventbus-reason": "failed" },
        }],
      });
      await producer.disconnect();
      const [letter] = await collect(dlq.list()) as [DeadLetter];
      const before = await ends(kafka, `${topic}.dlq`);
      // A string would match refs by substring: "0:01" contains "0:0".
      const refs = `${letter.ref}1` as unknown as string[];
      await assert.rejects(dlq.purge({ refs }), TypeError);
      await assert.rejects(
        dlq.replay({ ids: [1] as unknown as string[] }),
        TypeError,
      );
      await assert.rejects(
        dlq.count({ handler: 7 as unknown as string }),
        TypeError,
      );
      await assert.rejects(collect(dlq.list({ limit: -1 })), RangeError);
      await assert.rejects(
        dlq.purge(null as unknown as { refs: string[] }),
        TypeError,
      );
      assert.equal(await ends(kafka, `${topic}.dlq`), before);
      assert.equal(await dlq.count(), 1);
    });

    it("count(), list(), replay() and purge() reject with EventBusClosedError after close()", async () => {
      const topic = await freshTopic(kafka, "kdl");
      const backend = kafka.backend(kafka.backendOptions(topic));
      assert.equal(await backend.deadLetters.count(), 0);
      await backend.close();
      const dlq = backend.deadLetters;
      await assert.rejects(dlq.count(), EventBusClosedError);
      await assert.rejects(collect(dlq.list()), EventBusClosedError);
      await assert.rejects(dlq.replay({}), EventBusClosedError);
      await assert.rejects(dlq.purge({}), EventBusClosedError);
    });
  });
}
