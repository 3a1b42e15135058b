// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * Retry policies and exponential backoff with full jitter, shared by the
 * worker pool and every broker backend.
 *
 * @module
 */

/**
 * How an async handler is retried.
 *
 * @example Five tries with a slower backoff
 * ```ts
 * import type { RetryPolicy } from "@eventbus/core";
 * const policy: RetryPolicy = { attempts: 5, backoff: { initial: 200, max: 10_000 } };
 * console.assert(policy.attempts === 5);
 * ```
 */
export interface RetryPolicy {
  /** Total tries, at least 1. @default {3} */
  attempts: number;
  /** The delay between tries. */
  backoff?: BackoffOptions;
}

/**
 * Exponential backoff: `min(max, initial * multiplier ** (attempt - 1))`.
 *
 * @example A slower, tripling backoff without jitter
 * ```ts
 * import { backoffDelay, type BackoffOptions } from "@eventbus/core";
 * const backoff: BackoffOptions = {
 *   initial: 1000,
 *   max: 60_000,
 *   multiplier: 3,
 *   jitter: false,
 * };
 * console.assert(backoffDelay({ attempts: 4, backoff }, 2) === 3000);
 * ```
 */
export interface BackoffOptions {
  /** The first delay, in ms. @default {100} */
  initial?: number;
  /** The largest delay, in ms. @default {30000} */
  max?: number;
  /** The growth factor per try. @default {2} */
  multiplier?: number;
  /** Full jitter: a uniformly random delay between 0 and the computed one. @default {true} */
  jitter?: boolean;
}

/**
 * The policy used when neither the bus nor the subscription sets one: three
 * tries, 100 ms doubling to at most 30 s, with full jitter.
 *
 * @example Reading the default policy
 * ```ts
 * import { DEFAULT_RETRY_POLICY } from "@eventbus/core";
 * console.assert(DEFAULT_RETRY_POLICY.attempts === 3);
 * ```
 */
export const DEFAULT_RETRY_POLICY: Readonly<RetryPolicy> = Object.freeze({
  attempts: 3,
  backoff: Object.freeze({
    initial: 100,
    max: 30_000,
    multiplier: 2,
    jitter: true,
  }),
});

/**
 * Returns the delay before the try after try number `attempt` failed:
 * exponential backoff with full jitter ("Exponential Backoff And Jitter",
 * AWS Architecture Blog, 2015).
 *
 * @param policy The retry policy.
 * @param attempt The try that just failed, starting at 1.
 * @param random A source of numbers in [0, 1), for tests.
 * @returns The delay in whole milliseconds, between 0 and `backoff.max`.
 *
 * @example Delays without jitter
 * ```ts
 * import { backoffDelay } from "@eventbus/core";
 * const policy = { attempts: 5, backoff: { initial: 100, jitter: false } };
 * console.assert(backoffDelay(policy, 1) === 100);
 * console.assert(backoffDelay(policy, 3) === 400);
 * ```
 */
export function backoffDelay(
  policy: RetryPolicy,
  attempt: number,
  random: () => number = Math.random,
): number {
  const {
    initial = 100,
    max = 30_000,
    multiplier = 2,
    jitter = true,
  } = policy.backoff ?? {};
  const exponent = Math.max(0, attempt - 1);
  const ceiling = Math.min(max, initial * multiplier ** exponent);
  return Math.round(jitter ? random() * ceiling : ceiling);
}

/**
 * Checks a retry policy and returns it with every default filled in.
 *
 * @param policy The policy to check, or `undefined` for the default.
 * @param fallback The policy whose values fill what `policy` leaves out.
 * @returns A complete policy.
 * @throws {RangeError} When `attempts` is not an integer of at least 1, or a
 *   backoff value is negative, not finite, or `multiplier` is below 1.
 *
 * @example Filling in the defaults
 * ```ts
 * import { resolveRetryPolicy } from "@eventbus/core";
 * const policy = resolveRetryPolicy({ attempts: 1 });
 * console.assert(policy.backoff?.initial === 100);
 * ```
 */
export function resolveRetryPolicy(
  policy: RetryPolicy | undefined,
  fallback: Readonly<RetryPolicy> = DEFAULT_RETRY_POLICY,
): RetryPolicy {
  if (policy === undefined) return fallback;
  const { attempts } = policy;
  if (!Number.isInteger(attempts) || attempts < 1) {
    throw new RangeError(
      `Cannot use retry policy: attempts must be an integer of at least 1, got ${attempts}`,
    );
  }
  const backoff = { ...fallback.backoff, ...policy.backoff };
  for (const key of ["initial", "max", "multiplier"] as const) {
    const value = backoff[key];
    if (value !== undefined && (!Number.isFinite(value) || value < 0)) {
      throw new RangeError(
        `Cannot use retry policy: backoff.${key} must be a finite number of at least 0, got ${value}`,
      );
    }
  }
  if (backoff.multiplier !== undefined && backoff.multiplier < 1) {
    throw new RangeError(
      `Cannot use retry policy: backoff.multiplier must be at least 1, got ${backoff.multiplier}`,
    );
  }
  return { attempts, backoff };
}
