// Copyright 2026 the @eventbus/core authors. MIT license.
import assert from "node:assert/strict";
import { test } from "node:test";
import { fnv1a } from "../src/_hash.ts";
import {
  type BackendArguments,
  checkBackendOptions,
  checkClientConfig,
  checkHandlers,
  checkInteger,
  checkNumber,
  quoteList,
} from "../src/_options.ts";

const ARGUMENTS: BackendArguments = {
  broker: "Example",
  connect: "ExampleBackend.connect",
  config: "{ url }",
  setting: "an example client setting",
  client: "new Client()",
  options: new Set(["prefix", "concurrency"]),
  settings: new Set(["url", "timeout"]),
};

test("quoteList() quotes names for messages", () => {
  assert.equal(quoteList(["topic", "concurrency"]), '"topic", "concurrency"');
});

test("checkClientConfig() names the second argument for backend options among the client settings", () => {
  checkClientConfig({ url: "x" }, ARGUMENTS);
  checkClientConfig("amqp://a URL", ARGUMENTS);
  assert.throws(
    () => checkClientConfig({ url: "x", prefix: "p" }, ARGUMENTS),
    new TypeError(
      'Cannot connect the Example backend: "prefix" is a backend option, not an example client setting, pass it in the second argument: ExampleBackend.connect({ url }, { prefix })',
    ),
  );
  assert.throws(
    () => checkClientConfig({ prefix: "p", concurrency: 2 }, ARGUMENTS),
    /"prefix", "concurrency" are backend options, not example client settings, pass them in the second argument/,
  );
});

test("checkBackendOptions() names the first argument for client settings and lists the options for unknown keys", () => {
  checkBackendOptions({ prefix: "p" }, ARGUMENTS);
  assert.throws(
    () => checkBackendOptions({ url: "x" }, ARGUMENTS),
    new TypeError(
      'Cannot create the Example backend: "url" is an example client setting, not a backend option, pass it in the first argument: ExampleBackend.connect({ url }, options), or to new Client()',
    ),
  );
  assert.throws(
    () => checkBackendOptions({ prefx: "p" }, ARGUMENTS),
    new TypeError(
      'Cannot create the Example backend: unknown option "prefx", use one of prefix, concurrency; example client settings go in the first argument of ExampleBackend.connect() or to new Client()',
    ),
  );
  assert.throws(() => checkBackendOptions(null, ARGUMENTS), TypeError);
});

test("checkInteger() and checkNumber() reject values out of range with RangeError", () => {
  checkInteger(ARGUMENTS, "concurrency", 1);
  checkInteger(ARGUMENTS, "maxLen", Infinity, { infinity: true });
  assert.throws(
    () => checkInteger(ARGUMENTS, "concurrency", 0),
    new RangeError(
      "Cannot create the Example backend: concurrency must be an integer of at least 1, got 0",
    ),
  );
  assert.throws(
    () => checkInteger(ARGUMENTS, "wait", 21, { min: 0, max: 20 }),
    /wait must be an integer from 0 to 20, got 21/,
  );
  assert.throws(() => checkInteger(ARGUMENTS, "n", 1.5), RangeError);
  assert.throws(() => checkInteger(ARGUMENTS, "n", Infinity), RangeError);
  checkNumber(ARGUMENTS, "interval", 0.5);
  assert.throws(() => checkNumber(ARGUMENTS, "interval", -1), RangeError);
  assert.throws(() => checkNumber(ARGUMENTS, "interval", NaN), RangeError);
});

test("checkHandlers() copies valid handler names without repeats and rejects bad shapes with TypeError", () => {
  assert.deepEqual(
    checkHandlers(ARGUMENTS, { "order.placed": ["ship", "ship", "bill"] }),
    new Map([["order.placed", ["ship", "bill"]]]),
  );
  assert.throws(() => checkHandlers(ARGUMENTS, { "user.*": ["a"] }), TypeError);
  assert.throws(() => checkHandlers(ARGUMENTS, { "a.b": [""] }), TypeError);
  assert.throws(
    () => checkHandlers(ARGUMENTS, [] as unknown as Record<string, string[]>),
    TypeError,
  );
});

test("fnv1a() is the 32-bit FNV-1a hash as 8 hex digits", () => {
  assert.equal(fnv1a(""), "811c9dc5");
  assert.equal(fnv1a("a"), "e40c292c");
  assert.equal(fnv1a("foobar"), "bf9cf968");
});
