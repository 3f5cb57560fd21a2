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

echo "LAB-GUEST: $(uname -r) up $(cut -d' ' -f1 /proc/uptime)s, starting agent"
# Debian's python3 (the host's /root/.pyenv is hidden under the guest's tmpfs /root anyway).
exec /usr/bin/python3 "$(dirname "$(readlink -f "$0")")/agent.py"
