// Copyright 2026 the @eventbus/core authors. MIT license.
// The options of PostgresOutbox, checked and resolved: defaults filled in,
// every number in range, the table's names and statements derived, and the
// relay's settings built. Warns when the lease is not shorter than the
// target's duplicate window.

import type { AsyncBackend, Logger } from "./backend.ts";
import { CONSOLE_LOGGER, guardLogger } from "./_logger.ts";
import type { RelaySettings } from "./_outbox_relay.ts";
import {
  type OutboxNames,
  outboxNames,
  type OutboxStatements,
  outboxStatements,
} from "./_outbox_sql.ts";
import type { PostgresOutboxOptions } from "./_postgres_types.ts";
import {
  checkExecutor,
  describeValue,
  type SqlExecutor,
} from "./_postgres_clients.ts";

/** The outbox table's name unless one is given. */
export const DEFAULT_TABLE = "eventbus_outbox";

/** What an outbox runs on, resolved from its options. */
export interface ResolvedOutbox {
  readonly sql: SqlExecutor;
  readonly target: AsyncBackend;
  readonly names: OutboxNames;
  readonly statements: OutboxStatements;
  readonly notify: boolean;
  readonly logger: Logger;
  /** The relay's settings; undefined with `relay: false`. */
  readonly relay: RelaySettings | undefined;
}

/**
 * Checks and resolves the options of a `PostgresOutbox`.
 *
 * @param options As given to the constructor.
 * @param isOutbox Whether a target is itself an outbox (refused).
 * @throws {TypeError} When `sql` or `relaySql` is not an executor, `target`
 *   is not a backend, or the table name is not a lower-case SQL name.
 * @throws {RangeError} When a number is out of range.
 */
export function resolveOutboxOptions(
  options: PostgresOutboxOptions,
  isOutbox: (target: AsyncBackend) => boolean,
): ResolvedOutbox {
  if (options === null || typeof options !== "object") {
    throw new TypeError(
      `Cannot create PostgresOutbox: options must be an object with sql and target, got ${
        describeValue(options)
      }`,
    );
  }
  const {
    sql,
    target,
    table = DEFAULT_TABLE,
    relay = true,
    relaySql = sql,
    batchSize = 100,
    pollInterval = 500,
    lease = 30_000,
    notify = false,
    concurrency = 16,
    maxAttempts = 10,
    backoff = {},
    logger = CONSOLE_LOGGER,
  } = options;
  checkExecutor(sql, "Cannot create PostgresOutbox: sql");
  checkExecutor(relaySql, "Cannot create PostgresOutbox: relaySql");
  checkTarget(target, isOutbox);
  const { initial = 200, max = 10_000 } = backoff;
  positiveInteger("batchSize", batchSize, 10_000);
  positiveInteger("pollInterval", pollInterval);
  positiveInteger("lease", lease, 2 ** 31 - 1, 100);
  positiveInteger("concurrency", concurrency, 1_000);
  positiveInteger("maxAttempts", maxAttempts, 1_000_000);
  positiveInteger("backoff.initial", initial);
  positiveInteger("backoff.max", max, 2 ** 31 - 1, initial);
  const names = outboxNames(table);
  const statements = outboxStatements(names);
  const guarded = guardLogger(logger);
  const duplicateWindow = (target as { duplicateWindow?: unknown })
    .duplicateWindow;
  if (
    relay && typeof duplicateWindow === "number" && lease >= duplicateWindow
  ) {
    guarded.warn(
      `PostgresOutbox "${table}": the lease (${lease} ms) is not shorter than the duplicate window of "${target.name}" (${duplicateWindow} ms), so an event published again after a relay crash may be delivered twice; lower lease or raise the target's duplicateWindow`,
    );
  }
  return {
    sql,
    target,
    names,
    statements,
    notify: notify === true,
    logger: guarded,
    relay: relay
      ? {
        sql: relaySql,
        target,
        statements,
        table,
        channel: names.channel,
        batchSize,
        pollInterval,
        lease,
        concurrency,
        maxAttempts,
        backoffInitial: initial,
        backoffMax: max,
        notify: notify === true,
        logger: guarded,
      }
      : undefined,
  };
}

function checkTarget(
  target: unknown,
  isOutbox: (target: AsyncBackend) => boolean,
): asserts target is AsyncBackend {
  const backend = target as Partial<AsyncBackend> | null;
  if (
    backend === null || typeof backend !== "object" ||
    typeof backend.publish !== "function" ||
    typeof backend.consume !== "function" ||
    typeof backend.close !== "function"
  ) {
    throw new TypeError(
      `Cannot create PostgresOutbox: target must be an AsyncBackend (publish, consume, close), such as a JetStreamBackend, got ${
        describeValue(target)
      }`,
    );
  }
  if (isOutbox(backend as AsyncBackend)) {
    throw new TypeError(
      "Cannot create PostgresOutbox: target is another PostgresOutbox, give it the broker backend its relay publishes to",
    );
  }
}

function positiveInteger(
  name: string,
  value: unknown,
  max = 2 ** 31 - 1,
  min = 1,
): void {
  if (
    typeof value !== "number" || !Number.isInteger(value) || value < min ||
    value > max
  ) {
    throw new RangeError(
      `Cannot use ${name}: it must be an integer from ${min} to ${max}, got ${
        describeValue(value)
      }`,
    );
  }
}
