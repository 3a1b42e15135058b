// Copyright 2026 the @eventbus/core authors. MIT license.
// Which handlers a bus has: per event type a snapshot of its subscriptions
// (all, sync only, async only; replaced on change, never mutated, so an emit
// iterates a stable list), the async handler names in use, and the numbers
// of default names.

import type { RetryPolicy } from "./retry.ts";
import type { Runnable } from "./_try.ts";
import type { Handler } from "./types.ts";

/** One subscription. */
export interface Entry extends Runnable {
  readonly type: string;
  readonly handler: Handler<unknown, string>;
  readonly async: boolean;
  readonly name: string;
  /** Named by the user (or already warned that it has none). */
  named: boolean;
  readonly timeout: number | undefined;
  readonly retry: RetryPolicy;
  /** Detaches the async handler's consumer. */
  detach: AbortController | undefined;
  /** The consumer's attachment, in flight or done. */
  attached: Promise<void> | undefined;
}

/** The subscriptions of one event type, in subscription order. */
export interface TypeEntries {
  readonly all: readonly Entry[];
  readonly sync: readonly Entry[];
  readonly async: readonly Entry[];
}

/** The subscriptions of one bus. */
export class Registry {
  #byType = new Map<string, TypeEntries>();
  /** Async handler names in use: the type each handles, and how often. */
  #names = new Map<string, { type: string; count: number }>();
  /** Per type with async subscriptions, the last default name's number. */
  #ordinals = new Map<string, number>();

  /** The subscriptions of `type`, or undefined when it has none. */
  get(type: string): TypeEntries | undefined {
    return this.#byType.get(type);
  }

  /** Every async subscription, of every type. */
  *asyncEntries(): Iterable<Entry> {
    for (const entries of this.#byType.values()) yield* entries.async;
  }

  /**
   * The name of a new async handler of `type`: `given`, or the type's next
   * default name `"<type>#<n>"`.
   *
   * @throws {TypeError} When the name already handles another type.
   */
  asyncName(type: string, given: string | undefined): string {
    const name = given ?? `${type}#${(this.#ordinals.get(type) ?? 0) + 1}`;
    const known = this.#names.get(name);
    if (known !== undefined && known.type !== type) {
      throw new TypeError(
        `Cannot subscribe "${name}" to "${type}": that name already handles "${known.type}", give each handler its own name`,
      );
    }
    return name;
  }

  /** Adds a subscription (its name from {@linkcode asyncName} if async). */
  add(entry: Entry): void {
    const { type, name } = entry;
    if (entry.async) {
      const known = this.#names.get(name);
      if (known === undefined) this.#names.set(name, { type, count: 1 });
      else known.count++;
      if (name === `${type}#${(this.#ordinals.get(type) ?? 0) + 1}`) {
        this.#ordinals.set(type, (this.#ordinals.get(type) ?? 0) + 1);
      }
    }
    this.#set(type, [...(this.#byType.get(type)?.all ?? []), entry]);
  }

  /**
   * Removes a subscription: its name and default numbering are freed.
   *
   * @returns Whether it was the last async subscription of its name.
   */
  remove(entry: Entry): boolean {
    const { type } = entry;
    const rest = (this.#byType.get(type)?.all ?? []).filter((e) => e !== entry);
    this.#set(type, rest);
    if (!entry.async) return false;
    const known = this.#names.get(entry.name);
    let freed = false;
    if (known !== undefined && --known.count === 0) {
      this.#names.delete(entry.name);
      freed = true;
    }
    if (!rest.some((e) => e.async)) this.#ordinals.delete(type);
    return freed;
  }

  #set(type: string, all: Entry[]): void {
    if (all.length === 0) {
      this.#byType.delete(type);
      return;
    }
    this.#byType.set(type, {
      all,
      sync: all.filter((e) => !e.async),
      async: all.filter((e) => e.async),
    });
  }
}
