// Copyright 2026 the @eventbus/core authors. MIT license.
// KafkaBackend beyond the conformance suite: what it writes on the wire,
// the dead-letter topic, per-key order without head-of-line blocking, new
// consumer groups, attaching and closing, worker processes killed mid-stream
// (the successor resumes from the committed offset) and killed by their
// handler on every try (the try count survives them).

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { after, describe, it } from "node:test";
import { Kafka, type KafkaConfig, logLevel } from "kafkajs";
import {
  BackendError,
  createEvent,
  DeadLetterError,
  decodeEvent,
  EventBus,
  EventBusClosedError,
} from "../../mod.ts";
import { KafkaBackend, type KafkaBackendOptions } from "@eventbus/kafka";
import { brokerMissing } from "../fixtures/_brokers.ts";
import {
  freshTopic,
  header,
  readRaw,
  startKafka,
  type TestKafka,
} from "../fixtures/_kafka.ts";
import {
  Counter,
  MemoryLogger,
  scriptCommand,
  tally,
  withDeadline,
  work,
} from "../fixtures/_util.ts";

const TIMEOUT = 30_000;

describe("KafkaBackend arguments", () => {
  it("KafkaBackend.connect() rejects a backend option in the kafkajs config with a TypeError naming the second argument", async () => {
    const config = {
      brokers: ["127.0.0.1:1"],
      topic: "orders",
      concurrency: 4,
    } as KafkaConfig;
    await assert.rejects(
      KafkaBackend.connect(config),
      (error: unknown) =>
        error instanceof TypeError &&
        error.message.includes('"topic", "concurrency"') &&
        error.message.includes("second argument") &&
        error.message.includes("KafkaBackend.connect({ brokers }, { topic"),
    );
  });

  it("new KafkaBackend() rejects a kafkajs setting in the backend options with a TypeError naming the client config", () => {
    const kafka = new Kafka({ brokers: ["127.0.0.1:1"] });
    const options = { brokers: ["127.0.0.1:1"] } as KafkaBackendOptions;
    assert.throws(
      () => new KafkaBackend(kafka, options),
      (error: unknown) =>
        error instanceof TypeError && error.message.includes('"brokers"') &&
        error.message.includes("new Kafka(config)"),
    );
    const config = { brokers: ["127.0.0.1:1"] } as unknown as Kafka;
    assert.throws(
      () => new KafkaBackend(config),
      (error: unknown) =>
        error instanceof TypeError &&
        error.message.includes("KafkaBackend.connect(config, options)"),
    );
  });
});

const started = await startKafka();

if (started.kafka === undefined) {
  brokerMissing("KafkaBackend", started.reason);
} else {
  const kafka = started.kafka;
  console.log(`Kafka backend tests run against ${kafka.description}`);
  after(() => kafka.stop());
  declareTests(kafka);
}

