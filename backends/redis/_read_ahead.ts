// Copyright 2026 the @eventbus/core authors. MIT license.
// The read-ahead buffer of one Redis Streams reader: entries read (or
// claimed) beyond the free handler slots wait here, oldest first, for a
// slot. They are in the group's pending entries list under this consumer
// from the moment they are read, so the reader refreshes their idle time
// like running entries (no other worker takes them while they wait), and
// hands them back unstarted at close.

/** An entry waiting for a slot, with the delivery counter it came with. */
export interface Ahead<E> {
  readonly id: string;
  readonly entry: E;
  /** Its delivery counter: the attempt it runs as. */
  readonly attempt: number;
}

/** Entries read ahead of the handler slots, oldest first. */
export class ReadAhead<E> {
  #items: Ahead<E>[] = [];
  #head = 0;

  /** How many entries wait. */
  get size(): number {
    return this.#items.length - this.#head;
  }

  /** Whether the entry `id` waits here (a scan: for the rare sweeps). */
  has(id: string): boolean {
    for (let i = this.#head; i < this.#items.length; i++) {
      if (this.#items[i]!.id === id) return true;
    }
    return false;
  }

  /** The ids of the waiting entries. */
  ids(): string[] {
    return this.#items.slice(this.#head).map((item) => item.id);
  }

  /** Adds an entry at the end. */
  push(id: string, entry: E, attempt: number): void {
    this.#items.push({ id, entry, attempt });
  }

  /** Takes the oldest entry, if any. */
  shift(): Ahead<E> | undefined {
    const item = this.#items[this.#head];
    if (item === undefined) return undefined;
    this.#items[this.#head++] = undefined as unknown as Ahead<E>;
    if (this.#head === this.#items.length) {
      this.#items = [];
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }

  /** Takes every entry, oldest first. */
  clear(): Ahead<E>[] {
    const all = this.#items.slice(this.#head);
    this.#items = [];
    this.#head = 0;
    return all;
  }
}
