// Copyright 2026 the @eventbus/core authors. MIT license.
// The dead-letter dashboard: its HTTP API and its guards over plain HTTP,
// then the page itself in headless Chromium (playwright-core with Debian's
// /usr/bin/chromium). The README's screenshot is taken against NATS, in
// dashboard_nats_test.ts.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { test } from "node:test";
import { serveDashboard } from "@eventbus/cli";
import { EventBus } from "@eventbus/core";
import { brokerMissing } from "./fixtures/_brokers.ts";
import { CHROMIUM, launchChromium, openPage } from "./fixtures/_chromium.ts";
import {
  DEAD_LETTER_FIELDS,
  type DeadLetterBackend,
  deadLetterBackend,
} from "./fixtures/_dead_letter_backend.ts";
import { Counter, MemoryLogger } from "./fixtures/_util.ts";

const A = "send-welcome-email";
const B = "audit-log";

/**
 * A bus on the worker pool whose handler A fails 3 events permanently with
 * 2 attempts, while handler B succeeds on the same 3, settled.
 */
async function busWithTotals(): Promise<EventBus<Events>> {
  const dead = new Counter();
  const done = new Counter();
  const bus = new EventBus<Events>({
    logger: new MemoryLogger(),
    retry: { attempts: 2, backoff: { initial: 1, max: 2 } },
    onError: () => dead.add(),
  });
  bus.subscribe("user.signup", (event) => {
    throw new Error(`mail server down for ${event.data.id}`);
  }, { async: true, name: A });
  bus.subscribe("user.signup", () => done.add(), { async: true, name: B });
  for (let i = 0; i < 3; i++) {
    await bus.emit("user.signup", {
      id: `u${i}`,
      email: `user${i}@example.com`,
    });
  }
  await done.reach(3);
  await dead.reach(3);
  return bus;
}

type Events = { "user.signup": { id: string; email: string } };

/** 5 dead letters of handler A, and 2 of another handler. */
function backendWithLetters(): DeadLetterBackend {
  const fake = deadLetterBackend(5, A);
  for (const id of ["c7", "c9"]) {
    fake.fail("sync-crm", { customer: id, plan: "pro" }, {
      type: "billing.plan-changed",
      reason: "invalid-data",
      error: 'EventValidationError: "plan" must be one of "free", "team"',
    });
  }
  return fake;
}

interface Answer {
  status: number;
  body: Record<string, unknown>;
  headers: Record<string, string | string[] | undefined>;
}

/** One HTTP request with exactly the headers given (fetch would add some). */
function send(
  url: string,
  options: {
    method?: string;
    headers?: Record<string, string>;
    body?: string;
  } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, {
      method: options.method ?? "GET",
      headers: options.headers ?? {},
    }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => text += chunk);
      res.on("end", () => {
        let body: Record<string, unknown> = {};
        try {
          body = JSON.parse(text);
        } catch {
          body = { text };
        }
        resolve({ status: res.statusCode ?? 0, body, headers: res.headers });
      });
    });
    req.on("error", reject);
    req.end(options.body);
  });
}

async function tokenOf(url: string): Promise<string> {
  const page = (await send(url)).body.text as string;
  return /"token":"([^"]*)"/.exec(page)?.[1] ?? "";
}

