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
 * - **One stream per event type**, `<prefix>:<type>`, bounded by
 *   backpressure, never by a blind trim: the publish script (one round trip)
 *   checks `XLEN`; at `maxLen` it trims with `XTRIM MINID` only what every
 *   consumer group has acknowledged (below each group's oldest pending entry
 *   and its last-delivered id, from `XINFO GROUPS` and `XPENDING`), and if
 *   the stream is still full, `emit` rejects at once with `QueueFullError`
 *   naming the stream, `maxLen` and the slowest group. A stream that no group
 *   reads yet is never trimmed. So an entry some group has not acknowledged
 *   is never dropped, and acknowledged entries stay until room is needed.
 * - **Publishing is de-duplicated** by event id in the same script: a marker
 *   key `<stream>:dedupe:<id>` (`SET PX <duplicateWindow>`) is set when the
 *   entry is added, and an id whose marker exists adds nothing. A publish
 *   retried after a lost reply therefore adds one entry, not two. Publishes
 *   waiting at the same time share script calls (up to 64 events each), which
 *   handles them one after the other exactly as separate calls would.
 * - **One consumer group per handler name** on its type's stream, created by
 *   a script with `XGROUP CREATE <stream> <name> <id> MKSTREAM`. Workers
 *   sharing a name are consumers of one group and compete; different names
 *   each see every entry. A brand-new group starts `newGroupLookback` ms back
 *   (default one hour, in server time: stream ids are times), so the first
 *   worker of a name gets the events emitted shortly before it existed, and a
 *   name added months later neither replays the whole stream nor skips in
 *   silence: the backend logs what the new group takes (info) and what it
 *   skips (warn). `Infinity` starts at `0`; `0` takes only new events. An
 *   existing group keeps its position.
 * - **`XREADGROUP ... BLOCK`** on a dedicated connection per consumer (a
 *   blocked connection can do nothing else), reading ahead of the handler
 *   slots: up to `concurrency + prefetch` entries read but not settled, read
 *   again once a quarter of `prefetch` is free. A read asks for
 *   `concurrency` entries, twice as many after each read that came back
 *   full, so a backlog drains in large reads while competing workers that
 *   wait for new events each get a share. At most `concurrency` deliveries
 *   run at once per handler and process; the others wait in this process,
 *   oldest first, refreshed like running ones.
 * - **`XACK` after success**, never before: an entry read but not
 *   acknowledged stays in the group's pending entries list (PEL). The
 *   acknowledgements of one consumer go in batches, one `XACK` in flight
 *   and the entries that settled meanwhile in the next (and at close), each
 *   entry acknowledged once.
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
 *   in every worker, and again at once for as long as it finds entries:
 *   entries idle for `claimIdle` ms (their worker died or lost its
 *   connection) move to a live worker at the speed of Redis and the
 *   handlers, not one page per `block`. Ids it reports deleted from the
 *   stream (someone ran `XDEL` or trimmed the stream by hand) are logged at
 *   error: they cannot be handled or dead-lettered.
 * - **Attempts come from the delivery counter**: 1 for a first read, bumped by
 *   each `XCLAIM`/`XAUTOCLAIM`; one `XPENDING` reads it for a page of
 *   recovered entries. It is passed to the bus as `attempt`: an entry
 *   delivered more often than its handler's attempts (its worker kept dying
 *   during the try) is dead-lettered by the bus with reason `crashed`,
 *   reported once to `onError`, without running again. Entries this process
 *   took but never started are handed back with `RETRYCOUNT` one lower, so
 *   that redelivery does not count as a try.
 * - **A dead-letter stream**, `<prefix>-dead-letter` by default: after the
 *   last attempt a Lua script adds a copy (`event`, `handler`, `attempts`,
 *   `reason`, `error`, `stream`, `id`) there and `XACK`s the original,
 *   atomically. Entries that are not valid events go there too (reason
 *   `invalid-event`), logged once at error. The dead-letter stream itself is
 *   trimmed with `MAXLEN ~ <maxLen>`. `backend.deadLetters` lists it (a
 *   dead letter's ref is its entry id), purges it (`XDEL`), and replays a
 *   dead letter with one script that adds its event to the original stream
 *   with a `target` field naming the handler (the readers of other groups
 *   acknowledge that copy without running it), then deletes the dead letter.
 * - **close()** stops reading (`CLIENT UNBLOCK` ends the blocked read at
 *   once), hands back the entries read ahead (as unstarted), lets running
 *   handlers finish until the timeout, sends their acknowledgements, then
 *   aborts the signals of those still running and **releases** their
 *   entries with `XCLAIM ... IDLE <claimIdle> JUSTID`, which makes them
 *   claimable by the next worker's `XAUTOCLAIM` at once. Nothing is lost,
 *   so `close()` reports no abandoned events.
 *
 * ## Guarantees
 *
 * **Accepted** (`emit` resolved) means: the entry is in the stream (as
 * durable as the server's persistence settings make it), and it stays there
 * until every consumer group of its stream has acknowledged it. Each handler
 * name whose group exists gets it until a handler completes it or it is
 * dead-lettered (at least once). A handler name whose first worker starts
 * later gets it while the stream still holds it and it is younger than
 * `newGroupLookback`; entries every existing group acknowledged are trimmed
 * once the stream reaches `maxLen`, which bounds that retention. When the
 * slowest group (or a stream nobody reads yet) would pass `maxLen`, `emit`
 * rejects with `QueueFullError` instead of accepting and dropping. A handler
 * name you retire keeps its group and its backlog: delete the group
 * (`XGROUP DESTROY <stream> <name>`), or it fills the stream.
 *
 * A handler may see an event twice when a worker lost its connection after
 * handling it but before its `XACK` went through; make handlers idempotent
 * (the event id is stable). Targets a single Redis server or a primary with
 * replicas; Redis Cluster would need the keys of one stream in one hash
 * slot.
 *
 * @example A producer and a worker
 * ```ts ignore
 * import { EventBus } from "@eventbus/core";
 * import { RedisStreamsBackend } from "@eventbus/redis";
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
import {
  type AsyncBackend,
  BackendError,
  type BackendTelemetry,
  type CloseOptions,
  type CloseReport,
  type ConsumeOptions,
  type ConsumerSpec,
  type DeadLetterReason,
  type DeadLetters,
  decodeEvent,
  type Deliver,
  describeError,
  encodeEvent,
  type Event,
  EventBusClosedError,
  type Logger,
  type PublishOptions,
  QueueFullError,
} from "@eventbus/core";
import { RedisDeadLetters } from "./_dead_letters.ts";
import { AckBatcher } from "./_acks.ts";
import { RedisPublisher } from "./_publisher.ts";
import { ReadAhead } from "./_read_ahead.ts";
import { PUBLISH_SCRIPT, TARGET_FIELD } from "./_scripts.ts";
import { compareIds, timeOf, trimArgument } from "./_util.ts";
import {
  ABANDONED,
  abortable,
  type BackendArguments,
  checkBackendOptions,
  checkClientConfig,
  checkInteger,
  checkName,
  deadline,
  drain,
  InFlight,
  sharedTimeout,
  SILENT_LOGGER,
  sleep,
  withTimeout,
} from "@eventbus/core/backend-kit";

const BACKEND = "redis-streams";
/** Longest pause between tries to reach Redis again. */
const MAX_BACKOFF = 2000;
/** How long close() waits for Redis when it releases entries. */
const RELEASE_TIMEOUT = 2000;
/** Where each of `connect()`'s two arguments goes, for the option checks. */
const ARGUMENTS: BackendArguments = {
  broker: "Redis",
  connect: "RedisStreamsBackend.connect",
  config: "{ url }",
  setting: "a node-redis client setting",
  client: "createClient()",
  options: new Set([
    "prefix",
    "deadLetterStream",
    "maxLen",
    "concurrency",
    "prefetch",
    "claimIdle",
    "block",
    "publishTimeout",
    "duplicateWindow",
    "consumerName",
    "newGroupLookback",
  ]),
  settings: new Set(),
};

/**
 * Creates a consumer group (and its stream) unless it exists. It starts
 * ARGV[2] ms back in server time (`''`: at `0`, everything the stream
 * holds). Replies false when the group existed, else
 * `{from, length, oldest id, first id it reads}` for the log line (`from`
 * is the first id it reads from, `''` when it starts at `0`).
 */
const GROUP_SCRIPT = `
local stream, group = KEYS[1], ARGV[1]
local start, from = '0', ''
if ARGV[2] ~= '' then
  local now = redis.call('TIME')
  local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  ms = ms - tonumber(ARGV[2])
  if ms > 0 then
    from = string.format('%d', ms) .. '-0'
    start = string.format('%d', ms - 1) .. '-18446744073709551615'
  end
end
local created = redis.pcall('XGROUP', 'CREATE', stream, group, start, 'MKSTREAM')
if type(created) == 'table' and created.err then
  if string.sub(created.err, 1, 9) == 'BUSYGROUP' then return false end
  return created
end
local oldest = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
local first = oldest
if from ~= '' then first = redis.call('XRANGE', stream, from, '+', 'COUNT', 1)[1] end
return { from, redis.call('XLEN', stream), oldest and oldest[1] or '', first and first[1] or '' }
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
 * import type { RedisConnection } from "@eventbus/redis";
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
 * import { RedisStreamsBackend } from "@eventbus/redis";
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
   * The most entries one stream holds. When a stream is full, `publish`
   * trims the entries every consumer group has acknowledged (`XTRIM MINID`);
   * if it is still full, the slowest group has `maxLen` entries to go (or no
   * group reads the stream yet) and `publish` rejects at once with
   * `QueueFullError`. An entry some group has not acknowledged is never
   * trimmed. `Infinity`: no bound, and nothing is ever trimmed.
   * @default {100000}
   */
  maxLen?: number;
  /**
   * Deliveries of one handler running at once in this process.
   * @default {10}
   */
  concurrency?: number;
  /**
   * How many entries each consumer reads ahead of its free handler slots:
   * they wait in this process, oldest first, for a slot, so a backlog
   * drains in few large reads (`XREADGROUP COUNT`) instead of one read per
   * free slot. At most `concurrency + prefetch` entries of a consumer are
   * read but not settled at any time. A waiting entry is refreshed like a
   * running one (no other worker takes it), and a worker that closes hands
   * waiting entries back at once without counting a try; a worker that is
   * killed cannot, so their next delivery counts as a try: lower `prefetch`
   * (0 reads only for free slots) if your workers crash often.
   * @default {"max(256, 4 × concurrency), at most 1000"}
   */
  prefetch?: number;
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
   * before it rejects with `BackendError` (up to 50 ms more: publishes
   * share one timer per 50 ms of deadlines).
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
   * Where a brand-new consumer group (the first worker of a handler name on
   * a type's stream) starts: at the entries added up to this many ms before
   * it was created (Redis server time). `Infinity` starts at `0`, every
   * entry the stream still holds; `0` starts with the entries added from now
   * on. A group that exists keeps its position whatever this says. Which
   * entries a new group takes and which it skips is logged (info; warn when
   * it skips some).
   * @default {3600000}
   */
  newGroupLookback?: number;
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
 * import { RedisStreamsBackend } from "@eventbus/redis";
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
  /** For instrumentation: system `"redis"`, destination the stream key. */
  readonly telemetry: BackendTelemetry = {
    system: "redis",
    destination: (type) => this.#stream(type),
  };

  /**
   * The dead letters in `deadLetterStream`, from any process that opens a
   * backend with the same `prefix` (worker or not): count, list, replay and
   * purge. A dead letter's `ref` is its entry id in that stream. A replay
   * adds the event again to its type's stream (same id and metadata, past
   * the de-duplication window) with a field naming the handler that
   * failed: workers of every other handler name acknowledge that copy
   * without running it. The copy is added and the dead letter deleted in
   * one script, so a crash leaves it in one place or the other. A dead
   * letter whose handler name has no consumer group on the stream stays
   * (not counted as replayed, with a warning), as does one that is not an
   * event, and those of a stream that is full (`maxLen`).
   *
   * @example Replaying what one handler gave up on
   * ```ts ignore
   * import { RedisStreamsBackend } from "@eventbus/core/redis";
   * const backend = await RedisStreamsBackend.connect({ url: "redis://127.0.0.1:6379" });
   * for await (const item of backend.deadLetters.list({ handler: "send-welcome-email" })) {
   *   console.log(item.ref, item.event.id, item.attempts, item.error);
   * }
   * const { replayed } = await backend.deadLetters.replay({ handler: "send-welcome-email" });
   * await backend.close();
   * ```
   */
  readonly deadLetters: DeadLetters;

  #client: RedisConnection;
  #owned: boolean;
  #settings: Settings;
  #readers = new Set<GroupReader>();
  #completed = 0;
  #logger: Logger | undefined;
  #shas = new Map<string, Promise<string>>();
  #publisher: RedisPublisher;
  #closing: Promise<CloseReport> | undefined;

  /**
   * Builds a backend on a client you opened.
   *
   * @param client A node-redis client; connected, or connecting. The backend
   *   uses it for publishing and acknowledging, duplicates it for each
   *   blocking reader, and never closes it.
   * @param options Prefix, limits and timings.
   * @throws {TypeError} When an option is unknown (a client option such as
   *   `url` belongs to the client).
   * @throws {RangeError} When a number option is out of range.
   */
  constructor(
    client: RedisConnection,
    options: RedisStreamsBackendOptions = {},
  ) {
    this.#client = client;
    this.#owned = false;
    this.#settings = settingsOf(options);
    this.#publisher = new RedisPublisher(
      {
        script: (script, keys, args) => this.#script(script, keys, args),
      },
      PUBLISH_SCRIPT,
      [
        trimArgument(this.#settings.maxLen),
        String(this.#settings.duplicateWindow),
      ],
    );
    this.deadLetters = new RedisDeadLetters({
      deadLetterStream: this.#settings.deadLetterStream,
      maxLen: this.#settings.maxLen,
      stream: (type) => this.#stream(type),
      command: (args) => this.#client.sendCommand(args),
      script: (script, keys, args) => this.#script(script, keys, args),
      closed: () => this.#closing !== undefined,
      logger: () => this.#logger ?? SILENT_LOGGER,
    });
  }

  /**
   * Opens (and owns, so `close()` closes it) a node-redis client.
   *
   * @param client The client's options, such as `{ url: "redis://host:6379" }`.
   * @param options Prefix, limits and timings.
   * @returns A backend with a connected client.
   * @throws {TypeError} When a backend option is passed in the client's
   *   options (or a client option in the backend's), naming the argument it
   *   belongs in.
   * @throws {RangeError} When a number option is out of range.
   * @throws {BackendError} When Redis cannot be reached.
   *
   * @example Open a backend
   * ```ts ignore
   * import { RedisStreamsBackend } from "@eventbus/redis";
   * const backend = await RedisStreamsBackend.connect({ url: "redis://127.0.0.1:6379" });
   * await backend.close();
   * ```
   */
  static async connect(
    client: RedisClientOptions,
    options: RedisStreamsBackendOptions = {},
  ): Promise<RedisStreamsBackend> {
    checkClientConfig(client, ARGUMENTS);
    settingsOf(options); // bad options throw before a connection opens
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
   * unreachable it keeps trying until `publishTimeout`. A full stream (see
   * `maxLen`) rejects at once; the length check, the trim and the `XADD` are
   * one script, one round trip, shared by the publishes waiting at the same
   * time (each is handled in turn, as if alone).
   *
   * @param event The event.
   * @param options The signal that stops waiting.
   * @returns Once the entry is in the stream.
   * @throws {EventBusClosedError} After `close()`.
   * @throws {QueueFullError} When the stream holds `maxLen` entries that
   *   some consumer group (or no group yet) has not acknowledged; its
   *   message names the stream, the limit and the slowest group.
   * @throws {BackendError} When Redis refused the entry or did not answer in
   *   time; `cause` is the client's error.
   * @throws The signal's reason when it aborts first.
   *
   * @example Publish one event
   * ```ts ignore
   * import { createEvent } from "@eventbus/core";
   * import { RedisStreamsBackend } from "@eventbus/redis";
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
    const { maxLen, publishTimeout } = this.#settings;
    const stream = this.#stream(event.type);
    const deadline = sharedTimeout(publishTimeout);
    const stop = signal === undefined
      ? deadline
      : AbortSignal.any([signal, deadline]);
    let backoff = 50;
    let reply: unknown;
    while (true) {
      try {
        reply = await abortable(
          this.#publisher.add(
            stream,
            `${stream}:dedupe:${event.id}`,
            payload,
            stop,
          ),
          stop,
        );
        break;
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
        await sleep(backoff, stop);
        backoff = Math.min(backoff * 2, MAX_BACKOFF);
      }
    }
    if (Array.isArray(reply)) {
      throw streamFull(event.type, stream, maxLen, reply);
    }
  }

  /**
   * Creates each handler's consumer group (if new, starting
   * `newGroupLookback` back, and logs what it takes and skips) and starts
   * one reader per consumer, each with its own blocking connection.
   * Resolves once every group exists and its reader runs, so an event
   * published afterwards reaches each of these handler names.
   *
   * @param deliver Runs one try.
   * @param options Consumers, the signal that detaches them, and the logger.
   * @returns Once every consumer is reading.
   * @throws {EventBusClosedError} After `close()`, or when the backend
   *   closes while the consumers attach.
   * @throws {BackendError} When a group or connection cannot be set up.
   *
   * @example Consume for one handler
   * ```ts ignore
   * import { RedisStreamsBackend } from "@eventbus/redis";
   * const backend = await RedisStreamsBackend.connect({ url: "redis://127.0.0.1:6379" });
   * await backend.consume(async () => ({ status: "completed" }), {
   *   consumers: [{ name: "audit", type: "user.signup", attempts: 3 }],
   * });
   * await backend.close();
   * ```
   */
  async consume(deliver: Deliver, options: ConsumeOptions): Promise<void> {
    if (this.#closing !== undefined) throw new EventBusClosedError();
    const { consumers, signal, logger = SILENT_LOGGER } = options;
    this.#logger ??= logger;
    if (signal?.aborted) return;
    const started: GroupReader[] = [];
    const detach = () => {
      for (const reader of started) {
        void reader.stop().then(() => reader.tries.idle()).then(() => {
          this.#readers.delete(reader);
          return reader.finish();
        });
      }
    };
    signal?.addEventListener("abort", detach, { once: true });
    try {
      for (const spec of consumers) {
        // Every reader is created before close() starts, so close() stops it.
        if (this.#closing !== undefined) throw new EventBusClosedError();
        if (signal?.aborted) return;
        const reader = new GroupReader(this.#context(logger), spec, deliver);
        started.push(reader);
        this.#readers.add(reader);
        await reader.start();
      }
      if (this.#closing !== undefined) throw new EventBusClosedError();
    } catch (error) {
      if (this.#closing !== undefined) {
        // close() stops and finishes every reader it found.
        if (error instanceof EventBusClosedError) throw error;
        throw new EventBusClosedError(undefined, { cause: error });
      }
      if (signal?.aborted) return; // detached while attaching: detach() cleans up
      signal?.removeEventListener("abort", detach);
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
   * import { RedisStreamsBackend } from "@eventbus/redis";
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
    {
      using limit = deadline(timeout, signal);
      await drain(readers.map((reader) => reader.tries), limit, {
        reason: new EventBusClosedError(),
      });
    }
    await Promise.all(readers.map((reader) => reader.finish()));
    this.#readers.clear();
    if (this.#owned) {
      // Publishes gathered for a batch go out before the client closes.
      await withTimeout(this.#publisher.idle(), RELEASE_TIMEOUT).catch(
        () => {},
      );
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
    (this.#logger ?? SILENT_LOGGER).warn(
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
  readonly prefetch: number;
  readonly claimIdle: number;
  readonly block: number;
  readonly publishTimeout: number;
  readonly duplicateWindow: number;
  readonly newGroupLookback: number;
  readonly consumerName: string;
}

/** What a reader needs from its backend. */
interface Context {
  readonly client: RedisConnection;
  readonly settings: Settings;
  readonly logger: Logger;
  stream(type: string): string;
  script(script: string, keys: string[], args: string[]): Promise<unknown>;
  completed(): void;
}

/**
 * A stream entry: its id, the wire form of the event (if it has one), and
 * the only handler name to run it (a replayed dead letter).
 */
interface Entry {
  readonly id: string;
  readonly raw: string | undefined;
  readonly target?: string | undefined;
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
  /** Deliveries and their tries; abandoned at the close deadline. */
  readonly tries: InFlight = new InFlight();
  #connection: RedisConnection | undefined;
  /** While a read blocks: the CLIENT ID of its connection. */
  #reading: Promise<string> | undefined;
  #loop: Promise<void> | undefined;
  #stopping = new AbortController();
  /**
   * Entries being handled, with their attempt. Keyed by the entry, not its
   * id: hashing each id read from a reply (its first use as a key) cost
   * more than the rest of the bookkeeping of a delivery.
   */
  #running = new Map<Entry, number>();
  /** Entries read ahead, waiting for a slot. */
  #ahead = new ReadAhead<Entry>();
  /** Entries whose handler completed, waiting for their XACK. */
  #acking = new Set<Entry>();
  /**
   * The next read's COUNT, at most: starts at `concurrency` and doubles
   * while reads come back full (a backlog), back to `concurrency` when one
   * does not. Readers of one group that wait when events arrive each get a
   * share, and a backlog still drains in reads of up to the whole window.
   */
  #readSize: number;
  readonly #acks: AckBatcher;
  /** Entries waiting for their retry delay, by id. */
  #waiting = new Map<string, Waiting>();
  /** Entries whose retry delay passed, waiting for a free slot. */
  #due: { id: string; attempt: number }[] = [];
  #wake: (() => void) | undefined;
  #finished: Promise<void> | undefined;
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #cursor = "0-0";
  #lastSweep = 0;
  /** The last sweep found entries: sweep again before reading. */
  #recovering = false;

  constructor(ctx: Context, spec: ConsumerSpec, deliver: Deliver) {
    this.#ctx = ctx;
    this.#spec = spec;
    this.#deliver = deliver;
    this.#stream = ctx.stream(spec.type);
    this.#consumer = `${ctx.settings.consumerName}-${
      crypto.randomUUID().slice(0, 8)
    }`;
    this.#readSize = ctx.settings.concurrency;
    this.#acks = new AckBatcher({
      xack: (ids) =>
        ctx.client.sendCommand(["XACK", this.#stream, spec.name, ...ids]),
      permanent: isPermanent,
    });
  }

  get queued(): number {
    return this.#waiting.size + this.#due.length;
  }

  /**
   * Creates the group and the blocking connection, then starts the loop.
   * Rejects with EventBusClosedError when stop() came first.
   */
  async start(): Promise<void> {
    await this.#createGroup();
    this.#throwIfStopped();
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
    this.#connection = connection; // finish() destroys it if close() comes now
    await connection.connect();
    this.#throwIfStopped();
    const every = Math.max(1, Math.floor(this.#ctx.settings.claimIdle / 3));
    this.#heartbeat = setInterval(() => this.#refresh(), every);
    this.#loop = this.#run(connection);
  }

  #throwIfStopped(): void {
    if (!this.#stopping.signal.aborted) return;
    this.#connection?.destroy();
    throw new EventBusClosedError();
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
    // Read ahead but never started: hand back without counting a delivery.
    const ahead = this.#ahead.clear().map(({ id, attempt }) => ({
      id,
      delivered: attempt,
    }));
    this.#acks.flush();
    await Promise.all([this.#release(ids), this.#handBack(ahead)]);
  }

  /**
   * After stop(): releases entries still running (their handlers were
   * aborted), waits for the loop, closes the connection, and removes this
   * consumer from the group when it holds nothing. Runs once.
   */
  finish(): Promise<void> {
    this.#finished ??= this.#finish();
    return this.#finished;
  }

  async #finish(): Promise<void> {
    clearInterval(this.#heartbeat);
    // Handlers that completed are acknowledged, not released.
    await this.#acks.close(RELEASE_TIMEOUT);
    await this.#release(idsOf(this.#running.keys()));
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
    const { block } = this.#ctx.settings;
    const stopping = this.#stopping.signal;
    let backoff = 50;
    while (!stopping.aborted) {
      try {
        const free = this.#free();
        if (!this.#canFetch(free)) {
          await this.#nextChange();
        } else if (this.#due.length > 0) {
          await this.#claimDue(free);
        } else if (
          this.#recovering || Date.now() - this.#lastSweep >= block
        ) {
          // Back-to-back while the sweep finds entries: recovery runs at
          // the speed of Redis and the handlers, not one page per block.
          this.#recovering = await this.#sweep(free);
        } else {
          await this.#read(connection, Math.min(free, this.#readSize));
        }
        backoff = 50;
      } catch (error) {
        if (stopping.aborted) break;
        this.#recovering = false;
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
        await sleep(backoff, stopping);
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
    const { concurrency, prefetch } = this.#ctx.settings;
    this.#readSize = entries.length < count
      ? concurrency
      : Math.min(concurrency + prefetch, this.#readSize * 2);
    if (this.#stopping.signal.aborted) {
      // Read but never started: hand back without counting a delivery.
      await this.#handBack(entries.map((e) => ({ id: e.id, delivered: 1 })));
      return;
    }
    for (const entry of entries) this.#start(entry, 1);
  }

  /**
   * Recovers entries idle for claimIdle: `XAUTOCLAIM` (which counts a
   * delivery), then one `XPENDING` for their counters. Entries deleted from
   * the stream before the group acknowledged them come back as ids only:
   * they are lost, and logged at error. Resolves whether it found anything,
   * so the loop sweeps again at once.
   */
  async #sweep(count: number): Promise<boolean> {
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
    if (!Array.isArray(reply)) return false;
    this.#cursor = String(reply[0] ?? "0-0");
    const claimed = entriesOf(reply[1]);
    const deleted = Array.isArray(reply[2]) ? reply[2].map(String) : [];
    if (deleted.length > 0) this.#lost(deleted, "XAUTOCLAIM");
    const held = new Set([
      ...idsOf(this.#running.keys()),
      ...idsOf(this.#acking),
    ]);
    const entries = claimed.filter((e) =>
      !held.has(e.id) && !this.#waiting.has(e.id) &&
      !this.#ahead.has(e.id) && !this.#due.some((d) => d.id === e.id)
    );
    const counts = await this.#deliveries(entries.map((e) => e.id));
    if (this.#stopping.signal.aborted) {
      // Claimed but never started: hand back without counting a delivery.
      await this.#handBack(
        entries.map((e) => ({ id: e.id, delivered: counts.get(e.id) ?? 1 })),
      );
      return false;
    }
    for (const entry of entries) this.#start(entry, counts.get(entry.id) ?? 1);
    return entries.length > 0 || deleted.length > 0;
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
    const entries = entriesOf(reply);
    if (this.#stopping.signal.aborted) {
      await this.#handBack(
        entries.map((e) => ({
          id: e.id,
          delivered: (attempts.get(e.id) ?? 0) + 1,
        })),
      );
      return;
    }
    for (const entry of entries) {
      this.#start(entry, (attempts.get(entry.id) ?? 0) + 1);
    }
    // Missing from the reply: acknowledged elsewhere, or deleted (then XCLAIM
    // dropped them from the group's pending entries).
    const returned = new Set(entries.map((e) => e.id));
    const missing = due.filter((d) => !returned.has(d.id)).map((d) => d.id);
    if (missing.length > 0) await this.#checkMissing(missing);
  }

  /** Sorts entries XCLAIM did not return into deleted (lost) and acknowledged elsewhere. */
  async #checkMissing(ids: string[]): Promise<void> {
    const found = await Promise.all(
      ids.map((id) =>
        this.#ctx.client.sendCommand(["XRANGE", this.#stream, id, id])
      ),
    );
    const deleted = ids.filter((_, i) =>
      !Array.isArray(found[i]) || (found[i] as unknown[]).length === 0
    );
    if (deleted.length > 0) this.#lost(deleted, "XCLAIM");
    if (deleted.length < ids.length) {
      this.#ctx.logger.debug(
        `${
          ids.length - deleted.length
        } entries of stream "${this.#stream}" waiting for a retry of "${this.#spec.name}" were acknowledged by another worker`,
      );
    }
  }

  /** Entries the group never acknowledged that are gone from the stream. */
  #lost(ids: string[], by: string): void {
    this.#ctx.logger.error(
      `Lost ${ids.length} entries of stream "${this.#stream}" for "${this.#spec.name}": they were deleted from the stream (XDEL, or XTRIM/MAXLEN by another client) before the group acknowledged them, so they cannot be handled or dead-lettered (${by} reported ids ${
        ids.join(", ")
      }); do not trim streams this backend writes, it trims only what every group acknowledged`,
      { ids, stream: this.#stream, handler: this.#spec.name },
    );
  }

  /**
   * Delivery counters of entries this consumer holds, by id: one
   * `XPENDING <stream> <group> <first> <last> <n> <me>` for the batch.
   */
  async #deliveries(ids: string[]): Promise<Map<string, number>> {
    const counts = new Map<string, number>();
    if (ids.length === 0) return counts;
    const sorted = [...ids].sort(compareIds);
    // Entries this consumer already holds may sit in the same range.
    const held = this.#running.size + this.#waiting.size + this.#due.length +
      this.#ahead.size + this.#acking.size;
    const reply = await this.#ctx.client.sendCommand([
      "XPENDING",
      this.#stream,
      this.#spec.name,
      sorted[0]!,
      sorted[sorted.length - 1]!,
      String(ids.length + held),
      this.#consumer,
    ]);
    if (!Array.isArray(reply)) return counts;
    for (const row of reply) {
      if (Array.isArray(row)) counts.set(String(row[0]), Number(row[3]) || 1);
    }
    return counts;
  }

  /** Queues an entry read or claimed for a slot, and fills free slots. */
  #start(entry: Entry, attempt: number): void {
    this.#ahead.push(entry.id, entry, attempt);
    this.#dispatch();
  }

  /** Starts waiting entries, oldest first, while handler slots are free. */
  #dispatch(): void {
    if (this.#stopping.signal.aborted) return; // stop() hands them back
    while (this.#running.size < this.#ctx.settings.concurrency) {
      const next = this.#ahead.shift();
      if (next === undefined) return;
      this.#begin(next.entry, next.attempt);
    }
  }

  #begin(entry: Entry, attempt: number): void {
    this.#running.set(entry, attempt);
    this.tries.track(
      this.#handle(entry, attempt).catch((error: unknown) =>
        this.#ctx.logger.error(
          `Cannot settle entry ${entry.id} of stream "${this.#stream}" for "${this.#spec.name}", it will be redelivered: ${
            describeError(error)
          }`,
          { error },
        )
      ).finally(() => {
        if (this.tries.abandoned) return; // released by finish()
        this.#running.delete(entry);
        this.#acking.delete(entry);
        this.#dispatch();
        this.#wakeIfRoom();
      }),
    );
  }

  async #handle(entry: Entry, attempt: number): Promise<void> {
    const { name } = this.#spec;
    if (entry.target !== undefined && entry.target !== name) {
      // A replayed dead letter of another handler name: not ours to run.
      return this.#acknowledge(entry);
    }
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
      return this.#deadLetter(entry, "invalid-event", 0, error);
    }
    // The bus dead-letters an attempt past the handler's attempts as
    // "crashed" without running it: the counter is Redis's delivery count.
    const result = await this.tries.run(
      (signal) => this.#deliver({ event, handler: name, attempt, signal }),
      ABANDONED,
    );
    if (this.tries.abandoned) return; // close deadline: finish() released it
    switch (result.status) {
      case "completed":
        await this.#acknowledge(entry);
        this.#ctx.completed();
        return;
      case "retry":
        return this.#retryLater(entry.id, attempt, result.delay);
      case "dead-letter":
        return this.#deadLetter(
          entry,
          result.error.reason,
          result.error.attempts,
          result.error.cause,
        );
      case "abandoned":
        return this.#release([entry.id]);
    }
  }

  /**
   * Frees the slot of a settled entry (the next waiting entry starts) and
   * acknowledges it with the next batched XACK.
   */
  #acknowledge(entry: Entry): Promise<void> {
    this.#running.delete(entry);
    this.#acking.add(entry);
    this.#dispatch();
    this.#wakeIfRoom();
    return this.#acks.ack(entry.id);
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
    reason: DeadLetterReason,
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
        "reason",
        reason,
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
   * Hands back entries this process took but never started: as release(),
   * and `RETRYCOUNT` sets their counter one below what it was, so the
   * delivery the next worker's claim counts is not one more try.
   */
  async #handBack(
    entries: { id: string; delivered: number }[],
  ): Promise<void> {
    const byCount = new Map<number, string[]>();
    for (const { id, delivered } of entries) {
      const count = Math.max(0, delivered - 1);
      byCount.set(count, [...(byCount.get(count) ?? []), id]);
    }
    await Promise.all(
      [...byCount].map(([count, ids]) => this.#release(ids, count)),
    );
  }

  /**
   * Makes entries claimable by any worker at once: `XCLAIM ... IDLE
   * <claimIdle> JUSTID` sets their idle time to the recovery threshold
   * (`RETRYCOUNT` their delivery counter, when given).
   */
  async #release(ids: string[], retryCount?: number): Promise<void> {
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
        ...(retryCount === undefined ? [] : ["RETRYCOUNT", String(retryCount)]),
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
    const ids = [
      ...idsOf(this.#running.keys()),
      ...this.#waiting.keys(),
      ...this.#due.map((d) => d.id),
      ...this.#ahead.ids(),
      ...idsOf(this.#acking),
    ];
    if (ids.length === 0 || this.tries.abandoned) return;
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
        await abortable(command(), this.tries.signal);
        return;
      } catch (error) {
        if (this.tries.abandoned || isPermanent(error)) throw error;
        await sleep(backoff, this.tries.signal);
        backoff = Math.min(backoff * 2, MAX_BACKOFF);
      }
    }
  }

  /**
   * Creates the group unless it exists, `newGroupLookback` back (GROUP_SCRIPT),
   * and says what a new group takes and what it skips.
   */
  async #createGroup(): Promise<void> {
    const { newGroupLookback } = this.#ctx.settings;
    const reply = await this.#ctx.script(GROUP_SCRIPT, [this.#stream], [
      this.#spec.name,
      newGroupLookback === Infinity ? "" : String(newGroupLookback),
    ]);
    if (!Array.isArray(reply)) return; // another worker created it first
    const [from, length, oldest, first] = reply.map(String) as [
      string,
      string,
      string,
      string,
    ];
    const what =
      `Created consumer group "${this.#spec.name}" on stream "${this.#stream}"`;
    const lookback = `newGroupLookback (${newGroupLookback} ms)`;
    if (length === "0" || oldest === "") {
      this.#ctx.logger.info(
        `${what}: the stream is empty, the group handles the events added from now on`,
      );
    } else if (oldest === first) {
      this.#ctx.logger.info(
        `${what}: it handles the ${length} entries the stream already holds (the oldest added ${
          timeOf(oldest)
        }), then the new ones`,
      );
    } else {
      this.#ctx.logger.warn(
        `${what}: it skips the entries added before ${timeOf(from)} (${
          first === "" ? `all ${length}` : "the oldest"
        } of the ${length} the stream holds, from ${
          timeOf(oldest)
        }), as ${lookback} says; ${
          first === ""
            ? "it handles the events added from now on"
            : `it handles those from ${timeOf(first)} on`
        }. Set newGroupLookback to Infinity for a new group to take every entry the stream holds`,
      );
    }
  }

  /**
   * Entries this consumer may read now: at most `concurrency + prefetch`
   * read but not settled; settled entries waiting for their XACK beyond as
   * many again hold reading back too.
   */
  #free(): number {
    const { concurrency, prefetch } = this.#ctx.settings;
    const limit = concurrency + prefetch;
    return limit - this.#running.size - this.#ahead.size -
      Math.max(0, this.#acking.size - limit);
  }

  /**
   * Whether to fetch now, with room for `free` entries: retries that are
   * due at once, new entries once a quarter of `prefetch` is free (or
   * nothing waits for a slot).
   */
  #canFetch(free: number): boolean {
    const refill = Math.max(1, Math.floor(this.#ctx.settings.prefetch / 4));
    return free > 0 &&
      (free >= refill || this.#ahead.size === 0 || this.#due.length > 0);
  }

  /** Wakes the loop when a slot freed enough room to fetch. */
  #wakeIfRoom(): void {
    if (this.#wake !== undefined && this.#canFetch(this.#free())) this.#wake();
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
}

interface Waiting {
  readonly attempt: number;
  readonly timer: ReturnType<typeof setTimeout>;
}

function settingsOf(options: RedisStreamsBackendOptions): Settings {
  checkBackendOptions(options, ARGUMENTS);
  const {
    prefix = "events",
    deadLetterStream = `${prefix}-dead-letter`,
    maxLen = 100_000,
    concurrency = 10,
    prefetch = Math.min(1000, Math.max(256, 4 * concurrency)),
    claimIdle = 30_000,
    block = 2000,
    publishTimeout = 30_000,
    duplicateWindow = 120_000,
    newGroupLookback = 3_600_000,
    consumerName = "eventbus",
  } = options;
  checkName(ARGUMENTS, "prefix", prefix);
  checkInteger(ARGUMENTS, "maxLen", maxLen, { infinity: true });
  checkInteger(ARGUMENTS, "concurrency", concurrency);
  checkInteger(ARGUMENTS, "prefetch", prefetch, { min: 0 });
  checkInteger(ARGUMENTS, "claimIdle", claimIdle);
  checkInteger(ARGUMENTS, "block", block);
  checkInteger(ARGUMENTS, "publishTimeout", publishTimeout);
  checkInteger(ARGUMENTS, "duplicateWindow", duplicateWindow, { min: 0 });
  checkInteger(ARGUMENTS, "newGroupLookback", newGroupLookback, {
    min: 0,
    infinity: true,
  });
  return {
    prefix,
    deadLetterStream,
    maxLen,
    concurrency,
    prefetch,
    claimIdle,
    block,
    publishTimeout,
    duplicateWindow,
    newGroupLookback,
    consumerName,
  };
}

/** The publish script's "full" reply, `[length, slowest group]`, as an error. */
function streamFull(
  type: string,
  stream: string,
  maxLen: number,
  reply: unknown[],
): QueueFullError {
  const length = Number(reply[0]);
  const group = String(reply[1] ?? "");
  return new QueueFullError(type, maxLen, {
    message: group === ""
      ? `Cannot publish "${type}" to stream "${stream}": it holds ${length} entries, the maxLen limit (${maxLen}), and no consumer group reads it yet, start a worker of its handlers or raise maxLen`
      : `Cannot publish "${type}" to stream "${stream}": it holds ${length} entries, the maxLen limit (${maxLen}), from the oldest one consumer group "${group}" has not acknowledged, let its workers catch up or raise maxLen`,
  });
}

/** The ids of some entries. */
function idsOf(entries: Iterable<Entry>): string[] {
  return Array.from(entries, (entry) => entry.id);
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
    let target: string | undefined;
    if (Array.isArray(fields)) {
      for (let i = 0; i + 1 < fields.length; i += 2) {
        const field = String(fields[i]);
        if (field === "event") raw = String(fields[i + 1]);
        else if (field === TARGET_FIELD) target = String(fields[i + 1]);
      }
    }
    entries.push({ id, raw, target });
  }
  return entries;
}
