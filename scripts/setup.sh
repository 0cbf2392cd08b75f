#!/usr/bin/env bash
# Installs what Snowflock needs on a Debian 12 machine with Node/npm, idempotently:
# Deno (pinned, from the npm registry, at node_modules/.bin/deno) and the npm
# packages from package-lock.json; Debian packages with apt-get only when missing.
#   scripts/setup.sh demo   what the demo needs (the wasm32 guest toolchain)
#   scripts/setup.sh test   what the whole test suite needs
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-demo}"

say() { echo "setup: $*" >&2; }

# npm: reinstall only when package-lock.json changed since the last install.
stamp=node_modules/.snowflock-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ ! -x node_modules/.bin/deno || ! -f $stamp || "$(cat "$stamp")" != "$want" ]]; then
  say "installing npm packages (Deno $(node -p 'require("./package.json").devDependencies.deno'))"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi

packages=(clang lld wasi-libc libclang-rt-14-dev-wasm32)
if [[ $profile == test ]]; then
  # chromium: the monitor's browser tests (Debian's build; never a browser download)
  packages+=(iproute2 nftables chromium llvm-14 dpkg-dev make patch python3.11)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) != 0 ]]; then
    say "missing Debian packages: ${missing[*]}; run: sudo apt-get install -y ${missing[*]}"
    exit 1
  fi
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; }
fi

if [[ $profile == test ]]; then
  # Snowflock's CPython for Python guests: built once from Debian's source package, then cached.
  say "building Python guests' interpreter (cached after the first time)"
  nice -n 10 bash scripts/build-python.sh >/dev/null
fi
