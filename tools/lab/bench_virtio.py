#!/usr/bin/env python3
"""make bench, virtio part: cost curves of the in-tree virtio_balloon and uniballoon.

Both drivers run on the same QEMU configuration (TCG, -smp 1, -cpu max,-erms,
virtio-balloon-pci with deflate-on-oom=on), alternately, each in a fresh guest,
BENCH_ROUNDS times (default 3), in two guest configurations:
  - Debian's default, init_on_alloc=1: the allocator zeroes every page the
    balloon takes (in these guests with `rep stosq`, see lab.QEMU_CPU), so
    zeroing is much of both drivers' inflation time;
  - init_on_alloc=0: zeroing out of the way, so the drivers' own costs show.

Per round and driver, one CURVE_MB guest (6 GiB):
  - prime: a process faults in all but 256 MiB of the free memory once and
    exits, so that no timed step pays for the host's first touch of a guest
    frame (QEMU allocates and zeroes guest RAM on first use, which costs
    more than the guest's own zeroing: in a smoke run, faulting in 1 GiB took
    4.1 s on frames never touched and 0.7 s right after on the same frames);
  - the limit, before any ballooning: for each size, a process faults in that
    much private anonymous memory, timed inside the guest, in 4 KiB pages
    (MAP_POPULATE) and in 2 MiB pages (MADV_HUGEPAGE, MADV_POPULATE_WRITE: one
    fault per 2 MiB, as a balloon taking 2 MiB blocks); the limit is the
    faster of the two: the least this guest needs to hand out that much
    zeroed memory without a balloon;
  - for each size (BENCH_SIZES, default 256M,1G,2G,4G): inflate to it (QMP
    `balloon` until `query-balloon` agrees, polled every 5 ms), the kworker CPU
    time, deflate back to 0 the same way; then inflate it again with a CPU-bound
    process running (the guest's workload) and deflate;
  - the workload's speed during inflation: the process stamps the guest's
    clock after every 1000 loop iterations; the host's inflation window is
    mapped onto the guest's clock (offset from the quickest of 15 agent
    pings, answered without a process), and the loop rate inside it is
    divided by the rate of the same process in the quiet seconds before. A
    window so short that the edges' uncertainty could move the ratio by more
    than 0.1 is reported as too short to measure.
The OOM scenarios (Debian's default only; BENCH_OOM, default small,large):
  - small: a 2 GiB guest, balloon 1536 MiB, a process touches 600 MiB;
  - large: an 8 GiB guest, balloon 6 GiB, a process touches 3 GiB;
  time until the process is done (deadline BENCH_OOM_DEADLINE s, default 200
  for small, 600 for large) and OOM kills.

Prints Markdown tables (medians, min-max) and where each goal of issue 13
stands; writes them to build/bench/curves.md and every figure to
build/bench/results.json (bench_plot.py draws build/bench/curves.png from it).
"""
import array
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lab import MiB, PROJECT, Guest, GuestError, build_module, kernels, wait_for  # noqa: E402

OUT = PROJECT / "build" / "bench"
CURVE_MB = 6144
POLL = 0.005                  # QMP query-balloon polling interval during a timed resize
CONFIGS = (("Debian's default (init_on_alloc=1)", "", True),
           ("init_on_alloc=0", "init_on_alloc=0", False))
# name: guest MiB, balloon MiB, MiB touched, default deadline (s)
OOM_SCENARIOS = {"small": (2048, 1536, 600, 200), "large": (8192, 6144, 3072, 600)}
WORK_MAX_ERR = 0.1            # largest uncertainty of a workload ratio that is still reported

# CPU seconds of all kworker threads (utime + stime), from /proc
KWORKER_CPU = ("python3 -c 'import glob, os\n"
               "t = 0\n"
               "for f in glob.glob(\"/proc/[0-9]*/task/[0-9]*/stat\"):\n"
               "    try:\n        s = open(f).read()\n    except OSError:\n        continue\n"
               "    comm, rest = s[s.index(\"(\") + 1:s.rindex(\")\")], s[s.rindex(\")\") + 2:].split()\n"
               "    if comm.startswith(\"kworker\"):\n        t += int(rest[11]) + int(rest[12])\n"
               "print(t / os.sysconf(\"SC_CLK_TCK\"))'")

