#!/bin/bash
# make bench: set the machine up (idempotent), then print benchmark figures:
# the cost curves of uniballoon against the in-tree virtio_balloon (with a
# Markdown table and a PNG under build/bench/), then VMware commands per GiB.
# BENCH=virtio or BENCH=vmware runs one part only. bench_virtio.py lists its
# knobs (BENCH_SIZES, BENCH_ROUNDS, BENCH_CONFIG, BENCH_OOM, ...).
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
"$here/setup.sh"
if [[ ${BENCH:-virtio} != vmware ]]; then
  rm -f "$here/../../build/bench/curves.png" "$here/../../build/bench/curves.md"   # never a stale one
  python3 "$here/bench_virtio.py"
  # matplotlib only for the picture, installed here on demand rather than in
  # setup.sh, which CI runs
  if [[ $(dpkg-query -W -f='${Status}' python3-matplotlib 2>/dev/null) != "install ok installed" ]]; then
    echo "bench.sh: installing python3-matplotlib for the picture"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      python3-matplotlib >/dev/null || echo "bench.sh: no python3-matplotlib: no picture" >&2
  fi
  # Debian's own python3, where the Debian package installs (a python3 earlier in
  # PATH, e.g. pyenv's, does not see it)
  /usr/bin/python3 "$here/bench_plot.py" || echo "bench.sh: the picture failed; the table is build/bench/curves.md" >&2
  # BENCH_PUBLISH=1, on a quiet machine only: the run's table and picture become
  # the ones BENCHMARKS.md shows (docs/), so that no figure there is typed by hand
  if [[ ${BENCH_PUBLISH:-0} == 1 ]]; then
    docs=$here/../../docs
    mkdir -p "$docs"
    cp "$here/../../build/bench/curves.md" "$docs/bench-curves.md"
    if [[ -f $here/../../build/bench/curves.png ]]; then
      cp "$here/../../build/bench/curves.png" "$docs/bench-curves.png"
    fi
    echo "bench.sh: published docs/bench-curves.md and docs/bench-curves.png"
  fi
fi
if [[ ${BENCH:-vmware} != virtio ]]; then python3 "$here/bench_vmware.py"; fi
