// Copyright 2026 the @eventbus/core authors. MIT license.
// SQS for tests: the fauxqs emulator (npm, pinned 1.9.2) started in-process
// on 127.0.0.1 with an OS-chosen port, and SqsBackend instances pointed at
// it with static fake credentials.

import {
  DeleteQueueCommand,
  ListQueuesCommand,
  SQSClient,
} from "@aws-sdk/client-sqs";
import { SqsBackend, type SqsBackendOptions } from "../backends/sqs.ts";

/** Static fake settings: fauxqs checks nothing, the SDK needs something. */
export const REGION = "us-east-1";
const CREDENTIALS = { accessKeyId: "test", secretAccessKey: "test" };

/** A running emulator. */
export interface TestSqs {
  /** The emulator's URL. */
  readonly endpoint: string;
  /** What the tests ran against, for logs. */
  readonly description: string;
  /** A new SQS client on the emulator (the caller destroys it). */
  client(): SQSClient;
  /** A new backend that owns its client. */
  backend(options: SqsBackendOptions): SqsBackend;
  /** Deletes every queue whose name starts with `prefix`. */
  deleteQueues(prefix: string): Promise<void>;
  /** Stops the emulator. */
  stop(): Promise<void>;
}

/**
 * Starts fauxqs. Resolves `{ sqs }`, or `{ reason }` saying why it could not
 * start (for brokerMissing()).
 */
export async function startSqs(): Promise<
  { sqs: TestSqs; reason?: undefined } | { sqs?: undefined; reason: string }
> {
  let app: {
    listen(options: { port: number; host: string }): Promise<string>;
    close(): Promise<void>;
    server: { address(): unknown };
  };
  try {
    const { buildApp } = await import("fauxqs");
    app = buildApp({ logger: false, defaultRegion: REGION }) as never;
    await app.listen({ port: 0, host: "127.0.0.1" });
  } catch (error) {
    return {
      reason: `the fauxqs SQS emulator did not start (${
        (error as Error).message
      }); install it with: npm install fauxqs@1.9.2`,
    };
  }
  const { port } = app.server.address() as { port: number };
  const endpoint = `http://127.0.0.1:${port}`;
  const config = {
    region: REGION,
    endpoint,
    credentials: CREDENTIALS,
    maxAttempts: 2,
  };
  return {
    sqs: {
      endpoint,
      description: `fauxqs 1.9.2 at ${endpoint}`,
      client: () => new SQSClient(config),
      backend: (options) => SqsBackend.connect(config, options),
      async deleteQueues(prefix) {
        const client = new SQSClient(config);
        try {
          const { QueueUrls = [] } = await client.send(
            new ListQueuesCommand({ QueueNamePrefix: prefix }),
          );
          await Promise.all(
            QueueUrls.map((QueueUrl) =>
              client.send(new DeleteQueueCommand({ QueueUrl }))
            ),
          );
        } finally {
          client.destroy();
        }
      },
      stop: () => app.close(),
    },
  };
}
