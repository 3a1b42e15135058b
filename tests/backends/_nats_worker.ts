// Copyright 2026 the @eventbus/core authors. MIT license.
// A worker process for the NATS fault tests. Arguments: server URL, stream,
// subject prefix, ack wait in ms, and mode: "hang" (handlers never finish,
// so the process can be killed mid-handling) or "ack" (handlers complete).
// Prints one JSON line per fact: {"ready":true}, {"start":id,"attempt":n},
// {"done":id}. Stops on SIGTERM.

import process from "node:process";
import { EventBus } from "../../mod.ts";
import { JetStreamBackend } from "../../backends/nats/mod.ts";

const [url, stream, subjectPrefix, ackWait, mode] = process.argv.slice(2);
if (mode !== "hang" && mode !== "ack") {
  console.error("usage: _nats_worker.ts url stream prefix ackWait hang|ack");
  process.exit(2);
}

const bus = new EventBus({
  backend: await JetStreamBackend.connect({ servers: url! }, {
    stream: stream!,
    subjectPrefix: subjectPrefix!,
    ackWait: Number(ackWait),
  }),
});
bus.subscribe("job.run", async (event, ctx) => {
  console.log(JSON.stringify({ start: event.id, attempt: ctx.attempt }));
  if (mode === "hang") await new Promise(() => {});
  console.log(JSON.stringify({ done: event.id }));
}, { async: true, name: "shared-worker" });
await bus.listen();
console.log(JSON.stringify({ ready: true }));
process.once("SIGTERM", () => {
  bus.close({ timeout: 1000 }).finally(() => process.exit(0));
});
