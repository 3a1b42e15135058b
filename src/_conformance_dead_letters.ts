// Copyright 2026 the @eventbus/core authors. MIT license.
// The dead-letter operations of DESIGN.md ("Dead letters") as conformance
// tests: list, count, replay to the failed handler only, purge by handler,
// ref and id. Declared by declareConformance() for every backend whose
// features do not say `deadLetters: false`.

import * as assert from "./_conformance_assert.ts";
import { Counter, MemoryLogger, withDeadline } from "./_conformance_util.ts";
import { type Events, FAST_RETRY, type Harness } from "./_conformance_world.ts";
import { sleep } from "./_async.ts";
import type { AsyncBackend } from "./backend.ts";
import type { ConformanceHint, ConformanceWorld } from "./conformance.ts";
import type { DeadLetter, DeadLetters } from "./dead_letters.ts";
import { DeadLetterError } from "./errors.ts";
import type { Event } from "./event.ts";
import type { EventBus } from "./event_bus.ts";

/** The trace context every event of these cases carries, to see it kept. */
const TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/** Two handler names of "conf.order.placed": A fails until fixed, B never. */
const HINT: ConformanceHint = {
  handlers: [
    { type: "conf.order.placed", name: "dl-a" },
    { type: "conf.order.placed", name: "dl-b" },
  ],
};

/** A world with handler A failing until `fixed`, handler B counting. */
interface Setup {
  producer: EventBus<Events>;
  all: EventBus<Events>[];
  /** The dead letters, as an operator's separate connection sees them. */
  dlq: DeadLetters;
  /** Events A handled successfully, with the attempt of the try. */
  handledByA: { event: Event; attempt: number }[];
  /** Events B handled. */
  handledByB: Event[];
  aDone: Counter;
  bDone: Counter;
  /** Dead letters reported to onError. */
  dead: Counter;
  /** From now on A succeeds. */
  fix(): void;
}

async function setup(
  world: ConformanceWorld,
  buses: Harness["buses"],
): Promise<Setup> {
  let fixed = false;
  const dead = new Counter();
  const { producer, workers, all } = await buses(world, 1, {
    retry: FAST_RETRY,
    logger: new MemoryLogger(),
    onError: (error) => {
      if (error instanceof DeadLetterError) dead.add();
    },
  }, HINT);
  const handledByA: Setup["handledByA"] = [];
  const handledByB: Event[] = [];
  const aDone = new Counter();
  const bDone = new Counter();
  const worker = workers[0]!;
  worker.subscribe("conf.order.placed", (event, ctx) => {
    if (!fixed) throw new Error(`mail server down for ${event.data.n}`);
    handledByA.push({ event, attempt: ctx.attempt });
    aDone.add();
  }, { async: true, name: "dl-a" });
  worker.subscribe("conf.order.placed", (event) => {
    handledByB.push(event);
    bDone.add();
  }, { async: true, name: "dl-b" });
  await worker.listen();
  const operator: AsyncBackend = await world.backend(HINT);
  const dlq = operator.deadLetters;
  if (dlq === undefined) {
    throw new Error(
      "The backend has no deadLetters: implement DeadLetters, or set features.deadLetters to false",
    );
  }
  return {
    producer,
    all,
    dlq,
    handledByA,
    handledByB,
    aDone,
    bDone,
    dead,
    fix: () => fixed = true,
  };
}

/** Emits `count` events with the test's traceparent; returns them in order. */
async function emitSome(
  producer: EventBus<Events>,
  count: number,
): Promise<Event[]> {
  const sent: Event[] = [];
  for (let n = 0; n < count; n++) {
    sent.push(
      await producer.emit("conf.order.placed", { n }, {
        metadata: { traceparent: TRACEPARENT },
      }),
    );
  }
  return sent;
}

/**
 * Waits until the backend's dead letters of A hold `count` entries: a dead
 * letter is written after onError reports it, so the count is polled.
 */
async function deadLettersReach(
  dlq: DeadLetters,
  count: number,
  timeout: number,
): Promise<void> {
  let seen = -1;
  const poll = async () => {
    while ((seen = await dlq.count({ handler: "dl-a" })) < count) {
      await sleep(20);
    }
  };
  await withDeadline(
    poll(),
    timeout,
    () => `dead letters of dl-a reached ${seen} of ${count}`,
  );
}

async function collect(
  items: AsyncIterable<DeadLetter>,
): Promise<DeadLetter[]> {
  const list: DeadLetter[] = [];
  for await (const item of items) list.push(item);
  return list;
}

