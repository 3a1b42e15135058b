// Copyright 2026 the @eventbus/core authors. MIT license.
// Faults on private nats-servers (never the shared one): kill -9 of the
// broker under load and a restart on the same store, a worker process
// killed mid-handling, no broker at startup, and the loss of a stream
// leader in a three-node JetStream cluster. Duplicates are reported (at
// least once allows them); losses fail.

import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  BackendError,
  type Event,
  EventBus,
  type EventBusOptions,
} from "../../mod.ts";
import { JetStreamBackend, type JetStreamBackendOptions } from "@eventbus/nats";
import { brokerMissing } from "../fixtures/_brokers.ts";
import {
  freePort,
  NatsCluster,
  NatsServer,
  natsServerBinary,
} from "../fixtures/_nats_server.ts";
import {
  Deliveries,
  MemoryLogger,
  rejectsBetween,
  tally,
  withDeadline,
  work,
} from "../fixtures/_util.ts";
import { Admin, Child, uniqueNames } from "../fixtures/_nats.ts";

type Events = { "job.run": { n: number } };

const TIMEOUT = 60_000;
const WORKER_SCRIPT = fileURLToPath(
  new URL("../fixtures/_nats_worker.ts", import.meta.url),
);

async function bus(
  servers: string | string[],
  options: JetStreamBackendOptions,
  busOptions: EventBusOptions = {},
): Promise<EventBus<Events>> {
  return new EventBus<Events>({
    logger: new MemoryLogger(),
    ...busOptions,
    backend: await JetStreamBackend.connect({ servers }, options),
  });
}

/**
 * Emits `total` events, at most `window` at once; calls `at(accepted)`
 * after each accepted emit. Resolves with the accepted ids and failures.
 */
async function emitMany(
  producer: EventBus<Events>,
  total: number,
  window: number,
  at: (accepted: number) => void,
): Promise<{ accepted: string[]; failed: unknown[] }> {
  const accepted: string[] = [];
  const failed: unknown[] = [];
  let next = 0;
  async function lane(): Promise<void> {
    while (next < total) {
      const n = next++;
      try {
        const event = await producer.emit("job.run", { n });
        accepted.push(event.id);
        at(accepted.length);
      } catch (error) {
        failed.push(error);
      }
    }
  }
  await Promise.all(Array.from({ length: window }, lane));
  return { accepted, failed };
}

/** Waits until the consumer has nothing pending or unacknowledged. */
async function drained(admin: Admin, stream: string, consumer: string) {
  return await withDeadline(
    (async () => {
      while (true) {
        const info = await admin.jsm.consumers.info(stream, consumer).catch(
          () => undefined,
        );
        if (
          info !== undefined && info.num_pending === 0 &&
          info.num_ack_pending === 0
        ) return info;
        await work(100);
      }
    })(),
    TIMEOUT,
    () => `consumer "${consumer}" did not drain`,
  );
}

