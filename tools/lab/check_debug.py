"""make check, debug-kernel tier: the module under lockdep, KASAN, KFENCE, kmemleak,
debug objects and DEBUG_VM (tools/lab/debugkernel.sh builds that kernel from Debian's
linux-source-6.12 and caches it).

Two stress guests, virtio and the VMware host model (test build), each run every path of
the engine at once for STRESS_SECONDS: random host targets and guest overrides, processes
that force OOM deflation, compaction, and, per backend, device hot-unplug/replug or host
RESETs, refusals and BUSY, with rmmod/insmod cycles on a full balloon. Each passes only with
no checker report on the console and no kmemleak object of ours, every page back after the
last rmmod, and (VMware) the model's audit clean. Throughout, fault injection fails some of
the module's own allocations (FaultInjection), and after the action loop two writers race
on every writable sysfs file (sysfs_writers). The virtio guest ends with a freeze and
restore, judged from the console (the agent's port does not survive it).
"""
import os
import random
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

import lab
from ktap import figure, note, test
from lab import GUEST_MB, MiB, SYSB, Guest
from check_vmware import model_audit, model_set
from stalls import OURS, STALL_START, readout_stall, stall_block

STRESS_SECONDS = int(os.environ.get("LAB_STRESS_SECONDS", "600"))

# What the checkers print. Lockdep and DEBUG_ATOMIC_SLEEP print "WARNING:" or "BUG:" lines
# as well; KASAN and KFENCE reports begin with "BUG: KASAN:" / "BUG: KFENCE:".
REPORT = re.compile(r"BUG:|WARNING:|Oops|general protection|possible circular locking|"
                    r"possible recursive locking|inconsistent lock state|suspicious RCU usage|"
                    r"ODEBUG:|Bad page|sleeping function called|blocked for more than|"
                    r"soft lockup|list_(add|del) corruption|rcu: INFO:|Call Trace")
# The OOM killer's own report has a Call Trace too; an OOM kill is counted on its own.
OOM_TRACE = re.compile(r"invoked oom-killer")
# An injected failure (FaultInjection) is logged as "FAULT_INJECTION: forcing a failure."
# and a "name <attr>, interval ..." line, neither of them a REPORT match; with verbose=2
# (the kernel's default, FaultInjection sets 1) dump_stack() follows, whose "Call Trace:"
# is one. Such a stack is the injection's own, not a checker's: reports() lets its "Call
# Trace:" line through up to the dump's closing "</TASK>" (at most FAULT_DUMP_LINES lines
# on), and nothing else, so a checker's report interleaved with it still counts.
FAULT_DUMP = re.compile(r"FAULT_INJECTION: forcing a failure")
FAULT_DUMP_LINES = 80


# A stall report is the host's only if the clocksource watchdog saw the host stop the
# guest for a second or more within this many console lines before it, with no other
# report between, and the module's code is not on its stack.
STARVED_WINDOW = 40


def reports(text, starved=None):
    """Checker reports in console text, OOM killer traces and the stacks of injected
    failures excepted. A soft lockup or RCU stall is no report of ours when the module's
    code is not on its stack and the host had just stopped the guest for a second or
    more just before it (stalls.py); such a stall's first line and the readout stall go to
    @starved, if given, for the test's output."""
    lines = text.splitlines()
    bad, skip_until, dump_until, last_report = [], -1, -1, 0
    for i, line in enumerate(lines):
        if i > skip_until and STALL_START.search(line):
            block = stall_block(lines, i)
            stopped = readout_stall(lines[max(i - STARVED_WINDOW, last_report):i])
            if stopped >= 1 and not any(OURS in l for l in block):
                if starved is not None:
                    starved.append(f"the host's stall, not a report: {line.strip()} "
                                   f"(the host stopped the guest {stopped:.1f} s)")
                skip_until = i + len(block) - 1
                last_report = i + len(block)
                continue
        if OOM_TRACE.search(line):
            skip_until = i + 60      # the OOM report's stack and memory dump
        if FAULT_DUMP.search(line):
            dump_until = i + FAULT_DUMP_LINES
        # within an injection's dump_stack(), its own "Call Trace:" is not a report
        rest = line.replace("Call Trace", "") if i <= dump_until else line
        if i <= dump_until and "</TASK>" in line:
            dump_until = i
        if i > skip_until and REPORT.search(rest):
            bad.append(line)
            last_report = i
    return bad


