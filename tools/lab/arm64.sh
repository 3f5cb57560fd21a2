#!/bin/bash
# Debian 12's arm64 kernel and a Debian arm64 root filesystem for the lab's arm64 guest
# (qemu-system-aarch64, TCG, virt machine), and the cross build of uniballoon for it, on an
# amd64 host whose own dpkg and apt sources stay untouched.
#
# Usage:
#   arm64.sh release AMD64_RELEASE  print the arm64 release of the same kernel
#                                   (6.12.117+deb12-amd64 -> 6.12.117+deb12-arm64)
#   arm64.sh root RELEASE           make build/arm64/root-RELEASE unless it is cached: bookworm's
#                                   minbase userland with python3 and kmod (debootstrap
#                                   --foreign, every package unpacked with dpkg-deb -x, none
#                                   configured: the guest only runs programs), the kernel's
#                                   image and modules (modules.dep by the host's depmod);
#                                   prints its directory
#   arm64.sh headers RELEASE        print a build tree for RELEASE: the arm64 headers package,
#                                   its scripts from the host's own linux-kbuild of the same
#                                   version (amd64 programs), its common part the host's
#   arm64.sh build RELEASE [test]   cross build this tree for RELEASE as lab.build_module
#                                   builds (UB_WERROR=y; test: UB_TEST_HOST_MODEL=y); prints
#                                   the path of uniballoon.ko (UB_BUILD_TREE: the copy's name)
#
# The kernel packages come from bookworm's security suite (where Debian 12's kernels are
# updated), fetched by apt-get with a sources list and state of its own under build/arm64/apt.
# UB_CHROOT_MIRROR / UB_SECURITY_MIRROR override the mirrors (by default the host's own).
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
project=$(readlink -f "$here/../..")
top=$project/build/arm64
me=arm64.sh

# shellcheck source=SCRIPTDIR/mirror.sh
. "$here/mirror.sh"

mirror() {   # $1: debian or debian-security
  local var=UB_CHROOT_MIRROR
  [[ $1 == debian-security ]] && var=UB_SECURITY_MIRROR
  if [[ -n ${!var:-} ]]; then echo "${!var}"; return; fi
  host_mirror "$1"
}

# apt-get for arm64 with its own sources list, lists and cache: the host's apt never sees it.
apt_arm64() {
  local d=$top/apt
  if [[ ! -e $d/sources.list ]]; then
    mkdir -p "$d/lists/partial" "$d/cache/archives/partial"
    printf 'deb [arch=arm64] %s bookworm main\ndeb [arch=arm64] %s bookworm-security main\n' \
      "$(mirror debian)" "$(mirror debian-security)" > "$d/sources.list"
  fi
  apt-get -q -o Dir::Etc::sourcelist="$d/sources.list" -o Dir::Etc::sourceparts=/nonexistent \
    -o Dir::State::Lists="$d/lists" -o Dir::Cache="$d/cache" -o Dir::State::status=/dev/null \
    -o APT::Architecture=arm64 -o APT::Architectures=arm64 "$@"
}

release() {
  [[ $1 == *-amd64 ]] || { echo "$me: not an amd64 release: $1" >&2; exit 2; }
  echo "${1%-amd64}-arm64"
}

# Download the named arm64 packages into $1 (a directory) with fresh lists: this runs only
# when a cache is cold, and the archive replaces a kernel's packages when it updates them.
download() {
  local dir=$1; shift
  mkdir -p "$top" "$dir"
  apt_arm64 update > "$top/apt.log" 2>&1 || { cat "$top/apt.log" >&2; exit 1; }
  (cd "$dir" && apt_arm64 download "$@") >> "$top/apt.log" 2>&1 ||
    { tail -n 20 "$top/apt.log" >&2; echo "$me: cannot download $*" >&2; exit 1; }
}

root_key() {   # what makes a root: this script's functions and the release
  { declare -f host_mirror mirror apt_arm64 download make_root; echo "$1"; } | sha256sum | cut -c1-12
}

