#!/bin/bash
# A Debian sid chroot with sid's newest 7.2 kernel headers and the compiler they
# were built with (bookworm's gcc-12 cannot build against them), for building
# uniballoon for Linux 7.2 on a Debian 12 host without touching the host's apt
# sources.
#
# Usage:
#   sid-chroot.sh                  make the chroot unless it is cached; print its directory
#   sid-chroot.sh release          print the kernel release of the chroot's headers
#   sid-chroot.sh build [test]     build this tree for that release inside the chroot as
#                                  lab.build_module does (UB_WERROR=y; "test" adds
#                                  UB_TEST_HOST_MODEL=y and the vmw-standin module);
#                                  prints the path of uniballoon.ko
#   sid-chroot.sh source           also install linux-source-7.2 (for reading
#                                  mm/balloon.c); prints the tarball's path
#
# The chroot lives in build/sid-chroot; its key is the code that makes it, so
# editing the package list rebuilds it. UB_SID_MIRROR overrides the mirror (by default the
# one the host's own sources use); UB_SID_HEADERS names a headers package.
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
project=$(readlink -f "$here/../..")
root=$project/build/sid-chroot
log=$project/build/sid-chroot.log

mirror() {
  if [[ -n ${UB_SID_MIRROR:-} ]]; then echo "$UB_SID_MIRROR"; return; fi
  local m
  m=$(grep -rhoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ \
        2>/dev/null | awk '{print $2}' | head -n1 || true)
  echo "${m:-http://deb.debian.org/debian}"
}

# Run a command in the chroot with /proc mounted for the time it runs.
in_root() {
  mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
  local rc=0
  chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C \
    DEBIAN_FRONTEND=noninteractive "$@" || rc=$?
  umount "$root/proc"
  return $rc
}

debs_bytes() {
  find "$root/var/cache/apt/archives" -name '*.deb' -printf '%s\n' 2>/dev/null | awk '{s+=$1} END {print s+0}'
}

apt_in() {
  in_root apt-get -q -o Acquire::Check-Valid-Until=false -o APT::Install-Recommends=false "$@"
}

ensure() {
  if [[ -e $root/.ready-$key ]]; then return; fi
  command -v debootstrap > /dev/null || {
    echo "sid-chroot.sh: needs debootstrap (apt-get install debootstrap)" >&2; exit 1; }
  mountpoint -q "$root/proc" 2> /dev/null && umount "$root/proc"
  rm -rf "$root"
  mkdir -p "$root"
  local t0 dl
  t0=$(date +%s)
  trap 'tail -n 30 "$log" >&2; echo "sid-chroot.sh: failed, log: $log" >&2' ERR
  debootstrap --variant=minbase sid "$root" "$(mirror)" > "$log" 2>&1
  dl=$(debs_bytes)
  rm -f "$root"/var/cache/apt/archives/*.deb
  # The archive's sid Release file may be past its Valid-Until date.
  apt_in update >> "$log" 2>&1
  local headers=${UB_SID_HEADERS:-}
  if [[ -z $headers ]]; then
    headers=$(in_root apt-cache pkgnames linux-headers-7.2 | grep -E '^linux-headers-7\.2\.[^-]+-amd64$' |
                sort -V | tail -n1)
  fi
  [[ -n $headers ]] || { echo "sid-chroot.sh: sid has no linux-headers-7.2*-amd64" >&2; exit 1; }
  # The headers package depends on the compiler its kernel was built with (gcc-16).
  apt_in install -y make libelf-dev "$headers" >> "$log" 2>&1
  dl=$(( dl + $(debs_bytes) ))
  apt_in clean >> "$log" 2>&1
  trap - ERR
  echo "${headers#linux-headers-}" > "$root/.release"
  touch "$root/.ready-$key"
  echo "sid-chroot.sh: made $root ($headers) in $(( $(date +%s) - t0 )) s," \
       "downloaded $(( dl / 1048576 )) MiB of packages" >&2
}

key=$(declare -f mirror in_root apt_in ensure | sha256sum | cut -c1-12)

case ${1:-} in
  "")
    ensure
    echo "$root" ;;
  release)
    ensure
    cat "$root/.release" ;;
  source)
    ensure
    if ! compgen -G "$root/usr/src/linux-source-7.2*.tar.*" > /dev/null; then
      apt_in update >> "$log" 2>&1
      apt_in install -y linux-source-7.2 >> "$log" 2>&1
      apt_in clean >> "$log" 2>&1
    fi
    ls "$root"/usr/src/linux-source-7.2*.tar.* | head -n1 ;;
  build)
    ensure
    rel=$(cat "$root/.release")
    kind=mod
    extra=(UB_WERROR=y)
    if [[ ${2:-} == test ]]; then kind=mod-test; extra+=(UB_TEST_HOST_MODEL=y); fi
    # a copy of the tree, as dkms and lab.build_module build
    out=/build/$kind/$rel
    rm -rf "$root$out"
    mkdir -p "$root$out"
    cp -r "$project"/{Kbuild,Makefile,dkms.conf,src} "$root$out"
    in_root make -C "$out" KERNELRELEASE="$rel" "${extra[@]}" >&2
    if [[ ${2:-} == test ]]; then
      cp -r "$here/vmw-standin" "$root$out"
      in_root make -C "/lib/modules/$rel/build" M="$out/vmw-standin" modules >&2
    fi
    echo "$root$out/uniballoon.ko" ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2
    exit 2 ;;
esac
