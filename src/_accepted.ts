// Copyright 2026 the @eventbus/core authors. MIT license.
// A private fast path between the bus and the backends of this package.

/**
 * What a backend of this package returns from `publish()` when it took the
 * event at once: an already resolved promise that the bus recognises, so
 * `emit` resolves without another turn of the microtask queue. Any other
 * promise works the same, one turn later.
 */
export const ACCEPTED: Promise<void> = Promise.resolve();