# A report's stack: the failure message carries this many console lines from the first
# report on, so that a report met once in CI can be read from CI's output alone.
REPORT_CONTEXT_LINES = 60


def reports_failure(text, bad):
    """The failure message for reports(text) == bad: the matching lines (at most 20),
    then the console from the first of them on."""
    lines = text.splitlines()
    first = lines.index(bad[0])
    return "\n".join(bad[:20] + ["--- the console from the first report on:"] +
                     lines[first:first + REPORT_CONTEXT_LINES])


def build_debug_kernel():
    t0 = time.monotonic()
    kver, _, _ = debug_kernel()
    return f"{kver}, {time.monotonic() - t0:.0f} s (cached: build/debug-kernel/)"


def debug_kernel():
    """(kver, build dir, bzImage) of the debug kernel, built if it is not cached."""
    kdir = subprocess.run([lab.LAB_DIR / "debugkernel.sh"], capture_output=True, text=True)
    if kdir.returncode != 0:
        raise RuntimeError(kdir.stderr[-4000:])
    kdir = kdir.stdout.strip()
    kver = subprocess.run(["make", "-s", "-C", kdir, "kernelrelease"], capture_output=True,
                          text=True, check=True).stdout.strip()
    return kver, kdir, f"{kdir}/arch/x86/boot/bzImage"


# Guest-side load, started in the background: a process that takes, again and again, up
# to what the guest had available with the balloon empty (so, with the balloon full, the
# balloon must deflate on pressure or OOM), and compaction every few seconds. MAP_POPULATE
# faults the memory in with one call: a Python loop touching pages took 30 s a round on
# this kernel. While /tmp/hog.pause exists the process holds nothing (hog.state: idle).
LOAD = r"""
cat > /tmp/hog.py <<'PY'
import mmap, os, random, sys, time
mib = int(sys.argv[1])
open("/proc/self/oom_score_adj", "w").write("1000")
state = lambda s: open("/tmp/hog.state", "w").write(s)
while True:
    if os.path.exists("/tmp/hog.pause"):
        state("idle")
        time.sleep(0.2)
        continue
    state("busy")
    n = random.randint(mib // 2, mib) << 20
    m = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_POPULATE)
    time.sleep(random.random() * 2)
    m.close()
    print("touched", n >> 20, flush=True)
    time.sleep(random.random() * 2)
PY
rm -f /tmp/hog.pause
echo starting > /tmp/hog.state
python3 /tmp/hog.py {hog_mib} > /tmp/hog.log 2>&1 & echo $! > /tmp/load.pids
(while :; do echo 1 > /proc/sys/vm/compact_memory; sleep 5; done) > /dev/null 2>&1 &
echo $! >> /tmp/load.pids
"""


def start_load(g, hog_mib):
    g.run("echo -1000 > /proc/$PPID/oom_score_adj")   # the agent is never the victim
    g.run(LOAD.format(hog_mib=hog_mib))


def pause_load(g, pause):
    if pause:
        g.run("touch /tmp/hog.pause")
        g.wait_for(lambda: g.run("cat /tmp/hog.state")[1] == "idle", 120, what="the load paused")
    else:
        g.run("rm -f /tmp/hog.pause")


def stop_load(g):
    g.run("kill $(cat /tmp/load.pids) 2>/dev/null; "
          "for p in $(cat /tmp/load.pids); do while kill -0 $p 2>/dev/null; do sleep 0.1; done; done")


def kmemleak_ours(g):
    """kmemleak objects whose allocation backtrace passes through our module."""
    g.run("echo scan > /sys/kernel/debug/kmemleak", timeout=300)
    g.run("echo scan > /sys/kernel/debug/kmemleak", timeout=300)  # a leak is reported on the 2nd
    out = g.run("cat /sys/kernel/debug/kmemleak")[1]
    objs = [o for o in out.split("unreferenced object") if o.strip()]
    return [o for o in objs if "uniballoon" in o], len(objs)


