// Copyright 2026 the @eventbus/core authors. MIT license.
// Broker reachability for tests: skip with a printed reason, or fail under
// REQUIRE_BROKERS=1 (CI), so a missing broker is never silently skipped.

import { connect } from "node:net";
import process from "node:process";
import { test } from "node:test";

/** True when CI demands every broker: a missing one fails instead of skipping. */
export const REQUIRE_BROKERS: boolean = process.env.REQUIRE_BROKERS === "1";

/** Resolves true when a TCP connection to host:port opens within `timeout` ms. */
export function reachable(
  host: string,
  port: number,
  timeout = 1000,
): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.removeAllListeners();
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeout);
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

/**
 * Declares the stand-in for a group of tests whose broker is missing: a
 * skipped test with the reason, or, under REQUIRE_BROKERS=1, a failing one.
 */
export function brokerMissing(name: string, reason: string): void {
  if (REQUIRE_BROKERS) {
    test(`${name}: broker required (REQUIRE_BROKERS=1)`, () => {
      throw new Error(`${name}: ${reason}`);
    });
  } else {
    console.log(`skipping ${name}: ${reason}`);
    test(`${name}: skipped, ${reason}`, { skip: reason }, () => {});
  }
}
