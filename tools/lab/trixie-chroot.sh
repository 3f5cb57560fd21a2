#!/bin/bash
# A Debian 13 (trixie) chroot as a trixie user has it, for make check's trixie test
# (check_pkg.py): trixie's dkms, gcc-14 and kernel headers (linux-headers-amd64, with the
# image it depends on), bpftrace and lintian. Made by debootstrap from the mirror of the
# host's own apt sources, which it leaves alone (shared code: chroot-lib.sh).
#
# Usage:
#   trixie-chroot.sh               make the chroot unless it is cached; print its directory
#   trixie-chroot.sh release       print the kernel release of the chroot's headers
#   trixie-chroot.sh run CMD...    run CMD in the chroot with /proc and /sys mounted in a
#                                  mount namespace of its own (UB_CHROOT_TRACEFS: a directory
#                                  in the chroot to bind on /sys/kernel/tracing)
#
# The chroot lives in build/trixie-chroot; its key is the code that makes it. UB_CHROOT_MIRROR
# overrides the mirror.
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
project=$(readlink -f "$here/../..")
suite=trixie

pick_packages() {
  # linux-headers-amd64: the newest 6.12 kernel of trixie, as a user's system gets it; it
  # brings gcc-14, the compiler trixie's kernels are built with.
  echo dkms linux-headers-amd64 bpftrace lintian
}

# shellcheck source=SCRIPTDIR/chroot-lib.sh
. "$here/chroot-lib.sh"

ensure() {
  chroot_ensure
  if [[ ! -e $root/.release ]]; then
    # the release whose headers linux-headers-amd64 brought in
    # shellcheck disable=SC2016
    in_root dpkg-query -W -f '${Depends}\n' linux-headers-amd64 |
      sed -E 's/.*linux-headers-([^ ,]+).*/\1/' > "$root/.release"
  fi
}

case ${1:-} in
  "")
    ensure
    echo "$root" ;;
  release)
    ensure
    cat "$root/.release" ;;
  run)
    ensure
    shift
    UB_CHROOT_SYS=1 in_root "$@" ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2
    exit 2 ;;
esac
