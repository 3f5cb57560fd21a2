#!/usr/bin/env python3
"""make bench, virtio part: the in-tree virtio_balloon against uniballoon.

Both drivers run on the same QEMU configuration (a 2 GiB TCG guest, -smp 1,
virtio-balloon-pci with deflate-on-oom=on), alternately, in fresh guests,
BENCH_ROUNDS times (default 3). Per round and driver:
  - inflate 1 GiB: QMP `balloon` until `query-balloon` reports it;
  - deflate back to 0 the same way;
  - guest CPU time of the kernel workers (kworker threads: both drivers do
    their work there) per GiB, inflate plus deflate;
  - the OOM scenario: balloon at 1536 MiB, a process touches 600 MiB; the time
    it takes and the OOM kills;
  - the guest's own workload while the balloon inflates 1 GiB: a CPU loop's
    speed compared with the same loop on a quiet guest.
Prints a table of medians and the ratio uniballoon / in-tree.
"""
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lab import MiB, Guest, build_module, kernels, wait_for  # noqa: E402

GUEST_MB = 2048
GIB = 1024 * MiB
OOM_BALLOON = 1536 * MiB
OOM_TIMEOUT = 300

# CPU seconds of all kworker threads (utime + stime), from /proc
KWORKER_CPU = ("python3 -c 'import glob, os\n"
               "t = 0\n"
               "for f in glob.glob(\"/proc/[0-9]*/task/[0-9]*/stat\"):\n"
               "    try:\n        s = open(f).read()\n    except OSError:\n        continue\n"
               "    comm, rest = s[s.index(\"(\") + 1:s.rindex(\")\")], s[s.rindex(\")\") + 2:].split()\n"
               "    if comm.startswith(\"kworker\"):\n        t += int(rest[11]) + int(rest[12])\n"
               "print(t / os.sysconf(\"SC_CLK_TCK\"))'")

HOG = ("echo -1000 > /proc/$PPID/oom_score_adj; "
       "python3 -c 'import mmap\n"
       "open(\"/proc/self/oom_score_adj\", \"w\").write(\"1000\")\n"
       "n = 600 << 20\nm = mmap.mmap(-1, n)\n"
       "for i in range(0, n, 4096): m[i] = 1'")

# a CPU-bound loop; prints loops per second over its run
WORKLOAD = ("python3 -c 'import time\n"
            "t0 = time.monotonic(); n = 0\n"
            "while time.monotonic() - t0 < {secs}:\n"
            "    for i in range(2000): pass\n    n += 1\n"
            "print(n / (time.monotonic() - t0))' > /tmp/work.out 2>&1 & echo $! > /tmp/work.pid")


def actual(g):
    return g.qmp("query-balloon")["actual"]


def host_balloon(g, balloon_bytes, timeout=300):
    """Ask for a balloon of balloon_bytes; seconds until query-balloon agrees."""
    want = GUEST_MB * MiB - balloon_bytes
    t0 = time.monotonic()
    g.qmp("balloon", value=want)
    wait_for(lambda: actual(g) == want, timeout, interval=0.02,
             what=f"actual {want >> 20} MiB")
    return time.monotonic() - t0


def kworker_cpu(g):
    return float(g.run(KWORKER_CPU)[1])


def oom_kills(g):
    return int(g.run("awk '$1 == \"oom_kill\" { print $2 }' /proc/vmstat")[1].strip() or 0)


def workload_rate(g, secs, during=None):
    """Loops per second of WORKLOAD over secs, while during() runs (if given)."""
    g.run(WORKLOAD.format(secs=secs))
    if during:
        during()
    g.run("while kill -0 $(cat /tmp/work.pid) 2>/dev/null; do sleep 0.1; done", timeout=secs + 60)
    return float(g.run("cat /tmp/work.out")[1])


def load(g, driver, ko):
    if driver == "in-tree":
        g.run("modprobe virtio_balloon")
        wait_for(lambda: "virtio_balloon" in g.run("readlink /sys/bus/virtio/devices/*/driver", check=False)[1],
                 30, what="virtio_balloon bound")
    else:
        g.run(f"insmod {ko}")
        wait_for(lambda: g.run("cat /sys/kernel/balloon/backend")[1].strip() == "virtio", 30,
                 what="uniballoon bound")