# seconds to fault in and zero N bytes of private anonymous memory, 4 KiB pages
LIMIT_4K = ("python3 -c 'import mmap, sys, time\n"
            "t = time.monotonic()\n"
            "m = mmap.mmap(-1, int(sys.argv[1]), flags=mmap.MAP_PRIVATE | mmap.MAP_POPULATE)\n"
            "print(time.monotonic() - t)' {n}")
# Before anything is timed, a process faults in all but 256 MiB of the guest's
# free memory once: the first touch of a guest frame also costs the host
# (QEMU's RAM is allocated, and zeroed, on first use), about as much as the
# guest's own zeroing; whatever touched a frame first would pay for it. Prints
# the seconds it took.
PRIME = ("python3 -c 'import mmap, time\n"
         "free = [int(l.split()[1]) for l in open(\"/proc/meminfo\") if l.startswith(\"MemFree:\")][0]\n"
         "t = time.monotonic()\n"
         "m = mmap.mmap(-1, (free << 10) - (256 << 20), flags=mmap.MAP_PRIVATE | mmap.MAP_POPULATE)\n"
         "print(time.monotonic() - t)'")
# the same in 2 MiB pages (MADV_HUGEPAGE, then MADV_POPULATE_WRITE = 23): one
# fault per 2 MiB, as a balloon taking 2 MiB blocks; prints the seconds and the
# fraction of the memory in huge pages. On warm frames (see PRIME) a smoke run
# found it slower than 4 KiB pages (0.56 s against 0.38 s for 1 GiB): the limit
# is the faster of the two.
LIMIT_2M = ("python3 -c 'import mmap, sys, time\n"
            "n = int(sys.argv[1])\n"
            "m = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE)\n"
            "m.madvise(mmap.MADV_HUGEPAGE)\n"
            "t = time.monotonic()\n"
            "m.madvise(23)\n"
            "d = time.monotonic() - t\n"
            "h = [l for l in open(\"/proc/self/smaps_rollup\") if l.startswith(\"AnonHugePages:\")]\n"
            "print(d, int(h[0].split()[1]) * 1024 / n)' {n}")

# the process to be OOM-protected by the balloon: touches {mib} MiB of shared anonymous memory
HOG = ("echo -1000 > /proc/$PPID/oom_score_adj; "
       "python3 -c 'import mmap\n"
       "open(\"/proc/self/oom_score_adj\", \"w\").write(\"1000\")\n"
       "n = {mib} << 20\nm = mmap.mmap(-1, n)\n"
       "for i in range(0, n, 4096): m[i] = 1'")

# a CPU-bound loop that stamps the guest's clock (time.time) after every
# 1000 iterations until /tmp/work.stop appears; the stamps go to {out}
WORKLOAD = ("rm -f /tmp/work.stop; python3 -c 'import array, os, time\n"
            "ts = array.array(\"d\"); t = time.time; n = 0\n"
            "while True:\n"
            "    for i in range(1000): pass\n"
            "    ts.append(t()); n += 1\n"
            "    if n % 128 == 0 and os.path.exists(\"/tmp/work.stop\"): break\n"
            "open(\"{out}\", \"wb\").write(ts.tobytes())' > /tmp/work.log 2>&1 & echo $! > /tmp/work.pid")


def parse_size(s):
    s = s.strip().upper().rstrip("B").rstrip("I")
    mult = {"K": 1 << 10, "M": MiB, "G": 1 << 30}.get(s[-1:], None)
    return int(float(s[:-1]) * mult) if mult else int(s)


def fmt_size(n):
    return f"{n >> 30} GiB" if n >= 1 << 30 and n % (1 << 30) == 0 else f"{n >> 20} MiB"


def host_balloon(g, mem_mb, balloon_bytes, timeout=600):
    """Ask for a balloon of balloon_bytes; seconds until query-balloon agrees."""
    want = mem_mb * MiB - balloon_bytes
    t0 = time.monotonic()
    g.qmp("balloon", value=want)
    wait_for(lambda: g.actual() == want, timeout, interval=POLL, what=f"actual {want >> 20} MiB")
    return time.monotonic() - t0


