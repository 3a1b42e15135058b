// Copyright 2026 the @eventbus/core authors. MIT license.
// The JetStream publisher (backends/nats/_publisher.ts) on the shared
// nats-server: PubAcks matched to publishes through one reply
// subscription, a bounded window, one deadline sweep, and the answers
// js.publish fails with (no responders, a full stream, a timeout). Then the
// backend on top of it: many emits in flight stored and delivered once, a
// PubAck that never comes.

import { headers, type Msg, type NatsConnection } from "@nats-io/nats-core";
import { errors } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BackendError, EventBus, QueueFullError } from "../../mod.ts";
import { JetStreamBackend } from "../../backends/nats/mod.ts";
import { Publisher } from "../../backends/nats/_publisher.ts";
import {
  isNoResponders,
  isStreamFull,
  isTransient,
  MSG_ID,
} from "../../backends/nats/_util.ts";
import { brokerMissing, reachable } from "../fixtures/_brokers.ts";
import {
  collectUnhandled,
  Deliveries,
  MemoryLogger,
  tally,
  withDeadline,
} from "../fixtures/_util.ts";
import { Admin, SHARED_NATS, uniqueNames } from "../fixtures/_nats.ts";

type Events = { "job.run": { n: number } };

const TIMEOUT = 30_000;

/** The headers of one publish with message id `id`. */
function withId(id: string) {
  const h = headers();
  h.set(MSG_ID, id);
  return h;
}

/** Opens a connection and a stream `<prefix>.>`; disposing removes both. */
async function setup(
  tag: string,
  limits: { max_msgs?: number } = {},
): Promise<
  {
    nc: NatsConnection;
    admin: Admin;
    subject: string;
    names: ReturnType<typeof uniqueNames>;
  } & AsyncDisposable
> {
  const names = uniqueNames(tag);
  const admin = await Admin.open(SHARED_NATS, names.stream);
  await admin.jsm.streams.add({
    name: names.stream,
    subjects: [`${names.subjectPrefix}.>`],
    discard: "new" as never,
    ...limits,
  });
  const nc = await connect({ servers: SHARED_NATS, noAsyncTraces: true });
  return {
    nc,
    admin,
    names,
    subject: `${names.subjectPrefix}.job`,
    async [Symbol.asyncDispose]() {
      await nc.close();
      await admin[Symbol.asyncDispose]();
    },
  };
}

/**
 * Answers every request on `subject` only when `release(n)` is called for
 * it, in the order the test chooses, as a stream that acks late would.
 */
function heldResponder(nc: NatsConnection, subject: string) {
  const held: Msg[] = [];
  let arrived: (() => void) | undefined;
  nc.subscribe(subject, {
    callback: (_error, msg) => {
      held.push(msg);
      arrived?.();
    },
  });
  return {
    held,
    async arrivals(n: number): Promise<void> {
      while (held.length < n) {
        await new Promise<void>((resolve) => arrived = resolve);
      }
    },
    answer(index: number, seq: number): void {
      held[index]!.respond(
        JSON.stringify({ stream: "HELD", seq, duplicate: false }),
      );
    },
  };
}