/** Declares the dead-letter cases inside the suite's group. */
export function declareDeadLetterCases(
  it: (name: string, body: () => Promise<void>) => unknown,
  harness: Harness,
  timeout: number,
): void {
  const { buses, scenario, closeAll } = harness;

  it("deadLetters lists each dead letter of a handler, with its event, attempts, reason and error", () =>
    scenario(async (world) => {
      const s = await setup(world, buses);
      try {
        const sent = await emitSome(s.producer, 3);
        await s.bDone.reach(3, timeout, "deliveries to dl-b");
        await s.dead.reach(3, timeout, "dead letters reported");
        await deadLettersReach(s.dlq, 3, timeout);
        assert.equal(await s.dlq.count({ handler: "dl-a" }), 3);
        assert.equal(await s.dlq.count({ handler: "dl-b" }), 0);
        assert.equal(await s.dlq.count({ type: "conf.other" }), 0);
        assert.equal(await s.dlq.count({ type: "conf.order.placed" }), 3);
        const letters = await collect(s.dlq.list({ handler: "dl-a" }));
        // Oldest first means in the order they were dead-lettered, which
        // retries may make differ from the order of emit.
        const byEventId = (a: Event, b: Event) => a.id < b.id ? -1 : 1;
        assert.deepEqual(
          letters.map((l) => l.event).sort(byEventId),
          [...sent].sort(byEventId),
        );
        for (const letter of letters) {
          assert.equal(letter.handler, "dl-a");
          assert.equal(letter.attempts, FAST_RETRY.attempts);
          assert.equal(letter.reason, "failed");
          assert.ok(
            /mail server down for \d/.test(letter.error),
            `error "${letter.error}" is the handler's`,
          );
          assert.ok(
            !Number.isNaN(Date.parse(letter.time)),
            `time ${letter.time} is RFC 3339`,
          );
          assert.equal(typeof letter.ref, "string");
        }
        assert.equal(new Set(letters.map((l) => l.ref)).size, 3);
        const two = await collect(s.dlq.list({ handler: "dl-a", limit: 2 }));
        assert.deepEqual(
          two.map((l) => l.ref),
          letters.slice(0, 2).map((l) => l.ref),
        );
      } finally {
        await closeAll(s.all);
      }
    }));

  it("deadLetters.replay() hands each event to the failed handler only, same id and traceparent, then removes it", () =>
    scenario(async (world) => {
      const s = await setup(world, buses);
      try {
        const sent = await emitSome(s.producer, 2);
        await s.bDone.reach(2, timeout, "deliveries to dl-b");
        await deadLettersReach(s.dlq, 2, timeout);
        s.fix();
        // Within any de-duplication window of the broker: the copy must
        // still be delivered, with the same id.
        assert.deepEqual(await s.dlq.replay({ handler: "dl-a" }), {
          replayed: 2,
        });
        assert.equal(await s.dlq.count({ handler: "dl-a" }), 0);
        await s.aDone.reach(2, timeout, "replayed deliveries to dl-a");
        await closeAll(s.all);
        const ids = s.handledByA.map((h) => h.event.id).sort();
        assert.deepEqual(ids, sent.map((e) => e.id).sort());
        for (const { event, attempt } of s.handledByA) {
          assert.equal(event.metadata.traceparent, TRACEPARENT);
          assert.deepEqual(event, sent.find((e) => e.id === event.id));
          assert.equal(attempt, 1);
        }
        assert.equal(s.handledByB.length, 2);
      } finally {
        await closeAll(s.all);
      }
    }));

  it("deadLetters.purge() and replay() select by ref and id, and dryRun changes nothing", () =>
    scenario(async (world) => {
      const s = await setup(world, buses);
      try {
        const sent = await emitSome(s.producer, 4);
        await s.bDone.reach(4, timeout, "deliveries to dl-b");
        await deadLettersReach(s.dlq, 4, timeout);
        const letters = await collect(s.dlq.list({ handler: "dl-a" }));
        const byId = new Map(letters.map((l) => [l.event.id, l.ref]));
        const [e0, e1, e2, e3] = sent as [Event, Event, Event, Event];
        assert.deepEqual(
          await s.dlq.purge({ refs: [byId.get(e0.id)!], dryRun: true }),
          { purged: 1 },
        );
        assert.deepEqual(await s.dlq.replay({ ids: [e1.id], dryRun: true }), {
          replayed: 1,
        });
        assert.equal(await s.dlq.count({ handler: "dl-a" }), 4);
        assert.deepEqual(await s.dlq.purge({ refs: [byId.get(e0.id)!] }), {
          purged: 1,
        });
        assert.deepEqual(await s.dlq.purge({ ids: [e1.id] }), { purged: 1 });
        assert.equal(await s.dlq.count({ handler: "dl-a" }), 2);
        s.fix();
        assert.deepEqual(await s.dlq.replay({ ids: [e2.id] }), { replayed: 1 });
        await s.aDone.reach(1, timeout, "replayed deliveries to dl-a");
        const left = await collect(s.dlq.list());
        const counted = await s.dlq.count();
        assert.deepEqual(
          left.map((l) => l.event.id),
          [e3.id],
          `list() after replaying ${e2.id}; count() says ${counted}; refs before: ${
            JSON.stringify([...byId])
          }`,
        );
        assert.deepEqual(await s.dlq.purge({ handler: "dl-a" }), { purged: 1 });
        assert.equal(await s.dlq.count(), 0);
        await closeAll(s.all);
        assert.deepEqual(s.handledByA.map((h) => h.event.id), [e2.id]);
      } finally {
        await closeAll(s.all);
      }
    }));
}
