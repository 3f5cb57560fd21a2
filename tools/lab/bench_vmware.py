#!/usr/bin/env python3
"""make bench, VMware part: figures, not pass/fail.

Hypercalls per GiB inflated by the VMware backend, for each capability set,
counted by the host model in a test build. The virtio comparison with the
in-tree driver is bench_virtio.py.
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check  # noqa: E402 - its VMware helpers
from lab import Guest, build_module, kernels  # noqa: E402

MIB = 512           # inflated per run; the guest has 1 GiB
CAPSETS = check.CAPSETS + (("basic+batched+2m+doorbell", 0x3e),)


def main():
    rows = []
    for kver in kernels():
        ko = build_module(kver, test_build=True)
        with Guest(kver, mem_mb=1024, name=f"bench-vmware-{kver}") as g:
            check.t_vm_load(g, ko)
            for name, caps in CAPSETS:
                check.vm_reset_to(g, caps)
                c0 = check.model_audit(g)["commands"]
                t0 = time.monotonic()
                check.vm_balloon(g, MIB, timeout=600)
                took = time.monotonic() - t0
                calls = check.model_audit(g)["commands"] - c0
                check.vm_balloon(g, 0, timeout=600)
                rows.append((kver, name, calls, calls * 1024 // MIB, took))
    print(f"\nVMware backend, host model, {MIB} MiB inflated per run "
          "(commands include the once-a-second GET_TARGET polls)")
    print(f"{'kernel':<24} {'capabilities':<28} {'commands':>9} {'per GiB':>9} {'time':>7}")
    base = {}
    for kver, name, calls, per_gib, took in rows:
        base.setdefault(kver, per_gib)
        print(f"{kver:<24} {name:<28} {calls:>9} {per_gib:>9} {took:>6.1f}s"
              f"  ({base[kver] / max(per_gib, 1):.0f}x fewer than basic)")


if __name__ == "__main__":
    main()
