#!/usr/bin/env bash
# Builds CPython 3.11 for wasm32-wasi from Debian's own `python3.11` source
# package (and nothing else) with Debian's clang 14 + wasi-libc, links in the
# built-in `snowflock` module (native/python/), and packages the stdlib image.
#
#   scripts/build-python.sh            build (or find in the cache) and print the output dir
#   scripts/build-python.sh --print    print the output dir if it is cached, else exit 3
#   scripts/build-python.sh --refresh  ask apt for the current source package first
#
# Everything is cached by content hash under $SNOWFLOCK_PYTHON_CACHE
# (default ~/.cache/snowflock/python):
#   src/                         the Debian source package (.dsc + tarballs), as apt fetched it
#   base-<key>/                  the configured and compiled CPython tree; <key> hashes the .dsc
#                                (which pins the tarballs' sha256), the flags and the toolchain
#   <key2>/                      the outputs; <key2> hashes <key> + native/python + native/sf.h:
#     python.wasm                CPython with the built-in snowflock module (stripped)
#     python-plain.wasm          the same CPython without it (the benchmark's baseline)
#     stdlib.tar                 the stdlib image: Lib/ + _sysconfigdata, precompiled
#                                (unchecked-hash .pyc); the guest sees it read-only at
#                                /usr/local/lib/python3.11 (native/python/stdlib.py)
#     manifest.json              hashes, versions, build seconds
# A later run with the same inputs does no work. Long builds run under `nice -n 10`
# with at most SNOWFLOCK_JOBS (default 2) jobs.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${SNOWFLOCK_PYTHON_CACHE:-$HOME/.cache/snowflock/python}"
jobs="${SNOWFLOCK_JOBS:-2}"
mode="${1:-build}"
say() { echo "build-python: $*" >&2; }
die() { say "$*"; exit 1; }
started=$(date +%s)

# ---- the flags (part of the base key) ----
wasi_defs="-D_WASI_EMULATED_SIGNAL -D_WASI_EMULATED_PROCESS_CLOCKS -D_WASI_EMULATED_GETPID -D_WASI_EMULATED_MMAN"
wasi_libs="-lwasi-emulated-signal -lwasi-emulated-process-clocks -lwasi-emulated-getpid -lwasi-emulated-mman"
cc="clang-14 --target=wasm32-wasi --sysroot=/usr"
configure_args=(--host=wasm32-unknown-wasi --build=x86_64-pc-linux-gnu
  --with-build-python=/usr/bin/python3.11 --disable-ipv6 --without-ensurepip --disable-test-modules)
# configure compiles with --sysroot=/usr and so sees the host's headers and
# pkg-config files: the modules needing a C library wasi-libc lacks (zlib,
# lzma, bz2, uuid, crypt, ffi, sqlite, dbm, curses, readline) are turned off
# explicitly, whatever -dev packages the build machine has.
no_host_libs=(PKG_CONFIG=false
  ac_cv_header_zlib_h=no ac_cv_header_lzma_h=no ac_cv_header_bzlib_h=no ac_cv_header_uuid_h=no
  ac_cv_header_uuid_uuid_h=no ac_cv_header_crypt_h=no ac_cv_header_ffi_h=no ac_cv_header_sqlite3_h=no
  ac_cv_header_gdbm_h=no ac_cv_header_ndbm_h=no ac_cv_header_gdbm_ndbm_h=no ac_cv_header_db_h=no
  ac_cv_header_readline_readline_h=no ac_cv_header_ncurses_h=no ac_cv_header_curses_h=no
  ac_cv_header_panel_h=no
  py_cv_module_zlib=n/a py_cv_module__lzma=n/a py_cv_module__bz2=n/a py_cv_module__uuid=n/a
  py_cv_module__crypt=n/a py_cv_module__ctypes=n/a py_cv_module__sqlite3=n/a py_cv_module__dbm=n/a
  py_cv_module__gdbm=n/a py_cv_module_readline=n/a py_cv_module__curses=n/a
  py_cv_module__curses_panel=n/a py_cv_module__ssl=n/a py_cv_module__hashlib=n/a
  py_cv_module__tkinter=n/a)