def ko_text_sections(ko):
    """{name: size} of the sections of the .ko that the kernel loads into the module's
    text (MOD_TEXT): SHF_ALLOC and SHF_EXECINSTR, not .init* (freed after the init; .exit*
    is core text with MODULE_UNLOAD), not empty (kernel/module/main.c: __layout_sections;
    sysfs lists the same non-empty allocated sections)."""
    data = Path(ko).read_bytes()
    assert data[:5] == b"\x7fELF\x02", f"{ko}: not an ELF64 file"
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3a)
    # Elf64_Shdr: name, type, flags, addr, offset, size, link, info, addralign, entsize
    shdrs = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    strtab = shdrs[shstrndx][4]

    def name(off):
        return data[strtab + off:data.index(b"\0", strtab + off)].decode()
    SHF_ALLOC, SHF_EXECINSTR = 0x2, 0x4
    return {name(h[0]): h[5] for h in shdrs
            if h[2] & (SHF_ALLOC | SHF_EXECINSTR) == SHF_ALLOC | SHF_EXECINSTR and h[5]
            and not name(h[0]).startswith(".init")}


class FaultInjection:
    """Injected failures in the module's own allocations (debug.config: FAULT_INJECTION,
    FAILSLAB, FAIL_PAGE_ALLOC, their debugfs files and the stack-trace filter).

    fail_page_alloc fails alloc_pages() of any order (min-order 0: the 4 KiB pages and
    the order-9 blocks) and any gfp (ignore-gfp-wait=N: balloon_page_alloc() may reclaim;
    ignore-gfp-highmem=N: balloon pages are GFP_HIGHUSER); failslab fails kmalloc and
    kmem_cache_alloc (ignore-gfp-wait=N: GFP_KERNEL). Both only for call stacks that pass
    through the module's text (require-start/require-end, see module_text()): the agent,
    the load and the rest of the guest allocate as usual. What the module's callees
    allocate for it (virtqueue descriptors, the VMware model's xarray, the checkers'
    metadata of its objects) fails too: that is the module's allocation as well.

    One eligible call in INTERVAL fails (probability 100, so the count is what the run
    makes of it, not chance). A 10-minute run (6.12 debug kernel, TCG) at 1 in 200 and 1 in
    20 failed about 1650 page and 750 slab allocations with the VMware model (whose
    xarray allocates per page locked; random capabilities, so many 4 KiB batches) but
    only about 100 and 5 with virtio (2 MiB blocks: one call each; its virtqueues
    allocate nothing for one-buffer requests), hence denser. fail_page_alloc has no "injected" counter: `times` counts
    down from TIMES, one per failure, and the difference is the count. verbose=1 logs a
    failure ("FAULT_INJECTION: forcing a failure.", no stack) only where the caller did not
    pass __GFP_NOWARN: none of the balloon's page allocations, so the console count is
    the loud subset.

    The load of a module must succeed for the test to go on (its probe allocates):
    injection pauses from before insmod (or a device's hot-plug) until after it, and is
    armed again with the new load's addresses. Unload, unplug and everything in between
    run with it."""
    ATTRS = ("fail_page_alloc", "failslab")
    INTERVAL = {"fail_page_alloc": 100, "failslab": 5}
    TIMES = 1000000
    OWN = {"fail_page_alloc": {"ignore-gfp-wait": "N", "ignore-gfp-highmem": "N", "min-order": 0},
           "failslab": {"ignore-gfp-wait": "N", "cache-filter": "N"}}

    def __init__(self, g, ko):
        self.g, self.ko = g, ko
        self.sections = ko_text_sections(ko)
        self.injected = dict.fromkeys(self.ATTRS, 0)
        self.arms = 0
        self.armed = False
        self.text = None

    def module_text(self):
        """[start, end) of the loaded module's code. The kernel puts every executable
        section of a module (ko_text_sections) into one allocation, MOD_TEXT, whose base
        /proc/modules shows; sysfs's sections/ gives each section's address and the .ko
        its size. start is the lowest section address (that base: the first section
        lies at offset 0), end the highest address + size. The module's data, rodata
        and freed init text are other allocations and not in it. Checked against
        /proc/kallsyms: every text symbol of the module lies within, no other symbol."""
        g = self.g
        names = " ".join(f"'{n}'" for n in self.sections)
        out = g.run(f"cd /sys/module/uniballoon/sections && for s in {names}; do "
                    f"echo \"$s $(cat -- \"$s\")\"; done; grep '^uniballoon ' /proc/modules")[1]
        lines = out.splitlines()
        addrs = {n: int(a, 16) for n, a in (l.split() for l in lines[:-1])}
        mod = lines[-1].split()     # name size refs users state base [taints]
        total, base = int(mod[1]), next(int(t, 16) for t in mod if t.startswith("0x"))
        start = min(addrs.values())
        end = max(a + self.sections[n] for n, a in addrs.items())
        assert start == base and 0 < end - start <= total, \
            f"module text [{start:#x}, {end:#x}) vs /proc/modules base {base:#x} size {total}"
        lo, hi = f"{start:016x}", f"{end:016x}"
        # fixed-width lowercase hex compares as strings
        inside = g.run(f"awk -v lo={lo} -v hi={hi} '$1 >= lo && $1 < hi' /proc/kallsyms")[1]
        strays = [l for l in inside.splitlines() if "[uniballoon]" not in l]
        assert not strays, f"not the module's, in [{lo}, {hi}):\n" + "\n".join(strays[:10])
        ours = g.run("awk '$4 == \"[uniballoon]\" && $2 ~ /^[tT]$/ { print $1, $3 }' /proc/kallsyms")[1]
        outside = [l for l in ours.splitlines() if not lo <= l.split()[0] < hi]
        assert ours.strip() and not outside, \
            f"module code outside [{lo}, {hi}):\n" + "\n".join(outside[:10])
        return start, end

    def arm(self):
        start, end = self.text = self.module_text()
        cmds = []
        for attr in self.ATTRS:
            # off while it is set up, on last
            knobs = [("probability", 0), *self.OWN[attr].items(),
                     ("interval", self.INTERVAL[attr]), ("space", 0), ("times", self.TIMES),
                     ("verbose", 1), ("task-filter", "N"), ("stacktrace-depth", 32),
                     ("reject-start", 0), ("reject-end", 0), ("require-start", start),
                     ("require-end", end), ("probability", 100)]
            cmds += [f"echo {v} > /sys/kernel/debug/{attr}/{k}" for k, v in knobs]
        self.g.run(" && ".join(cmds))
        self.armed = True
        self.arms += 1

    def disarm(self):
        """Off (probability 0, which should_fail() checks first); the failures of this
        arming are added to the counts."""
        if not self.armed:
            return
        self.armed = False
        out = self.g.run("; ".join(f"echo 0 > /sys/kernel/debug/{a}/probability; "
                                   f"cat /sys/kernel/debug/{a}/times" for a in self.ATTRS))[1]
        for attr, left in zip(self.ATTRS, out.split()):
            self.injected[attr] += self.TIMES - int(left)

    @staticmethod
    def logged(console):
        """Failures the console logged (callers without __GFP_NOWARN), by attribute."""
        names = re.findall(r"FAULT_INJECTION: forcing a failure\.?\s*\n[^\n]*?name (\w+),", console)
        return {a: names.count(a) for a in FaultInjection.ATTRS}


