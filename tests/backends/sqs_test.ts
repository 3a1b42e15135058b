// Copyright 2026 the @eventbus/core authors. MIT license.
// SqsBackend beyond the conformance suite, against the fauxqs emulator:
// routing to handler queues, queue attributes, dead letters (sent by the
// backend and moved by the redrive policy), retry delay through the
// visibility timeout, FIFO order and de-duplication, and a worker process
// killed mid-handler whose message SQS redelivers after its visibility
// timeout.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { after, describe, it } from "node:test";
import {
  DeleteMessageCommand,
  DeleteQueueCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  ListQueuesCommand,
  ListQueueTagsCommand,
  type Message,
  ReceiveMessageCommand,
  SendMessageCommand,
  type SQSClient,
} from "@aws-sdk/client-sqs";
import {
  BackendError,
  createEvent,
  DeadLetterError,
  decodeEvent,
  type Event,
  EventBus,
  EventBusClosedError,
  UnroutableEventError,
  uuidv7,
} from "../../mod.ts";
import { brokerMissing } from "../fixtures/_brokers.ts";
import { SqsBackend } from "@eventbus/sqs";
import { REGION, startSqs, type TestSqs } from "../fixtures/_sqs.ts";
import {
  Counter,
  MemoryLogger,
  scriptCommand,
  withDeadline,
} from "../fixtures/_util.ts";

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

/** Every character JSON.stringify leaves raw that SQS refuses, and more. */
const CONTROLS = Array.from({ length: 32 }, (_, i) => String.fromCharCode(i))
  .join("") + "\x7f\x85\u2028\u2029";
const TRICKY = `a😀\uFFFE\uFFFF\uD800z\uDFFF${CONTROLS}é`;

