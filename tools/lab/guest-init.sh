#!/bin/bash
# First process in the guest after switch_root (PID 1), running from the host's root filesystem.
# The initramfs already mounted /proc /sys /dev (+pts, shm), debugfs, tracefs, the tmpfs dirs and
# the project share. Here: finish a usable userland environment, then become the agent.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=dumb LANG=C.UTF-8 SHELL=/bin/bash
cd /

# devtmpfs lacks these links; bash process substitution and many scripts need them.
ln -sfn /proc/self/fd /dev/fd
ln -sfn /proc/self/fd/0 /dev/stdin
ln -sfn /proc/self/fd/1 /dev/stdout
ln -sfn /proc/self/fd/2 /dev/stderr
# cgroup2 and bpffs: cheap, and some tools (bpftool, systemd-run-ish helpers) expect them.
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
hostname lab-guest
ip link set lo up 2>/dev/null

# labudev=1 on the kernel command line (Guest(udev=True)): run the host's udev, which loads
# modules by modalias as at a real boot (coldplug). Under TCG the queue takes 20-30 s to drain
# (drm, kvm, ata...): the agent starts at once and the test waits with `udevadm settle`.
if [ "${labudev:-0}" = 1 ]; then
	/lib/systemd/systemd-udevd --daemon --resolve-names=never
	udevadm trigger --type=subsystems --action=add
	udevadm trigger --type=devices --action=add
	echo "LAB-GUEST: udev started, coldplug triggered at $(cut -d' ' -f1 /proc/uptime)s"
fi

echo "LAB-GUEST: $(uname -r) up $(cut -d' ' -f1 /proc/uptime)s, starting agent"
# Debian's python3 (the host's /root/.pyenv is hidden under the guest's tmpfs /root anyway).
exec /usr/bin/python3 "$(dirname "$(readlink -f "$0")")/agent.py"
