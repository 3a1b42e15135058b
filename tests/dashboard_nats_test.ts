// Copyright 2026 the @eventbus/core authors. MIT license.
// The dead-letter dashboard on real NATS (the shared server, a unique
// stream per test, deleted after) in headless Chromium. Served by an
// operator's process (as the CLI does), it shows a worker's dead letters,
// says their delivery counts are not known there, and replays one with its
// button to the failed handler only. Served in the worker's process with
// its bus's stats, it shows delivered and failed tries per handler name —
// exactly what stats().handlers counted — and takes the README's screenshot
// (docs/dashboard.png, when missing or with UPDATE_SCREENSHOT=1, so a test
// run leaves the tree clean).

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import process from "node:process";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { serveDashboard } from "@eventbus/cli";
import { EventBus, NonRetriableError } from "../mod.ts";
import { JetStreamBackend } from "@eventbus/nats";
import { brokerMissing, reachable } from "./fixtures/_brokers.ts";
import { CHROMIUM, launchChromium, openPage } from "./fixtures/_chromium.ts";
import { Counter, MemoryLogger, withDeadline, work } from "./fixtures/_util.ts";
import { Admin, SHARED_NATS, uniqueNames } from "./fixtures/_nats.ts";
import { drained, TRACEPARENT } from "./fixtures/_nats_dead_letters.ts";

const SCREENSHOT = new URL("../docs/dashboard.png", import.meta.url);
const TIMEOUT = 30_000;
const WELCOME = "send-welcome-email";
const AUDIT = "audit-log";
const CRM = "sync-crm";

type Events = {
  "user.signup": { id: string; email: string };
  "billing.plan-changed": { customer: string; plan: string };
};

