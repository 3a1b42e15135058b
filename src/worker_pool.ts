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
  BackendTelemetry,
  CloseOptions,
  CloseReport,
  ConsumeOptions,
  Deliver,
  DeliveryResult,
  Logger,
  PublishOptions,
} from "./backend.ts";
import {
  describeError,
  EventBusClosedError,
  QueueFullError,
} from "./errors.ts";
import type { DeadLetter, DeadLetters } from "./dead_letters.ts";
import { ACCEPTED } from "./_accepted.ts";
import { MemoryDeadLetters } from "./_memory_dead_letters.ts";
import { guardLogger, SILENT_LOGGER } from "./_logger.ts";
import type { Event } from "./event.ts";
import { type Permit, Semaphore } from "./semaphore.ts";
import {
  DIRECT,
  type DirectDeliver,
  type DirectSink,
  type MaybeDirect,
} from "./_direct.ts";

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
   * How many accepted events may wait for a worker, counting each retry that
   * waits out its backoff as one more.
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
  /**
   * How many dead letters `deadLetters` keeps in memory; past it the oldest
   * is dropped, with a warning.
   * @default {1000}
   */
  deadLetterLimit?: number;
}

/**
 * An in-process async backend: at most `workers` handler calls run at once,
 * and up to `queueSize` deliveries wait beside them — for a worker or for a
 * retry's backoff — so memory stays bounded whatever the load. Failed tries
 * wait out their backoff without holding a worker, but they hold a queue
 * slot: a permanently failing handler backpressures `emit` instead of
 * growing memory. Handlers never start inside the `publish()` call.
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
  /**
   * The last `deadLetterLimit` dead letters, in memory: replay hands an
   * event again to the handler name that failed (if it is still
   * subscribed), waiting for room in the queue.
   */
  readonly deadLetters: DeadLetters;
  /** For instrumentation: system `"worker-pool"`, destination the type. */
  readonly telemetry: BackendTelemetry = {
    system: "worker-pool",
    destination: (type) => type,
  };

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
  /**
   * Retries waiting without a queue slot because none was free: each takes
   * the next slot released, before any emit does (backpressure).
   */
  #debtors = new Set<Task>();
  /** Accepted jobs not yet finished, oldest first (a linked list). */
  #openHead: Job | undefined;
  #openTail: Job | undefined;
  #timers = new Set<ReturnType<typeof setTimeout>>();
  #intake = new AbortController();
  #abort = new AbortController();
  #queued = 0;
  #completed = 0;
  #pumpScheduled = false;
  #memory: MemoryDeadLetters;
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
    const {
      workers = 10,
      queueSize = 1000,
      overflow = "wait",
      deadLetterLimit = 1000,
    } = options;
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
    if (!Number.isInteger(deadLetterLimit) || deadLetterLimit < 0) {
      throw new RangeError(
        `Cannot create worker pool: deadLetterLimit must be an integer of at least 0, got ${deadLetterLimit}`,
      );
    }
    this.#workers = workers;
    this.#memory = new MemoryDeadLetters(
      deadLetterLimit,
      (letter) => this.#replay(letter),
    );
    this.deadLetters = this.#memory;
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
   * the queue is full and `overflow` is `"wait"`. No handler starts before
   * this call has returned.
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
      this.#releaseSlot(slot);
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
    // Handlers start on a later microtask, never inside publish().
    if (!this.#pumpScheduled) {
      this.#pumpScheduled = true;
      // A resolved promise's then() is V8's own microtask: cheaper than
      // queueMicrotask(), which some runtimes wrap.
      ACCEPTED.then(this.#scheduledPump);
    }
  }

  #scheduledPump = (): void => {
    this.#pumpScheduled = false;
    this.#pump();
  };

  /**
   * Registers consumers: from now on each event of a consumer's type is
   * delivered once to one of the consumers sharing its name (round robin).
   * When the signal aborts, they take no new events; deliveries already
   * queued for their name still run.
   *
   * @param deliver Runs one try.
   * @param options The consumers, the signal that removes them, the logger.
   * @returns At once.
   * @throws {EventBusClosedError} After `close()`.
   */
  consume(deliver: Deliver, options: ConsumeOptions): Promise<void> {
    if (this.#closing !== undefined) {
      return Promise.reject(new EventBusClosedError());
    }
    const { consumers, signal } = options;
    if (signal?.aborted) return Promise.resolve();
    const consumer: Consumer = {
      deliver,
      direct: (deliver as MaybeDirect)[DIRECT],
      logger: options.logger === undefined
        ? SILENT_LOGGER
        : guardLogger(options.logger),
    };
    const joined: Group[] = [];
    for (const { type, name } of consumers) {
      let groups = this.#groups.get(type);
      if (groups === undefined) this.#groups.set(type, groups = new Map());
      let group = groups.get(name);
      if (group === undefined) {
        group = { name, type, consumers: [], turn: 0, last: consumer };
        groups.set(name, group);
      }
      group.consumers.push(consumer);
      joined.push(group);
      this.#targets.set(type, [...groups.values()]);
    }
    signal?.addEventListener("abort", () => {
      for (const group of joined) this.#leave(group, consumer);
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
      this.#queue = [];
      this.#queueHead = 0;
      this.#ready = [];
      this.#readyHead = 0;
      this.#debtors.clear();
      this.#openHead = this.#openTail = undefined;
      this.#queued = 0;
    }
    return { completed: this.#completed, abandoned };
  }

  /** Queues a dead letter's event for its handler name alone, if it is there. */
  async #replay(letter: DeadLetter): Promise<boolean> {
    const { event, handler } = letter;
    if (this.#groups.get(event.type)?.get(handler) === undefined) return false;
    const slot = await this.#slots.acquire({ signal: this.#intake.signal });
    const group = this.#groups.get(event.type)?.get(handler);
    if (group === undefined || this.#closing !== undefined) {
      this.#releaseSlot(slot);
      return false;
    }
    this.#enqueue(event, [group], slot);
    return true;
  }

  #leave(group: Group, consumer: Consumer): void {
    const index = group.consumers.indexOf(consumer);
    if (index !== -1) group.consumers.splice(index, 1);
    if (group.consumers.length > 0) return;
    // The name takes no new events; what is queued for it still runs on
    // `group.last`. The name is free for a new group, of any type.
    const groups = this.#groups.get(group.type);
    if (groups?.get(group.name) !== group) return;
    groups.delete(group.name);
    if (groups.size === 0) {
      this.#groups.delete(group.type);
      this.#targets.delete(group.type);
    } else {
      this.#targets.set(group.type, [...groups.values()]);
    }
  }

  #pump(): void {
    while (this.#running < this.#workers) {
      if (this.#readyHead < this.#ready.length) {
        this.#running++;
        const task = this.#ready[this.#readyHead]!;
        this.#ready[this.#readyHead++] = undefined as unknown as Task;
        if (this.#readyHead === this.#ready.length) {
          this.#ready = [];
          this.#readyHead = 0;
        }
        if (task.slot === undefined) this.#debtors.delete(task);
        else this.#releaseSlot(task.slot);
        this.#run(task.job, task.group, task.attempt);
      } else if (this.#queueHead < this.#queue.length) {
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
          this.#releaseSlot(job.slot);
        }
        this.#run(job, group, 1);
      } else {
        return;
      }
    }
  }

  /** Gives a queue slot to the oldest retry waiting without one, or frees it. */
  #releaseSlot(slot: Permit): void {
    if (this.#debtors.size > 0) {
      for (const debtor of this.#debtors) {
        this.#debtors.delete(debtor);
        debtor.slot = slot;
        return;
      }
    }
    slot.release();
  }

  #run(job: Job, group: Group, attempt: number): void {
    this.#queued--;
    const { consumers } = group;
    const consumer = consumers.length === 0
      ? group.last // every consumer left: it still runs what was accepted
      : consumers[group.turn++ % consumers.length]!;
    group.last = consumer;
    const delivery = {
      event: job.event,
      handler: group.name,
      attempt,
      signal: this.#abort.signal,
    };
    if (consumer.direct !== undefined) {
      // A bus's own Deliver: its result comes to #sink, one hop sooner.
      consumer.direct(delivery, this.#sink, { job, group, attempt, consumer });
      return;
    }
    consumer.deliver(delivery).then(
      (result) => this.#settle(job, group, attempt, result),
      (error: unknown) => this.#broken(job, group, consumer, error),
    );
  }

  #sink: DirectSink<Run> = {
    settled: (run, result) =>
      this.#settle(run.job, run.group, run.attempt, result),
    broken: (run, error) =>
      this.#broken(run.job, run.group, run.consumer, error),
  };

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
        this.#memory.add(result.error, group.last.logger);
        this.#finish(job);
        break;
      case "retry": {
        // The waiting retry holds a queue slot: taken now if one is free,
        // else the next one released (emits wait meanwhile).
        this.#queued++;
        const task: Task = {
          job,
          group,
          attempt: attempt + 1,
          slot: this.#slots.tryAcquire(),
        };
        if (task.slot === undefined) this.#debtors.add(task);
        // Even a 0 ms delay waits for a timer: retries never starve the
        // event loop.
        const timer = setTimeout(() => {
          this.#timers.delete(timer);
          this.#ready.push(task);
          this.#pump();
        }, Math.max(0, result.delay));
        this.#timers.add(timer);
        break;
      }
      case "abandoned":
        break; // only after #abort, handled above
    }
    this.#pump();
  }

  /**
   * A Deliver that rejected broke its contract: the pool never retries on
   * its own account, so the delivery ends here, logged at error level.
   */
  #broken(job: Job, group: Group, consumer: Consumer, error: unknown): void {
    this.#running--;
    if (this.#abort.signal.aborted) return;
    consumer.logger.error(
      `Cannot deliver "${job.event.type}" (id "${job.event.id}") to handler "${group.name}": its Deliver rejected (${
        describeError(error)
      }), so the delivery ends without a retry; a Deliver must resolve with a result`,
      { error, event: job.event.id, handler: group.name },
    );
    this.#finish(job);
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

interface Consumer {
  readonly deliver: Deliver;
  /** The same Deliver without a promise, when a bus of ours made it. */
  readonly direct: DirectDeliver | undefined;
  readonly logger: Logger;
}

interface Group {
  readonly name: string;
  readonly type: string;
  readonly consumers: Consumer[];
  turn: number;
  /** The consumer that ran its latest delivery: runs the rest after all left. */
  last: Consumer;
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
  /** The queue slot it holds while it waits, if one was free. */
  slot: Permit | undefined;
}

/** One try in progress, as the sink gets it back. */
type Run = { job: Job; group: Group; attempt: number; consumer: Consumer };
