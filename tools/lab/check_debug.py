"""make check, debug-kernel tier: the module under lockdep, KASAN, KFENCE, kmemleak,
debug objects and DEBUG_VM (tools/lab/debugkernel.sh builds that kernel from Debian's
linux-source-6.12 and caches it).

Two stress guests, virtio and the VMware host model (test build), each run every path of
the engine at once for STRESS_SECONDS: random host targets and guest overrides, processes
that force OOM deflation, compaction, and, per backend, device hot-unplug/replug or host
RESETs, refusals and BUSY, with rmmod/insmod cycles on a full balloon. Each passes only with
no checker report on the console and no kmemleak object of ours, every page back after the
last rmmod, and (VMware) the model's audit clean. The virtio guest ends with a freeze and
restore, judged from the console (the agent's port does not survive it).
"""
import os
import random
import re
import subprocess
import time

import lab
from ktap import figure, test
from lab import MiB, Guest

SYSB = "/sys/kernel/balloon"
MODEL = "/sys/kernel/debug/uniballoon_vmware_model"
GUEST_MB = 1024
STRESS_SECONDS = int(os.environ.get("LAB_STRESS_SECONDS", "600"))

# What the checkers print. Lockdep and DEBUG_ATOMIC_SLEEP print "WARNING:" or "BUG:" lines
# as well; KASAN and KFENCE reports begin with "BUG: KASAN:" / "BUG: KFENCE:".
REPORT = re.compile(r"BUG:|WARNING:|Oops|general protection|possible circular locking|"
                    r"possible recursive locking|inconsistent lock state|suspicious RCU usage|"
                    r"ODEBUG:|Bad page|sleeping function called|blocked for more than|"
                    r"soft lockup|list_(add|del) corruption|rcu: INFO:|Call Trace")
# The OOM killer's own report has a Call Trace too; an OOM kill is counted on its own.
OOM_TRACE = re.compile(r"invoked oom-killer")


def sysb(g, name):
    return g.run(f"cat {SYSB}/{name}")[1].strip()


def sysb_int(g, name):
    return int(sysb(g, name))


def vmstat(g, field):
    return int(g.run(f"awk '$1 == \"{field}\" {{ print $2 }}' /proc/vmstat")[1].strip() or 0)


def free_kb(g):
    """MemFree plus the per-CPU free lists, with the page cache dropped (as check.py)."""
    g.run("sync; echo 3 > /proc/sys/vm/drop_caches")
    pcp = g.run("awk '$1 == \"count:\" { n += $2 } END { print n + 0 }' /proc/zoneinfo")[1]
    return g.meminfo()["MemFree"] + int(pcp) * 4


def reports(text):
    """Checker reports in console text, OOM killer traces excepted."""
    lines = text.splitlines()
    bad, skip_until = [], -1
    for i, line in enumerate(lines):
        if OOM_TRACE.search(line):
            skip_until = i + 60      # the OOM report's stack and memory dump
        if i > skip_until and REPORT.search(line):
            bad.append(line)
    return bad


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


class Stress:
    """The action loop both guests share; the backend supplies its own actions."""

    def __init__(self, g, kver, ko, name, insmod_args=""):
        self.g, self.kver, self.ko, self.name = g, kver, ko, name
        self.insmod_args = insmod_args
        self.seed = int(os.environ.get("LAB_STRESS_SEED", str(int(time.time()))))
        self.rng = random.Random(self.seed)
        self.counts = {}
        self.deflations = 0     # stats/oom_deflations of modules already unloaded

    def insmod(self):
        self.g.run(f"insmod {self.ko} {self.insmod_args}", timeout=120)

    def rmmod(self):
        self.deflations += sysb_int(self.g, "stats/oom_deflations")
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
        g.wait_for(lambda: sysb_int(g, "size") >= 32 * MiB, 120,
                   what="a balloon to unload")
        size = sysb_int(g, "size")
        self.rmmod()
        assert vmstat(g, "balloon_inflate") == vmstat(g, "balloon_deflate"), \
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
        g.wait_for(lambda: sysb(g, "backend") == "none", 120, what="backend gone after unplug")
        # QEMU deletes the device only once the guest has ejected the slot, after the driver
        g.wait_for(lambda: all(p["name"] != "balloon0" for p in
                               g.qmp("qom-list", path="/machine/peripheral")), 120,
                   what="the device deleted")
        g.qmp("device_add", driver="virtio-balloon-pci", id="balloon0",
              **{"deflate-on-oom": "on", "free-page-reporting": "on"})
        g.wait_for(lambda: sysb(g, "backend") == "virtio", 120, what="backend back after replug")


