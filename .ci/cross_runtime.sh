#!/usr/bin/env bash
# Copyright 2026 the @eventbus/core authors. MIT license.
#
# Proves the package's runtime and registry claims (issue #6):
#   node      the core smoke (tests/smoke/core_smoke.ts) under Node through tsx
#   chromium  the same smoke in headless Debian Chromium, via playwright-core
#   deno, bun the same smoke file run directly by Deno and Bun
#   jsr       deno publish --dry-run (and nothing from tests/, bench/,
#             examples/, .ci/ in its file list), deno doc --lint per entry,
#             a @module doc and titled @example on every export (doc_audit.mjs)
# Each group prints "<group>: N passed, N failed"; the last line is the sum,
# "cross-runtime: N passed, N failed". Exits 1 when anything failed.
#
# Needs node, npm, deno and bun on PATH and /usr/bin/chromium (apt package
# "chromium"; CHROMIUM=... overrides). Installs the pinned dev tools of
# tests/smoke/package.json with `npm ci` when they are missing.
set -uo pipefail
cd "$(dirname "$0")/.."
export NO_COLOR=1
out=.ci/out/cross_runtime
mkdir -p "$out"

total_passed=0 total_failed=0
add() { total_passed=$((total_passed + $1)) total_failed=$((total_failed + $2)); }

# run_smoke <label> <timeout s> <command...>: shows the check lines and takes
# the counts from the "<label>: N passed, N failed" line; no line, one failure.
run_smoke() {
  local label=$1 limit=$2; shift 2
  local log="$out/$label.log"
  timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
  local rc=$?
  grep -vE "^$label: [0-9]+ passed, [0-9]+ failed$" "$log"
  local line
  line=$(grep -E "^$label: [0-9]+ passed, [0-9]+ failed$" "$log" | tail -n 1)
  if [ -z "$line" ]; then
    [ "$rc" -eq 124 ] && echo "FAIL $label smoke timed out after ${limit}s"
    echo "FAIL $label smoke printed no summary (exit $rc): $*"
    line="$label: 0 passed, 1 failed"
  elif [ "$rc" -ne 0 ] && grep -qE " 0 failed$" <<<"$line"; then
    echo "FAIL $label smoke exited $rc after passing its checks"
    line="${line% 0 failed} 1 failed"
  fi
  echo "$line"
  local p f
  p=$(sed -E 's/.* ([0-9]+) passed.*/\1/' <<<"$line")
  f=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")
  add "$p" "$f"
}

# jsr_check <name> <command...>: one static check, counted as one test.
jsr_passed=0 jsr_failed=0 jsr_n=0 last_log=""
jsr_check() {
  local name=$1; shift
  jsr_n=$((jsr_n + 1))
  local log="$out/jsr-$jsr_n.log"
  last_log=$log
  local run=(timeout --kill-after=10 300)
  [ "$(type -t "$1")" = function ] && run=()
  if "${run[@]}" "$@" >"$log" 2>&1; then
    echo "ok   $name"; jsr_passed=$((jsr_passed + 1))
  else
    echo "FAIL $name"
    grep -vE '^Warning Failed resolving types|^ +at file://.*/@types/node/' "$log" | tail -n 40 | sed 's/^/       /'
    jsr_failed=$((jsr_failed + 1))
  fi
}

echo "# dev tools (tests/smoke/package.json)"
tools=tests/smoke/node_modules/.bin
if [ ! -x "$tools/tsx" ] || [ ! -d tests/smoke/node_modules/playwright-core ] ||
  [ ! -d tests/smoke/node_modules/esbuild ]; then
  if ! npm ci --prefix tests/smoke --no-audit --no-fund --loglevel=error >"$out/npm.log" 2>&1; then
    tail -n 20 "$out/npm.log"
    echo "FAIL npm ci --prefix tests/smoke"
  fi
fi
echo "node $(node --version), tsx $("$tools/tsx" --version 2>/dev/null | head -n 1 | tr -d '\n' || echo missing)"

echo "# node"
run_smoke node 120 "$tools/tsx" tests/smoke/run.ts

echo "# chromium"
chromium=${CHROMIUM:-/usr/bin/chromium}
if [ -x "$chromium" ]; then
  "$chromium" --version 2>/dev/null | head -n 1
  run_smoke chromium 300 "$tools/tsx" tests/smoke/browser_run.ts
else
  echo "FAIL $chromium is missing: apt-get install -y chromium"
  echo "chromium: 0 passed, 1 failed"
  add 0 1
fi

echo "# deno"
run_smoke deno 120 deno run tests/smoke/run.ts

echo "# bun"
run_smoke bun 120 bun tests/smoke/run.ts

echo "# jsr"
jsr_check "deno publish --dry-run --allow-dirty" deno publish --dry-run --allow-dirty
# The simulated file list must hold the package only.
publish_log=$last_log
file_list_clean() {
  grep -q "Simulating publish" "$publish_log" ||
    { echo "deno publish printed no file list"; return 1; }
  ! grep -E "file://[^ ]*/(tests|bench|examples|\.ci|node_modules)/" "$publish_log"
}
if grep -q "Dry run complete" "$publish_log"; then
  jsr_check "publish file list excludes tests/ bench/ examples/ .ci/" file_list_clean
fi
# deno doc --lint, as JSR sees it: a type is public when any entry of the
# package exports it, so entries are linted together. First the core
# entries of deno.json "exports" (those outside backends/), then each
# backend entry point with them, one check each, whether or not it is listed
# in "exports" yet.
read -r -a core <<<"$(node -e '
  const fs = require("node:fs");
  const d = JSON.parse(fs.readFileSync("deno.json", "utf8"));
  const e = typeof d.exports === "string" ? [d.exports] : Object.values(d.exports);
  console.log(e.map((p) => p.replace(/^\.\//, ""))
    .filter((p) => !p.startsWith("backends/") && fs.existsSync(p)).join(" "));
')"
jsr_check "deno doc --lint ${core[*]}" deno doc --lint "${core[@]}"
for entry in backends/nats/mod.ts backends/*.ts; do
  case $entry in backends/_* | */_*) continue ;; esac
  [ -f "$entry" ] || continue
  jsr_check "deno doc --lint $entry (with ${core[*]})" deno doc --lint "${core[@]}" "$entry"
done
# JSR's score and STYLE.md: a @module doc on each entry, a titled @example
# on every exported symbol (deno doc --lint does not check these).
doc_audit() { deno doc --json "$@" | node .ci/doc_audit.mjs; }
jsr_check "@module and titled @example: ${core[*]}" doc_audit "${core[@]}"
for entry in backends/nats/mod.ts backends/*.ts; do
  case $entry in backends/_* | */_*) continue ;; esac
  [ -f "$entry" ] || continue
  jsr_check "@module and titled @example: $entry" doc_audit "$entry"
done
echo "jsr: $jsr_passed passed, $jsr_failed failed"
add "$jsr_passed" "$jsr_failed"

echo "cross-runtime: $total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
