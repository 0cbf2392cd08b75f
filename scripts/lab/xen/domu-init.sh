#!/bin/sh
# The lab's PV guest: busybox + `sf`. It asks for 4 clones; each clone prints its
# id and a value it inherited from the parent's memory; the parent joins them.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "[guest] up after $(cut -d' ' -f1 /proc/uptime)s"
for a in $(cat /proc/cmdline); do case $a in sf_*=*) export "$a";; esac; done
# A value only the parent's memory holds: made now, before the fork.
INHERITED="v$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
echo "[guest] inherited value $INHERITED"
case ${sf_mode:-idle} in
  idle)
    echo "[guest] idle (waiting to be copied)"
    while true; do sleep 1; done ;;
  fork)
    T=$(sf ticket "${sf_clones:-4}") || { echo "[guest] ticket failed: $T"; poweroff -f; }
    echo "[guest] ticket $T"
    ID=$(sf clone "$T")
    rc=$?
    if [ "$rc" != 0 ]; then echo "[guest] clone failed rc=$rc"; poweroff -f; fi
    if [ "$ID" = 0 ]; then
      echo "[guest] parent joining $T"
      sf join "$T"
      echo "[guest] SF-JOINED rc=$?"
      sleep 2
      poweroff -f
    else
      echo "[guest] SF-CLONE id=$ID inherited=$INHERITED domid-home=$(sf whoami)"
      sf exit 0
    fi ;;
esac
poweroff -f
