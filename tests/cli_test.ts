// Copyright 2026 the @eventbus/core authors. MIT license.
import assert from "node:assert/strict";
import { test } from "node:test";
import { runCli, type RunCliOptions } from "@eventbus/cli";
import type { AsyncBackend } from "../mod.ts";
import {
  DEAD_LETTER_FIELDS,
  type DeadLetterBackend,
  deadLetterBackend,
  TRACEPARENT,
} from "./fixtures/_dead_letter_backend.ts";
import { withDeadline } from "./fixtures/_util.ts";

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI against `--backend fake` (and the built-ins), capturing output. */
async function run(
  args: string[],
  fake?: DeadLetterBackend | AsyncBackend,
  options: RunCliOptions & { input?: string[] } = {},
): Promise<Run> {
  let stdout = "";
  let stderr = "";
  const { input = [], ...rest } = options;
  const backend = fake === undefined
    ? undefined
    : "backend" in fake && "replayed" in fake
    ? fake.backend
    : fake as AsyncBackend;
  const code = await runCli(args, {
    backends: backend === undefined
      ? {}
      : { fake: () => Promise.resolve(backend) },
    stdout: (text) => void (stdout += text),
    stderr: (text) => void (stderr += text),
    stdin: lines(input),
    ...rest,
  });
  return { code, stdout, stderr };
}

async function* lines(input: string[]): AsyncIterable<Uint8Array> {
  for (const line of input) yield new TextEncoder().encode(line);
}

test("runCli list --json prints one JSON object per dead letter with exactly the documented fields", async () => {
  const fake = deadLetterBackend();
  const { code, stdout, stderr } = await run(
    ["list", "--backend", "fake", "--handler", "A", "--json"],
    fake,
  );
  assert.equal(code, 0, stderr);
  const lines = stdout.trimEnd().split("\n");
  assert.equal(lines.length, 5);
  const refs = new Set<string>();
  for (const [i, line] of lines.entries()) {
    const letter = JSON.parse(line);
    assert.deepEqual(Object.keys(letter), DEAD_LETTER_FIELDS);
    assert.equal(typeof letter.ref, "string");
    refs.add(letter.ref);
    assert.deepEqual(letter.event, fake.events[i]);
    assert.equal(letter.event.metadata.traceparent, TRACEPARENT);
    assert.equal(letter.handler, "A");
    assert.equal(letter.attempts, 3);
    assert.equal(letter.reason, "failed");
    assert.equal(letter.error, `Error: mail server down for u${i}`);
    assert.ok(!Number.isNaN(Date.parse(letter.time)), letter.time);
  }
  assert.equal(refs.size, 5);
  assert.equal(fake.closed, 1, "the backend is closed at the end");
});

test("runCli list prints a table of type, id, handler, attempts, reason, error and time", async () => {
  const fake = deadLetterBackend();
  const { code, stdout } = await run(["list", "--backend", "fake"], fake);
  assert.equal(code, 0);
  const [header, ...rows] = stdout.trimEnd().split("\n");
  assert.deepEqual(header!.split(/\s+/), [
    "REF",
    "TYPE",
    "ID",
    "HANDLER",
    "ATTEMPTS",
    "REASON",
    "ERROR",
    "TIME",
  ]);
  assert.equal(rows.length, 6); // 5 dead letters and the count
  for (const [i, event] of fake.events.entries()) {
    const row = rows[i]!;
    assert.ok(row.includes("user.signup") && row.includes(event.id), row);
    assert.match(
      row,
      new RegExp(
        `\\bA\\s+3\\s+failed\\s+Error: mail server down for u${i}\\s+\\d{4}-`,
      ),
    );
  }
  assert.equal(rows[5], "5 dead letters");
});

