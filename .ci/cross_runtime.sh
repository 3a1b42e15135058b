#!/usr/bin/env bash
# Copyright 2026 the @eventbus/core authors. MIT license.
#
# Proves the package's runtime and registry claims (issues #6, #11):
#   node      the whole test suite (tests/, brokers included) on Node
#             through tsx: the README's `npm test`, counted from the JUnit
#             report of node --test (Deno and Bun run it in .ci/run)
#   chromium  the browser smoke (tests/smoke/core_smoke.ts: emit, emitSync,
#             the pool, timeouts, aborts, the conformance suite on the
#             WorkerPool) in headless Debian Chromium, via playwright-core
#   jsr       per JSR package of the workspace (@eventbus/core and each
#             member, from .ci/packages.mjs): deno publish --dry-run in its
#             folder (its file list holds the package only), deno doc --lint
#             of its entries, a @module doc and titled @example on every
#             export (doc_audit.mjs)
# `.ci/cross_runtime.sh [node] [chromium] [jsr]` runs the groups named (all
# three by default). Each group prints "<group>: N passed, N failed[, N skipped]"; the last
# line is the sum, "cross-runtime: N passed, N failed, N skipped". Exits 1
# when anything failed.
#
# Needs node, npm, deno and bun on PATH and /usr/bin/chromium (apt package
# "chromium"; CHROMIUM=... overrides). Installs the root devDependencies
# (tsx, esbuild, playwright-core) with `npm ci` when they are missing.
set -uo pipefail
cd "$(dirname "$0")/.."
export NO_COLOR=1
out=.ci/out/cross_runtime
mkdir -p "$out"

total_passed=0 total_failed=0 total_skipped=0
add() { # add <passed> <failed> [skipped]
  total_passed=$((total_passed + $1)) total_failed=$((total_failed + $2))
  total_skipped=$((total_skipped + ${3:-0}))
}

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
    tail -n 40 "$log" | sed 's/^/       /'
    jsr_failed=$((jsr_failed + 1))
  fi
}

# Groups to run: the arguments (node, chromium, jsr), or all three.
groups=" ${*:-node chromium jsr} "
want() { [[ $groups == *" $1 "* ]]; }

echo "# dev tools (root devDependencies)"
tools=node_modules/.bin
if [ ! -x "$tools/tsx" ] || [ ! -d node_modules/playwright-core ] ||
  [ ! -d node_modules/esbuild ]; then
  if ! npm ci --no-audit --no-fund --loglevel=error >"$out/npm.log" 2>&1; then
    tail -n 20 "$out/npm.log"
    echo "FAIL npm ci"
  fi
fi
echo "node $(node --version), tsx $("$tools/tsx" --version 2>/dev/null | head -n 1 | tr -d '\n' || echo missing)"

if want node; then
echo "# node"
# The command of the README's `npm test` (package.json "test"), with a
# JUnit report to count and TAP to read.
started=$(date +%s)
# Two files at a time (node --test's default is one on two cores): the
# broker tests mostly wait, and CI runs Deno and Bun beside this.
timeout --kill-after=10 1500 node --import tsx --test --test-concurrency=2 \
  --test-reporter=tap --test-reporter-destination="$out/node-test.log" \
  --test-reporter=junit --test-reporter-destination="$out/node.xml" \
  tests/*_test.ts tests/*/*_test.ts >"$out/node-run.log" 2>&1
rc=$?
read -r p f s < <(node .ci/junit_count.mjs "$out/node.xml")
if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
  echo "FAIL npm test exited $rc with no failed test"; tail -n 20 "$out/node-run.log"
  f=1
fi
if [ "$f" -gt 0 ]; then
  grep -B 2 -A 25 "^ *not ok" "$out/node-test.log" | head -n 150
fi
echo "node: $p passed, $f failed, $s skipped ($(($(date +%s) - started)) s)"
add "$p" "$f" "$s"

fi

if want chromium; then
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

fi

if want jsr; then
echo "# jsr"
# Every JSR package of the workspace (.ci/packages.mjs: @eventbus/core,
# then each member: the backends and the CLI), checked as JSR sees it:
# deno publish --dry-run in the package's folder, with a file list that
# holds the package only; deno doc --lint of its entries; a @module doc
# on each entry and a titled @example on every export (doc_audit.mjs).
# A member is linted with the core's entries: locally @eventbus/core
# resolves to the workspace's files, and deno doc reports the core's
# exported types as private unless an entry exporting them is linted too.
read -r _ _ core_entries < <(node .ci/packages.mjs | sed -n 1p)
read -r -a core <<<"$core_entries"
publish() { (cd "$1" && deno publish --dry-run --allow-dirty); }
file_list_clean() { # file_list_clean <folder> <publish log>
  local folder=$1 log=$2 files
  grep -q "Simulating publish" "$log" ||
    { echo "deno publish printed no file list"; return 1; }
  files=$(grep -oE "file://[^ ]+" "$log")
  if [ "$folder" = . ]; then
    ! grep -E "/(tests|bench|examples|\.ci|node_modules|backends|cli)/" <<<"$files"
  else
    ! grep -vE "^file://$(pwd)/$folder/" <<<"$files" &&
      ! grep -E "/node_modules/" <<<"$files"
  fi
}
doc_audit() { deno doc --json "$@" | node .ci/doc_audit.mjs; }
while read -r folder name entries; do
  read -r -a own <<<"$entries"
  jsr_check "$name: deno publish --dry-run --allow-dirty (in $folder)" publish "$folder"
  publish_log=$last_log
  if grep -q "Dry run complete" "$publish_log"; then
    jsr_check "$name: publish file list holds the package only" \
      file_list_clean "$folder" "$publish_log"
  fi
  if [ "$folder" = . ]; then
    jsr_check "$name: deno doc --lint ${own[*]}" deno doc --lint "${own[@]}"
  else
    jsr_check "$name: deno doc --lint ${own[*]} (with the core's entries)" \
      deno doc --lint "${core[@]}" "${own[@]}"
  fi
  jsr_check "$name: @module and titled @example: ${own[*]}" doc_audit "${own[@]}"
done < <(node .ci/packages.mjs)
echo "jsr: $jsr_passed passed, $jsr_failed failed"
add "$jsr_passed" "$jsr_failed"

fi

echo "cross-runtime: $total_passed passed, $total_failed failed, $total_skipped skipped"
[ "$total_failed" -eq 0 ]
