#!/usr/bin/env bash
# Builds (once) and caches everything the Xen lab boots, all from Debian packages:
#   $CACHE/xen.elf          Debian's hypervisor (xen-hypervisor-4.17-amd64), gunzipped to a multiboot ELF
#   $CACHE/vmlinuz          the generic Debian kernel (linux-image-amd64's dependency), for dom0 and domU
#   $CACHE/dom0.cpio.gz     busybox + the Xen tools + every library they load + the Xen/9p/net modules
#   $CACHE/domu.cpio.gz     busybox + the static `sf` command + the lab's guest program
# Deno and this project reach dom0 read-only over 9p (virtio), so they are not packed.
# Usage: build.sh CACHE_DIR PROJECT_DIR
set -euo pipefail
CACHE=$1
PROJECT=$2
LAB=$PROJECT/scripts/lab/xen
mkdir -p "$CACHE"
log() { printf '[xen-lab build] %s\n' "$*" >&2; }

need_pkgs=()
for p in qemu-system-x86 xen-hypervisor-4.17-amd64 xen-utils-4.17 libxen-dev busybox-static cpio gcc libc6-dev kmod; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need_pkgs+=("$p")
done
if ((${#need_pkgs[@]})); then
  log "installing ${need_pkgs[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_pkgs[@]}" >&2
fi

# --- hypervisor ---
if [[ ! -s $CACHE/xen.elf ]]; then
  gunzip -c /boot/xen-4.17-amd64.gz >"$CACHE/xen.elf.tmp" && mv "$CACHE/xen.elf.tmp" "$CACHE/xen.elf"
fi

# --- kernel (downloaded as a .deb and unpacked; the host's own boot is not touched) ---
KPKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
KVER=${KPKG#linux-image-}
if [[ ! -s $CACHE/vmlinuz || ! -d $CACHE/kernel/lib/modules/$KVER ]]; then
  log "fetching $KPKG"
  mkdir -p "$CACHE/debs" && (cd "$CACHE/debs" && apt-get download "$KPKG" 2>/dev/null)
  rm -rf "$CACHE/kernel" && mkdir -p "$CACHE/kernel"
  dpkg -x "$CACHE"/debs/"$KPKG"_*.deb "$CACHE/kernel"
  depmod -b "$CACHE/kernel" "$KVER"
  cp "$CACHE/kernel/boot/vmlinuz-$KVER" "$CACHE/vmlinuz"
fi
echo "$KVER" >"$CACHE/kernel.version"

# Copies modules and their dependencies (from modules.dep) into an initramfs root.
copy_modules() {
  local root=$1; shift
  local mdir=$CACHE/kernel/lib/modules/$KVER
  local todo=("$@") seen=" "
  mkdir -p "$root/lib/modules/$KVER"
  : >"$root/lib/modules/$KVER/modules.dep"
  while ((${#todo[@]})); do
    local m=${todo[0]}; todo=("${todo[@]:1}")
    local line
    line=$(grep -E "/${m//[-_]/[-_]}\.ko:" "$mdir/modules.dep" | head -1) || { log "no module $m"; exit 1; }
    local path=${line%%:*}
    [[ $seen == *" $path "* ]] && continue
    seen+="$path "
    mkdir -p "$root/lib/modules/$KVER/$(dirname "$path")"
    cp "$mdir/$path" "$root/lib/modules/$KVER/$path"
    echo "$line" >>"$root/lib/modules/$KVER/modules.dep"
    for dep in ${line#*:}; do todo+=("$(basename "$dep" .ko)"); done
  done
}

copy_with_libs() {
  local root=$1; shift
  for f in "$@"; do
    install -D "$f" "$root$f"
    ldd "$f" 2>/dev/null | awk '/=> \//{print $3} /^\t\/lib/{print $1}' | while read -r lib; do
      [[ -e $root$lib ]] || install -D "$(readlink -f "$lib")" "$root$lib"
    done
  done
}

stamp_of() { cat "$@" | sha256sum | cut -c1-16; }

# --- dom0 initramfs ---
DOM0_STAMP=$(stamp_of "$LAB/dom0-init.sh" "$LAB/build.sh" "$CACHE/kernel.version")
if [[ ! -s $CACHE/dom0.cpio.gz || $(cat "$CACHE/dom0.stamp" 2>/dev/null) != "$DOM0_STAMP" ]]; then
  log "building dom0 initramfs"
  R=$(mktemp -d)
  mkdir -p "$R"/{bin,sbin,dev,proc,sys,tmp,run,mnt,etc/xen,var/log/xen/console,var/lib/xen,var/lib/xenstored,var/run/xen,var/run/xenstored,var/lock,root}
  cp /bin/busybox "$R/bin/busybox"
  for a in $(/bin/busybox --list); do [[ -e $R/bin/$a ]] || ln -s busybox "$R/bin/$a"; done
  XB=/usr/lib/xen-4.17/bin
  copy_with_libs "$R" $XB/xl $XB/xenstored $XB/xenconsoled $XB/libxl-save-helper $XB/xen-init-dom0 $XB/xenstore-control /usr/bin/xenstore
  for t in read write rm ls list exists chmod watch; do ln -sf /usr/bin/xenstore "$R/usr/bin/xenstore-$t"; done
  # glibc dlopens libgcc_s at exit (pthread_cancel unwinding); without it every xl call aborts.
  install -D "$(readlink -f /lib/x86_64-linux-gnu/libgcc_s.so.1)" "$R/lib/x86_64-linux-gnu/libgcc_s.so.1"
  # What Deno itself loads (it is not packed; it comes over 9p).
  copy_with_libs "$R" "$(readlink -f "$PROJECT/node_modules/.bin/deno")"
  rm -f "$R$(readlink -f "$PROJECT/node_modules/.bin/deno")"
  # The libraries the FFI bindings dlopen by soname (libcrypto: the page transport's MACs).
  for l in libxenctrl.so.4.17 libxenforeignmemory.so.1 libxenstore.so.4 libxenguest.so.4.17 libxenlight.so.4.17 libxentoollog.so.1 libcrypto.so.3; do
    install -D "$(readlink -f /lib/x86_64-linux-gnu/$l)" "$R/lib/x86_64-linux-gnu/$l"
  done
  cp /etc/xen/xl.conf "$R/etc/xen/"
  mkdir -p "$R/etc/xen/scripts"
  cp "$LAB/vif-lab" "$R/etc/xen/scripts/vif-lab" 2>/dev/null || true
  echo 'root:x:0:0:root:/root:/bin/sh' >"$R/etc/passwd"
  echo '127.0.0.1 localhost' >"$R/etc/hosts"
  copy_modules "$R" xen-privcmd xenfs xen-evtchn xen-gntdev xen-gntalloc 9pnet_virtio 9p virtio_pci e1000 xen-netback bridge
  cp "$LAB/dom0-init.sh" "$R/init" && chmod +x "$R/init"
  (cd "$R" && find . | cpio -o -H newc --quiet | gzip -1) >"$CACHE/dom0.cpio.gz.tmp"
  mv "$CACHE/dom0.cpio.gz.tmp" "$CACHE/dom0.cpio.gz"
  echo "$DOM0_STAMP" >"$CACHE/dom0.stamp"
  rm -rf "$R"
fi

# --- domU initramfs: busybox + sf (static C) + the guest program ---
DOMU_STAMP=$(stamp_of "$LAB/domu-init.sh" "$LAB/build.sh" "$PROJECT"/native/xen/guest/*.c "$PROJECT"/native/xen/guest/*.h)
if [[ ! -s $CACHE/domu.cpio.gz || $(cat "$CACHE/domu.stamp" 2>/dev/null) != "$DOMU_STAMP" ]]; then
  log "building domU initramfs"
  R=$(mktemp -d)
  mkdir -p "$R"/{bin,dev,proc,sys,tmp}
  cp /bin/busybox "$R/bin/busybox"
  for a in sh echo cat sleep mount mkdir ls dmesg poweroff halt sync head tr seq date od cut; do ln -s busybox "$R/bin/$a"; done
  gcc -static -Os -Wall -Werror -o "$R/bin/sf" "$PROJECT/native/xen/guest/sf.c" "$PROJECT/native/xen/guest/libsf.c"
  cp "$LAB/domu-init.sh" "$R/init" && chmod +x "$R/init"
  (cd "$R" && find . | cpio -o -H newc --quiet | gzip -9) >"$CACHE/domu.cpio.gz.tmp"
  mv "$CACHE/domu.cpio.gz.tmp" "$CACHE/domu.cpio.gz"
  echo "$DOMU_STAMP" >"$CACHE/domu.stamp"
  rm -rf "$R"
fi
log "ready in $CACHE"
