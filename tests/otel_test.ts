// Copyright 2026 the @eventbus/core authors. MIT license.
// OpenTelemetry instrumentation (src/otel.ts and the bus's hooks) on the
// worker pool, with the in-memory SDK of tests/_otel.ts; one case on the
// shared NATS reads the dead-letter copy off the wire. The cross-backend
// round trip is a case of tests/conformance/suite.ts.

import * as api from "@opentelemetry/api";
import { StackContextManager } from "@opentelemetry/sdk-trace";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import {
  type AsyncBackend,
  BackendError,
  DeadLetterError,
  type Deliver,
  type DeliveryResult,
  type Event,
  EventBus,
  type EventBusOptions,
  type Instrumentation,
} from "../mod.ts";
import { JetStreamBackend } from "@eventbus/nats";
import { otel } from "../src/otel.ts";
import { Admin, SHARED_NATS, uniqueNames } from "./fixtures/_nats.ts";
import { brokerMissing, reachable } from "./fixtures/_brokers.ts";
import { TestTelemetry, traceparentOf } from "./fixtures/_otel.ts";
import { Counter, MemoryLogger, withDeadline, work } from "./fixtures/_util.ts";

type Events = { "user.signup": { n: number } };

const { CONSUMER, INTERNAL, PRODUCER } = api.SpanKind;
const { ERROR, UNSET } = api.SpanStatusCode;
const FAST = { initial: 1, max: 5 };
const CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN = "b7ad6b7169203331";

/** A bus on a fresh worker pool with quiet logs and the given options. */
function poolBus(options: EventBusOptions = {}): EventBus<Events> {
  return new EventBus<Events>({ logger: new MemoryLogger(), ...options });
}

/** A remote backend that hands deliveries to the test, which drives them. */
class ManualBackend implements AsyncBackend {
  readonly name = "manual";
  readonly remote = true;
  deliver: Deliver | undefined;
  publish(): Promise<void> {
    return Promise.resolve();
  }
  consume(deliver: Deliver): Promise<void> {
    this.deliver = deliver;
    return Promise.resolve();
  }
  close(): Promise<{ completed: number; abandoned: Event[] }> {
    return Promise.resolve({ completed: 0, abandoned: [] });
  }
}

/** Sums the values of counter points by one attribute. */
function sumBy(
  points: { attributes: api.Attributes; value: unknown }[],
  key: string,
): Record<string, number> {
  const sums: Record<string, number> = {};
  for (const { attributes, value } of points) {
    const at = String(attributes[key]);
    sums[at] = (sums[at] ?? 0) + (value as number);
  }
  return sums;
}

