#!/bin/bash
# Build the lab's debug kernel (lockdep, KASAN, KFENCE, kmemleak, debug objects, DEBUG_VM)
# from Debian's linux-source-6.12 with tinyconfig plus debug-kernel/debug.config, and print
# the build directory (QEMU boots its arch/x86/boot/bzImage: its vmlinux never printed a line
# from the PVH entry; external modules build against it with KDIR=<dir>).
#
# Usage: debugkernel.sh        (prints the directory; builds it first if it is not cached)
# The cache key is the source tarball, the fragment and this script, so a second run, or a
# run after an unrelated change, reuses the kernel; changing the fragment rebuilds it.
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
project=$(readlink -f "$here/../..")
frag=$here/debug-kernel/debug.config
tarball=$(ls /usr/src/linux-source-6.12.tar.xz)

key=$( { stat -c '%n %s %Y' "$tarball"; cat "$frag" "$0"; } | sha256sum | cut -c1-12)
dir=$project/build/debug-kernel/$key
if [[ -e $dir/ready ]]; then
  echo "$dir"
  exit 0
fi

log=$project/build/debug-kernel/build-$key.log
mkdir -p "$(dirname "$dir")"
# one kernel tree is 1.5 GB: a new configuration replaces the old one
rm -rf "$project"/build/debug-kernel/*/
mkdir -p "$dir"
t0=$(date +%s)
trap 'tail -n 40 "$log" >&2; echo "debugkernel.sh: build failed, log: $log" >&2' ERR
tar -xJf "$tarball" -C "$dir" --strip-components=1
cd "$dir"
make -s ARCH=x86_64 tinyconfig > "$log" 2>&1
scripts/kconfig/merge_config.sh -m .config "$frag" >> "$log" 2>&1
make -s ARCH=x86_64 olddefconfig >> "$log" 2>&1
# Every option the fragment asks for must have survived olddefconfig's dependency
# resolution, or the kernel would silently lack a checker.
missing=$(grep -E '^(CONFIG_|# CONFIG_.* is not set)' "$frag" | grep -vxF -f .config || true)
if [[ -n $missing ]]; then
  echo "debugkernel.sh: options of debug.config that did not stick:" >&2
  echo "$missing" >&2
  exit 1
fi
make -s ARCH=x86_64 -j"$(nproc)" bzImage modules >> "$log" 2>&1
trap - ERR
echo "debugkernel.sh: built $(make -s -C "$dir" kernelrelease) in $(( $(date +%s) - t0 )) s" >&2
touch "$dir/ready"
echo "$dir"
