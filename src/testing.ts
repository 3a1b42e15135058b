// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * Test helpers for users of `@eventbus/core`.
 *
 * @example Asserting what a service emits
 * ```ts
 * import { EventBus } from "@eventbus/core";
 * import { RecordingBackend } from "@eventbus/core/testing";
 *
 * const backend = new RecordingBackend();
 * const bus = new EventBus<{ "user.signup": { id: string } }>({ backend });
 * await bus.emit("user.signup", { id: "u1" });
 * console.assert(backend.published.length === 1);
 * console.assert(backend.published[0]?.type === "user.signup");
 * await bus.close();
 * ```
 *
 * @module
 */

import type {
  AsyncBackend,
  BackendTelemetry,
  CloseReport,
  ConsumeOptions,
  ConsumerSpec,
  Deliver,
  PublishOptions,
} from "./backend.ts";
import type { DeadLetters } from "./dead_letters.ts";
import { EventBusClosedError } from "./errors.ts";
import { MemoryDeadLetters } from "./_memory_dead_letters.ts";
import type { Event } from "./event.ts";

/**
 * A remote backend that records every published event and runs nothing,
 * like the seed design's MockBackend. Because it is remote, the bus checks
 * payloads are JSON-safe, exactly as with a broker.
 *
 * @example Checking what a service publishes and consumes
 * ```ts
 * import { EventBus } from "@eventbus/core";
 * import { RecordingBackend } from "@eventbus/core/testing";
 * const backend = new RecordingBackend();
 * const bus = new EventBus({ backend });
 * bus.subscribe("job.run", () => {}, { async: true, name: "runner" });
 * await bus.listen();
 * await bus.emit("job.run", { n: 1 });
 * console.assert(backend.published[0]?.data !== undefined);
 * console.assert(backend.consumers[0]?.name === "runner");
 * await bus.close();
 * ```
 */
export class RecordingBackend implements AsyncBackend, AsyncDisposable {
  /** Always `"recording"`. */
  readonly name: string = "recording";
  /** Always `true`: the bus treats it as a broker. */
  readonly remote: boolean = true;
  /** For instrumentation: system `"recording"`, destination the type. */
  readonly telemetry: BackendTelemetry = {
    system: "recording",
    destination: (type) => type,
  };
  /** Every accepted event, in publish order. */
  readonly published: Event[] = [];
  /** Every consumer attached by `listen()`, in order. */
  readonly consumers: ConsumerSpec[] = [];
  /** Always empty: a recording backend runs no delivery. */
  readonly deadLetters: DeadLetters = new MemoryDeadLetters(
    0,
    () => Promise.resolve(false),
  );
  #closed = false;

  /**
   * Records the event.
   *
   * @param event The event.
   * @param options The caller's signal.
   * @returns At once.
   * @throws {EventBusClosedError} After `close()`.
   */
  publish(event: Event, options?: PublishOptions): Promise<void> {
    if (options?.signal?.aborted) return Promise.reject(options.signal.reason);
    if (this.#closed) {
      return Promise.reject(new EventBusClosedError(event.type));
    }
    this.published.push(event);
    return Promise.resolve();
  }

  /**
   * Records the consumers; delivers nothing.
   *
   * @param _deliver Unused.
   * @param options The consumers.
   * @returns At once.
   */
  consume(_deliver: Deliver, options: ConsumeOptions): Promise<void> {
    this.consumers.push(...options.consumers);
    return Promise.resolve();
  }

  /** Forgets what was recorded. */
  clear(): void {
    this.published.length = 0;
    this.consumers.length = 0;
  }

  /**
   * Stops accepting events.
   *
   * @returns An empty report.
   */
  close(): Promise<CloseReport> {
    this.#closed = true;
    return Promise.resolve({ completed: 0, abandoned: [] });
  }

  /** Same as `close()`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
