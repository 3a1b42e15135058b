// Copyright 2026 the @eventbus/core authors. MIT license.
// `deno task dlq -- <command> --backend <name> ...`: the dead-letter CLI.
// On Node and Bun: `process.exitCode = await runCli(process.argv.slice(2))`.
//
// This script exits once the command is done and its output is written: a
// broker client may keep timers after a failed write (kafkajs retries an
// idempotent producer for minutes), and a command line must not hang on them.

import process from "node:process";
import { runCli } from "./mod.ts";

const code = await runCli(process.argv.slice(2));
process.exitCode = code;
// Each callback runs once what was written before it is flushed.
process.stdout.write(
  "",
  () => process.stderr.write("", () => process.exit(code)),
);
