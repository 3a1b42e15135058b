// Copyright 2026 the @eventbus/core authors. MIT license.
// Type-level contract, verified by `deno check` (the @ts-expect-error lines
// fail the check if a wrong call ever compiles). Bun and Node (through tsx)
// do not type-check, so the lines live in a function that is never called;
// one runtime test of the valid calls makes every runner find a test here.
import assert from "node:assert/strict";
import { test } from "node:test";
import * as v from "valibot";
import { z } from "zod";
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

const zodSchemas = {
  "user.signup": z.object({
    id: z.string(),
    email: z.string().email(),
    at: z.coerce.date(),
  }),
  "cache.cleared": undefined,
};

const valibotSchemas = {
  "order.placed": v.object({
    total: v.pipe(v.string(), v.transform(Number)),
  }),
};

// deno-lint-ignore no-unused-vars
function neverCalledWithSchemas(): void {
  const bus = new EventBus({ schemas: zodSchemas });
  // @ts-expect-error wrong payload: id must be a string
  bus.emit("user.signup", { id: 1, email: "a@b.c", at: 0 });
  // @ts-expect-error missing field email
  bus.emit("user.signup", { id: "1", at: 0 });
  // @ts-expect-error unknown event type
  bus.emit("user.signin", { id: "1", email: "a@b.c", at: 0 });
  // @ts-expect-error unknown event type
  bus.subscribe("user.signin", () => {});
  // A coerced date accepts a string, a number or a Date at emit...
  bus.emit("user.signup", { id: "1", email: "a@b.c", at: "2026-01-01" });
  bus.emit("user.signup", { id: "1", email: "a@b.c", at: 0 });
  bus.emit("user.signup", { id: "1", email: "a@b.c", at: new Date() });
  bus.emitSync("cache.cleared", undefined);
  // ...and is a Date in the handler.
  bus.subscribe("user.signup", (event) => {
    const at: Date = event.data.at;
    // @ts-expect-error at is a Date, not a string
    const text: string = event.data.at;
    void at, text;
  });

  const shop = new EventBus({ schemas: valibotSchemas });
  shop.emit("order.placed", { total: "3.50" }); // input: a string
  // @ts-expect-error input total is a string
  shop.emit("order.placed", { total: 3.5 });
  shop.subscribe("order.placed", (event) => {
    const total: number = event.data.total; // output: a number
    // @ts-expect-error output total is a number
    const text: string = event.data.total;
    void total, text;
  });
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

test("EventBus with zod schemas infers its event map and hands handlers the output", async () => {
  const bus = new EventBus({ schemas: zodSchemas });
  const got: Date[] = [];
  bus.subscribe("user.signup", (event) => void got.push(event.data.at));
  const sent = await bus.emit("user.signup", {
    id: "u1",
    email: "ada@example.com",
    at: 0,
  });
  assert.equal(sent.data.at, 0, "emit resolves with the input form");
  assert.ok(got[0] instanceof Date && got[0].getTime() === 0);
  await bus.close();
});