# 8 MiB C stack first in memory (a deep recursion traps instead of corrupting
# data), 40 MiB initial memory.
link_flags="-lwasi-emulated-mman -z stack-size=8388608 -Wl,--stack-first -Wl,--initial-memory=41943040"
base_recipe="v1|$cc|$wasi_defs|$wasi_libs|${configure_args[*]}|${no_host_libs[*]}|$link_flags"

# ---- the source package ----
src="$cache/src"
dsc() { ls "$src"/python3.11_*.dsc 2>/dev/null | sort -V | tail -1; }
ensure_deb_src() {
  # deb822 with the same Signed-By as debian.sources: a one-line deb-src without
  # it makes apt fail with "Conflicting values set for option Signed-By".
  local list=/etc/apt/sources.list.d/snowflock-deb-src.sources
  if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src ' /etc/apt/sources.list; then
    [[ $(id -u) == 0 ]] || die "need root to add a deb-src source (or put a deb-src line for bookworm main in place)"
    say "adding $list"
    cat > "$list" <<EOF
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    apt-get update -qq
  fi
}
fetch_source() {
  mkdir -p "$src"
  ensure_deb_src
  say "fetching Debian's python3.11 source package"
  # --download-only: apt checks every file against the signed Sources index.
  (cd "$src" && apt-get source --download-only -qq python3.11) ||
    { apt-get update -qq && (cd "$src" && apt-get source --download-only -qq python3.11); } ||
    die "Cannot fetch python3.11 sources with apt-get source"
}
if [[ $mode == --refresh || -z "$(dsc)" ]]; then
  [[ $mode == --print ]] && exit 3
  fetch_source
fi
dsc_file="$(dsc)"
[[ -n $dsc_file ]] || die "Cannot find python3.11_*.dsc in $src"

patches=()
if [[ -d $root/native/python/patches ]]; then
  mapfile -t patches < <(find "$root/native/python/patches" -name '*.patch' | sort)
fi
toolchain="$(dpkg-query -W -f='${Package}=${Version};' clang-14 lld-14 wasi-libc 2>/dev/null)"
base_key=$( { cat "$dsc_file"; echo "$base_recipe"; echo "$toolchain"
  for p in "${patches[@]}"; do cat "$p"; done; } | sha256sum | cut -c1-24)
module_files=("$root/native/python/snowflock.c" "$root/native/python/snowflock_module.py"
  "$root/native/python/wasi_stubs.c" "$root/native/python/stdlib.py" "$root/native/sf.h")
# The outputs also depend on this script (link and packaging steps).
out_key=$( { echo "$base_key"; cat "$0"; for f in "${module_files[@]}"; do cat "$f"; done; } |
  sha256sum | cut -c1-24)
out="$cache/$out_key"
if [[ -f $out/manifest.json ]]; then
  echo "$out"
  exit 0
fi
[[ $mode == --print ]] && exit 3

# ---- the tools (Debian packages) ----
need=(clang-14:clang-14 wasm-ld-14:lld-14 llvm-ar-14:llvm-14 llvm-strip-14:llvm-14
  dpkg-source:dpkg-dev make:make patch:patch python3.11:python3.11)
missing=()
for t in "${need[@]}"; do command -v "${t%%:*}" >/dev/null || missing+=("${t#*:}"); done
[[ -f /usr/lib/wasm32-wasi/libc.a ]] || missing+=(wasi-libc)
compgen -G "/usr/lib/llvm-14/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a" >/dev/null ||
  missing+=(libclang-rt-14-dev-wasm32)
