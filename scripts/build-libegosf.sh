#!/usr/bin/env bash
# Builds libegosf (native/ego/egosf.c) against an EGO SDK:
#   scripts/build-libegosf.sh SDK_DIR [OUT_DIR]
# SDK_DIR is searched for vem.api.h and libvem.so (a real EGO installation,
# e.g. $EGO_TOP/<version>, or the test stand-in made by native/ego/standin/build.sh).
# Writes OUT_DIR/libegosf.so (default native/ego/build/), linked to that libvem
# with an rpath, and prints its path. Then: snowflock master --allocator ego --ego-lib PATH ...
set -euo pipefail
# Any C compiler: cc, else the clang the wasm guest toolchain already installed.
cc="${CC:-$(command -v cc || command -v clang)}"
here="$(cd "$(dirname "$0")/.." && pwd)"
sdk="${1:?usage: build-libegosf.sh SDK_DIR [OUT_DIR]}"
out="${2:-$here/native/ego/build}"
header=$(find -L "$sdk" -name vem.api.h -print -quit)
lib=$(find -L "$sdk" -name 'libvem.so*' -print -quit)
[[ -n $header ]] || { echo "build-libegosf: no vem.api.h under $sdk" >&2; exit 1; }
[[ -n $lib ]] || { echo "build-libegosf: no libvem.so under $sdk" >&2; exit 1; }
libdir=$(dirname "$lib")
mkdir -p "$out"
"$cc" -std=gnu11 -O2 -Wall -Wextra -Werror -shared -fPIC \
  -I"$here/native/ego" -I"$(dirname "$header")" \
  -o "$out/libegosf.so.tmp" "$here/native/ego/egosf.c" \
  -L"$libdir" -l:"$(basename "$lib")" -Wl,-rpath,"$libdir"
mv "$out/libegosf.so.tmp" "$out/libegosf.so"
echo "$out/libegosf.so"