function declareTests(sqs: TestSqs): void {
  describe("SqsBackend (fauxqs emulator)", () => {
    it("SqsBackend.publish() sends the event to every handler queue of its type and none other", async () => {
      const queuePrefix = prefix();
      const client = sqs.client();
      const worker = await sqs.backend({ queuePrefix, waitTimeSeconds: 1 });
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
      const producer = await sqs.backend({ queuePrefix });
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

    it("SqsBackend.consume() creates a tagged queue whose redrive policy allows attempts + 5 receives", async () => {
      const queuePrefix = prefix();
      const client = sqs.client();
      const backend = await sqs.backend({
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
        maxReceiveCount: 9,
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

    it("SqsBackend.publish() keeps events for declared handlers whose first worker starts later", async () => {
      const queuePrefix = prefix();
      type E = { "declared.test": { n: number } };
      const producer = new EventBus<E>({
        backend: await sqs.backend({
          queuePrefix,
          handlers: { "declared.test": ["audit", "mail"] },
        }),
      });
      const ids: string[] = [];
      for (let n = 0; n < 5; n++) {
        ids.push((await producer.emit("declared.test", { n })).id);
      }
      await producer.close();
      const seen = { audit: [] as string[], mail: [] as string[] };
      const count = new Counter();
      const workers = await Promise.all(
        (["audit", "mail"] as const).map(async (name) => {
          const bus = new EventBus<E>({
            backend: await sqs.backend({ queuePrefix, waitTimeSeconds: 1 }),
            logger: new MemoryLogger(),
          });
          bus.subscribe("declared.test", (event) => {
            seen[name].push(event.id);
            count.add();
          }, { async: true, name });
          return bus;
        }),
      );
      await Promise.all(workers.map((bus) => bus.listen()));
      await count.reach(10, TIMEOUT, "deliveries");
      await Promise.all(workers.map((bus) => bus.close({ timeout: 5000 })));
      assert.deepEqual([...seen.audit].sort(), [...ids].sort());
      assert.deepEqual([...seen.mail].sort(), [...ids].sort());
      await sqs.deleteQueues(queuePrefix);
    });

    it("SqsBackend.publish() creates a declared handler queue again when it was deleted", async () => {
      const queuePrefix = prefix();
      const client = sqs.client();
      const producer = await sqs.backend({
        queuePrefix,
        handlers: { "recreate.test": ["keeper"] },
      });
      await producer.publish(createEvent("recreate.test", { n: 1 }));
      const name = producer.queueName("keeper");
      await client.send(
        new DeleteQueueCommand({ QueueUrl: await urlOf(client, name) }),
      );
      const second = createEvent("recreate.test", { n: 2 });
      await producer.publish(second);
      await producer.close();
      const [message] = await receive(client, await urlOf(client, name), 1);
      assert.deepEqual(decodeEvent(message!.Body!), second);
      client.destroy();
      await sqs.deleteQueues(queuePrefix);
    });

    it("SqsBackend.publish() rejects with UnroutableEventError when no handler queue of the type exists, and sends nothing", async () => {
      const queuePrefix = prefix();
      const client = sqs.client();
      const producer = new EventBus({
        backend: await sqs.backend({ queuePrefix }),
      });
      await assert.rejects(
        producer.emit("nobody.test", { n: 1 }),
        (error: unknown) =>
          error instanceof UnroutableEventError &&
          error instanceof BackendError &&
          error.name === "UnroutableEventError" &&
          error.backend === "sqs" &&
          error.eventType === "nobody.test" &&
          error.searched === `queue prefix "${queuePrefix}"` &&
          error.message.includes("start a worker") &&
          error.message.includes("handlers: {"),
      );
      await producer.close();
      const { QueueUrls = [] } = await client.send(
        new ListQueuesCommand({ QueueNamePrefix: queuePrefix }),
      );
      assert.deepEqual(QueueUrls, [], "no queue was created");
      client.destroy();
    });

    it("SqsBackend.publish() finds a handler queue created after its last discovery when it knows none for the type", async () => {
      const queuePrefix = prefix();
      type E = { "first.test": { n: number }; "known.test": { n: number } };
      const known = new EventBus<E>({
        backend: await sqs.backend({ queuePrefix, waitTimeSeconds: 1 }),
        logger: new MemoryLogger(),
      });
      known.subscribe("known.test", () => {}, { async: true, name: "known" });
      await known.listen();
      // A producer that trusts its list of handler queues for a minute.
      const producer = new EventBus<E>({
        backend: await sqs.backend({ queuePrefix, discoveryInterval: 60_000 }),
      });
      await producer.emit("known.test", { n: 0 }); // discovers: no "first.test"
      const seen: number[] = [];
      const count = new Counter();
      const worker = new EventBus<E>({
        backend: await sqs.backend({ queuePrefix, waitTimeSeconds: 1 }),
        logger: new MemoryLogger(),
      });
      worker.subscribe("first.test", (event) => {
        seen.push(event.data.n);
        count.add();
      }, { async: true, name: "first" });
      await worker.listen();
      await producer.emit("first.test", { n: 1 });
      await count.reach(1, TIMEOUT, "deliveries to the new queue");
      await producer.close();
      await Promise.all([known.close(), worker.close({ timeout: 5000 })]);
      assert.deepEqual(seen, [1]);
      await sqs.deleteQueues(queuePrefix);
    });

    it("SqsBackend.consume() of a new handler name resolves once publishers with a cached list route to it, and says it gets only later events", async () => {
      const queuePrefix = prefix();
      type E = { "added.test": { n: number } };
      const seen = { old: [] as number[], added: [] as number[] };
      const count = new Counter();
      const old = new EventBus<E>({
        backend: await sqs.backend({ queuePrefix, waitTimeSeconds: 1 }),
        logger: new MemoryLogger(),
      });
      old.subscribe("added.test", (event) => {
        seen.old.push(event.data.n);
        count.add();
      }, { async: true, name: "old" });
      await old.listen();
      const producer = new EventBus<E>({
        backend: await sqs.backend({ queuePrefix }),
      });
      await producer.emit("added.test", { n: 1 }); // caches ["old"]
      const logger = new MemoryLogger();
      const added = new EventBus<E>({
        backend: await sqs.backend({ queuePrefix, waitTimeSeconds: 1 }),
        logger,
      });
      added.subscribe("added.test", (event) => {
        seen.added.push(event.data.n);
        count.add();
      }, { async: true, name: "added" });
      await added.listen();
      await producer.emit("added.test", { n: 2 });
      await count.reach(3, TIMEOUT, "deliveries");
      await producer.close();
      await Promise.all([old.close(), added.close({ timeout: 5000 })]);
      assert.deepEqual([...seen.old].sort(), [1, 2]);
      assert.deepEqual(seen.added, [2], "no replay, nothing missed after");
      const warning = logger.lines.find((l) =>
        l.level === "warn" && l.message.includes(`new handler "added"`)
      );
      assert.ok(warning, "the new name is told what it gets");
      assert.match(warning.message, /published from now on/);
      assert.match(warning.message, new RegExp(`"${queuePrefix}old"`));
      await sqs.deleteQueues(queuePrefix);
    });

    it("SqsBackend.consume() rejects with EventBusClosedError when close() is called while it attaches", async () => {
      const queuePrefix = prefix();
      const client = sqs.client();
      const noop = () => Promise.resolve({ status: "completed" } as const);
      // Closed while it creates the queues.
      const early = await sqs.backend({ queuePrefix, waitTimeSeconds: 1 });
      const attaching = early.consume(noop, {
        consumers: [{ name: "early", type: "attach.test", attempts: 1 }],
      });
      await early.close({ timeout: 2000 });
      await assert.rejects(attaching, EventBusClosedError);
      // Closed while it waits for publishers to route to its new queue.
      const late = await sqs.backend({
        queuePrefix,
        waitTimeSeconds: 1,
        discoveryInterval: 60_000,
      });
      const waiting = late.consume(noop, {
        consumers: [{ name: "late", type: "attach.test", attempts: 1 }],
      });
      let settled = false;
      waiting.then(() => settled = true, () => settled = true);
      const name = late.queueName("late");
      const deadline = Date.now() + TIMEOUT;
      for (;;) {
        const { QueueUrls = [] } = await client.send(
          new ListQueuesCommand({ QueueNamePrefix: name }),
        );
        if (QueueUrls.some((url) => url.endsWith(`/${name}`))) break;
        assert.ok(Date.now() < deadline, "the queue was created");
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(settled, false, "consume() waits for the publishers");
      await withDeadline(
        late.close({ timeout: 2000 }),
        TIMEOUT,
        () => "close() did not resolve",
      );
      await assert.rejects(waiting, EventBusClosedError);
      client.destroy();
      await sqs.deleteQueues(queuePrefix);
    });

    it("SqsBackend.publish() rejects with EventBusClosedError after close()", async () => {
      const backend = await sqs.backend({ queuePrefix: prefix() });
      await backend.close();
      await assert.rejects(
        backend.publish(createEvent("closed.test", {})),
        EventBusClosedError,
      );
    });

    it("SqsBackend.connect() rejects a backend option in the client settings with a TypeError naming the second argument", async () => {
      const connect = SqsBackend.connect as (
        // deno-lint-ignore no-explicit-any
        c: any,
        // deno-lint-ignore no-explicit-any
        o?: any,
      ) => Promise<SqsBackend>;
      for (const key of ["queuePrefix", "fifo", "waitTimeSeconds"]) {
        const value = key === "fifo" ? true : key === "queuePrefix" ? "x-" : 1;
        await assert.rejects(
          connect({ endpoint: sqs.endpoint, [key]: value }),
          (error: unknown) =>
            error instanceof TypeError &&
            error.message.includes(`"${key}" is a backend option`) &&
            error.message.includes("second argument"),
        );
      }
      await assert.rejects(
        connect({ region: REGION }, { endpoint: sqs.endpoint }),
        (error: unknown) =>
          error instanceof TypeError &&
          error.message.includes(`"endpoint" is an SQS client setting`) &&
          error.message.includes("first argument"),
      );
      await assert.rejects(
        connect({ region: REGION }, { queuePrefx: "x-" }),
        (error: unknown) =>
          error instanceof TypeError &&
          error.message.includes(`unknown option "queuePrefx"`),
      );
      for (const handlers of [{ "bad type": ["x"] }, { "a.b": "x" }, []]) {
        await assert.rejects(
          connect({ region: REGION }, { handlers }),
          (error: unknown) =>
            error instanceof TypeError && error.message.includes("handlers"),
        );
      }
      const client = sqs.client();
      assert.throws(
        // deno-lint-ignore no-explicit-any
        () => new SqsBackend(client, { region: REGION } as any),
        (error: unknown) =>
          error instanceof TypeError &&
          error.message.includes(`"region" is an SQS client setting`),
      );
      client.destroy();
    });

    it("a dead-lettered delivery is sent to <queue>-dlq with error, attempts and handler, and deleted", async () => {
      const queuePrefix = prefix();
      const client = sqs.client();
      const dead = new Counter();
      const bus = new EventBus({
        backend: await sqs.backend({ queuePrefix, waitTimeSeconds: 1 }),
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
      assert.equal(attributes["eventbus-reason"]?.StringValue, "failed");
      assert.equal(attributes.type?.StringValue, "dlq.test");
      const queue = await urlOf(client, `${queuePrefix}payments`);
      assert.ok(await empty(client, queue), "the original was deleted");
      client.destroy();
      await sqs.deleteQueues(queuePrefix);
    });

    it("the redrive policy moves a message that was received attempts + 5 times to the dead-letter queue", async () => {
      const queuePrefix = prefix();
      const client = sqs.client();
      const backend = await sqs.backend({ queuePrefix, waitTimeSeconds: 1 });
      const detach = new AbortController();
      await backend.consume(() => Promise.resolve({ status: "completed" }), {
        consumers: [{ name: "poison", type: "poison.test", attempts: 1 }],
        signal: detach.signal,
      });
      detach.abort(); // only the queues: the raw client plays the consumers
      await backend.close({ timeout: 2000 }); // waits for the poll in flight
      const producer = await sqs.backend({ queuePrefix });
      await producer.publish(createEvent("poison.test", {}));
      await producer.close();
      const url = await urlOf(client, `${queuePrefix}poison`);
      // Six consumers that crash (receive, never delete, visibility 0): more
      // than the bus would ever allow, which only a foreign consumer does.
      for (let i = 1; i <= 6; i++) {
        const [message] = await receive(client, url, 1, 0);
        assert.equal(message!.Attributes?.ApproximateReceiveCount, String(i));
      }
      assert.ok(await empty(client, url), "the seventh receive finds nothing");
      const dlq = await urlOf(client, `${queuePrefix}poison-dlq`);
      const [moved] = await receive(client, dlq, 1);
      assert.equal(decodeEvent(moved!.Body!).type, "poison.test");
      client.destroy();
      await sqs.deleteQueues(queuePrefix);
    });

    it("a delivery received past its attempts by consumers that crashed is dead-lettered by the bus as crashed, once, without running", async () => {
      const queuePrefix = prefix();
      const client = sqs.client();
      const setup = await sqs.backend({ queuePrefix, waitTimeSeconds: 1 });
      const detach = new AbortController();
      await setup.consume(() => Promise.resolve({ status: "completed" }), {
        consumers: [{ name: "crashing", type: "crash.test", attempts: 2 }],
        signal: detach.signal,
      });
      detach.abort();
      await setup.close({ timeout: 2000 });
      const producer = await sqs.backend({ queuePrefix });
      const poison = createEvent("crash.test", { n: 1 });
      await producer.publish(poison);
      const url = await urlOf(client, `${queuePrefix}crashing`);
      // Two workers that died during their try: received, never deleted.
      for (let i = 1; i <= 2; i++) {
        const [message] = await receive(client, url, 1, 0);
        assert.equal(message!.Attributes?.ApproximateReceiveCount, String(i));
      }
      const dead: DeadLetterError[] = [];
      const reported = new Counter();
      const healthy = new Counter();
      let runs = 0;
      const bus = new EventBus<{ "crash.test": { n: number } }>({
        backend: await sqs.backend({ queuePrefix, waitTimeSeconds: 1 }),
        logger: new MemoryLogger(),
        retry: { attempts: 2, backoff: { initial: 1 } },
        onError: (error) => {
          if (error instanceof DeadLetterError) dead.push(error);
          reported.add();
        },
      });
      bus.subscribe("crash.test", (event) => {
        runs++;
        if (event.data.n === 2) healthy.add();
      }, { async: true, name: "crashing" });
      await bus.listen();
      await reported.reach(1, TIMEOUT, "dead letters");
      await producer.publish(createEvent("crash.test", { n: 2 }));
      await producer.close();
      await healthy.reach(1, TIMEOUT, "the healthy event");
      await bus.close({ timeout: 5000 });
      assert.equal(runs, 1, "the poison event never ran a third time");
      assert.equal(dead.length, 1);
      assert.equal(dead[0]!.reason, "crashed");
      assert.equal(dead[0]!.event.id, poison.id);
      assert.equal(dead[0]!.attempts, 2);
      const dlq = await urlOf(client, `${queuePrefix}crashing-dlq`);
      const [copy] = await receive(client, dlq, 1);
      assert.deepEqual(decodeEvent(copy!.Body!), poison);
      assert.equal(
        copy!.MessageAttributes?.["eventbus-reason"]?.StringValue,
        "crashed",
      );
      assert.equal(
        copy!.MessageAttributes?.["eventbus-attempts"]?.StringValue,
        "2",
      );
      assert.ok(await empty(client, url), "the original was deleted");
      assert.ok(await empty(client, dlq), "one dead-letter copy");
      client.destroy();
      await sqs.deleteQueues(queuePrefix);
    });

    it("a message the poll in flight returns after close() began is handed back unstarted, and its next try is attempt 1", async () => {
      const queuePrefix = prefix();
      type E = { "handback.test": { n: number } };
      const logger = new MemoryLogger();
      const first = new Counter();
      const worker = new EventBus<E>({
        backend: await sqs.backend({ queuePrefix, waitTimeSeconds: 5 }),
        logger,
      });
      worker.subscribe("handback.test", () => first.add(), {
        async: true,
        name: "handback",
      });
      await worker.listen();
      const producer = new EventBus<E>({
        backend: await sqs.backend({ queuePrefix }),
      });
      // One event handled proves the loop runs; it polls again at once.
      await producer.emit("handback.test", { n: 0 });
      await first.reach(1, TIMEOUT, "the first event");
      const closing = worker.close({ timeout: 10_000 });
      const sent = await producer.emit("handback.test", { n: 1 });
      await closing;
      assert.equal(first.value, 1, "nothing ran after close() began");
      const attempts: number[] = [];
      const again = new Counter();
      const next = new EventBus<E>({
        backend: await sqs.backend({ queuePrefix, waitTimeSeconds: 1 }),
        logger: new MemoryLogger(),
      });
      next.subscribe("handback.test", (event, ctx) => {
        assert.equal(event.id, sent.id);
        attempts.push(ctx.attempt);
        again.add();
      }, { async: true, name: "handback" });
      await next.listen();
      await again.reach(1, TIMEOUT, "the handed-back event");
      await producer.close();
      await next.close({ timeout: 5000 });
      assert.deepEqual(attempts, [1]);
      assert.ok(
        logger.lines.some((l) =>
          l.level === "debug" && l.message.startsWith("Handed back SQS message")
        ),
        "the poll in flight returned the event and handed it back",
      );
      await sqs.deleteQueues(queuePrefix);
    });

    it("a retry waits for the bus's delay through the visibility timeout, with the next receive count", async () => {
      const queuePrefix = prefix();
      const tries: { attempt: number; at: number }[] = [];
      const done = new Counter();
      const bus = new EventBus({
        backend: await sqs.backend({ queuePrefix, waitTimeSeconds: 1 }),
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
        backend: await sqs.backend({ queuePrefix, waitTimeSeconds: 1 }),
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
      assert.equal(
        message!.MessageAttributes?.["eventbus-reason"]?.StringValue,
        "invalid-event",
      );
      assert.ok(
        logger.lines.some((l) =>
          l.level === "error" && l.message.includes("Cannot decode SQS message")
        ),
      );
      client.destroy();
      await sqs.deleteQueues(queuePrefix);
    });

    it("SqsBackend.publish() round-trips every character emit accepts: emoji, U+FFFE, U+FFFF, lone surrogates, control characters", async () => {
      const queuePrefix = prefix();
      const client = sqs.client();
      type E = { "chars.test": Record<string, unknown> };
      const received: Event[] = [];
      const done = new Counter();
      const dead = new Counter();
      const worker = new EventBus<E>({
        backend: await sqs.backend({ queuePrefix, waitTimeSeconds: 1 }),
        logger: new MemoryLogger(),
        retry: { attempts: 1 },
        onError: () => dead.add(),
      });
      worker.subscribe("chars.test", (event) => {
        received.push(event);
        done.add();
        if (event.data.fail === true) throw new Error(`bad ${TRICKY}`);
      }, { async: true, name: "chars" });
      await worker.listen();
      const producer = new EventBus<E>({
        backend: await sqs.backend({ queuePrefix }),
      });
      const sent = [
        await producer.emit("chars.test", {
          [TRICKY]: TRICKY,
          list: [...TRICKY],
          emoji: "😀👍🏽",
          nonchars: "\uFFFE\uFFFF",
          lone: ["\uD800", "\uDBFF", "\uDC00", "\uDFFF", "\uDE00\uD83D"],
          controls: CONTROLS,
        }, {
          id: "id-😀-\uFFFF-\uFFFE",
          metadata: { traceparent: TRICKY, tracestate: CONTROLS },
        }),
        await producer.emit("chars.test", { fail: true, text: TRICKY }),
      ];
      await done.reach(2, TIMEOUT, "deliveries");
      await dead.reach(1, TIMEOUT, "dead letters");
      await producer.close();
      await worker.close({ timeout: 5000 });
      assert.deepEqual(received, sent);
      // The dead-letter copy keeps the body and escapes the error text.
      const dlq = await urlOf(client, `${queuePrefix}chars-dlq`);
      const [copy] = await receive(client, dlq, 1);
      assert.deepEqual(decodeEvent(copy!.Body!), sent[1]);
      assert.equal(
        copy!.MessageAttributes?.["eventbus-error"]?.StringValue,
        `Error: bad ${TRICKY}`.replace(
          /[^\t\n\r\x20-\uD7FF\uE000-\uFFFD]/g,
          (u) => `\\u${u.charCodeAt(0).toString(16).padStart(4, "0")}`,
        ),
      );
      client.destroy();
      await sqs.deleteQueues(queuePrefix);
    });

    it("FIFO queues take ids and partition keys SQS would refuse, and still de-duplicate by id", async () => {
      const queuePrefix = prefix();
      const client = sqs.client();
      const worker = await sqs.backend({
        queuePrefix,
        fifo: true,
        waitTimeSeconds: 1,
      });
      const detach = new AbortController();
      await worker.consume(() => Promise.resolve({ status: "completed" }), {
        consumers: [{ name: "ledger", type: "fifochars.test", attempts: 3 }],
        signal: detach.signal,
      });
      detach.abort(); // only the queue: the raw client reads it
      await worker.close({ timeout: 2000 });
      const producer = new EventBus<{ "fifochars.test": { n: number } }>({
        backend: await sqs.backend({ queuePrefix, fifo: true }),
      });
      const longId = `😀${"x".repeat(200)}`;
      const key = "ключ \uFFFF 😀";
      const sent: Event[] = [];
      for (let n = 0; n < 3; n++) {
        sent.push(
          await producer.emit("fifochars.test", { n }, {
            id: `${longId}-${n}`,
            metadata: { partitionkey: key },
          }),
        );
      }
      // The first id again: SQS de-duplicates it through its hash.
      await producer.emit("fifochars.test", { n: 0 }, {
        id: `${longId}-0`,
        metadata: { partitionkey: key },
      });
      await producer.close();
      const url = await urlOf(client, worker.queueName("ledger"));
      // A group yields its next message once the one before is deleted.
      const Messages: Message[] = [];
      for (let round = 0; round < 20 && Messages.length < 4; round++) {
        const answer = await client.send(
          new ReceiveMessageCommand({
            QueueUrl: url,
            MaxNumberOfMessages: 10,
            WaitTimeSeconds: 1,
            MessageSystemAttributeNames: [
              "MessageGroupId",
              "MessageDeduplicationId",
            ],
          }),
        );
        if (answer.Messages === undefined && Messages.length >= 3) break;
        for (const message of answer.Messages ?? []) {
          Messages.push(message);
          await client.send(
            new DeleteMessageCommand({
              QueueUrl: url,
              ReceiptHandle: message.ReceiptHandle,
            }),
          );
        }
      }
      assert.deepEqual(
        Messages.map((m) => decodeEvent(m.Body!)),
        sent,
        "in order, once each, unchanged",
      );
      // What AWS takes: 1 to 128 of a-z, A-Z, 0-9 and ASCII punctuation.
      const groups = new Set<string>();
      const ids = new Set<string>();
      for (const message of Messages) {
        const group = message.Attributes?.MessageGroupId ?? "";
        const id = message.Attributes?.MessageDeduplicationId ?? "";
        assert.match(group, /^[!-~]{1,128}$/);
        assert.match(id, /^[!-~]{1,128}$/);
        groups.add(group);
        ids.add(id);
      }
      assert.equal(groups.size, 1, "one partition key, one group");
      assert.equal(ids.size, 3, "three ids, three de-duplication ids");
      client.destroy();
      await sqs.deleteQueues(queuePrefix);
    });

    it("FIFO queues keep each partition key in order and store an event id once", async () => {
      const queuePrefix = prefix();
      type E = { "fifo.test": { key: string; n: number } };
      const seen: string[] = [];
      const done = new Counter();
      const worker = new EventBus<E>({
        backend: await sqs.backend({
          queuePrefix,
          fifo: true,
          waitTimeSeconds: 1,
        }),
        logger: new MemoryLogger(),
      });
      worker.subscribe("fifo.test", async (event) => {
        await new Promise((r) => setTimeout(r, 10 - event.data.n));
        seen.push(`${event.data.key}${event.data.n}`);
        done.add();
      }, { async: true, name: "ledger" });
      await worker.listen();
      const producer = new EventBus<E>({
        backend: await sqs.backend({ queuePrefix, fifo: true }),
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
        const producer = await sqs.backend({ queuePrefix });
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
          backend: await sqs.backend({ queuePrefix, waitTimeSeconds: 1 }),
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
  const script = fileURLToPath(
    new URL("../fixtures/_sqs_worker.ts", import.meta.url),
  );
  const [command, args] = scriptCommand(script, [endpoint, queuePrefix]);
  return spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
}
