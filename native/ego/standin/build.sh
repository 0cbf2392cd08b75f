#!/usr/bin/env bash
# Builds the EGO STAND-IN "SDK" for tests: OUT_DIR/include/vem.api.h and
# OUT_DIR/lib/libvem.so from native/ego/standin/ (not EGO; see vem_standin.c).
#   native/ego/standin/build.sh OUT_DIR
set -euo pipefail
# Any C compiler: cc, else the clang the wasm guest toolchain already installed.
cc="${CC:-$(command -v cc || command -v clang)}"
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:?usage: build.sh OUT_DIR}"
mkdir -p "$out/include" "$out/lib"
cp "$here/vem.api.h" "$out/include/"
"$cc" -std=gnu11 -O2 -Wall -Wextra -Werror -shared -fPIC -I"$here" \
  -o "$out/lib/libvem.so.tmp" "$here/vem_standin.c"
mv "$out/lib/libvem.so.tmp" "$out/lib/libvem.so"
echo "$out"
