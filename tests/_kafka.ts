// Copyright 2026 the @eventbus/core authors. MIT license.
// Kafka for tests: a real cluster when KAFKA_BROKERS is set (comma-separated
// host:port), otherwise librdkafka's mock cluster started on 127.0.0.1 by
// tests/_kafka_mock.py (Debian package librdkafka1). Say which one a test
// reached with `kafka.description`; never claim more.

import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import process from "node:process";
import { Kafka, logLevel } from "kafkajs";
import { KafkaBackend, type KafkaBackendOptions } from "../backends/kafka.ts";
import { reachable } from "./_brokers.ts";

const LAUNCHER = fileURLToPath(new URL("./_kafka_mock.py", import.meta.url));
const START_TIMEOUT = 10_000;

/** A Kafka cluster a test file can use. */
export interface TestKafka {
  /** Bootstrap servers. */
  readonly brokers: string[];
  /** True for librdkafka's mock cluster, false for a real cluster. */
  readonly mock: boolean;
  /** What the tests ran against, for logs and test names. */
  readonly description: string;
  /** Creates a topic (and waits until it exists). */
  createTopic(topic: string, partitions: number): Promise<void>;
  /** Deletes topics and consumer groups (real clusters; the mock forgets at stop). */
  cleanup(topics: string[], groups: string[]): Promise<void>;
  /** Backend options that fit this cluster (idempotence, topic creation, fast heartbeats). */
  backendOptions(topic: string): KafkaBackendOptions;
  /** A new backend on this cluster. */
  backend(options: KafkaBackendOptions): KafkaBackend;
  /** Stops the mock cluster; a real cluster is left alone. */
  stop(): Promise<void>;
}

/**
 * Starts (or finds) Kafka. Resolves `{ kafka }`, or `{ reason }` saying why
 * none is available (for brokerMissing()).
 */
export async function startKafka(): Promise<
  { kafka: TestKafka; reason?: undefined } | {
    kafka?: undefined;
    reason: string;
  }
> {
  const env = process.env.KAFKA_BROKERS;
  if (env !== undefined && env.trim() !== "") {
    const brokers = env.split(",").map((b) => b.trim()).filter(Boolean);
    const [host = "", port = ""] = splitHostPort(brokers[0]!);
    if (!await reachable(host, Number(port), 2000)) {
      return { reason: `KAFKA_BROKERS=${env} is not reachable` };
    }
    return { kafka: realCluster(brokers) };
  }
  try {
    return { kafka: await mockCluster() };
  } catch (error) {
    return {
      reason: `librdkafka mock cluster did not start (${
        (error as Error).message
      }); install it with: apt-get install -y librdkafka1`,
    };
  }
}

const FAST = {
  heartbeatInterval: 300,
  sessionTimeout: 6_000,
  fetchMaxWait: 100,
} as const;

function client(brokers: string[]): Kafka {
  return new Kafka({
    brokers,
    clientId: "eventbus-tests",
    logLevel: logLevel.NOTHING,
    retry: { retries: 3, initialRetryTime: 100 },
  });
}

function realCluster(brokers: string[]): TestKafka {
  return {
    brokers,
    mock: false,
    description: `Kafka at ${brokers.join(",")}`,
    async createTopic(topic, partitions) {
      const admin = client(brokers).admin();
      await admin.connect();
      try {
        await admin.createTopics({
          waitForLeaders: true,
          topics: [{ topic, numPartitions: partitions }],
        });
      } finally {
        await admin.disconnect();
      }
    },
    async cleanup(topics, groups) {
      const admin = client(brokers).admin();
      await admin.connect();
      try {
        await admin.deleteGroups(groups).catch(() => {});
        await admin.deleteTopics({ topics }).catch(() => {});
      } finally {
        await admin.disconnect();
      }
    },
    backendOptions(topic) {
      return {
        topic,
        idempotent: true,
        createTopics: { partitions: 4 },
        ...FAST,
      };
    },
    backend(options) {
      return new KafkaBackend(client(brokers), options);
    },
    stop: () => Promise.resolve(),
  };
}

async function mockCluster(): Promise<TestKafka> {
  const child = spawn("python3", [LAUNCHER, "--brokers", "3"], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  const lines = lineReader(child);
  let stderr = "";
  child.stderr!.on("data", (chunk) => stderr += String(chunk));
  const first = await Promise.race([
    lines.next(),
    new Promise<string>((_, reject) => {
      child.once("error", reject);
      child.once(
        "exit",
        (code) => reject(new Error(`exited with ${code}: ${stderr.trim()}`)),
      );
    }),
    timeout(START_TIMEOUT, "no bootstrap line"),
  ]).catch((error) => {
    child.kill();
    throw error;
  });
  if (!first.startsWith("bootstrap=")) {
    child.kill();
    throw new Error(`unexpected output: ${first}`);
  }
  const brokers = first.slice("bootstrap=".length).split(",");
  // Never keep the test process alive; the launcher exits when stdin closes.
  // The pipes are referenced only while a command waits for its answer.
  const streams = [child.stdin, child.stdout, child.stderr] as unknown as {
    ref?: () => void;
    unref?: () => void;
  }[];
  const hold = (on: boolean) => {
    for (const stream of streams) on ? stream.ref?.() : stream.unref?.();
    on ? child.ref() : child.unref();
  };
  hold(false);
  let commands = Promise.resolve();
  return {
    brokers,
    mock: true,
    description: `librdkafka mock cluster (3 brokers) at ${brokers.join(",")}`,
    createTopic(topic, partitions) {
      const run = commands.then(async () => {
        hold(true);
        child.stdin!.write(`topic ${topic} ${partitions}\n`);
        const answer = await Promise.race([
          lines.next(),
          timeout(START_TIMEOUT, `no answer creating ${topic}`),
        ]).finally(() => hold(false));
        if (answer !== `ok ${topic}`) {
          throw new Error(`Cannot create topic ${topic}: ${answer}`);
        }
      });
      commands = run.catch(() => {});
      return run;
    },
    cleanup: () => Promise.resolve(),
    backendOptions(topic) {
      return { topic, idempotent: false, createTopics: false, ...FAST };
    },
    backend(options) {
      return new KafkaBackend(client(brokers), options);
    },
    stop() {
      if (child.exitCode !== null) return Promise.resolve();
      const exited = new Promise<void>((resolve) =>
        child.once("exit", () => resolve())
      );
      hold(true);
      child.stdin!.end();
      child.kill("SIGTERM");
      return exited;
    },
  };
}

function lineReader(child: ChildProcess): { next(): Promise<string> } {
  const ready: string[] = [];
  const waiting: ((line: string) => void)[] = [];
  let buffer = "";
  child.stdout!.on("data", (chunk) => {
    buffer += String(chunk);
    let index: number;
    while ((index = buffer.indexOf("\n")) !== -1) {
      const line = buffer.slice(0, index).trim();
      buffer = buffer.slice(index + 1);
      const waiter = waiting.shift();
      if (waiter !== undefined) waiter(line);
      else ready.push(line);
    }
  });
  return {
    next() {
      const line = ready.shift();
      if (line !== undefined) return Promise.resolve(line);
      return new Promise((resolve) => waiting.push(resolve));
    },
  };
}

function timeout(ms: number, what: string): Promise<never> {
  return new Promise((_, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${what} after ${ms} ms`)),
      ms,
    );
    (timer as unknown as { unref?: () => void }).unref?.();
  });
}

function splitHostPort(address: string): [string, string] {
  const index = address.lastIndexOf(":");
  return [address.slice(0, index), address.slice(index + 1)];
}
