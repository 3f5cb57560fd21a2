#!/bin/bash
# make bench: set the machine up (idempotent), then print benchmark figures:
# the in-tree virtio_balloon against uniballoon, then VMware commands per GiB.
# BENCH=virtio or BENCH=vmware runs one part only.
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
"$here/setup.sh"
if [[ ${BENCH:-virtio} != vmware ]]; then python3 "$here/bench_virtio.py"; fi
if [[ ${BENCH:-vmware} != virtio ]]; then python3 "$here/bench_vmware.py"; fi
