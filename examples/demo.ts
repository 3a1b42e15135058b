// Copyright 2026 the @eventbus/core authors. MIT license.
/**
 * The main demo: an auth-like flow on the embedded worker pool, no broker.
 *
 * - a sync gate on "user.login.before" rate-limits logins through emitSync;
 * - async handlers on "user.signup" (welcome mail, analytics) run on the
 *   default worker pool (10 workers, queue 1000);
 * - a flaky CRM sync is retried with backoff, and gives up (dead letter) on
 *   the accounts it can never sync;
 * - a live progress line from bus.stats(), then a summary.
 *
 * Run: `deno task demo` (or `bun examples/demo.ts`).
 *
 * @module
 */

import process from "node:process";
import { DeadLetterError, EventBus, HandlerError } from "@eventbus/core";

type AuthEvents = {
  "user.login.before": { email: string };
  "user.signup": { userId: number; email: string };
};

const SIGNUPS = 400;
const LOGIN_ATTEMPTS = 12;
const LOGINS_PER_WINDOW = 5;

const deadLetters: DeadLetterError[] = [];
const bus = new EventBus<AuthEvents>({
  source: "demo.auth",
  retry: { attempts: 3, backoff: { initial: 20, max: 200 } },
  logger: { ...console, warn: () => {}, debug: () => {}, info: () => {} },
  onError: (error) => {
    if (error instanceof DeadLetterError) deadLetters.push(error);
  },
});

// 1. A sync gate: runs inline while the caller waits; a throw rejects the login.
const logins = new Map<string, number>();
bus.subscribe("user.login.before", (event) => {
  const count = (logins.get(event.data.email) ?? 0) + 1;
  logins.set(event.data.email, count);
  if (count > LOGINS_PER_WINDOW) {
    throw new Error(`rate limited: ${event.data.email} tried ${count} times`);
  }
});

// 2. Async handlers on the worker pool: they run after emit() resolved.
const mailbox: string[] = [];
bus.subscribe("user.signup", async (event, { signal }) => {
  await pause(5 + Math.random() * 10, signal); // talk to the mail service
  mailbox.push(event.data.email);
}, { async: true, name: "send-welcome-email", timeout: 2_000 });

let analytics = 0;
bus.subscribe("user.signup", async (_event, { signal }) => {
  await pause(2, signal);
  analytics++;
}, { async: true, name: "track-signup" });

// 3. A flaky handler: every 7th try fails once (retried), and accounts whose
// id ends in 99 always fail (dead-lettered after 3 tries).
let crmTries = 0;
bus.subscribe("user.signup", async (event, { attempt, signal }) => {
  crmTries++;
  await pause(3, signal);
  if (event.data.userId % 100 === 99) {
    throw new Error(`CRM rejects account ${event.data.userId}`);
  }
  if (attempt === 1 && crmTries % 7 === 0) throw new Error("CRM timeout");
}, { async: true, name: "sync-crm" });

const started = performance.now();
const progress = setInterval(() => printProgress(false), 100);

console.log(`Logging in ${LOGIN_ATTEMPTS} times as mallory@example.com:`);
const verdicts: string[] = [];
for (let i = 0; i < LOGIN_ATTEMPTS; i++) {
  try {
    await bus.emitSync("user.login.before", { email: "mallory@example.com" });
    verdicts.push("ok");
  } catch (error) {
    if (!(error instanceof HandlerError)) throw error;
    verdicts.push("denied");
  }
}
console.log(`  ${verdicts.join(" ")}`);

console.log(`Signing up ${SIGNUPS} users:`);
for (let userId = 1; userId <= SIGNUPS; userId++) {
  await bus.emit("user.signup", { userId, email: `user${userId}@example.com` });
  if (userId % 50 === 0) await pause(25); // users arrive in bursts
}

const report = await bus.close({ timeout: 10_000 });
clearInterval(progress);
printProgress(true);

const stats = bus.stats();
console.log(`
Summary after ${((performance.now() - started) / 1000).toFixed(2)} s:
  logins allowed / denied : ${verdicts.filter((v) => v === "ok").length} / ${
  verdicts.filter((v) => v === "denied").length
}
  welcome mails sent      : ${mailbox.length} of ${SIGNUPS}
  signups tracked         : ${analytics} of ${SIGNUPS}
  deliveries completed    : ${stats.completed} (close report: ${report.completed})
  failed tries / retried  : ${stats.failed} / ${stats.retried}
  dead letters            : ${stats.deadLettered} (${
  deadLetters.map((e) => (e.event.data as { userId: number }).userId).join(", ")
})
  abandoned at close      : ${report.abandoned.length}`);

const expectedDead = Math.floor((SIGNUPS + 1) / 100);
if (
  mailbox.length !== SIGNUPS || analytics !== SIGNUPS ||
  deadLetters.length !== expectedDead || report.abandoned.length !== 0
) {
  console.error("The demo did not end as expected.");
  process.exitCode = 1;
}

function printProgress(final: boolean): void {
  const s = bus.stats();
  const line = `  queued ${pad(s.queued)}  in flight ${pad(s.inFlight)}  ` +
    `completed ${pad(s.completed)}  failed ${pad(s.failed)}  ` +
    `retried ${pad(s.retried)}  dead ${pad(s.deadLettered)}`;
  if (process.stdout.isTTY) {
    process.stdout.write(`\r${line}${final ? "\n" : ""}`);
  } else if (final || s.inFlight > 0 || s.queued > 0) {
    console.log(line);
  }
}

function pad(n: number): string {
  return String(n).padStart(4);
}

function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });
}
