// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * A Redis Streams backend for `@eventbus/core`: events cross the wire to
 * worker processes through one stream per event type, with consumer groups,
 * acknowledgements, delayed retries and a dead-letter stream.
 *
 * ## The client
 *
 * Built on node-redis (`@redis/client`, the core of the `redis` package,
 * without the Redis Stack modules): maintained by Redis itself, no
 * dependencies, and it runs unchanged on Deno, Bun and Node through their npm
 * support. It reconnects on its own and queues commands while it does, which
 * is what a broker client under an event bus needs. `ioredis` would do as
 * well, but it is maintained on a best-effort basis. The backend sends the
 * stream commands as written in the Redis manual (`sendCommand`), so the
 * module reads as a lesson in those commands, and any node-redis client fits,
 * RESP2 or RESP3.
 *
 * ## The Redis idioms, one by one
 *
 * - **One stream per event type**, `<prefix>:<type>`, written with
 *   `XADD ... MAXLEN ~ <maxLen>`: the approximate trim keeps memory bounded at
 *   almost no cost. Trimming ignores consumer groups: an entry older than the
 *   newest `maxLen` is dropped even if a group has not read it yet, so size
 *   `maxLen` above the backlog you expect.
 * - **Publishing is de-duplicated** by event id: a Lua script sets a marker
 *   key `<stream>:dedupe:<id>` with `SET NX PX <duplicateWindow>` and adds the
 *   entry only when the marker was new, atomically. A publish retried after
 *   a lost reply therefore adds one entry, not two.
 * - **One consumer group per handler name** on its type's stream, created with
 *   `XGROUP CREATE <stream> <name> 0 MKSTREAM`. Workers sharing a name are
 *   consumers of one group and compete; different names each see every entry.
 *   A new group starts at `0`: it works through what the stream still holds.
 * - **`XREADGROUP ... BLOCK`** on a dedicated connection per consumer (a
 *   blocked connection can do nothing else), `COUNT` = free handler slots, so
 *   at most `concurrency` deliveries run at once per handler and process.
 * - **`XACK` after success**, never before: an entry read but not
 *   acknowledged stays in the group's pending entries list (PEL).
 * - **Retries**: on a retry result the entry stays pending, and a timer in
 *   this process re-claims it after the delay with `XCLAIM` (which bumps its
 *   delivery counter) and runs it again. While it waits, and while a handler
 *   runs, a heartbeat re-claims the entries this process holds with
 *   `XCLAIM ... JUSTID` (which resets their idle time without counting a
 *   delivery), so no other worker takes a live entry. If the process dies, its
 *   entries stop being refreshed and are recovered by the next step. Keeping
 *   the entry pending, instead of re-adding a copy to a delay set, means the
 *   PEL stays the single durable record of unfinished work.
 * - **`XAUTOCLAIM <stream> <group> <me> <claimIdle>`** runs every `block` ms
 *   in every worker: entries idle for `claimIdle` ms (their worker died or
 *   lost its connection) move to a live worker.
 * - **Attempts come from the delivery counter**: 1 for a first read, bumped by
 *   each `XCLAIM`/`XAUTOCLAIM`; `XPENDING` reads it for recovered entries. An
 *   entry delivered more than `attempts + 3` times (its handler kept crashing
 *   the worker) is dead-lettered without another try.
 * - **A dead-letter stream**, `<prefix>-dead-letter` by default: after the
 *   last attempt a Lua script adds a copy (`event`, `handler`, `attempts`,
 *   `error`, `stream`, `id`) there and `XACK`s the original, atomically.
 *   Entries that are not valid events go there too, with the reason.
 * - **close()** stops reading (`CLIENT UNBLOCK` ends the blocked read at
 *   once), lets running handlers finish until the timeout, then aborts their
 *   signals and **releases** their entries with `XCLAIM ... IDLE <claimIdle>
 *   JUSTID`, which makes them claimable by the next worker's `XAUTOCLAIM` at
 *   once. Nothing is lost, so `close()` reports no abandoned events.
 *
 * ## Guarantees
 *
 * At least once: an event whose `emit` resolved is in Redis (as durable as
 * the server's persistence settings make it) and each handler name gets it
 * until a handler completes it or it is dead-lettered. A handler may see an
 * event twice when a worker lost its connection after handling it but
 * before its `XACK` went through; make handlers idempotent (the event id is
 * stable). Targets a single Redis server or a primary with replicas; Redis
 * Cluster would need the keys of one stream in one hash slot.
 *
 * Verified against Redis 7.0.15 on 127.0.0.1:6379 (the conformance suite, and
 * `CLIENT KILL` of the backend's connections while events flow) with
 * `@redis/client` 6.3, on Deno 2.9 and Bun 1.4.
 *
 * @example A producer and a worker
 * ```ts ignore
 * import { EventBus } from "@eventbus/core";
 * import { RedisStreamsBackend } from "@eventbus/core/redis";
 *
 * type Events = { "user.signup": { email: string } };
 * const backend = await RedisStreamsBackend.connect({ url: "redis://127.0.0.1:6379" });
 * await using bus = new EventBus<Events>({ backend });
 * bus.subscribe("user.signup", async (event, ctx) => {
 *   await fetch("https://mail.example/send", { method: "POST", body: event.data.email, signal: ctx.signal });
 * }, { async: true, name: "welcome-mail" });
 * await bus.listen();
 * await bus.emit("user.signup", { email: "ada@example.com" });
 * ```
 *
 * @module
 */

import {
  ClientClosedError,
  createClient,
  ErrorReply,
  type RedisClientOptions,
} from "@redis/client";
import type {
  AsyncBackend,
  CloseOptions,
  CloseReport,
  ConsumeOptions,
  ConsumerSpec,
  Deliver,
  Logger,
  PublishOptions,
} from "../src/backend.ts";
import {
  BackendError,
  describeError,
  EventBusClosedError,
} from "../src/errors.ts";
import { decodeEvent, encodeEvent, type Event } from "../src/event.ts";

const BACKEND = "redis-streams";
/** Deliveries beyond the handler's attempts tolerated before giving up. */
const EXTRA_DELIVERIES = 3;
/** Longest pause between tries to reach Redis again. */
const MAX_BACKOFF = 2000;
/** How long close() waits for Redis when it releases entries. */
const RELEASE_TIMEOUT = 2000;

/** Adds the entry unless its event id was published within the window. */
const PUBLISH_SCRIPT = `
if ARGV[3] ~= '0' and not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[3]) then
  return false
end
if ARGV[2] == '' then
  return redis.call('XADD', KEYS[1], '*', 'event', ARGV[1])
end
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'event', ARGV[1])
`;

/** Copies an entry to the dead-letter stream and acknowledges it, atomically. */
const DEAD_LETTER_SCRIPT = `
if ARGV[3] == '' then
  redis.call('XADD', KEYS[2], '*', unpack(ARGV, 4))
else
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 4))
end
return redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
`;

/**
 * The part of a node-redis client (`createClient()` from `redis` or
 * `@redis/client`, version 5 or later) the backend uses.
 *
 * @example A node-redis client fits
 * ```ts ignore
 * import { createClient } from "@redis/client";
 * import type { RedisConnection } from "@eventbus/core/redis";
 * const client: RedisConnection = createClient({ url: "redis://127.0.0.1:6379" });
 * ```
 */
export interface RedisConnection {
  /** Sends one command, as in the Redis manual, and resolves its reply. */
  sendCommand(args: ReadonlyArray<string>): Promise<unknown>;
  /** A new, unconnected client with the same options. */
  duplicate(): RedisConnection;
  /** Opens the connection. */
  connect(): Promise<unknown>;
  /** Closes the connection after pending replies. */
  close(): Promise<unknown>;
  /** Closes the connection at once. */
  destroy(): void;
  /** Listens for connection errors (the client reconnects on its own). */
  on(event: "error", listener: (error: unknown) => void): unknown;
}

/**
 * Options of {@linkcode RedisStreamsBackend}.
 *
 * @example Faster recovery and a bounded stream
 * ```ts ignore
 * import { RedisStreamsBackend } from "@eventbus/core/redis";
 * const backend = await RedisStreamsBackend.connect({ url: "redis://127.0.0.1:6379" }, {
 *   prefix: "shop",
 *   maxLen: 10_000,
 *   claimIdle: 10_000,
 *   concurrency: 4,
 * });
 * await backend.close();
 * ```
 */
export interface RedisStreamsBackendOptions {
  /**
   * Key prefix: events of type `t` go to the stream `<prefix>:<t>`.
   * @default {"events"}
   */
  prefix?: string;
  /**
   * The stream that keeps dead letters.
   * @default {"<prefix>-dead-letter"}
   */
  deadLetterStream?: string;
  /**
   * Approximate length each stream is trimmed to (`XADD MAXLEN ~`); entries
   * beyond it are dropped even if unread. `Infinity` never trims.
   * @default {100000}
   */
  maxLen?: number;
  /**
   * Deliveries of one handler running at once in this process.
   * @default {10}
   */
  concurrency?: number;
  /**
   * How long, in ms, an entry must sit unrefreshed before another worker
   * takes it over (`XAUTOCLAIM` min-idle-time): the recovery delay after a
   * worker dies. Live entries are refreshed every `claimIdle / 3` ms.
   * @default {30000}
   */
  claimIdle?: number;
  /**
   * How long one `XREADGROUP` blocks, in ms; also how often each worker looks
   * for entries to recover.
   * @default {2000}
   */
  block?: number;
  /**
   * How long, in ms, `publish` keeps trying while Redis is unreachable
   * before it rejects with `BackendError`.
   * @default {30000}
   */
  publishTimeout?: number;
  /**
   * Publishing an event id again within this many ms adds no entry. `0`
   * turns de-duplication off (and stores no marker keys).
   * @default {120000}
   */
  duplicateWindow?: number;
  /**
   * Prefix of this process's consumer names in the groups (a random suffix
   * is added per consumer).
   * @default {"eventbus"}
   */
  consumerName?: string;
}

/**
 * An async backend on Redis Streams: one stream per event type, one consumer
 * group per handler name, acknowledgement after success, retries by
 * re-claiming pending entries, recovery with `XAUTOCLAIM`, and a dead-letter
 * stream. See the module documentation for the Redis idioms it uses.
 *
 * @example With a client you opened (the backend does not close it)
 * ```ts ignore
 * import { createClient } from "redis";
 * import { EventBus } from "@eventbus/core";
 * import { RedisStreamsBackend } from "@eventbus/core/redis";
 *
 * const client = createClient({ url: "redis://127.0.0.1:6379" });
 * client.on("error", (error) => console.warn("redis:", error.message));
 * await client.connect();
 * const bus = new EventBus({ backend: new RedisStreamsBackend(client, { prefix: "shop" }) });
 * await bus.emit("order.placed", { total: 3 });
 * await bus.close();
 * await client.close();
 * ```
 */
export class RedisStreamsBackend implements AsyncBackend, AsyncDisposable {
  /** Always `"redis-streams"`. */
  readonly name: string = BACKEND;
  /** Always `true`: events cross the wire. */
  readonly remote: boolean = true;

  #client: RedisConnection;
  #owned: boolean;
  #settings: Settings;
  #readers = new Set<GroupReader>();
  #abort = new AbortController();
  #completed = 0;
  #logger: Logger | undefined;
  #shas = new Map<string, Promise<string>>();
  #closing: Promise<CloseReport> | undefined;

  /**
   * Builds a backend on a client you opened.
   *
   * @param client A node-redis client; connected, or connecting. The backend
   *   uses it for publishing and acknowledging, duplicates it for each
   *   blocking reader, and never closes it.
   * @param options Prefix, limits and timings.
   * @throws {RangeError} When a number option is out of range.
   */
  constructor(
    client: RedisConnection,
    options: RedisStreamsBackendOptions = {},
  ) {
    this.#client = client;
    this.#owned = false;
    this.#settings = settingsOf(options);
  }

  /**
   * Opens (and owns, so `close()` closes it) a node-redis client.
   *
   * @param client The client's options, such as `{ url: "redis://host:6379" }`.
   * @param options Prefix, limits and timings.
   * @returns A backend with a connected client.
   * @throws {BackendError} When Redis cannot be reached.
   *
   * @example Open a backend
   * ```ts ignore
   * import { RedisStreamsBackend } from "@eventbus/core/redis";
   * const backend = await RedisStreamsBackend.connect({ url: "redis://127.0.0.1:6379" });
   * await backend.close();
   * ```
   */
  static async connect(
    client: RedisClientOptions,
    options: RedisStreamsBackendOptions = {},
  ): Promise<RedisStreamsBackend> {
    const connection = createClient(client) as unknown as RedisConnection;
    const backend = new RedisStreamsBackend(connection, options);
    backend.#owned = true;
    let failed: ((error: unknown) => void) | undefined;
    connection.on("error", (error) => {
      if (failed !== undefined) failed(error);
      else backend.#connectionError(error);
    });
    try {
      // The client retries a failed first connect forever; fail fast instead.
      await new Promise((resolve, reject) => {
        failed = reject;
        connection.connect().then(resolve, reject);
      }).finally(() => failed = undefined);
    } catch (error) {
      connection.destroy();
      throw new BackendError(
        BACKEND,
        `Cannot connect to Redis: ${
          describeError(error)
        }, check the url and that the server runs`,
        { cause: error },
      );
    }
    return backend;
  }

  /** Retries waiting for their delay in this process. */
  get queued(): number {
    let queued = 0;
    for (const reader of this.#readers) queued += reader.queued;
    return queued;
  }

  /**
   * Adds the event to its type's stream (`XADD`), once per event id within
   * `duplicateWindow`, and resolves when Redis answered. While Redis is
   * unreachable it keeps trying until `publishTimeout`.
   *
   * @param event The event.
   * @param options The signal that stops waiting.
   * @returns Once the entry is in the stream.
   * @throws {EventBusClosedError} After `close()`.
   * @throws {BackendError} When Redis refused the entry or did not answer in
   *   time; `cause` is the client's error.
   * @throws The signal's reason when it aborts first.
   *
   * @example Publish one event
   * ```ts ignore
   * import { createEvent } from "@eventbus/core";
   * import { RedisStreamsBackend } from "@eventbus/core/redis";
   * const backend = await RedisStreamsBackend.connect({ url: "redis://127.0.0.1:6379" });
   * await backend.publish(createEvent("user.signup", { id: "u1" }));
   * await backend.close();
   * ```
   */
  async publish(event: Event, options?: PublishOptions): Promise<void> {
    if (this.#closing !== undefined) throw new EventBusClosedError(event.type);
    const signal = options?.signal;
    signal?.throwIfAborted();
    const payload = encodeEvent(event);
    const { maxLen, duplicateWindow, publishTimeout } = this.#settings;
    const stream = this.#stream(event.type);
    const deadline = AbortSignal.timeout(publishTimeout);
    const stop = signal === undefined
      ? deadline
      : AbortSignal.any([signal, deadline]);
    let backoff = 50;
    while (true) {
      try {
        await abortable(
          this.#script(
            PUBLISH_SCRIPT,
            [stream, `${stream}:dedupe:${event.id}`],
            [
              payload,
              trimArgument(maxLen),
              String(duplicateWindow),
            ],
          ),
          stop,
        );
        return;
      } catch (error) {
        if (signal?.aborted) throw signal.reason;
        const why = deadline.aborted
          ? `Redis did not answer within publishTimeout (${publishTimeout} ms), check the connection or raise publishTimeout`
          : isPermanent(error)
          ? "Redis refused it, check the server and the stream key"
          : undefined;
        if (why !== undefined) {
          throw new BackendError(
            BACKEND,
            `Cannot publish "${event.type}" to stream "${stream}": ${why}: ${
              describeError(error)
            }`,
            { cause: error },
          );
        }
        await sleep(backoff, stop).catch(() => {});
        backoff = Math.min(backoff * 2, MAX_BACKOFF);
      }
    }
  }

  /**
   * Creates each handler's consumer group (if new) and starts one reader per
   * consumer, each with its own blocking connection. Resolves once they read.
   *
   * @param deliver Runs one try.
   * @param options Consumers, the signal that detaches them, and the logger.
   * @returns Once every consumer is reading.
   * @throws {EventBusClosedError} After `close()`.
   * @throws {BackendError} When a group or connection cannot be set up.
   *
   * @example Consume for one handler
   * ```ts ignore
   * import { RedisStreamsBackend } from "@eventbus/core/redis";
   * const backend = await RedisStreamsBackend.connect({ url: "redis://127.0.0.1:6379" });
   * await backend.consume(async () => ({ status: "completed" }), {
   *   consumers: [{ name: "audit", type: "user.signup", attempts: 3 }],
   * });
   * await backend.close();
   * ```
   */
  async consume(deliver: Deliver, options: ConsumeOptions): Promise<void> {
    if (this.#closing !== undefined) throw new EventBusClosedError();
    const { consumers, signal, logger = SILENT } = options;
    this.#logger ??= logger;
    if (signal?.aborted) return;
    const started: GroupReader[] = [];
    try {
      for (const spec of consumers) {
        const reader = new GroupReader(this.#context(logger), spec, deliver);
        started.push(reader);
        this.#readers.add(reader);
        await reader.start();
      }
    } catch (error) {
      for (const reader of started) {
        this.#readers.delete(reader);
        void reader.stop().then(() => reader.finish());
      }
      throw new BackendError(
        BACKEND,
        `Cannot consume from Redis: ${
          describeError(error)
        }, check the connection and the stream keys`,
        { cause: error },
      );
    }
    signal?.addEventListener("abort", () => {
      for (const reader of started) {
        void reader.stop().then(() => reader.idle()).then(() => {
          this.#readers.delete(reader);
          return reader.finish();
        });
      }
    }, { once: true });
  }

  /**
   * Stops reading, lets running handlers finish until `timeout`, then aborts
   * their signals and releases their entries for the next worker. Entries
   * stay in Redis, so nothing is abandoned. Closes the client if `connect()`
   * opened it. Closing twice returns the same report.
   *
   * @param options Deadline (default 30 000 ms) and signal.
   * @returns Deliveries completed here; `abandoned` is always empty.
   *
   * @example Close with a deadline
   * ```ts ignore
   * import { RedisStreamsBackend } from "@eventbus/core/redis";
   * const backend = await RedisStreamsBackend.connect({ url: "redis://127.0.0.1:6379" });
   * const report = await backend.close({ timeout: 5000 });
   * console.assert(report.abandoned.length === 0);
   * ```
   */
  close(options?: CloseOptions): Promise<CloseReport> {
    this.#closing ??= this.#close(options);
    return this.#closing;
  }

  /** Closes the backend with the default timeout. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #close(options: CloseOptions | undefined): Promise<CloseReport> {
    const { timeout = 30_000, signal } = options ?? {};
    const readers = [...this.#readers];
    await Promise.all(readers.map((reader) => reader.stop()));
    const deadline = signal === undefined
      ? AbortSignal.timeout(timeout)
      : AbortSignal.any([signal, AbortSignal.timeout(timeout)]);
    await abortable(
      Promise.all(readers.map((reader) => reader.idle())),
      deadline,
    ).catch(() => {});
    this.#abort.abort(new EventBusClosedError());
    await Promise.all(readers.map((reader) => reader.finish()));
    this.#readers.clear();
    if (this.#owned) {
      await withTimeout(this.#client.close(), RELEASE_TIMEOUT).catch(() =>
        this.#client.destroy()
      );
    }
    return { completed: this.#completed, abandoned: [] };
  }

  #stream(type: string): string {
    return `${this.#settings.prefix}:${type}`;
  }

  #context(logger: Logger): Context {
    return {
      client: this.#client,
      settings: this.#settings,
      abort: this.#abort.signal,
      logger,
      stream: (type) => this.#stream(type),
      script: (script, keys, args) => this.#script(script, keys, args),
      completed: () => void this.#completed++,
    };
  }

  /** Runs a Lua script by its SHA1 (`EVALSHA`), loading it when Redis lost it. */
  async #script(
    script: string,
    keys: string[],
    args: string[],
  ): Promise<unknown> {
    const tail = [String(keys.length), ...keys, ...args];
    let sha = this.#shas.get(script);
    if (sha === undefined) {
      sha = this.#client.sendCommand(["SCRIPT", "LOAD", script]).then(String);
      this.#shas.set(script, sha);
      sha.catch(() => this.#shas.delete(script));
    }
    try {
      return await this.#client.sendCommand(["EVALSHA", await sha, ...tail]);
    } catch (error) {
      if (
        !(error instanceof ErrorReply && error.message.startsWith("NOSCRIPT"))
      ) {
        throw error;
      }
      this.#shas.delete(script); // the server restarted or flushed its scripts
      return await this.#client.sendCommand(["EVAL", script, ...tail]);
    }
  }

  #connectionError(error: unknown): void {
    (this.#logger ?? SILENT).warn(
      `Redis connection trouble, reconnecting: ${describeError(error)}`,
      { error },
    );
  }
}

interface Settings {
  readonly prefix: string;
  readonly deadLetterStream: string;
  readonly maxLen: number;
  readonly concurrency: number;
  readonly claimIdle: number;
  readonly block: number;
  readonly publishTimeout: number;
  readonly duplicateWindow: number;
  readonly consumerName: string;
}

/** What a reader needs from its backend. */
interface Context {
  readonly client: RedisConnection;
  readonly settings: Settings;
  /** Aborted at the close deadline: handlers' signals. */
  readonly abort: AbortSignal;
  readonly logger: Logger;
  stream(type: string): string;
  script(script: string, keys: string[], args: string[]): Promise<unknown>;
  completed(): void;
}

/** A stream entry: its id and the wire form of the event (if it has one). */
interface Entry {
  readonly id: string;
  readonly raw: string | undefined;
}

/**
 * One consumer of one group: reads with `XREADGROUP BLOCK` on its own
 * connection, recovers idle entries with `XAUTOCLAIM`, runs deliveries with
 * at most `concurrency` at once, and schedules retries.
 */
class GroupReader {
  readonly #ctx: Context;
  readonly #spec: ConsumerSpec;
  readonly #deliver: Deliver;
  readonly #stream: string;
  readonly #consumer: string;
  #connection: RedisConnection | undefined;
  /** While a read blocks: the CLIENT ID of its connection. */
  #reading: Promise<string> | undefined;
  #loop: Promise<void> | undefined;
  #stopping = new AbortController();
  /** Entries being handled, by id, with their attempt. */
  #running = new Map<string, number>();
  /** Entries waiting for their retry delay, by id. */
  #waiting = new Map<string, Waiting>();
  /** Entries whose retry delay passed, waiting for a free slot. */
  #due: { id: string; attempt: number }[] = [];
  #wake: (() => void) | undefined;
  #idle: (() => void) | undefined;
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #cursor = "0-0";
  #lastSweep = 0;

  constructor(ctx: Context, spec: ConsumerSpec, deliver: Deliver) {
    this.#ctx = ctx;
    this.#spec = spec;
    this.#deliver = deliver;
    this.#stream = ctx.stream(spec.type);
    this.#consumer = `${ctx.settings.consumerName}-${
      crypto.randomUUID().slice(0, 8)
    }`;
  }

  get queued(): number {
    return this.#waiting.size + this.#due.length;
  }

  /** Creates the group and the blocking connection, then starts the loop. */
  async start(): Promise<void> {
    await this.#createGroup();
    const connection = this.#ctx.client.duplicate();
    connection.on("error", (error) => {
      if (this.#stopping.signal.aborted) return;
      this.#ctx.logger.warn(
        `Redis reader of "${this.#spec.name}" lost its connection, reconnecting: ${
          describeError(error)
        }`,
        { error },
      );
    });
    await connection.connect();
    this.#connection = connection;
    const every = Math.max(1, Math.floor(this.#ctx.settings.claimIdle / 3));
    this.#heartbeat = setInterval(() => this.#refresh(), every);
    this.#loop = this.#run(connection);
  }

  /** Stops reading and hands waiting retries back to the group. */
  async stop(): Promise<void> {
    if (this.#stopping.signal.aborted) return;
    this.#stopping.abort();
    this.#wake?.();
    await withTimeout(this.#unblock(), RELEASE_TIMEOUT).catch(() => {});
    const ids = [...this.#waiting.keys(), ...this.#due.map((d) => d.id)];
    for (const { timer } of this.#waiting.values()) clearTimeout(timer);
    this.#waiting.clear();
    this.#due = [];
    await this.#release(ids);
  }

  /** Resolves when no delivery runs. */
  idle(): Promise<void> {
    if (this.#running.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const previous = this.#idle;
      this.#idle = () => {
        previous?.();
        resolve();
      };
    });
  }

  /**
   * After stop(): releases entries still running (their handlers were
   * aborted), waits for the loop, closes the connection, and removes this
   * consumer from the group when it holds nothing.
   */
  async finish(): Promise<void> {
    clearInterval(this.#heartbeat);
    await this.#release([...this.#running.keys()]);
    this.#running.clear();
    await withTimeout(
      this.#loop ?? Promise.resolve(),
      this.#ctx.settings.block + RELEASE_TIMEOUT,
    ).catch(() => {});
    this.#connection?.destroy();
    try {
      const pending = await withTimeout(
        this.#ctx.client.sendCommand([
          "XPENDING",
          this.#stream,
          this.#spec.name,
          "-",
          "+",
          "1",
          this.#consumer,
        ]),
        RELEASE_TIMEOUT,
      );
      if (Array.isArray(pending) && pending.length === 0) {
        await withTimeout(
          this.#ctx.client.sendCommand([
            "XGROUP",
            "DELCONSUMER",
            this.#stream,
            this.#spec.name,
            this.#consumer,
          ]),
          RELEASE_TIMEOUT,
        );
      }
    } catch {
      // The consumer stays listed in the group; it holds nothing.
    }
  }

  async #run(connection: RedisConnection): Promise<void> {
    const { concurrency, block } = this.#ctx.settings;
    const stopping = this.#stopping.signal;
    let backoff = 50;
    while (!stopping.aborted) {
      try {
        const free = concurrency - this.#running.size;
        if (free <= 0) {
          await this.#nextChange();
        } else if (this.#due.length > 0) {
          await this.#claimDue(free);
        } else if (Date.now() - this.#lastSweep >= block) {
          await this.#sweep(free);
        } else {
          await this.#read(connection, free);
        }
        backoff = 50;
      } catch (error) {
        if (stopping.aborted) break;
        if (
          error instanceof ErrorReply && error.message.startsWith("NOGROUP")
        ) {
          // The stream or group was deleted under us: create it again.
          await this.#createGroup().catch(() => {});
        } else {
          this.#ctx.logger.warn(
            `Cannot read stream "${this.#stream}" for "${this.#spec.name}", retrying in ${backoff} ms: ${
              describeError(error)
            }`,
            { error },
          );
        }
        await sleep(backoff, stopping).catch(() => {});
        backoff = Math.min(backoff * 2, MAX_BACKOFF);
      }
    }
  }

  /** Reads new entries: `XREADGROUP GROUP <name> <me> COUNT n BLOCK ms STREAMS <stream> >`. */
  async #read(connection: RedisConnection, count: number): Promise<void> {
    const block = Math.max(
      1,
      Math.min(
        this.#ctx.settings.block,
        this.#lastSweep + this.#ctx.settings.block - Date.now(),
      ),
    );
    // Sent together: CLIENT ID is answered before the read blocks, so stop()
    // knows which connection to CLIENT UNBLOCK.
    const id = connection.sendCommand(["CLIENT", "ID"]).then(String);
    id.catch(() => {});
    this.#reading = id;
    const reply = await connection.sendCommand([
      "XREADGROUP",
      "GROUP",
      this.#spec.name,
      this.#consumer,
      "COUNT",
      String(count),
      "BLOCK",
      String(block),
      "STREAMS",
      this.#stream,
      ">",
    ]).finally(() => this.#reading = undefined);
    const entries = readReply(reply);
    if (this.#stopping.signal.aborted) {
      await this.#release(entries.map((e) => e.id));
      return;
    }
    for (const entry of entries) this.#start(entry, 1);
  }

  /** Recovers entries idle for claimIdle: `XAUTOCLAIM`, then `XPENDING` for their counters. */
  async #sweep(count: number): Promise<void> {
    this.#lastSweep = Date.now();
    const reply = await this.#ctx.client.sendCommand([
      "XAUTOCLAIM",
      this.#stream,
      this.#spec.name,
      this.#consumer,
      String(this.#ctx.settings.claimIdle),
      this.#cursor,
      "COUNT",
      String(count),
    ]);
    if (!Array.isArray(reply)) return;
    this.#cursor = String(reply[0] ?? "0-0");
    const entries = entriesOf(reply[1]).filter((e) =>
      !this.#running.has(e.id) && !this.#waiting.has(e.id) &&
      !this.#due.some((d) => d.id === e.id)
    );
    const counts = await Promise.all(
      entries.map((e) => this.#deliveries(e.id)),
    );
    if (this.#stopping.signal.aborted) {
      await this.#release(entries.map((e) => e.id));
      return;
    }
    entries.forEach((entry, i) => this.#start(entry, counts[i]!));
  }

  /** Re-claims entries whose retry delay passed; `XCLAIM` bumps their counter. */
  async #claimDue(count: number): Promise<void> {
    const due = this.#due.splice(0, count);
    let reply: unknown;
    try {
      reply = await this.#ctx.client.sendCommand([
        "XCLAIM",
        this.#stream,
        this.#spec.name,
        this.#consumer,
        "0",
        ...due.map((d) => d.id),
      ]);
    } catch (error) {
      this.#due.unshift(...due);
      throw error;
    }
    const attempts = new Map(due.map((d) => [d.id, d.attempt]));
    // Entries missing from the reply were acknowledged, trimmed or deleted.
    for (const entry of entriesOf(reply)) {
      this.#start(entry, (attempts.get(entry.id) ?? 0) + 1);
    }
  }

  async #deliveries(id: string): Promise<number> {
    const reply = await this.#ctx.client.sendCommand([
      "XPENDING",
      this.#stream,
      this.#spec.name,
      id,
      id,
      "1",
    ]);
    const row = Array.isArray(reply) ? reply[0] : undefined;
    return Array.isArray(row) ? Number(row[3]) || 1 : 1;
  }

  #start(entry: Entry, attempt: number): void {
    this.#running.set(entry.id, attempt);
    this.#handle(entry, attempt).catch((error: unknown) =>
      this.#ctx.logger.error(
        `Cannot settle entry ${entry.id} of stream "${this.#stream}" for "${this.#spec.name}", it will be redelivered: ${
          describeError(error)
        }`,
        { error },
      )
    ).finally(() => {
      if (this.#ctx.abort.aborted) return; // released by finish()
      this.#running.delete(entry.id);
      this.#changed();
    });
  }

  async #handle(entry: Entry, attempt: number): Promise<void> {
    const { name, attempts } = this.#spec;
    let event: Event;
    try {
      if (entry.raw === undefined) {
        throw new TypeError(`entry ${entry.id} has no "event" field`);
      }
      event = decodeEvent(entry.raw);
    } catch (error) {
      this.#ctx.logger.error(
        `Dead-lettering entry ${entry.id} of stream "${this.#stream}" for "${name}": it is not an event: ${
          describeError(error)
        }`,
        { error },
      );
      return this.#deadLetter(entry, attempt, error);
    }
    if (attempt > attempts + EXTRA_DELIVERIES) {
      const error = new Error(
        `delivered ${attempt} times, more than the ${attempts} attempts of "${name}" allow; its handler keeps stopping the worker`,
      );
      this.#ctx.logger.error(
        `Dead-lettering "${event.type}" (id "${event.id}") for "${name}": ${error.message}`,
        { error },
      );
      return this.#deadLetter(entry, attempt, error);
    }
    const result = await this.#deliver({
      event,
      handler: name,
      attempt,
      signal: this.#ctx.abort,
    });
    if (this.#ctx.abort.aborted) return; // close deadline: finish() released it
    switch (result.status) {
      case "completed":
        await this.#persist(() =>
          this.#ctx.client.sendCommand([
            "XACK",
            this.#stream,
            name,
            entry.id,
          ])
        );
        this.#ctx.completed();
        return;
      case "retry":
        return this.#retryLater(entry.id, attempt, result.delay);
      case "dead-letter":
        return this.#deadLetter(entry, attempt, result.error.cause);
      case "abandoned":
        return this.#release([entry.id]);
    }
  }

  #retryLater(id: string, attempt: number, delay: number): void {
    if (this.#stopping.signal.aborted) {
      void this.#release([id]);
      return;
    }
    const timer = setTimeout(() => {
      this.#waiting.delete(id);
      this.#due.push({ id, attempt });
      this.#poke();
    }, Math.max(0, delay));
    this.#waiting.set(id, { attempt, timer });
  }

  async #deadLetter(
    entry: Entry,
    attempts: number,
    error: unknown,
  ): Promise<void> {
    const { settings } = this.#ctx;
    await this.#persist(() =>
      this.#ctx.script(DEAD_LETTER_SCRIPT, [
        this.#stream,
        settings.deadLetterStream,
      ], [
        this.#spec.name,
        entry.id,
        trimArgument(settings.maxLen),
        "event",
        entry.raw ?? "",
        "handler",
        this.#spec.name,
        "attempts",
        String(attempts),
        "error",
        describeError(error),
        "stream",
        this.#stream,
        "id",
        entry.id,
      ])
    );
  }

  /**
   * Makes entries claimable by any worker at once: `XCLAIM ... IDLE
   * <claimIdle> JUSTID` sets their idle time to the recovery threshold.
   */
  async #release(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    await withTimeout(
      this.#ctx.client.sendCommand([
        "XCLAIM",
        this.#stream,
        this.#spec.name,
        this.#consumer,
        "0",
        ...ids,
        "IDLE",
        String(this.#ctx.settings.claimIdle),
        "JUSTID",
      ]),
      RELEASE_TIMEOUT,
    ).catch((error: unknown) =>
      this.#ctx.logger.warn(
        `Cannot release ${ids.length} entries of stream "${this.#stream}" for "${this.#spec.name}"; they are redelivered after claimIdle: ${
          describeError(error)
        }`,
        { error },
      )
    );
  }

  /** Heartbeat: resets the idle time of held entries without counting a delivery. */
  #refresh(): void {
    const ids = [...this.#running.keys(), ...this.#waiting.keys()];
    if (ids.length === 0 || this.#ctx.abort.aborted) return;
    this.#ctx.client.sendCommand([
      "XCLAIM",
      this.#stream,
      this.#spec.name,
      this.#consumer,
      "0",
      ...ids,
      "JUSTID",
    ]).catch((error: unknown) =>
      this.#ctx.logger.debug(
        `Cannot refresh entries of "${this.#stream}": ${describeError(error)}`,
      )
    );
  }

  /** Retries a command through lost connections until it succeeds or close() gives up. */
  async #persist(command: () => Promise<unknown>): Promise<void> {
    let backoff = 50;
    while (true) {
      try {
        await abortable(command(), this.#ctx.abort);
        return;
      } catch (error) {
        if (this.#ctx.abort.aborted || isPermanent(error)) throw error;
        await sleep(backoff, this.#ctx.abort).catch(() => {});
        backoff = Math.min(backoff * 2, MAX_BACKOFF);
      }
    }
  }

  async #createGroup(): Promise<void> {
    try {
      await this.#ctx.client.sendCommand([
        "XGROUP",
        "CREATE",
        this.#stream,
        this.#spec.name,
        "0",
        "MKSTREAM",
      ]);
    } catch (error) {
      if (
        error instanceof ErrorReply && error.message.startsWith("BUSYGROUP")
      ) {
        return; // another worker created it first
      }
      throw error;
    }
  }

  #nextChange(): Promise<void> {
    return new Promise((resolve) => {
      this.#wake = () => {
        this.#wake = undefined;
        resolve();
      };
    });
  }

  /** Wakes the loop, ending its blocked read (`CLIENT UNBLOCK`) if it is in one. */
  #poke(): void {
    if (this.#wake !== undefined) return this.#wake();
    this.#unblock().catch(() => {}); // the read then ends by its BLOCK timeout
  }

  /** Ends a blocked read now (`CLIENT UNBLOCK`), as if its BLOCK timed out. */
  async #unblock(): Promise<void> {
    const reading = this.#reading;
    if (reading === undefined) return;
    await this.#ctx.client.sendCommand(["CLIENT", "UNBLOCK", await reading]);
  }

  #changed(): void {
    this.#wake?.();
    if (this.#running.size === 0) {
      const idle = this.#idle;
      this.#idle = undefined;
      idle?.();
    }
  }
}

interface Waiting {
  readonly attempt: number;
  readonly timer: ReturnType<typeof setTimeout>;
}

const SILENT: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
};

function settingsOf(options: RedisStreamsBackendOptions): Settings {
  const {
    prefix = "events",
    deadLetterStream = `${prefix}-dead-letter`,
    maxLen = 100_000,
    concurrency = 10,
    claimIdle = 30_000,
    block = 2000,
    publishTimeout = 30_000,
    duplicateWindow = 120_000,
    consumerName = "eventbus",
  } = options;
  if (typeof prefix !== "string" || prefix === "") {
    throw new TypeError(
      "Cannot create Redis backend: prefix must be a non-empty string",
    );
  }
  positive("maxLen", maxLen, true);
  positive("concurrency", concurrency);
  positive("claimIdle", claimIdle);
  positive("block", block);
  positive("publishTimeout", publishTimeout);
  if (!Number.isInteger(duplicateWindow) || duplicateWindow < 0) {
    throw new RangeError(
      `Cannot create Redis backend: duplicateWindow must be an integer of at least 0, got ${duplicateWindow}`,
    );
  }
  return {
    prefix,
    deadLetterStream,
    maxLen,
    concurrency,
    claimIdle,
    block,
    publishTimeout,
    duplicateWindow,
    consumerName,
  };
}

function positive(name: string, value: number, infinite = false): void {
  if (infinite && value === Infinity) return;
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(
      `Cannot create Redis backend: ${name} must be an integer of at least 1, got ${value}`,
    );
  }
}

function trimArgument(maxLen: number): string {
  return maxLen === Infinity ? "" : String(maxLen);
}

/** A reply error other than a transient one, or a client closed for good. */
function isPermanent(error: unknown): boolean {
  if (error instanceof ClientClosedError) return true;
  return error instanceof ErrorReply &&
    !/^(LOADING|BUSY|TRYAGAIN|MASTERDOWN|READONLY|CLUSTERDOWN)/.test(
      error.message,
    );
}

/** XREADGROUP's reply: `[[stream, entries]]` (RESP2) or `{ stream: entries }` (RESP3). */
function readReply(reply: unknown): Entry[] {
  if (reply === null || reply === undefined) return [];
  const streams = Array.isArray(reply)
    ? reply.map((item) => (item as unknown[])[1])
    : reply instanceof Map
    ? [...reply.values()]
    : Object.values(reply as Record<string, unknown>);
  return streams.flatMap(entriesOf);
}

/** Stream entries: `[[id, [field, value, ...]], ...]`; nulls are deleted entries. */
function entriesOf(list: unknown): Entry[] {
  if (!Array.isArray(list)) return [];
  const entries: Entry[] = [];
  for (const item of list) {
    if (!Array.isArray(item)) continue;
    const id = String(item[0]);
    const fields = item[1];
    let raw: string | undefined;
    if (Array.isArray(fields)) {
      for (let i = 0; i + 1 < fields.length; i += 2) {
        if (String(fields[i]) === "event") raw = String(fields[i + 1]);
      }
    }
    entries.push({ id, raw });
  }
  return entries;
}

/** Rejects with the signal's reason when it aborts first. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    promise.catch(() => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() =>
      signal.removeEventListener("abort", onAbort)
    );
  });
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return abortable(promise, AbortSignal.timeout(ms));
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
