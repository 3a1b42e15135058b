// Copyright 2026 the @eventbus/core authors. MIT license.
// The dead-letter CLI against the shared nats-server (`--backend nats`, a
// unique stream per test, deleted after): JSON output, dry runs that
// publish nothing, exit codes, and a replay that reaches the failed
// handler only.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { runCli } from "@eventbus/cli";
import { brokerMissing, reachable } from "./fixtures/_brokers.ts";
import { DEAD_LETTER_FIELDS } from "./fixtures/_dead_letter_backend.ts";
import { SHARED_NATS } from "./fixtures/_nats.ts";
import {
  A_ERROR,
  ATTEMPTS,
  deadLetterWorld,
  drained,
  messagesIn,
  TIMEOUT,
  TRACEPARENT,
} from "./fixtures/_nats_dead_letters.ts";

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI with `--backend nats` on the shared server and `stream`. */
async function nats(
  stream: string,
  args: string[],
  servers = SHARED_NATS,
): Promise<Run> {
  let stdout = "";
  let stderr = "";
  const code = await runCli(
    [...args, "--backend", "nats", "--servers", servers, "--stream", stream],
    {
      stdout: (text) => void (stdout += text),
      stderr: (text) => void (stderr += text),
      stdin: (async function* () {})(),
    },
  );
  return { code, stdout, stderr };
}

if (!await reachable("127.0.0.1", 4222)) {
  brokerMissing("runCli --backend nats", `no NATS server on ${SHARED_NATS}`);
} else {
  describe("runCli --backend nats", () => {
    it("list --json prints one JSON object per dead letter with the documented fields and the emitted event", async () => {
      await using world = await deadLetterWorld("clilist");
      const { code, stdout, stderr } = await nats(world.names.stream, [
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
        assert.match(letter.ref, /^\d+$/);
        assert.deepEqual(
          letter.event,
          world.events.find((e) => e.id === letter.event.id),
        );
        assert.equal(letter.event.metadata.traceparent, TRACEPARENT);
        assert.equal(letter.handler, "A");
        assert.equal(letter.attempts, ATTEMPTS);
        assert.equal(letter.reason, "failed");
        assert.equal(letter.error, A_ERROR);
        assert.ok(!Number.isNaN(Date.parse(letter.time)), letter.time);
      }
      assert.deepEqual(
        letters.map((l) => l.event.id).sort(),
        world.events.map((e) => e.id).sort(),
      );
      const count = await nats(world.names.stream, ["count", "--json"]);
      assert.equal(count.code, 0);
      assert.deepEqual(JSON.parse(count.stdout), { count: 5 });
    });

    it("replay --dry-run publishes nothing and says how many would be replayed", async () => {
      await using world = await deadLetterWorld("clidry");
      const { stream } = world.names;
      const dlq = `${stream}_DLQ`;
      const events = await messagesIn(world.admin, stream);
      const letters = await messagesIn(world.admin, dlq);
      world.fix();
      const { code, stdout, stderr } = await nats(stream, [
        "replay",
        "--handler",
        "A",
        "--dry-run",
      ]);
      assert.equal(code, 0, stderr);
      assert.equal(
        stdout,
        'Would replay 5 dead letters (handler "A"); nothing changed (dry run)\n',
      );
      assert.equal(await messagesIn(world.admin, stream), events);
      assert.equal(await messagesIn(world.admin, dlq), letters);
      const purge = await nats(stream, ["purge", "--dry-run", "--json"]);
      assert.equal(purge.code, 0, purge.stderr);
      assert.deepEqual(JSON.parse(purge.stdout), { purged: 5, dryRun: true });
      assert.equal(await messagesIn(world.admin, dlq), letters);
      assert.equal(world.a.ids.length, 0, "A did not run");
    });

    it("exits 2 when nothing matches, such as an unknown handler name", async () => {
      await using world = await deadLetterWorld("clinone");
      const { stream } = world.names;
      const dlq = `${stream}_DLQ`;
      for (
        const command of [
          ["list"],
          ["count"],
          ["replay"],
          ["purge", "--yes"],
        ]
      ) {
        const run = await nats(stream, [...command, "--handler", "nobody"]);
        assert.equal(run.code, 2, `${command[0]}: ${run.stderr}`);
        if (command[0] === "count") {
          assert.equal(run.stdout, "0\n");
        } else {
          assert.match(
            run.stderr,
            /No dead letters match \(handler "nobody"\)/,
          );
        }
      }
      const shown = await nats(stream, ["show", "999999"]);
      assert.equal(shown.code, 2);
      assert.match(shown.stderr, /No dead letter has the ref "999999"/);
      assert.equal(await messagesIn(world.admin, dlq), 5, "nothing changed");
    });

    it("replay replays to the failed handler only, and purge --yes empties what is left", async () => {
      await using world = await deadLetterWorld("clireplay");
      const { stream } = world.names;
      world.fix();
      const bBefore = world.b.ids.length;
      const replay = await nats(stream, ["replay", "--handler", "A"]);
      assert.equal(replay.code, 0, replay.stderr);
      assert.equal(replay.stdout, 'Replayed 5 dead letters (handler "A")\n');
      await world.a.done.reach(5, TIMEOUT, "A's runs");
      await drained(world.admin, stream, "B");
      assert.equal(world.b.ids.length, bBefore, "B ran 0 more times");
      assert.equal(await world.backend.deadLetters.count(), 0);
      const again = await nats(stream, ["replay", "--handler", "A"]);
      assert.equal(again.code, 2);
      // A foreign message, then purged without a prompt.
      await world.admin.jsm.jetstream().publish(
        `${stream}_DLQ.A.order.placed`,
        "hello",
      );
      const purge = await nats(stream, ["purge", "--yes"]);
      assert.equal(purge.code, 0, purge.stderr);
      assert.equal(purge.stdout, "Purged 1 dead letter\n");
      assert.equal(await messagesIn(world.admin, `${stream}_DLQ`), 0);
    });

    it("exits 1 naming the address when the broker is unreachable", async () => {
      const run = await nats("EVENTS", ["list"], "127.0.0.1:1");
      assert.equal(run.code, 1);
      assert.match(run.stderr, /^error: Cannot connect to NATS/);
      assert.match(run.stderr, /127\.0\.0\.1:1/);
      assert.match(run.stderr, /--servers/);
    });
  });
}
