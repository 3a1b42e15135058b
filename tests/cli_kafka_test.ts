// Copyright 2026 the @eventbus/core authors. MIT license.
// The dead-letter CLI on Kafka (`--backend kafka`), against librdkafka's
// mock cluster unless KAFKA_BROKERS names a real one: JSON output with
// "<partition>:<offset>" refs, a dry run that writes nothing, exit code 2
// when nothing matched, and a replay through the CLI. The built-in
// `--backend kafka` opens the idempotent producer, which the mock cannot
// serve, so the replay runs through a backend opened the mock's way
// (`backends` of runCli), named "kafka-test".

import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { Kafka, logLevel } from "kafkajs";
import { runCli } from "../cli/mod.ts";
import { type Event, EventBus, uuidv7 } from "../mod.ts";
import { brokerMissing } from "./fixtures/_brokers.ts";
import { DEAD_LETTER_FIELDS } from "./fixtures/_dead_letter_backend.ts";
import { startKafka, type TestKafka } from "./fixtures/_kafka.ts";
import { Counter, MemoryLogger, withDeadline } from "./fixtures/_util.ts";
import { sleep } from "../src/_async.ts";

const TIMEOUT = 30_000;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Three events dead-lettered by handler "a"; handler "b" handled them. */
interface World extends AsyncDisposable {
  topic: string;
  events: Event[];
  handledByA: Event[];
  aDone: Counter;
  bDone: Counter;
  fix(): void;
}

const started = await startKafka();

if (started.kafka === undefined) {
  brokerMissing("runCli --backend kafka", started.reason);
} else {
  const kafka = started.kafka;
  after(() => kafka.stop());
  declareTests(kafka);
}

async function world(kafka: TestKafka): Promise<World> {
  const topic = `kcli-${uuidv7()}`;
  await kafka.createTopic(topic, 2);
  await kafka.createTopic(`${topic}.dlq`, 1);
  let fixed = false;
  const handledByA: Event[] = [];
  const aDone = new Counter();
  const bDone = new Counter();
  const bus = new EventBus({
    backend: kafka.backend(kafka.backendOptions(topic)),
    logger: new MemoryLogger(),
    retry: { attempts: 1 },
    onError: () => {},
  });
  bus.subscribe("cli.order", (event) => {
    if (!fixed) throw new Error("mail server down");
    handledByA.push(event);
    aDone.add();
  }, { async: true, name: "a" });
  bus.subscribe("cli.order", () => bDone.add(), { async: true, name: "b" });
  await bus.listen();
  const events: Event[] = [];
  for (let n = 0; n < 3; n++) events.push(await bus.emit("cli.order", { n }));
  await bDone.reach(3, TIMEOUT, "deliveries to b");
  const dlq = bus.backend.deadLetters!;
  let seen = -1;
  await withDeadline(
    (async () => {
      while ((seen = await dlq.count({ handler: "a" })) < 3) await sleep(20);
    })(),
    TIMEOUT,
    () => `dead letters of a reached ${seen} of 3`,
  );
  return {
    topic,
    events,
    handledByA,
    aDone,
    bDone,
    fix: () => fixed = true,
    [Symbol.asyncDispose]: async () => void await bus.close({ timeout: 1000 }),
  };
}

/** Runs the CLI on `topic`, with the built-in backend or the mock's own. */
async function cli(
  kafka: TestKafka,
  topic: string,
  args: string[],
  backend = "kafka",
): Promise<Run> {
  let stdout = "";
  let stderr = "";
  const code = await runCli(
    [
      ...args,
      "--backend",
      backend,
      "--brokers",
      kafka.brokers.join(","),
      "--topic",
      topic,
    ],
    {
      backends: {
        "kafka-test": () =>
          Promise.resolve(kafka.backend(kafka.backendOptions(topic))),
      },
      stdout: (text) => void (stdout += text),
      stderr: (text) => void (stderr += text),
      stdin: (async function* () {})(),
    },
  );
  return { code, stdout, stderr };
}

/** Each partition's high watermark of `topic`, as text. */
async function ends(kafka: TestKafka, topic: string): Promise<string> {
  const admin = new Kafka({
    brokers: kafka.brokers,
    logLevel: logLevel.NOTHING,
  })
    .admin();
  await admin.connect();
  try {
    const offsets = await admin.fetchTopicOffsets(topic);
    return offsets.sort((a, b) => a.partition - b.partition)
      .map((o) => `${o.partition}:${o.high}`).join(",");
  } finally {
    await admin.disconnect();
  }
}

function declareTests(kafka: TestKafka): void {
  describe(`runCli --backend kafka (${kafka.mock ? "mock cluster" : "real cluster"})`, () => {
    it("list --json prints each dead letter with the documented fields, refs <partition>:<offset>, and exit code 2 when nothing matches", async () => {
      await using w = await world(kafka);
      const listed = await cli(kafka, w.topic, [
        "list",
        "--handler",
        "a",
        "--json",
      ]);
      assert.equal(listed.code, 0, listed.stderr);
      const letters = listed.stdout.trimEnd().split("\n").map((line) =>
        JSON.parse(line)
      );
      assert.equal(letters.length, 3);
      for (const letter of letters) {
        assert.deepEqual(Object.keys(letter), DEAD_LETTER_FIELDS);
        assert.match(letter.ref, /^0:\d+$/);
        assert.deepEqual(
          letter.event,
          w.events.find((e) => e.id === letter.event.id),
        );
        assert.equal(letter.handler, "a");
        assert.equal(letter.attempts, 1);
        assert.equal(letter.reason, "failed");
        assert.equal(letter.error, "Error: mail server down");
      }
      const none = await cli(kafka, w.topic, ["list", "--handler", "b"]);
      assert.equal(none.code, 2, none.stderr);
    });

    it("replay --dry-run reports the count and writes nothing; replay reaches handler a only", async () => {
      await using w = await world(kafka);
      const topicBefore = await ends(kafka, w.topic);
      const dlqBefore = await ends(kafka, `${w.topic}.dlq`);
      const dry = await cli(kafka, w.topic, [
        "replay",
        "--handler",
        "a",
        "--dry-run",
        "--json",
      ]);
      assert.equal(dry.code, 0, dry.stderr);
      assert.deepEqual(JSON.parse(dry.stdout), { replayed: 3, dryRun: true });
      assert.equal(await ends(kafka, w.topic), topicBefore);
      assert.equal(await ends(kafka, `${w.topic}.dlq`), dlqBefore);
      w.fix();
      const done = await cli(
        kafka,
        w.topic,
        ["replay", "--handler", "a", "--json"],
        "kafka-test",
      );
      assert.equal(done.code, 0, done.stderr);
      assert.deepEqual(JSON.parse(done.stdout), {
        replayed: 3,
        dryRun: false,
      });
      await w.aDone.reach(3, TIMEOUT, "replayed deliveries to a");
      const count = await cli(kafka, w.topic, ["count", "--json"]);
      assert.deepEqual(JSON.parse(count.stdout), { count: 0 });
      await w[Symbol.asyncDispose]();
      assert.deepEqual(
        w.handledByA.map((e) => e.id).sort(),
        w.events.map((e) => e.id).sort(),
      );
      assert.equal(w.bDone.value, 3);
    });
  });
}
