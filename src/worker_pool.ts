// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * The default async backend: an in-process worker pool with a bounded queue,
 * built on a semaphore (queue slots, FIFO and abortable), a count of busy
 * workers and an AbortSignal.
 *
 * @module
 */

import type {
  AsyncBackend,
  CloseOptions,
  CloseReport,
  ConsumeOptions,
  Deliver,
  DeliveryResult,
  PublishOptions,
} from "./backend.ts";
import { EventBusClosedError, QueueFullError } from "./errors.ts";
import type { Event } from "./event.ts";
import { type Permit, Semaphore } from "./semaphore.ts";

/**
 * What publish returns when the event was queued (or nobody consumes it)
 * at once; the bus resolves emit without another turn when it sees it.
 * Internal, not re-exported.
 */
export const ACCEPTED: Promise<void> = Promise.resolve();

/**
 * Options of {@linkcode WorkerPool}.
 *
 * @example Rejecting instead of waiting when the queue is full
 * ```ts
 * import { EventBus, WorkerPool } from "@eventbus/core";
 * const pool = new WorkerPool({ workers: 2, queueSize: 100, overflow: "reject" });
 * const bus = new EventBus({ backend: pool });
 * await bus.close();
 * ```
 */
export interface WorkerPoolOptions {
  /**
   * How many handler calls may run at once.
   * @default {10}
   */
  workers?: number;
  /**
   * How many accepted events may wait for a worker.
   * @default {1000}
   */
  queueSize?: number;
  /**
   * What `emit` does when the queue is full: `"wait"` for room (backpressure,
   * abortable by the emit's signal) or `"reject"` at once with
   * `QueueFullError`.
   * @default {"wait"}
   */
  overflow?: "wait" | "reject";
}

/**
 * An in-process async backend: at most `workers` handler calls run at once,
 * and up to `queueSize` accepted events wait beside them, so memory stays
 * bounded whatever the load. Failed tries are retried after their backoff
 * without holding a worker.
 *
 * @example Backpressure with a small queue
 * ```ts
 * import { EventBus, WorkerPool } from "@eventbus/core";
 * const bus = new EventBus({ backend: new WorkerPool({ workers: 4, queueSize: 100 }) });
 * let handled = 0;
 * bus.subscribe("image.resize", async () => {
 *   await new Promise((resolve) => setTimeout(resolve, 1));
 *   handled++;
 * }, { async: true, name: "resizer" });
 * for (let i = 0; i < 500; i++) await bus.emit("image.resize", { i });
 * const report = await bus.close();
 * console.assert(handled === 500 && report.abandoned.length === 0);
 * ```
 */
export class WorkerPool implements AsyncBackend, AsyncDisposable {
  /** Always `"worker-pool"`. */
  readonly name: string = "worker-pool";
  /** Always `false`: deliveries run in this process. */
  readonly remote: boolean = false;

  #workers: number;
  #running = 0;
  #slots: Semaphore;
  #queueSize: number;
  #overflow: "wait" | "reject";
  #groups = new Map<string, Map<string, Group>>();
  /** Per type, a snapshot of its groups: replaced on change, never mutated. */
  #targets = new Map<string, Group[]>();
  #queue: Job[] = [];
  #queueHead = 0;
  #ready: Task[] = [];
  #readyHead = 0;
  /** Accepted jobs not yet finished, oldest first (a linked list). */
  #openHead: Job | undefined;
  #openTail: Job | undefined;
  #timers = new Set<ReturnType<typeof setTimeout>>();
  #intake = new AbortController();
  #abort = new AbortController();
  #queued = 0;
  #completed = 0;
  #onIdle: (() => void) | undefined;
  #closing: Promise<CloseReport> | undefined;

  /**
   * Creates an empty pool: no handler runs until events are published.
   *
   * @param options Workers, queue size and overflow mode.
   * @throws {RangeError} When `workers` or `queueSize` is not a positive
   *   integer, or `overflow` is not `"wait"` or `"reject"`.
   */
  constructor(options: WorkerPoolOptions = {}) {
    const { workers = 10, queueSize = 1000, overflow = "wait" } = options;
    if (!Number.isInteger(workers) || workers < 1) {
      throw new RangeError(
        `Cannot create worker pool: workers must be an integer of at least 1, got ${workers}`,
      );
    }
    if (!Number.isInteger(queueSize) || queueSize < 1) {
      throw new RangeError(
        `Cannot create worker pool: queueSize must be an integer of at least 1, got ${queueSize}`,
      );
    }
    if (overflow !== "wait" && overflow !== "reject") {
      throw new RangeError(
        `Cannot create worker pool: overflow must be "wait" or "reject", got ${
          JSON.stringify(overflow)
        }`,
      );
    }
    this.#workers = workers;
    this.#slots = new Semaphore(queueSize);
    this.#queueSize = queueSize;
    this.#overflow = overflow;
  }

