#!/bin/bash
# Build a tiny busybox initramfs for kernel KVER that boots the guest on the HOST's root
# filesystem (virtme-ng style): it loads the virtio/9p modules, mounts the host root read-only
# over virtio-9p (tag hostroot), puts tmpfs on the directories that must be writable, mounts
# the project share (tag work) read-write at the same path as on the host, and switch_root's
# into the host root to run $labinit (passed on the kernel command line by lab.py).
#
# Usage: initramfs.sh KVER OUTFILE [MODDIR]
# MODDIR: the kernel's module directory when it is not /lib/modules/KVER (a kernel the lab
# unpacked, sid-chroot.sh kernel); the guest then gets it from a 9p share (tag mods, see
# lab.py), mounted over /lib/modules, since the host root is read-only.
# Skips the build when OUTFILE is newer than this script and the kernel's modules.dep.
set -euo pipefail
K=$1 OUT=$2
MODDIR=${3:-/lib/modules/$K}

# A kernel without a module directory (the lab's debug kernel) has every driver built in.
if [[ -s $OUT && $OUT -nt $0 && ( ! -e $MODDIR || $OUT -nt $MODDIR/modules.dep ) ]]; then
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"/{bin,dev,proc,sys,newroot,mods}
# busybox-static: no shared libs needed. LAB_BUSYBOX: another architecture's (arm64.sh).
cp "${LAB_BUSYBOX:-/bin/busybox}" "$tmp/bin/busybox"

# Module list in load order, computed by modprobe from the target kernel's modules.dep.
# "builtin X" lines (6.12 has virtio_pci and virtio_console built in) need nothing.
# Dedup keeps the first occurrence, which respects dependency order.
if [[ -e $MODDIR ]]; then
  base=${MODDIR%/lib/modules/"$K"}   # modprobe -d BASE looks in BASE/lib/modules/KVER
  modprobe -d "${base:-/}" -S "$K" -a --show-depends virtio_pci 9pnet_virtio 9p virtio_console |
    awk '$1 == "insmod" && !seen[$2]++ { print $2 }' > "$tmp/modlist"
else
  : > "$tmp/modlist"
fi
: > "$tmp/mods/order"
while read -r ko; do
  name=$(basename "$ko"); name=${name%.xz}; name=${name%.zst}
  case $ko in   # busybox insmod cannot decompress: store plain .ko
    *.xz)  xz -dc "$ko" > "$tmp/mods/$name" ;;
    *.zst) zstd -qdc "$ko" > "$tmp/mods/$name" ;;
    *)     cp "$ko" "$tmp/mods/$name" ;;
  esac
  echo "$name" >> "$tmp/mods/order"
done < "$tmp/modlist"

cat > "$tmp/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
die() { echo "LAB-INIT: FATAL: $*"; sleep 1; poweroff -f; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /mods/order); do
  insmod /mods/$m || echo "LAB-INIT: insmod $m failed"
done
# 9p channels appear when the virtio devices probe; retry the mount for up to 10 s
# instead of assuming the probe has already finished.
mount9p() { # tag dir options
  i=0
  until mount -t 9p -o "trans=virtio,version=9p2000.L,msize=262144,$3" "$1" "$2" 2>/dev/null; do
    i=$((i+1)); [ $i -lt 100 ] || return 1
    usleep 100000
  done
}
mount9p hostroot /newroot ro,cache=loose || die "cannot mount host root (tag hostroot)"
for d in run tmp var/tmp root var/log; do
  mount -t tmpfs -o mode=0755 tmpfs /newroot/$d
done
chmod 1777 /newroot/tmp /newroot/var/tmp
# The project share must stay coherent with the host (results are read there), so no caching.
if [ -n "$labwork" ]; then
  # a project under /tmp (CI clones) lies below a tmpfs now: make the mount point there
  mkdir -p "/newroot$labwork" 2>/dev/null
  mount9p work "/newroot$labwork" rw || die "cannot mount work share at $labwork"
fi
# labmods=1 (a kernel the lab unpacked): its modules come from the share tagged mods, over
# the host's /lib/modules, whose other kernels this guest has no use for.
if [ "$labmods" = 1 ]; then
  mount9p mods /newroot/lib/modules ro,cache=loose || die "cannot mount the kernel's modules (tag mods)"
fi
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t debugfs debugfs /sys/kernel/debug
mount -t tracefs tracefs /sys/kernel/tracing
# MS_MOVE carries the submounts (devpts, debugfs, tracefs) along.
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
mount --move /dev /newroot/dev
echo "LAB-INIT: switch_root to ${labinit:-/sbin/init}"
exec switch_root /newroot ${labinit:-/sbin/init}
INIT
chmod +x "$tmp/init"

mkdir -p "$(dirname "$OUT")"
# Write aside and rename: another lab run may be booting from OUT right now.
(cd "$tmp" && rm modlist && find . | cpio -o -H newc --quiet | gzip -1) > "$OUT.tmp$$"
mv "$OUT.tmp$$" "$OUT"
