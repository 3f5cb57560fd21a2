#!/usr/bin/env python3
"""Smoke test of the lab itself, with the IN-TREE virtio_balloon driver.

For each kernel from kernels.sh: boot a 1024 MiB guest, modprobe virtio_balloon, inflate to
768 MiB guest memory, wait for QEMU's view (query-balloon actual) and the guest's view (MemTotal
drops by 256 MiB: without deflate-on-oom the driver takes the pages out of MemTotal), then
deflate back to 1024 MiB the same way. Prints timings; exit code 0 only if every kernel passed.
"""
import sys
import time

import lab

FULL, TARGET = 1024, 768          # MiB
MiB = lab.MiB


def balloon_to(g, mib, memtotal_kb, timeout=60):
    """Ask for `mib` MiB of guest memory; wait until QEMU and the guest agree. Returns seconds."""
    t0 = time.monotonic()
    g.qmp("balloon", value=mib * MiB)
    g.wait_for(lambda: g.actual() == mib * MiB, timeout,
               what=f"query-balloon actual == {mib} MiB")
    g.wait_for(lambda: g.meminfo()["MemTotal"] == memtotal_kb, timeout,
               what=f"guest MemTotal == {memtotal_kb} kB")
    return time.monotonic() - t0


def smoke(kver):
    with lab.Guest(kver, mem_mb=FULL, name=f"smoke-{kver}") as g:
        print(f"{kver}: boot {g.boot_seconds:.1f} s (QEMU start -> agent answers)", flush=True)
        t0 = time.monotonic()
        g.run("modprobe virtio_balloon")
        # No udev in the guest: modprobe loads the driver and the driver binds at load time.
        g.wait_for(lambda: g.run("ls /sys/bus/virtio/drivers/virtio_balloon/ | grep -q virtio",
                                 check=False)[0] == 0, 30, what="virtio_balloon bound")
        print(f"{kver}: modprobe+bind {time.monotonic() - t0:.1f} s", flush=True)
        full_kb = g.meminfo()["MemTotal"]
        inflate = balloon_to(g, TARGET, full_kb - (FULL - TARGET) * 1024)
        rss = g.qemu_rss_kb() // 1024
        print(f"{kver}: inflate {FULL}->{TARGET} MiB {inflate:.1f} s (QEMU RSS {rss} MiB)", flush=True)
        deflate = balloon_to(g, FULL, full_kb)
        print(f"{kver}: deflate {TARGET}->{FULL} MiB {deflate:.1f} s", flush=True)
        t0 = time.monotonic()
    print(f"{kver}: stop {time.monotonic() - t0:.1f} s; OK", flush=True)


def main():
    failed = []
    for kver in lab.kernels():
        try:
            smoke(kver)
        except Exception as e:
            print(f"{kver}: FAIL: {e}", flush=True)
            failed.append(kver)
    print("smoke: " + ("FAILED " + " ".join(failed) if failed else "all kernels OK"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