def one_round(kver, driver, ko, rnd):
    r = {}
    with Guest(kver, mem_mb=GUEST_MB, balloon_opts="deflate-on-oom=on",
               name=f"bench-{driver}-{kver}") as g:
        load(g, driver, ko)
        g.run("sync; echo 3 > /proc/sys/vm/drop_caches")
        c0 = kworker_cpu(g)
        r["inflate"] = host_balloon(g, GIB)
        c1 = kworker_cpu(g)
        r["deflate"] = host_balloon(g, 0)
        c2 = kworker_cpu(g)
        r["cpu_inflate"] = c1 - c0
        r["cpu_deflate"] = c2 - c1
        # the guest's own work, quiet and while 1 GiB is inflated
        quiet = workload_rate(g, 4)
        busy = workload_rate(g, 4, during=lambda: g.qmp("balloon", value=GUEST_MB * MiB - GIB))
        wait_for(lambda: actual(g) == GUEST_MB * MiB - GIB, 300, what="1 GiB inflated")
        r["workload"] = busy / quiet
        host_balloon(g, 0)
        # OOM scenario
        host_balloon(g, OOM_BALLOON)
        k0 = oom_kills(g)
        t0 = time.monotonic()
        rc, _ = g.run(HOG, timeout=OOM_TIMEOUT, check=False)
        r["oom_time"] = time.monotonic() - t0
        r["oom_ok"] = rc == 0
        r["oom_kills"] = oom_kills(g) - k0
    print(f"# round {rnd} {driver:<10} " + json.dumps({k: round(v, 3) if isinstance(v, float) else v
                                                      for k, v in r.items()}), flush=True)
    return r


ROWS = (("inflate 1 GiB (s)", "inflate", "lower"),
        ("deflate 1 GiB (s)", "deflate", "lower"),
        ("worker CPU per GiB inflated (s)", "cpu_inflate", "lower"),
        ("worker CPU per GiB deflated (s)", "cpu_deflate", "lower"),
        ("OOM scenario: 600 MiB touched (s)", "oom_time", "lower"),
        ("OOM scenario: OOM kills (total)", "oom_kills", "sum"),
        ("guest workload speed while inflating", "workload", "higher"))


def main():
    kvers = os.environ.get("BENCH_KERNELS", "").split() or kernels()[-1:]
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    print(f"# machine: {os.cpu_count()} CPUs, {os.uname().release}; guests: {GUEST_MB} MiB, TCG, -smp 1, "
          "virtio-balloon-pci,deflate-on-oom=on", flush=True)
    for kver in kvers:
        ko = build_module(kver)
        res = {"in-tree": [], "uniballoon": []}
        for rnd in range(1, rounds + 1):
            for driver in ("in-tree", "uniballoon"):
                res[driver].append(one_round(kver, driver, ko, rnd))
        print(f"\nvirtio-balloon, guest kernel {kver}, medians of {rounds} rounds")
        print(f"{'':<40} {'in-tree':>9} {'uniballoon':>11} {'ours/in-tree':>13}")
        for label, key, kind in ROWS:
            vals = {d: [x[key] for x in res[d]] for d in res}
            if kind == "sum":
                a, b = sum(vals["in-tree"]), sum(vals["uniballoon"])
                print(f"{label:<40} {a:>9} {b:>11}")
                continue
            a, b = statistics.median(vals["in-tree"]), statistics.median(vals["uniballoon"])
            ratio = b / a if a else float("inf")
            speed = f"({1 / ratio:.1f}x faster)" if kind == "lower" and ratio < 1 else ""
            print(f"{label:<40} {a:>9.2f} {b:>11.2f} {ratio:>13.2f} {speed}")
        fails = {d: sum(not x["oom_ok"] for x in res[d]) for d in res}
        print(f"{'OOM scenario: runs that did not finish':<40} {fails['in-tree']:>9} {fails['uniballoon']:>11}",
              flush=True)


if __name__ == "__main__":
    main()
