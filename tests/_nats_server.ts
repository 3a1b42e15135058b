// Copyright 2026 the @eventbus/core authors. MIT license.
// Starts private nats-server processes for tests that kill or restart the
// broker (the shared one on 4222 is never touched): 127.0.0.1, port -1 (the
// server picks a free port and writes it to a ports file), a temp JetStream
// store, kill -9 and restart on the same port and store, and a 3-node
// JetStream cluster on loopback. Disposing stops the servers and deletes
// their stores.

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { createServer } from "node:net";
import { join } from "node:path";
import process from "node:process";

const READY = "Server is ready";
const START_TIMEOUT = 15_000;

/** The nats-server binary: $NATS_SERVER, /usr/sbin/nats-server or on PATH. */
export function natsServerBinary(): string | undefined {
  const candidates = [
    process.env.NATS_SERVER,
    "/usr/sbin/nats-server",
    "/usr/local/bin/nats-server",
    "/usr/bin/nats-server",
    ...(process.env.PATH ?? "").split(":").map((dir) =>
      join(dir, "nats-server")
    ),
  ];
  return candidates.find((path) => path !== undefined && existsSync(path));
}

/** How one server of a cluster joins it. */
export interface ClusterMembership {
  /** The cluster's name, the same on every member. */
  name: string;
  /** This server's unique name. */
  serverName: string;
  /** This server's route port. */
  port: number;
  /** Route URLs of the other members. */
  routes: string[];
}

/** Options of {@linkcode NatsServer.start}. */
export interface NatsServerOptions {
  /** Client port; -1 lets the server pick. @default {-1} */
  port?: number;
  /** JetStream store; a new temp directory unless given. */
  storeDir?: string;
  /** Join a cluster. */
  cluster?: ClusterMembership;
}

/** One private nats-server process with JetStream. */
export class NatsServer implements AsyncDisposable {
  readonly binary: string;
  readonly storeDir: string;
  readonly #ownsStore: boolean;
  #cluster: ClusterMembership | undefined;
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  #port = -1;
  #monitor = "";
  #log: string[] = [];

  private constructor(
    binary: string,
    storeDir: string,
    ownsStore: boolean,
    cluster: ClusterMembership | undefined,
  ) {
    this.binary = binary;
    this.storeDir = storeDir;
    this.#ownsStore = ownsStore;
    this.#cluster = cluster;
  }

  /** Starts a server and resolves once it accepts clients. */
  static async start(options: NatsServerOptions = {}): Promise<NatsServer> {
    const binary = natsServerBinary();
    if (binary === undefined) throw new Error("nats-server not found");
    const storeDir = options.storeDir ??
      await mkdtemp(join(tmpdir(), "eventbus-nats-"));
    const server = new NatsServer(
      binary,
      storeDir,
      options.storeDir === undefined,
      options.cluster,
    );
    try {
      await server.#spawn(options.port ?? -1);
    } catch (error) {
      await server[Symbol.asyncDispose]();
      throw error;
    }
    return server;
  }

  /** The client port. */
  get port(): number {
    return this.#port;
  }

  /** The HTTP monitoring base URL, such as `http://127.0.0.1:8222`. */
  get monitorUrl(): string {
    return this.#monitor;
  }

  /** `nats://127.0.0.1:<port>`. */
  get url(): string {
    return `nats://127.0.0.1:${this.#port}`;
  }

  /** The route URL other cluster members connect to. */
  get routeUrl(): string {
    return `nats://127.0.0.1:${this.#cluster?.port ?? -1}`;
  }

  /** The server name in a cluster. */
  get serverName(): string | undefined {
    return this.#cluster?.serverName;
  }

  /** Whether the process runs. */
  get running(): boolean {
    return this.#child !== undefined;
  }

  /** The server's log so far, for failure messages. */
  get log(): string {
    return this.#log.join("");
  }

