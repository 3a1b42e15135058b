// Copyright 2026 the @eventbus/core authors. MIT license.
// JetStreamBackend.deadLetters against the shared nats-server (a unique
// stream per test, deleted after): list, count, replay to the failed
// handler only, a replaying process killed between publish and removal,
// purge, dead letters stored as references, and foreign messages.

import { headers as createHeaders } from "@nats-io/nats-core";
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { createEvent, type DeadLetter, encodeEvent } from "../../mod.ts";
import { JetStreamBackend } from "@eventbus/nats";
import type { JetStreamDeadLetters } from "../../backends/nats/_dead_letter_ops.ts";
import { brokerMissing, reachable } from "../fixtures/_brokers.ts";
import { replaysOnlySelected } from "../fixtures/_dead_letter_handlers.ts";
import { collect, withDeadline, work } from "../fixtures/_util.ts";
import { Child, SHARED_NATS } from "../fixtures/_nats.ts";
import {
  A_ERROR,
  ATTEMPTS,
  deadLetterWorld,
  drained,
  messagesIn,
  TIMEOUT,
  TRACEPARENT,
} from "../fixtures/_nats_dead_letters.ts";

const REPLAYER = fileURLToPath(
  new URL("../fixtures/_nats_replayer.ts", import.meta.url),
);

