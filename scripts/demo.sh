#!/usr/bin/env bash
# Runs the demo: installs what it needs, then `snowflock demo` with any arguments given.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh demo
exec ./node_modules/.bin/deno task snowflock demo "$@"