  /** Kills the process (SIGKILL by default) and waits until it exited. */
  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    const child = this.#child;
    if (child === undefined) return;
    child.kill(signal);
    await this.#exited;
  }

  /** Starts the server again on the same port, store and cluster. */
  async restart(): Promise<void> {
    if (this.#child !== undefined) await this.kill("SIGTERM");
    await this.#spawn(this.#port);
  }

  /** Stops the server and deletes the store it created. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.kill("SIGKILL");
    if (this.#ownsStore) {
      await rm(this.storeDir, { recursive: true, force: true });
    }
  }

  async #spawn(port: number): Promise<void> {
    const portsDir = await mkdtemp(join(tmpdir(), "eventbus-nats-ports-"));
    const args = [
      "-a",
      "127.0.0.1",
      "-p",
      String(port),
      "-js",
      "-sd",
      this.storeDir,
      "--ports_file_dir",
      portsDir,
      "--http_port",
      "-1",
    ];
    const cluster = this.#cluster;
    if (cluster !== undefined) {
      args.push(
        "--server_name",
        cluster.serverName,
        "--cluster_name",
        cluster.name,
        "--cluster",
        `nats://127.0.0.1:${cluster.port}`,
      );
      if (cluster.routes.length > 0) {
        args.push("--routes", cluster.routes.join(","));
      }
    }
    const child = spawn(this.binary, args, {
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.#child = child;
    this.#exited = new Promise<void>((resolve) => {
      child.once("exit", () => {
        if (this.#child === child) this.#child = undefined;
        resolve();
      });
    });
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(
              `nats-server did not start in ${START_TIMEOUT} ms: ${this.log}`,
            ),
          ),
        START_TIMEOUT,
      );
      let recent = "";
      const onData = (chunk: Buffer): void => {
        const text = chunk.toString();
        this.#log.push(text);
        if (this.#log.length > 500) this.#log.splice(0, 100);
        recent = (recent + text).slice(-4096);
        if (recent.includes(READY)) {
          recent = "";
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout?.on("data", onData);
      child.stderr?.on("data", onData);
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`nats-server exited with ${code}: ${this.log}`));
      });
    });
    try {
      await ready;
      const file = await portsFile(portsDir);
      const ports = JSON.parse(
        await readFile(join(portsDir, file), "utf8"),
      ) as {
        nats?: string[];
        client?: string[];
        monitoring?: string[];
      };
      this.#port = portOf((ports.nats ?? ports.client)?.[0]);
      this.#monitor = ports.monitoring?.[0] ?? "";
    } finally {
      await rm(portsDir, { recursive: true, force: true });
    }
  }
}

/** Three JetStream servers on loopback, routed to each other. */
export class NatsCluster implements AsyncDisposable {
  readonly servers: NatsServer[];

  private constructor(servers: NatsServer[]) {
    this.servers = servers;
  }

  /** Starts `size` servers, each with its own store, and routes them. */
  static async start(size = 3): Promise<NatsCluster> {
    const name = `eventbus_${process.pid}_${Date.now().toString(36)}`;
    // JetStream clustering needs every route up front, so the route ports
    // are picked here (client ports are still -1, chosen by the servers).
    const ports: number[] = [];
    for (let i = 0; i < size; i++) ports.push(await freePort());
    const results = await Promise.allSettled(
      ports.map((port, i) =>
        NatsServer.start({
          cluster: {
            name,
            serverName: `n${i + 1}`,
            port,
            routes: ports.filter((p) => p !== port).map((p) =>
              `nats://127.0.0.1:${p}`
            ),
          },
        })
      ),
    );
    const servers = results.flatMap((r) =>
      r.status === "fulfilled" ? [r.value] : []
    );
    const failed = results.find((r) => r.status === "rejected");
    if (failed !== undefined) {
      await Promise.all(servers.map((s) => s[Symbol.asyncDispose]()));
      throw (failed as PromiseRejectedResult).reason;
    }
    const cluster = new NatsCluster(servers);
    try {
      await cluster.metaLeader();
    } catch (error) {
      await cluster[Symbol.asyncDispose]();
      throw error;
    }
    return cluster;
  }

  /** Resolves the JetStream meta leader's name once one is elected. */
  async metaLeader(timeout = START_TIMEOUT): Promise<string> {
    const deadline = Date.now() + timeout;
    while (true) {
      for (const server of this.servers.filter((s) => s.running)) {
        try {
          const response = await fetch(`${server.monitorUrl}/jsz`);
          const body = await response.json() as {
            meta_cluster?: { leader?: string };
          };
          const leader = body.meta_cluster?.leader;
          if (leader) return leader;
        } catch {
          // not answering yet
        }
      }
      if (Date.now() > deadline) {
        throw new Error(`no JetStream meta leader after ${timeout} ms`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** Client URLs of every server. */
  get urls(): string[] {
    return this.servers.map((s) => s.url);
  }

  /** The server with the given server name. */
  byName(name: string): NatsServer | undefined {
    return this.servers.find((s) => s.serverName === name);
  }

  /** Stops every server and deletes their stores. */
  async [Symbol.asyncDispose](): Promise<void> {
    await Promise.all(this.servers.map((s) => s[Symbol.asyncDispose]()));
  }
}

/** The ports file nats-server writes (just after it logs "ready"). */
async function portsFile(dir: string): Promise<string> {
  const deadline = Date.now() + 5_000;
  while (true) {
    const file = (await readdir(dir)).find((name) => name.endsWith(".ports"));
    if (file !== undefined) {
      const text = await readFile(join(dir, file), "utf8");
      if (text.trim().endsWith("}")) return file;
    }
    if (Date.now() > deadline) {
      throw new Error("nats-server wrote no ports file");
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** A TCP port that was free on 127.0.0.1 a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null
        ? address.port
        : -1;
      server.close(() => resolve(port));
    });
  });
}

function portOf(url: string | undefined): number {
  const port = Number(url?.split(":").pop());
  if (!Number.isInteger(port) || port <= 0) {
    throw new Error(`nats-server ports file has no port: ${url}`);
  }
  return port;
}
