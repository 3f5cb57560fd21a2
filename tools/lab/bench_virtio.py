#!/usr/bin/env python3
"""make bench, virtio part: the in-tree virtio_balloon against uniballoon.

Both drivers run on the same QEMU configuration (a 2 GiB TCG guest, -smp 1,
virtio-balloon-pci with deflate-on-oom=on), alternately, in fresh guests,
BENCH_ROUNDS times (default 3), in two guest configurations:
  - Debian's default, init_on_alloc=1: the allocator zeroes every page the
    balloon takes, which TCG emulates at about 150 MB/s (rep stosb, byte by
    byte): zeroing is then most of both drivers' time;
  - init_on_alloc=0: zeroing out of the way (on hardware it costs about
    0.1 s per GiB), so the drivers' own costs show.
Per round and driver:
  - inflate 1 GiB: QMP `balloon` until `query-balloon` reports it;
  - deflate back to 0 the same way;
  - guest CPU time of the kernel workers (kworker threads: both drivers do
    their work there) per GiB, inflate plus deflate;
  - the OOM scenario (Debian's default only): balloon at 1536 MiB, a process
    touches 600 MiB; the time it takes and the OOM kills;
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
from lab import MiB, Guest, GuestError, build_module, kernels, wait_for  # noqa: E402

GUEST_MB = 2048
GIB = 1024 * MiB
OOM_BALLOON = 1536 * MiB
OOM_TIMEOUT = 200
CONFIGS = (("Debian's default (init_on_alloc=1)", "", True),
           ("init_on_alloc=0", "init_on_alloc=0", False))

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

# a CPU-bound loop until /tmp/work.stop appears; prints loops per second
WORKLOAD = ("rm -f /tmp/work.stop; python3 -c 'import os, time\n"
            "t0 = time.monotonic(); n = 0\n"
            "while not os.path.exists(\"/tmp/work.stop\"):\n"
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


def workload_rate(g, action):
    """Loops per second of WORKLOAD while action() runs."""
    g.run(WORKLOAD)
    action()
    g.run("touch /tmp/work.stop; while kill -0 $(cat /tmp/work.pid) 2>/dev/null; do sleep 0.1; done",
          timeout=60)
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


def stage(what):
    print(f"#   {time.strftime('%H:%M:%S')} {what}", file=sys.stderr, flush=True)


def one_round(kver, driver, ko, rnd, append, oom):
    r = {}
    stage(f"round {rnd}: {driver}: boot {append}")
    with Guest(kver, mem_mb=GUEST_MB, balloon_opts="deflate-on-oom=on", append=append,
               name=f"bench-{driver}-{kver}") as g:
        load(g, driver, ko)
        g.run("sync; echo 3 > /proc/sys/vm/drop_caches")
        c0 = kworker_cpu(g)
        stage("inflate and deflate 1 GiB")
        r["inflate"] = host_balloon(g, GIB)
        c1 = kworker_cpu(g)
        r["deflate"] = host_balloon(g, 0)
        c2 = kworker_cpu(g)
        r["cpu_inflate"] = c1 - c0
        r["cpu_deflate"] = c2 - c1
        # the guest's own work: quiet, then while 1 GiB is inflated
        stage("workload")
        quiet = workload_rate(g, lambda: time.sleep(3))
        busy = workload_rate(g, lambda: host_balloon(g, GIB))
        r["workload"] = busy / quiet
        host_balloon(g, 0)
        if oom:
            stage("OOM scenario")
            r.update(oom_scenario(g))
    print(f"# round {rnd} {driver:<10} " + json.dumps({k: round(v, 3) if isinstance(v, float) else v
                                                      for k, v in r.items()}), flush=True)
    return r


def oom_scenario(g):
    """Balloon at OOM_BALLOON, then a process touches 600 MiB."""
    host_balloon(g, OOM_BALLOON)
    k0 = oom_kills(g)
    t0 = time.monotonic()
    try:
        rc, _ = g.run(HOG, timeout=OOM_TIMEOUT, check=False)
    except GuestError:
        # a guest thrashing so hard that its agent cannot answer: the
        # process did not finish in time; the guest is thrown away
        return {"oom_time": time.monotonic() - t0, "oom_ok": False, "oom_kills": None, "oom_wedged": True}
    return {"oom_time": time.monotonic() - t0, "oom_ok": rc == 0, "oom_kills": oom_kills(g) - k0}


ROWS = (("inflate 1 GiB (s)", "inflate", "lower"),
        ("deflate 1 GiB (s)", "deflate", "lower"),
        ("worker CPU per GiB inflated (s)", "cpu_inflate", "lower"),
        ("worker CPU per GiB deflated (s)", "cpu_deflate", "lower"),
        ("OOM scenario: 600 MiB touched (s)", "oom_time", "lower"),
        ("OOM scenario: OOM kills (total)", "oom_kills", "sum"),
        ("guest workload speed while inflating", "workload", "higher"))
# workload: loops per second of a CPU-bound process while 1 GiB inflates,
# relative to the same loop on the quiet guest (1.00: no slowdown)


def table(title, res, rounds):
    print(f"\n{title}, medians of {rounds} rounds")
    print(f"{'':<40} {'in-tree':>9} {'uniballoon':>11} {'ours/in-tree':>13}")
    for label, key, kind in ROWS:
        if key not in res["in-tree"][0]:
            continue
        vals = {d: [x[key] for x in res[d]] for d in res}
        if kind == "sum":    # None: not known (the guest stopped answering)
            a, b = (sum(v for v in vals[d] if v is not None) for d in ("in-tree", "uniballoon"))
            print(f"{label:<40} {a:>9} {b:>11}")
            continue
        a, b = statistics.median(vals["in-tree"]), statistics.median(vals["uniballoon"])
        ratio = b / a if a else float("inf")
        speed = f"({1 / ratio:.1f}x faster)" if kind == "lower" and ratio < 1 else ""
        if key == "oom_time" and any(not x["oom_ok"] for x in res["in-tree"]):
            speed = f"(at least {1 / ratio:.1f}x: in-tree runs stopped at the deadline)"
        print(f"{label:<40} {a:>9.2f} {b:>11.2f} {ratio:>13.2f} {speed}")
    if "oom_ok" in res["in-tree"][0]:
        fails = {d: sum(not x["oom_ok"] for x in res[d]) for d in res}
        print(f"{f'OOM scenario: runs over {OOM_TIMEOUT} s':<40} {fails['in-tree']:>9} {fails['uniballoon']:>11}")
        wedged = {d: sum(bool(x.get("oom_wedged")) for x in res[d]) for d in res}
        print(f"{'  of which the guest stopped answering':<40} {wedged['in-tree']:>9} {wedged['uniballoon']:>11}")
    sys.stdout.flush()


def main():
    kvers = os.environ.get("BENCH_KERNELS", "").split() or kernels()[-1:]
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    only = os.environ.get("BENCH_CONFIG")          # "0" or "1": one configuration only
    print(f"# machine: {os.cpu_count()} CPUs, {os.uname().release}; guests: {GUEST_MB} MiB, TCG, -smp 1, "
          "virtio-balloon-pci,deflate-on-oom=on", flush=True)
    for kver in kvers:
        ko = build_module(kver)
        for i, (title, append, oom) in enumerate(CONFIGS):
            if only is not None and str(i) != only:
                continue
            res = {"in-tree": [], "uniballoon": []}
            for rnd in range(1, rounds + 1):
                for driver in ("in-tree", "uniballoon"):
                    res[driver].append(one_round(kver, driver, ko, rnd, append, oom))
            table(f"virtio-balloon, guest kernel {kver}, {title}", res, rounds)


if __name__ == "__main__":
    main()
