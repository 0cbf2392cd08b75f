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
    # A malformed request first: the agent answers EINVAL (-22) and keeps serving.
    echo "[guest] SF-MALFORMED $(sf raw 'bogus%op' 2>&1 | head -1)"
    T=$(sf ticket "${sf_clones:-4}") || { echo "[guest] ticket failed: $T"; poweroff -f; }
    echo "[guest] ticket $T"
    ID=$(sf clone "$T")
    rc=$?
    if [ "$rc" != 0 ]; then echo "[guest] clone failed rc=$rc"; poweroff -f; fi
    if [ "$ID" = 0 ]; then
      echo "[guest] parent joining $T"
      sf join "$T"
      echo "[guest] SF-JOINED rc=$?"
      if [ "${sf_death:-0}" = 1 ]; then
        # Round 2: one clone per host; the lab kills host2's agent while its clone starts,
        # and sf_join must report that clone failed (exit 1, "sf join: error -3").
        T2=$(sf ticket 2) || { echo "[guest] ticket2 failed"; poweroff -f; }
        echo "[guest] ticket2 $T2"
        ID2=$(sf clone "$T2")
        if [ "$ID2" = 0 ]; then
          sf join "$T2"
          echo "[guest] SF-JOINED2 rc=$?"
        else
          echo "[guest] SF-CLONE2 id=$ID2"
          sf exit 0
          poweroff -f
        fi
      fi
      sleep 2
      poweroff -f
    else
      echo "[guest] SF-CLONE id=$ID inherited=$INHERITED domid-home=$(sf whoami)"
      sf exit 0
    fi ;;
esac
poweroff -f
