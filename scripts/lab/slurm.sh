#!/usr/bin/env bash
# The Slurm lab: a real one-machine Slurm 22.05 (munged, slurmctld, 3 slurmd,
# slurmrestd with JWT; Debian packages installed when missing) and an embedded
# Snowflock cluster with --allocator slurm. A guest's ticket is granted, used
# and released through a Slurm job; a request larger than the cluster gets a
# partial grant; a node drained mid-ticket fails its clones in sf_join.
# Everything lives under a temp dir and is stopped and removed at the end.
# Needs root. Ends with one JSON line: ok, requested, granted, released, drained_failed.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/setup.sh demo >&2
exec ./node_modules/.bin/deno run --allow-all tests/slurm_scenario.ts
