// Copyright 2026 the @eventbus/core authors. MIT license.
// Type-level contract, verified by `deno check` (the @ts-expect-error lines
// fail the check if a wrong call ever compiles). Bun does not type-check, so
// the lines live in a function that is never called; one runtime test of the
// valid calls makes every runner find a test here.
import assert from "node:assert/strict";
import { test } from "node:test";
import { type Event, EventBus } from "../mod.ts";

type AppEvents = {
  "user.signup": { id: string };
  "cache.cleared": undefined;
};

// deno-lint-ignore no-unused-vars
function neverCalled(bus: EventBus<AppEvents>): void {
  // @ts-expect-error wrong payload type
  bus.emit("user.signup", { id: 1 });
  // @ts-expect-error missing payload field
  bus.emit("user.signup", {});
  // @ts-expect-error unknown event name
  bus.emit("nope", { id: "1" });
  // @ts-expect-error unknown event name
  bus.emitSync("user.signp", { id: "1" });
  // @ts-expect-error unknown event name
  bus.subscribe("user.signin", () => {});
  bus.subscribe("user.signup", (event) => {
    // @ts-expect-error data.id is a string
    const n: number = event.data.id;
    void n;
  });
  // @ts-expect-error an interface event map is not a Record<string, unknown>
  new EventBus<EventsInterface>();
}

interface EventsInterface {
  "a.b": { x: number };
}

test("EventBus typed emit, emitSync and subscribe accept the valid calls", async () => {
  const bus = new EventBus<AppEvents>();
  const got: Event<{ id: string }, "user.signup">[] = [];
  bus.subscribe("user.signup", (event) => void got.push(event));
  const sent = await bus.emit("user.signup", { id: "u1" });
  await bus.emitSync("cache.cleared", undefined);
  const id: string = sent.data.id;
  assert.equal(id, "u1");
  assert.equal(got.length, 1);
  assert.equal(got[0]!.type, "user.signup");
  await bus.close();
});
