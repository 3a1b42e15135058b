// Copyright 2026 the @eventbus/core authors. MIT license.
// JetStreamBackend behaviour against real nats-servers: the shared one on
// 127.0.0.1:4222 (unique streams per test, deleted after) and, where a test
// stops the broker, a private one from tests/fixtures/_nats_server.ts.

import { nanos } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import process from "node:process";
import {
  BackendError,
  createEvent,
  DeadLetterError,
  encodeEvent,
  EventBus,
  EventBusClosedError,
  type EventBusOptions,
  QueueFullError,
} from "../../mod.ts";
import { JetStreamBackend, type JetStreamBackendOptions } from "@eventbus/nats";
import { brokerMissing, reachable } from "../fixtures/_brokers.ts";
import { HoldingProxy } from "../fixtures/_proxy.ts";
import { NatsServer, natsServerBinary } from "../fixtures/_nats_server.ts";
import {
  Counter,
  MemoryLogger,
  rejectsBetween,
  scriptCommand,
  tally,
  withDeadline,
  work,
} from "../fixtures/_util.ts";
import { Admin, SHARED_NATS, uniqueNames } from "../fixtures/_nats.ts";

type Events = {
  "order.placed": { n: number };
  "order.other": { n: number };
};

const TIMEOUT = 20_000;

/** A bus on its own connection to `servers`, as one process would have. */
async function bus(
  options: JetStreamBackendOptions,
  busOptions: EventBusOptions = {},
  servers: string = SHARED_NATS,
): Promise<EventBus<Events>> {
  return new EventBus<Events>({
    logger: new MemoryLogger(),
    ...busOptions,
    backend: await JetStreamBackend.connect({ servers }, options),
  });
}

async function closeAll(...buses: EventBus<Events>[]): Promise<void> {
  await Promise.all(buses.map((b) => b.close({ timeout: 5_000 })));
}

