#!/bin/sh
# PV dom0 init for the Xen lab (see DESIGN.md "Real Xen runs here under emulation").
# Kernel arguments: sf_host=N (1 or 2), sf_ip=10.77.0.N. Everything after the Xen
# set-up lives in /project/scripts/lab/xen/dom0-run.sh (9p), so it can change without a rebuild.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin:/usr/lib/xen-4.17/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts && mount -t tmpfs -o size=64m tmpfs /dev/shm
# The initramfs root is capped at half of dom0's RAM; save streams and Deno's cache go to /tmp.
mount -t tmpfs -o size=512m tmpfs /tmp
for a in $(cat /proc/cmdline); do case $a in sf_*=*) export "$a";; esac; done
echo "[dom0] up after $(cut -d' ' -f1 /proc/uptime)s host=$sf_host"
for m in xen-privcmd xenfs xen-evtchn xen-gntdev xen-gntalloc 9pnet_virtio 9p virtio_pci e1000 xen-netback bridge; do
  modprobe "$m" || echo "[dom0] modprobe $m failed"
done
mount -t xenfs xenfs /proc/xen
mkdir -p /project /lab
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 project /project || echo "[dom0] 9p project failed"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 lab /lab || echo "[dom0] 9p lab failed"
xenstored --pid-file=/var/run/xenstored.pid
xen-init-dom0 >/dev/null
xenconsoled --log=guest --log-dir=/var/log/xen/console
ip link set lo up
if ip link show eth0 >/dev/null 2>&1; then
  ip link add name xenbr0 type bridge && ip link set eth0 master xenbr0
  ip link set eth0 up && ip link set xenbr0 up
  ip addr add "$sf_ip/24" dev xenbr0
  ip route add 224.0.0.0/4 dev xenbr0
fi
echo "[dom0] xen ready after $(cut -d' ' -f1 /proc/uptime)s"
if [ -x /project/scripts/lab/xen/dom0-run.sh ] || [ -f /project/scripts/lab/xen/dom0-run.sh ]; then
  sh /project/scripts/lab/xen/dom0-run.sh
fi
echo "[dom0] done; powering off"
sync
poweroff -f
