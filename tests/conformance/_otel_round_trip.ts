// Copyright 2026 the @eventbus/core authors. MIT license.
// The OpenTelemetry round trip on every backend: a project-side companion of
// the published conformance suite (which depends on no OpenTelemetry
// package). A producer bus and a worker bus, each instrumented with otel()
// over one in-memory SDK, must record one PRODUCER "send" span and one
// CONSUMER "process" span of the same trace, the consumer linked to the
// producer span and its child, named after the backend's telemetry.

import assert from "node:assert/strict";
import { it } from "node:test";
import { SpanKind } from "@opentelemetry/api";
import type { ConformanceTarget } from "@eventbus/core/conformance";
import { type Event, EventBus } from "../../mod.ts";
import { TestTelemetry, traceparentOf } from "../fixtures/_otel.ts";
import { Counter, MemoryLogger } from "../fixtures/_util.ts";

type Events = { "conf.order.placed": { n: number } };

/** Declares the round-trip test for one backend. */
export function otelRoundTrip(target: ConformanceTarget): void {
  const { timeout = 20_000 } = target.features ?? {};
  it(`${target.name}: otel() traces an emit and its delivery as one trace, PRODUCER then CONSUMER, linked and parented`, async () => {
    await using world = await target.open();
    await using sdk = new TestTelemetry();
    const make = async () =>
      new EventBus<Events>({
        backend: await world.backend(),
        logger: new MemoryLogger(),
        instrumentation: sdk.instrumentation(),
      });
    const producer = await make();
    const worker = producer.backend.remote ? await make() : producer;
    const received: Event[] = [];
    const count = new Counter();
    worker.subscribe("conf.order.placed", (event) => {
      received.push(event);
      count.add();
    }, { async: true, name: "traced" });
    await worker.listen();
    const sent = await producer.emit("conf.order.placed", { n: 1 });
    await count.reach(1, timeout, "deliveries");
    await Promise.all(
      [...new Set([producer, worker])].map((bus) =>
        bus.close({ timeout: 5000 })
      ),
    );
    const spans = await sdk.spans();
    const sends = spans.filter((s) =>
      s.name === "send conf.order.placed" && s.kind === SpanKind.PRODUCER
    );
    const processes = spans.filter((s) =>
      s.name === "process conf.order.placed" && s.kind === SpanKind.CONSUMER
    );
    assert.equal(sends.length, 1, "one send span");
    assert.equal(processes.length, 1, "one process span");
    const send = sends[0]!.spanContext();
    const process = processes[0]!;
    assert.equal(process.spanContext().traceId, send.traceId);
    assert.equal(process.parentSpanContext?.spanId, send.spanId);
    assert.deepEqual(process.links.map((link) => link.context.spanId), [
      send.spanId,
    ]);
    assert.equal(sent.metadata.traceparent, traceparentOf(sends[0]!));
    assert.deepEqual(received, [sent]);
    const telemetry = producer.backend.telemetry;
    assert.ok(telemetry !== undefined, "the backend has telemetry");
    assert.equal(sends[0]!.attributes["messaging.system"], telemetry.system);
    assert.equal(process.attributes["messaging.system"], telemetry.system);
    assert.equal(
      sends[0]!.attributes["messaging.destination.name"],
      telemetry.destination("conf.order.placed"),
    );
    assert.equal(
      process.attributes["messaging.destination.name"],
      telemetry.destination("conf.order.placed", "traced"),
    );
    assert.equal(process.attributes["messaging.consumer.group.name"], "traced");
  });
}