def host_balloon_settled(g, mem_mb, balloon_bytes, timeout=600, still=5):
    """Ask for balloon_bytes; return the balloon held once query-balloon agrees, or
    once it has not moved for `still` seconds (a driver that keeps a reserve)."""
    want = mem_mb * MiB - balloon_bytes
    g.qmp("balloon", value=want)
    last, since = None, time.monotonic()
    deadline = since + timeout
    while time.monotonic() < deadline:
        a = g.actual()
        if a == want:
            break
        if a != last:
            last, since = a, time.monotonic()
        elif time.monotonic() - since >= still:
            break
        time.sleep(0.2)
    return mem_mb * MiB - g.actual()


def kworker_cpu(g):
    return float(g.run(KWORKER_CPU)[1])


def clock_offset(g, tries=15):
    """Guest realtime minus host realtime, from the quickest of `tries` agent
    pings (answered without a process); returns (offset, uncertainty): half
    that round trip."""
    best = None
    for _ in range(tries):
        h0, guest, h1 = g.guest_clock()
        if best is None or h1 - h0 < best[1] * 2:
            best = (guest - (h0 + h1) / 2, (h1 - h0) / 2)
    return best


def workload_during(g, mem_mb, size, tag):
    """The workload's loop rate while `size` inflates, relative to its rate in
    the quiet seconds before; None if the window is too short to measure."""
    stamps_file = OUT / f"work-{tag}.bin"
    stamps_file.unlink(missing_ok=True)
    off, unc = clock_offset(g)
    g.run(WORKLOAD.format(out=stamps_file))
    time.sleep(4.0)                                   # start-up, then the quiet window
    h0 = time.time()
    host_balloon(g, mem_mb, size)
    h1 = time.time()
    time.sleep(0.3)
    g.run("touch /tmp/work.stop; while kill -0 $(cat /tmp/work.pid) 2>/dev/null; do sleep 0.1; done",
          timeout=60)
    off2, unc2 = clock_offset(g)
    host_balloon(g, mem_mb, 0)
    ts = array.array("d")
    ts.frombytes(stamps_file.read_bytes())
    stamps_file.unlink(missing_ok=True)
    if unc2 < unc:
        off, unc = off2, unc2
    g0, g1 = h0 + off, h1 + off                       # the inflation window on the guest's clock
    quiet = [t for t in ts if ts[0] + 1.0 <= t <= g0 - unc]
    busy = sum(1 for t in ts if g0 <= t <= g1)
    if len(quiet) < 2:
        return {"work_err": None, "work_window": h1 - h0}
    quiet_rate = (len(quiet) - 1) / (quiet[-1] - quiet[0])
    window = g1 - g0
    # each edge is known to within unc (clock offset) + POLL (the host's polling)
    # + one loop chunk; at most quiet_rate chunks a second can fall in that slack
    edge = unc + POLL + 1 / quiet_rate
    err = 2 * edge / window
    r = {"work_window": window, "work_err": err, "work_quiet_rate": quiet_rate}
    if err <= WORK_MAX_ERR:
        r["workload"] = busy / window / quiet_rate
    return r


def load(g, driver, ko):
    if driver == "in-tree":
        g.run("modprobe virtio_balloon")
        wait_for(lambda: "virtio_balloon" in g.run("readlink /sys/bus/virtio/devices/*/driver", check=False)[1],
                 30, what="virtio_balloon bound")
    else:
        g.run(f"insmod {ko}")
        wait_for(lambda: g.sysb("backend") == "virtio", 30,
                 what="uniballoon bound")


def stage(what):
    print(f"#   {time.strftime('%H:%M:%S')} {what}", file=sys.stderr, flush=True)


