// Copyright 2026 the @eventbus/core authors. MIT license.
// The errors of a backend (a broker or its client), re-exported by
// errors.ts: BackendError and UnroutableEventError with their options.

/**
 * Options of {@linkcode BackendError}.
 *
 * @example A refusal that no retry can change
 * ```ts
 * import { BackendError, type BackendErrorOptions } from "@eventbus/core";
 * const options: BackendErrorOptions = { permanent: true };
 * const error = new BackendError("nats-jetstream", "Cannot publish \"a\": the message is larger than max_payload", options);
 * console.assert(error.permanent);
 * ```
 */
export interface BackendErrorOptions extends ErrorOptions {
  /**
   * Whether trying the same thing again cannot succeed (an event the broker
   * will never take, a configuration conflict), as opposed to a broker that
   * is down or busy.
   * @default {false}
   */
  permanent?: boolean | undefined;
}

/**
 * A backend (a broker or its client) failed: it is down, refused the event,
 * or the configuration conflicts with what exists. `cause` keeps the
 * client's own error; `permanent` says whether trying again can help.
 *
 * @example Telling which backend failed
 * ```ts
 * import { BackendError } from "@eventbus/core";
 * const error = new BackendError("nats-jetstream", "Cannot publish \"a\": no ack");
 * console.assert(error.backend === "nats-jetstream" && !error.permanent);
 * ```
 */
export class BackendError extends Error {
  /** The backend's `name`, such as `"nats-jetstream"`. */
  readonly backend: string;
  /** Whether trying the same thing again cannot succeed. */
  readonly permanent: boolean;

  /**
   * Creates the error for a failed backend.
   *
   * @param backend The backend's `name`.
   * @param message What failed, the state, and what to do.
   * @param options `cause` (the client's error) and `permanent`.
   */
  constructor(backend: string, message: string, options?: BackendErrorOptions) {
    super(message, options);
    this.name = "BackendError";
    this.backend = backend;
    this.permanent = options?.permanent ?? false;
  }
}

/**
 * Options of {@linkcode UnroutableEventError}.
 *
 * @example Naming where the backend looked
 * ```ts
 * import { UnroutableEventError, type UnroutableEventErrorOptions } from "@eventbus/core";
 * const options: UnroutableEventErrorOptions = { searched: 'queue prefix "eventbus-"' };
 * const error = new UnroutableEventError("sqs", "user.signup", options);
 * console.assert(error.searched === 'queue prefix "eventbus-"');
 * ```
 */
export interface UnroutableEventErrorOptions extends ErrorOptions {
  /**
   * Where the backend looked for handler queues, as the message names it,
   * such as `exchange "events"` or `queue prefix "eventbus-"`.
   */
  searched?: string;
}

/**
 * A remote backend has no handler queue for the event's type: no worker of
 * any handler of the type has started (its `listen()` creates the queue),
 * and the producer declares no handler names for it (the backend option
 * `handlers`). So no handler would ever get the event: nothing was stored,
 * and `emit` rejects instead of accepting it for nobody.
 *
 * @example Telling the caller what to do
 * ```ts
 * import { UnroutableEventError } from "@eventbus/core";
 * const error = new UnroutableEventError("rabbitmq", "user.signup", {
 *   searched: 'exchange "events"',
 * });
 * console.assert(error.eventType === "user.signup");
 * console.assert(error.message.includes("start a worker"));
 * ```
 */
export class UnroutableEventError extends BackendError {
  /** The type of the event no handler queue exists for. */
  readonly eventType: string;
  /** Where the backend looked, such as `exchange "events"`, if it said. */
  readonly searched: string | undefined;

  /**
   * Creates the error for an event type without handler queues.
   *
   * @param backend The backend's `name`.
   * @param eventType The event's type.
   * @param options Where the backend looked, and standard error options.
   */
  constructor(
    backend: string,
    eventType: string,
    options?: UnroutableEventErrorOptions,
  ) {
    const searched = options?.searched;
    super(
      backend,
      `Cannot publish "${eventType}": no handler queue exists for it${
        searched === undefined ? "" : ` (searched ${searched})`
      }, so no handler would get it and nothing was stored; start a worker that subscribes to it first (its listen() creates the queue), or declare its handler names on the producer with the backend option handlers: { "${eventType}": ["<handler name>"] }`,
      options,
    );
    this.name = "UnroutableEventError";
    this.eventType = eventType;
    this.searched = searched;
  }
}