if (!await reachable("127.0.0.1", 4222)) {
  brokerMissing("JetStreamBackend", `no NATS server on ${SHARED_NATS}`);
} else {
  describe("JetStreamBackend streams", () => {
    it("creates the stream on first use with file storage, subjects <prefix>.> and a duplicate window", async () => {
      const names = uniqueNames("create");
      await using admin = await Admin.open(SHARED_NATS, names.stream);
      const producer = await bus({ ...names, duplicateWindow: 60_000 });
      await producer.emit("order.placed", { n: 1 });
      await closeAll(producer);
      const { config } = await admin.jsm.streams.info(names.stream);
      assert.deepEqual(config.subjects, [`${names.subjectPrefix}.>`]);
      assert.equal(config.storage, "file");
      assert.equal(config.retention, "limits");
      assert.equal(config.discard, "new");
      assert.equal(config.duplicate_window, nanos(60_000));
      const dlq = await admin.jsm.streams.info(`${names.stream}_DLQ`);
      assert.deepEqual(dlq.config.subjects, [`${names.stream}_DLQ.>`]);
    });

    it("is idempotent and updates the limits of an existing stream", async () => {
      const names = uniqueNames("update");
      await using admin = await Admin.open(SHARED_NATS, names.stream);
      const first = await bus(names);
      await first.emit("order.placed", { n: 1 });
      const second = await bus(names);
      await second.emit("order.placed", { n: 2 });
      const third = await bus({
        ...names,
        maxAge: 3_600_000,
        maxMessages: 500,
      });
      await third.emit("order.placed", { n: 3 });
      await closeAll(first, second, third);
      const { config } = await admin.jsm.streams.info(names.stream);
      assert.equal(config.max_age, nanos(3_600_000));
      assert.equal(config.max_msgs, 500);
    });

    it("creates the stream again when it was deleted while running", async () => {
      const names = uniqueNames("recreate");
      await using admin = await Admin.open(SHARED_NATS, names.stream);
      const producer = await bus(names);
      await producer.emit("order.placed", { n: 1 });
      await admin.jsm.streams.delete(names.stream);
      await producer.emit("order.placed", { n: 2 });
      await closeAll(producer);
      const { config } = await admin.jsm.streams.info(names.stream);
      assert.deepEqual(config.subjects, [`${names.subjectPrefix}.>`]);
    });

    it("rejects with BackendError naming the conflict when the stream exists with other subjects", async () => {
      const names = uniqueNames("conflict");
      await using admin = await Admin.open(SHARED_NATS, names.stream);
      await admin.jsm.streams.add({
        name: names.stream,
        subjects: [`${names.subjectPrefix}_other.>`],
      });
      const producer = await bus(names);
      await assert.rejects(
        producer.emit("order.placed", { n: 1 }),
        (error: unknown) =>
          error instanceof BackendError &&
          error.message.includes(`Cannot use stream "${names.stream}"`) &&
          error.message.includes("subjects"),
      );
      const worker = await bus(names);
      worker.subscribe("order.placed", () => {}, { async: true, name: "w" });
      await assert.rejects(worker.listen(), BackendError);
      await closeAll(producer, worker);
    });

    it("rejects with BackendError when another stream holds the subjects", async () => {
      const names = uniqueNames("overlap");
      await using admin = await Admin.open(SHARED_NATS, names.stream);
      const other = `${names.stream}_OTHER`;
      await admin.jsm.streams.add({
        name: other,
        subjects: [`${names.subjectPrefix}.>`],
      });
      try {
        const producer = await bus(names);
        await assert.rejects(
          producer.emit("order.placed", { n: 1 }),
          (error: unknown) =>
            error instanceof BackendError && error.message.includes("overlap"),
        );
        await closeAll(producer);
      } finally {
        await admin.jsm.streams.delete(other);
      }
    });

    it("rejects with BackendError when the stream is a work queue", async () => {
      const names = uniqueNames("workq");
      await using admin = await Admin.open(SHARED_NATS, names.stream);
      await admin.jsm.streams.add({
        name: names.stream,
        subjects: [`${names.subjectPrefix}.>`],
        retention: "workqueue",
      });
      const producer = await bus(names);
      await assert.rejects(
        producer.emit("order.placed", { n: 1 }),
        (error: unknown) =>
          error instanceof BackendError && error.message.includes("workqueue"),
      );
      await closeAll(producer);
    });

    it("rejects with BackendError when replicas exceed a single server", async () => {
      const names = uniqueNames("replicas");
      await using _admin = await Admin.open(SHARED_NATS, names.stream);
      const producer = await bus({ ...names, replicas: 3 });
      await assert.rejects(
        producer.emit("order.placed", { n: 1 }),
        BackendError,
      );
      await closeAll(producer);
    });
  });

  describe("JetStreamBackend.publish()", () => {
    it("stores CloudEvents JSON on <prefix>.<type> with the event id as message id and ce-* headers", async () => {
      const names = uniqueNames("wire");
      await using admin = await Admin.open(SHARED_NATS, names.stream);
      const producer = await bus(names);
      const event = await producer.emit("order.placed", { n: 1 }, {
        metadata: { traceparent: "00-a-b-01" },
      });
      await closeAll(producer);
      const stored = await admin.jsm.streams.getMessage(names.stream, {
        last_by_subj: `${names.subjectPrefix}.order.placed`,
      });
      assert.ok(stored !== null);
      assert.equal(stored.subject, `${names.subjectPrefix}.order.placed`);
      assert.equal(stored.header.get("Nats-Msg-Id"), event.id);
      assert.equal(stored.header.get("ce-id"), event.id);
      assert.equal(stored.header.get("ce-type"), "order.placed");
      assert.equal(stored.header.get("ce-specversion"), "1.0");
      assert.deepEqual(stored.json(), {
        specversion: "1.0",
        id: event.id,
        type: "order.placed",
        source: "eventbus",
        time: event.time,
        datacontenttype: "application/json",
        traceparent: "00-a-b-01",
        data: { n: 1 },
      });
    });

    it("stores and delivers an event emitted twice with the same id once", async () => {
      const names = uniqueNames("dedup");
      await using admin = await Admin.open(SHARED_NATS, names.stream);
      const [producer, worker] = [await bus(names), await bus(names)];
      const seen: string[] = [];
      const count = new Counter();
      worker.subscribe("order.placed", (event) => {
        seen.push(event.id);
        count.add();
      }, { async: true, name: "dedup" });
      await worker.listen();
      await producer.emit("order.placed", { n: 1 }, { id: "order-1" });
      await producer.emit("order.placed", { n: 1 }, { id: "order-1" });
      await producer.emit("order.placed", { n: 2 }, { id: "order-2" });
      await count.reach(2, TIMEOUT, "deliveries");
      const info = await admin.jsm.streams.info(names.stream);
      await closeAll(producer, worker);
      assert.equal(info.state.last_seq, 2, "the second emit stored nothing");
      assert.deepEqual([...tally(seen)].sort(), [["order-1", 1], [
        "order-2",
        1,
      ]]);
    });

    it("rejects an event larger than max_payload with a permanent BackendError, storing nothing", async () => {
      const names = uniqueNames("large");
      await using admin = await Admin.open(SHARED_NATS, names.stream);
      const producer = await bus({ ...names, publishTimeout: 30_000 });
      await producer.emit("order.placed", { n: 0 });
      const maxPayload = admin.nc.info!.max_payload;
      const error = await producer.emit(
        "order.other",
        { n: 1, pad: "x".repeat(maxPayload) } as { n: number },
      ).then(() => undefined, (error: unknown) => error);
      await closeAll(producer);
      assert.ok(error instanceof BackendError, String(error));
      assert.equal(error.permanent, true, "no retry of it can succeed");
      assert.match(error.message, /max_payload/);
      const info = await admin.jsm.streams.info(names.stream);
      assert.equal(info.state.messages, 1, "only the first event is stored");
    });
  });

  describe("JetStreamBackend consume", () => {
    it("waits the retry policy's delay between tries (nak with delay)", async () => {
      const names = uniqueNames("delay");
      await using _admin = await Admin.open(SHARED_NATS, names.stream);
      const producer = await bus(names);
      const worker = await bus(names, {
        retry: { attempts: 3, backoff: { initial: 400, jitter: false } },
      });
      const times: number[] = [];
      const done = new Counter();
      worker.subscribe("order.placed", (_event, ctx) => {
        times.push(performance.now());
        if (ctx.attempt < 3) throw new Error("not yet");
        done.add();
      }, { async: true, name: "delayed" });
      await worker.listen();
      await producer.emit("order.placed", { n: 1 });
      await done.reach(1, TIMEOUT, "completions");
      await closeAll(producer, worker);
      assert.equal(times.length, 3);
      assert.ok(
        times[1]! - times[0]! >= 350,
        `first gap ${times[1]! - times[0]!}`,
      );
      assert.ok(
        times[2]! - times[1]! >= 750,
        `second gap ${times[2]! - times[1]!}`,
      );
    });

    it("keeps a try that outlives the ack wait from being redelivered (working)", async () => {
      const names = uniqueNames("working");
      await using _admin = await Admin.open(SHARED_NATS, names.stream);
      const options = { ...names, ackWait: 1_000 };
      const producer = await bus(options);
      const workers = [await bus(options), await bus(options)];
      const calls: string[] = [];
      const done = new Counter();
      for (const worker of workers) {
        worker.subscribe("order.placed", async (event) => {
          calls.push(event.id);
          if (event.data.n === 1) await work(2_600);
          done.add();
        }, { async: true, name: "slow" });
        await worker.listen();
      }
      const slow = await producer.emit("order.placed", { n: 1 });
      await done.reach(1, TIMEOUT, "completions");
      // One more event after it: a redelivery would have come before this.
      await producer.emit("order.placed", { n: 2 });
      await done.reach(2, TIMEOUT, "completions");
      await closeAll(producer, ...workers);
      assert.equal(calls.filter((id) => id === slow.id).length, 1);
    });

    it("dead-letters after the last try with the error and attempts in headers, terminates the original", async () => {
      const names = uniqueNames("dlq");
      await using admin = await Admin.open(SHARED_NATS, names.stream);
      const dead: DeadLetterError[] = [];
      const count = new Counter();
      const producer = await bus(names);
      const worker = await bus(names, {
        retry: { attempts: 2, backoff: { initial: 5 } },
        onError: (error) => {
          if (error instanceof DeadLetterError) dead.push(error);
          count.add();
        },
      });
      let tries = 0;
      worker.subscribe("order.placed", () => {
        tries++;
        throw new Error("payment gateway down");
      }, { async: true, name: "charge card" });
      await worker.listen();
      const event = await producer.emit("order.placed", { n: 9 });
      await count.reach(1, TIMEOUT, "dead letters");
      const dlq = `${names.stream}_DLQ`;
      const letter = await withDeadline(
        (async () => {
          while (true) {
            const info = await admin.jsm.streams.info(dlq);
            if (info.state.messages > 0) {
              return await admin.jsm.streams.getMessage(dlq, {
                seq: info.state.first_seq,
              });
            }
            await work(20);
          }
        })(),
        TIMEOUT,
        () => "no dead letter stored",
      );
      // The original is terminated once the copy's PubAck is back, which
      // may be just after the copy shows in the stream.
      const consumer = await withDeadline(
        (async () => {
          while (true) {
            const consumers = await admin.jsm.consumers.list(names.stream)
              .next();
            const found = consumers.find((c) =>
              c.name.startsWith("charge_card_")
            );
            if (found === undefined || found.num_ack_pending === 0) {
              return found;
            }
            await work(20);
          }
        })(),
        TIMEOUT,
        () => "the original is still pending",
      );
      await closeAll(producer, worker);
      assert.equal(dead.length, 1);
      assert.equal(dead[0]!.attempts, 2);
      assert.equal(tries, 2);
      assert.ok(letter !== null);
      assert.ok(letter.subject.startsWith(`${dlq}.charge_card_`));
      assert.ok(letter.subject.endsWith(".order.placed"));
      assert.equal(letter.header.get("EventBus-Reason"), "failed");
      assert.equal(letter.header.get("EventBus-Attempts"), "2");
      assert.equal(letter.header.get("EventBus-Handler"), "charge card");
      assert.equal(
        letter.header.get("EventBus-Error"),
        "Error: payment gateway down",
      );
      assert.equal(
        letter.header.get("EventBus-Original-Subject"),
        `${names.subjectPrefix}.order.placed`,
      );
      assert.equal(letter.header.get("EventBus-Original-Sequence"), "1");
      assert.equal(letter.header.get("ce-id"), event.id);
      assert.equal(letter.json<{ id: string }>().id, event.id);
      assert.ok(consumer !== undefined, "durable name sanitized");
      assert.equal(consumer.num_ack_pending, 0, "original terminated");
      assert.equal(consumer.num_pending, 0);
    });

    it("dead-letters a message that is not a valid event, logs it and keeps consuming", async () => {
      const names = uniqueNames("invalid");
      await using admin = await Admin.open(SHARED_NATS, names.stream);
      const logger = new MemoryLogger();
      const producer = await bus(names);
      const worker = await bus(names, { logger });
      const seen: number[] = [];
      const count = new Counter();
      worker.subscribe("order.placed", (event) => {
        seen.push(event.data.n);
        count.add();
      }, { async: true, name: "picky" });
      await worker.listen();
      const js = admin.jsm.jetstream();
      const subject = `${names.subjectPrefix}.order.placed`;
      await js.publish(subject, "not json at all");
      await js.publish(
        subject,
        JSON.stringify({ specversion: "0.3", id: "x" }),
      );
      await producer.emit("order.placed", { n: 1 });
      await count.reach(1, TIMEOUT, "valid deliveries");
      const dlq = `${names.stream}_DLQ`;
      const letters = await withDeadline(
        (async () => {
          while (true) {
            const info = await admin.jsm.streams.info(dlq);
            if (info.state.messages >= 2) return info.state.messages;
            await work(20);
          }
        })(),
        TIMEOUT,
        () => "dead letters not stored",
      );
      const first = await admin.jsm.streams.getMessage(dlq, { seq: 1 });
      await closeAll(producer, worker);
      assert.deepEqual(seen, [1]);
      assert.equal(letters, 2);
      assert.equal(first?.header.get("EventBus-Reason"), "invalid-event");
      assert.match(
        first?.header.get("EventBus-Error") ?? "",
        /SerializationError/,
      );
      assert.equal(first?.string(), "not json at all");
      assert.equal(
        logger.lines.filter((l) =>
          l.level === "error" && l.message.includes("dead-letter stream")
        ).length,
        2,
      );
    });

    it("runs at most concurrency tries at once per consumer", async () => {
      const names = uniqueNames("conc");
      await using _admin = await Admin.open(SHARED_NATS, names.stream);
      const producer = await bus(names);
      const worker = await bus({ ...names, concurrency: 3 });
      let running = 0;
      let peak = 0;
      const done = new Counter();
      worker.subscribe("order.placed", async () => {
        peak = Math.max(peak, ++running);
        await work(20);
        running--;
        done.add();
      }, { async: true, name: "bounded" });
      await worker.listen();
      await Promise.all(
        Array.from(
          { length: 30 },
          (_, n) => producer.emit("order.placed", { n }),
        ),
      );
      await done.reach(30, TIMEOUT, "completions");
      await closeAll(producer, worker);
      assert.equal(peak, 3);
    });

    it("ordered: one event in flight per handler name across workers, in stream order, retries first", async () => {
      const names = uniqueNames("ordered");
      await using _admin = await Admin.open(SHARED_NATS, names.stream);
      const options = { ...names, ordered: true };
      const producer = await bus(options);
      const workers = [
        await bus(options, { retry: { attempts: 3, backoff: { initial: 5 } } }),
        await bus(options, { retry: { attempts: 3, backoff: { initial: 5 } } }),
      ];
      const starts: number[] = [];
      const completed: number[] = [];
      const byWorker = [0, 0];
      let running = 0;
      let peak = 0;
      const done = new Counter();
      workers.forEach((worker, i) =>
        worker.subscribe("order.placed", async (event, ctx) => {
          peak = Math.max(peak, ++running);
          starts.push(event.data.n);
          byWorker[i]!++;
          await work(event.data.n % 3);
          running--;
          if (event.data.n % 5 === 2 && ctx.attempt === 1) {
            throw new Error("first try fails");
          }
          completed.push(event.data.n);
          done.add();
        }, { async: true, name: "in-order" })
      );
      await Promise.all(workers.map((w) => w.listen()));
      const total = 30;
      for (let n = 0; n < total; n++) {
        await producer.emit("order.placed", { n });
      }
      await done.reach(total, TIMEOUT, "completions");
      await closeAll(producer, ...workers);
      const expected = Array.from({ length: total }, (_, n) => n);
      assert.deepEqual(completed, expected);
      assert.deepEqual(
        starts,
        expected.flatMap((n) => n % 5 === 2 ? [n, n] : [n]),
      );
      assert.equal(peak, 1);
    });

    it("gives a handler name with dots, slashes, spaces and wildcards a valid durable name", async () => {
      const names = uniqueNames("names");
      await using admin = await Admin.open(SHARED_NATS, names.stream);
      const [producer, worker] = [await bus(names), await bus(names)];
      const count = new Counter();
      for (const name of ["mail.v2 > *", "mail/v2 > *", "plain-name_1"]) {
        worker.subscribe("order.placed", () => count.add(), {
          async: true,
          name,
        });
      }
      await worker.listen();
      await producer.emit("order.placed", { n: 1 });
      await count.reach(3, TIMEOUT, "deliveries");
      const consumers = await admin.jsm.consumers.list(names.stream).next();
      await closeAll(producer, worker);
      const durable = consumers.map((c) => c.name).sort();
      assert.equal(durable.length, 3, "three different names");
      assert.ok(durable.includes("plain-name_1"));
      for (const name of durable) assert.match(name, /^[A-Za-z0-9_-]+$/);
    });

    it("stops consuming for a subscription whose signal aborts; another worker of the name takes over", async () => {
      const names = uniqueNames("detach");
      await using _admin = await Admin.open(SHARED_NATS, names.stream);
      const producer = await bus(names);
      const [a, b] = [await bus(names), await bus(names)];
      const controller = new AbortController();
      const seen = { a: 0, b: 0 };
      const count = new Counter();
      a.subscribe("order.placed", () => {
        seen.a++;
        count.add();
      }, { async: true, name: "shared", signal: controller.signal });
      b.subscribe("order.placed", () => {
        seen.b++;
        count.add();
      }, { async: true, name: "shared" });
      await Promise.all([a.listen(), b.listen()]);
      controller.abort();
      for (let n = 0; n < 20; n++) await producer.emit("order.placed", { n });
      await count.reach(20, TIMEOUT, "deliveries");
      await closeAll(producer, a, b);
      assert.deepEqual(seen, { a: 0, b: 20 });
    });
  });

  describe("JetStreamBackend handler names started after the emit", () => {
    it("the README flow: examples/nats_worker.ts started after examples/nats_producer.ts handles every order", async () => {
      const names = uniqueNames("readme");
      await using _admin = await Admin.open(SHARED_NATS, names.stream);
      const env = {
        ...process.env,
        NATS_URL: SHARED_NATS,
        NATS_STREAM: names.stream,
        NATS_PREFIX: names.subjectPrefix,
      };
      const example = (file: string) =>
        fileURLToPath(new URL(`../../examples/${file}`, import.meta.url));
      const [command, producerArgs] = scriptCommand(
        example("nats_producer.ts"),
        ["5"],
      );
      const producer = spawn(command, producerArgs, {
        env,
        stdio: ["ignore", "pipe", "inherit"],
      });
      const emitted: number[] = [];
      createInterface({ input: producer.stdout! }).on("line", (line) => {
        const match = /^producer: emitted order (\d+)/.exec(line);
        if (match !== null) emitted.push(Number(match[1]));
      });
      const code = await withDeadline(
        new Promise<number | null>((resolve) =>
          producer.once("exit", (code) => resolve(code))
        ),
        TIMEOUT,
        () => "the producer did not exit",
      );
      assert.equal(code, 0);
      assert.deepEqual(emitted, [1, 2, 3, 4, 5]);
      const [_, workerArgs] = scriptCommand(example("nats_worker.ts"), [
        "late-worker",
      ]);
      const worker = spawn(command, workerArgs, {
        env,
        stdio: ["ignore", "pipe", "inherit"],
      });
      const exited = new Promise<void>((resolve) =>
        worker.once("exit", () => resolve())
      );
      const handled = new Set<number>();
      const count = new Counter();
      createInterface({ input: worker.stdout! }).on("line", (line) => {
        const match = /^late-worker: handled order (\d+)/.exec(line);
        if (match === null) return;
        handled.add(Number(match[1]));
        count.add();
      });
      try {
        await count.reach(5, TIMEOUT, "orders handled by the worker");
      } finally {
        worker.kill("SIGTERM");
        await exited;
      }
      assert.deepEqual([...handled].sort(), [1, 2, 3, 4, 5]);
    });

    it("delivers to a new handler name the events emitted before its first worker, and warns how many", async () => {
      const names = uniqueNames("late");
      await using _admin = await Admin.open(SHARED_NATS, names.stream);
      const producer = await bus(names);
      const ids: string[] = [];
      for (let n = 0; n < 5; n++) {
        ids.push((await producer.emit("order.placed", { n })).id);
      }
      const logger = new MemoryLogger();
      const worker = await bus(names, { logger });
      const seen: string[] = [];
      const count = new Counter();
      worker.subscribe("order.placed", (event) => {
        seen.push(event.id);
        count.add();
      }, { async: true, name: "late-audit" });
      await worker.listen();
      await count.reach(5, TIMEOUT, "deliveries to the first worker");
      await closeAll(producer, worker);
      assert.deepEqual([...seen].sort(), [...ids].sort());
      const warnings = logger.lines.filter((l) => l.level === "warn");
      assert.equal(warnings.length, 1);
      assert.match(warnings[0]!.message, /late-audit/);
      assert.match(warnings[0]!.message, /5 events emitted before/);
      assert.match(warnings[0]!.message, /startAt/);
    });

    it('startAt "now" starts a new handler name at later events, says so at info, and never moves an existing name', async () => {
      const names = uniqueNames("startnow");
      await using _admin = await Admin.open(SHARED_NATS, names.stream);
      const producer = await bus(names);
      await producer.emit("order.placed", { n: 1 });
      const logger = new MemoryLogger();
      const worker = await bus({ ...names, startAt: "now" }, { logger });
      const seen: number[] = [];
      const count = new Counter();
      worker.subscribe("order.placed", (event) => {
        seen.push(event.data.n);
        count.add();
      }, { async: true, name: "from-now" });
      await worker.listen();
      await producer.emit("order.placed", { n: 2 });
      await count.reach(1, TIMEOUT, "deliveries");
      await worker.close();
      // The name exists now: a restart resumes it, even with the default.
      await producer.emit("order.placed", { n: 3 });
      const again = await bus(names);
      again.subscribe("order.placed", (event) => {
        seen.push(event.data.n);
        count.add();
      }, { async: true, name: "from-now" });
      await again.listen();
      await count.reach(2, TIMEOUT, "deliveries after the restart");
      await closeAll(producer, again);
      assert.deepEqual(seen, [2, 3]);
      assert.equal(logger.lines.filter((l) => l.level === "warn").length, 0);
      assert.ok(
        logger.lines.some((l) =>
          l.level === "info" && l.message.includes("from-now") &&
          l.message.includes("earlier ones are skipped")
        ),
        JSON.stringify(logger.lines),
      );
    });

    it("startAt a Date starts a new handler name at the events stored since then", async () => {
      const names = uniqueNames("startdate");
      await using _admin = await Admin.open(SHARED_NATS, names.stream);
      const producer = await bus(names);
      await producer.emit("order.placed", { n: 1 });
      await work(50);
      const since = new Date();
      await work(50);
      await producer.emit("order.placed", { n: 2 });
      const worker = await bus({ ...names, startAt: since });
      const seen: number[] = [];
      const count = new Counter();
      worker.subscribe("order.placed", (event) => {
        seen.push(event.data.n);
        count.add();
      }, { async: true, name: "since" });
      await worker.listen();
      await producer.emit("order.placed", { n: 3 });
      await count.reach(2, TIMEOUT, "deliveries");
      await closeAll(producer, worker);
      assert.deepEqual(seen, [2, 3]);
    });

    it('rejects a startAt that is not "oldest", "now" or a valid Date with RangeError', async () => {
      for (
        const startAt of ["first", new Date(Number.NaN), 0] as unknown[]
      ) {
        await assert.rejects(
          JetStreamBackend.connect({ servers: SHARED_NATS }, {
            startAt: startAt as "now",
          }),
          RangeError,
        );
      }
    });

    it("rejects with BackendError saying what to do when the stream exists with interest retention", async () => {
      const names = uniqueNames("interest");
      await using admin = await Admin.open(SHARED_NATS, names.stream);
      await admin.jsm.streams.add({
        name: names.stream,
        subjects: [`${names.subjectPrefix}.>`],
        retention: "interest",
      });
      const producer = await bus(names);
      await assert.rejects(
        producer.emit("order.placed", { n: 1 }),
        (error: unknown) =>
          error instanceof BackendError &&
          error.message.includes(`Cannot use stream "${names.stream}"`) &&
          error.message.includes('retention "interest"') &&
          error.message.includes("cannot change retention in place") &&
          error.message.includes(`nats stream rm ${names.stream}`),
      );
      const worker = await bus(names);
      worker.subscribe("order.placed", () => {}, { async: true, name: "w" });
      await assert.rejects(worker.listen(), BackendError);
      await closeAll(producer, worker);
    });
  });

  describe("JetStreamBackend stream limits", () => {
    for (
      const [limit, options, text, size] of [
        ["maxMessages", { maxMessages: 3 }, "maximum messages exceeded", 3],
        ["maxBytes", { maxBytes: 3 * 700 }, "maximum bytes exceeded", 2100],
      ] as const
    ) {
      it(`rejects emit at once with QueueFullError naming the stream and ${limit} when the stream is full, dropping nothing`, async () => {
        const names = uniqueNames("full");
        await using admin = await Admin.open(SHARED_NATS, names.stream);
        const producer = await bus({ ...names, ...options });
        const stored: string[] = [];
        for (let n = 0; stored.length < 10; n++) {
          const started = performance.now();
          try {
            stored.push((await producer.emit("order.placed", { n })).id);
          } catch (error) {
            const elapsed = performance.now() - started;
            assert.ok(error instanceof QueueFullError, String(error));
            assert.equal(error.eventType, "order.placed");
            assert.equal(error.queueSize, size);
            assert.ok(
              error.message.includes(`stream "${names.stream}" is full`),
              error.message,
            );
            assert.ok(error.message.includes(text), error.message);
            assert.ok(error.message.includes(limit), error.message);
            assert.ok(elapsed < 5_000, `rejected after ${elapsed} ms`);
            break;
          }
        }
        const info = await admin.jsm.streams.info(names.stream);
        await closeAll(producer);
        assert.ok(stored.length >= 1 && stored.length < 10);
        assert.equal(info.state.messages, stored.length, "nothing dropped");
        assert.equal(info.state.first_seq, 1);
      });
    }
  });

  describe("JetStreamBackend attaching consumers", () => {
    it("consume() resolves once the durable consumer exists with a pull request waiting", async () => {
      const names = uniqueNames("attach");
      await using admin = await Admin.open(SHARED_NATS, names.stream);
      const backend = await JetStreamBackend.connect(
        { servers: SHARED_NATS },
        names,
      );
      await backend.consume(() => Promise.resolve({ status: "completed" }), {
        consumers: [{ name: "attached", type: "order.placed", attempts: 3 }],
      });
      const info = await admin.jsm.consumers.info(names.stream, "attached");
      await backend.close();
      assert.equal(info.num_waiting, 1);
    });

    it("consume() rejects with EventBusClosedError when the backend closes while it attaches", async () => {
      const names = uniqueNames("attachclose");
      await using _admin = await Admin.open(SHARED_NATS, names.stream);
      const backend = await JetStreamBackend.connect(
        { servers: SHARED_NATS },
        names,
      );
      const attaching = backend.consume(
        () => Promise.resolve({ status: "completed" }),
        {
          consumers: [{ name: "closing", type: "order.placed", attempts: 3 }],
        },
      );
      const rejected = assert.rejects(attaching, EventBusClosedError);
      await backend.close();
      await rejected;
    });
  });

  describe("JetStreamBackend dead letters that cannot be stored as they are", () => {
    it("stores a dead letter once its deleted stream is back, logging the wait, without running the handler again", async () => {
      const names = uniqueNames("dlqgone");
      await using admin = await Admin.open(SHARED_NATS, names.stream);
      const logger = new MemoryLogger();
      const reported = new Counter();
      const producer = await bus(names);
      const worker = await bus(names, {
        logger,
        retry: { attempts: 2, backoff: { initial: 5, max: 20 } },
        onError: () => reported.add(),
      });
      let runs = 0;
      worker.subscribe("order.placed", () => {
        runs++;
        throw new Error("always fails");
      }, { async: true, name: "gone" });
      await worker.listen();
      await producer.emit("order.other", { n: 0 }); // the streams are set up
      const dlq = `${names.stream}_DLQ`;
      await admin.jsm.streams.delete(dlq);
      const event = await producer.emit("order.placed", { n: 1 });
      await reported.reach(1, TIMEOUT, "dead letters");
      const letter = await withDeadline(
        (async () => {
          while (true) {
            const info = await admin.jsm.streams.info(dlq).catch(() =>
              undefined
            );
            if (info !== undefined && info.state.messages > 0) {
              return await admin.jsm.streams.getMessage(dlq, {
                seq: info.state.first_seq,
              });
            }
            await work(20);
          }
        })(),
        TIMEOUT,
        () => "no dead letter stored",
      );
      await closeAll(producer, worker);
      assert.equal(runs, 2, "the handler ran its 2 tries only");
      assert.equal(reported.value, 1);
      assert.equal(letter?.header.get("ce-id"), event.id);
      assert.ok(
        logger.lines.some((l) =>
          l.level === "warn" &&
          l.message.startsWith("Cannot store the dead letter")
        ),
        JSON.stringify(logger.lines),
      );
    });

    it("dead-letters an event too large to copy with its headers as a reference, reporting it once", async () => {
      const names = uniqueNames("huge");
      await using admin = await Admin.open(SHARED_NATS, names.stream);
      const maxPayload = admin.nc.info!.max_payload;
      // A body that fits max_payload with the event's own headers (~270 B)
      // but not with the dead-letter headers (~490 B).
      const target = maxPayload - 300;
      const base = encodeEvent(createEvent("order.placed", { n: 0, s: "" }))
        .length;
      const data = { n: 1, s: "x".repeat(target - base) };
      const dead: DeadLetterError[] = [];
      const reported = new Counter();
      const producer = await bus(names);
      const worker = await bus(names, {
        retry: { attempts: 3, backoff: { initial: 5, max: 20 } },
        onError: (error) => {
          if (error instanceof DeadLetterError) dead.push(error);
          reported.add();
        },
      });
      let runs = 0;
      worker.subscribe("order.placed", () => {
        runs++;
        throw new Error("always fails");
      }, { async: true, name: "huge" });
      await worker.listen();
      // deno-lint-ignore no-explicit-any
      const event = await producer.emit("order.placed", data as any);
      await reported.reach(1, TIMEOUT, "dead letters");
      const dlq = `${names.stream}_DLQ`;
      const letter = await withDeadline(
        (async () => {
          while (true) {
            const info = await admin.jsm.streams.info(dlq);
            if (info.state.messages > 0) {
              return await admin.jsm.streams.getMessage(dlq, {
                seq: info.state.first_seq,
              });
            }
            await work(20);
          }
        })(),
        TIMEOUT,
        () => "no dead letter stored",
      );
      // Give a wrong second try or report the time to show itself.
      await producer.emit("order.placed", { n: 2 });
      await reported.reach(2, TIMEOUT, "the second event's dead letter");
      await closeAll(producer, worker);
      assert.equal(
        encodeEvent(event).length,
        target,
        "the event is 300 B under max_payload",
      );
      assert.equal(runs, 6, "3 tries for each of the two events");
      assert.equal(dead.length, 2);
      assert.equal(dead[0]!.event.id, event.id);
      assert.equal(dead[0]!.reason, "failed");
      assert.ok(letter !== null);
      assert.equal(letter.header.get("EventBus-Body"), "reference");
      assert.equal(letter.header.get("EventBus-Reason"), "failed");
      assert.equal(letter.header.get("EventBus-Original-Stream"), names.stream);
      assert.equal(letter.header.get("ce-id"), event.id);
      assert.equal(letter.data.length, 0);
      const seq = Number(letter.header.get("EventBus-Original-Sequence"));
      const original = await admin.jsm.streams.getMessage(names.stream, {
        seq,
      });
      assert.equal(original?.json<{ id: string }>().id, event.id);
    });
  });

  describe("JetStreamBackend connections", () => {
    it("rejects a backend option among the connection options of connect() with TypeError naming the second argument", async () => {
      await assert.rejects(
        JetStreamBackend.connect(
          {
            servers: SHARED_NATS,
            stream: "ORDERS",
          } as Parameters<typeof JetStreamBackend.connect>[0],
        ),
        (error: unknown) =>
          error instanceof TypeError && error.message.includes('"stream"') &&
          error.message.includes("second argument"),
      );
    });

    it("rejects a connection option among the backend options with TypeError naming the first argument", async () => {
      const nc = await connect({ servers: SHARED_NATS });
      try {
        assert.throws(
          () =>
            new JetStreamBackend(nc, {
              servers: SHARED_NATS,
            } as JetStreamBackendOptions),
          (error: unknown) =>
            error instanceof TypeError &&
            error.message.includes('"servers"') &&
            error.message.includes("first argument"),
        );
      } finally {
        await nc.close();
      }
    });

    it("leaves a connection it was given open after close()", async () => {
      const names = uniqueNames("given");
      await using _admin = await Admin.open(SHARED_NATS, names.stream);
      const nc = await connect({ servers: SHARED_NATS });
      const producer = new EventBus<Events>({
        backend: new JetStreamBackend(nc, names),
      });
      await producer.emit("order.placed", { n: 1 });
      await producer.close();
      assert.equal(nc.isClosed(), false);
      const reply = await nc.request("$JS.API.INFO");
      assert.ok(reply.data.length > 0, "the connection still works");
      await nc.close();
    });
  });
}