# Two writers, each for SYSFS_WRITER_SECONDS, write random valid values to every writable
# file of /sys/kernel/balloon and log each write that succeeded ("file value") or failed
# ("FAIL file value"). Sizes come with and without K/M suffixes (the parser's powers of
# 1024), with and without the trailing newline. Bounds keep every value valid and the
# policy out of the way of the read-back: targets and the host's meanwhile up to 256 MiB
# and floors up to 128 MiB leave a 1 GiB guest without its load far from the floor and
# the pressure reserve; oom_deflate_size at most 64 MiB keeps the pressure threshold low.
SYSFS_WRITER_SECONDS = int(os.environ.get("LAB_SYSFS_WRITER_SECONDS", "45"))
SYSFS_WRITER = r"""
cat > /tmp/sysw.sh <<'SH'
#!/bin/bash
# sysw.sh ID SECONDS OOM_DEFLATE_ALLOWED
S=/sys/kernel/balloon; log=/tmp/sysw.$1.log; : > $log
size() {   # a random size in [$1, $2] bytes (both whole MiB), in one of the input's forms
    local lo=$1 hi=$2 n=$(( ((RANDOM << 30) | (RANDOM << 15) | RANDOM) ))
    n=$(( lo + n % (hi - lo + 1) ))
    case $(( RANDOM % 5 )) in
    0) echo $n ;;
    1) echo $(( (n + 1023) >> 10 ))K ;;       # rounded up: not below lo, not above hi
    2) echo $(( (n + 1023) >> 10 ))k ;;
    3) echo $(( (n + 1048575) >> 20 ))M ;;
    *) echo $(( (n + 4095) >> 12 << 12 )) ;;
    esac
}
end=$(( SECONDS + $2 ))
while (( SECONDS < end )); do
    case $(( RANDOM % 6 )) in
    0) f=target; if (( RANDOM % 4 == 0 )); then v=host; else v=$(size 0 $((256 << 20))); fi ;;
    1) f=floor; v=$(size 0 $((128 << 20))) ;;
    2) f=inflate_rate; if (( RANDOM % 4 == 0 )); then v=0; else v=$(size 1048576 $((256 << 20))); fi ;;
    3) f=deflate_rate; if (( RANDOM % 4 == 0 )); then v=0; else v=$(size 1048576 $((256 << 20))); fi ;;
    4) f=oom_deflate; v=$(( $3 ? RANDOM % 2 : 0 )) ;;
    5) f=oom_deflate_size; v=$(size 1048576 $((64 << 20))) ;;
    esac
    if (( RANDOM % 2 )); then
        echo "$v" > $S/$f 2>/dev/null
    else
        printf %s "$v" > $S/$f 2>/dev/null
    fi && echo "$f $v" >> $log || echo "FAIL $f $v" >> $log
done
echo done >> $log
SH
chmod +x /tmp/sysw.sh
"""
SYSFS_SETTINGS = ("target", "floor", "inflate_rate", "deflate_rate", "oom_deflate",
                  "oom_deflate_size")


