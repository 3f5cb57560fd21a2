#!/usr/bin/env python3
"""make bench, VMware part: figures, not pass/fail.

Hypercalls per GiB inflated by the VMware backend, for each capability set,
counted by the host model in a test build: all commands, and the LOCK and
UNLOCK commands apart from the once-a-second GET_TARGET polls. The virtio comparison with the
in-tree driver is bench_virtio.py.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_vmware  # noqa: E402 - its VMware helpers
from lab import Guest, build_module, kernels  # noqa: E402

MIB = 512           # inflated per run; the guest has 1 GiB
CAPSETS = check_vmware.CAPSETS + (("basic+batched+2m+doorbell", 0x3e),)


def main():
    rows = []
    for kver in kernels():
        ko = build_module(kver, test_build=True)
        with Guest(kver, mem_mb=1024, name=f"bench-vmware-{kver}") as g:
            check_vmware.t_vm_load(g, ko)
            for name, caps in CAPSETS:
                check_vmware.vm_reset_to(g, caps)
                rows.append((kver, name, *check_vmware.vm_round_trip(g, MIB, timeout=600)))
    print(f"\nVMware backend, host model, {MIB} MiB inflated then deflated per run; "
          "commands: all of the inflation's, GET_TARGET polls included")
    print(f"{'kernel':<24} {'capabilities':<28} {'commands':>9} {'LOCK/GiB':>9} "
          f"{'UNLOCK/GiB':>10} {'time':>7}")
    for kver, name, calls, locks, unlocks, took in rows:
        print(f"{kver:<24} {name:<28} {calls:>9} {locks * 1024 // MIB:>9} "
              f"{unlocks * 1024 // MIB:>10} {took:>6.1f}s")


if __name__ == "__main__":
    main()