const binary = natsServerBinary();
if (binary === undefined) {
  brokerMissing(
    "JetStreamBackend with a private nats-server",
    "nats-server not found",
  );
} else {
  describe("JetStreamBackend with a private nats-server", () => {
    it("drains the connection it owns on close()", async () => {
      await using server = await NatsServer.start();
      const producer = await bus(uniqueNames("owned"), {}, server.url);
      await producer.emit("order.placed", { n: 1 });
      const before = await connections(server);
      await producer.close();
      const after = await withDeadline(
        (async () => {
          while (true) {
            const n = await connections(server);
            if (n < before) return n;
            await work(20);
          }
        })(),
        TIMEOUT,
        () => "the connection stayed open",
      );
      assert.equal(before, 1);
      assert.equal(after, 0);
    });

    it("rejects emit with BackendError after publishTimeout while the broker is down", async () => {
      await using server = await NatsServer.start();
      const producer = await bus(
        { ...uniqueNames("down"), publishTimeout: 1_500 },
        {},
        server.url,
      );
      await producer.emit("order.placed", { n: 1 });
      await server.kill();
      await rejectsBetween(
        () => producer.emit("order.placed", { n: 2 }),
        (error) =>
          error instanceof BackendError &&
          error.message.includes("publishTimeout (1500 ms)"),
        1_400,
        10_000,
      );
      await producer.close({ timeout: 100 });
    });

    it("rejects emit after publishTimeout when the broker stops answering with the publish in flight", async () => {
      await using server = await NatsServer.start();
      await using proxy = await HoldingProxy.start("127.0.0.1", server.port);
      const producer = await bus(
        { ...uniqueNames("hung"), publishTimeout: 1_000 },
        {},
        proxy.url,
      );
      await producer.emit("order.placed", { n: 1 });
      // The connection stays up: the PubAck just never comes. nats.js's
      // own request timeout (5 s) must not decide how long emit waits.
      proxy.hold();
      // Without a signal (the common path) and with one.
      for (const options of [{}, { signal: new AbortController().signal }]) {
        await rejectsBetween(
          () => producer.emit("order.placed", { n: 2 }, options),
          (error) =>
            error instanceof BackendError &&
            error.message.includes("publishTimeout (1000 ms)"),
          900,
          4_000,
        );
      }
      proxy.release();
      await producer.close({ timeout: 100 });
    });

    it("keeps trying while the broker restarts and resolves once it stored the event", async () => {
      await using server = await NatsServer.start();
      const names = uniqueNames("restart");
      const producer = await bus(
        { ...names, publishTimeout: 20_000 },
        {},
        server.url,
      );
      // A delivery or an ack lost in the crash comes back after ackWait.
      const worker = await bus({ ...names, ackWait: 2_000 }, {}, server.url);
      const seen = new Set<number>();
      const count = new Counter();
      worker.subscribe("order.placed", (event) => {
        if (seen.has(event.data.n)) return; // a redelivery after the crash
        seen.add(event.data.n);
        count.add();
      }, { async: true, name: "survivor" });
      await worker.listen();
      await producer.emit("order.placed", { n: 1 });
      await count.reach(1, TIMEOUT, "first delivery");
      await server.kill();
      const pending = producer.emit("order.placed", { n: 2 });
      await server.restart();
      await withDeadline(pending, TIMEOUT, () => "emit did not resolve");
      await count.reach(2, TIMEOUT, "deliveries");
      await closeAll(producer, worker);
      assert.deepEqual([...seen].sort(), [1, 2]);
    });
  });
}

async function connections(server: NatsServer): Promise<number> {
  const response = await fetch(`${server.monitorUrl}/connz`);
  const body = await response.json() as { num_connections: number };
  return body.num_connections;
}