def curve_round(kver, driver, ko, rnd, append, sizes):
    """One fresh CURVE_MB guest: {size: {figure: value}}."""
    res = {}
    stage(f"round {rnd}: {driver}: boot {CURVE_MB} MiB {append}")
    with Guest(kver, mem_mb=CURVE_MB, balloon_opts="deflate-on-oom=on", append=append,
               name=f"bench-{driver}-{kver}") as g:
        load(g, driver, ko)
        g.run("sync; echo 3 > /proc/sys/vm/drop_caches")
        stage("prime: fault in all but 256 MiB of the free memory once")
        res["prime"] = float(g.run(PRIME, timeout=900)[1])
        for size in sizes:
            stage(f"limits: fault in and zero {fmt_size(size)} in 2 MiB and in 4 KiB pages")
            t, huge = g.run(LIMIT_2M.format(n=size), timeout=600)[1].split()
            t4 = float(g.run(LIMIT_4K.format(n=size), timeout=600)[1])
            res[size] = {"limit": min(float(t), t4), "limit_2m": float(t), "limit_huge": float(huge),
                         "limit_4k": t4}
        for size in sizes:
            r = res[size]
            stage(f"inflate and deflate {fmt_size(size)}")
            c0 = kworker_cpu(g)
            r["inflate"] = host_balloon(g, CURVE_MB, size)
            c1 = kworker_cpu(g)
            r["deflate"] = host_balloon(g, CURVE_MB, 0)
            c2 = kworker_cpu(g)
            r["cpu_inflate"] = (c1 - c0) / (size / (1 << 30))
            r["cpu_deflate"] = (c2 - c1) / (size / (1 << 30))
            stage(f"workload while {fmt_size(size)} inflates")
            r.update(workload_during(g, CURVE_MB, size, f"{driver}-{rnd}"))
            print(f"# round {rnd} {driver:<10} {fmt_size(size):>8} "
                  + json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}),
                  flush=True)
    return res


def oom_round(kver, driver, ko, rnd, name, deadline):
    mem_mb, balloon_mb, touch_mb, _ = OOM_SCENARIOS[name]
    stage(f"round {rnd}: {driver}: OOM scenario {name}: boot {mem_mb} MiB")
    with Guest(kver, mem_mb=mem_mb, balloon_opts="deflate-on-oom=on",
               name=f"bench-oom-{driver}-{kver}") as g:
        load(g, driver, ko)
        held = host_balloon_settled(g, mem_mb, balloon_mb * MiB)
        k0 = g.vmstat("oom_kill")
        t0 = time.monotonic()
        try:
            rc, _ = g.run(HOG.format(mib=touch_mb), timeout=deadline, check=False)
        except GuestError:
            # a guest thrashing so hard that its agent cannot answer: the
            # process did not finish in time; the guest is thrown away
            r = {"oom_time": time.monotonic() - t0, "oom_ok": False, "oom_kills": None, "oom_wedged": True}
        else:
            took = time.monotonic() - t0
            r = {"oom_time": took, "oom_ok": rc == 0 and took < deadline, "oom_kills": g.vmstat("oom_kill") - k0}
        r["oom_held"] = held
    print(f"# round {rnd} {driver:<10} OOM {name} " + json.dumps(
        {k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()}), flush=True)
    return r


# ------------------------------------------------------------------ reporting
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def spread(xs, fmt="{:.2f}"):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    m = fmt.format(statistics.median(xs))
    return m if len(xs) == 1 else f"{m} ({fmt.format(min(xs))}-{fmt.format(max(xs))})"


def ratio(a, b, fmt="{:.2f}"):
    return fmt.format(a / b) if a is not None and b else "-"


