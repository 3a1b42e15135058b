// Copyright 2026 the @eventbus/core authors. MIT license.
// SqsBackend.deadLetters against the fauxqs emulator (not AWS): listing a
// dead-letter queue by receiving it whole and making it visible again,
// replay that fails between send and delete (at-least-once), replay to a
// handler queue that no longer exists, foreign and redrive-moved messages,
// and replay on FIFO queues within SQS's de-duplication window.

import assert from "node:assert/strict";
import process from "node:process";
import { after, describe, it } from "node:test";
import {
  DeleteQueueCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  ListQueueTagsCommand,
  SendMessageCommand,
  type SQSClient,
} from "@aws-sdk/client-sqs";
import {
  createEvent,
  type DeadLetter,
  type DeadLetters,
  encodeEvent,
  type Event,
  EventBus,
  uuidv7,
} from "../../mod.ts";
import type { SqsBackend } from "@eventbus/sqs";
import { runCli } from "../../cli/mod.ts";
import type { SqsDeadLetters } from "../../backends/sqs/_dead_letters.ts";
import { brokerMissing } from "../fixtures/_brokers.ts";
import { DEAD_LETTER_FIELDS } from "../fixtures/_dead_letter_backend.ts";
import { REGION, startSqs, type TestSqs } from "../fixtures/_sqs.ts";
import {
  collect,
  Counter,
  MemoryLogger,
  withDeadline,
} from "../fixtures/_util.ts";

const TIMEOUT = 20_000;
const TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
type Events = { "order.placed": { n: number } };

const started = await startSqs();
if (started.sqs === undefined) {
  brokerMissing("SqsBackend.deadLetters", started.reason);
} else {
  const sqs = started.sqs;
  console.log(`SQS dead-letter tests run against ${sqs.description}`);
  after(() => sqs.stop());
  declareTests(sqs);
}

/** Handler A fails until fixed; B always succeeds; an operator backend. */
interface World extends AsyncDisposable {
  queuePrefix: string;
  client: SQSClient;
  bus: EventBus<Events>;
  operator: SqsBackend;
  dead: SqsDeadLetters;
  events: Event[];
  a: { events: Event[]; attempts: number[]; done: Counter };
  b: { events: Event[]; done: Counter };
  fix(): void;
}

async function deadLetterWorld(
  sqs: TestSqs,
  { count, fifo = false }: { count: number; fifo?: boolean },
): Promise<World> {
  const queuePrefix = `dl-${uuidv7().slice(-12)}-`;
  const client = sqs.client();
  let fixed = false;
  const bus = new EventBus<Events>({
    backend: await sqs.backend({ queuePrefix, waitTimeSeconds: 1, fifo }),
    logger: new MemoryLogger(),
    retry: { attempts: 1 },
    onError: () => {},
  });
  const a = {
    events: [] as Event[],
    attempts: [] as number[],
    done: new Counter(),
  };
  const b = { events: [] as Event[], done: new Counter() };
  bus.subscribe("order.placed", (event, ctx) => {
    if (!fixed) throw new Error(`mail server down for ${event.data.n}`);
    a.events.push(event);
    a.attempts.push(ctx.attempt);
    a.done.add();
  }, { async: true, name: "A" });
  bus.subscribe("order.placed", (event) => {
    b.events.push(event);
    b.done.add();
  }, { async: true, name: "B" });
  await bus.listen();
  const operator = await sqs.backend({ queuePrefix, fifo });
  const dead = operator.deadLetters as SqsDeadLetters;
  dead.logger = new MemoryLogger();
  const events: Event[] = [];
  for (let n = 0; n < count; n++) {
    events.push(
      await bus.emit("order.placed", { n }, {
        metadata: { traceparent: TRACEPARENT },
      }),
    );
  }
  await b.done.reach(count, TIMEOUT, "deliveries to B");
  await countReaches(dead, count);
  return {
    queuePrefix,
    client,
    bus,
    operator,
    dead,
    events,
    a,
    b,
    fix: () => fixed = true,
    async [Symbol.asyncDispose]() {
      await bus.close({ timeout: 2000 });
      await operator.close();
      client.destroy();
      await sqs.deleteQueues(queuePrefix);
    },
  };
}

