// Copyright 2026 the @eventbus/core authors. MIT license.
// Stream ids and bounds of the Redis Streams backend, shared by its reader
// and its dead letters.

/** Orders stream ids (`<ms>-<seq>`) as Redis does. */
export function compareIds(a: string, b: string): number {
  const [am = 0n, as = 0n] = a.split("-").map(BigInt);
  const [bm = 0n, bs = 0n] = b.split("-").map(BigInt);
  return am === bm ? (as < bs ? -1 : as > bs ? 1 : 0) : am < bm ? -1 : 1;
}

/** The time in a stream id (`<ms>-<seq>`), as an ISO string (RFC 3339). */
export function timeOf(id: string): string {
  const ms = Number(id.split("-")[0]);
  return Number.isFinite(ms) ? new Date(ms).toISOString() : id;
}

/** `maxLen` as the scripts take it: `''` for no bound. */
export function trimArgument(maxLen: number): string {
  return maxLen === Infinity ? "" : String(maxLen);
}
