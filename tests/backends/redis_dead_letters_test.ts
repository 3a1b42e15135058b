// Copyright 2026 the @eventbus/core authors. MIT license.
// RedisStreamsBackend.deadLetters against the Redis on 127.0.0.1:6379 (a
// unique key prefix per test, its keys deleted after): list, count, replay
// to the failed handler only and past the de-duplication window, a
// replaying process killed in the middle, a full stream and a handler name
// without a group, purge, and entries that are not our events.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { createEvent, type DeadLetter, encodeEvent } from "../../mod.ts";
import type { RedisDeadLetters } from "../../backends/redis/_dead_letters.ts";
import { brokerMissing, reachable } from "../fixtures/_brokers.ts";
import { replaysOnlySelected } from "../fixtures/_dead_letter_handlers.ts";
import { Child } from "../fixtures/_nats.ts";
import { collect, withDeadline, work } from "../fixtures/_util.ts";
import {
  A_ERROR,
  ATTEMPTS,
  deadLetterWorld,
  drained,
  REDIS_URL,
  TIMEOUT,
  TRACEPARENT,
} from "../fixtures/_redis_dead_letters.ts";

const REPLAYER = fileURLToPath(
  new URL("../fixtures/_redis_replayer.ts", import.meta.url),
);

if (!await reachable("127.0.0.1", 6379)) {
  brokerMissing(
    "RedisStreamsBackend.deadLetters",
    "no Redis on 127.0.0.1:6379",
  );
} else {
  describe("RedisStreamsBackend.deadLetters", () => {
    it("list() returns one handler's dead letters, oldest first, with type, attempts, reason, error and the emitted event", async () => {
      await using world = await deadLetterWorld();
      const dead = world.backend.deadLetters;
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
        assert.match(letter.ref, /^\d+-\d+$/);
        const time = Date.parse(letter.time);
        assert.ok(time <= before && time > before - TIMEOUT, letter.time);
      }
      const raw = await world.admin.sendCommand([
        "XRANGE",
        world.deadLetterStream,
        "-",
        "+",
      ]) as [string, string[]][];
      assert.deepEqual(
        letters.map((l) => l.ref),
        raw.map(([id]) => id),
        "oldest first, the entry ids of the dead-letter stream",
      );
      assert.equal(await dead.count({ handler: "A" }), 5);
      assert.equal(await dead.count(), 5);
      assert.equal(await dead.count({ handler: "B" }), 0);
      assert.deepEqual(await collect(dead.list({ handler: "B" })), []);
      assert.equal(await dead.count({ type: "order.placed" }), 5);
      assert.equal(await dead.count({ handler: "A", type: "order.other" }), 0);
      const two = await collect(dead.list({ handler: "A", limit: 2 }));
      assert.deepEqual(two, letters.slice(0, 2));
      assert.deepEqual(await collect(dead.list({ limit: 0 })), []);
      assert.equal(world.b.done.value, 5, "B completed every event");
    });

    it("list() pages through more dead letters than one XRANGE returns", async () => {
      await using world = await deadLetterWorld(0);
      const events = Array.from(
        { length: 450 },
        (_, n) => createEvent("order.placed", { n }),
      );
      for (const event of events) {
        await world.admin.sendCommand([
          "XADD",
          world.deadLetterStream,
          "*",
          "event",
          encodeEvent(event),
          "handler",
          "A",
          "attempts",
          "1",
          "reason",
          "failed",
          "error",
          "Error: x",
        ]);
      }
      const dead = world.backend.deadLetters;
      const letters = await collect(dead.list());
      assert.deepEqual(letters.map((l) => l.event.id), events.map((e) => e.id));
      assert.equal(await dead.count({ handler: "A" }), 450);
      assert.equal(
        (await collect(dead.list({ handler: "A", limit: 250 }))).length,
        250,
      );
    });

    it("replay() runs the fixed handler once more per event, at attempt 1, and no other handler name, within the duplicate window", async () => {
      await using world = await deadLetterWorld();
      const dead = world.backend.deadLetters;
      const bBefore = world.b.ids.length;
      const length = Number(
        await world.admin.sendCommand(["XLEN", world.stream]),
      );
      world.fix();
      assert.deepEqual(
        await dead.replay({ handler: "A", dryRun: true }),
        { replayed: 5 },
      );
      assert.equal(await dead.count({ handler: "A" }), 5, "dry run");
      assert.equal(
        Number(await world.admin.sendCommand(["XLEN", world.stream])),
        length,
        "a dry run adds nothing",
      );
      assert.deepEqual(await dead.replay({ handler: "A" }), { replayed: 5 });
      assert.equal(await dead.count(), 0, "gone when replay() resolves");
      await world.a.done.reach(5, TIMEOUT, "A's runs of the replayed events");
      // B read and acknowledged every replayed copy without running it.
      await drained(world.admin, world.stream, "B");
      await drained(world.admin, world.stream, "A");
      assert.deepEqual(
        [...world.a.ids].sort(),
        world.events.map((e) => e.id).sort(),
        "the same ids",
      );
      for (const event of world.a.events) {
        const emitted = world.events.find((e) => e.id === event.id)!;
        assert.deepEqual(event, emitted, "the event unchanged");
        assert.equal(event.metadata.traceparent, TRACEPARENT);
      }
      assert.deepEqual(world.a.attempts, [1, 1, 1, 1, 1]);
      assert.equal(world.b.ids.length - bBefore, 0, "B ran 0 more times");
      assert.equal(
        Number(await world.admin.sendCommand(["XLEN", world.stream])),
        length + 5,
        "one copy per dead letter",
      );
      // The event id is still in the de-duplication window: emitting it
      // again adds nothing, which is what the replay had to get past.
      const [first] = world.events;
      await world.producer.emit("order.placed", first!.data as { n: number }, {
        id: first!.id,
      });
      assert.equal(
        Number(await world.admin.sendCommand(["XLEN", world.stream])),
        length + 5,
      );
    });

    it("replay() by refs or ids replays only those, and every criterion must match", async () => {
      await using world = await deadLetterWorld(3);
      await replaysOnlySelected(world, ["999-0", "x"]);
    });

    it("replay() of a handler name without a consumer group leaves its dead letters, counted as not replayed, with a warning", async () => {
      await using world = await deadLetterWorld(1);
      const dead = world.backend.deadLetters;
      const [event] = world.events;
      // A dead letter of a name no worker ever consumed the stream with.
      await world.admin.sendCommand([
        "XADD",
        world.deadLetterStream,
        "*",
        "event",
        encodeEvent(event!),
        "handler",
        "ghost",
        "attempts",
        "1",
        "reason",
        "failed",
        "error",
        "Error: x",
        "stream",
        world.stream,
        "id",
        "0-1",
      ]);
      const length = Number(
        await world.admin.sendCommand(["XLEN", world.stream]),
      );
      assert.deepEqual(await dead.replay({ handler: "ghost", dryRun: true }), {
        replayed: 1,
      });
      assert.deepEqual(await dead.replay({ handler: "ghost" }), {
        replayed: 0,
      });
      assert.equal(await dead.count({ handler: "ghost" }), 1, "it stays");
      assert.ok(
        world.logger.lines.some((l) =>
          l.level === "warn" &&
          /handler "ghost".*no consumer group/.test(l.message)
        ),
        JSON.stringify(world.logger.lines),
      );
      // A's group deleted after its worker stopped: an operator's process.
      await world.worker.close({ timeout: 5_000 });
      await world.admin.sendCommand(["XGROUP", "DESTROY", world.stream, "A"]);
      const operator = await world.open();
      world.fix();
      assert.deepEqual(await operator.deadLetters.replay({ handler: "A" }), {
        replayed: 0,
      });
      assert.equal(await operator.deadLetters.count(), 2, "both stay");
      assert.equal(
        Number(await world.admin.sendCommand(["XLEN", world.stream])),
        length,
        "no copy added",
      );
    });

    it("replay() into a stream at maxLen leaves the dead letters, and replays them once there is room", async () => {
      await using world = await deadLetterWorld(3);
      // A group that never reads: nothing can be trimmed for room.
      await world.admin.sendCommand([
        "XGROUP",
        "CREATE",
        world.stream,
        "offline",
        "0",
      ]);
      const length = Number(
        await world.admin.sendCommand(["XLEN", world.stream]),
      );
      const operator = await world.open({ maxLen: length });
      world.fix();
      assert.deepEqual(await operator.deadLetters.replay({ handler: "A" }), {
        replayed: 0,
      });
      assert.equal(await operator.deadLetters.count(), 3, "they stay");
      assert.equal(
        Number(await world.admin.sendCommand(["XLEN", world.stream])),
        length,
      );
      await world.admin.sendCommand([
        "XGROUP",
        "DESTROY",
        world.stream,
        "offline",
      ]);
      assert.deepEqual(await operator.deadLetters.replay({ handler: "A" }), {
        replayed: 3,
      });
      await world.a.done.reach(3, TIMEOUT, "A's runs");
      assert.equal(await operator.deadLetters.count(), 0);
    });

    it("replay() by a process killed after its first copy leaves every event dead-lettered or delivered, and a second replay adds no duplicate", async () => {
      await using world = await deadLetterWorld();
      const dead = world.backend.deadLetters;
      world.fix();
      const child = new Child(REPLAYER, [REDIS_URL, world.prefix, "A"]);
      try {
        await child.waitFor(
          (l) => "replayed" in l || "done" in l,
          1,
          "the replayer's first copy",
          TIMEOUT,
        );
      } finally {
        await child.kill("SIGKILL");
      }
      assert.ok(
        child.lines.some((l) => "replayed" in l),
        JSON.stringify(child.lines),
      );
      await world.a.done.reach(1, TIMEOUT, "A's run of the first copy");
      await drained(world.admin, world.stream, "A");
      const left = await collect(dead.list({ handler: "A" }));
      const ids = world.events.map((e) => e.id);
      const delivered = new Set(world.a.ids);
      for (const id of ids) {
        assert.ok(
          delivered.has(id) !== left.some((l) => l.event.id === id),
          `event ${id} is either delivered or dead-lettered`,
        );
      }
      assert.equal(left.length, 4);
      assert.deepEqual(await dead.replay({ handler: "A" }), { replayed: 4 });
      await world.a.done.reach(5, TIMEOUT, "A's runs");
      await drained(world.admin, world.stream, "A");
      assert.deepEqual([...world.a.ids].sort(), [...ids].sort());
      assert.equal(world.a.ids.length, 5, "no duplicate");
      assert.equal(await dead.count(), 0);
    });

    it("replay() called twice at once replays each dead letter once", async () => {
      await using world = await deadLetterWorld();
      const other = await world.open();
      world.fix();
      const [one, two] = await Promise.all([
        world.backend.deadLetters.replay({ handler: "A" }),
        other.deadLetters.replay({ handler: "A" }),
      ]);
      assert.equal(one.replayed + two.replayed, 5);
      await world.a.done.reach(5, TIMEOUT, "A's runs");
      await drained(world.admin, world.stream, "A");
      assert.equal(world.a.ids.length, 5);
      assert.equal(new Set(world.a.ids).size, 5);
    });

    it("purge() with dryRun counts and changes nothing; without it the count goes to 0", async () => {
      await using world = await deadLetterWorld(4);
      const dead = world.backend.deadLetters;
      assert.deepEqual(await dead.purge({ handler: "A", dryRun: true }), {
        purged: 4,
      });
      assert.deepEqual(await dead.purge({ dryRun: true }), { purged: 4 });
      assert.equal(
        await world.admin.sendCommand(["XLEN", world.deadLetterStream]),
        4,
      );
      const [first] = await collect(dead.list({ limit: 1 }));
      assert.deepEqual(
        await dead.purge({ refs: [first!.ref], dryRun: true }),
        { purged: 1 },
      );
      assert.deepEqual(await dead.purge({ refs: [first!.ref] }), {
        purged: 1,
      });
      assert.deepEqual(await dead.purge({ refs: [first!.ref] }), {
        purged: 0,
      });
      assert.deepEqual(await dead.purge({ handler: "B" }), { purged: 0 });
      assert.equal(await dead.count({ handler: "A" }), 3);
      assert.deepEqual(await dead.purge({ handler: "A" }), { purged: 3 });
      assert.equal(await dead.count({ handler: "A" }), 0);
      assert.equal(
        await world.admin.sendCommand(["XLEN", world.deadLetterStream]),
        0,
      );
      assert.equal(world.aTries.value, 4 * ATTEMPTS, "nothing ran again");
    });

    it("list() shows an entry that is not one of our events with reason invalid-event, purge() removes it, and replay() skips it with a warning", async () => {
      await using world = await deadLetterWorld(1);
      const dead = world.backend.deadLetters;
      // A and B each dead-letter an entry that is not an event; two more
      // written to the dead-letter stream by others.
      await world.admin.sendCommand([
        "XADD",
        world.stream,
        "*",
        "event",
        "garbage",
      ]);
      await withDeadline(
        (async () => {
          while (await dead.count() < 3) await work(20);
        })(),
        TIMEOUT,
        () => "the invalid event's dead letters",
      );
      await world.admin.sendCommand([
        "XADD",
        world.deadLetterStream,
        "*",
        "event",
        "hello from elsewhere",
        "handler",
        "A",
      ]);
      await world.admin.sendCommand([
        "XADD",
        world.deadLetterStream,
        "*",
        "note",
        JSON.stringify({ not: "an event" }),
      ]);
      const letters = await collect(dead.list({ handler: "A" }));
      assert.equal(letters.length, 3);
      const [ours, invalid, foreign] = letters as [
        DeadLetter,
        DeadLetter,
        DeadLetter,
      ];
      assert.deepEqual(ours.event, world.events[0]);
      assert.equal(invalid.reason, "invalid-event");
      assert.equal(invalid.handler, "A");
      assert.equal(invalid.event as unknown, "garbage");
      assert.match(invalid.error, /SerializationError: .*not JSON/);
      assert.equal(foreign.reason, "invalid-event");
      assert.equal(foreign.event as unknown, "hello from elsewhere");
      assert.equal(foreign.attempts, 0);
      assert.match(foreign.error, /SerializationError: .*not JSON/);
      const all = await collect(dead.list());
      assert.equal(all.length, 5);
      const stray = all[4]!;
      assert.equal(stray.reason, "invalid-event");
      assert.equal(stray.handler, "");
      assert.deepEqual(stray.event as unknown, {
        note: JSON.stringify({ not: "an event" }),
      });
      assert.match(stray.error, /no "event" field/);
      assert.equal(await dead.count({ handler: "B" }), 1);
      world.fix();
      assert.deepEqual(await dead.replay({ handler: "A", dryRun: true }), {
        replayed: 3,
      });
      assert.deepEqual(await dead.replay({ handler: "A" }), { replayed: 1 });
      assert.equal(
        world.logger.lines.filter((l) =>
          l.level === "warn" && /it is not an event/.test(l.message)
        ).length,
        2,
      );
      await world.a.done.reach(1, TIMEOUT, "A's run");
      assert.deepEqual(world.a.ids, [world.events[0]!.id]);
      assert.deepEqual(
        await dead.purge({ refs: [foreign.ref, stray.ref] }),
        { purged: 2 },
      );
      assert.deepEqual(
        (await collect(dead.list({ handler: "A" }))).map((l) => l.ref),
        [invalid.ref],
      );
      assert.equal(await dead.count(), 2);
    });

    it("count() and list() find nothing, and replay() and purge() change nothing, without a dead-letter stream", async () => {
      await using world = await deadLetterWorld(0);
      const dead = world.backend.deadLetters;
      assert.equal(
        await world.admin.sendCommand(["EXISTS", world.deadLetterStream]),
        0,
      );
      assert.equal(await dead.count(), 0);
      assert.equal(await dead.count({ handler: "A" }), 0);
      assert.deepEqual(await collect(dead.list({ handler: "A" })), []);
      assert.deepEqual(await dead.replay({ handler: "A" }), { replayed: 0 });
      assert.deepEqual(await dead.purge({}), { purged: 0 });
      assert.deepEqual(await dead.purge({ ids: ["x"] }), { purged: 0 });
      assert.equal(
        await world.admin.sendCommand(["EXISTS", world.deadLetterStream]),
        0,
      );
    });

    it("rejects with EventBusClosedError after close()", async () => {
      await using world = await deadLetterWorld(0);
      const operator = await world.open();
      await operator.close();
      const dead = operator.deadLetters as RedisDeadLetters;
      for (const call of [() => dead.count(), () => dead.replay({})]) {
        await assert.rejects(
          call(),
          (error: unknown) =>
            error instanceof Error && error.name === "EventBusClosedError",
        );
      }
    });
  });
}
