// Copyright 2026 the @eventbus/core authors. MIT license.
// The dead-letter CLI against the Redis on 127.0.0.1:6379 (`--backend
// redis`, a unique key prefix per test, its keys deleted after): JSON
// output, a dry run that adds nothing, exit codes, and a replay that
// reaches the failed handler only.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { runCli } from "../cli/mod.ts";
import { brokerMissing, reachable } from "./fixtures/_brokers.ts";
import { DEAD_LETTER_FIELDS } from "./fixtures/_dead_letter_backend.ts";
import {
  A_ERROR,
  ATTEMPTS,
  deadLetterWorld,
  drained,
  REDIS_URL,
  TIMEOUT,
  TRACEPARENT,
} from "./fixtures/_redis_dead_letters.ts";

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI with `--backend redis` on the shared Redis and `prefix`. */
async function redis(prefix: string, args: string[]): Promise<Run> {
  let stdout = "";
  let stderr = "";
  const code = await runCli(
    [...args, "--backend", "redis", "--url", REDIS_URL, "--prefix", prefix],
    {
      stdout: (text) => void (stdout += text),
      stderr: (text) => void (stderr += text),
      stdin: (async function* () {})(),
    },
  );
  return { code, stdout, stderr };
}

if (!await reachable("127.0.0.1", 6379)) {
  brokerMissing("runCli --backend redis", "no Redis on 127.0.0.1:6379");
} else {
  describe("runCli --backend redis", () => {
    it("list --json prints one JSON object per dead letter with the documented fields and the emitted event", async () => {
      await using world = await deadLetterWorld();
      const { code, stdout, stderr } = await redis(world.prefix, [
        "list",
        "--handler",
        "A",
        "--json",
      ]);
      assert.equal(code, 0, stderr);
      const letters = stdout.trimEnd().split("\n").map((line) =>
        JSON.parse(line)
      );
      assert.equal(letters.length, 5);
      for (const letter of letters) {
        assert.deepEqual(Object.keys(letter), DEAD_LETTER_FIELDS);
        assert.match(letter.ref, /^\d+-\d+$/);
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
      const count = await redis(world.prefix, ["count", "--json"]);
      assert.equal(count.code, 0);
      assert.deepEqual(JSON.parse(count.stdout), { count: 5 });
      const shown = await redis(world.prefix, ["show", letters[0].ref]);
      assert.equal(shown.code, 0, shown.stderr);
      assert.ok(shown.stdout.includes(letters[0].event.id), shown.stdout);
    });

    it("replay --dry-run adds nothing; replay reaches the failed handler only; nothing left exits 2", async () => {
      await using world = await deadLetterWorld();
      const length = await world.admin.sendCommand(["XLEN", world.stream]);
      world.fix();
      const dry = await redis(world.prefix, [
        "replay",
        "--handler",
        "A",
        "--dry-run",
      ]);
      assert.equal(dry.code, 0, dry.stderr);
      assert.equal(
        dry.stdout,
        'Would replay 5 dead letters (handler "A"); nothing changed (dry run)\n',
      );
      assert.equal(
        await world.admin.sendCommand(["XLEN", world.stream]),
        length,
      );
      assert.equal(await world.backend.deadLetters.count(), 5);
      const bBefore = world.b.ids.length;
      const replay = await redis(world.prefix, ["replay", "--handler", "A"]);
      assert.equal(replay.code, 0, replay.stderr);
      assert.equal(replay.stdout, 'Replayed 5 dead letters (handler "A")\n');
      await world.a.done.reach(5, TIMEOUT, "A's runs");
      await drained(world.admin, world.stream, "B");
      assert.equal(world.b.ids.length, bBefore, "B ran 0 more times");
      assert.equal(await world.backend.deadLetters.count(), 0);
      for (const command of [["replay"], ["purge", "--yes"], ["list"]]) {
        const run = await redis(world.prefix, [...command, "--handler", "A"]);
        assert.equal(run.code, 2, `${command[0]}: ${run.stderr}`);
      }
    });
  });
}