def size_bytes(v):
    """A value as the size parser reads it: digits, an optional K/M/G/T (powers of 1024)."""
    shift = {"k": 10, "m": 20, "g": 30, "t": 40}.get(v[-1].lower(), 0)
    return int(v[:-1] if shift else v) << shift


def shown(f, v):
    """What the file shows after `v` was written to it: sizes in bytes, exact for the
    settings (sysfs.c: "%llu" of the value stored), whole pages for target (ub_show_pages
    of the override in pages); oom_deflate "0" or "1" ("%d")."""
    if f == "oom_deflate":
        return str(int(v))
    if f == "target":
        return "host" if v == "host" else str(size_bytes(v) >> 12 << 12)
    return str(size_bytes(v))


def sysfs_writers(s, seconds=SYSFS_WRITER_SECONDS):
    """Two background writers race on each writable file of /sys/kernel/balloon while the
    host moves its target and memory is compacted (and the stress's fault injection runs
    on). Each file must then show the last value one of the two writers wrote to it, in
    the file's own format: writes to a file are serialized, so the last stored is one of
    the writers' last; target shows the target in force, which is the override written
    (target_source "user") or, after "host", host_target (target_source "host"). No valid
    value may be refused. The settings in force before are written back after."""
    g = s.g
    features = g.sysb("features").split()
    before = {f: g.sysb(f) for f in SYSFS_SETTINGS[1:]}
    g.run(SYSFS_WRITER)
    g.run("rm -f /tmp/sysw.*.log; "
          "(end=$((SECONDS + %d)); while (( SECONDS < end )); do "
          "echo 1 > /proc/sys/vm/compact_memory; sleep 3; done) > /dev/null 2>&1 & "
          "for i in 1 2; do /tmp/sysw.sh $i %d %d > /dev/null 2>&1 & done"
          % (seconds, seconds, "oom_deflate" in features))
    done = lambda: g.run("cat /tmp/sysw.1.log /tmp/sysw.2.log 2>/dev/null | grep -c '^done$'",  # noqa: E731
                         check=False)[1].strip() == "2"
    t_end, moves = time.monotonic() + seconds + 120, 0
    while not done():
        assert time.monotonic() < t_end, "the sysfs writers did not end"
        s.host_target(s.rng.randint(0, 256))
        moves += 1
        time.sleep(1 + s.rng.random() * 2)
        g._alive()
    time.sleep(3)       # the last host target reaches host_target (VMware: polled each second)
    # per writer: "file count last-value"; failures whole
    summary = g.run("for i in 1 2; do awk -v w=$i '$1 == \"FAIL\" { print w, $0; next } "
                    "$1 != \"done\" { n[$1]++; last[$1] = $2 } "
                    "END { for (f in n) print w, f, n[f], last[f] }' /tmp/sysw.$i.log; done")[1]
    failed = [l for l in summary.splitlines() if " FAIL " in l]
    last, writes = {}, {}
    for line in summary.splitlines():
        if " FAIL " in line:
            continue
        w, f, n, v = line.split()
        last.setdefault(f, []).append(v)
        writes[f] = writes.get(f, 0) + int(n)
    now = {f: g.sysb(f) for f in SYSFS_SETTINGS + ("target_source", "host_target")}
    status = g.run("cat /sys/kernel/debug/balloon/status")[1]
    assert not failed, "valid values refused:\n" + "\n".join(failed[:20])
    wrong = []
    for f in SYSFS_SETTINGS:
        if f not in last:
            wrong.append(f"{f}: never written")
            continue
        want = {shown(f, v) for v in last[f]}
        got = now[f]
        if f == "target":
            override = "user override:    yes" in status
            if now["target_source"] == "host" and not override:
                got = "host" if now["target"] == now["host_target"] else f"{got} (host_target " \
                      f"{now['host_target']})"
            elif now["target_source"] != "user" or not override:
                got = f"{got} (target_source {now['target_source']})"
        if got not in want:
            wrong.append(f"{f}: shows {got}, the writers' last were {' '.join(last[f])}")
    assert not wrong, "\n".join(wrong) + f"\n{status}"
    g.run(" && ".join([f"echo host > {SYSB}/target"] +
                      [f"echo {v} > {SYSB}/{f}" for f, v in before.items()]))
    return (f"sysfs writers {seconds} s: {sum(writes.values())} writes "
            f"({', '.join(f'{f} {n}' for f, n in sorted(writes.items()))}), {moves} host moves, "
            f"every file shows a writer's last value")