def curve_table(cfg):
    """Markdown lines for one configuration's curves."""
    rows, sizes = cfg["rounds"], cfg["sizes"]
    get = lambda d, s, k: [r[str(s)].get(k) for r in rows[d]]   # noqa: E731
    out = ["| size | limit (s) | 4 KiB pages (s) | 2 MiB pages (s) | in-tree inflate (s) | uniballoon inflate (s) | "
           "ours / in-tree | ours / limit | in-tree / limit | uniballoon s per GiB | in-tree deflate (s) | "
           "uniballoon deflate (s) | ours / in-tree |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in sizes:
        lim = get("in-tree", s, "limit") + get("uniballoon", s, "limit")
        lim4 = get("in-tree", s, "limit_4k") + get("uniballoon", s, "limit_4k")
        lim2 = get("in-tree", s, "limit_2m") + get("uniballoon", s, "limit_2m")
        huge = min(get("in-tree", s, "limit_huge") + get("uniballoon", s, "limit_huge"))
        lim2_cell = spread(lim2) + (f" ({huge:.0%} in 2 MiB pages)" if huge < 0.9 else "")
        ii, iu = get("in-tree", s, "inflate"), get("uniballoon", s, "inflate")
        di, du = get("in-tree", s, "deflate"), get("uniballoon", s, "deflate")
        out.append(f"| {fmt_size(s)} | {spread(lim)} | {spread(lim4)} | {lim2_cell} | {spread(ii)} | {spread(iu)} | {ratio(med(iu), med(ii))} | "
                   f"{ratio(med(iu), med(lim))} | {ratio(med(ii), med(lim))} | "
                   f"{med(iu) / (s / (1 << 30)):.2f} | {spread(di)} | {spread(du)} | {ratio(med(du), med(di))} |")
    out += ["", "| size | worker CPU per GiB inflated: in-tree / uniballoon (s) | deflated (s) | "
            "workload speed while inflating: in-tree | uniballoon | ours / in-tree |",
            "|---|---:|---:|---:|---:|---:|"]
    for s in sizes:
        w = {d: get(d, s, "workload") for d in rows}
        cells = []
        for d in ("in-tree", "uniballoon"):
            n_ok = sum(x is not None for x in w[d])
            cells.append(spread(w[d]) + (f" ({n_ok} of {len(w[d])} rounds)" if 0 < n_ok < len(w[d]) else "")
                         if n_ok else "too short to measure")
        mw = {d: med(w[d]) for d in w}
        out.append(f"| {fmt_size(s)} | {spread(get('in-tree', s, 'cpu_inflate'))} / "
                   f"{spread(get('uniballoon', s, 'cpu_inflate'))} | {spread(get('in-tree', s, 'cpu_deflate'))} / "
                   f"{spread(get('uniballoon', s, 'cpu_deflate'))} | {cells[0]} | {cells[1]} | "
                   f"{ratio(mw['uniballoon'], mw['in-tree']) if None not in mw.values() else 'too short to measure'} |")
    return out


def oom_table(oom):
    out = ["| scenario | in-tree (s) | uniballoon (s) | in-tree / ours | OOM kills in-tree / ours | "
           "runs over the deadline in-tree / ours | balloon held before (MiB) in-tree / ours |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for name, o in oom.items():
        mem, bal, touch, _ = OOM_SCENARIOS[name]
        t = {d: [x["oom_time"] for x in o["rounds"][d]] for d in o["rounds"]}
        over = {d: sum(not x["oom_ok"] for x in o["rounds"][d]) for d in o["rounds"]}
        # None: not known (the guest stopped answering)
        kills = {d: str(sum(x["oom_kills"] or 0 for x in o["rounds"][d]))
                 + (" (+ unknown)" if any(x["oom_kills"] is None for x in o["rounds"][d]) else "")
                 for d in o["rounds"]}
        held = {d: spread([x["oom_held"] >> 20 for x in o["rounds"][d]], "{:.0f}") for d in o["rounds"]}
        cell = {d: (f"over {o['deadline']} s ({over[d]} of {len(t[d])} runs)" if over[d] * 2 > len(t[d])
                    else spread(t[d], "{:.1f}")) for d in t}
        r = ratio(med(t["in-tree"]), med(t["uniballoon"]), "{:.1f}")
        if over["in-tree"] and r != "-":
            r = "at least " + r
        out.append(f"| {mem >> 10} GiB guest, balloon {bal} MiB, {touch} MiB touched | {cell['in-tree']} | "
                   f"{cell['uniballoon']} | {r} | {kills['in-tree']} / {kills['uniballoon']} | "
                   f"{over['in-tree']} / {over['uniballoon']} | {held['in-tree']} / {held['uniballoon']} |")
    return out


def verdict(ok):
    return {True: "met", False: "NOT met", None: "not measured"}[ok]


def goals(results):
    """Where each goal of issue 13 stands: lines of text."""
    out = []
    for cfg in results["configs"]:
        rows, sizes, zero = cfg["rounds"], cfg["sizes"], cfg["init_on_alloc"]
        m = lambda d, s, k: med([r[str(s)].get(k) for r in rows[d]])   # noqa: E731
        infl = {s: (m("in-tree", s, "inflate"), m("uniballoon", s, "inflate")) for s in sizes}
        defl = {s: (m("in-tree", s, "deflate"), m("uniballoon", s, "deflate")) for s in sizes}
        x = lambda p: ", ".join(f"{fmt_size(s)} {p[s][0] / p[s][1]:.2f}x" for s in sizes)   # noqa: E731
        tag = "init_on_alloc=1" if zero else "init_on_alloc=0"
        if zero:
            lim = {s: med([r[str(s)]["limit"] for d in rows for r in rows[d]]) for s in sizes}
            rr = {s: infl[s][1] / lim[s] for s in sizes}
            out.append(f"{tag}: inflation within 1.15x of the zeroing limit at every size: "
                       f"{verdict(all(v <= 1.15 for v in rr.values()))} ("
                       + ", ".join(f"{fmt_size(s)} {rr[s]:.2f}x" for s in sizes) + ")")
        else:
            out.append(f"{tag}: inflation >= 3x faster than in-tree at every size: "
                       f"{verdict(all(a / b >= 3 for a, b in infl.values()))} ({x(infl)})")
            per_gib = {s: infl[s][1] / (s / (1 << 30)) for s in sizes}
            flat = max(per_gib.values()) / min(per_gib.values())
            span = f"{fmt_size(min(sizes))}..{fmt_size(max(sizes))}"
            out.append(f"{tag}: inflation cost per GiB flat within 20% over {span}: "
                       f"{verdict(flat <= 1.2 if len(sizes) > 1 else None)} (max/min {flat:.2f}: "
                       + ", ".join(f"{fmt_size(s)} {per_gib[s]:.2f} s" for s in sizes) + ")"
                       + ("" if min(sizes) <= 256 * MiB and max(sizes) >= 4 << 30 else
                          " [sizes do not span 256 MiB..4 GiB]"))
        out.append(f"{tag}: deflation >= 3x faster than in-tree at every size: "
                   f"{verdict(all(a / b >= 3 for a, b in defl.values()))} ({x(defl)})")
        wr = {}
        for s in sizes:
            a, b = m("in-tree", s, "workload"), m("uniballoon", s, "workload")
            wr[s] = b / a if a and b is not None else None
        known = [v for v in wr.values() if v is not None]
        where = " where measured" if known and len(known) < len(wr) else ""
        out.append(f"{tag}: guest workload while inflating at least as fast as with in-tree (>= 1.0): "
                   f"{verdict(all(v >= 1.0 for v in known) if known else None)}{where} ("
                   + ", ".join(f"{fmt_size(s)} " + (f"{wr[s]:.2f}" if wr[s] is not None else "too short to measure")
                               for s in sizes) + ")")
    for name, o in results.get("oom", {}).items():
        kills = sum(x["oom_kills"] or 0 for x in o["rounds"]["uniballoon"])
        ours_over = sum(not x["oom_ok"] for x in o["rounds"]["uniballoon"])
        a, b = med([x["oom_time"] for x in o["rounds"]["in-tree"]]), med([x["oom_time"] for x in o["rounds"]["uniballoon"]])
        in_over = any(not x["oom_ok"] for x in o["rounds"]["in-tree"])
        out.append(f"OOM {name}: 0 OOM kills with uniballoon: {verdict(kills == 0 and not ours_over)} "
                   f"({kills} kills, {ours_over} runs over the deadline)")
        out.append(f"OOM {name}: >= 5x faster than in-tree: {verdict(a / b >= 5)} "
                   f"({'at least ' if in_over else ''}{a / b:.1f}x)")
    return out


def report(results):
    md = ["# uniballoon cost curves (make bench)", "",
          f"Guest kernel {results['kernel']}, {results['rounds']} round(s), medians (min-max over rounds); "
          f"{results['machine']}. Written by tools/lab/bench_virtio.py on {results['date']}.", ""]
    for cfg in results["configs"]:
        md += [f"## {cfg['title']}: inflate and deflate in a {CURVE_MB >> 10} GiB guest", ""]
        md += curve_table(cfg) + [""]
    if results.get("oom"):
        md += ["## OOM scenarios (Debian's default)", ""] + oom_table(results["oom"]) + [""]
    md += ["## Goals (issue 13)", ""] + [f"- {line}" for line in goals(results)] + [""]
    md += ["The limit: before any ballooning, in the same guest (its free memory faulted in once before, "
           "so that no step pays for the host's first touch), a process faults in that much private "
           "anonymous memory, timed in the guest, in 4 KiB pages (MAP_POPULATE) and in 2 MiB pages "
           "(MADV_HUGEPAGE, MADV_POPULATE_WRITE); the limit is the faster of the two. Workload: a CPU-bound loop's rate during inflation over its "
           "rate just before; \"too short to measure\" where the window's edges are too uncertain "
           f"(the ratio could move by more than {WORK_MAX_ERR})."]
    text = "\n".join(md) + "\n"
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"curves-{results['kernel']}.md").write_text(text)
    (OUT / "curves.md").write_text(text)
    print("\n" + text, flush=True)


def save(results):
    """Every figure so far (a run cut short keeps its finished rounds); results.json
    is the last kernel's, the one bench_plot.py draws."""
    text = json.dumps(results, indent=1)
    (OUT / f"results-{results['kernel']}.json").write_text(text)
    (OUT / "results.json").write_text(text)


def main():
    kvers = os.environ.get("BENCH_KERNELS", "").split() or kernels()[-1:]
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    only = os.environ.get("BENCH_CONFIG")          # "0" or "1": one configuration only
    sizes = sorted(parse_size(s) for s in os.environ.get("BENCH_SIZES", "256M,1G,2G,4G").split(","))
    ooms = [s for s in os.environ.get("BENCH_OOM", "small,large").replace(",", " ").split() if s != "none"]
    for s in ooms:
        if s not in OOM_SCENARIOS:
            sys.exit(f"BENCH_OOM: unknown scenario {s!r} (small, large, none)")
    if max(sizes) > (CURVE_MB - 1024) * MiB:
        sys.exit(f"BENCH_SIZES: at most {(CURVE_MB - 1024) >> 10} GiB in the {CURVE_MB >> 10} GiB guest")
    OUT.mkdir(parents=True, exist_ok=True)
    machine = f"{os.cpu_count()} host CPUs, {os.uname().release}; guests TCG, -smp 1, virtio-balloon-pci,deflate-on-oom=on"
    print(f"# machine: {machine}; sizes {', '.join(map(fmt_size, sizes))}; {rounds} round(s)", flush=True)
    for kver in kvers:
        ko = build_module(kver)
        results = {"kernel": kver, "rounds": rounds, "machine": machine,
                   "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "configs": [], "oom": {}}
        for i, (title, append, zero) in enumerate(CONFIGS):
            if only is not None and str(i) != only:
                continue
            cfg = {"title": title, "init_on_alloc": zero, "sizes": sizes,
                   "rounds": {"in-tree": [], "uniballoon": []}}
            results["configs"].append(cfg)
            for rnd in range(1, rounds + 1):
                for driver in ("in-tree", "uniballoon"):
                    r = curve_round(kver, driver, ko, rnd, append, sizes)
                    cfg["rounds"][driver].append({str(s): v for s, v in r.items()})
                    save(results)
            if zero:
                for name in ooms:
                    deadline = int(os.environ.get("BENCH_OOM_DEADLINE", OOM_SCENARIOS[name][3]))
                    o = results["oom"][name] = {"deadline": deadline, "rounds": {"in-tree": [], "uniballoon": []}}
                    for rnd in range(1, rounds + 1):
                        for driver in ("in-tree", "uniballoon"):
                            o["rounds"][driver].append(oom_round(kver, driver, ko, rnd, name, deadline))
                            save(results)
        report(results)


if __name__ == "__main__":
    main()
