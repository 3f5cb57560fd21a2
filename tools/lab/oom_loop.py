#!/usr/bin/env python3
"""The OOM scenarios alone, repeated: a fresh 1 GiB guest per run, the host asks
for an 800 MiB balloon, then a process touches 600 MiB. Virtio (QEMU, deflate-on-
oom) and VMware (the host model, test build), on every lab kernel, two guests at a
time. Each run prints its time, OOM kills and stall reports; the last lines give
the spread per kernel and backend.

    tools/lab/oom_loop.py [RUNS]      (LAB_KERNELS picks kernels, LAB_LANES guests at a time)
"""
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lab import GUEST_MB, MiB, Guest, build_module, kernels  # noqa: E402
from check_virtio import fill_for_oom, hog_gets_memory, load  # noqa: E402 (the suites' own helpers)
from stalls import stall_reports  # noqa: E402
from check_vmware import model_audit, model_set  # noqa: E402


def one(kver, backend, ko, n):
    opts = "deflate-on-oom=on,disable-modern=on" if backend == "virtio" else ""
    with Guest(kver, mem_mb=GUEST_MB, balloon_opts=opts, name=f"oomloop-{backend}-{n}-{kver}") as g:
        if backend == "virtio":
            load(g, ko)
            held = fill_for_oom(g, 800, lambda: g.qmp("balloon", value=GUEST_MB * MiB - 800 * MiB),
                                lambda size: g.actual() == GUEST_MB * MiB - size)
        else:
            g.run(f"insmod {ko} backend=vmware")
            assert g.sysb("backend") == "vmware"
            held = fill_for_oom(g, 800, lambda: model_set(g, "target", 800 * 256),
                                lambda size: model_audit(g)["locked_frames"] == size // 4096)
        out, took = hog_gets_memory(g)
        stalls = [r[0] for r in stall_reports(g.console())]
        return took, held, out.strip(), stalls


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    kvers = os.environ.get("LAB_KERNELS", "").split() or kernels()
    jobs = []
    for kver in kvers:
        kos = {"virtio": build_module(kver, tree="mod-oomloop"),
               "vmware": build_module(kver, test_build=True, tree="mod-oomloop-test")}
        for n in range(runs):
            for backend in ("virtio", "vmware"):
                jobs.append((kver, backend, kos[backend], n))
    results, lock = {}, threading.Lock()

    def lane(mine):
        for kver, backend, ko, n in mine:
            t0 = time.monotonic()
            try:
                took, held, out, stalls = one(kver, backend, ko, n)
                line = (f"{kver} {backend} run {n + 1}: {took:.1f} s, balloon {held >> 20} MiB, "
                        f"{len(stalls)} stall report(s); {out}")
            except Exception as e:  # noqa: BLE001
                took, line = None, f"{kver} {backend} run {n + 1}: FAILED {str(e)[:300]}"
            with lock:
                results.setdefault((kver, backend), []).append(took)
                print(f"{line} [{time.monotonic() - t0:.0f} s wall]", flush=True)

    n = int(os.environ.get("LAB_LANES", "2"))
    lanes = [threading.Thread(target=lane, args=(jobs[i::n],)) for i in range(n)]
    for t in lanes:
        t.start()
    for t in lanes:
        t.join()
    for (kver, backend), times in sorted(results.items()):
        ok = [t for t in times if t is not None]
        print(f"{kver} {backend}: {len(ok)} of {len(times)} runs finished; "
              + (f"median {statistics.median(ok):.1f} s, min {min(ok):.1f} s, max {max(ok):.1f} s, "
                 f"over 60 s: {sum(t > 60 for t in ok)}" if ok else "none"))


if __name__ == "__main__":
    main()
