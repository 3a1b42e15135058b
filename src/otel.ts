// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * OpenTelemetry for `@eventbus/core`: one trace from `emit` to every try of
 * every handler, across any backend, and the messaging metrics operators
 * graph. You pass your own `@opentelemetry/api` module; this module imports
 * only its types, so no second copy of the API (which would record
 * nothing) ever enters your program.
 *
 * - **`send <type>`** (PRODUCER) per `emit` handed to a backend, ended when
 *   the backend accepted or refused the event (status ERROR and
 *   `error.type` on refusal). Its context is written once into the event's
 *   `metadata.traceparent` (and `tracestate`) unless you set them: the
 *   CloudEvents distributed-tracing extension, the OpenTelemetry *creation
 *   context*. It travels inside the event on every backend and never
 *   changes on retries, redeliveries, dead-letter copies or replays.
 * - **`process <type>`** (CONSUMER) per try, in the process that runs it,
 *   linked to the creation context and, with `parent: "creation"` (the
 *   default), its child; with `"link-only"` each try starts its own trace.
 *   The handler runs with this span active. A failed try is ERROR with
 *   `error.type`; a dead letter adds the span event `eventbus.dead_letter`
 *   with `eventbus.dead_letter.reason`.
 * - Attributes after the messaging semantic conventions:
 *   `messaging.system` and `messaging.destination.name` (from the
 *   backend's `telemetry`), `messaging.operation.name` and `.type`,
 *   `messaging.consumer.group.name` (the handler name),
 *   `messaging.message.id` (the event id), and `eventbus.delivery.attempt`.
 * - Metrics: `messaging.client.sent.messages`,
 *   `messaging.client.consumed.messages` (attribute `outcome`: `completed`,
 *   `retry`, `dead-letter` or `abandoned`; one per try) and
 *   `messaging.process.duration` (histogram, seconds, one per try).
 * - Sync handlers get an INTERNAL `process <type>` span only with
 *   `syncSpans: true`.
 *
 * The context crosses the broker in the event itself, so no context manager
 * or propagator is needed for that hop; register one (the Node SDK's, or
 * Deno's built-in OpenTelemetry) so that spans your handlers start nest
 * under `process <type>`.
 *
 * @example Tracing a bus
 * ```ts
 * import * as api from "@opentelemetry/api";
 * import { EventBus } from "@eventbus/core";
 * import { otel } from "@eventbus/core/otel";
 *
 * const bus = new EventBus({ instrumentation: otel({ api }) });
 * bus.subscribe("user.signup", () => {}, { async: true, name: "welcome" });
 * await bus.emit("user.signup", { id: "u1" }); // no SDK registered: no-op
 * await bus.close();
 * ```
 *
 * @module
 */

import type {
  Attributes,
  Context,
  ContextAPI,
  Counter,
  createNoopMeter,
  createTraceState,
  Histogram,
  MeterProvider,
  MetricsAPI,
  ProxyTracerProvider,
  Span,
  SpanKind,
  SpanOptions,
  SpanStatusCode,
  TraceAPI,
  TracerProvider,
} from "@opentelemetry/api";
import type {
  AsyncBackend,
  BackendTelemetry,
  Delivery,
  DeliveryResult,
} from "./backend.ts";
import { type DeadLetterReason, describeError } from "./errors.ts";
import type { Event } from "./event.ts";
import { format, isValid, parse } from "./_trace_context.ts";
import type {
  InlineScope,
  Instrumentation,
  PublishScope,
  TryScope,
} from "./types.ts";

const SCOPE_NAME = "@eventbus/core";
/** The semantic conventions' advice for `messaging.process.duration`. */
const DURATION_BUCKETS = [
  0.005,
  0.01,
  0.025,
  0.05,
  0.075,
  0.1,
  0.25,
  0.5,
  0.75,
  1,
  2.5,
  5,
  7.5,
  10,
];
/** Dead letters whose handler did not fail: `error.type` is the reason. */
const REASON_AS_TYPE: ReadonlySet<DeadLetterReason> = new Set([
  "crashed",
  "invalid-event",
  "trimmed",
]);

/**
 * Your `@opentelemetry/api` module (1.3 or later), as {@linkcode otel}
 * takes it: pass the module itself. Only its outline is checked here, so
 * any 1.x version of the API fits.
 *
 * @example Passing your API module
 * ```ts
 * import * as api from "@opentelemetry/api";
 * import type { OtelApi } from "@eventbus/core/otel";
 * const injected: OtelApi = api;
 * console.assert(typeof injected.trace.getTracer === "function");
 * ```
 */
export interface OtelApi {
  /** `api.trace`. */
  readonly trace: { getTracer(name: string, version?: string): unknown };
  /** `api.context`. */
  readonly context: { active(): unknown };
  /** `api.metrics`. */
  readonly metrics: { getMeter(name: string, version?: string): unknown };
  /** `api.ROOT_CONTEXT`. */
  readonly ROOT_CONTEXT: object;
  /** `api.SpanKind`. */
  readonly SpanKind: object;
  /** `api.SpanStatusCode`. */
  readonly SpanStatusCode: object;
}

/** What otel() uses of the API module, typed by the API itself. */
interface Api {
  readonly trace: Pick<
    TraceAPI,
    "getTracer" | "getTracerProvider" | "setSpan" | "setSpanContext"
  >;
  readonly context: Pick<ContextAPI, "active" | "with">;
  readonly metrics: Pick<MetricsAPI, "getMeter" | "getMeterProvider">;
  readonly ROOT_CONTEXT: Context;
  readonly SpanKind: typeof SpanKind;
  readonly SpanStatusCode: typeof SpanStatusCode;
  readonly createTraceState?: typeof createTraceState;
  readonly createNoopMeter?: typeof createNoopMeter;
  readonly ProxyTracerProvider?: typeof ProxyTracerProvider;
}

/**
 * Options of {@linkcode otel}.
 *
 * @example Spans for sync handlers too, each try in its own trace
 * ```ts
 * import * as api from "@opentelemetry/api";
 * import { otel, type OtelOptions } from "@eventbus/core/otel";
 * const options: OtelOptions = { api, parent: "link-only", syncSpans: true };
 * const instrumentation = otel(options);
 * console.assert(typeof instrumentation.inline === "function");
 * ```
 */
export interface OtelOptions {
  /** Your `@opentelemetry/api` module: `import * as api from "@opentelemetry/api"`. */
  api: OtelApi;
  /**
   * The parent of each `process <type>` span: `"creation"`, the event's
   * creation context (the producer's span, from `metadata.traceparent`),
   * or `"link-only"`, none (a new trace, linked to the creation context).
   * The context active when a backend delivers is its consume loop's, not
   * the event's, so it is never the parent.
   * @default {"creation"}
   */
  parent?: "link-only" | "creation";
  /**
   * Give each sync handler run an INTERNAL `process <type>` span.
   * @default {false}
   */
  syncSpans?: boolean;
  /**
   * Where spans go: a `TracerProvider` of the SDK.
   * @default {the global tracer provider of `api`}
   */
  tracerProvider?: { getTracer(name: string, version?: string): unknown };
  /**
   * Where metrics go: a `MeterProvider` of the SDK.
   * @default {the global meter provider of `api` (one registered after the first publish is picked up together with a tracer SDK)}
   */
  meterProvider?: { getMeter(name: string, version?: string): unknown };
}

/**
 * Creates the OpenTelemetry instrumentation for an `EventBus`: spans for
 * each publish and each try, the creation context in `metadata.traceparent`,
 * and the messaging metrics, all through the API module you pass.
 *
 * @param options Your API module, the consumer spans' parent, sync spans
 *   and providers.
 * @returns The instrumentation, for `EventBusOptions.instrumentation`.
 * @throws {TypeError} When `api` is not an `@opentelemetry/api` module.
 * @throws {RangeError} When `parent` is not `"creation"` or `"link-only"`.
 *
 * @example A producer and a worker in one trace
 * ```ts
 * import * as api from "@opentelemetry/api";
 * import { EventBus } from "@eventbus/core";
 * import { otel } from "@eventbus/core/otel";
 *
 * const bus = new EventBus({ instrumentation: otel({ api }) });
 * bus.subscribe("order.placed", (_event, _ctx) => {
 *   // api.trace.getActiveSpan() is "process order.placed" here
 * }, { async: true, name: "invoicing" });
 * await bus.emit("order.placed", { total: 3 });
 * await bus.close();
 * ```
 */
export function otel(options: OtelOptions): Instrumentation {
  const {
    api: given,
    parent = "creation",
    syncSpans = false,
    tracerProvider,
    meterProvider,
  } = options ?? {};
  const loose = given as Partial<Api> | undefined;
  if (
    typeof loose?.trace?.getTracer !== "function" ||
    typeof loose.context?.with !== "function" ||
    typeof loose.metrics?.getMeter !== "function" ||
    loose.SpanKind === undefined || loose.SpanStatusCode === undefined ||
    loose.ROOT_CONTEXT === undefined
  ) {
    throw new TypeError(
      `Cannot create OpenTelemetry instrumentation: api must be your @opentelemetry/api module, got ${typeof given}, pass { api } after import * as api from "@opentelemetry/api"`,
    );
  }
  if (parent !== "creation" && parent !== "link-only") {
    throw new RangeError(
      `Cannot create OpenTelemetry instrumentation: parent must be "creation" or "link-only", got ${
        JSON.stringify(parent)
      }`,
    );
  }
  const api = given as unknown as Api;
  const provider = (tracerProvider as Pick<TracerProvider, "getTracer">) ??
    api.trace.getTracerProvider();
  const tracer = provider.getTracer(SCOPE_NAME);
  const { ROOT_CONTEXT, SpanKind, SpanStatusCode } = api;
  let instruments: Instruments | null | undefined;
  let meterSource: unknown;
  /**
   * The instruments, made at first use; undefined while the meter is the
   * API's no-op meter. With `recheck` (a tracer SDK is there), a global
   * meter provider registered since is picked up.
   */
  function meters(recheck: boolean): Instruments | undefined {
    if (
      instruments === undefined ||
      (recheck && instruments === null && meterProvider === undefined &&
        api.metrics.getMeterProvider() !== meterSource)
    ) {
      const source = (meterProvider as Pick<MeterProvider, "getMeter">) ??
        api.metrics.getMeterProvider();
      meterSource = source;
      instruments = createInstruments(api, source);
    }
    return instruments ?? undefined;
  }
  const targets = new Targets();
  // Without an SDK the API's proxy provider delegates to its no-op
  // provider, and so does the tracer it gave: spans are then skipped whole
  // (the API swaps the delegate when an SDK registers).
  const noop = api.ProxyTracerProvider &&
    new api.ProxyTracerProvider().getDelegate();
  const proxy = provider as { getDelegate?(): unknown };
  function tracing(): boolean {
    return noop === undefined || proxy.getDelegate?.() !== noop;
  }

  function fail(span: Span, error: unknown, type: string): void {
    span.setAttribute("error.type", type);
    span.setStatus({
      code: SpanStatusCode.ERROR,
      message: describeError(error),
    });
    span.recordException(
      error instanceof Error ? error : { message: describeError(error) },
    );
  }

  function publish(
    event: Event,
    backend: AsyncBackend,
  ): PublishScope | undefined {
    const traced = tracing();
    const instruments = meters(traced);
    if (!traced && instruments === undefined) return; // no SDK
    const target = targets.send(backend, event.type);
    const span = tracer.startSpan(target.name, {
      kind: SpanKind.PRODUCER,
      attributes: target.attributes,
    }, api.context.active());
    if (span.isRecording()) {
      span.setAttribute("messaging.message.id", event.id);
    }
    let metadata: Record<string, string> | undefined;
    if (event.metadata.traceparent === undefined) {
      const context = span.spanContext();
      if (isValid(context)) metadata = format(context);
    }
    // No SDK: nothing to write, end or count.
    if (metadata === undefined && !span.isRecording() && !instruments) return;
    return {
      metadata,
      end(error?: unknown): void {
        const sent = instruments?.sent;
        if (error === undefined) {
          span.end();
          sent?.add(1, target.attributes);
          return;
        }
        const type = errorType(error);
        fail(span, error, type);
        span.end();
        sent?.add(1, { ...target.attributes, "error.type": type });
      },
    };
  }

  function deliver(
    delivery: Delivery,
    backend: AsyncBackend,
  ): TryScope | undefined {
    const traced = tracing();
    const instruments = meters(traced);
    if (!traced && instruments === undefined) return; // no SDK
    const { event, handler, attempt } = delivery;
    const target = targets.process(backend, event.type, handler);
    const creation = parse(api, event.metadata);
    const context = parent === "creation" && creation !== undefined
      ? api.trace.setSpanContext(ROOT_CONTEXT, creation)
      : ROOT_CONTEXT;
    const options: SpanOptions = {
      kind: SpanKind.CONSUMER,
      attributes: target.attributes,
    };
    if (creation !== undefined) options.links = [{ context: creation }];
    const span = tracer.startSpan(target.name, options, context);
    const recording = span.isRecording();
    if (recording) {
      span.setAttribute("messaging.message.id", event.id);
      span.setAttribute("eventbus.delivery.attempt", attempt);
    }
    const carried = recording || isValid(span.spanContext());
    if (!carried && instruments === undefined) return; // no SDK, no context
    const started = instruments === undefined ? 0 : performance.now();
    const scope: TryScope = {
      end(result: DeliveryResult): void {
        let type: string | undefined;
        if (result.status === "dead-letter") {
          const { reason, attempts, cause } = result.error;
          type = REASON_AS_TYPE.has(reason) ? reason : errorType(cause);
          span.addEvent("eventbus.dead_letter", {
            "eventbus.dead_letter.reason": reason,
            "eventbus.delivery.attempts": attempts,
          });
          fail(span, cause, type);
        } else if (result.status !== "completed") {
          type = errorType(result.error);
          fail(span, result.error, type);
        }
        span.end();
        if (instruments === undefined) return;
        const seconds = (performance.now() - started) / 1000;
        if (type === undefined) {
          instruments.consumed.add(1, target.outcome(result.status));
          instruments.duration.record(seconds, target.attributes);
          return;
        }
        const failed = { ...target.attributes, "error.type": type };
        instruments.consumed.add(1, { ...failed, outcome: result.status });
        instruments.duration.record(seconds, failed);
      },
    };
    // Make the span current for the try, unless there is nothing to carry:
    // no SDK, and no creation context.
    if (carried) {
      const active = api.trace.setSpan(context, span);
      scope.run = <T>(fn: () => T): T => api.context.with(active, fn);
    }
    return scope;
  }

  function inline(event: Event, handler: string): InlineScope {
    const context = api.context.active();
    const span = tracer.startSpan(`process ${event.type}`, {
      kind: SpanKind.INTERNAL,
      attributes: {
        "messaging.operation.name": "process",
        "messaging.operation.type": "process",
        "messaging.consumer.group.name": handler,
        "messaging.message.id": event.id,
      },
    }, context);
    const active = api.trace.setSpan(context, span);
    return {
      run: <T>(fn: () => T): T => api.context.with(active, fn),
      end(error?: unknown): void {
        if (error !== undefined) fail(span, error, errorType(error));
        span.end();
      },
    };
  }

  return syncSpans ? { publish, deliver, inline } : { publish, deliver };
}

interface Instruments {
  sent: Counter;
  consumed: Counter;
  duration: Histogram;
}

/** The instruments, or null when the meter is the API's no-op meter. */
function createInstruments(
  api: Api,
  provider: Pick<MeterProvider, "getMeter">,
): Instruments | null {
  const meter = provider.getMeter(SCOPE_NAME);
  const noop = api.createNoopMeter?.();
  if (noop !== undefined && meter.constructor === noop.constructor) {
    return null; // no SDK: skip the clock and the attributes too
  }
  return {
    sent: meter.createCounter("messaging.client.sent.messages", {
      unit: "{message}",
      description: "Number of events handed to a backend",
    }),
    consumed: meter.createCounter("messaging.client.consumed.messages", {
      unit: "{message}",
      description: "Number of tries of deliveries, by outcome",
    }),
    duration: meter.createHistogram("messaging.process.duration", {
      unit: "s",
      description: "Duration of each try of a delivery",
      advice: { explicitBucketBoundaries: DURATION_BUCKETS },
    }),
  };
}

/** The span name and attributes of one destination, for spans and metrics. */
interface Target {
  readonly name: string;
  readonly attributes: Attributes;
  /** The attributes with `outcome`, per outcome (cached). */
  outcome(outcome: string): Attributes;
}

/** The targets of each backend, made once per type (and handler). */
class Targets {
  #sends = new WeakMap<AsyncBackend, Map<string, Target>>();
  #processes = new WeakMap<AsyncBackend, Map<string, Map<string, Target>>>();

  #last:
    | { backend: AsyncBackend; type: string; handler: string; target: Target }
    | undefined;

  send(backend: AsyncBackend, type: string): Target {
    let byType = this.#sends.get(backend);
    if (byType === undefined) this.#sends.set(backend, byType = new Map());
    let found = byType.get(type);
    if (found === undefined) {
      const { system, destination } = telemetryOf(backend);
      found = target(`send ${type}`, {
        "messaging.system": system,
        "messaging.operation.name": "send",
        "messaging.operation.type": "send",
        "messaging.destination.name": destination(type),
      });
      byType.set(type, found);
    }
    return found;
  }

  process(backend: AsyncBackend, type: string, handler: string): Target {
    const last = this.#last;
    if (
      last !== undefined && last.backend === backend && last.type === type &&
      last.handler === handler
    ) return last.target;
    const target = this.#process(backend, type, handler);
    this.#last = { backend, type, handler, target };
    return target;
  }

  #process(backend: AsyncBackend, type: string, handler: string): Target {
    let byType = this.#processes.get(backend);
    if (byType === undefined) {
      this.#processes.set(backend, byType = new Map());
    }
    let byHandler = byType.get(type);
    if (byHandler === undefined) byType.set(type, byHandler = new Map());
    let found = byHandler.get(handler);
    if (found === undefined) {
      const { system, destination } = telemetryOf(backend);
      found = target(`process ${type}`, {
        "messaging.system": system,
        "messaging.operation.name": "process",
        "messaging.operation.type": "process",
        "messaging.destination.name": destination(type, handler),
        "messaging.consumer.group.name": handler,
      });
      byHandler.set(handler, found);
    }
    return found;
  }
}

function target(name: string, attributes: Attributes): Target {
  Object.freeze(attributes);
  const outcomes = new Map<string, Attributes>();
  return {
    name,
    attributes,
    outcome(outcome: string): Attributes {
      let found = outcomes.get(outcome);
      if (found === undefined) {
        found = Object.freeze({ ...attributes, outcome });
        outcomes.set(outcome, found);
      }
      return found;
    },
  };
}

function telemetryOf(backend: AsyncBackend): BackendTelemetry {
  const telemetry = backend.telemetry;
  if (telemetry === undefined) {
    return { system: backend.name, destination: (type) => type };
  }
  return {
    system: telemetry.system,
    destination: (type, handler) => telemetry.destination(type, handler),
  };
}

/** `error.type`: the error's name, or `_OTHER` for a non-error thrown. */
function errorType(error: unknown): string {
  return error instanceof Error ? error.name : "_OTHER";
}