class Stress:
    """The action loop both guests share; the backend supplies its own actions."""

    def __init__(self, g, kver, ko, name, insmod_args=""):
        self.g, self.kver, self.ko, self.name = g, kver, ko, name
        self.insmod_args = insmod_args
        self.seed = int(os.environ.get("LAB_STRESS_SEED", str(int(time.time()))))
        self.rng = random.Random(self.seed)
        self.counts = {}
        self.deflations = 0     # stats/oom_deflations of modules already unloaded
        self.faults = None      # a FaultInjection, while the stress runs with one

    def insmod(self):
        # the load must succeed: no failure injected into its probe (FaultInjection)
        if self.faults:
            self.faults.disarm()
        self.g.run(f"insmod {self.ko} {self.insmod_args}", timeout=120)
        if self.faults:
            self.faults.arm()

    def rmmod(self):
        self.deflations += self.g.sysb_int("stats/oom_deflations")
        self.g.run("rmmod uniballoon", timeout=300)

    def override(self):
        g = self.g
        if self.rng.random() < 0.5:
            g.run(f"echo {self.rng.randint(0, 600)}M > {SYSB}/target")
        else:
            g.run(f"echo host > {SYSB}/target")

    def rmmod_insmod_full(self):
        """rmmod while the balloon holds pages. A user override fills it whatever the
        host asks and lifts an OOM cap; the load pauses meanwhile."""
        g = self.g
        mib = self.rng.randint(128, 400)
        self.host_allows_pages(mib)
        pause_load(g, True)      # while the load holds memory, the reserve keeps it empty
        g.run(f"echo {mib}M > {SYSB}/target")
        g.wait_for(lambda: g.sysb_int("size") >= 32 * MiB, 120,
                   what="a balloon to unload")
        size = g.sysb_int("size")
        self.rmmod()
        assert g.vmstat("balloon_inflate") == g.vmstat("balloon_deflate"), \
            f"rmmod with {size >> 20} MiB left pages behind"
        self.insmod()
        self.after_insmod()
        pause_load(g, False)

    def host_allows_pages(self, mib):
        pass

    def after_insmod(self):
        pass

    def run(self):
        g = self.g
        actions = self.actions()
        t_end = time.monotonic() + STRESS_SECONDS
        while time.monotonic() < t_end:
            fn = self.rng.choices([a for a, _ in actions], [w for _, w in actions])[0]
            fn()
            self.counts[fn.__name__] = self.counts.get(fn.__name__, 0) + 1
            self.check_between()
            time.sleep(self.rng.random() * 3)
            g._alive()
        return ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))

    def check_between(self):
        pass


