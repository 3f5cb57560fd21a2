#!/bin/bash
# Print the kernel releases the lab tests, one per line: the newest installed 6.1.* and the
# newest installed 6.12.* that have both a bootable image and build headers (needed to build
# the out-of-tree module). Only the generic amd64 flavour: cloud/rt kernels lack drivers we need.
set -euo pipefail
for series in 6.1 6.12; do
  for img in /boot/vmlinuz-"$series".*; do
    [[ -e $img ]] || continue
    k=${img#/boot/vmlinuz-}
    [[ $k == *-amd64 && $k != *-cloud-amd64 && $k != *-rt-amd64 ]] || continue
    [[ -e /lib/modules/$k/build/Makefile ]] || continue
    echo "$k"
  done | sort -V | tail -n 1
done