describe("otel() on the worker pool", () => {
  it("gives one emit and one delivery one PRODUCER send and one CONSUMER process span in one trace, linked and child", async () => {
    await using sdk = new TestTelemetry();
    const bus = poolBus({ instrumentation: sdk.instrumentation() });
    const done = new Counter();
    const seen: Event[] = [];
    bus.subscribe("user.signup", (event) => {
      seen.push(event);
      done.add();
    }, { async: true, name: "welcome" });
    const event = await bus.emit("user.signup", { n: 1 });
    await done.reach(1);
    await bus.close();
    const sends = await sdk.spansNamed("send user.signup", PRODUCER);
    const processes = await sdk.spansNamed("process user.signup", CONSUMER);
    assert.equal(sends.length, 1);
    assert.equal(processes.length, 1);
    assert.equal((await sdk.spans()).length, 2);
    const [send] = sends;
    const [process] = processes;
    assert.equal(event.metadata.traceparent, traceparentOf(send!));
    assert.deepEqual(seen, [event]);
    assert.equal(process!.spanContext().traceId, send!.spanContext().traceId);
    assert.equal(
      process!.parentSpanContext?.spanId,
      send!.spanContext().spanId,
    );
    assert.deepEqual(
      process!.links.map((link) => link.context.spanId),
      [send!.spanContext().spanId],
    );
    assert.deepEqual(send!.attributes, {
      "messaging.system": "worker-pool",
      "messaging.operation.name": "send",
      "messaging.operation.type": "send",
      "messaging.destination.name": "user.signup",
      "messaging.message.id": event.id,
    });
    assert.deepEqual(process!.attributes, {
      "messaging.system": "worker-pool",
      "messaging.operation.name": "process",
      "messaging.operation.type": "process",
      "messaging.destination.name": "user.signup",
      "messaging.consumer.group.name": "welcome",
      "messaging.message.id": event.id,
      "eventbus.delivery.attempt": 1,
    });
    assert.equal(send!.status.code, UNSET);
    assert.equal(process!.status.code, UNSET);
  });

  it("gives each try its own CONSUMER span, failed ones ERROR, all linked to the unchanged creation context", async () => {
    await using sdk = new TestTelemetry();
    const bus = poolBus({
      instrumentation: sdk.instrumentation(),
      retry: { attempts: 3, backoff: FAST },
    });
    const done = new Counter();
    const traceparents: string[] = [];
    bus.subscribe("user.signup", (event, ctx) => {
      traceparents.push(event.metadata.traceparent ?? "none");
      if (ctx.attempt < 3) throw new RangeError(`try ${ctx.attempt}`);
      done.add();
    }, { async: true, name: "flaky" });
    const event = await bus.emit("user.signup", { n: 1 });
    await done.reach(1);
    await bus.close();
    const [send] = await sdk.spansNamed("send user.signup", PRODUCER);
    const tries = (await sdk.spansNamed("process user.signup", CONSUMER))
      .sort((a, b) =>
        Number(a.attributes["eventbus.delivery.attempt"]) -
        Number(b.attributes["eventbus.delivery.attempt"])
      );
    assert.deepEqual(
      tries.map((s) => s.attributes["eventbus.delivery.attempt"]),
      [1, 2, 3],
    );
    assert.deepEqual(tries.map((s) => s.status.code), [ERROR, ERROR, UNSET]);
    assert.deepEqual(
      tries.map((s) => s.attributes["error.type"]),
      ["RangeError", "RangeError", undefined],
    );
    assert.equal(tries[0]!.status.message, "RangeError: try 1");
    assert.deepEqual(tries[0]!.events.map((e) => e.name), ["exception"]);
    for (const span of tries) {
      assert.deepEqual(
        span.links.map((link) => link.context.spanId),
        [send!.spanContext().spanId],
      );
      assert.equal(span.parentSpanContext?.spanId, send!.spanContext().spanId);
    }
    assert.deepEqual(traceparents, Array(3).fill(event.metadata.traceparent));
    const consumed = await sdk.points("messaging.client.consumed.messages");
    assert.deepEqual(sumBy(consumed as never, "outcome"), {
      retry: 2,
      completed: 1,
    });
  });

  it("adds eventbus.dead_letter with the reason to the last try's span and keeps traceparent in the dead letter", async () => {
    await using sdk = new TestTelemetry();
    const dead: DeadLetterError[] = [];
    const reported = new Counter();
    const bus = poolBus({
      instrumentation: sdk.instrumentation(),
      retry: { attempts: 2, backoff: FAST },
      onError: (error) => {
        if (error instanceof DeadLetterError) dead.push(error);
        reported.add();
      },
    });
    bus.subscribe("user.signup", () => {
      throw new TypeError("no mailer");
    }, { async: true, name: "hopeless" });
    const event = await bus.emit("user.signup", { n: 1 });
    await reported.reach(1);
    await bus.close();
    const tries = (await sdk.spansNamed("process user.signup", CONSUMER))
      .sort((a, b) =>
        Number(a.attributes["eventbus.delivery.attempt"]) -
        Number(b.attributes["eventbus.delivery.attempt"])
      );
    assert.equal(tries.length, 2);
    const letters = tries.map((s) =>
      s.events.filter((e) => e.name === "eventbus.dead_letter")
    );
    assert.deepEqual(letters[0], []);
    assert.equal(letters[1]!.length, 1);
    assert.deepEqual(letters[1]![0]!.attributes, {
      "eventbus.dead_letter.reason": "failed",
      "eventbus.delivery.attempts": 2,
    });
    assert.equal(tries[1]!.status.code, ERROR);
    assert.equal(tries[1]!.attributes["error.type"], "TypeError");
    assert.equal(dead.length, 1);
    assert.equal(
      dead[0]!.event.metadata.traceparent,
      event.metadata.traceparent,
    );
    assert.match(event.metadata.traceparent ?? "", /^00-[0-9a-f]{32}-/);
  });

  it("traces a delivery dead-lettered as crashed without a try, linked to its creation context", async () => {
    await using sdk = new TestTelemetry();
    const backend = new ManualBackend();
    const bus = new EventBus<Events>({
      backend,
      logger: new MemoryLogger(),
      instrumentation: sdk.instrumentation(),
      retry: { attempts: 3, backoff: FAST },
      onError: () => {},
    });
    let runs = 0;
    bus.subscribe("user.signup", () => void runs++, {
      async: true,
      name: "poison",
    });
    await bus.listen();
    const event = await bus.emit("user.signup", { n: 1 });
    const result: DeliveryResult = await backend.deliver!({
      event,
      handler: "poison",
      attempt: 4,
    });
    await bus.close();
    assert.equal(result.status, "dead-letter");
    assert.equal(runs, 0);
    const [send] = await sdk.spansNamed("send user.signup", PRODUCER);
    const [span, ...more] = await sdk.spansNamed(
      "process user.signup",
      CONSUMER,
    );
    assert.equal(more.length, 0);
    assert.equal(span!.attributes["eventbus.delivery.attempt"], 4);
    assert.equal(span!.attributes["error.type"], "crashed");
    assert.deepEqual(
      span!.events.find((e) => e.name === "eventbus.dead_letter")?.attributes,
      {
        "eventbus.dead_letter.reason": "crashed",
        "eventbus.delivery.attempts": 3,
      },
    );
    assert.equal(span!.links[0]?.context.spanId, send!.spanContext().spanId);
    assert.equal(span!.spanContext().traceId, send!.spanContext().traceId);
  });

  it("counts sent and consumed messages by outcome and records one duration per try", async () => {
    await using sdk = new TestTelemetry();
    const bus = poolBus({
      instrumentation: sdk.instrumentation(),
      retry: { attempts: 1 },
      onError: () => {},
    });
    const settled = new Counter();
    bus.subscribe("user.signup", async (event) => {
      await work(1);
      settled.add();
      if (event.data.n % 5 === 0) throw new Error(`bad ${event.data.n}`);
    }, { async: true, name: "metered" });
    for (let n = 0; n < 10; n++) await bus.emit("user.signup", { n });
    await settled.reach(10);
    await bus.close();
    assert.equal(bus.stats().deadLettered, 2);
    const sent = await sdk.points("messaging.client.sent.messages");
    assert.equal(sent.length, 1);
    assert.equal(sent[0]!.value, 10);
    assert.deepEqual(sent[0]!.attributes, {
      "messaging.system": "worker-pool",
      "messaging.operation.name": "send",
      "messaging.operation.type": "send",
      "messaging.destination.name": "user.signup",
    });
    const consumed = await sdk.points("messaging.client.consumed.messages");
    assert.deepEqual(sumBy(consumed as never, "outcome"), {
      completed: 8,
      "dead-letter": 2,
    });
    for (const point of consumed) {
      assert.equal(
        point.attributes["messaging.consumer.group.name"],
        "metered",
      );
    }
    const durations = await sdk.points("messaging.process.duration");
    const count = durations.reduce(
      (sum, p) => sum + (p.value as { count: number }).count,
      0,
    );
    assert.equal(count, 10);
    const failed = durations.find((p) =>
      p.attributes["error.type"] === "Error"
    );
    assert.equal((failed?.value as { count: number }).count, 2);
  });

  it("ends the send span with ERROR and error.type when the backend refuses the event", async () => {
    await using sdk = new TestTelemetry();
    const refusing: AsyncBackend = {
      name: "refusing",
      remote: true,
      publish: () =>
        Promise.reject(new BackendError("refusing", "Cannot publish: down")),
      consume: () => Promise.resolve(),
      close: () => Promise.resolve({ completed: 0, abandoned: [] }),
    };
    const bus = new EventBus<Events>({
      backend: refusing,
      instrumentation: sdk.instrumentation(),
    });
    await assert.rejects(bus.emit("user.signup", { n: 1 }), BackendError);
    await bus.close();
    const [send, ...more] = await sdk.spansNamed("send user.signup", PRODUCER);
    assert.equal(more.length, 0);
    assert.equal(send!.status.code, ERROR);
    assert.equal(send!.attributes["error.type"], "BackendError");
    // A backend without telemetry: its name and the event type.
    assert.equal(send!.attributes["messaging.system"], "refusing");
    assert.equal(send!.attributes["messaging.destination.name"], "user.signup");
    const sent = await sdk.points("messaging.client.sent.messages");
    assert.deepEqual(sent.map((p) => p.attributes["error.type"]), [
      "BackendError",
    ]);
  });

  it('starts each try in a new trace, linked to the creation context, with parent "link-only"', async () => {
    await using sdk = new TestTelemetry();
    const bus = poolBus({
      instrumentation: sdk.instrumentation({ parent: "link-only" }),
    });
    const done = new Counter();
    bus.subscribe("user.signup", () => done.add(), {
      async: true,
      name: "linked",
    });
    await bus.emit("user.signup", { n: 1 });
    await done.reach(1);
    await bus.close();
    const [send] = await sdk.spansNamed("send user.signup", PRODUCER);
    const [process] = await sdk.spansNamed("process user.signup", CONSUMER);
    assert.equal(process!.parentSpanContext, undefined);
    assert.notEqual(
      process!.spanContext().traceId,
      send!.spanContext().traceId,
    );
    assert.equal(
      process!.links[0]?.context.traceId,
      send!.spanContext().traceId,
    );
    assert.equal(process!.links[0]?.context.spanId, send!.spanContext().spanId);
  });

  it("keeps a traceparent and tracestate the caller set, and makes them the creation context", async () => {
    await using sdk = new TestTelemetry();
    const bus = poolBus({ instrumentation: sdk.instrumentation() });
    const done = new Counter();
    bus.subscribe("user.signup", () => done.add(), {
      async: true,
      name: "welcome",
    });
    const metadata = {
      traceparent: `00-${CALLER_TRACE}-${CALLER_SPAN}-01`,
      tracestate: "vendor=abc",
    };
    const event = await bus.emit("user.signup", { n: 1 }, { metadata });
    await done.reach(1);
    await bus.close();
    assert.deepEqual(event.metadata, metadata);
    assert.equal(
      (await sdk.spansNamed("send user.signup", PRODUCER)).length,
      1,
    );
    const [process] = await sdk.spansNamed("process user.signup", CONSUMER);
    assert.equal(process!.spanContext().traceId, CALLER_TRACE);
    assert.equal(process!.parentSpanContext?.spanId, CALLER_SPAN);
    assert.equal(process!.links[0]?.context.spanId, CALLER_SPAN);
    assert.equal(process!.links[0]?.context.traceState?.get("vendor"), "abc");
  });

  it("gives sync handlers INTERNAL spans only with syncSpans, ERROR when they fail", async () => {
    for (const syncSpans of [false, true]) {
      await using sdk = new TestTelemetry();
      const bus = poolBus({
        instrumentation: sdk.instrumentation({ syncSpans }),
      });
      let runs = 0;
      bus.subscribe("user.signup", (event) => {
        runs++;
        if (event.data.n === 2) throw new SyntaxError("rejected");
      }, { name: "gate" });
      await bus.emit("user.signup", { n: 1 });
      await bus.emitSync("user.signup", { n: 3 });
      await assert.rejects(bus.emit("user.signup", { n: 2 }));
      await bus.close();
      assert.equal(runs, 3);
      const spans = await sdk.spansNamed("process user.signup", INTERNAL);
      if (!syncSpans) {
        assert.deepEqual(spans, [], "no INTERNAL spans without syncSpans");
        continue;
      }
      assert.equal(spans.length, 3);
      for (const span of spans) {
        assert.equal(span.attributes["messaging.consumer.group.name"], "gate");
      }
      assert.deepEqual(spans.map((s) => s.status.code), [UNSET, UNSET, ERROR]);
      assert.equal(spans[2]!.attributes["error.type"], "SyntaxError");
    }
  });

  it("runs handlers with their span active when a context manager is registered", async () => {
    await using sdk = new TestTelemetry();
    api.context.setGlobalContextManager(new StackContextManager().enable());
    try {
      const bus = poolBus({
        instrumentation: sdk.instrumentation({ syncSpans: true }),
      });
      const active: { kind: string; spanId: string | undefined }[] = [];
      const done = new Counter();
      bus.subscribe("user.signup", () => {
        active.push({
          kind: "sync",
          spanId: api.trace.getActiveSpan()?.spanContext().spanId,
        });
      }, { name: "gate" });
      bus.subscribe("user.signup", () => {
        active.push({
          kind: "async",
          spanId: api.trace.getActiveSpan()?.spanContext().spanId,
        });
        done.add();
      }, { async: true, name: "worker" });
      await bus.emit("user.signup", { n: 1 });
      await done.reach(1);
      await bus.close();
      const [internal] = await sdk.spansNamed("process user.signup", INTERNAL);
      const [consumer] = await sdk.spansNamed("process user.signup", CONSUMER);
      assert.deepEqual(active, [
        { kind: "sync", spanId: internal!.spanContext().spanId },
        { kind: "async", spanId: consumer!.spanContext().spanId },
      ]);
    } finally {
      api.context.disable();
    }
  });

  it("records nothing and writes no traceparent without instrumentation, even with a global SDK", async () => {
    await using sdk = new TestTelemetry();
    api.trace.setGlobalTracerProvider(sdk.tracerProvider);
    api.metrics.setGlobalMeterProvider(sdk.meterProvider);
    try {
      const done = new Counter();
      const plain = poolBus({ retry: { attempts: 2, backoff: FAST } });
      plain.subscribe("user.signup", (_event, ctx) => {
        if (ctx.attempt === 1) throw new Error("once");
        done.add();
      }, { async: true, name: "plain" });
      const event = await plain.emit("user.signup", { n: 1 });
      await plain.emitSync("user.signup", { n: 2 }).catch(() => {});
      await done.reach(1);
      await plain.close();
      assert.deepEqual(event.metadata, {});
      assert.deepEqual(await sdk.spans(), []);
      for (
        const name of [
          "messaging.client.sent.messages",
          "messaging.client.consumed.messages",
          "messaging.process.duration",
        ]
      ) {
        assert.deepEqual(await sdk.points(name), [], name);
      }
      // The same globals record once the bus has otel({ api }).
      const traced = poolBus({ instrumentation: otel({ api }) });
      traced.subscribe("user.signup", () => done.add(), {
        async: true,
        name: "traced",
      });
      const tracedEvent = await traced.emit("user.signup", { n: 3 });
      await done.reach(2);
      await traced.close();
      assert.match(tracedEvent.metadata.traceparent ?? "", /^00-/);
      assert.equal((await sdk.spans()).length, 2);
      assert.equal(
        (await sdk.points("messaging.client.consumed.messages")).length,
        1,
      );
    } finally {
      api.trace.disable();
      api.metrics.disable();
    }
  });

  it("traces once an SDK registers after otel() was created", async () => {
    await using sdk = new TestTelemetry();
    const bus = poolBus({ instrumentation: otel({ api }) });
    const done = new Counter();
    bus.subscribe("user.signup", () => done.add(), {
      async: true,
      name: "late-sdk",
    });
    const before = await bus.emit("user.signup", { n: 1 });
    await done.reach(1);
    api.trace.setGlobalTracerProvider(sdk.tracerProvider);
    api.metrics.setGlobalMeterProvider(sdk.meterProvider);
    try {
      const after = await bus.emit("user.signup", { n: 2 });
      await done.reach(2);
      await bus.close();
      assert.deepEqual(before.metadata, {});
      const [send] = await sdk.spansNamed("send user.signup", PRODUCER);
      assert.equal(after.metadata.traceparent, traceparentOf(send!));
      assert.equal(
        (await sdk.spansNamed("process user.signup", CONSUMER)).length,
        1,
      );
      const consumed = await sdk.points("messaging.client.consumed.messages");
      assert.deepEqual(sumBy(consumed as never, "outcome"), { completed: 1 });
    } finally {
      api.trace.disable();
      api.metrics.disable();
    }
  });

  it("records no span and writes no traceparent with the no-op tracer (no SDK registered)", async () => {
    const bus = poolBus({ instrumentation: otel({ api }) });
    const done = new Counter();
    bus.subscribe("user.signup", () => done.add(), {
      async: true,
      name: "noop",
    });
    const event = await bus.emit("user.signup", { n: 1 });
    await done.reach(1);
    await bus.close();
    assert.deepEqual(event.metadata, {});
    assert.equal(bus.stats().completed, 1);
  });
});