class VmwareStress(Stress):
    CAPS = (0x2, 0x6, 0xe, 0x2e, 0x3e)

    def actions(self):
        return [(self.host_target, 6), (self.override, 3), (self.host_reset, 2),
                (self.refusals, 2), (self.busy, 1), (self.reset_mid_batch, 1),
                (self.rmmod_insmod_full, 1)]

    def model(self, knob, value):
        self.g.run(f"echo {value} > {MODEL}/{knob}")

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
        out = self.g.run(f"cat {MODEL}/audit")[1]
        return {k: int(v, 0) for k, v in (l.split(": ") for l in out.splitlines())}

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
    total0, free0 = g.meminfo()["MemTotal"], free_kb(g)
    hog = g.meminfo()["MemAvailable"] // 1024 - 96
    mark = len(g.console())     # the console, unlike dmesg, never loses a line
    kills0 = vmstat(g, "oom_kill")
    s.insmod()
    s.after_insmod()
    start_load(g, hog)
    t0 = time.monotonic()
    try:
        done = s.run()
    except Exception as e:
        raise AssertionError(f"stopped after {time.monotonic() - t0:.0f} s (seed {s.seed}, "
                             f"actions {s.counts}): {e}") from e
    finally:
        stop_load(g)
    took = time.monotonic() - t0
    touched = g.run("grep -c touched /tmp/hog.log", check=False)[1].strip()
    kills = vmstat(g, "oom_kill") - kills0
    s.host_target(0)
    s.rmmod()
    deflations = s.deflations
    total, free = g.meminfo()["MemTotal"], free_kb(g)
    ours, others = kmemleak_ours(g)
    bad = reports(g.console()[mark:])
    assert not bad, "\n".join(bad[:20])
    assert not ours, "kmemleak: " + "\n".join(ours[:3])
    assert kills == 0, f"{kills} OOM kills"
    assert deflations > 0, f"the load never made the balloon deflate on OOM ({done})"
    assert vmstat(g, "balloon_inflate") == vmstat(g, "balloon_deflate")
    assert total == total0, f"MemTotal {total0} -> {total} kB"
    # Every page back: what the checkers' own bookkeeping (kmemleak, debug objects, stack
    # depot) kept from ten minutes of work stays within 32 MiB; one lost balloon batch
    # would not.
    assert free >= free0 - 32 * 1024, f"MemFree {free0} -> {free} kB"
    figure(kver, f"debug stress {name}", f"{took:.0f} s, seed {s.seed}, {deflations} OOM deflations, "
           f"{touched} hog rounds")
    return (f"{took:.0f} s (seed {s.seed}): {done}; hog {hog} MiB x{touched}, {deflations} OOM "
            f"deflations, 0 kills; MemFree {free0 - free:+d} kB; kmemleak: 0 ours ({others} other)")


def t_freeze_restore(g, ko):
    """Freeze and restore with a balloon, judged from the console (the agent's port
    does not come back)."""
    g.run("rmmod uniballoon 2>/dev/null || true")     # if the stress test stopped early
    g.run(f"insmod {ko}")
    g.qmp("balloon", value=(GUEST_MB - 200) * MiB)
    g.wait_for(lambda: sysb_int(g, "size") == 200 * MiB, 120, what="200 MiB ballooned")
    mark = len(g.console())
    g.run("echo devices > /sys/power/pm_test")
    g._send("echo freeze > /sys/power/state", 300)      # no answer comes back
    console = lambda: g.console()[mark:]  # noqa: E731
    g.wait_for(lambda: "PM: suspend exit" in console(), 300, what="suspend and resume")
    g.wait_for(lambda: g.qmp("query-balloon")["actual"] == (GUEST_MB - 200) * MiB, 120,
               what="balloon back after restore")
    assert "all pages returned" in console() and "backend virtio active" in console(), console()[-3000:]
    bad = reports(console())
    assert not bad, "\n".join(bad[:20])


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
