// Copyright 2026 the @eventbus/core authors. MIT license.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
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
