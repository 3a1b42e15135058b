// Copyright 2026 the @eventbus/core authors. MIT license.
// The bus's side of instrumentation: calls the user's hooks (such as otel())
// around publishes, tries and sync handlers so that a hook that throws is
// logged and skipped and never changes what the bus or the backend does.

import type {
  AsyncBackend,
  Delivery,
  DeliveryResult,
  Logger,
  PublishOptions,
} from "./backend.ts";
import { ACCEPTED } from "./_accepted.ts";
import { describeError } from "./errors.ts";
import { type Event, makeEvent } from "./event.ts";
import type { Handler, Instrumentation, TryScope } from "./types.ts";

interface Scope<A extends unknown[]> {
  run?<T>(fn: () => T): T;
  end(...outcome: A): void;
}

/** Calls one bus's instrumentation hooks, guarded. */
export class Instrumenter {
  #hooks: Instrumentation;
  #logger: Logger;

  constructor(hooks: Instrumentation, logger: Logger) {
    this.#hooks = hooks;
    this.#logger = logger;
  }

  /**
   * Hands `event` to `backend` inside a publish scope: returns the event as
   * published (with the scope's metadata; the caller's entries win) and the
   * backend's promise, unchanged.
   */
  publish<E extends Event>(
    event: E,
    backend: AsyncBackend,
    options: PublishOptions | undefined,
  ): { event: E; accepted: Promise<void> } {
    let scope;
    try {
      scope = this.#hooks.publish?.(event, backend);
    } catch (error) {
      this.#failed("publish", error);
    }
    if (!this.#isScope("publish", scope)) {
      return { event, accepted: backend.publish(event, options) };
    }
    const traced = this.#withMetadata(event, scope.metadata);
    let accepted: Promise<void>;
    try {
      accepted = backend.publish(traced, options);
    } catch (error) {
      this.#end(scope, error);
      throw error;
    }
    if (accepted === ACCEPTED) this.#end(scope); // taken at once
    else {
      accepted.then(
        () => this.#end(scope),
        (error: unknown) => this.#end(scope, error),
      );
    }
    return { event: traced, accepted };
  }

  /** The scope of one try, if the instrumentation gives one. */
  open(delivery: Delivery, backend: AsyncBackend): TryScope | undefined {
    let scope;
    try {
      scope = this.#hooks.deliver?.(delivery, backend);
    } catch (error) {
      this.#failed("deliver", error);
    }
    return this.#isScope("deliver", scope) ? scope : undefined;
  }

  /** Runs one try (`run`, which never rejects) inside its scope. */
  deliver(
    scope: TryScope,
    run: () => Promise<DeliveryResult>,
  ): Promise<DeliveryResult> {
    let result: Promise<DeliveryResult> | undefined;
    if (scope.run !== undefined) {
      const once = (): Promise<DeliveryResult> => result ??= run();
      this.#run(scope, once);
    }
    return (result ?? run()).then((outcome) => {
      this.#end(scope, outcome);
      return outcome;
    });
  }

  /**
   * The handler to register for a sync handler: `handler` itself unless
   * the instrumentation has an `inline` hook, else a wrapper that runs it
   * inside an inline scope.
   */
  inline(
    handler: Handler<unknown, string>,
    name: string,
  ): Handler<unknown, string> {
    const hooks = this.#hooks;
    if (typeof hooks.inline !== "function") return handler;
    return (event, ctx) => {
      let scope;
      try {
        scope = hooks.inline?.(event, name);
      } catch (error) {
        this.#failed("inline", error);
      }
      if (!this.#isScope("inline", scope)) return handler(event, ctx);
      let ran = false;
      let threw = false;
      let thrown: unknown;
      let result: void | Promise<void> = undefined;
      const once = (): void | Promise<void> => {
        if (ran) return result;
        ran = true;
        try {
          result = handler(event, ctx);
        } catch (error) {
          threw = true;
          thrown = error;
        }
        return result;
      };
      this.#run(scope, once);
      once();
      if (threw) {
        this.#end(scope, thrown);
        throw thrown;
      }
      if (!isPromiseLike(result)) {
        this.#end(scope);
        return result;
      }
      return result.then(() => this.#end(scope), (error: unknown) => {
        this.#end(scope, error);
        throw error;
      });
    };
  }

  /** Whether a hook gave a scope; logs one without `end()`. */
  #isScope<S>(hook: string, scope: S | undefined): scope is S {
    if (scope === undefined || scope === null) return false;
    if (typeof (scope as { end?: unknown }).end === "function") return true;
    this.#failed(hook, new TypeError("it returned a scope without end()"));
    return false;
  }

  /** Lets the scope run `once`; `once` runs anyway if the scope did not. */
  #run<A extends unknown[]>(scope: Scope<A>, once: () => unknown): void {
    if (scope.run === undefined) return;
    try {
      scope.run(once);
    } catch (error) {
      this.#failed("scope run()", error);
    }
  }

  #end<A extends unknown[]>(scope: Scope<A>, ...outcome: A): void {
    try {
      scope.end(...outcome);
    } catch (error) {
      this.#failed("scope end()", error);
    }
  }

  /** The event with the scope's metadata added; invalid entries are dropped. */
  #withMetadata<E extends Event>(
    event: E,
    added: Readonly<Record<string, string>> | undefined,
  ): E {
    if (added === undefined || added === null) return event;
    const fresh: Record<string, string> = {};
    let count = 0;
    for (const key in added) {
      if (Object.hasOwn(event.metadata, key)) continue; // the caller's wins
      fresh[key] = added[key]!;
      count++;
    }
    if (count === 0) return event;
    try {
      makeEvent(event.type, undefined, event.id, event.source, fresh);
    } catch (error) {
      this.#failed("publish", error);
      return event;
    }
    return { ...event, metadata: { ...event.metadata, ...fresh } };
  }

  #failed(hook: string, error: unknown): void {
    this.#logger.error(
      `Instrumentation ${hook} failed, the bus goes on without it: ${
        describeError(error)
      }`,
      { error },
    );
  }
}

function isPromiseLike(value: unknown): value is Promise<void> {
  return value !== null && typeof value === "object" &&
    typeof (value as { then?: unknown }).then === "function";
}