describe("EventBus with instrumentation hooks that fail", () => {
  it("logs hooks that throw and changes no result, try or count", async () => {
    const logger = new MemoryLogger();
    const hooks: Instrumentation = {
      publish: () => {
        throw new Error("publish hook");
      },
      deliver: (delivery) =>
        delivery.attempt === 1
          ? {
            run: () => {
              throw new Error("run before fn");
            },
            end: () => {
              throw new Error("end hook");
            },
          }
          : {
            run: <T>(fn: () => T): T => {
              fn();
              fn(); // a second call runs nothing twice
              throw new Error("run after fn");
            },
            end() {},
          },
      inline: () => ({
        run: () => {
          throw new Error("inline run");
        },
        end: () => {
          throw new Error("inline end");
        },
      }),
    };
    const bus = new EventBus<Events>({
      logger,
      instrumentation: hooks,
      retry: { attempts: 2, backoff: FAST },
    });
    const attempts: number[] = [];
    let syncRuns = 0;
    const done = new Counter();
    bus.subscribe("user.signup", () => void syncRuns++, { name: "gate" });
    bus.subscribe("user.signup", (_event, ctx) => {
      attempts.push(ctx.attempt);
      if (ctx.attempt === 1) throw new Error("transient");
      done.add();
    }, { async: true, name: "worker" });
    const event = await bus.emit("user.signup", { n: 1 });
    await done.reach(1);
    await bus.close();
    assert.deepEqual(event.metadata, {});
    assert.equal(syncRuns, 1);
    assert.deepEqual(attempts, [1, 2]);
    const { completed, failed, retried, deadLettered } = bus.stats();
    assert.deepEqual({ completed, failed, retried, deadLettered }, {
      completed: 1,
      failed: 1,
      retried: 1,
      deadLettered: 0,
    });
    const errors = logger.lines.filter((l) => l.level === "error")
      .map((l) => l.message);
    for (
      const what of [
        "publish hook",
        "run before fn",
        "end hook",
        "run after fn",
        "inline run",
        "inline end",
      ]
    ) {
      assert.equal(
        errors.filter((m) =>
          m.startsWith("Instrumentation") && m.includes(what)
        )
          .length,
        1,
        what,
      );
    }
  });

  it("drops publish metadata that is not a valid extension attribute and keeps the caller's", async () => {
    const logger = new MemoryLogger();
    const bus = new EventBus<Events>({
      logger,
      instrumentation: {
        publish: () => ({
          metadata: { traceparent: "mine", origin: "hook" },
          end() {},
        }),
      },
    });
    bus.subscribe("user.signup", () => {}, { async: true, name: "any" });
    const first = await bus.emit("user.signup", { n: 1 }, {
      metadata: { traceparent: "caller" },
    });
    assert.deepEqual(first.metadata, { traceparent: "caller", origin: "hook" });
    const bad = new EventBus<Events>({
      logger,
      instrumentation: {
        publish: () => ({ metadata: { "Not-A-Key": "x" }, end() {} }),
      },
    });
    bad.subscribe("user.signup", () => {}, { async: true, name: "any" });
    const second = await bad.emit("user.signup", { n: 2 });
    assert.deepEqual(second.metadata, {});
    await bus.close();
    await bad.close();
    assert.equal(
      logger.lines.filter((l) => l.message.includes("Not-A-Key")).length,
      1,
    );
  });
});

