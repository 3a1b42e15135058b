// Copyright 2026 the @eventbus/core authors. MIT license.
// SqsBackend beyond the conformance suite, against the fauxqs emulator:
// routing to handler queues, queue attributes, dead letters (sent by the
// backend and moved by the redrive policy), retry delay through the
// visibility timeout, FIFO order and de-duplication, and a worker process
// killed mid-handler whose message SQS redelivers after its visibility
// timeout.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { after, describe, it } from "node:test";
import {
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  ListQueueTagsCommand,
  type Message,
  ReceiveMessageCommand,
  SendMessageCommand,
  type SQSClient,
} from "@aws-sdk/client-sqs";
import {
  createEvent,
  decodeEvent,
  EventBus,
  EventBusClosedError,
  uuidv7,
} from "../../mod.ts";
import { brokerMissing } from "../_brokers.ts";
import { startSqs, type TestSqs } from "../_sqs.ts";
import { Counter, MemoryLogger, withDeadline } from "../_util.ts";

const TIMEOUT = 20_000;
const started = await startSqs();

if (started.sqs === undefined) {
  brokerMissing("SqsBackend", started.reason);
} else {
  const sqs = started.sqs;
  console.log(`SQS backend tests run against ${sqs.description}`);
  after(() => sqs.stop());
  declareTests(sqs);
}

function prefix(): string {
  return `bt-${uuidv7().slice(-12)}-`;
}

async function urlOf(client: SQSClient, name: string): Promise<string> {
  return (await client.send(new GetQueueUrlCommand({ QueueName: name })))
    .QueueUrl!;
}

/** Receives until `count` messages arrived, with a deadline. */
async function receive(
  client: SQSClient,
  url: string,
  count: number,
  visibility = 30,
): Promise<Message[]> {
  const messages: Message[] = [];
  const deadline = Date.now() + TIMEOUT;
  while (messages.length < count) {
    assert.ok(Date.now() < deadline, `received ${messages.length} of ${count}`);
    const { Messages = [] } = await client.send(
      new ReceiveMessageCommand({
        QueueUrl: url,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 1,
        VisibilityTimeout: visibility,
        MessageAttributeNames: ["All"],
        MessageSystemAttributeNames: ["ApproximateReceiveCount"],
      }),
    );
    messages.push(...Messages);
  }
  return messages;
}

/** True when the queue yields nothing within one short poll. */
async function empty(client: SQSClient, url: string): Promise<boolean> {
  const { Messages = [] } = await client.send(
    new ReceiveMessageCommand({
      QueueUrl: url,
      WaitTimeSeconds: 1,
      VisibilityTimeout: 0,
    }),
  );
  return Messages.length === 0;
}