make_root() {
  local rel=$1 root=$top/root-$1 t0
  t0=$(date +%s)
  command -v debootstrap > /dev/null ||
    { echo "$me: needs debootstrap (tools/lab/setup.sh installs it)" >&2; exit 1; }
  rm -rf "$root" "$top/debs-$rel"
  mkdir -p "$root"
  # --foreign only downloads and unpacks: nothing of arm64 runs on this host
  debootstrap --foreign --arch=arm64 --variant=minbase --include=python3,kmod,procps,busybox-static \
    bookworm "$root" "$(mirror debian)" > "$top/root-$rel.log" 2>&1 ||
    { tail -n 20 "$top/root-$rel.log" >&2; echo "$me: debootstrap failed" >&2; exit 1; }
  download "$top/debs-$rel" "linux-image-$rel-unsigned"
  for deb in "$root"/var/cache/apt/archives/*.deb "$top/debs-$rel"/*.deb; do
    dpkg-deb -x "$deb" "$root"
  done
  rm -rf "$root/var/cache/apt/archives"/*.deb "$root/debootstrap" "$top/debs-$rel"
  # the links the packages' postinst scripts make with update-alternatives; none ran
  ln -sfn mawk "$root/usr/bin/awk"
  ln -sfn which.debianutils "$root/usr/bin/which"
  depmod -b "$root" "$rel"
  touch "$root/.ready-$(root_key "$rel")"
  echo "$me: made $root in $(( $(date +%s) - t0 )) s" >&2
}

ensure_root() {
  local root=$top/root-$1
  [[ -e $root/.ready-$(root_key "$1") ]] || make_root "$1"
  echo "$root"
}

headers() {
  local rel=$1 dir=$top/headers-$1 ver host
  ver=${rel%-arm64}
  if [[ ! -e $dir/.ready ]]; then
    # the host's amd64 headers of the same kernel lead to its kbuild programs
    host=/usr/src/linux-headers-$ver-amd64
    [[ -d /usr/src/linux-headers-$ver-common && -e $host/scripts/Makefile.build ]] || {
      echo "$me: needs the host's linux-headers-$ver-amd64 (the same kernel's amd64" \
           "headers: their -common part and linux-kbuild)" >&2; exit 1; }
    rm -rf "$dir" "$top/hdebs-$rel"
    download "$top/hdebs-$rel" "linux-headers-$rel"
    mkdir -p "$dir"
    dpkg-deb -x "$top/hdebs-$rel"/*.deb "$dir"
    rm -rf "$top/hdebs-$rel"
    # the package's relative links would point into $dir/usr/lib: make them the host's
    local tree=$dir/usr/src/linux-headers-$rel
    for l in scripts tools; do
      if [[ -L $tree/$l ]]; then ln -sfn "$(readlink -f "$host/$l")" "$tree/$l"; fi
    done
    touch "$dir/.ready"
  fi
  echo "$dir/usr/src/linux-headers-$rel"
}

case ${1:-} in
  release) release "$2" ;;
  root) ensure_root "$2" ;;
  headers) headers "$2" ;;
  build)
    rel=$2 kdir=$(headers "$2")
    kind=mod extra=(UB_WERROR=y)
    if [[ ${3:-} == test ]]; then kind=mod-test; extra+=(UB_TEST_HOST_MODEL=y); fi
    out=$project/build/${UB_BUILD_TREE:-$kind}/$rel
    rm -rf "$out"
    mkdir -p "$out"
    cp -r "$project"/{Kbuild,Makefile,dkms.conf,src} "$out"
    if [[ ${3:-} == test ]]; then
      # the VMware host model, at the path Kbuild expects
      mkdir -p "$out/tools/lab"
      cp -r "$here/vmware-model" "$out/tools/lab"
    fi
    make -C "$out" KDIR="$kdir" KERNELRELEASE="$rel" ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- \
      "${extra[@]}" >&2
    echo "$out/uniballoon.ko" ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2
    exit 2 ;;
esac
