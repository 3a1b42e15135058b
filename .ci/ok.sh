#!/usr/bin/env bash
# Copyright 2026 the @eventbus/core authors. MIT license.
#
# The gate: what a contributor runs before pushing (`deno task ok`) and what
# CI runs for its static part.
#   .ci/ok.sh              the static checks, then the Deno suite
#   .ci/ok.sh --no-tests   the static checks only (CI, which runs the suites
#                          on Deno, Bun and Node itself)
# Static checks: deno fmt --check, deno lint, deno check, then for each JSR
# package of the workspace (listed by .ci/packages.mjs: @eventbus/core and
# every member):
#   - deno doc --lint of its entries;
#   - a @module doc on each entry and a titled @example on every export
#     (.ci/doc_audit.mjs; deno doc --lint does not check these);
#   - deno publish --dry-run in its folder, whose file list must hold the
#     package only (no tests/, bench/, examples/, .ci/, node_modules/, and
#     for the core no member's folder).
# The suite is `deno task test` (the README's test command), run last.
# Prints "ok   <check>" or "FAIL <check>" with the end of its log (full logs
# in .ci/out/ok/), then "ok: N passed, N failed"; exits 1 when anything
# failed, 2 on a bad argument.
set -uo pipefail
cd "$(dirname "$0")/.."
export NO_COLOR=1

tests=1
for arg in "$@"; do
  case $arg in
    --no-tests) tests=0 ;;
    *) echo "usage: .ci/ok.sh [--no-tests]" >&2; exit 2 ;;
  esac
done

out=.ci/out/ok
rm -rf "$out" && mkdir -p "$out"
passed=0 failed=0 n=0 last_log=""

# check <name> <command...>: one check; its output goes to a log, shown
# (its last 40 lines) only when it fails.
check() {
  local name=$1; shift
  n=$((n + 1))
  last_log="$out/$n.log"
  if "$@" >"$last_log" 2>&1; then
    echo "ok   $name"; passed=$((passed + 1))
  else
    echo "FAIL $name"; tail -n 40 "$last_log" | sed 's/^/       /'
    failed=$((failed + 1))
  fi
}

check "deno fmt --check" deno fmt --check
check "deno lint" deno lint
check "deno check" deno check

# The core's entries: a member's doc lint reads them too. Locally,
# @eventbus/core resolves to the workspace's files, and deno doc reports the
# core's exported types (AsyncBackend, Event, ...) as private unless an
# entry that exports them is linted with the member; on JSR they come from
# the published @eventbus/core.
read -r _ _ core_entries < <(node .ci/packages.mjs | sed -n 1p)
read -r -a core <<<"$core_entries"

doc_audit() { deno doc --json "$@" | node .ci/doc_audit.mjs; }
publish() { (cd "$1" && deno publish --dry-run --allow-dirty); }
# file_list <folder> <log>: the simulated upload holds the package only.
file_list() {
  local folder=$1 log=$2
  grep -q "Simulating publish" "$log" || { echo "no file list in $log"; return 1; }
  local files
  files=$(grep -oE "file://[^ ]+" "$log")
  if [ "$folder" = . ]; then
    ! grep -E "/(tests|bench|examples|\.ci|node_modules|backends|cli)/" <<<"$files"
  else
    ! grep -vE "^file://$(pwd)/$folder/" <<<"$files" &&
      ! grep -E "/node_modules/" <<<"$files"
  fi
}

while read -r folder name entries; do
  read -r -a own <<<"$entries"
  if [ "$folder" = . ]; then
    check "$name: deno doc --lint ${own[*]}" deno doc --lint "${own[@]}"
  else
    check "$name: deno doc --lint ${own[*]} (with the core's entries)" \
      deno doc --lint "${core[@]}" "${own[@]}"
  fi
  check "$name: @module and titled @example (${own[*]})" doc_audit "${own[@]}"
  check "$name: deno publish --dry-run in $folder" publish "$folder"
  publish_log=$last_log
  check "$name: published files are the package's own" file_list "$folder" "$publish_log"
done < <(node .ci/packages.mjs)

if [ "$tests" -eq 1 ]; then
  echo "# deno task test"
  if deno task test; then
    echo "ok   deno task test"; passed=$((passed + 1))
  else
    echo "FAIL deno task test"; failed=$((failed + 1))
  fi
fi

echo "ok: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
