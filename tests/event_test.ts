// Copyright 2026 the @eventbus/core authors. MIT license.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  assertEventType,
  assertJsonSafe,
  createEvent,
  decodeEvent,
  encodeEvent,
  InvalidEventTypeError,
  isValidEventType,
  SerializationError,
  uuidv7,
} from "../mod.ts";

test("isValidEventType() accepts dot-joined tokens of [A-Za-z0-9_-] only", () => {
  for (const ok of ["a", "user.signup", "A-b_c.9", "x.y.z"]) {
    assert.ok(isValidEventType(ok), ok);
  }
  for (
    const bad of [
      "",
      " ",
      "a b",
      "a.*",
      "a.>",
      ">",
      ".a",
      "a.",
      "a..b",
      "ä",
      1,
      null,
      undefined,
    ]
  ) {
    assert.ok(!isValidEventType(bad), String(bad));
  }
});

test("createEvent() builds a CloudEvents 1.0 envelope with a UUID v7 and RFC 3339 time", () => {
  const before = Date.now();
  const event = createEvent("user.signup", { id: "u1" }, {
    source: "auth",
    metadata: { traceparent: "00-a-b-01" },
  });
  assert.equal(event.specversion, "1.0");
  assert.equal(event.type, "user.signup");
  assert.equal(event.source, "auth");
  assert.deepEqual(event.data, { id: "u1" });
  assert.deepEqual(event.metadata, { traceparent: "00-a-b-01" });
  assert.match(
    event.id,
    /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
  );
  assert.match(event.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  const time = Date.parse(event.time);
  assert.ok(time >= before && time <= Date.now());
});

test("createEvent() rejects an invalid type, an empty id and bad metadata keys", () => {
  assert.throws(() => createEvent("a b", 1), InvalidEventTypeError);
  assert.throws(() => createEvent("a", 1, { id: "" }), TypeError);
  assert.throws(
    () => createEvent("a", 1, { metadata: { "Trace-Parent": "x" } }),
    TypeError,
  );
  assert.throws(
    () => createEvent("a", 1, { metadata: { id: "x" } }),
    TypeError,
  );
  assert.throws(
    () => createEvent("a", 1, { metadata: { n: 1 as unknown as string } }),
    TypeError,
  );
});

test("uuidv7() ids are unique and strictly increasing within a process", () => {
  const ids = Array.from({ length: 20_000 }, () => uuidv7());
  assert.equal(new Set(ids).size, ids.length);
  for (let i = 1; i < ids.length; i++) {
    assert.ok(ids[i - 1]! < ids[i]!, `${ids[i - 1]} < ${ids[i]}`);
  }
  const ms = parseInt(ids[0]!.replaceAll("-", "").slice(0, 12), 16);
  assert.ok(Math.abs(ms - Date.now()) < 60_000, "the timestamp is now");
});

test("assertJsonSafe() names the path of what JSON cannot carry", () => {
  const cycle: Record<string, unknown> = {};
  cycle.self = cycle;
  const cases: [unknown, string][] = [
    [{ user: { id: 1n } }, "data.user.id"],
    [{ list: [1, undefined] }, "data.list[1]"],
    [{ f: () => {} }, "data.f"],
    [{ s: Symbol("s") }, "data.s"],
    [{ n: NaN }, "data.n"],
    [{ n: Infinity }, "data.n"],
    [{ when: new Date() }, "data.when"],
    [{ map: new Map() }, "data.map"],
    [cycle, "data.self"],
    // deno-lint-ignore no-sparse-arrays
    [[1, , 3], "data[1]"],
  ];
  for (const [value, path] of cases) {
    assert.throws(
      () => assertJsonSafe(value),
      (error: unknown) =>
        error instanceof SerializationError && error.path === path,
      path,
    );
  }
  assertJsonSafe({
    a: [1, "x", true, null, { b: undefined }],
    c: Object.create(null),
  });
  assertJsonSafe(undefined);
});

test("assertJsonSafe() accepts a shared (non-cyclic) object twice", () => {
  const shared = { x: 1 };
  assertJsonSafe({ a: shared, b: shared });
});

test("encodeEvent() and decodeEvent() round-trip an event, metadata as extensions", () => {
  const event = createEvent("order.placed", { total: 3, items: ["a"] }, {
    metadata: { partitionkey: "k1" },
  });
  const json = encodeEvent(event);
  const wire = JSON.parse(json);
  assert.equal(wire.partitionkey, "k1");
  assert.equal(wire.datacontenttype, "application/json");
  assert.deepEqual(decodeEvent(json), event);
  assert.deepEqual(decodeEvent(new TextEncoder().encode(json)), event);
  const empty = createEvent("cache.cleared", undefined);
  assert.deepEqual(decodeEvent(encodeEvent(empty)), empty);
});

test("decodeEvent() rejects messages that are not ours with SerializationError", () => {
  const good = JSON.parse(encodeEvent(createEvent("a.b", 1)));
  const bad = [
    "not json",
    "[]",
    "null",
    JSON.stringify({ ...good, specversion: "0.3" }),
    JSON.stringify({ ...good, id: 5 }),
    JSON.stringify({ ...good, type: "a.*" }),
    JSON.stringify({ ...good, source: undefined }),
  ];
  for (const input of bad) {
    assert.throws(() => decodeEvent(input), SerializationError, input);
  }
});

test("isValidEventType() accepts at most 255 characters", () => {
  assert.ok(isValidEventType(`${"a".repeat(249)}.bcdef`));
  assert.ok(!isValidEventType(`${"a".repeat(250)}.bcdef`));
  assert.ok(!isValidEventType("a".repeat(4100)));
  assert.throws(
    () => assertEventType("a".repeat(4100)),
    (error: unknown) =>
      error instanceof InvalidEventTypeError &&
      /at most 255 characters/.test(error.message) &&
      error.message.length < 400,
  );
});

test("createEvent() takes ids of 1 to 256 characters without whitespace or control characters", () => {
  for (
    const id of ["", " a", "a ", "a\nb", "a\rb", "a\u2028b", "a\x00b", "a\x9fb"]
  ) {
    assert.throws(
      () => createEvent("a", 1, { id }),
      (error: unknown) =>
        error instanceof TypeError && /1 to 256 characters/.test(error.message),
      JSON.stringify(id),
    );
  }
  assert.throws(() => createEvent("a", 1, { id: "x".repeat(257) }), TypeError);
  assert.equal(createEvent("a", 1, { id: "x".repeat(256) }).id.length, 256);
  assert.equal(createEvent("a", 1, { id: "ünï/cödé:42" }).id, "ünï/cödé:42");
});

test("decodeEvent() rejects a wire id or type outside the bounds", () => {
  const wire = (patch: Record<string, unknown>) =>
    JSON.stringify({
      specversion: "1.0",
      id: "1",
      type: "a.b",
      source: "s",
      time: new Date().toISOString(),
      ...patch,
    });
  for (const patch of [{ id: "two words" }, { type: "a".repeat(256) }]) {
    assert.throws(() => decodeEvent(wire(patch)), SerializationError);
  }
  assert.equal(decodeEvent(wire({})).id, "1");
});

test("assertJsonSafe() walks 100 000 levels without a RangeError", () => {
  let value: unknown = [1];
  for (let i = 0; i < 100_000; i++) {
    value = i % 2 === 0 ? { k: value } : [value];
  }
  assertJsonSafe(value);
  let bad: unknown = { n: NaN };
  for (let i = 0; i < 100_000; i++) bad = [bad];
  assert.throws(
    () => assertJsonSafe(bad),
    (error: unknown) =>
      error instanceof SerializationError &&
      error.path === `data${"[0]".repeat(100_000)}.n`,
  );
  const cycle: unknown[] = [];
  let tip: unknown[] = cycle;
  for (let i = 0; i < 50_000; i++) tip.push(tip = []);
  tip.push(cycle);
  assert.throws(
    () => assertJsonSafe(cycle),
    (error: unknown) =>
      error instanceof SerializationError && /cycle/.test(error.message),
  );
});
