// Copyright 2026 the @eventbus/core authors. MIT license.
// A short, stable hash for names a broker must be given in a safer form
// (queue and consumer names): different names keep different hashes.

/**
 * The 32-bit FNV-1a hash of `text`'s UTF-16 code units, as 8 hex digits.
 *
 * @param text The name to hash.
 * @returns 8 lowercase hex digits, the same for the same text everywhere.
 *
 * @example A broker-safe suffix for a handler name
 * ```ts
 * import { fnv1a } from "@eventbus/core/backend-kit";
 *
 * const suffix = fnv1a("shipping/eu");
 * console.assert(/^[0-9a-f]{8}$/.test(suffix));
 * console.assert(suffix === fnv1a("shipping/eu"));
 * ```
 */
export function fnv1a(text: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193);
  }
  return (hash >>> 0).toString(16).padStart(8, "0");
}
