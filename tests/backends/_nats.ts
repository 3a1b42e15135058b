// Copyright 2026 the @eventbus/core authors. MIT license.
// Helpers of the NATS tests: unique stream names, a management connection,
// clean-up, and how to start a TypeScript child process on this runtime.

import { type JetStreamManager, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import process from "node:process";
import type { JetStreamBackendOptions } from "../../backends/nats/mod.ts";

/** The shared NATS server; tests never stop it. */
export const SHARED_NATS = "127.0.0.1:4222";

/** A stream name and subject prefix no other test run uses. */
export function uniqueNames(
  tag: string,
): Required<Pick<JetStreamBackendOptions, "stream" | "subjectPrefix">> {
  const id = crypto.randomUUID().slice(0, 8);
  return { stream: `T_${tag}_${id}`, subjectPrefix: `t_${tag}_${id}` };
}

/** A management connection; disposing deletes the given streams. */
export class Admin implements AsyncDisposable {
  readonly nc: NatsConnection;
  readonly jsm: JetStreamManager;
  readonly #streams: string[];

  private constructor(
    nc: NatsConnection,
    jsm: JetStreamManager,
    streams: string[],
  ) {
    this.nc = nc;
    this.jsm = jsm;
    this.#streams = streams;
  }

  /** Connects; `stream` and its dead-letter stream are deleted on dispose. */
  static async open(
    servers: string | string[],
    stream?: string,
  ): Promise<Admin> {
    const nc = await connect({ servers, maxReconnectAttempts: -1 });
    // checkAPI: false skips the account-info probe, which can time out on a
    // cluster that just formed while the machine is busy; the requests the
    // tests make later carry their own timeout.
    const jsm = await jetstreamManager(nc, {
      timeout: 10_000,
      checkAPI: false,
    });
    return new Admin(
      nc,
      jsm,
      stream === undefined ? [] : [stream, `${stream}_DLQ`],
    );
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const name of this.#streams) {
      await this.jsm.streams.delete(name).catch(() => false);
    }
    await this.nc.close();
  }
}

/**
 * The command that runs a TypeScript file on the runtime running the tests:
 * `deno run -A file` or `bun file`.
 */
export function scriptCommand(
  file: string,
  args: string[],
): [string, string[]] {
  if (process.versions.bun !== undefined) {
    return [process.execPath, [file, ...args]];
  }
  if (process.versions.deno !== undefined) {
    return [process.execPath, ["run", "-A", file, ...args]];
  }
  return [process.execPath, ["--experimental-strip-types", file, ...args]];
}