describe("otel()", () => {
  it("rejects an api that is not the @opentelemetry/api module and an unknown parent", () => {
    // deno-lint-ignore no-explicit-any
    assert.throws(() => otel({ api: {} as any }), TypeError);
    // deno-lint-ignore no-explicit-any
    assert.throws(() => otel(undefined as any), TypeError);
    assert.throws(
      // deno-lint-ignore no-explicit-any
      () => otel({ api, parent: "ambient" as any }),
      RangeError,
    );
  });

  it("is imported by neither mod.ts nor, except as types, src/otel.ts", () => {
    const inMod = imports(new URL("../mod.ts", import.meta.url));
    assert.deepEqual(
      inMod.filter((i) => i.specifier.startsWith("@opentelemetry/")),
      [],
    );
    const inOtel = imports(new URL("../src/otel.ts", import.meta.url));
    const otelImports = inOtel.filter((i) =>
      i.specifier.startsWith("@opentelemetry/")
    );
    assert.deepEqual([...new Set(otelImports.map((i) => i.specifier))], [
      "@opentelemetry/api",
    ]);
    assert.deepEqual(otelImports.filter((i) => !i.typeOnly), []);
    assert.ok(inMod.length > 5, "the scan found the core's imports");
  });
});

/**
 * The imports of `entry` and of every local module it imports, with whether
 * each statement is type-only (`import type`/`export type`, erased).
 */