class VirtioStress(Stress):
    def actions(self):
        return [(self.host_target, 6), (self.override, 3), (self.unplug_replug, 1),
                (self.rmmod_insmod_full, 1)]

    def host_target(self, mib=None):
        mib = self.rng.randint(0, 700) if mib is None else mib
        self.g.qmp("balloon", value=(GUEST_MB - mib) * MiB)

    def unplug_replug(self):
        g = self.g
        g.qmp("device_del", id="balloon0")
        g.wait_for(lambda: g.sysb("backend") == "none", 120, what="backend gone after unplug")
        # QEMU deletes the device only once the guest has ejected the slot, after the driver
        g.wait_for(lambda: all(p["name"] != "balloon0" for p in
                               g.qmp("qom-list", path="/machine/peripheral")), 120,
                   what="the device deleted")
        if self.faults:     # the probe must succeed, as the load's (Stress.insmod)
            self.faults.disarm()
        g.qmp("device_add", driver="virtio-balloon-pci", id="balloon0",
              **{"deflate-on-oom": "on", "free-page-reporting": "on"})
        g.wait_for(lambda: g.sysb("backend") == "virtio", 120, what="backend back after replug")
        if self.faults:
            self.faults.arm()


class VmwareStress(Stress):
    CAPS = (0x2, 0x6, 0xe, 0x2e, 0x3e)

    def actions(self):
        return [(self.host_target, 6), (self.override, 3), (self.host_reset, 2),
                (self.refusals, 2), (self.busy, 1), (self.reset_mid_batch, 1),
                (self.rmmod_insmod_full, 1)]

    def model(self, knob, value):
        model_set(self.g, knob, value)

    def host_target(self, mib=None):
        mib = self.rng.randint(0, 700) if mib is None else mib
        self.model("target", mib * 256)

    def host_reset(self):
        self.model("caps", self.rng.choice(self.CAPS))
        self.model("reset_now", 1)

    def refusals(self):
        self.model("refuse_every", self.rng.choice((0, 0, 1, 3, 7)))

    def busy(self):
        self.model("busy_next", self.rng.randint(1, 5))

    def reset_mid_batch(self):
        self.model("reset_after", self.rng.randint(1, 4000))

    def after_insmod(self):
        self.host_reset()       # a fresh model grants all it has: start from random caps

    def host_allows_pages(self, mib):
        """The VMware host takes no page beyond its own target (NOTNEEDED), whatever
        the guest's override, nor while it refuses pages."""
        self.model("refuse_every", 0)
        self.host_target(mib)

    def audit(self):
        return model_audit(self.g)

    def rmmod(self):
        # Between the host's lock and the guest's bookkeeping (under the engine's
        # lock) a page is the host's but not yet PageOffline: the audit may count a
        # batch's worth for a moment. A page that stays so is lost.
        self.g.wait_for(lambda: self.audit()["not_set_aside"] == 0, 60,
                        what=f"every page the model holds set aside ({self.audit()})")
        self.check_between()
        super().rmmod()

    def check_between(self):
        a = self.audit()
        assert a["bad_locks"] == 0 and a["bad_unlocks"] == 0, a


def t_stress(g, kver, ko, cls, name, insmod_args=""):
    s = cls(g, kver, ko, name, insmod_args)
    g.run("echo clear > /sys/kernel/debug/kmemleak")    # what boot left is not ours
    total0, free0 = g.meminfo()["MemTotal"], g.free_after_drop()
    hog = g.meminfo()["MemAvailable"] // 1024 - 96
    mark = len(g.console())     # the console, unlike dmesg, never loses a line
    kills0 = g.vmstat("oom_kill")
    s.insmod()
    s.after_insmod()
    start_load(g, hog)
    faults = FaultInjection(g, ko)
    t0 = time.monotonic()
    try:
        s.faults = faults
        faults.arm()
        try:
            done = s.run()
        except Exception as e:
            raise AssertionError(f"stopped after {time.monotonic() - t0:.0f} s (seed {s.seed}, "
                                 f"actions {s.counts}, injected {faults.injected}): {e}") from e
        finally:
            stop_load(g)
        took = time.monotonic() - t0
        avail = g.meminfo()["MemAvailable"] >> 10
        writers = sysfs_writers(s)
    finally:
        s.faults = None
        failing = sys.exc_info()[1]     # a dead guest must not hide why it died
        try:
            faults.disarm()     # the final checks run without it
        except lab.GuestError:
            if failing is None:
                raise
    logged = FaultInjection.logged(g.console()[mark:])
    injected = ", ".join(f"{a} {n} ({logged[a]} logged)" for a, n in faults.injected.items())
    note(f"{kver}: debug stress {name}: failures injected: {injected}")    # also if it fails
    touched = g.run("grep -c touched /tmp/hog.log", check=False)[1].strip()
    kills = g.vmstat("oom_kill") - kills0
    s.host_target(0)
    s.rmmod()
    deflations = s.deflations
    total, free = g.meminfo()["MemTotal"], g.free_after_drop()
    ours, others = kmemleak_ours(g)
    console = g.console()[mark:]
    starved = []
    bad = reports(console, starved)
    assert not bad, reports_failure(console, bad)
    assert not ours, "kmemleak: " + "\n".join(ours[:3])
    assert kills == 0, f"{kills} OOM kills"
    assert deflations > 0, f"the load never made the balloon deflate on OOM ({done})"
    assert g.vmstat("balloon_inflate") == g.vmstat("balloon_deflate")
    assert total == total0, f"MemTotal {total0} -> {total} kB"
    # Every page back: what the checkers' own bookkeeping (kmemleak, debug objects, stack
    # depot) kept from ten minutes of work stays within 32 MiB; one lost balloon batch
    # would not.
    assert free >= free0 - 32 * 1024, f"MemFree {free0} -> {free} kB"
    figure(kver, f"debug stress {name}", f"{took:.0f} s, seed {s.seed}, {deflations} OOM deflations, "
           f"{touched} hog rounds")
    figure(kver, f"debug stress {name}: failures injected", f"{injected} in {faults.arms} armings")
    return (f"{took:.0f} s (seed {s.seed}): {done}; hog {hog} MiB x{touched}, {deflations} OOM "
            f"deflations, 0 kills; MemFree {free0 - free:+d} kB; kmemleak: 0 ours ({others} other); "
            f"injected {injected}, module text {faults.text[1] - faults.text[0]} bytes; "
            f"{writers} (MemAvailable {avail} MiB)" + "".join(f"; {st}" for st in starved))


