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
#                                  UB_TEST_HOST_MODEL=y with tools/lab/vmware-model
#                                  and the vmw-standin module);
#                                  prints the path of uniballoon.ko (UB_BUILD_TREE names
#                                  the copy's directory, by default mod or mod-test)
#   sid-chroot.sh source           also install linux-source-7.2 (for reading
#                                  mm/balloon.c); prints the tarball's path
#   sid-chroot.sh run CMD...       run CMD in the chroot (/proc mounted; cwd /)
#   sid-chroot.sh kernel           download that release's kernel image and modules
#                                  (apt-get download in the chroot) and unpack them
#                                  with dpkg-deb -x into build/sid-kernel/RELEASE (cached),
#                                  with modules.dep made by the host's depmod; prints
#                                  the directory holding vmlinuz, config and the modules
#
# The chroot lives in build/sid-chroot; its key is the code that makes it (here and in
# chroot-lib.sh, shared with trixie-chroot.sh), so editing the package list rebuilds it.
# UB_SID_MIRROR overrides the mirror (by default the one the host's own sources use);
# UB_SID_HEADERS names a headers package.
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
project=$(readlink -f "$here/../..")
suite=sid

pick_packages() {
  local headers=${UB_SID_HEADERS:-}
  if [[ -z $headers ]]; then
    headers=$(in_root apt-cache pkgnames linux-headers-7.2 | grep -E '^linux-headers-7\.2\.[^-]+-amd64$' |
                sort -V | tail -n1)
  fi
  [[ -n $headers ]] || { echo "sid-chroot.sh: sid has no linux-headers-7.2*-amd64" >&2; exit 1; }
  # The headers package depends on the compiler its kernel was built with (gcc-16).
  echo make libelf-dev "$headers"
}

# shellcheck source=SCRIPTDIR/chroot-lib.sh
. "$here/chroot-lib.sh"

ensure() {
  chroot_ensure
  [[ -e $root/.release ]] || sed -E 's/.*linux-headers-(\S+).*/\1/' "$root/.packages" > "$root/.release"
}

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
    kind=${UB_BUILD_TREE:-$kind}
    # a copy of the tree, as dkms and lab.build_module build
    out=/build/$kind/$rel
    rm -rf "$root$out"
    mkdir -p "$root$out"
    cp -r "$project"/{Kbuild,Makefile,dkms.conf,src} "$root$out"
    if [[ ${2:-} == test ]]; then
      # the VMware host model, at the path Kbuild expects
      mkdir -p "$root$out/tools/lab"
      cp -r "$here/vmware-model" "$root$out/tools/lab"
    fi
    in_root make -C "$out" KERNELRELEASE="$rel" "${extra[@]}" >&2
    if [[ ${2:-} == test ]]; then
      cp -r "$here/vmw-standin" "$root$out"
      in_root make -C "/lib/modules/$rel/build" M="$out/vmw-standin" modules >&2
    fi
    echo "$root$out/uniballoon.ko" ;;
  run)
    ensure
    shift
    in_root "$@" ;;
  kernel)
    ensure
    rel=$(cat "$root/.release")
    dest=$project/build/sid-kernel/$rel
    if [[ ! -e $dest/.ready ]]; then
      t0=$(date +%s)
      rm -rf "$dest" "$root/tmp/kernel-debs"
      mkdir -p "$dest" "$root/tmp/kernel-debs"
      # linux-image-REL is either the whole kernel (up to 6.x) or a meta package of the
      # linux-{binary,modules,base}-REL packages that hold it (sid's 7.2): take it and
      # every dependency of the same release.
      debs=$(in_root apt-cache show --no-all-versions "linux-image-$rel" |
               sed -n 's/^Depends: //p' | tr ',|' '

' | awk '{print $1}' | grep -F -- "-$rel" || true)
      # shellcheck disable=SC2086
      in_root sh -c 'cd /tmp/kernel-debs && apt-get -q -o Acquire::Check-Valid-Until=false download "$@"'         sh "linux-image-$rel" $debs >> "$log" 2>&1
      for deb in "$root"/tmp/kernel-debs/*.deb; do dpkg-deb -x "$deb" "$dest"; done
      rm -rf "$root/tmp/kernel-debs"
      base=$dest/usr; [[ -d $base/lib/modules/$rel ]] || base=$dest
      depmod -b "$base" "$rel"
      mods=$base/lib/modules/$rel
      # older packages keep the image and config in /boot
      [[ -e $mods/vmlinuz ]] || ln -s "$dest/boot/vmlinuz-$rel" "$mods/vmlinuz"
      [[ -e $mods/config ]] || ln -s "$dest/boot/config-$rel" "$mods/config"
      echo "$mods" > "$dest/.ready"
      echo "$me: unpacked sid's $rel kernel (linux-image-$rel ${debs//$'\n'/ }) in $(( $(date +%s) - t0 )) s" >&2
    fi
    cat "$dest/.ready" ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2
    exit 2 ;;
esac
