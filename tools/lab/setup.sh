#!/bin/bash
# Install everything the uniballoon test lab needs on a Debian 12 host (or CI runner).
# Idempotent: when every package is already installed it only runs dpkg-query and exits.
# Kernel versions are chosen by Debian's meta packages, never by hard-coded ABI numbers:
#   linux-image-amd64 / linux-headers-amd64       -> newest 6.1 kernel in bookworm
#   linux-image-6.12-amd64 / linux-headers-6.12-amd64 -> newest 6.12 kernel (bookworm security/updates)
# debootstrap makes the Debian 13 (trixie) chroot of the package test (trixie-chroot.sh) and
# the arm64 guest's root (arm64.sh), which qemu-system-arm boots; gcc-aarch64-linux-gnu cross builds.
# libvirt (check_libvirt.py) starts its own virtlogd/libvirtd when PID 1 is not systemd.
# Set LAB_UPGRADE=1 to refresh the package lists and pull newer kernels even if some are installed.
set -euo pipefail

PKGS=(
  qemu-system-x86 busybox-static bpftrace dwarves kmod xz-utils cpio
  build-essential python3 bc linux-source-6.1 dkms
  linux-source-6.12 flex bison libelf-dev libssl-dev
  xen-hypervisor-4.17-amd64 xen-utils-4.17
  debhelper dh-dkms lintian rpm rpmlint udev rsync
  debootstrap libvirt-daemon-system libvirt-clients
  qemu-system-arm gcc-aarch64-linux-gnu
  linux-image-amd64 linux-headers-amd64
  linux-image-6.12-amd64 linux-headers-6.12-amd64
)

if [[ $(id -u) -ne 0 ]]; then
  echo "setup.sh: must run as root (apt-get)" >&2
  exit 1
fi

missing=()
for p in "${PKGS[@]}"; do
  # "install ok installed" is the only state that means the package is really usable.
  if [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) != "install ok installed" ]]; then
    missing+=("$p")
  fi
done

export DEBIAN_FRONTEND=noninteractive
if (( ${#missing[@]} )) || [[ ${LAB_UPGRADE:-0} == 1 ]]; then
  echo "setup.sh: installing: ${missing[*]:-<upgrade only>}"
  apt-get update -qq
  # Installing the full list (not only the missing part) also upgrades the kernel meta packages.
  apt-get install -y -q --no-install-recommends "${PKGS[@]}"
fi

# Sanity check: the lab needs one 6.1 and one 6.12 kernel with image and build headers.
here=$(dirname "$(readlink -f "$0")")
kernels=$("$here/kernels.sh")
for series in 6.1 6.12; do
  if ! grep -q "^${series//./\\.}\." <<<"$kernels"; then
    echo "setup.sh: no usable $series kernel (image + /lib/modules/K/build) after install" >&2
    exit 1
  fi
done
echo "setup.sh: ok; kernels:" $kernels