if (!await reachable("127.0.0.1", 4222)) {
  brokerMissing(
    "JetStreamBackend.deadLetters",
    `no NATS server on ${SHARED_NATS}`,
  );
} else {
  describe("JetStreamBackend.deadLetters", () => {
    it("list() returns one handler's dead letters, oldest first, with type, attempts, reason, error and the emitted event", async () => {
      await using world = await deadLetterWorld("dllist");
      const dead = world.backend.deadLetters;
      const before = Date.now();
      const letters = await collect(dead.list({ handler: "A" }));
      assert.equal(letters.length, 5);
      // In the order they were dead-lettered, which tries running at once
      // may change from the order of emission.
      assert.deepEqual(
        letters.map((l) => l.event.id).sort(),
        world.events.map((e) => e.id).sort(),
      );
      for (const letter of letters) {
        assert.deepEqual(
          letter.event,
          world.events.find((e) => e.id === letter.event.id),
        );
        assert.equal(letter.event.type, "order.placed");
        assert.equal(letter.event.metadata.traceparent, TRACEPARENT);
        assert.equal(letter.handler, "A");
        assert.equal(letter.attempts, ATTEMPTS);
        assert.equal(letter.reason, "failed");
        assert.equal(letter.error, A_ERROR);
        assert.match(letter.ref, /^\d+$/);
        const time = Date.parse(letter.time);
        assert.ok(time <= before && time > before - TIMEOUT, letter.time);
      }
      assert.deepEqual(
        letters.map((l) => Number(l.ref)),
        letters.map((l) => Number(l.ref)).sort((x, y) => x - y),
        "oldest first",
      );
      assert.equal(await dead.count({ handler: "A" }), 5);
      assert.equal(await dead.count(), 5);
      assert.equal(await dead.count({ handler: "B" }), 0);
      assert.deepEqual(await collect(dead.list({ handler: "B" })), []);
      assert.equal(await dead.count({ type: "order.placed" }), 5);
      assert.equal(await dead.count({ handler: "A", type: "order.other" }), 0);
      assert.deepEqual(
        await collect(dead.list({ type: "order.other" })),
        [],
      );
      const two = await collect(dead.list({ handler: "A", limit: 2 }));
      assert.deepEqual(two, letters.slice(0, 2));
      assert.equal(world.b.done.value, 5, "B completed every event");
    });

    it("replay() runs the fixed handler once more per event, at attempt 1, and no other handler name", async () => {
      await using world = await deadLetterWorld("dlreplay");
      const dead = world.backend.deadLetters;
      const bBefore = world.b.ids.length;
      const eventsBefore = await messagesIn(world.admin, world.names.stream);
      world.fix();
      assert.deepEqual(
        await dead.replay({ handler: "A", dryRun: true }),
        { replayed: 5 },
      );
      assert.equal(await dead.count({ handler: "A" }), 5, "dry run");
      assert.deepEqual(await dead.replay({ handler: "A" }), { replayed: 5 });
      await world.a.done.reach(5, TIMEOUT, "A's runs of the replayed events");
      // B saw and acknowledged every replayed copy without running it.
      await drained(world.admin, world.names.stream, "B");
      await drained(world.admin, world.names.stream, "A");
      assert.equal(world.a.ids.length, 5);
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
        await messagesIn(world.admin, world.names.stream),
        eventsBefore + 5,
        "one copy per dead letter",
      );
      assert.equal(await dead.count({ handler: "A" }), 0);
      assert.equal(await dead.count(), 0);
    });

    it("replay() within the duplicate window is delivered, not dropped as a duplicate of the event id", async () => {
      await using world = await deadLetterWorld("dldup", 1, {
        duplicateWindow: 600_000,
      });
      const dead = world.backend.deadLetters;
      const [event] = world.events;
      world.fix();
      const eventsBefore = await messagesIn(world.admin, world.names.stream);
      assert.deepEqual(await dead.replay({ ids: [event!.id] }), {
        replayed: 1,
      });
      await world.a.done.reach(1, TIMEOUT, "A's run of the replayed event");
      assert.deepEqual(world.a.ids, [event!.id]);
      assert.equal(
        await messagesIn(world.admin, world.names.stream),
        eventsBefore + 1,
      );
      // The event id itself is still in the window: emitting it again is
      // dropped, which is what the replay had to get past.
      await world.producer.emit("order.placed", { n: 0 }, { id: event!.id });
      assert.equal(
        await messagesIn(world.admin, world.names.stream),
        eventsBefore + 1,
      );
    });

    it("replay() by refs or ids replays only those, and skips a handler name without a consumer", async () => {
      await using world = await deadLetterWorld("dlrefs", 3);
      await replaysOnlySelected(world, ["999", "x"]);
      // Without a consumer of the name, a replayed copy would reach nobody.
      // (An operator's process: the worker is gone with its consumer.)
      await world.worker.close({ timeout: 5_000 });
      await world.admin.jsm.consumers.delete(world.names.stream, "A");
      await using operator = await JetStreamBackend.connect(
        { servers: SHARED_NATS },
        world.names,
      );
      const ops = operator.deadLetters;
      assert.deepEqual(await ops.replay({ handler: "A", dryRun: true }), {
        replayed: 1,
      });
      assert.deepEqual(await ops.replay({ handler: "A" }), { replayed: 0 });
      assert.equal(await ops.count({ handler: "A" }), 1);
    });

    it("replay() by a process killed between the PubAck and the removal leaves every event dead-lettered or delivered", async () => {
      await using world = await deadLetterWorld("dlkill");
      const dead = world.backend.deadLetters;
      world.fix();
      const { stream, subjectPrefix } = world.names;
      const child = new Child(REPLAYER, [
        `nats://${SHARED_NATS}`,
        stream,
        subjectPrefix,
        "A",
      ]);
      try {
        await child.waitFor(
          (l) => "published" in l || "replayed" in l,
          1,
          "the replayer's first publish",
          TIMEOUT,
        );
      } finally {
        await child.kill("SIGKILL");
      }
      assert.ok(
        child.lines.some((l) => "published" in l),
        JSON.stringify(child.lines),
      );
      // A saw whatever the killed process published.
      await drained(world.admin, stream, "A");
      const left = await collect(dead.list({ handler: "A" }));
      const ids = world.events.map((e) => e.id);
      const delivered = new Set(world.a.ids);
      for (const id of ids) {
        assert.ok(
          delivered.has(id) || left.some((l) => l.event.id === id),
          `event ${id} is neither delivered nor dead-lettered`,
        );
      }
      assert.equal(left.length, 5, "the dead letter stays after the kill");
      // Replaying again completes it; the copy published before the kill
      // has the same message id, so it is not stored a second time.
      assert.deepEqual(await dead.replay({ handler: "A" }), { replayed: 5 });
      await world.a.done.reach(5, TIMEOUT, "A's runs");
      await drained(world.admin, stream, "A");
      assert.deepEqual([...new Set(world.a.ids)].sort(), [...ids].sort());
      assert.equal(world.a.ids.length, 5, "no duplicate stored");
      assert.equal(await dead.count({ handler: "A" }), 0);
    });

    it("replay() goes on when another process removed a dead letter between its publish and its removal", async () => {
      await using world = await deadLetterWorld("dlrace", 2);
      const dead = world.backend.deadLetters as JetStreamDeadLetters;
      const dlq = `${world.names.stream}_DLQ`;
      world.fix();
      const removed: number[] = [];
      dead.afterPublish = async (seq) => {
        if (removed.length > 0) return;
        removed.push(seq);
        await world.admin.jsm.streams.deleteMessage(dlq, seq);
      };
      assert.deepEqual(await dead.replay({ handler: "A" }), { replayed: 2 });
      assert.equal(removed.length, 1);
      await world.a.done.reach(2, TIMEOUT, "A's runs");
      assert.equal(await dead.count(), 0);
    });

    it("purge() with dryRun counts and changes nothing; without it the count goes to 0", async () => {
      await using world = await deadLetterWorld("dlpurge", 4);
      const dead = world.backend.deadLetters;
      const dlq = `${world.names.stream}_DLQ`;
      assert.deepEqual(await dead.purge({ handler: "A", dryRun: true }), {
        purged: 4,
      });
      assert.deepEqual(await dead.purge({ dryRun: true }), { purged: 4 });
      assert.equal(await dead.count({ handler: "A" }), 4);
      assert.equal(await messagesIn(world.admin, dlq), 4);
      const [first] = await collect(dead.list({ limit: 1 }));
      assert.deepEqual(
        await dead.purge({ refs: [first!.ref], dryRun: true }),
        { purged: 1 },
      );
      assert.deepEqual(await dead.purge({ refs: [first!.ref] }), {
        purged: 1,
      });
      assert.deepEqual(await dead.purge({ handler: "B" }), { purged: 0 });
      assert.equal(await dead.count({ handler: "A" }), 3);
      assert.deepEqual(await dead.purge({ handler: "A" }), { purged: 3 });
      assert.equal(await dead.count({ handler: "A" }), 0);
      assert.equal(await messagesIn(world.admin, dlq), 0);
      assert.equal(world.aTries.value, 4 * ATTEMPTS, "nothing ran again");
    });

    it("list() reads the event of a dead letter stored as a reference from the original stream", async () => {
      await using world = await deadLetterWorld("dlref", 0);
      const maxPayload = world.admin.nc.info!.max_payload;
      // Fits max_payload with the event's headers, not with the dead
      // letter's (as in nats_test.ts).
      const target = maxPayload - 300;
      const base = encodeEvent(
        createEvent("order.placed", { n: 0, s: "" }, {
          metadata: { traceparent: TRACEPARENT },
        }),
      ).length;
      const event = await world.producer.emit("order.placed", {
        n: 1,
        s: "x".repeat(target - base),
      } as { n: number }, { metadata: { traceparent: TRACEPARENT } });
      await world.deadLettersOfA(1);
      const dlq = `${world.names.stream}_DLQ`;
      const stored = await world.admin.jsm.streams.getMessage(dlq, { seq: 1 });
      assert.equal(stored?.header.get("EventBus-Body"), "reference");
      assert.equal(stored?.data.length, 0);
      const dead = world.backend.deadLetters;
      const [letter] = await collect(dead.list());
      assert.deepEqual(letter!.event, event);
      assert.equal(letter!.reason, "failed");
      assert.equal(letter!.attempts, ATTEMPTS);
      // Its copy would not fit max_payload with the replay's headers.
      assert.deepEqual(await dead.replay({ dryRun: true }), { replayed: 1 });
      assert.deepEqual(await dead.replay({}), { replayed: 0 });
      // Once the original is gone, what the headers say, and no replay.
      const seq = Number(stored?.header.get("EventBus-Original-Sequence"));
      await world.admin.jsm.streams.deleteMessage(world.names.stream, seq);
      const [gone] = await collect(dead.list());
      assert.equal(gone!.event.id, event.id);
      assert.equal(gone!.event.type, "order.placed");
      assert.equal(gone!.event.data, undefined);
      assert.match(gone!.error, /no longer in stream/);
      assert.deepEqual(await dead.replay({ dryRun: true }), { replayed: 1 });
      assert.deepEqual(await dead.replay({}), { replayed: 0 });
      assert.equal(await dead.count(), 1, "it stays");
    });

    it("list() shows a message in the dead-letter stream that is not one of our events with reason invalid-event, and replay() skips it", async () => {
      await using world = await deadLetterWorld("dlforeign", 1);
      const dead = world.backend.deadLetters;
      const js = world.admin.jsm.jetstream();
      const dlq = `${world.names.stream}_DLQ`;
      // One each consumer dead-lettered, two published there by others.
      await js.publish(`${world.names.subjectPrefix}.order.placed`, "garbage");
      await withDeadline(
        (async () => {
          while (await dead.count() < 3) await work(20);
        })(),
        TIMEOUT,
        () => "the invalid event's dead letters",
      );
      await js.publish(`${dlq}.A.order.placed`, "hello from elsewhere");
      const h = createHeaders();
      h.set("ce-id", "not-ours");
      await js.publish(`${dlq}.stray`, JSON.stringify({ not: "an event" }), {
        headers: h,
      });
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
      assert.match(invalid.error, /SerializationError/);
      assert.equal(foreign.reason, "invalid-event");
      assert.equal(foreign.handler, "A");
      assert.equal(foreign.event as unknown, "hello from elsewhere");
      assert.equal(foreign.attempts, 0);
      assert.match(foreign.error, /not JSON/);
      const all = await collect(dead.list());
      assert.equal(all.length, 5);
      const stray = all[4]!;
      assert.equal(stray.reason, "invalid-event");
      assert.deepEqual(stray.event as unknown, { not: "an event" });
      assert.equal(await dead.count({ handler: "A" }), 3);
      assert.equal(await dead.count({ handler: "B" }), 1);
      assert.equal(await dead.count(), 5);
      world.fix();
      assert.deepEqual(await dead.replay({ handler: "A", dryRun: true }), {
        replayed: 3,
      });
      assert.deepEqual(await dead.replay({ handler: "A" }), { replayed: 1 });
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
      await using world = await deadLetterWorld("dlnone", 0);
      const dead = world.backend.deadLetters;
      await world.admin.jsm.streams.delete(`${world.names.stream}_DLQ`);
      assert.equal(await dead.count(), 0);
      assert.deepEqual(await collect(dead.list({ handler: "A" })), []);
      assert.deepEqual(await dead.replay({ handler: "A" }), { replayed: 0 });
      assert.deepEqual(await dead.purge({}), { purged: 0 });
      assert.deepEqual(await dead.purge({ ids: ["x"] }), { purged: 0 });
      assert.equal(await dead.count({ type: "not a type" }), 0);
    });

    it("rejects with EventBusClosedError after close()", async () => {
      await using world = await deadLetterWorld("dlclosed", 0);
      await world.backend.close();
      await assert.rejects(
        world.backend.deadLetters.count(),
        (error: unknown) =>
          error instanceof Error && error.name === "EventBusClosedError",
      );
    });
  });
}
