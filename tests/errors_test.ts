// Copyright 2026 the @eventbus/core authors. MIT license.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  BackendError,
  createEvent,
  DeadLetterError,
  describeError,
  EventBusClosedError,
  EventValidationError,
  HandlerError,
  HandlerTimeoutError,
  InvalidEventTypeError,
  NonRetriableError,
  QueueFullError,
  SerializationError,
  UnroutableEventError,
} from "../mod.ts";

const event = createEvent("user.signup", { id: "u1" });

test("every error class has a stable name equal to its class name", () => {
  const errors: [Error, string][] = [
    [new InvalidEventTypeError("a b"), "InvalidEventTypeError"],
    [new SerializationError("x"), "SerializationError"],
    [new QueueFullError("a", 1), "QueueFullError"],
    [new EventBusClosedError(), "EventBusClosedError"],
    [new HandlerError(event, [new Error("x")]), "HandlerError"],
    [new HandlerTimeoutError("a", "h", 5), "HandlerTimeoutError"],
    [new DeadLetterError(event, "h", 3), "DeadLetterError"],
    [new BackendError("nats", "x"), "BackendError"],
    [
      new EventValidationError("a", "emit", [{ message: "x" }]),
      "EventValidationError",
    ],
    [new NonRetriableError("x"), "NonRetriableError"],
    [new UnroutableEventError("sqs", "a"), "UnroutableEventError"],
  ];
  for (const [error, name] of errors) {
    assert.equal(error.name, name);
    assert.equal(error.constructor.name, name);
    assert.ok(error instanceof Error);
  }
  assert.ok(new HandlerError(event, []) instanceof AggregateError);
});

test("error messages say what failed, the state and the fix, with typed fields", () => {
  const full = new QueueFullError("user.signup", 1000);
  assert.equal(
    full.message,
    'Cannot enqueue "user.signup": queue is full (1000 of 1000), raise queueSize or use overflow "wait"',
  );
  const cause = new Error("smtp down");
  const dead = new DeadLetterError(event, "send-mail", 3, { cause });
  assert.equal(dead.cause, cause);
  assert.equal(dead.attempts, 3);
  assert.equal(dead.event, event);
  assert.match(
    dead.message,
    /^Cannot deliver "user\.signup" .* failed 3 times, giving up: Error: smtp down/,
  );
  const invalid = new InvalidEventTypeError("user.*");
  assert.equal(invalid.eventType, "user.*");
  assert.match(invalid.message, /^Cannot use event type "user\.\*": /);
  const many = new HandlerError(event, [new Error("a"), "b"]);
  assert.deepEqual(many.errors.length, 2);
  assert.match(many.message, /2 handlers failed: Error: a; "b"/);
  const unroutable = new UnroutableEventError("rabbitmq", "user.signup", {
    searched: 'exchange "events"',
    cause,
  });
  assert.ok(unroutable instanceof BackendError);
  assert.equal(unroutable.backend, "rabbitmq");
  assert.equal(unroutable.eventType, "user.signup");
  assert.equal(unroutable.searched, 'exchange "events"');
  assert.equal(unroutable.cause, cause);
  assert.equal(
    unroutable.message,
    'Cannot publish "user.signup": no handler queue exists for it (searched exchange "events"), so no handler would get it and nothing was stored; start a worker that subscribes to it first (its listen() creates the queue), or declare its handler names on the producer with the backend option handlers: { "user.signup": ["<handler name>"] }',
  );
});

test("describeError() describes errors, strings and other thrown values", () => {
  assert.equal(describeError(new RangeError("r")), "RangeError: r");
  assert.equal(describeError("s"), '"s"');
  assert.equal(describeError(42), "42");
  assert.equal(describeError(Object.create(null)), "[object Object]");
});
