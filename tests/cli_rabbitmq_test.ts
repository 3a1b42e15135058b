// Copyright 2026 the @eventbus/core authors. MIT license.
// The dead-letter CLI against the RabbitMQ on 127.0.0.1:5672 (`--backend
// rabbitmq`, a unique exchange per test, its queues deleted after): JSON
// output, a dry run that changes no queue, and a replay that reaches the
// failed handler only.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { runCli } from "../cli/mod.ts";
import { brokerMissing, reachable } from "./fixtures/_brokers.ts";
import { DEAD_LETTER_FIELDS } from "./fixtures/_dead_letter_backend.ts";
import {
  A_ERROR,
  ATTEMPTS,
  deadLetterWorld,
  SHARED_RABBITMQ,
  TIMEOUT,
  TRACEPARENT,
} from "./fixtures/_rabbitmq_dead_letters.ts";

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI with `--backend rabbitmq` on the shared broker and `exchange`. */
async function rabbitmq(exchange: string, args: string[]): Promise<Run> {
  let stdout = "";
  let stderr = "";
  const code = await runCli(
    [
      ...args,
      "--backend",
      "rabbitmq",
      "--url",
      SHARED_RABBITMQ,
      "--exchange",
      exchange,
    ],
    {
      stdout: (text) => void (stdout += text),
      stderr: (text) => void (stderr += text),
      stdin: (async function* () {})(),
    },
  );
  return { code, stdout, stderr };
}

if (!await reachable("127.0.0.1", 5672)) {
  brokerMissing("runCli --backend rabbitmq", "no RabbitMQ on 127.0.0.1:5672");
} else {
  describe("runCli --backend rabbitmq", () => {
    it("list --json prints one JSON object per dead letter with the documented fields and the emitted event", async () => {
      await using world = await deadLetterWorld("clilist", 3);
      const { code, stdout, stderr } = await rabbitmq(world.exchange, [
        "list",
        "--handler",
        "A",
        "--json",
      ]);
      assert.equal(code, 0, stderr);
      const letters = stdout.trimEnd().split("\n").map((line) =>
        JSON.parse(line)
      );
      assert.equal(letters.length, 3);
      for (const letter of letters) {
        assert.deepEqual(Object.keys(letter), DEAD_LETTER_FIELDS);
        assert.deepEqual(
          letter.event,
          world.events.find((e) => e.id === letter.event.id),
        );
        assert.equal(letter.event.metadata.traceparent, TRACEPARENT);
        assert.equal(letter.handler, "A");
        assert.equal(letter.attempts, ATTEMPTS);
        assert.equal(letter.reason, "failed");
        assert.equal(letter.error, A_ERROR);
      }
      const shown = await rabbitmq(world.exchange, [
        "show",
        letters[1].ref,
        "--json",
      ]);
      assert.equal(shown.code, 0, shown.stderr);
      assert.deepEqual(JSON.parse(shown.stdout), letters[1]);
      assert.equal(await world.ready(`${world.exchange}.dead-letter`), 3);
    });

    it("replay --dry-run changes no queue; replay reaches the failed handler only; count then exits 2", async () => {
      await using world = await deadLetterWorld("clireplay", 3);
      const dlq = `${world.exchange}.dead-letter`;
      world.fix();
      const dry = await rabbitmq(world.exchange, [
        "replay",
        "--handler",
        "A",
        "--dry-run",
      ]);
      assert.equal(dry.code, 0, dry.stderr);
      assert.equal(
        dry.stdout,
        'Would replay 3 dead letters (handler "A"); nothing changed (dry run)\n',
      );
      assert.equal(await world.ready(dlq), 3);
      assert.equal(await world.ready(`${world.exchange}.A`), 0);
      assert.equal(world.a.done.value, 0, "A did not run");
      const replay = await rabbitmq(world.exchange, [
        "replay",
        "--handler",
        "A",
      ]);
      assert.equal(replay.code, 0, replay.stderr);
      assert.equal(replay.stdout, 'Replayed 3 dead letters (handler "A")\n');
      await world.a.done.reach(3, TIMEOUT, "A's runs");
      // B's queue is FIFO: once B ran one more event, it held no copy.
      const last = await world.producer.emit("order.placed", { n: 9 });
      await world.b.done.reach(4, TIMEOUT, "B's run of the last event");
      assert.deepEqual(
        [...world.b.ids].sort(),
        [...world.events.map((e) => e.id), last.id].sort(),
      );
      const count = await rabbitmq(world.exchange, ["count"]);
      assert.equal(count.code, 2);
      assert.equal(count.stdout, "0\n");
    });
  });
}
