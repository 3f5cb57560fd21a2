# shellcheck shell=bash disable=SC2154
# Sourced by sid-chroot.sh and trixie-chroot.sh: a cached Debian chroot made by debootstrap
# from the mirror of the host's own apt sources, which it leaves alone.
#
# The sourcing script sets project (the project's root) and suite (a Debian suite), and
# defines pick_packages (prints the packages to install on top of the minbase system; it may
# run apt-cache in the chroot). The chroot is build/SUITE-chroot, its log build/SUITE-chroot.log. chroot_ensure makes the chroot
# unless $root/.ready-KEY exists; KEY hashes these functions, pick_packages and $suite, so
# editing what makes it makes it anew.

root=$project/build/$suite-chroot
log=$project/build/$suite-chroot.log
me=$suite-chroot.sh

# shellcheck source=SCRIPTDIR/mirror.sh
. "$project/tools/lab/mirror.sh"

chroot_mirror() {
  if [[ -n ${UB_CHROOT_MIRROR:-${UB_SID_MIRROR:-}} ]]; then echo "${UB_CHROOT_MIRROR:-$UB_SID_MIRROR}"; return; fi
  host_mirror debian
}

# Run a command in the chroot, in a mount namespace of its own: /proc (and, with
# UB_CHROOT_SYS=1, /sys) is mounted for the time it runs and goes away with it, whatever
# happens; nothing is left mounted on the host. UB_CHROOT_TRACEFS names a directory inside
# the chroot to bind on /sys/kernel/tracing (bpftrace reads tracepoint formats there).
in_root() {
  local mounts="mount -t proc proc \"\$1/proc\""
  if [[ ${UB_CHROOT_SYS:-0} == 1 || -n ${UB_CHROOT_TRACEFS:-} ]]; then
    mounts+=" && mount -t sysfs sysfs \"\$1/sys\""
  fi
  if [[ -n ${UB_CHROOT_TRACEFS:-} ]]; then
    mounts+=" && mount --bind \"\$1$UB_CHROOT_TRACEFS\" \"\$1/sys/kernel/tracing\""
  fi
  unshare --mount --propagation private sh -c "$mounts && shift && exec chroot \"\$@\"" sh "$root" "$root" \
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C DEBIAN_FRONTEND=noninteractive "$@"
}

chroot_debs_bytes() {
  find "$root/var/cache/apt/archives" -name '*.deb' -printf '%s\n' 2>/dev/null | awk '{s+=$1} END {print s+0}'
}

apt_in() {
  in_root apt-get -q -o Acquire::Check-Valid-Until=false -o APT::Install-Recommends=false "$@"
}

chroot_ensure() {
  if [[ -e $root/.ready-$chroot_key ]]; then return; fi
  command -v debootstrap > /dev/null || {
    echo "$me: needs debootstrap (apt-get install debootstrap; tools/lab/setup.sh installs it)" >&2; exit 1; }
  # an older chroot may still have /proc mounted on the host (before in_root's namespace)
  mountpoint -q "$root/proc" 2> /dev/null && umount "$root/proc"
  rm -rf "$root"
  mkdir -p "$root"
  local t0 dl pkgs
  t0=$(date +%s)
  trap 'tail -n 30 "$log" >&2; echo "$me: failed, log: $log" >&2' ERR
  debootstrap --variant=minbase "$suite" "$root" "$(chroot_mirror)" > "$log" 2>&1
  dl=$(chroot_debs_bytes)
  rm -f "$root"/var/cache/apt/archives/*.deb
  # The archive's Release file may be past its Valid-Until date (sid).
  apt_in update >> "$log" 2>&1
  pkgs=$(pick_packages)
  # shellcheck disable=SC2086
  apt_in install -y $pkgs >> "$log" 2>&1
  dl=$(( dl + $(chroot_debs_bytes) ))
  apt_in clean >> "$log" 2>&1
  trap - ERR
  echo "$pkgs" > "$root/.packages"
  touch "$root/.ready-$chroot_key"
  echo "$me: made $root ($suite: $pkgs) in $(( $(date +%s) - t0 )) s," \
       "downloaded $(( dl / 1048576 )) MiB of packages" >&2
}

chroot_key=$( { declare -f host_mirror chroot_mirror in_root apt_in chroot_ensure pick_packages; echo "$suite"; } |
                sha256sum | cut -c1-12)