  /** Deliveries waiting for a worker or for their retry delay. */
  get queued(): number {
    return this.#queued;
  }

  /**
   * Queues one event for every consumer of its type, waiting for room when
   * the queue is full and `overflow` is `"wait"`.
   *
   * @param event The event.
   * @param options The signal that stops waiting for room.
   * @returns Once the event is queued.
   * @throws {QueueFullError} When the queue is full and `overflow` is `"reject"`.
   * @throws {EventBusClosedError} After `close()`.
   * @throws The signal's reason when it aborts while waiting for room.
   */
  publish(event: Event, options?: PublishOptions): Promise<void> {
    // Not async: the common case (room in the queue) allocates no promise.
    try {
      if (this.#closing !== undefined) {
        throw new EventBusClosedError(event.type);
      }
      const targets = this.#targets.get(event.type);
      if (targets === undefined) return ACCEPTED; // nobody consumes it here
      const slot = this.#slots.tryAcquire();
      if (slot === undefined) return this.#publishWhenRoom(event, options);
      this.#enqueue(event, targets, slot);
      return ACCEPTED;
    } catch (error) {
      return Promise.reject(error);
    }
  }

  async #publishWhenRoom(
    event: Event,
    options: PublishOptions | undefined,
  ): Promise<void> {
    if (this.#overflow === "reject") {
      throw new QueueFullError(event.type, this.#queueSize);
    }
    const signal = options?.signal;
    const slot = await this.#slots.acquire({
      signal: signal === undefined
        ? this.#intake.signal
        : AbortSignal.any([signal, this.#intake.signal]),
    });
    if (this.#closing !== undefined) {
      slot.release();
      throw new EventBusClosedError(event.type);
    }
    // Consumers may have come or gone while we waited.
    const targets = this.#targets.get(event.type);
    if (targets === undefined) {
      slot.release();
      return;
    }
    this.#enqueue(event, targets, slot);
  }

  #enqueue(event: Event, targets: Group[], slot: Permit): void {
    const job: Job = {
      event,
      targets,
      next: 0,
      pending: targets.length,
      slot,
      prev: this.#openTail,
      after: undefined,
    };
    if (this.#openTail === undefined) this.#openHead = job;
    else this.#openTail.after = job;
    this.#openTail = job;
    this.#queue.push(job);
    this.#queued += targets.length;
    this.#pump();
  }

  /**
   * Registers consumers: from now on each event of a consumer's type is
   * delivered once to one of the consumers sharing its name (round robin).
   *
   * @param deliver Runs one try.
   * @param options The consumers and the signal that removes them.
   * @returns At once.
   * @throws {EventBusClosedError} After `close()`.
   */
  consume(deliver: Deliver, options: ConsumeOptions): Promise<void> {
    if (this.#closing !== undefined) {
      return Promise.reject(new EventBusClosedError());
    }
    const { consumers, signal } = options;
    if (signal?.aborted) return Promise.resolve();
    const joined: Group[] = [];
    for (const { type, name } of consumers) {
      let groups = this.#groups.get(type);
      if (groups === undefined) this.#groups.set(type, groups = new Map());
      let group = groups.get(name);
      if (group === undefined) {
        groups.set(name, group = { name, type, consumers: [], turn: 0 });
      }
      group.consumers.push(deliver);
      joined.push(group);
      this.#targets.set(type, [...groups.values()]);
    }
    signal?.addEventListener("abort", () => {
      for (const group of joined) this.#leave(group, deliver);
    }, { once: true });
    return Promise.resolve();
  }

  /**
   * Stops intake (waiting and later publishes reject with
   * `EventBusClosedError`), lets queued and running deliveries finish until
   * `timeout`, then aborts the running handlers' signals and resolves without
   * waiting for them. Closing twice returns the same report.
   *
   * @param options Deadline (default 30 000 ms) and signal.
   * @returns Completed deliveries and the events left unfinished.
   */
  close(options?: CloseOptions): Promise<CloseReport> {
    this.#closing ??= this.#close(options);
    return this.#closing;
  }

  /** Closes the pool with the default timeout. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #close(options: CloseOptions | undefined): Promise<CloseReport> {
    const { timeout = 30_000, signal } = options ?? {};
    this.#intake.abort(new EventBusClosedError());
    if (this.#openHead !== undefined && !signal?.aborted) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      let onAbort: (() => void) | undefined;
      await new Promise<void>((resolve) => {
        this.#onIdle = resolve;
        timer = setTimeout(resolve, timeout);
        onAbort = resolve;
        signal?.addEventListener("abort", onAbort, { once: true });
      });
      clearTimeout(timer);
      if (onAbort !== undefined) signal?.removeEventListener("abort", onAbort);
      this.#onIdle = undefined;
    }
    const abandoned: Event[] = [];
    for (let job = this.#openHead; job !== undefined; job = job.after) {
      abandoned.push(job.event);
    }
    if (abandoned.length > 0) {
      this.#abort.abort(new EventBusClosedError());
      for (const timer of this.#timers) clearTimeout(timer);
      this.#timers.clear();
      for (let i = this.#queueHead; i < this.#queue.length; i++) {
        this.#queue[i]!.slot.release();
      }
      this.#queue = [];
      this.#queueHead = 0;
      this.#ready = [];
      this.#readyHead = 0;
      this.#openHead = this.#openTail = undefined;
      this.#queued = 0;
    }
    return { completed: this.#completed, abandoned };
  }

  #leave(group: Group, deliver: Deliver): void {
    const index = group.consumers.indexOf(deliver);
    if (index !== -1) group.consumers.splice(index, 1);
    if (group.consumers.length > 0) return;
    const groups = this.#groups.get(group.type);
    groups?.delete(group.name);
    if (groups?.size === 0) {
      this.#groups.delete(group.type);
      this.#targets.delete(group.type);
    } else if (groups !== undefined) {
      this.#targets.set(group.type, [...groups.values()]);
    }
  }

  #pump(): void {
    while (true) {
      let task: Task;
      if (this.#readyHead < this.#ready.length) {
        if (this.#running === this.#workers) return;
        this.#running++;
        task = this.#ready[this.#readyHead]!;
        this.#ready[this.#readyHead++] = undefined as unknown as Task;
        if (this.#readyHead === this.#ready.length) {
          this.#ready = [];
          this.#readyHead = 0;
        }
        this.#run(task.job, task.group, task.attempt);
      } else if (this.#queueHead < this.#queue.length) {
        if (this.#running === this.#workers) return;
        this.#running++;
        const job = this.#queue[this.#queueHead]!;
        const group = job.targets[job.next++]!;
        if (job.next === job.targets.length) {
          this.#queue[this.#queueHead++] = undefined as unknown as Job;
          if (this.#queueHead === this.#queue.length) {
            this.#queue = [];
            this.#queueHead = 0;
          } else if (this.#queueHead > 4096) {
            this.#queue = this.#queue.slice(this.#queueHead);
            this.#queueHead = 0;
          }
          job.slot.release();
        }
        this.#run(job, group, 1);
      } else {
        return;
      }
    }
  }

  #run(job: Job, group: Group, attempt: number): void {
    this.#queued--;
    const { consumers } = group;
    if (consumers.length === 0) {
      // Every consumer of this name unsubscribed: nobody is left to run it.
      this.#running--;
      this.#finish(job);
      return;
    }
    const deliver = consumers[group.turn++ % consumers.length]!;
    deliver({
      event: job.event,
      handler: group.name,
      attempt,
      signal: this.#abort.signal,
    }).then(
      (result) => this.#settle(job, group, attempt, result),
      // Deliver never rejects by contract; a broken one must not lose the job.
      (error: unknown) =>
        this.#settle(job, group, attempt, {
          status: "retry",
          delay: 0,
          error,
        }),
    );
  }

  #settle(
    job: Job,
    group: Group,
    attempt: number,
    result: DeliveryResult,
  ): void {
    this.#running--;
    if (this.#abort.signal.aborted) return; // closed: reported as abandoned
    switch (result.status) {
      case "completed":
        this.#completed++;
        this.#finish(job);
        break;
      case "dead-letter":
        this.#finish(job);
        break;
      case "retry": {
        this.#queued++;
        const task: Task = { job, group, attempt: attempt + 1 };
        if (result.delay <= 0) {
          this.#ready.push(task);
        } else {
          const timer = setTimeout(() => {
            this.#timers.delete(timer);
            this.#ready.push(task);
            this.#pump();
          }, result.delay);
          this.#timers.add(timer);
        }
        break;
      }
      case "abandoned":
        break; // only after #abort, handled above
    }
    this.#pump();
  }

  #finish(job: Job): void {
    if (--job.pending > 0) return;
    const { prev, after } = job;
    if (prev === undefined && this.#openHead !== job) return; // not open
    if (prev === undefined) this.#openHead = after;
    else prev.after = after;
    if (after === undefined) this.#openTail = prev;
    else after.prev = prev;
    job.prev = job.after = undefined;
    if (this.#openHead === undefined) this.#onIdle?.();
  }
}

interface Group {
  readonly name: string;
  readonly type: string;
  readonly consumers: Deliver[];
  turn: number;
}

interface Job {
  readonly event: Event;
  readonly targets: Group[];
  next: number;
  pending: number;
  readonly slot: Permit;
  /** Neighbours in the pool's list of open jobs. */
  prev: Job | undefined;
  after: Job | undefined;
}

interface Task {
  readonly job: Job;
  readonly group: Group;
  readonly attempt: number;
}