test("runCli list exits 2 when nothing matches, and honours --limit, --type and --ref", async () => {
  const fake = deadLetterBackend();
  const none = await run(["list", "--backend", "fake", "--handler", "B"], fake);
  assert.equal(none.code, 2);
  assert.equal(none.stdout, "");
  assert.match(none.stderr, /No dead letters match \(handler "B"\)/);
  assert.equal(
    (await run(["list", "--backend", "fake", "--type", "order.placed"], fake))
      .code,
    2,
  );
  const two = await run(
    ["list", "--backend", "fake", "--limit", "2", "--json"],
    fake,
  );
  assert.equal(two.code, 0);
  assert.deepEqual(
    two.stdout.trimEnd().split("\n").map((l) => JSON.parse(l).event.id),
    fake.events.slice(0, 2).map((e) => e.id),
  );
  const all = (await run(["list", "--backend", "fake", "--json"], fake))
    .stdout.trimEnd().split("\n").map((l) => JSON.parse(l));
  const picked = await run(
    ["list", "--backend", "fake", "--json", "--ref", all[3].ref],
    fake,
  );
  assert.equal(JSON.parse(picked.stdout).event.id, fake.events[3]!.id);
});

test("runCli count prints the number, and exits 2 for none", async () => {
  const fake = deadLetterBackend();
  assert.deepEqual(
    await run(["count", "--backend", "fake", "--handler", "A"], fake),
    { code: 0, stdout: "5\n", stderr: "" },
  );
  assert.deepEqual(
    await run(["count", "--backend", "fake", "--handler", "B", "--json"], fake),
    { code: 2, stdout: '{"count":0}\n', stderr: "" },
  );
});

test("runCli show prints one dead letter in full with its payload, and exits 2 for an unknown ref", async () => {
  const fake = deadLetterBackend();
  const first = JSON.parse(
    (await run(["list", "--backend", "fake", "--json", "--limit", "1"], fake))
      .stdout,
  );
  const shown = await run(["show", first.ref, "--backend", "fake"], fake);
  assert.equal(shown.code, 0, shown.stderr);
  assert.match(shown.stdout, new RegExp(`^ref\\s+${first.ref}$`, "m"));
  assert.match(shown.stdout, /^error\s+Error: mail server down for u0$/m);
  const event = JSON.parse(shown.stdout.slice(shown.stdout.indexOf("{")));
  assert.deepEqual(event.data, { id: "u0", email: "user0@example.com" });
  assert.deepEqual(event, fake.events[0]);

  const json = await run(
    ["show", "--backend", "fake", "--ref", first.ref, "--json"],
    fake,
  );
  assert.deepEqual(JSON.parse(json.stdout), first);

  const unknown = await run(["show", "999999", "--backend", "fake"], fake);
  assert.equal(unknown.code, 2);
  assert.equal(unknown.stdout, "");
  assert.match(unknown.stderr, /No dead letter has the ref "999999"/);

  const bare = await run(["show", "--backend", "fake"], fake);
  assert.equal(bare.code, 1);
  assert.match(bare.stderr, /needs the ref/);
});

test("runCli replay --dry-run reports the count and replays nothing", async () => {
  const fake = deadLetterBackend();
  const { code, stdout } = await run(
    ["replay", "--backend", "fake", "--handler", "A", "--dry-run"],
    fake,
  );
  assert.equal(code, 0);
  assert.match(
    stdout,
    /Would replay 5 dead letters \(handler "A"\); nothing changed/,
  );
  assert.equal(fake.replayed.length, 0);
  assert.equal(await fake.backend.deadLetters.count({ handler: "A" }), 5);
  const json = await run(
    ["replay", "--backend", "fake", "--dry-run", "--json"],
    fake,
  );
  assert.deepEqual(JSON.parse(json.stdout), { replayed: 5, dryRun: true });
  assert.equal(fake.replayed.length, 0);
});

test("runCli replay hands each selected dead letter back once, with its id and traceparent", async () => {
  const fake = deadLetterBackend();
  const some = await run(
    ["replay", "--backend", "fake", "--type", "user.signup", "--limit", "2"],
    fake,
  );
  assert.equal(some.code, 0, some.stderr);
  assert.match(some.stdout, /Replayed 2 dead letters/);
  assert.deepEqual(
    fake.replayed.map((l) => l.event),
    fake.events.slice(0, 2),
  );
  const rest = await run(
    ["replay", "--backend", "fake", "--handler", "A", "--json"],
    fake,
  );
  assert.deepEqual(JSON.parse(rest.stdout), { replayed: 3, dryRun: false });
  assert.deepEqual(
    fake.replayed.map((l) => l.event.id),
    fake.events.map((e) => e.id),
  );
  assert.ok(
    fake.replayed.every((l) => l.event.metadata.traceparent === TRACEPARENT),
  );
  assert.equal(await fake.backend.deadLetters.count(), 0);
  const again = await run(["replay", "--backend", "fake"], fake);
  assert.equal(again.code, 2);
  assert.equal(fake.replayed.length, 5);
});

