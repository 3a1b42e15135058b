// Copyright 2026 the @eventbus/core authors. MIT license.
// The built-in backends, opened from command-line flags through each
// backend's connect(). Each module is imported when it is opened, so the CLI
// loads one broker client, not five.

import type { AsyncBackend } from "@eventbus/core";
import type { CliFlags } from "./_args.ts";

/**
 * Opens a backend from the command line's flags.
 *
 * @param flags The parsed flags; each backend reads its own.
 * @returns The open backend; the CLI closes it when done.
 *
 * @example Registering a backend under `--backend pool`
 * ```ts
 * import { type OpenBackend, runCli } from "@eventbus/cli";
 * import { WorkerPool } from "@eventbus/core";
 *
 * const pool: OpenBackend = () => Promise.resolve(new WorkerPool());
 * const code = await runCli(["count", "--backend", "pool"], {
 *   backends: { pool },
 *   stdout: () => {},
 *   stderr: () => {},
 * });
 * console.assert(code === 0 || code === 2);
 * ```
 */
export type OpenBackend = (flags: CliFlags) => Promise<AsyncBackend>;

/** The default address of each built-in backend, for messages. */
export const ADDRESS_FLAGS: Readonly<
  Record<string, { flag: string; value: (flags: CliFlags) => string }>
> = {
  nats: {
    flag: "--servers",
    value: (flags) => flags.servers.join(",") || "127.0.0.1:4222",
  },
  redis: { flag: "--url", value: (flags) => flags.url ?? REDIS_URL },
  rabbitmq: { flag: "--url", value: (flags) => flags.url ?? RABBITMQ_URL },
  kafka: {
    flag: "--brokers",
    value: (flags) => flags.brokers.join(",") || "127.0.0.1:9092",
  },
  sqs: {
    flag: "--endpoint",
    value: (flags) => flags.endpoint ?? "the AWS default",
  },
};

const REDIS_URL = "redis://127.0.0.1:6379";
const RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672";

/** The five broker backends of this repository, by `--backend` name. */
export const BUILT_IN_BACKENDS: Readonly<Record<string, OpenBackend>> = {
  nats: openNats,
  redis: openRedis,
  rabbitmq: openRabbitMq,
  kafka: openKafka,
  sqs: openSqs,
};

async function openNats(flags: CliFlags): Promise<AsyncBackend> {
  const { JetStreamBackend } = await import("@eventbus/nats");
  return await JetStreamBackend.connect(
    {
      servers: flags.servers.length > 0
        ? [...flags.servers]
        : ["127.0.0.1:4222"],
    },
    flags.stream === undefined ? {} : { stream: flags.stream },
  );
}

async function openRedis(flags: CliFlags): Promise<AsyncBackend> {
  const { RedisStreamsBackend } = await import("@eventbus/redis");
  return await RedisStreamsBackend.connect(
    { url: flags.url ?? REDIS_URL },
    flags.prefix === undefined ? {} : { prefix: flags.prefix },
  );
}

async function openRabbitMq(flags: CliFlags): Promise<AsyncBackend> {
  const { RabbitMqBackend } = await import("@eventbus/rabbitmq");
  return await RabbitMqBackend.connect(
    flags.url ?? RABBITMQ_URL,
    flags.exchange === undefined ? {} : { exchange: flags.exchange },
  );
}

async function openKafka(flags: CliFlags): Promise<AsyncBackend> {
  const { KafkaBackend } = await import("@eventbus/kafka");
  return KafkaBackend.connect(
    {
      brokers: flags.brokers.length > 0
        ? [...flags.brokers]
        : ["127.0.0.1:9092"],
    },
    flags.topic === undefined ? {} : { topic: flags.topic },
  );
}

async function openSqs(flags: CliFlags): Promise<AsyncBackend> {
  const { SqsBackend } = await import("@eventbus/sqs");
  return SqsBackend.connect(
    {
      ...(flags.endpoint === undefined ? {} : { endpoint: flags.endpoint }),
      ...(flags.region === undefined ? {} : { region: flags.region }),
    },
    flags.queuePrefix === undefined ? {} : { queuePrefix: flags.queuePrefix },
  );
}
