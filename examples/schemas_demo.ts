// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * Validated events: one set of zod schemas gives the types and the runtime
 * checks. A producer's invalid emit is rejected before anything is
 * published; a payload from an old producer without schemas reaches the
 * worker over NATS JetStream and is dead-lettered there (reason
 * `invalid-data`) without running the handler.
 *
 * Run: `deno task example:schemas` (needs `nats-server -js` on
 * 127.0.0.1:4222, or `NATS_URL`).
 *
 * @module
 */

import process from "node:process";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { z } from "zod";
import {
  type DeadLetterError,
  EventBus,
  EventValidationError,
} from "@eventbus/core";
import { JetStreamBackend } from "@eventbus/nats";

const servers = process.env.NATS_URL ?? "127.0.0.1:4222";
const id = crypto.randomUUID().slice(0, 8);
const nats = { stream: `SCHEMAS_${id}`, subjectPrefix: `schemas_${id}` };

// One declaration: the types and the checks.
const schemas = {
  "user.signup": z.object({
    id: z.string(),
    email: z.string().email(),
    at: z.coerce.date(), // a string or number on the wire, a Date in handlers
  }),
};

const deadLetter = Promise.withResolvers<DeadLetterError>();
const welcomed = Promise.withResolvers<Date>();

const worker = new EventBus({
  backend: await JetStreamBackend.connect({ servers }, nats),
  schemas,
  onError: (error) => deadLetter.resolve(error as DeadLetterError),
});
worker.subscribe("user.signup", (event) => {
  welcomed.resolve(event.data.at); // a Date: the schema's output
}, { async: true, name: "welcome-mail" });
await worker.listen();

const producer = new EventBus({
  backend: await JetStreamBackend.connect({ servers }, nats),
  schemas,
});
try {
  await producer.emit("user.signup", { id: "u1", email: "nope", at: 0 });
} catch (error) {
  if (!(error instanceof EventValidationError)) throw error;
  console.log(`emit rejected, nothing published: ${error.message}`);
}
await producer.emit("user.signup", {
  id: "u2",
  email: "ada@example.com",
  at: "2026-11-30T09:00:00Z",
});
const at = await welcomed.promise;
console.log(`welcome mail for u2, signed up at ${at.toISOString()} (a Date)`);

// An old producer without schemas (or another service) sends a bad payload.
const legacy = new EventBus<{ "user.signup": unknown }>({
  backend: await JetStreamBackend.connect({ servers }, nats),
});
await legacy.emit("user.signup", { id: 3, mail: "ada@example.com" });
const dead = await deadLetter.promise;
console.log(
  `dead-lettered after ${dead.attempts} try, reason "${dead.reason}", handler not run: ${
    (dead.cause as Error).message
  }`,
);

await Promise.all([worker, producer, legacy].map((bus) => bus.close()));
const nc = await connect({ servers });
const jsm = await jetstreamManager(nc);
for (const stream of [nats.stream, `${nats.stream}_DLQ`]) {
  await jsm.streams.delete(stream).catch(() => false);
}
await nc.close();