/** Polls until handler A's dead letters number `count` (written after onError). */
async function countReaches(dead: DeadLetters, count: number): Promise<void> {
  let seen = -1;
  const poll = async () => {
    while ((seen = await dead.count({ handler: "A" })) < count) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };
  await withDeadline(
    poll(),
    TIMEOUT,
    () => `dead letters of A: ${seen} of ${count}`,
  );
}

async function urlOf(client: SQSClient, name: string): Promise<string> {
  return (await client.send(new GetQueueUrlCommand({ QueueName: name })))
    .QueueUrl!;
}

/** A queue's visible and in-flight message counts. */
async function messages(
  client: SQSClient,
  url: string,
): Promise<{ visible: number; inFlight: number }> {
  const { Attributes = {} } = await client.send(
    new GetQueueAttributesCommand({
      QueueUrl: url,
      AttributeNames: [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
      ],
    }),
  );
  return {
    visible: Number(Attributes.ApproximateNumberOfMessages),
    inFlight: Number(Attributes.ApproximateNumberOfMessagesNotVisible),
  };
}

function warnings(dead: SqsDeadLetters): string[] {
  return (dead.logger as MemoryLogger).lines
    .filter((line) => line.level === "warn")
    .map((line) => line.message);
}

function declareTests(sqs: TestSqs): void {
  describe("SqsBackend.deadLetters (fauxqs emulator)", () => {
    it("list() reads a whole dead-letter queue (25, more than one receive), oldest first, the same on every call, and leaves every message visible", async () => {
      await using world = await deadLetterWorld(sqs, { count: 25 });
      const { dead, client, queuePrefix } = world;
      const letters = await collect(dead.list({ handler: "A" }));
      assert.equal(letters.length, 25);
      assert.deepEqual(
        letters.map((l) => l.event.id).sort(),
        world.events.map((e) => e.id).sort(),
      );
      for (const letter of letters) {
        assert.deepEqual(
          letter.event,
          world.events.find((e) => e.id === letter.event.id),
        );
        assert.equal(letter.handler, "A");
        assert.equal(letter.attempts, 1);
        assert.equal(letter.reason, "failed");
        assert.match(letter.error, /^Error: mail server down for \d+$/);
        assert.match(letter.ref, /^[0-9a-f]{8}-[0-9a-f-]{27}$/);
      }
      assert.equal(new Set(letters.map((l) => l.ref)).size, 25);
      const times = letters.map((l) => Date.parse(l.time));
      assert.deepEqual(times, [...times].sort((x, y) => x - y), "oldest first");
      const dlq = await urlOf(client, `${queuePrefix}A-dlq`);
      assert.deepEqual(await messages(client, dlq), {
        visible: 25,
        inFlight: 0,
      });
      assert.deepEqual(await collect(dead.list({ handler: "A" })), letters);
      assert.deepEqual(
        await collect(dead.list({ handler: "A", limit: 10 })),
        letters.slice(0, 10),
      );
      assert.deepEqual(await collect(dead.list()), letters);
      assert.equal(await dead.count(), 25);
      assert.equal(await dead.count({ handler: "B" }), 0);
      assert.equal(await dead.count({ type: "order.other" }), 0);
      assert.deepEqual(await messages(client, dlq), {
        visible: 25,
        inFlight: 0,
      });
      assert.equal(world.b.events.length, 25);
    });

    it("replay() that fails between SendMessage and the delete leaves the event delivered and still dead-lettered, never neither", async () => {
      await using world = await deadLetterWorld(sqs, { count: 3 });
      const { dead } = world;
      world.fix();
      let sent: DeadLetter | undefined;
      dead.afterSend = (letter) => {
        sent = letter;
        return Promise.reject(new Error("killed before the delete"));
      };
      await assert.rejects(
        dead.replay({ handler: "A" }),
        /killed before the delete/,
      );
      dead.afterSend = undefined;
      await world.a.done.reach(1, TIMEOUT, "the copy SQS accepted");
      assert.deepEqual(world.a.events.map((e) => e.id), [sent!.event.id]);
      const left = await collect(dead.list({ handler: "A" }));
      assert.deepEqual(
        left.map((l) => l.event.id).sort(),
        world.events.map((e) => e.id).sort(),
        "every event still dead-lettered, the replayed one too",
      );
      assert.deepEqual(await dead.replay({ handler: "A" }), { replayed: 3 });
      assert.equal(await dead.count(), 0);
      await world.a.done.reach(4, TIMEOUT, "the replayed copies");
      assert.deepEqual(
        [...new Set(world.a.events.map((e) => e.id))].sort(),
        world.events.map((e) => e.id).sort(),
        "every event delivered (one twice)",
      );
      assert.deepEqual(world.a.attempts, [1, 1, 1, 1]);
      assert.equal(world.b.events.length, 3, "B ran 0 more times");
    });

    it("replay() leaves the dead letters of a handler whose queue is gone, with a warning each, counted as not replayed", async () => {
      await using world = await deadLetterWorld(sqs, { count: 2 });
      const { dead, client, queuePrefix } = world;
      await world.bus.close({ timeout: 2000 });
      await client.send(
        new DeleteQueueCommand({
          QueueUrl: await urlOf(client, `${queuePrefix}A`),
        }),
      );
      assert.deepEqual(await dead.replay({ handler: "A", dryRun: true }), {
        replayed: 2,
      });
      assert.deepEqual(await dead.replay({ handler: "A" }), { replayed: 0 });
      const warned = warnings(dead);
      assert.equal(warned.length, 2);
      for (const line of warned) {
        assert.match(line, new RegExp(`"${queuePrefix}A" does not exist`));
      }
      assert.equal(await dead.count({ handler: "A" }), 2);
    });

    it("list() shows foreign messages as invalid-event with the body, and redrive-moved events as crashed; replay() skips the foreign ones, purge() removes them", async () => {
      await using world = await deadLetterWorld(sqs, { count: 0 });
      const { dead, client, queuePrefix } = world;
      world.fix();
      const dlq = await urlOf(client, `${queuePrefix}A-dlq`);
      const moved = createEvent("order.placed", { n: 7 });
      for (
        const body of [
          "hello from elsewhere",
          JSON.stringify({ not: "an event" }),
          encodeEvent(moved), // as the redrive policy moves it: no attributes
        ]
      ) {
        await client.send(
          new SendMessageCommand({ QueueUrl: dlq, MessageBody: body }),
        );
      }
      // A body on the handler queue that is not an event: the consumer
      // dead-letters it itself, with reason invalid-event.
      await client.send(
        new SendMessageCommand({
          QueueUrl: await urlOf(client, `${queuePrefix}A`),
          MessageBody: "<xml/>",
        }),
      );
      await countReaches(dead, 4);
      const letters = await collect(dead.list({ handler: "A" }));
      const find = (data: unknown) =>
        letters.find((l) =>
          JSON.stringify(l.event.data) === JSON.stringify(data)
        )!;
      const text = find("hello from elsewhere");
      assert.equal(text.reason, "invalid-event");
      assert.equal(text.handler, "A");
      assert.equal(text.attempts, 0);
      assert.equal(text.event.type, "");
      assert.match(text.error, /the message body: hello from elsewhere$/);
      const json = find({ not: "an event" });
      assert.equal(json.reason, "invalid-event");
      assert.match(json.error, /the message body: \{"not":"an event"\}$/);
      const xml = find("<xml/>");
      assert.equal(xml.reason, "invalid-event");
      assert.match(xml.error, /the message body: <xml\/>$/);
      const crashed = letters.find((l) => l.event.id === moved.id)!;
      assert.deepEqual(crashed.event, moved);
      assert.equal(crashed.reason, "crashed");
      assert.match(crashed.error, /redrive policy/);
      // Without a handler filter, its handler comes from the queue's tag.
      assert.deepEqual(
        (await client.send(new ListQueueTagsCommand({ QueueUrl: dlq }))).Tags,
        { "eventbus:dead-letters-of": "A" },
      );
      const all = await collect(dead.list());
      assert.equal(all.find((l) => l.event.id === moved.id)?.handler, "A");
      assert.deepEqual(await dead.replay({ handler: "A" }), { replayed: 1 });
      await world.a.done.reach(1, TIMEOUT, "the replayed event");
      assert.deepEqual(world.a.events, [moved]);
      assert.equal(warnings(dead).length, 3);
      for (const line of warnings(dead)) {
        assert.match(line, /is not an event of this bus/);
      }
      assert.deepEqual(
        await dead.purge({ refs: [text.ref, json.ref, xml.ref] }),
        { purged: 3 },
      );
      assert.equal(await dead.count(), 0);
    });

    it("replay() on FIFO queues reaches the handler within SQS's five-minute de-duplication window, same id, at attempt 1", async () => {
      await using world = await deadLetterWorld(sqs, { count: 2, fifo: true });
      const { dead } = world;
      assert.equal(await dead.count({ handler: "A" }), 2);
      world.fix();
      assert.deepEqual(await dead.replay({ handler: "A" }), { replayed: 2 });
      assert.equal(await dead.count(), 0);
      await world.a.done.reach(2, TIMEOUT, "the replayed events");
      assert.deepEqual(world.a.events, world.events);
      assert.deepEqual(world.a.attempts, [1, 1]);
      assert.equal(world.b.events.length, 2, "B ran 0 more times");
    });

    it("the dlq command line lists (--json), dry-runs and replays the dead letters of --queue-prefix on --endpoint", async () => {
      await using world = await deadLetterWorld(sqs, { count: 2 });
      // The CLI takes credentials from the AWS environment; fauxqs checks none.
      process.env.AWS_ACCESS_KEY_ID ??= "test";
      process.env.AWS_SECRET_ACCESS_KEY ??= "test";
      const cli = async (...args: string[]) => {
        let stdout = "";
        let stderr = "";
        const code = await runCli([
          ...args,
          "--backend",
          "sqs",
          "--endpoint",
          sqs.endpoint,
          "--region",
          REGION,
          "--queue-prefix",
          world.queuePrefix,
        ], {
          stdout: (text) => void (stdout += text),
          stderr: (text) => void (stderr += text),
          stdin: (async function* () {})(),
        });
        return { code, stdout, stderr };
      };
      const list = await cli("list", "--handler", "A", "--json");
      assert.equal(list.code, 0, list.stderr);
      const letters = list.stdout.trimEnd().split("\n").map((line) =>
        JSON.parse(line)
      );
      assert.equal(letters.length, 2);
      for (const letter of letters) {
        assert.deepEqual(Object.keys(letter), DEAD_LETTER_FIELDS);
        assert.deepEqual(
          letter.event,
          world.events.find((e) => e.id === letter.event.id),
        );
        assert.equal(letter.handler, "A");
      }
      const dry = await cli("replay", "--handler", "A", "--dry-run", "--json");
      assert.equal(dry.code, 0, dry.stderr);
      assert.deepEqual(JSON.parse(dry.stdout), { replayed: 2, dryRun: true });
      assert.equal(await world.dead.count({ handler: "A" }), 2);
      assert.equal(world.a.events.length, 0, "a dry run sends nothing");
      world.fix();
      const replay = await cli("replay", "--ref", letters[0].ref, "--json");
      assert.equal(replay.code, 0, replay.stderr);
      assert.deepEqual(JSON.parse(replay.stdout), {
        replayed: 1,
        dryRun: false,
      });
      await world.a.done.reach(1, TIMEOUT, "the replayed event");
      assert.deepEqual(world.a.events.map((e) => e.id), [letters[0].event.id]);
      assert.equal(await world.dead.count(), 1);
      const none = await cli("list", "--handler", "B");
      assert.equal(none.code, 2, none.stderr);
    });
  });
}