if (natsServerBinary() === undefined) {
  brokerMissing("JetStreamBackend faults", "nats-server not found");
} else {
  describe("JetStreamBackend faults", () => {
    it("loses no accepted event when the broker is killed (kill -9) under load and restarted on the same store", async () => {
      await using server = await NatsServer.start();
      const names = uniqueNames("kill9");
      await using admin = await Admin.open(server.url);
      const options = { ...names, ackWait: 3_000, publishTimeout: 30_000 };
      const worker = await bus(server.url, options);
      const producer = await bus(server.url, options);
      const deliveries = new Deliveries();
      const { all: seen, distinct: handled } = deliveries;
      worker.subscribe("job.run", (event) => deliveries.record(event.id), {
        async: true,
        name: "survivor",
      });
      await worker.listen();

      const total = 5_000;
      let crash: Promise<void> | undefined;
      const { accepted, failed } = await emitMany(
        producer,
        total,
        50,
        (n) => {
          if (n === 1_500 && crash === undefined) {
            crash = server.kill("SIGKILL").then(() => server.restart());
          }
        },
      );
      await crash;
      await handled.reach(accepted.length, TIMEOUT, "events handled");
      await drained(admin, names.stream, "survivor");
      await Promise.all([producer.close(), worker.close()]);
      const counts = tally(seen);
      const lost = accepted.filter((id) => !counts.has(id));
      const duplicates = seen.length - counts.size;
      console.log(
        `kill -9 under load: ${accepted.length} of ${total} emits accepted, ${failed.length} rejected, ${lost.length} lost, ${duplicates} duplicate deliveries`,
      );
      assert.ok(crash !== undefined, "the broker was killed");
      assert.deepEqual(failed, []);
      assert.equal(accepted.length, total);
      assert.deepEqual(lost, []);
      await admin.jsm.streams.delete(names.stream).catch(() => false);
      await admin.jsm.streams.delete(`${names.stream}_DLQ`).catch(() => false);
    });

    it("redelivers the events of a worker process killed mid-handling to the other worker", async () => {
      await using server = await NatsServer.start();
      const names = uniqueNames("wkill");
      const args = [server.url, names.stream, names.subjectPrefix, "2000"];
      const a = new Child(WORKER_SCRIPT, [...args, "hang"]);
      let b: Child | undefined;
      try {
        await a.waitFor((l) => l.ready === true, 1, "worker A ready");
        const producer = await bus(server.url, names);
        const ids: string[] = [];
        for (let n = 0; n < 5; n++) {
          ids.push((await producer.emit("job.run", { n })).id);
        }
        await producer.close();
        await a.waitFor((l) => "start" in l, 5, "worker A started handlers");
        b = new Child(WORKER_SCRIPT, [...args, "ack"]);
        await b.waitFor((l) => l.ready === true, 1, "worker B ready");
        await a.kill("SIGKILL");
        await b.waitFor((l) => "done" in l, 5, "worker B completions");
        const done = b.lines.filter((l) => "done" in l).map((l) => l.done);
        const starts = b.lines.filter((l) => "start" in l);
        assert.deepEqual([...new Set(done)].sort(), [...ids].sort());
        for (const start of starts) {
          assert.ok((start.attempt as number) >= 2, "a redelivery");
        }
      } finally {
        await a.kill("SIGKILL");
        await b?.kill("SIGTERM");
      }
    });

    it("dead-letters as crashed, in the next worker, an event whose worker is killed (kill -9) during each of its attempts", async () => {
      await using server = await NatsServer.start();
      const names = uniqueNames("crash");
      await using admin = await Admin.open(server.url);
      const attempts = 3;
      const args = [server.url, names.stream, names.subjectPrefix, "1000"];
      const producer = await bus(server.url, names);
      let poison: Event | undefined;
      const tries: number[] = [];
      for (let k = 1; k <= attempts; k++) {
        const child = new Child(WORKER_SCRIPT, [
          ...args,
          "hang",
          String(attempts),
        ]);
        try {
          if (poison === undefined) {
            await child.waitFor((l) => l.ready === true, 1, "first worker");
            poison = await producer.emit("job.run", { n: 0 });
          }
          const id = poison.id;
          await child.waitFor((l) => l.start === id, 1, `try ${k}`);
          for (const line of child.lines) {
            if (line.start === id) tries.push(line.attempt as number);
          }
        } finally {
          await child.kill("SIGKILL");
        }
      }
      assert.ok(poison !== undefined);
      const last = new Child(WORKER_SCRIPT, [...args, "ack", String(attempts)]);
      try {
        await last.waitFor((l) => l.dead === poison.id, 1, "dead letter");
        // A healthy event after it flows; by then a second report would show.
        const healthy = await producer.emit("job.run", { n: 1 });
        await last.waitFor((l) => l.done === healthy.id, 1, "healthy event");
      } finally {
        await last.kill("SIGTERM");
      }
      await producer.close();
      const dead = last.lines.filter((l) => "dead" in l);
      const dlq = `${names.stream}_DLQ`;
      const letters = await admin.jsm.streams.info(dlq);
      const letter = await admin.jsm.streams.getMessage(dlq, {
        seq: letters.state.first_seq,
      });
      assert.deepEqual(tries, [1, 2, 3], "the handler ran exactly 3 times");
      assert.equal(
        last.lines.filter((l) => l.start === poison.id).length,
        0,
        "not run a fourth time",
      );
      assert.deepEqual(dead, [{
        dead: poison.id,
        reason: "crashed",
        attempts: 3,
      }]);
      assert.equal(letters.state.messages, 1, "one dead-letter copy");
      assert.equal(letter?.header.get("EventBus-Reason"), "crashed");
      assert.equal(letter?.header.get("EventBus-Attempts"), "3");
      assert.equal(letter?.header.get("ce-id"), poison.id);
    });

    it("fails fast with BackendError when no broker runs at startup", async () => {
      const port = await freePort();
      const started = performance.now();
      await assert.rejects(
        JetStreamBackend.connect({ servers: `127.0.0.1:${port}` }),
        (error: unknown) =>
          error instanceof BackendError &&
          error.message.startsWith("Cannot connect to NATS"),
      );
      assert.ok(performance.now() - started < 10_000);
    });

    it("waits at most connectTimeout for a broker at startup, then fails with BackendError", async () => {
      const port = await freePort();
      await rejectsBetween(
        () =>
          JetStreamBackend.connect({ servers: `127.0.0.1:${port}` }, {
            connectTimeout: 1_500,
          }),
        (error) =>
          error instanceof BackendError &&
          error.message.includes("kept trying for 1500 ms"),
        1_400,
        10_000,
      );
    });

    it("connects once a broker starts within connectTimeout", async () => {
      const port = await freePort();
      const connecting = JetStreamBackend.connect(
        { servers: `127.0.0.1:${port}` },
        { connectTimeout: 20_000 },
      );
      await using _server = await NatsServer.start({ port });
      const backend = await withDeadline(
        connecting,
        TIMEOUT,
        () => "no connect",
      );
      await backend.close();
    });

    it("keeps emits succeeding when the stream leader of a 3-node cluster is killed, losing no accepted event", async () => {
      await using cluster = await NatsCluster.start(3);
      const names = uniqueNames("r3");
      const options = { ...names, replicas: 3, publishTimeout: 30_000 };
      const worker = await bus(cluster.urls, options);
      const producer = await bus(cluster.urls, options);
      await using admin = await Admin.open(cluster.urls);
      const deliveries = new Deliveries();
      const { all: seen, distinct: handled } = deliveries;
      worker.subscribe("job.run", (event) => deliveries.record(event.id), {
        async: true,
        name: "replicated",
      });
      await worker.listen();
      const info = await admin.jsm.streams.info(names.stream);
      assert.equal(info.config.num_replicas, 3);
      const leaderName = info.cluster?.leader;
      const leader = leaderName === undefined
        ? undefined
        : cluster.byName(leaderName);
      assert.ok(leader !== undefined, `stream leader ${leaderName} found`);

      const total = 1_000;
      let killedAt = -1;
      let crash: Promise<void> | undefined;
      const { accepted, failed } = await emitMany(producer, total, 20, (n) => {
        if (n === 300 && crash === undefined) {
          killedAt = n;
          crash = leader.kill("SIGKILL");
        }
      });
      await crash;
      await handled.reach(accepted.length, TIMEOUT, "events handled");
      const after = await admin.jsm.streams.info(names.stream);
      await Promise.all([producer.close(), worker.close()]);
      const counts = tally(seen);
      const lost = accepted.filter((id) => !counts.has(id));
      console.log(
        `R3 leader ${leaderName} killed after ${killedAt} emits: ${accepted.length} of ${total} accepted, ${
          accepted.length - killedAt
        } after the kill, new leader ${after.cluster?.leader}, ${lost.length} lost, ${
          seen.length - counts.size
        } duplicate deliveries`,
      );
      assert.deepEqual(failed, []);
      assert.equal(accepted.length, total);
      assert.notEqual(after.cluster?.leader, leaderName);
      assert.deepEqual(lost, []);
    });
  });
}