function declareTests(sqs: TestSqs): void {
  describe("SqsBackend (fauxqs emulator)", () => {
    it("SqsBackend.publish() sends the event to every handler queue of its type and none other", async () => {
      const queuePrefix = prefix();
      const client = sqs.client();
      const worker = sqs.backend({ queuePrefix, waitTimeSeconds: 1 });
      const never = () => Promise.resolve({ status: "completed" } as const);
      // Attach without a bus, then stop polling, to read the queues raw.
      const detach = new AbortController();
      await worker.consume(never, {
        consumers: [
          { name: "audit", type: "route.test", attempts: 3 },
          { name: "mail", type: "route.test", attempts: 3 },
          { name: "other", type: "route.other", attempts: 3 },
        ],
        signal: detach.signal,
      });
      detach.abort();
      await worker.close({ timeout: 2000 });
      const producer = sqs.backend({ queuePrefix });
      const event = createEvent("route.test", { n: 1 }, {
        metadata: { traceparent: "00-a-b-01" },
      });
      await producer.publish(event);
      await producer.close();
      for (const name of ["audit", "mail"]) {
        const url = await urlOf(client, `${queuePrefix}${name}`);
        const [message] = await receive(client, url, 1);
        assert.deepEqual(decodeEvent(message!.Body!), event);
        assert.equal(
          message!.MessageAttributes?.type?.StringValue,
          "route.test",
        );
        assert.ok(await empty(client, url), `${name} got it once`);
      }
      const other = await urlOf(client, `${queuePrefix}other`);
      assert.ok(await empty(client, other), "other type's queue stays empty");
      client.destroy();
      await sqs.deleteQueues(queuePrefix);
    });

    it("SqsBackend.consume() creates a tagged queue whose redrive policy allows attempts + 1 receives", async () => {
      const queuePrefix = prefix();
      const client = sqs.client();
      const backend = sqs.backend({
        queuePrefix,
        visibilityTimeout: 45,
        waitTimeSeconds: 1,
      });
      await backend.consume(() => Promise.resolve({ status: "completed" }), {
        consumers: [{ name: "billing", type: "attr.test", attempts: 4 }],
      });
      await backend.close({ timeout: 2000 });
      const url = await urlOf(client, backend.queueName("billing"));
      const dlq = await urlOf(client, backend.deadLetterQueueName("billing"));
      const { Attributes } = await client.send(
        new GetQueueAttributesCommand({
          QueueUrl: url,
          AttributeNames: ["RedrivePolicy", "VisibilityTimeout"],
        }),
      );
      const { Attributes: dlqAttributes } = await client.send(
        new GetQueueAttributesCommand({
          QueueUrl: dlq,
          AttributeNames: ["QueueArn"],
        }),
      );
      assert.deepEqual(JSON.parse(Attributes!.RedrivePolicy!), {
        deadLetterTargetArn: dlqAttributes!.QueueArn,
        maxReceiveCount: 5,
      });
      assert.equal(Attributes!.VisibilityTimeout, "45");
      const { Tags } = await client.send(
        new ListQueueTagsCommand({ QueueUrl: url }),
      );
      assert.equal(Tags?.["eventbus:type"], "attr.test");
      assert.equal(
        backend.queueName("a.b#1"),
        `${queuePrefix}a-b-1-${backend.queueName("a.b#1").slice(-8)}`,
      );
      assert.notEqual(backend.queueName("a.b#1"), backend.queueName("a-b-1"));
      client.destroy();
      await sqs.deleteQueues(queuePrefix);
    });

    it("SqsBackend.publish() rejects with EventBusClosedError after close()", async () => {
      const backend = sqs.backend({ queuePrefix: prefix() });
      await backend.close();
      await assert.rejects(
        backend.publish(createEvent("closed.test", {})),
        EventBusClosedError,
      );
    });

    it("a dead-lettered delivery is sent to <queue>-dlq with error, attempts and handler, and deleted", async () => {
      const queuePrefix = prefix();
      const client = sqs.client();
      const dead = new Counter();
      const bus = new EventBus({
        backend: sqs.backend({ queuePrefix, waitTimeSeconds: 1 }),
        logger: new MemoryLogger(),
        retry: { attempts: 2, backoff: { initial: 1 } },
        onError: () => dead.add(),
      });
      bus.subscribe("dlq.test", () => {
        throw new Error("card declined");
      }, { async: true, name: "payments" });
      await bus.listen();
      const event = await bus.emit("dlq.test", { order: 1 });
      await dead.reach(1, TIMEOUT, "dead letters");
      await bus.close({ timeout: 5000 });
      const dlq = await urlOf(client, `${queuePrefix}payments-dlq`);
      const [message] = await receive(client, dlq, 1);
      assert.deepEqual(decodeEvent(message!.Body!), event);
      const attributes = message!.MessageAttributes!;
      assert.equal(
        attributes["eventbus-error"]?.StringValue,
        "Error: card declined",
      );
      assert.equal(attributes["eventbus-attempts"]?.StringValue, "2");
      assert.equal(attributes["eventbus-handler"]?.StringValue, "payments");
      assert.equal(attributes.type?.StringValue, "dlq.test");
      const queue = await urlOf(client, `${queuePrefix}payments`);
      assert.ok(await empty(client, queue), "the original was deleted");
      client.destroy();
      await sqs.deleteQueues(queuePrefix);
    });

    it("the redrive policy moves a message that was received attempts + 1 times to the dead-letter queue", async () => {
      const queuePrefix = prefix();
      const client = sqs.client();
      const backend = sqs.backend({ queuePrefix, waitTimeSeconds: 1 });
      const detach = new AbortController();
      await backend.consume(() => Promise.resolve({ status: "completed" }), {
        consumers: [{ name: "poison", type: "poison.test", attempts: 1 }],
        signal: detach.signal,
      });
      detach.abort(); // only the queues: the raw client plays the consumers
      await backend.close({ timeout: 2000 }); // waits for the poll in flight
      const producer = sqs.backend({ queuePrefix });
      await producer.publish(createEvent("poison.test", {}));
      await producer.close();
      const url = await urlOf(client, `${queuePrefix}poison`);
      // Two consumers that crash (receive, never delete, visibility 0).
      for (let i = 1; i <= 2; i++) {
        const [message] = await receive(client, url, 1, 0);
        assert.equal(message!.Attributes?.ApproximateReceiveCount, String(i));
      }
      assert.ok(await empty(client, url), "the third receive finds nothing");
      const dlq = await urlOf(client, `${queuePrefix}poison-dlq`);
      const [moved] = await receive(client, dlq, 1);
      assert.equal(decodeEvent(moved!.Body!).type, "poison.test");
      client.destroy();
      await sqs.deleteQueues(queuePrefix);
    });

    it("a retry waits for the bus's delay through the visibility timeout, with the next receive count", async () => {
      const queuePrefix = prefix();
      const tries: { attempt: number; at: number }[] = [];
      const done = new Counter();
      const bus = new EventBus({
        backend: sqs.backend({ queuePrefix, waitTimeSeconds: 1 }),
        logger: new MemoryLogger(),
        retry: { attempts: 2, backoff: { initial: 1000, jitter: false } },
      });
      bus.subscribe("retry.test", (_event, ctx) => {
        tries.push({ attempt: ctx.attempt, at: performance.now() });
        if (ctx.attempt === 1) throw new Error("not yet");
        done.add();
      }, { async: true, name: "patient" });
      await bus.listen();
      await bus.emit("retry.test", {});
      await done.reach(1, TIMEOUT, "second tries");
      await bus.close({ timeout: 5000 });
      assert.deepEqual(tries.map((t) => t.attempt), [1, 2]);
      assert.ok(
        tries[1]!.at - tries[0]!.at >= 950,
        `redelivered after ${Math.round(tries[1]!.at - tries[0]!.at)} ms`,
      );
      await sqs.deleteQueues(queuePrefix);
    });

    it("a body that is not an event is dead-lettered and logged, and consuming goes on", async () => {
      const queuePrefix = prefix();
      const client = sqs.client();
      const logger = new MemoryLogger();
      const handled = new Counter();
      const bus = new EventBus({
        backend: sqs.backend({ queuePrefix, waitTimeSeconds: 1 }),
        logger,
      });
      bus.subscribe("junk.test", () => handled.add(), {
        async: true,
        name: "reader",
      });
      await bus.listen();
      const url = await urlOf(client, `${queuePrefix}reader`);
      await client.send(
        new SendMessageCommand({ QueueUrl: url, MessageBody: "not json" }),
      );
      await bus.emit("junk.test", {});
      await handled.reach(1, TIMEOUT, "valid events handled");
      const dlq = await urlOf(client, `${queuePrefix}reader-dlq`);
      const [message] = await receive(client, dlq, 1);
      await bus.close({ timeout: 5000 });
      assert.equal(message!.Body, "not json");
      assert.match(
        message!.MessageAttributes?.["eventbus-error"]?.StringValue ?? "",
        /SerializationError/,
      );
      assert.ok(
        logger.lines.some((l) =>
          l.level === "error" && l.message.includes("Cannot decode SQS message")
        ),
      );
      client.destroy();
      await sqs.deleteQueues(queuePrefix);
    });

    it("FIFO queues keep each partition key in order and store an event id once", async () => {
      const queuePrefix = prefix();
      type E = { "fifo.test": { key: string; n: number } };
      const seen: string[] = [];
      const done = new Counter();
      const worker = new EventBus<E>({
        backend: sqs.backend({ queuePrefix, fifo: true, waitTimeSeconds: 1 }),
        logger: new MemoryLogger(),
      });
      worker.subscribe("fifo.test", async (event) => {
        await new Promise((r) => setTimeout(r, 10 - event.data.n));
        seen.push(`${event.data.key}${event.data.n}`);
        done.add();
      }, { async: true, name: "ledger" });
      await worker.listen();
      const producer = new EventBus<E>({
        backend: sqs.backend({ queuePrefix, fifo: true }),
      });
      for (let n = 0; n < 5; n++) {
        for (const key of ["a", "b"]) {
          await producer.emit("fifo.test", { key, n }, {
            id: `${key}-${n}`,
            metadata: { partitionkey: key },
          });
        }
      }
      // The same ids again: SQS de-duplicates them.
      await producer.emit("fifo.test", { key: "a", n: 0 }, {
        id: "a-0",
        metadata: { partitionkey: "a" },
      });
      await done.reach(10, TIMEOUT, "deliveries");
      await producer.close();
      await worker.close({ timeout: 5000 });
      assert.deepEqual(seen.filter((s) => s[0] === "a"), [
        "a0",
        "a1",
        "a2",
        "a3",
        "a4",
      ]);
      assert.deepEqual(seen.filter((s) => s[0] === "b"), [
        "b0",
        "b1",
        "b2",
        "b3",
        "b4",
      ]);
      assert.equal(seen.length, 10, "the duplicate id was stored once");
      await sqs.deleteQueues(queuePrefix);
    });

    it("a worker killed mid-handler loses nothing: SQS redelivers after the visibility timeout", async () => {
      const queuePrefix = prefix();
      const child = spawnWorker(sqs.endpoint, queuePrefix);
      const starts: string[] = [];
      const ready = new Counter();
      const startedCount = new Counter();
      let buffer = "";
      let stderr = "";
      child.stdout!.on("data", (chunk) => {
        buffer += String(chunk);
        let i: number;
        while ((i = buffer.indexOf("\n")) !== -1) {
          const line = buffer.slice(0, i);
          buffer = buffer.slice(i + 1);
          if (line === "ready") ready.add();
          else if (line.startsWith("started ")) {
            starts.push(line.slice(8));
            startedCount.add();
          }
        }
      });
      child.stderr!.on("data", (chunk) => stderr += String(chunk));
      const exited = new Promise<void>((r) => child.once("exit", () => r()));
      try {
        await ready.reach(1, TIMEOUT, `worker ready (stderr: ${stderr})`);
        const producer = sqs.backend({ queuePrefix });
        const ids: string[] = [];
        for (let n = 0; n < 3; n++) {
          const event = createEvent("crash.job", { n });
          await producer.publish(event);
          ids.push(event.id);
        }
        await producer.close();
        await startedCount.reach(3, TIMEOUT, "handlers started in the worker");
        child.kill("SIGKILL");
        await withDeadline(exited, TIMEOUT, () => "worker did not exit");
        assert.deepEqual(starts.map((s) => s.split(" ")[1]), ["1", "1", "1"]);

        const again = new Map<string, number>();
        const count = new Counter();
        const successor = new EventBus({
          backend: sqs.backend({ queuePrefix, waitTimeSeconds: 1 }),
          logger: new MemoryLogger(),
        });
        successor.subscribe("crash.job", (event, ctx) => {
          again.set(event.id, ctx.attempt);
          count.add();
        }, { async: true, name: "crashy" });
        await successor.listen();
        await count.reach(3, TIMEOUT, "redeliveries");
        await successor.close({ timeout: 5000 });
        assert.deepEqual([...again.keys()].sort(), [...ids].sort());
        for (const attempt of again.values()) assert.equal(attempt, 2);
      } finally {
        if (child.exitCode === null) child.kill("SIGKILL");
        await sqs.deleteQueues(queuePrefix);
      }
    });
  });
}

function spawnWorker(endpoint: string, queuePrefix: string) {
  const script = fileURLToPath(new URL("../_sqs_worker.ts", import.meta.url));
  const args = process.versions.bun !== undefined
    ? [script, endpoint, queuePrefix]
    : ["run", "-A", script, endpoint, queuePrefix];
  return spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
}
