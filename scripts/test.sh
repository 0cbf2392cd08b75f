#!/usr/bin/env bash
# Runs the whole test suite: set-up, `deno task check` (fmt, lint, types), every
# test. Ends with one plain line "N passed, M failed" (the check counts as one).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test || { echo "0 passed, 1 failed"; exit 1; }

# The Xen lab (two Xen hosts under QEMU, about 3 minutes with its cache) is part of "all tests";
# SNOWFLOCK_XEN_LAB=0 leaves it out.
export SNOWFLOCK_XEN_LAB=${SNOWFLOCK_XEN_LAB:-1}

passed=0
failed=0
if ./node_modules/.bin/deno task check; then passed=1; else failed=1; fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
./node_modules/.bin/deno task test "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
summary=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '^(ok|FAILED) \| [0-9]+ passed' | tail -1)
if [[ $summary =~ ([0-9]+)\ passed.*\|\ ([0-9]+)\ failed ]]; then
  passed=$((passed + BASH_REMATCH[1]))
  failed=$((failed + BASH_REMATCH[2]))
elif ((status != 0)); then
  failed=$((failed + 1)) # the runner itself failed before reporting
fi
echo "$passed passed, $failed failed"
((failed == 0 && status == 0))
