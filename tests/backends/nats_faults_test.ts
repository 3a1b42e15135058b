// Copyright 2026 the @eventbus/core authors. MIT license.
// Faults on private nats-servers (never the shared one): kill -9 of the
// broker under load and a restart on the same store, a worker process
// killed mid-handling, no broker at startup, and the loss of a stream
// leader in a three-node JetStream cluster. Duplicates are reported (at
// least once allows them); losses fail.

import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createInterface } from "node:readline";
import { BackendError, EventBus, type EventBusOptions } from "../../mod.ts";
import {
  JetStreamBackend,
  type JetStreamBackendOptions,
} from "../../backends/nats/mod.ts";
import { brokerMissing } from "../_brokers.ts";
import {
  freePort,
  NatsCluster,
  NatsServer,
  natsServerBinary,
} from "../_nats_server.ts";
import {
  Counter,
  Deliveries,
  MemoryLogger,
  tally,
  withDeadline,
  work,
} from "../_util.ts";
import { Admin, scriptCommand, uniqueNames } from "./_nats.ts";

type Events = { "job.run": { n: number } };

const TIMEOUT = 60_000;
const WORKER_SCRIPT = fileURLToPath(
  new URL("./_nats_worker.ts", import.meta.url),
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

/** A child process that prints JSON lines. */
class Child {
  readonly process: ChildProcess;
  readonly lines: Record<string, unknown>[] = [];
  #listeners: ((line: Record<string, unknown>) => void)[] = [];
  readonly exited: Promise<void>;

  constructor(args: string[]) {
    const [command, argv] = scriptCommand(WORKER_SCRIPT, args);
    this.process = spawn(command, argv, { stdio: ["ignore", "pipe", "pipe"] });
    this.exited = new Promise((resolve) =>
      this.process.once("exit", () => resolve())
    );
    createInterface({ input: this.process.stdout! }).on("line", (text) => {
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(text);
      } catch {
        return;
      }
      this.lines.push(line);
      for (const listener of this.#listeners) listener(line);
    });
    this.process.stderr?.resume();
  }

  /** Resolves once `count` lines passed `test` (counting earlier ones). */
  waitFor(
    test: (line: Record<string, unknown>) => boolean,
    count = 1,
    what = "lines",
  ): Promise<void> {
    const counter = new Counter();
    counter.add(this.lines.filter(test).length);
    this.#listeners.push((line) => {
      if (test(line)) counter.add();
    });
    return counter.reach(count, TIMEOUT, what);
  }

  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    if (this.process.exitCode === null && this.process.signalCode === null) {
      this.process.kill(signal);
    }
    await this.exited;
  }
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
      const a = new Child([...args, "hang"]);
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
        b = new Child([...args, "ack"]);
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
      const started = performance.now();
      await assert.rejects(
        JetStreamBackend.connect({ servers: `127.0.0.1:${port}` }, {
          connectTimeout: 1_500,
        }),
        (error: unknown) =>
          error instanceof BackendError &&
          error.message.includes("kept trying for 1500 ms"),
      );
      const elapsed = performance.now() - started;
      assert.ok(
        elapsed >= 1_400 && elapsed < 10_000,
        `failed after ${elapsed} ms`,
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
