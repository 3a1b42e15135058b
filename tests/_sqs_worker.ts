// Copyright 2026 the @eventbus/core authors. MIT license.
// A worker process for the SQS crash test (tests/backends/sqs_test.ts):
// consumes "crash.job" as handler "crashy", prints "started <id> <attempt>"
// and never finishes, so the test can kill it with SIGKILL mid-handler.
// Usage: <runtime> tests/_sqs_worker.ts <endpoint> <queuePrefix>

import process from "node:process";
import { EventBus } from "../mod.ts";
import { SqsBackend } from "../backends/sqs.ts";

const [endpoint = "", queuePrefix = ""] = process.argv.slice(2);
const bus = new EventBus({
  backend: SqsBackend.connect({
    endpoint,
    region: "us-east-1",
    credentials: { accessKeyId: "test", secretAccessKey: "test" },
  }, { queuePrefix, waitTimeSeconds: 1, visibilityTimeout: 2 }),
});
bus.subscribe("crash.job", async (event, ctx) => {
  process.stdout.write(`started ${event.id} ${ctx.attempt}\n`);
  await new Promise(() => {}); // the process dies here
}, { async: true, name: "crashy" });
await bus.listen();
process.stdout.write("ready\n");