function imports(
  entry: URL,
): { file: string; specifier: string; typeOnly: boolean }[] {
  const found: { file: string; specifier: string; typeOnly: boolean }[] = [];
  const seen = new Set<string>();
  const queue = [entry];
  const statement =
    /^(import|export)\s+(type\s+)?(?:[\w$*{}\s,]*?\s*from\s*)?["']([^"']+)["']/gm;
  while (queue.length > 0) {
    const url = queue.pop()!;
    if (seen.has(url.href)) continue;
    seen.add(url.href);
    const text = readFileSync(url, "utf8").replace(/\/\*[\s\S]*?\*\//g, "");
    assert.ok(!/\bimport\s*\(/.test(text), `${url.pathname}: no import()`);
    for (const match of text.matchAll(statement)) {
      const specifier = match[3]!;
      const typeOnly = match[2] !== undefined;
      found.push({ file: url.pathname, specifier, typeOnly });
      if (specifier.startsWith(".") && !typeOnly) {
        queue.push(new URL(specifier, url));
      }
    }
  }
  return found;
}

if (!await reachable("127.0.0.1", 4222)) {
  brokerMissing("otel() on NATS", `no NATS server on ${SHARED_NATS}`);
} else {
  describe("otel() on NATS", () => {
    it("keeps the emitted traceparent in the dead-letter copy on the wire", async () => {
      const names = uniqueNames("otel_dlq");
      await using admin = await Admin.open(SHARED_NATS, names.stream);
      await using sdk = new TestTelemetry();
      const reported = new Counter();
      const producer = new EventBus<Events>({
        backend: await JetStreamBackend.connect(
          { servers: SHARED_NATS },
          names,
        ),
        logger: new MemoryLogger(),
        instrumentation: sdk.instrumentation(),
      });
      const worker = new EventBus<Events>({
        backend: await JetStreamBackend.connect(
          { servers: SHARED_NATS },
          names,
        ),
        logger: new MemoryLogger(),
        instrumentation: sdk.instrumentation(),
        retry: { attempts: 2, backoff: FAST },
        onError: () => reported.add(),
      });
      const traceparents: string[] = [];
      worker.subscribe("user.signup", (event) => {
        traceparents.push(event.metadata.traceparent ?? "none");
        throw new Error("always");
      }, { async: true, name: "doomed" });
      await worker.listen();
      const event = await producer.emit("user.signup", { n: 1 });
      await reported.reach(1, 20_000, "dead letters");
      const dlq = `${names.stream}_DLQ`;
      const letter = await withDeadline(
        (async () => {
          for (let i = 0; i < 1000; i++) {
            const info = await admin.jsm.streams.info(dlq);
            if (info.state.messages > 0) {
              return await admin.jsm.streams.getMessage(dlq, {
                seq: info.state.first_seq,
              });
            }
            await work(20);
          }
          throw new Error("no dead letter stored");
        })(),
        20_000,
        () => "no dead letter stored",
      );
      await Promise.all([producer.close(), worker.close()]);
      const copy = JSON.parse(new TextDecoder().decode(letter!.data));
      assert.match(event.metadata.traceparent ?? "", /^00-[0-9a-f]{32}-/);
      assert.equal(copy.traceparent, event.metadata.traceparent);
      assert.deepEqual(traceparents, [
        event.metadata.traceparent,
        event.metadata.traceparent,
      ]);
      const [send] = await sdk.spansNamed("send user.signup", PRODUCER);
      const tries = await sdk.spansNamed("process user.signup", CONSUMER);
      assert.equal(tries.length, 2);
      for (const span of tries) {
        assert.equal(span.attributes["messaging.system"], "nats");
        assert.equal(
          span.attributes["messaging.destination.name"],
          `${names.subjectPrefix}.user.signup`,
        );
        assert.equal(span.links[0]?.context.spanId, send!.spanContext().spanId);
      }
    });
  });
}