function declareTests(kafka: TestKafka): void {
  describe(`KafkaBackend (${kafka.mock ? "mock cluster" : "real cluster"})`, () => {
    it("KafkaBackend.publish() writes structured CloudEvents JSON keyed by partition key, else id", async () => {
      const topic = await freshTopic(kafka, "kt");
      await using backend = kafka.backend(kafka.backendOptions(topic));
      const keyed = createEvent("wire.test", { n: 1 }, {
        metadata: { partitionkey: "customer-7" },
      });
      const plain = createEvent("wire.test", { n: 2 });
      await backend.publish(keyed);
      await backend.publish(plain);
      const messages = await readRaw(kafka, topic, 2);
      const byId = new Map(
        messages.map((m) => [decodeEvent(m.value!).id, m] as const),
      );
      const k = byId.get(keyed.id)!;
      const p = byId.get(plain.id)!;
      assert.equal(String(k.key), "customer-7");
      assert.equal(String(p.key), plain.id);
      for (const message of [k, p]) {
        assert.equal(
          header(message, "content-type"),
          "application/cloudevents+json; charset=UTF-8",
        );
        assert.equal(header(message, "eventbus-type"), "wire.test");
      }
      assert.deepEqual(decodeEvent(k.value!), keyed);
    });

    it("KafkaBackend.publish() rejects with EventBusClosedError after close()", async () => {
      const topic = await freshTopic(kafka, "kt");
      const backend = kafka.backend(kafka.backendOptions(topic));
      await backend.close();
      await assert.rejects(
        backend.publish(createEvent("wire.test", {})),
        EventBusClosedError,
      );
    });

    it("KafkaBackend.publish() rejects with BackendError when no broker answers", async () => {
      const backend = new KafkaBackend(
        new Kafka({
          brokers: ["127.0.0.1:1"],
          logLevel: logLevel.NOTHING,
          retry: { retries: 0 },
          connectionTimeout: 500,
        }),
        { idempotent: false },
      );
      await assert.rejects(
        backend.publish(createEvent("wire.test", {})),
        (error: unknown) =>
          error instanceof BackendError && error.backend === "kafka" &&
          error.cause !== undefined,
      );
      await backend.close();
    });

    it("a dead-lettered delivery lands in <topic>.dlq with handler, reason, attempts and error headers", async () => {
      const topic = await freshTopic(kafka, "kt");
      const dead = new Counter();
      const bus = new EventBus({
        backend: kafka.backend(kafka.backendOptions(topic)),
        logger: new MemoryLogger(),
        retry: { attempts: 2, backoff: { initial: 5 } },
        onError: () => dead.add(),
      });
      bus.subscribe("dlq.test", () => {
        throw new Error("card declined");
      }, { async: true, name: "payments" });
      await bus.listen();
      const event = await bus.emit("dlq.test", { order: 1 });
      await dead.reach(1, TIMEOUT, "dead letters");
      await bus.close({ timeout: 5000 });
      const [message] = await readRaw(kafka, `${topic}.dlq`, 1);
      assert.deepEqual(decodeEvent(message!.value!), event);
      assert.equal(header(message!, "eventbus-handler"), "payments");
      assert.equal(header(message!, "eventbus-reason"), "failed");
      assert.equal(header(message!, "eventbus-attempts"), "2");
      assert.equal(header(message!, "eventbus-error"), "Error: card declined");
      assert.equal(header(message!, "eventbus-source-topic"), topic);
    });

    it("a message that is not an event is dead-lettered and logged, and consuming goes on", async () => {
      const topic = await freshTopic(kafka, "kt");
      const logger = new MemoryLogger();
      const handled = new Counter();
      const bus = new EventBus({
        backend: kafka.backend(kafka.backendOptions(topic)),
        logger,
      });
      bus.subscribe("junk.test", () => handled.add(), {
        async: true,
        name: "junk-reader",
      });
      await bus.listen();
      const raw = new Kafka({
        brokers: kafka.brokers,
        logLevel: logLevel.NOTHING,
      })
        .producer();
      await raw.connect();
      await raw.send({
        topic,
        messages: [{ key: "same", value: "not json at all" }],
      });
      await raw.disconnect();
      const event = createEvent("junk.test", { ok: true }, {
        metadata: { partitionkey: "same" },
      });
      await bus.backend.publish(event);
      await handled.reach(1, TIMEOUT, "valid events handled");
      await bus.close({ timeout: 5000 });
      const [message] = await readRaw(kafka, `${topic}.dlq`, 1);
      assert.equal(String(message!.value), "not json at all");
      assert.equal(header(message!, "eventbus-reason"), "invalid-event");
      assert.equal(header(message!, "eventbus-attempts"), "0");
      assert.match(header(message!, "eventbus-error")!, /SerializationError/);
      assert.ok(
        logger.lines.some((l) =>
          l.level === "error" &&
          l.message.includes("Cannot decode Kafka message")
        ),
      );
    });

    it("events that share a partition key are handled in publish order", async () => {
      const topic = await freshTopic(kafka, "kt");
      const order: number[] = [];
      const done = new Counter();
      const worker = new EventBus<{ "order.test": { n: number } }>({
        backend: kafka.backend(kafka.backendOptions(topic)),
        logger: new MemoryLogger(),
      });
      const producer = new EventBus<{ "order.test": { n: number } }>({
        backend: kafka.backend(kafka.backendOptions(topic)),
      });
      worker.subscribe("order.test", async (event) => {
        // Later events finish faster: only per-key serialisation keeps order.
        await new Promise((r) => setTimeout(r, 20 - event.data.n));
        order.push(event.data.n);
        done.add();
      }, { async: true, name: "ordered" });
      await worker.listen();
      for (let n = 0; n < 20; n++) {
        await producer.emit("order.test", { n }, {
          metadata: { partitionkey: "account-1" },
        });
      }
      await done.reach(20, TIMEOUT, "ordered deliveries");
      await producer.close();
      await worker.close({ timeout: 5000 });
      assert.deepEqual(order, Array.from({ length: 20 }, (_, n) => n));
    });

    it("a worker killed mid-stream loses nothing: its successor resumes from the committed offset", async () => {
      const topic = await freshTopic(kafka, "kt");
      const total = 300;
      const child = spawnWorker(kafka.brokers, topic);
      const byChild: string[] = [];
      const childHandled = new Counter();
      const ready = new Counter();
      let buffer = "";
      child.stdout!.on("data", (chunk) => {
        buffer += String(chunk);
        let i: number;
        while ((i = buffer.indexOf("\n")) !== -1) {
          const line = buffer.slice(0, i);
          buffer = buffer.slice(i + 1);
          if (line === "ready") ready.add();
          else if (line.startsWith("handled ")) {
            byChild.push(line.slice(8));
            childHandled.add();
          }
        }
      });
      let stderr = "";
      child.stderr!.on("data", (chunk) => stderr += String(chunk));
      const exited = new Promise<void>((resolve) =>
        child.once("exit", () => resolve())
      );
      try {
        await ready.reach(1, TIMEOUT, `worker ready (stderr: ${stderr})`);
        const producer = new EventBus({
          backend: kafka.backend(kafka.backendOptions(topic)),
        });
        const ids: string[] = [];
        for (let n = 0; n < total; n++) {
          ids.push((await producer.emit("crash.job", { n })).id);
        }
        await producer.close();
        await childHandled.reach(50, TIMEOUT, "events handled by the worker");
        child.kill("SIGKILL");
        await withDeadline(exited, TIMEOUT, () => "worker did not exit");
        const killedAt = byChild.length;
        assert.ok(killedAt < total, "the worker was killed mid-stream");

        const bySuccessor: string[] = [];
        const successorHandled = new Counter();
        const missing = new Set(ids);
        for (const id of byChild) missing.delete(id);
        const successor = new EventBus({
          backend: kafka.backend(kafka.backendOptions(topic)),
          logger: new MemoryLogger(),
        });
        successor.subscribe("crash.job", (event) => {
          bySuccessor.push(event.id);
          if (missing.delete(event.id) && missing.size === 0) {
            successorHandled.add();
          }
        }, { async: true, name: "crashy" });
        await successor.listen();
        await successorHandled.reach(
          1,
          TIMEOUT,
          "every event handled by worker or successor",
        );
        await successor.close({ timeout: 5000 });
        assert.equal(missing.size, 0, "no accepted event lost");
        assert.ok(
          bySuccessor.length < total,
          `resumed from the committed offset (${bySuccessor.length} of ${total} redelivered)`,
        );
        for (const [id, n] of tally(bySuccessor)) {
          assert.equal(n, 1, `successor handled ${id} once`);
        }
      } finally {
        if (child.exitCode === null) child.kill("SIGKILL");
      }
    });

    it("an event waiting for its same-key predecessor holds no handler slot: other keys complete while a hot key's chain waits", async () => {
      // One partition: every event is fetched in publish order, the hot
      // key's 30 first. The hot key's first event blocks until every other
      // event completed; if waiting events held slots, nothing else could
      // run and the others would never complete.
      const topic = await freshTopic(kafka, "kt", 1);
      const concurrency = 4;
      type Events = { "hol.test": { key: string; n: number } };
      const worker = new EventBus<Events>({
        backend: kafka.backend({
          ...kafka.backendOptions(topic),
          concurrency,
        }),
        logger: new MemoryLogger(),
      });
      const producer = new EventBus<Events>({
        backend: kafka.backend(kafka.backendOptions(topic)),
      });
      const others = { keys: ["a", "b", "c", "d", "e"], each: 4 };
      const otherTotal = others.keys.length * others.each;
      let releaseHot!: () => void;
      const hotGate = new Promise<void>((resolve) => (releaseHot = resolve));
      // The other keys must get every slot the hot key does not use.
      let otherRunning = 0;
      let otherPeak = 0;
      let fullWidth!: () => void;
      const othersAtFullWidth = new Promise<void>((r) => (fullWidth = r));
      const order = new Map<string, number[]>();
      const otherDone = new Counter();
      const hotDone = new Counter();
      let hotDoneWhenOthersFinished = -1;
      worker.subscribe("hol.test", async ({ data }) => {
        if (data.key === "hot") {
          await hotGate;
          await work(5);
          order.set("hot", [...order.get("hot") ?? [], data.n]);
          hotDone.add();
          return;
        }
        otherRunning++;
        otherPeak = Math.max(otherPeak, otherRunning);
        if (otherRunning === concurrency - 1) fullWidth();
        await othersAtFullWidth;
        await work(5);
        otherRunning--;
        order.set(data.key, [...order.get(data.key) ?? [], data.n]);
        otherDone.add();
        if (otherDone.value === otherTotal) {
          hotDoneWhenOthersFinished = hotDone.value;
          releaseHot();
        }
      }, { async: true, name: "hol" });
      await worker.listen();
      for (let n = 0; n < 30; n++) {
        await producer.emit("hol.test", { key: "hot", n }, {
          metadata: { partitionkey: "hot" },
        });
      }
      for (let n = 0; n < others.each; n++) {
        for (const key of others.keys) {
          await producer.emit("hol.test", { key, n }, {
            metadata: { partitionkey: key },
          });
        }
      }
      await otherDone.reach(otherTotal, TIMEOUT, "other keys' events");
      await hotDone.reach(30, TIMEOUT, "hot key's events");
      await producer.close();
      await worker.close({ timeout: 5000 });
      assert.equal(hotDoneWhenOthersFinished, 0, "others done first");
      assert.equal(otherPeak, concurrency - 1, "others used the free slots");
      assert.deepEqual(
        order.get("hot"),
        Array.from({ length: 30 }, (_, n) => n),
      );
      for (const key of others.keys) {
        assert.deepEqual(order.get(key), [0, 1, 2, 3], `order of key ${key}`);
      }
    });

    it(
      "a consumer whose group join fails with an error kafkajs does not retry starts again, logs it, and handles every event once",
      {
        skip: kafka.failRequests === undefined &&
          "needs the mock cluster's request errors",
      },
      async () => {
        const topic = await freshTopic(kafka, "kt");
        const logger = new MemoryLogger();
        const bus = new EventBus({
          backend: kafka.backend(kafka.backendOptions(topic)),
          logger,
        });
        const seen = new Counter();
        const ids: string[] = [];
        bus.subscribe("rejoin.test", (event) => {
          ids.push(event.id);
          seen.add();
        }, { async: true, name: "rejoin" });
        // JoinGroup (API key 11) answers INVALID_REQUEST (42) twice: kafkajs
        // gives the consumer up ("crash" without restart) each time.
        await kafka.failRequests!(11, 42, 2);
        await bus.listen();
        const emitted: string[] = [];
        for (let n = 0; n < 5; n++) {
          emitted.push((await bus.emit("rejoin.test", { n })).id);
        }
        await seen.reach(5, TIMEOUT, "events handled");
        await bus.close({ timeout: 5000 });
        assert.deepEqual([...ids].sort(), [...emitted].sort());
        const restarts = logger.lines.filter((l) =>
          l.level === "error" && l.message.includes("starting it again")
        );
        assert.equal(restarts.length, 2, JSON.stringify(logger.lines));
      },
    );

    it("KafkaBackend.consume() rejects with EventBusClosedError when close() runs while it attaches", async () => {
      const topic = await freshTopic(kafka, "kt");
      const backend = kafka.backend(kafka.backendOptions(topic));
      const consuming = backend.consume(
        () => Promise.resolve({ status: "completed" as const }),
        { consumers: [{ name: "attach", type: "attach.test", attempts: 1 }] },
      );
      const closing = backend.close({ timeout: 1000 });
      await assert.rejects(consuming, EventBusClosedError);
      await closing;
    });

    it("a handler name new to the topic logs that it replays the retained events, or with fromBeginning false that it skips them", async () => {
      const topic = await freshTopic(kafka, "kt");
      type Events = { "newgroup.test": { n: number } };
      const producer = new EventBus<Events>({
        backend: kafka.backend(kafka.backendOptions(topic)),
      });
      const same = { metadata: { partitionkey: "one-partition" } };
      for (let n = 0; n < 3; n++) {
        await producer.emit("newgroup.test", { n }, same);
      }
      const replayLog = new MemoryLogger();
      const replayer = new EventBus<Events>({
        backend: kafka.backend(kafka.backendOptions(topic)),
        logger: replayLog,
      });
      const replayed: number[] = [];
      const replayCount = new Counter();
      replayer.subscribe("newgroup.test", ({ data }) => {
        replayed.push(data.n);
        replayCount.add();
      }, { async: true, name: "replayer" });
      const skipLog = new MemoryLogger();
      const skipper = new EventBus<Events>({
        backend: kafka.backend({
          ...kafka.backendOptions(topic),
          fromBeginning: false,
        }),
        logger: skipLog,
      });
      const skipped: number[] = [];
      const skipCount = new Counter();
      skipper.subscribe("newgroup.test", ({ data }) => {
        skipped.push(data.n);
        skipCount.add();
      }, { async: true, name: "skipper" });
      await replayer.listen();
      await skipper.listen();
      // consume() resolved after fetching started: with fromBeginning
      // false, an event emitted now is not skipped.
      await producer.emit("newgroup.test", { n: 3 }, same);
      await replayCount.reach(4, TIMEOUT, "replayed events");
      await skipCount.reach(1, TIMEOUT, "events after listen()");
      await closeBuses(producer, replayer, skipper);
      assert.deepEqual(replayed, [0, 1, 2, 3]);
      assert.deepEqual(skipped, [3], "the three earlier events were skipped");
      const replayLine = replayLog.lines.find((l) =>
        l.message.includes('Handler "replayer" is new')
      );
      assert.equal(replayLine?.level, "info");
      assert.match(replayLine!.message, /handles the 3 events/);
      assert.match(replayLine!.message, new RegExp(`"${topic}.replayer"`));
      const skipLine = skipLog.lines.find((l) =>
        l.message.includes('Handler "skipper" is new')
      );
      assert.equal(skipLine?.level, "warn");
      assert.match(skipLine!.message, /skips the 3 events/);
    });

    it("a worker killed by its handler on every allowed try: the next worker dead-letters the event as crashed without running it", async () => {
      const topic = await freshTopic(kafka, "kt");
      const producer = new EventBus({
        backend: kafka.backend(kafka.backendOptions(topic)),
      });
      const poison = await producer.emit("crash.poison", { n: 1 });
      const tries: number[] = [];
      for (let round = 1; round <= 2; round++) {
        const child = spawnWorker(kafka.brokers, topic, "poison");
        const lines = new Counter();
        let stdout = "";
        let stderr = "";
        child.stdout!.on("data", (chunk) => {
          stdout += String(chunk);
          for (const match of stdout.matchAll(/^try (\d+) (\S+)$/gm)) {
            if (match[2] === poison.id && tries.length < round) {
              tries.push(Number(match[1]));
              lines.add();
            }
          }
        });
        child.stderr!.on("data", (chunk) => stderr += String(chunk));
        const exited = new Promise<string | null>((resolve) =>
          child.once("exit", (_code, signal) => resolve(signal))
        );
        try {
          await lines.reach(1, TIMEOUT, `try of round ${round} (${stderr})`);
          assert.equal(
            await withDeadline(exited, TIMEOUT, () => "worker did not die"),
            "SIGKILL",
          );
        } finally {
          if (child.exitCode === null) child.kill("SIGKILL");
        }
      }
      assert.deepEqual(tries, [1, 2], "the count survived each killed worker");
      const dead: DeadLetterError[] = [];
      const reported = new Counter();
      const last = new EventBus({
        backend: kafka.backend({
          ...kafka.backendOptions(topic),
        }),
        logger: new MemoryLogger(),
        retry: { attempts: 2, backoff: { initial: 5 } },
        onError: (error) => {
          if (error instanceof DeadLetterError) dead.push(error);
          reported.add();
        },
      });
      const runs: number[] = [];
      const healthy = new Counter();
      last.subscribe("crash.poison", ({ data }) => {
        runs.push((data as { n: number }).n);
        healthy.add();
      }, { async: true, name: "poisoned" });
      await last.listen();
      await reported.reach(1, TIMEOUT, "dead letters");
      await producer.emit("crash.poison", { n: 2 });
      await healthy.reach(1, TIMEOUT, "the healthy event");
      await closeBuses(producer, last);
      assert.deepEqual(runs, [2], "the poison event never ran again");
      assert.equal(dead.length, 1);
      assert.equal(dead[0]!.reason, "crashed");
      assert.equal(dead[0]!.attempts, 2);
      assert.equal(dead[0]!.event.id, poison.id);
      const [copy] = await readRaw(kafka, `${topic}.dlq`, 1);
      assert.equal(decodeEvent(copy!.value!).id, poison.id);
      assert.equal(header(copy!, "eventbus-reason"), "crashed");
      assert.equal(header(copy!, "eventbus-attempts"), "2");
      assert.equal(header(copy!, "eventbus-handler"), "poisoned");
    });

    it(
      "KafkaBackend with the idempotent producer publishes and consumes",
      kafka.mock
        ? {
          skip:
            "the librdkafka mock reports controller id 0, so the idempotent producer cannot start; set KAFKA_BROKERS to run this against a real cluster",
        }
        : {},
      async () => {
        const topic = await freshTopic(kafka, "kt");
        const backend = kafka.backend({
          ...kafka.backendOptions(topic),
          idempotent: true,
        });
        const bus = new EventBus({ backend, logger: new MemoryLogger() });
        const handled = new Counter();
        bus.subscribe("idem.test", () => handled.add(), {
          async: true,
          name: "idem",
        });
        await bus.listen();
        for (let n = 0; n < 10; n++) await bus.emit("idem.test", { n });
        await handled.reach(10, TIMEOUT, "deliveries");
        await bus.close({ timeout: 5000 });
        assert.equal(handled.value, 10);
      },
    );
  });
}

function spawnWorker(
  brokers: string[],
  topic: string,
  mode: "steady" | "poison" = "steady",
) {
  const script = fileURLToPath(
    new URL("../fixtures/_kafka_worker.ts", import.meta.url),
  );
  const [command, args] = scriptCommand(script, [
    brokers.join(","),
    topic,
    mode,
  ]);
  return spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
}

async function closeBuses(
  ...buses: { close(options: { timeout: number }): Promise<unknown> }[]
): Promise<void> {
  await Promise.all(buses.map((bus) => bus.close({ timeout: 5000 })));
}
