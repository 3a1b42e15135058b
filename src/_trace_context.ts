// Copyright 2026 the @eventbus/core authors. MIT license.
// The W3C trace context an event carries in its metadata: `traceparent`
// (and `tracestate`) written from a span context and read back into one.

import type { createTraceState, SpanContext } from "@opentelemetry/api";

const TRACEPARENT =
  /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
const ZERO_TRACE = "00000000000000000000000000000000";
const ZERO_SPAN = "0000000000000000";

/** Whether a span context has ids (the no-op tracer's has zeros). */
export function isValid(context: SpanContext): boolean {
  return context.traceId.length === 32 && context.traceId !== ZERO_TRACE &&
    context.spanId.length === 16 && context.spanId !== ZERO_SPAN;
}

/** The W3C `traceparent` (and `tracestate`) of a span context. */
export function format(context: SpanContext): Record<string, string> {
  const flags = (context.traceFlags & 0xff).toString(16).padStart(2, "0");
  const metadata: Record<string, string> = {
    traceparent: `00-${context.traceId}-${context.spanId}-${flags}`,
  };
  const state = context.traceState?.serialize();
  if (state) metadata.tracestate = state;
  return metadata;
}

/** The creation context in an event's metadata, if it holds a valid one. */
export function parse(
  api: { readonly createTraceState?: typeof createTraceState },
  metadata: Readonly<Record<string, string>>,
): SpanContext | undefined {
  const traceparent = metadata.traceparent;
  if (traceparent === undefined) return undefined;
  const match = TRACEPARENT.exec(traceparent);
  if (match === null) return undefined;
  const [, version, traceId, spanId, flags, rest] = match;
  if (version === "ff" || (version === "00" && rest !== undefined)) {
    return undefined;
  }
  if (traceId === ZERO_TRACE || spanId === ZERO_SPAN) return undefined;
  const context: SpanContext = {
    traceId: traceId!,
    spanId: spanId!,
    traceFlags: parseInt(flags!, 16) & 1,
    isRemote: true,
  };
  const state = metadata.tracestate;
  if (state !== undefined && api.createTraceState !== undefined) {
    context.traceState = api.createTraceState(state);
  }
  return context;
}
