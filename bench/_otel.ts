// Copyright 2026 the @eventbus/core authors. MIT license.
// The instrumentation the benchmark's "+otel" cases give a bus: otel() with
// no SDK registered (the API's no-op tracer and meter), or with a real SDK
// as production runs it: a tracer provider whose batch span processor
// exports to an in-memory exporter (emptied every 10 000 spans so memory
// stays flat), and a meter provider with a reader that keeps the
// aggregated metrics.

import * as api from "@opentelemetry/api";
import { MeterProvider, MetricReader } from "@opentelemetry/sdk-metrics";
import {
  BatchSpanProcessor,
  InMemorySpanExporter,
  type ReadableSpan,
  TracerProvider,
} from "@opentelemetry/sdk-trace";
import type { Instrumentation } from "../mod.ts";
import { otel } from "../src/otel.ts";

/** Which instrumentation a case runs with. */
export type OtelMode = "none" | "noop" | "sdk";

class BoundedExporter extends InMemorySpanExporter {
  override export(
    spans: ReadableSpan[],
    done: Parameters<InMemorySpanExporter["export"]>[1],
  ): void {
    if (this.getFinishedSpans().length >= 10_000) this.reset();
    super.export(spans, done);
  }
}

class KeepingReader extends MetricReader {
  protected onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
  protected onShutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/** The bus option for `mode`: nothing, otel() on the no-op API, or on an SDK. */
export function instrumentationFor(
  mode: OtelMode,
): { instrumentation?: Instrumentation } {
  if (mode === "none") return {};
  if (mode === "noop") return { instrumentation: otel({ api }) };
  return {
    instrumentation: otel({
      api,
      tracerProvider: new TracerProvider({
        spanProcessors: [
          new BatchSpanProcessor({ exporter: new BoundedExporter() }),
        ],
      }),
      meterProvider: new MeterProvider({ readers: [new KeepingReader()] }),
    }),
  };
}
