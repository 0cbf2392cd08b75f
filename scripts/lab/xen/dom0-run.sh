#!/bin/sh
# Runs in each lab dom0 after Xen is up (from /project over 9p). Role from sf_host.
# host1: master + agent + the scenario; host2: agent until the lab says stop.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin:/usr/lib/xen-4.17/bin
export HOME=/root DENO_DIR=/lab/deno-dir DENO_NO_UPDATE_CHECK=1 NO_COLOR=1
DENO=/project/node_modules/.bin/deno
MASTER=10.77.0.1:7070
TOKEN=xen-lab-token
echo "[dom0-run] host $sf_host: $(xl info | grep -E '^(xen_version|free_memory)' | tr -s ' ' | tr '\n' ' ')"
if [ -f /lab/run/dom0-run.override ]; then . /lab/run/dom0-run.override; exit 0; fi
cd /project
up() { cut -d' ' -f1 /proc/uptime; }
export SF_VERBOSE=1
# dom0 health every 5 s (memory, load, OOM kills), for the lab's logs.
(while true; do
  echo "$(date -u +%H:%M:%S) up=$(up) $(grep -E '^(MemFree|MemAvailable|Cached|Shmem):' /proc/meminfo | tr -s ' ' | tr '\n' ' ') load=$(cut -d' ' -f1-3 /proc/loadavg)"
  dmesg | grep -iE 'oom|killed process' | tail -2
  # The agent's log as it grows, so a stuck lab can be read from outside before it times out.
  cp /tmp/agent.log "/lab/run/agent-host$sf_host.live.log" 2>/dev/null
  sleep 5
done >/tmp/mon.log 2>&1) &
if [ "$sf_host" = 1 ]; then
  mkdir -p /tmp/master
  # Heartbeat timeout 120 s: under TCG on a busy machine a dom0 process can stall for
  # tens of seconds; a killed agent is still noticed at once (its connection closes).
  $DENO run --no-check -A scripts/lab/xen/master.ts master --listen $MASTER --data-dir /tmp/master \
    --token $TOKEN --heartbeat-timeout 120000 --verbose \
    >/tmp/master.log 2>&1 &
  until wget -q -O /dev/null http://$MASTER/v1/health 2>/dev/null; do sleep 0.5; done
  echo "[dom0-run] master up at $(up)s"
  $DENO run --no-check -A scripts/lab/xen/agent.ts $MASTER $TOKEN host1 3 10.77.0.1 >/tmp/agent.log 2>&1 &
  $DENO run --no-check -A scripts/lab/xen/scenario.ts $MASTER $TOKEN 2>&1 | tee /tmp/scenario.log
  echo "[dom0-run] scenario done at $(up)s"
  cp /tmp/master.log /tmp/agent.log /lab/run/ 2>/dev/null
  cp /tmp/mon.log /lab/run/mon-host1.log 2>/dev/null
  cp /var/log/xen/console/*.log /lab/run/ 2>/dev/null
  touch /lab/run/stop
else
  until wget -q -O /dev/null http://$MASTER/v1/health 2>/dev/null; do sleep 0.5; done
  $DENO run --no-check -A scripts/lab/xen/agent.ts $MASTER $TOKEN host2 2 10.77.0.2 >/tmp/agent.log 2>&1 &
  AGENT=$!
  while [ ! -f /lab/run/stop ]; do
    # The scenario's host-death test: this host's agent dies (SIGKILL) mid clone start.
    if [ -f /lab/run/kill-host2 ] && [ -n "$AGENT" ]; then
      kill -9 "$AGENT"; AGENT=; echo "[dom0-run] host2 agent killed at $(up)s"
    fi
    sleep 1
  done
  cp /tmp/agent.log /lab/run/agent-host2.log 2>/dev/null
  cp /tmp/mon.log /lab/run/mon-host2.log 2>/dev/null
  cp /var/log/xen/console/*.log /lab/run/ 2>/dev/null
fi