if (!existsSync(CHROMIUM)) {
  brokerMissing(
    "dashboard on NATS in Chromium",
    `${CHROMIUM} is missing (apt-get install chromium)`,
  );
} else if (!await reachable("127.0.0.1", 4222)) {
  brokerMissing("dashboard on NATS", `no NATS server on ${SHARED_NATS}`);
} else {
  describe("the dashboard on NATS", () => {
    it("shows a worker's dead letters and replays one with its button to the failed handler only", async () => {
      const names = uniqueNames("dash");
      await using admin = await Admin.open(SHARED_NATS, names.stream);
      const worker = new EventBus<Events>({
        logger: new MemoryLogger(),
        backend: await JetStreamBackend.connect(
          { servers: SHARED_NATS },
          names,
        ),
        retry: { attempts: 3, backoff: { initial: 5, max: 20 } },
        onError: () => {},
      });
      let broken = true;
      const welcomed: string[] = [];
      const welcomedCount = new Counter();
      const audited = new Counter();
      worker.subscribe("user.signup", (event) => {
        if (broken) throw new Error(`mail server down for ${event.data.id}`);
        welcomed.push(event.id);
        welcomedCount.add();
      }, { async: true, name: WELCOME });
      worker.subscribe("user.signup", () => audited.add(), {
        async: true,
        name: "audit-log",
      });
      worker.subscribe("billing.plan-changed", () => {
        throw new NonRetriableError(`"plan" must be one of "free", "team"`);
      }, { async: true, name: "sync-crm" });
      await worker.listen();
      // An operator's process: the stream's name only, as the CLI opens it.
      const operator = await JetStreamBackend.connect(
        { servers: SHARED_NATS },
        { stream: names.stream },
      );
      try {
        for (let i = 0; i < 5; i++) {
          await worker.emit("user.signup", {
            id: `u${i}`,
            email: `user${i}@example.com`,
          }, { metadata: { traceparent: TRACEPARENT } });
        }
        for (const customer of ["c7", "c9"]) {
          await worker.emit("billing.plan-changed", { customer, plan: "pro" });
        }
        await withDeadline(
          (async () => {
            while (await operator.deadLetters.count() < 7) await work(20);
          })(),
          TIMEOUT,
          () => "7 dead letters",
        );
        await audited.reach(5, TIMEOUT, "audit-log's runs");

        await using dashboard = await serveDashboard({
          backend: operator,
          allowWrites: true,
        });
        const browser = await launchChromium();
        try {
          const { page, errors } = await openPage(browser, dashboard.url);
          const count = page.locator(`tr[data-handler="${WELCOME}"] td.count`);
          await count.filter({ hasText: /^5$/ }).waitFor();
          const rows = page.locator("#letters tbody tr");
          await rows.nth(4).waitFor();
          assert.equal(await rows.count(), 5);
          assert.equal(
            await page.locator("#backend").textContent(),
            "nats-jetstream",
          );
          const errorsShown: string[] = [];
          for (let i = 0; i < 5; i++) {
            const cells = await rows.nth(i).locator("td").allTextContents();
            assert.equal(cells[1], "user.signup");
            assert.equal(cells[3], "3");
            assert.equal(cells[4], "failed");
            errorsShown.push(cells[5] ?? "");
          }
          assert.deepEqual(
            errorsShown.sort(),
            [0, 1, 2, 3, 4].map((i) => `Error: mail server down for u${i}`),
          );
          // The payload on click.
          await rows.nth(1).click();
          await page.locator("#detail").waitFor({ state: "visible" });
          const payload = JSON.parse(
            await page.locator("#payload").textContent() ?? "",
          );
          assert.match(payload.email, /^user\d@example\.com$/);
          // This process has no bus: no delivery counts, and no zeros.
          assert.equal(
            await page.locator(`tr[data-handler="${WELCOME}"] td.unknown`)
              .textContent(),
            "not known in this process",
          );
          assert.equal(await page.locator("td.delivered").count(), 0);

          // Replay the first one, once the handler is fixed.
          broken = false;
          const id = await rows.nth(0).locator("td").nth(2).textContent();
          await rows.nth(0).locator("button.replay").click();
          await page.locator("#confirm").waitFor({ state: "visible" });
          await page.locator("#confirm-ok").click();
          await count.filter({ hasText: /^4$/ }).waitFor();
          await rows.nth(4).waitFor({ state: "detached" });
          assert.equal(await rows.count(), 4);
          await welcomedCount.reach(1, TIMEOUT, "the replayed event's run");
          await drained(admin, names.stream, "audit-log");
          await drained(admin, names.stream, WELCOME);
          assert.deepEqual(welcomed, [id]);
          assert.equal(audited.value, 5, "audit-log ran 0 more times");
          assert.equal(
            await operator.deadLetters.count({ handler: WELCOME }),
            4,
          );
          assert.deepEqual(errors, []);
        } finally {
          await browser.close();
        }
      } finally {
        await Promise.all([
          operator.close({ timeout: 5_000 }),
          worker.close({ timeout: 5_000 }),
        ]);
      }
    });

    it("served in the worker's process, shows stats().handlers: delivered, failed and dead-lettered per handler name", async () => {
      const names = uniqueNames("dashstats");
      await using admin = await Admin.open(SHARED_NATS, names.stream);
      const dead = new Counter();
      const worker = new EventBus<Events>({
        logger: new MemoryLogger(),
        backend: await JetStreamBackend.connect(
          { servers: SHARED_NATS },
          names,
        ),
        retry: { attempts: 2, backoff: { initial: 5, max: 20 } },
        onError: () => dead.add(),
      });
      let broken = true;
      const welcomed = new Counter();
      const audited = new Counter();
      worker.subscribe("user.signup", (event) => {
        if (broken) throw new Error(`mail server down for ${event.data.id}`);
        welcomed.add();
      }, { async: true, name: WELCOME });
      worker.subscribe("user.signup", () => audited.add(), {
        async: true,
        name: AUDIT,
      });
      worker.subscribe("billing.plan-changed", () => {
        throw new NonRetriableError(`"plan" must be one of "free", "team"`);
      }, { async: true, name: CRM });
      try {
        await worker.listen();
        for (let i = 0; i < 3; i++) {
          await worker.emit("user.signup", {
            id: `u${i}`,
            email: `user${i}@example.com`,
          });
        }
        for (const customer of ["c7", "c9"]) {
          await worker.emit("billing.plan-changed", { customer, plan: "pro" });
        }
        await audited.reach(3, TIMEOUT, `${AUDIT}'s runs`);
        await dead.reach(5, TIMEOUT, "dead letters reported");
        const dlq = worker.backend.deadLetters!;
        await withDeadline(
          (async () => {
            while (await dlq.count() < 5) await work(20);
          })(),
          TIMEOUT,
          () => "5 dead letters stored",
        );
        for (const name of [WELCOME, AUDIT, CRM]) {
          await drained(admin, names.stream, name);
        }
        const zero = { completed: 0, failed: 0, retried: 0, deadLettered: 0 };
        const welcome = { ...zero, failed: 6, retried: 3, deadLettered: 3 };
        const audit = { ...zero, completed: 3 };
        const crm = { ...zero, failed: 2, deadLettered: 2 };
        assert.deepEqual(worker.stats().handlers, {
          [WELCOME]: welcome,
          [AUDIT]: audit,
          [CRM]: crm,
        });

        await using dashboard = await serveDashboard({
          backend: worker.backend,
          stats: () => worker.stats(),
          allowWrites: true,
        });
        const summary = await (await fetch(`${dashboard.url}api/summary`))
          .json();
        assert.deepEqual(summary, {
          backend: "nats-jetstream",
          writes: true,
          total: 5,
          scanned: 5,
          truncated: false,
          inProcess: true,
          handlers: [
            { handler: AUDIT, deadLettered: 0, types: {}, totals: audit },
            {
              handler: WELCOME,
              deadLettered: 3,
              types: { "user.signup": 3 },
              totals: welcome,
            },
            {
              handler: CRM,
              deadLettered: 2,
              types: { "billing.plan-changed": 2 },
              totals: crm,
            },
          ],
        });

        const browser = await launchChromium();
        try {
          const { page, errors } = await openPage(browser, dashboard.url);
          const line = (name: string) =>
            page.locator(`tr[data-handler="${name}"]`);
          const cells = async (name: string) =>
            (await line(name).locator("td").allTextContents()).slice(0, 4);
          await line(WELCOME).locator("td.count").filter({ hasText: /^3$/ })
            .waitFor();
          assert.deepEqual(await cells(AUDIT), [AUDIT, "3", "0", "0"]);
          assert.deepEqual(await cells(WELCOME), [WELCOME, "0", "6", "3"]);
          assert.deepEqual(await cells(CRM), [CRM, "0", "2", "2"]);
          assert.equal(await page.locator("td.unknown").count(), 0);
          const rows = page.locator("#letters tbody tr");
          await rows.nth(2).waitFor();
          assert.equal(await page.locator("#current").textContent(), WELCOME);
          // The payload on click, for the README's screenshot.
          await rows.nth(1).click();
          await page.locator("#detail").waitFor({ state: "visible" });
          if (
            !existsSync(fileURLToPath(SCREENSHOT)) ||
            process.env.UPDATE_SCREENSHOT === "1"
          ) {
            await mkdir(fileURLToPath(new URL(".", SCREENSHOT)), {
              recursive: true,
            });
            await page.screenshot({
              path: fileURLToPath(SCREENSHOT),
              fullPage: true,
            });
          }

          // A replayed event that now succeeds is delivered: the page says so.
          broken = false;
          await rows.nth(0).locator("button.replay").click();
          await page.locator("#confirm").waitFor({ state: "visible" });
          await page.locator("#confirm-ok").click();
          await welcomed.reach(1, TIMEOUT, "the replayed event's run");
          await drained(admin, names.stream, WELCOME);
          await page.locator("#refresh").click();
          await line(WELCOME).locator("td.delivered").filter({ hasText: /^1$/ })
            .waitFor();
          assert.deepEqual(await cells(WELCOME), [WELCOME, "1", "6", "2"]);
          assert.deepEqual(worker.stats().handlers[WELCOME], {
            ...welcome,
            completed: 1,
          });
          assert.equal(audited.value, 3, `${AUDIT} ran 0 more times`);
          assert.deepEqual(errors, []);
        } finally {
          await browser.close();
        }
      } finally {
        await worker.close({ timeout: 5_000 });
      }
    });
  });
}
