// Copyright 2026 the @eventbus/core authors. MIT license.
import assert from "node:assert/strict";
import { test } from "node:test";
import { EventBus, EventBusClosedError, SerializationError } from "../mod.ts";
import { RecordingBackend } from "../src/testing.ts";

test("RecordingBackend records every emit, runs no async handler, and checks JSON", async () => {
  const backend = new RecordingBackend();
  const bus = new EventBus<{ "a.b": { n: number } }>({ backend });
  let ran = 0;
  bus.subscribe("a.b", () => void ran++, { async: true, name: "worker" });
  await bus.listen();
  for (let n = 0; n < 3; n++) await bus.emit("a.b", { n });
  // deno-lint-ignore no-explicit-any
  await assert.rejects(bus.emit("a.b", { n: 1n } as any), SerializationError);
  assert.deepEqual(backend.published.map((e) => e.data), [{ n: 0 }, { n: 1 }, {
    n: 2,
  }]);
  assert.deepEqual(backend.consumers.map((c) => c.name), ["worker"]);
  assert.equal(ran, 0);
  await bus.close();
  await assert.rejects(bus.emit("a.b", { n: 9 }), EventBusClosedError);
  assert.equal(backend.published.length, 3);
});

test("RecordingBackend.clear() forgets what was recorded", async () => {
  const backend = new RecordingBackend();
  const bus = new EventBus({ backend });
  await bus.emit("x", 1);
  backend.clear();
  assert.equal(backend.published.length, 0);
  await bus.close();
});