test("runCli purge without --yes and without a y on stdin purges nothing", async () => {
  const fake = deadLetterBackend();
  for (const input of [[], ["n\n"], ["\n"], ["yes please\n"]]) {
    const { code, stderr } = await run(
      ["purge", "--backend", "fake", "--handler", "A"],
      fake,
      { input },
    );
    assert.equal(code, 1, `input ${JSON.stringify(input)}`);
    assert.match(
      stderr,
      /Purge 5 dead letters \(handler "A"\) of the fake-remote backend for good\? \[y\/N\] /,
    );
    assert.match(stderr, /othing purged \(pass --yes/);
    assert.equal(await fake.backend.deadLetters.count(), 5);
  }
});

test("runCli purge --dry-run changes nothing, a y on stdin or --yes empties", async () => {
  const fake = deadLetterBackend();
  const dry = await run(["purge", "--backend", "fake", "--dry-run"], fake);
  assert.equal(dry.code, 0);
  assert.match(dry.stdout, /Would purge 5 dead letters; nothing changed/);
  assert.equal(await fake.backend.deadLetters.count(), 5);

  const one = await run(
    ["purge", "--backend", "fake", "--limit", "1"],
    fake,
    { input: ["y", "\n"] },
  );
  assert.equal(one.code, 0, one.stderr);
  assert.match(one.stdout, /Purged 1 dead letter \(at most 1\)/);
  assert.equal(await fake.backend.deadLetters.count(), 4);

  const all = await run(
    ["purge", "--backend", "fake", "--handler", "A", "--yes", "--json"],
    fake,
  );
  assert.equal(all.code, 0, all.stderr);
  assert.deepEqual(JSON.parse(all.stdout), { purged: 4, dryRun: false });
  assert.equal(await fake.backend.deadLetters.count(), 0);
  assert.equal(fake.replayed.length, 0, "purge replays nothing");
  assert.equal(
    (await run(["purge", "--backend", "fake", "--yes"], fake)).code,
    2,
  );
});

test("runCli exits 1 for an unknown backend, command or flag, and 0 for --help", async () => {
  const fake = deadLetterBackend();
  const cases: [string[], RegExp][] = [
    [
      ["list", "--backend", "nope"],
      /Unknown backend "nope": use one of nats, redis, rabbitmq, kafka, sqs, fake/,
    ],
    [["lsit", "--backend", "fake"], /Unknown command "lsit"/],
    [["list", "--backend", "fake", "--bogus"], /Unknown flag "--bogus"/],
    [["list"], /Missing --backend/],
    [[], /Missing command/],
    [
      ["list", "--backend", "fake", "--limit", "x"],
      /"--limit" takes a whole number/,
    ],
    [["list", "--backend", "fake", "--yes"], /"--yes" does nothing for "list"/],
    [
      ["list", "--backend", "redis", "--servers", "h:1"],
      /"--servers" is for nats, not redis/,
    ],
    [["list", "--backend", "fake", "--handler"], /--handler/],
  ];
  for (const [args, message] of cases) {
    const { code, stdout, stderr } = await run(args, fake);
    assert.equal(code, 1, args.join(" "));
    assert.equal(stdout, "");
    assert.match(stderr, message);
  }
  assert.equal(fake.closed, 0, "no backend opened for a bad command line");
  assert.equal(await fake.backend.deadLetters.count(), 5);
  const help = await run(["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Exit codes: 0 done, 2 nothing matched, 1 error/);
});

test("runCli skips the -- that deno task passes on", async () => {
  const fake = deadLetterBackend();
  const { code, stdout } = await run(
    ["--", "count", "--backend", "fake"],
    fake,
  );
  assert.equal(code, 0);
  assert.equal(stdout, "5\n");
});

test("runCli exits 1 within seconds with what to do when the broker is unreachable", async () => {
  const started = Date.now();
  const { code, stderr } = await withDeadline(
    run(["list", "--backend", "nats", "--servers", "127.0.0.1:1"]),
    10_000,
    () => "runCli against 127.0.0.1:1",
  );
  assert.equal(code, 1);
  assert.match(stderr, /Cannot connect to NATS at \["127\.0\.0\.1:1"\]/);
  assert.match(
    stderr,
    /hint: check that the nats broker runs at 127\.0\.0\.1:1 .* --servers/,
  );
  assert.ok(Date.now() - started < 10_000);
});

test("runCli exits 1 with a clear message for a backend without dead letters", async () => {
  let closed = 0;
  const backend: AsyncBackend = {
    name: "bare",
    remote: true,
    publish: () => Promise.resolve(),
    consume: () => Promise.resolve(),
    close: () => {
      closed++;
      return Promise.resolve({ completed: 0, abandoned: [] });
    },
  };
  const { code, stderr } = await run(["list", "--backend", "fake"], backend);
  assert.equal(code, 1);
  assert.match(
    stderr,
    /The bare backend \(--backend fake\) has no dead letters/,
  );
  assert.equal(closed, 1);
});

test("runCli exits 1 when the backend fails, and never rejects", async () => {
  const fake = deadLetterBackend();
  fake.backend.deadLetters.list = () => {
    throw new Error("connection reset");
  };
  const { code, stderr } = await run(["list", "--backend", "fake"], fake);
  assert.equal(code, 1);
  assert.match(
    stderr,
    /Cannot list the dead letters of the fake-remote backend: Error: connection reset/,
  );
  assert.equal(fake.closed, 1);
  const opening = await runCli(["list", "--backend", "broken"], {
    backends: { broken: () => Promise.reject(new Error("no route to host")) },
    stdout: () => {},
    stderr: () => {},
  });
  assert.equal(opening, 1);
});

test("runCli shows a dead letter whose body is not one of our events, with its reason", async () => {
  const fake = deadLetterBackend(1);
  fake.foreign("A", "hello from another producer");
  fake.foreign("A", { not: "an event" });
  const table = await run(["list", "--backend", "fake"], fake);
  assert.equal(table.code, 0, table.stderr);
  const rows = table.stdout.trimEnd().split("\n");
  assert.equal(rows.length, 5);
  assert.match(
    rows[2]!,
    /^\d+\s+\?\s+\?\s+A\s+1\s+invalid-event\s+SyntaxError/,
  );
  const json = await run(["list", "--backend", "fake", "--json"], fake);
  const letters = json.stdout.trimEnd().split("\n").map((l) => JSON.parse(l));
  assert.equal(letters[1].event, "hello from another producer");
  assert.equal(letters[2].reason, "invalid-event");
  const shown = await run(["show", letters[1].ref, "--backend", "fake"], fake);
  assert.equal(shown.code, 0);
  assert.match(shown.stdout, /^reason\s+invalid-event$/m);
  assert.match(shown.stdout, /"hello from another producer"/);
});

test("runCli dashboard serves until its signal aborts", async () => {
  const fake = deadLetterBackend();
  const controller = new AbortController();
  let stdout = "";
  let announced!: () => void;
  const ready = new Promise<void>((resolve) => announced = resolve);
  const done = runCli(["dashboard", "--", "--backend", "fake"], {
    backends: { fake: () => Promise.resolve(fake.backend) },
    stdout: (text) => {
      stdout += text;
      announced();
    },
    stderr: () => {},
    signal: controller.signal,
  });
  await withDeadline(ready, 10_000, () => "the dashboard's address");
  const url = /http:\/\/127\.0\.0\.1:\d+\//.exec(stdout)?.[0];
  assert.ok(url, stdout);
  assert.match(stdout, /read-only/);
  const summary = await (await fetch(`${url}api/summary`)).json();
  assert.equal(summary.total, 5);
  controller.abort();
  assert.equal(await withDeadline(done, 10_000, () => "runCli to end"), 0);
  assert.equal(fake.closed, 1);
  await assert.rejects(fetch(`${url}api/summary`));
});
