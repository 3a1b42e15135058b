// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * The NATS JetStream demo: two worker processes and a producer process,
 * on a fresh stream, against the local nats-server. Prints which worker
 * handled which order with a live count, then stops the workers and
 * deletes the demo's streams.
 *
 * Run: `deno task example:nats` (needs `nats-server -js` on
 * 127.0.0.1:4222, or `NATS_URL`).
 *
 * @module
 */

import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";

const ORDERS = 40;
const servers = process.env.NATS_URL ?? "127.0.0.1:4222";
const id = crypto.randomUUID().slice(0, 8);
const env = {
  ...process.env,
  NATS_URL: servers,
  NATS_STREAM: `DEMO_${id}`,
  NATS_PREFIX: `demo_${id}`,
};

function start(file: string, args: string[]): ChildProcess {
  const path = fileURLToPath(new URL(file, import.meta.url));
  const argv = process.versions.bun !== undefined
    ? [path, ...args]
    : ["run", "-A", path, ...args];
  return spawn(process.execPath, argv, {
    env,
    stdio: ["ignore", "pipe", "inherit"],
  });
}

function lines(child: ChildProcess, onLine: (line: string) => void): void {
  createInterface({ input: child.stdout! }).on("line", onLine);
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode);
    else child.once("exit", (code) => resolve(code));
  });
}

const handled = new Map<number, string>();
const perWorker = new Map<string, number>();
const allHandled = Promise.withResolvers<void>();
const workers: ChildProcess[] = [];
const ready: Promise<void>[] = [];
for (const name of ["worker-1", "worker-2"]) {
  const child = start("./nats_worker.ts", [name]);
  const isReady = Promise.withResolvers<void>();
  exited(child).then((code) => {
    if (code !== 0) isReady.reject(new Error(`${name} exited with ${code}`));
  });
  lines(child, (line) => {
    if (line === `${name}: ready`) isReady.resolve();
    const match = /^(\S+): handled order (\d+) \(attempt (\d+)\)$/.exec(line);
    if (match === null) {
      console.log(`  ${line}`);
      return;
    }
    const [, worker, order, attempt] = match;
    handled.set(Number(order), worker!);
    perWorker.set(worker!, (perWorker.get(worker!) ?? 0) + 1);
    const counts = [...perWorker].map(([w, n]) => `${w} ${n}`).join(", ");
    console.log(
      `${worker} handled order ${order!.padStart(2)} (attempt ${attempt})` +
        `   [${handled.size}/${ORDERS} handled: ${counts}]`,
    );
    if (handled.size === ORDERS) allHandled.resolve();
  });
  workers.push(child);
  ready.push(isReady.promise);
}

let failed = false;
try {
  await Promise.all(ready);
  console.log("both workers ready; starting the producer\n");
  const producer = start("./nats_producer.ts", [String(ORDERS)]);
  lines(producer, (line) => {
    const order = /emitted order (\d+) /.exec(line)?.[1];
    if (order === undefined || Number(order) % 10 === 0) {
      console.log(`  ${line}`);
    }
  });
  const code = await exited(producer);
  if (code !== 0) throw new Error(`the producer exited with ${code}`);
  console.log(`  producer: emitted ${ORDERS} orders and exited\n`);
  const timer = setTimeout(
    () => allHandled.reject(new Error("the demo timed out after 60 s")),
    60_000,
  );
  await allHandled.promise.finally(() => clearTimeout(timer));
  console.log(
    `\nall ${ORDERS} orders handled: ${
      [...perWorker].map(([w, n]) => `${w} ${n}`).join(", ")
    }`,
  );
} catch (error) {
  failed = true;
  console.error(`demo failed: ${(error as Error).message}`);
} finally {
  for (const child of workers) child.kill("SIGTERM");
  await Promise.all(workers.map(exited));
  const nc = await connect({ servers }).catch(() => undefined);
  if (nc !== undefined) {
    const jsm = await jetstreamManager(nc);
    for (const name of [env.NATS_STREAM, `${env.NATS_STREAM}_DLQ`]) {
      await jsm.streams.delete(name).catch(() => false);
    }
    await nc.close();
  }
}
process.exit(failed ? 1 : 0);