if (!await reachable("127.0.0.1", 4222)) {
  brokerMissing("JetStream publisher", `no NATS server on ${SHARED_NATS}`);
} else {
  describe("Publisher (backends/nats/_publisher.ts)", () => {
    it("send() acks each of many publishes in flight exactly once, never more than the window at once", async () => {
      await using s = await setup("pubmany");
      const publisher = new Publisher(s.nc, { timeout: 10_000, window: 32 });
      const total = 2_000;
      let maxInFlight = 0;
      const sends = Array.from(
        { length: total },
        (_, n) =>
          publisher.send(s.subject, `{"n":${n}}`, withId(`m-${n}`)).then(
            (ack) => {
              // The queue refilled the room this ack freed.
              maxInFlight = Math.max(maxInFlight, publisher.inFlight);
              return ack;
            },
          ),
      );
      const acks = await withDeadline(
        Promise.all(sends),
        TIMEOUT,
        () => "acks",
      );
      const seqs = acks.map((ack) => ack.seq).sort((a, b) => a - b);
      assert.deepEqual(seqs, Array.from({ length: total }, (_, i) => i + 1));
      assert.ok(acks.every((ack) => ack.stream === s.names.stream));
      assert.ok(acks.every((ack) => !ack.duplicate));
      assert.equal(maxInFlight, 32);
      assert.equal(publisher.pending, 0);
      assert.equal(publisher.inFlight, 0);
      const info = await s.admin.jsm.streams.info(s.names.stream);
      assert.equal(info.state.messages, total);
      publisher.close(new Error("done"));
    });

    it("send() reports a message id seen inside the duplicate window as duplicate, with the first sequence", async () => {
      await using s = await setup("pubdup");
      const publisher = new Publisher(s.nc, { timeout: 10_000 });
      const first = await publisher.send(s.subject, "{}", withId("same"));
      const again = await publisher.send(s.subject, "{}", withId("same"));
      assert.deepEqual(first, {
        stream: s.names.stream,
        seq: 1,
        duplicate: false,
      });
      assert.deepEqual(again, {
        stream: s.names.stream,
        seq: 1,
        duplicate: true,
      });
      const info = await s.admin.jsm.streams.info(s.names.stream);
      assert.equal(info.state.messages, 1);
      publisher.close(new Error("done"));
    });

    it("send() rejects with a no-responders error when no stream takes the subject", async () => {
      await using s = await setup("pubnone");
      const publisher = new Publisher(s.nc, { timeout: 10_000 });
      await assert.rejects(
        publisher.send(`nostream_${crypto.randomUUID()}.x`, "{}", withId("1")),
        (error: unknown) =>
          error instanceof Error && error.name === "JetStreamNotEnabled" &&
          error.message === "jetstream is not enabled" &&
          isNoResponders(error) && isTransient(error),
      );
      assert.equal(publisher.pending, 0);
      publisher.close(new Error("done"));
    });

    it("send() rejects with the stream's full answer when it refuses new messages", async () => {
      await using s = await setup("pubfull", { max_msgs: 2 });
      const publisher = new Publisher(s.nc, { timeout: 10_000 });
      await publisher.send(s.subject, "{}", withId("1"));
      await publisher.send(s.subject, "{}", withId("2"));
      await assert.rejects(
        publisher.send(s.subject, "{}", withId("3")),
        (error: unknown) => isStreamFull(error) && !isTransient(error),
      );
      publisher.close(new Error("done"));
    });

    it("send() rejects with the client's TimeoutError when the PubAck never comes, and frees its room", async () => {
      await using s = await setup("pubtimeout");
      const silent = `${s.names.subjectPrefix}_silent.x`;
      const responder = heldResponder(s.nc, silent); // never answers
      await s.nc.flush();
      const publisher = new Publisher(s.nc, { timeout: 300, window: 1 });
      const lost = publisher.send(silent, "{}", withId("1"));
      const queued = publisher.send(silent, "{}", withId("2"));
      await responder.arrivals(1);
      assert.equal(publisher.inFlight, 1);
      assert.equal(publisher.pending, 2);
      await assert.rejects(lost, errors.TimeoutError);
      await assert.rejects(queued, errors.TimeoutError);
      assert.equal(publisher.pending, 0);
      assert.equal(publisher.inFlight, 0);
      const ack = await publisher.send(s.subject, "{}", withId("3"));
      assert.equal(ack.seq, 1);
      publisher.close(new Error("done"));
    });

    it("send() ignores a PubAck that arrives after its publish timed out", async () => {
      await using s = await setup("publate");
      using unhandled = collectUnhandled();
      const held = `${s.names.subjectPrefix}_held.x`;
      const responder = heldResponder(s.nc, held);
      await s.nc.flush();
      const publisher = new Publisher(s.nc, { timeout: 300 });
      const late = publisher.send(held, "{}", withId("late"));
      await assert.rejects(late, errors.TimeoutError);
      const next = publisher.send(held, "{}", withId("next"));
      await responder.arrivals(2);
      responder.answer(0, 1); // the late PubAck, for a publish given up
      responder.answer(1, 2);
      const ack = await next;
      assert.deepEqual(ack, { stream: "HELD", seq: 2, duplicate: false });
      await s.nc.flush();
      assert.equal(publisher.pending, 0);
      assert.deepEqual(unhandled.reasons, []);
      publisher.close(new Error("done"));
    });

    it("interrupt() fails the publishes in flight and sends the queued ones; close() fails the rest and later ones", async () => {
      await using s = await setup("pubclose");
      const held = `${s.names.subjectPrefix}_held.x`;
      const responder = heldResponder(s.nc, held);
      await s.nc.flush();
      const publisher = new Publisher(s.nc, { timeout: 10_000, window: 1 });
      const first = publisher.send(held, "{}", withId("1"));
      const second = publisher.send(held, "{}", withId("2"));
      const third = publisher.send(held, "{}", withId("3"));
      await responder.arrivals(1);
      const interrupted = new Error("interrupted");
      publisher.interrupt(interrupted);
      await assert.rejects(first, (e) => e === interrupted);
      await responder.arrivals(2); // the second went out in the first's room
      assert.equal(publisher.inFlight, 1);
      responder.answer(1, 7);
      assert.equal((await second).seq, 7);
      const reason = new Error("closed");
      publisher.close(reason);
      await assert.rejects(third, (e) => e === reason);
      await assert.rejects(
        publisher.send(held, "{}", withId("4")),
        (e) => e === reason,
      );
      assert.equal(publisher.pending, 0);
    });
  });

  describe("JetStreamBackend publish through the publisher", () => {
    it("emit() with 1 000 in flight stores and delivers each of 5 000 events exactly once", async () => {
      const names = uniqueNames("manyflight");
      await using admin = await Admin.open(SHARED_NATS, names.stream);
      const producer = new EventBus<Events>({
        logger: new MemoryLogger(),
        backend: await JetStreamBackend.connect(
          { servers: SHARED_NATS },
          names,
        ),
      });
      const worker = new EventBus<Events>({
        logger: new MemoryLogger(),
        backend: await JetStreamBackend.connect(
          { servers: SHARED_NATS },
          names,
        ),
      });
      const deliveries = new Deliveries();
      worker.subscribe("job.run", (event) => deliveries.record(event.id), {
        async: true,
        name: "once",
      });
      await worker.listen();
      const total = 5_000;
      const ids: string[] = [];
      let next = 0;
      await Promise.all(Array.from({ length: 1_000 }, async () => {
        while (next < total) {
          const n = next++;
          ids.push((await producer.emit("job.run", { n })).id);
        }
      }));
      await deliveries.distinct.reach(total, TIMEOUT, "deliveries");
      const info = await admin.jsm.streams.info(names.stream);
      await Promise.all([producer.close(), worker.close()]);
      assert.equal(ids.length, total);
      assert.equal(new Set(ids).size, total);
      assert.equal(info.state.messages, total);
      assert.equal(deliveries.all.length, total, "no event delivered twice");
      assert.deepEqual(
        [...tally(deliveries.all).values()].filter((n) => n !== 1),
        [],
      );
    });

    it("emit() rejects with BackendError citing the client's timeout when no PubAck comes within publishTimeout", async () => {
      const names = uniqueNames("noack");
      await using admin = await Admin.open(SHARED_NATS, names.stream);
      const producer = new EventBus<Events>({
        logger: new MemoryLogger(),
        backend: await JetStreamBackend.connect({ servers: SHARED_NATS }, {
          ...names,
          publishTimeout: 1_000,
        }),
      });
      await producer.emit("job.run", { n: 0 }); // the streams are set up
      // The stream goes; a subscriber that never answers takes its subject.
      await admin.jsm.streams.delete(names.stream);
      const silent = admin.nc.subscribe(`${names.subjectPrefix}.>`, {
        callback: () => {},
      });
      await admin.nc.flush();
      await assert.rejects(
        producer.emit("job.run", { n: 1 }),
        (error: unknown) =>
          error instanceof BackendError &&
          error.message.includes("publishTimeout (1000 ms)") &&
          error.cause instanceof errors.TimeoutError,
      );
      silent.unsubscribe();
      await producer.close({ timeout: 1_000 });
    });

    it("emit() rejects with QueueFullError when the stream is full, the events in flight before it stored", async () => {
      const names = uniqueNames("fullflight");
      await using admin = await Admin.open(SHARED_NATS, names.stream);
      const producer = new EventBus<Events>({
        logger: new MemoryLogger(),
        backend: await JetStreamBackend.connect({ servers: SHARED_NATS }, {
          ...names,
          maxMessages: 100,
        }),
      });
      await producer.emit("job.run", { n: 0 }); // the streams are set up
      const results = await Promise.allSettled(
        Array.from({ length: 149 }, (_, n) => producer.emit("job.run", { n })),
      );
      const stored = results.filter((r) => r.status === "fulfilled").length;
      const full = results.filter((r) =>
        r.status === "rejected" && r.reason instanceof QueueFullError
      ).length;
      const info = await admin.jsm.streams.info(names.stream);
      await producer.close({ timeout: 1_000 });
      assert.equal(stored, 99);
      assert.equal(full, 50);
      assert.equal(info.state.messages, 100);
    });
  });
}