def t_freeze_restore(g, ko):
    """Freeze and restore with a balloon, judged from the console (the agent's port
    does not come back)."""
    g.run("rmmod uniballoon 2>/dev/null || true")     # if the stress test stopped early
    g.run(f"insmod {ko}")
    g.qmp("balloon", value=(GUEST_MB - 200) * MiB)
    g.wait_for(lambda: g.sysb_int("size") == 200 * MiB, 120, what="200 MiB ballooned")
    mark = len(g.console())
    g.run("echo devices > /sys/power/pm_test")
    g._send("echo freeze > /sys/power/state", 300)      # no answer comes back
    console = lambda: g.console()[mark:]  # noqa: E731
    g.wait_for(lambda: "PM: suspend exit" in console(), 300, what="suspend and resume")
    g.wait_for(lambda: g.actual() == (GUEST_MB - 200) * MiB, 120,
               what="balloon back after restore")
    assert "all pages returned" in console() and "backend virtio active" in console(), console()[-3000:]
    starved = []
    bad = reports(console(), starved)
    assert not bad, reports_failure(console(), bad)
    return "; ".join(starved) or None


def debug_guest(name, kernel, **kw):
    """A guest on the debug kernel. acpi=noirq: its ACPI interpreter, with every
    allocation traced by kmemleak and KASAN, needs over 30 s for one evaluation of
    QEMU's PCI routing method (_PRT), which then aborts (AE_AML_LOOP_TIMEOUT); boot took
    165 s and a hot-plugged device got no interrupt. The BIOS's routing table does the
    same job at once; hotplug still comes through ACPI."""
    return Guest(kernel[0], mem_mb=GUEST_MB, smp=2, kernel=kernel[2], name=name,
                 boot_timeout=300, append="acpi=noirq", **kw)


def guest_debug_virtio(_kver, _ko):
    kver, kdir, image = debug_kernel()
    ko = lab.build_module(kver, tree="mod-debug", kdir=kdir)
    with debug_guest("debug-virtio", (kver, kdir, image),
                     balloon_opts="deflate-on-oom=on,free-page-reporting=on") as g:
        test(f"{kver}: stress, virtio: no checker report, every page back", t_stress,
             g, kver, ko, VirtioStress, "virtio")
        test(f"{kver}: freeze and restore with a balloon: no checker report", t_freeze_restore, g, ko)


def guest_debug_vmware(_kver, _ko):
    kver, kdir, image = debug_kernel()
    ko = lab.build_module(kver, test_build=True, tree="mod-debug-test", kdir=kdir)
    with debug_guest("debug-vmware", (kver, kdir, image)) as g:
        test(f"{kver}: stress, VMware model: no checker report, audit clean, every page back",
             t_stress, g, kver, ko, VmwareStress, "vmware", "backend=vmware")