function post(
  url: string,
  path: string,
  body: unknown,
  headers: Record<string, string>,
): Promise<Answer> {
  return send(new URL(path, url).href, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
}

test("serveDashboard listens on 127.0.0.1 and summarizes dead letters per handler name", async () => {
  const fake = backendWithLetters();
  await using dashboard = await serveDashboard({ backend: fake.backend });
  assert.match(dashboard.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
  const summary = await send(`${dashboard.url}api/summary`);
  assert.equal(summary.status, 200);
  assert.deepEqual(summary.body, {
    backend: "fake-remote",
    writes: false,
    total: 7,
    scanned: 7,
    truncated: false,
    inProcess: false,
    handlers: [
      {
        handler: A,
        deadLettered: 5,
        types: { "user.signup": 5 },
        totals: null,
      },
      {
        handler: "sync-crm",
        deadLettered: 2,
        types: { "billing.plan-changed": 2 },
        totals: null,
      },
    ],
  });
  const letters = await send(
    `${dashboard.url}api/dead-letters?handler=${A}&limit=3`,
  );
  assert.equal(letters.status, 200);
  const items = letters.body.items as Record<string, unknown>[];
  assert.equal(items.length, 3);
  assert.equal(letters.body.total, 5);
  assert.equal(letters.body.more, true);
  assert.deepEqual(Object.keys(items[0]!), DEAD_LETTER_FIELDS);
  assert.deepEqual(items[0]!.event, fake.events[0]);
  const page = await send(dashboard.url);
  assert.equal(page.status, 200);
  assert.match(
    String(page.headers["content-security-policy"]),
    /default-src 'none'/,
  );
  assert.equal(page.headers["x-frame-options"], "DENY");
  assert.doesNotMatch(page.body.text as string, /https?:\/\/(?!127\.0\.0\.1)/);
});

test("serveDashboard with stats shows each handler name's delivered, failed and dead-lettered counts", async () => {
  await using bus = await busWithTotals();
  await using dashboard = await serveDashboard({
    backend: bus.backend,
    stats: () => bus.stats(),
  });
  const totalsA = { completed: 0, failed: 6, retried: 3, deadLettered: 3 };
  const totalsB = { completed: 3, failed: 0, retried: 0, deadLettered: 0 };
  const summary = await send(`${dashboard.url}api/summary`);
  assert.equal(summary.status, 200);
  assert.deepEqual(summary.body, {
    backend: "worker-pool",
    writes: false,
    total: 3,
    scanned: 3,
    truncated: false,
    inProcess: true,
    handlers: [
      { handler: B, deadLettered: 0, types: {}, totals: totalsB },
      {
        handler: A,
        deadLettered: 3,
        types: { "user.signup": 3 },
        totals: totalsA,
      },
    ],
  });
  // A name the bus no longer handles keeps its dead letters, not its totals.
  await using again = await serveDashboard({
    backend: bus.backend,
    stats: () => {
      const { [A]: _, ...handlers } = bus.stats().handlers;
      return { ...bus.stats(), handlers };
    },
    scanLimit: 1,
  });
  const truncated = await send(`${again.url}api/summary`);
  assert.deepEqual(truncated.body.handlers, [
    { handler: B, deadLettered: 0, types: {}, totals: totalsB },
    {
      handler: A,
      deadLettered: 3,
      types: { "user.signup": 1 },
      totals: null,
    },
  ]);
  assert.equal(truncated.body.total, 3);
  assert.equal(truncated.body.truncated, true);
});

test("serveDashboard refuses a POST without the token, with a wrong one, or from another origin", async () => {
  const fake = backendWithLetters();
  await using dashboard = await serveDashboard({
    backend: fake.backend,
    allowWrites: true,
  });
  const { url } = dashboard;
  const token = await tokenOf(url);
  assert.ok(token.length >= 32, "the page embeds the token");
  const refused = [
    await post(url, "api/replay", { handler: A }, {}),
    await post(url, "api/purge", { handler: A }, { "x-dashboard-token": "x" }),
    await post(url, "api/purge", { handler: A }, {
      "x-dashboard-token": token.slice(0, -1) +
        (token.endsWith("A") ? "B" : "A"),
    }),
    await post(url, "api/replay", { handler: A }, {
      "x-dashboard-token": token,
      origin: "http://evil.example",
    }),
    await post(url, "api/replay", { handler: A }, {
      "x-dashboard-token": token,
      "sec-fetch-site": "cross-site",
    }),
    await post(url, "api/replay", { handler: A }, {
      "x-dashboard-token": token,
      host: "evil.example",
    }),
  ];
  for (const answer of refused) {
    assert.equal(answer.status, 403, JSON.stringify(answer.body));
    assert.match(String(answer.body.error), /Refused/);
  }
  assert.equal(await fake.backend.deadLetters.count(), 7);
  assert.equal(fake.replayed.length, 0);

  const good = { "x-dashboard-token": token, origin: url.slice(0, -1) };
  const bad = await post(url, "api/replay", {}, good);
  assert.equal(bad.status, 400, "an empty target is not everything");
  assert.equal(
    (await post(url, "api/replay", { handler: A, extra: 1 }, good)).status,
    400,
  );
  assert.equal(
    (await send(new URL("api/replay", url).href, {
      method: "POST",
      headers: { ...good, "content-type": "text/plain" },
      body: JSON.stringify({ handler: A }),
    })).status,
    415,
  );
  assert.equal((await send(`${url}api/replay`)).status, 405);
  const dry = await post(url, "api/purge", { handler: A, dryRun: true }, good);
  assert.deepEqual([dry.status, dry.body], [200, { purged: 5 }]);
  assert.equal(await fake.backend.deadLetters.count(), 7);
  const replayed = await post(url, "api/replay", { handler: A }, good);
  assert.deepEqual([replayed.status, replayed.body], [200, { replayed: 5 }]);
  assert.deepEqual(fake.replayed.map((l) => l.event), fake.events.slice(0, 5));
  assert.equal(await fake.backend.deadLetters.count(), 2);
});

test("serveDashboard without allowWrites embeds no token and refuses every POST", async () => {
  const fake = backendWithLetters();
  await using dashboard = await serveDashboard({ backend: fake.backend });
  assert.equal(await tokenOf(dashboard.url), "");
  for (const path of ["api/replay", "api/purge"]) {
    const answer = await post(dashboard.url, path, { handler: A }, {
      "x-dashboard-token": "",
    });
    assert.equal(answer.status, 403);
    assert.match(
      String(answer.body.error),
      /read-only: start it with --allow-writes/,
    );
  }
  assert.equal(await fake.backend.deadLetters.count(), 7);
});

test("serveDashboard closes, and says what to do when the port is taken", async () => {
  const fake = backendWithLetters();
  const first = await serveDashboard({ backend: fake.backend });
  const port = Number(new URL(first.url).port);
  await assert.rejects(
    serveDashboard({ backend: fake.backend, port }),
    /the port is in use, pick another --port/,
  );
  await first.close();
  await first.close();
  await assert.rejects(send(first.url));
  const { deadLetters: _, ...bare } = fake.backend;
  await assert.rejects(
    serveDashboard({ backend: bare }),
    /the fake-remote backend has no deadLetters/,
  );
  await assert.rejects(
    serveDashboard({
      backend: fake.backend,
      stats: { completed: 1 } as unknown as () => never,
    }),
    (error: unknown) =>
      error instanceof TypeError &&
      /stats must be a function such as \(\) => bus\.stats\(\), got object/
        .test(error.message),
  );
});

if (!existsSync(CHROMIUM)) {
  brokerMissing(
    "dashboard in Chromium",
    `${CHROMIUM} is missing (apt-get install chromium)`,
  );
} else {
  test("the dashboard page shows the dead letters and replays one after the confirmation", async () => {
    const fake = backendWithLetters();
    await using dashboard = await serveDashboard({
      backend: fake.backend,
      allowWrites: true,
    });
    const browser = await launchChromium();
    try {
      const { page, errors } = await openPage(browser, dashboard.url);
      const count = page.locator(`tr[data-handler="${A}"] td.count`);
      await count.filter({ hasText: /^5$/ }).waitFor();
      const rows = page.locator("#letters tbody tr");
      await rows.nth(4).waitFor(); // drawn after the counts
      assert.equal(await rows.count(), 5);
      for (const [i, event] of fake.events.slice(0, 5).entries()) {
        const cells = await rows.nth(i).locator("td").allTextContents();
        assert.equal(cells[1], "user.signup");
        assert.equal(cells[2], event.id);
        assert.equal(cells[3], "3");
        assert.equal(cells[4], "failed");
        assert.equal(cells[5], `Error: mail server down for u${i}`);
      }
      // The payload on click.
      await rows.nth(1).click();
      await page.locator("#detail").waitFor({ state: "visible" });
      assert.deepEqual(
        JSON.parse(await page.locator("#payload").textContent() ?? ""),
        { id: "u1", email: "user1@example.com" },
      );
      // Replay the first one: nothing happens before the confirmation.
      const first = await rows.nth(0).getAttribute("data-ref");
      await rows.nth(0).locator("button.replay").click();
      const dialog = page.locator("#confirm");
      await dialog.waitFor({ state: "visible" });
      assert.match(
        await page.locator("#confirm-text").textContent() ?? "",
        /^Replay dead letter \d+ \(user\.signup, handler .send-welcome-email.\)\?/,
      );
      assert.equal(fake.replayed.length, 0);
      await page.locator("#confirm-ok").click();
      await count.filter({ hasText: /^4$/ }).waitFor();
      assert.equal(await count.textContent(), "4");
      await rows.nth(4).waitFor({ state: "detached" });
      assert.equal(await rows.count(), 4);
      assert.deepEqual(fake.replayed.map((l) => l.ref), [first]);
      assert.deepEqual(fake.replayed[0]!.event, fake.events[0]);
      assert.equal(await fake.backend.deadLetters.count({ handler: A }), 4);

      // Cancelling a purge changes nothing.
      await rows.nth(0).locator("button.purge").click();
      await dialog.waitFor({ state: "visible" });
      await page.locator("#confirm-cancel").click();
      await dialog.waitFor({ state: "hidden" });
      assert.equal(await fake.backend.deadLetters.count({ handler: A }), 4);
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
    }
  });

  test("the read-only dashboard page has no buttons", async () => {
    const fake = backendWithLetters();
    await using dashboard = await serveDashboard({ backend: fake.backend });
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      page.setDefaultTimeout(20_000);
      await page.goto(dashboard.url);
      const rows = page.locator("#letters tbody tr");
      await rows.nth(4).waitFor();
      assert.equal(await rows.count(), 5);
      assert.equal(await page.locator("#mode").textContent(), "read-only");
      // No bus in this process: no delivery counts, and no zeros either.
      assert.equal(
        await page.locator(`tr[data-handler="${A}"] td.unknown`).textContent(),
        "not known in this process",
      );
      assert.equal(await page.locator("td.delivered, td.failed").count(), 0);
      assert.match(
        await page.locator("#note").textContent() ?? "",
        /^Delivered and failed tries are not known in this process/,
      );
      assert.equal(
        await page.locator("button.replay, button.purge").count(),
        0,
      );
      assert.equal(await page.locator("th.actions-col").count(), 0);
      // Even a script in the page cannot write without the token.
      const status = await page.evaluate(async () =>
        (await fetch("/api/purge", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ handler: "send-welcome-email" }),
        })).status
      );
      assert.equal(status, 403);
      assert.equal(await fake.backend.deadLetters.count(), 7);
    } finally {
      await browser.close();
    }
  });

  test("the dashboard page served with stats shows delivered and failed tries per handler name", async () => {
    await using bus = await busWithTotals();
    await using dashboard = await serveDashboard({
      backend: bus.backend,
      stats: () => bus.stats(),
    });
    const browser = await launchChromium();
    try {
      const { page, errors } = await openPage(browser, dashboard.url);
      const line = (name: string) => page.locator(`tr[data-handler="${name}"]`);
      await line(A).locator("td.count").filter({ hasText: /^3$/ }).waitFor();
      const cells = async (name: string) =>
        (await line(name).locator("td").allTextContents()).slice(0, 4);
      assert.deepEqual(await cells(A), [A, "0", "6", "3"]);
      assert.deepEqual(await cells(B), [B, "3", "0", "0"]);
      assert.equal(
        await line(A).locator("td.failed").getAttribute("title"),
        "3 retried, 3 given up",
      );
      assert.equal(await page.locator("td.unknown").count(), 0);
      assert.deepEqual(
        await page.locator("#handlers thead th").allTextContents(),
        [
          "Handler",
          "Delivered",
          "Failed tries",
          "Dead-lettered",
          "Event types",
        ],
      );
      assert.match(
        await page.locator("#note").textContent() ?? "",
        /^Delivered and failed tries: this process's bus/,
      );
      // The letters shown are those of the name with dead letters.
      const rows = page.locator("#letters tbody tr");
      await rows.nth(2).waitFor(); // drawn after the counts
      assert.equal(await page.locator("#current").textContent(), A);
      assert.equal(await rows.count(), 3);
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
    }
  });
}