((${#missing[@]} == 0)) || die "missing Debian packages: ${missing[*]} (apt-get install -y ${missing[*]})"

# ---- the CPython tree: unpack, configure, compile (cached as base-<key>) ----
base="$cache/base-$base_key"
tree="$base/tree"
if [[ ! -f $base/.built ]]; then
  rm -rf "$base"
  mkdir -p "$base"
  say "unpacking $(basename "$dsc_file") (Debian's patches applied by dpkg-source)"
  dpkg-source --no-check -x "$dsc_file" "$tree" >/dev/null
  for p in "${patches[@]}"; do patch -d "$tree" -p1 < "$p" >/dev/null; done
  cd "$tree"
  clang-14 --target=wasm32-wasi --sysroot=/usr -O2 -c "$root/native/python/wasi_stubs.c" -o wasi_stubs.o
  say "configuring"
  env "${no_host_libs[@]}" CONFIG_SITE=Tools/wasm/config.site-wasm32-wasi CC="$cc" AR=llvm-ar-14 \
    CFLAGS="$wasi_defs" LDFLAGS="$wasi_libs" \
    nice -n 10 ./configure "${configure_args[@]}" > "$base/configure.log" 2>&1 ||
    die "configure failed: see $base/configure.log"
  say "compiling with -j$jobs (cold: tens of minutes on 2 cores; log: $base/make.log)"
  nice -n 10 make -j"$jobs" LINKFORSHARED="wasi_stubs.o $link_flags" > "$base/make.log" 2>&1 ||
    die "make failed: see $base/make.log"
  [[ -f python.wasm ]] || die "make did not produce python.wasm: see $base/make.log"
  echo $(($(date +%s) - started)) > "$base/.built"
fi

# ---- the outputs: link with and without the snowflock module, package the stdlib ----
cd "$tree"
stage="$cache/.stage-$out_key-$$"
rm -rf "$stage"
mkdir -p "$stage"
trap 'rm -rf "$stage"' EXIT
say "compiling the snowflock module"
# The module's object goes into the link next to python.o; a constructor in it
# adds `snowflock` to the inittab before Py_Initialize.
/usr/bin/python3.11 -c 'import sys; d = open(sys.argv[1], "rb").read()
print("static const char snowflock_py[] = {" + ",".join(map(str, d)) + ",0};")' \
  "$root/native/python/snowflock_module.py" > "$stage/snowflock_py.h"
$cc -O2 $wasi_defs -IInclude -IInclude/internal -I. -I"$root/native" -I"$stage" \
  -c "$root/native/python/snowflock.c" -o "$stage/snowflock.o"
clang-14 --target=wasm32-wasi --sysroot=/usr -O2 -c "$root/native/python/wasi_stubs.c" -o "$stage/wasi_stubs.o"
link() { # link <output> <extra objects...>
  local output=$1
  shift
  rm -f python.wasm
  make python.wasm LINKFORSHARED="$stage/wasi_stubs.o $* $link_flags" > "$stage/link.log" 2>&1 ||
    { cat "$stage/link.log" >&2; die "link failed"; }
  # Debug info goes; the name section stays: asyncify's add-list names functions.
  llvm-strip-14 --strip-debug -o "$output" python.wasm
}
say "linking"
link "$stage/python-plain.wasm"
link "$stage/python.wasm" "$stage/snowflock.o"
say "packaging the stdlib"
/usr/bin/python3.11 "$root/native/python/stdlib.py" --lib Lib \
  --sysconfig "$(ls build/lib.wasi-wasm32-3.11/_sysconfigdata_*.py)" --out "$stage/stdlib.tar"
version=$(basename "$dsc_file" .dsc | sed 's/^python3.11_//')
sha() { sha256sum "$1" | cut -d' ' -f1; }
cat > "$stage/manifest.json" <<EOF
{
  "debian_source": "python3.11 $version",
  "base_key": "$base_key",
  "key": "$out_key",
  "python_wasm_sha256": "$(sha "$stage/python.wasm")",
  "python_plain_wasm_sha256": "$(sha "$stage/python-plain.wasm")",
  "stdlib_tar_sha256": "$(sha "$stage/stdlib.tar")",
  "toolchain": "$toolchain",
  "cpython_build_seconds": $(cat "$base/.built"),
  "build_seconds": $(($(date +%s) - started))
}
EOF
rm -f "$stage"/*.o "$stage/link.log" "$stage/snowflock_py.h"
rm -rf "$out"
mv "$stage" "$out"
trap - EXIT
say "done in $(($(date +%s) - started)) s"
echo "$out"
