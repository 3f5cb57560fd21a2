"""make check, virtio part: the guests of a virtio-balloon device, and their tests.

Per kernel (jobs registered in check.py's JOBS): a plain (modern) device (guest_plain), a
legacy one with deflate-on-oom=on (guest_oom), module parameters and re-attach
(guest_params), free page reporting and compaction (guest_features), short boots for
page poisoning (guest_poison), free page hinting during a migration, without 9p
(guest_hint), a host that stops answering (guest_restore_fail, test build), and the
same virtio tests on Debian's arm64 kernel (guest_arm64). The host drives QMP; the
guest runs the kselftests in selftests/ (KTAP), whose results are counted one by one.
The VMware suite (check_vmware.py) reuses the OOM, stall and compaction helpers here.
"""
import re
import shlex
import subprocess
import time

import lab
from lab import GUEST_MB, MiB, SYSB, Guest
from ktap import figure, report, test
from arm64 import Arm64Guest
from stalls import OURS, readout_stall, stall_reports

PROJECT = lab.PROJECT
BUILD = PROJECT / "build"


# ---------------------------------------------------------------- guest helpers

def fill_for_oom(g, ask_mib, ask, host_agrees, timeout=120):
    """ask() has the host ask for ask_mib MiB, most of the guest: wait until the balloon
    holds it or, where that would take MemAvailable below the pressure reserve, is held
    visibly at the reserve (source floor, reserve met) within 16 MiB of where
    MemAvailable before the ask puts it (MemAvailable minus the reserve: 714-741 MiB
    of a 1 GiB guest on 6.1, 6.12 and 7.2, held within -2..+10 MiB of that); and the
    host agrees. Returns the size reached."""
    reserve = pressure_reserve(g)[0]
    reach = min(ask_mib * MiB, g.meminfo()["MemAvailable"] * 1024 - reserve) - 16 * MiB
    ask()

    def settled():
        size = g.sysb_int("size")
        if not host_agrees(size):
            return False
        if size == ask_mib * MiB:
            return True
        return (size >= reach and g.sysb("target_source") == "floor"
                and pressure_reserve(g)[1])
    g.wait_for(settled, timeout, what=lambda: f"balloon of {ask_mib} MiB or held at the reserve, at "
               f"{reach >> 20} MiB or more (size {g.sysb('size')}, source {g.sysb('target_source')})")
    return g.sysb_int("size")


def pressure_reserve(g):
    """(pressure reserve in bytes, met) from debugfs status."""
    status = g.run("cat /sys/kernel/debug/balloon/status")[1]
    m = re.search(r"pressure reserve: (\d+) bytes \(met: (yes|no)\)", status)
    assert m, status
    return int(m.group(1)), m.group(2) == "yes"


def load(g, ko):
    g.run("dmesg -C")
    g.run(f"insmod {ko}")
    assert g.sysb("backend") == "virtio", g.sysb("backend")
    # the host's initial request is read asynchronously after probe
    g.wait_for(lambda: g.sysb_int("size") == g.sysb_int("host_target"), 30, what="initial target")


def run_selftests(g, kver):
    for script in sorted((PROJECT / "selftests").glob("balloon_*.sh")):
        rc, out = g.run(f"{script}", timeout=500, check=False)
        seen = 0
        for line in out.splitlines():
            m = re.match(r"(not ok|ok) \d+ (.*?)( # SKIP (.*))?$", line)
            if m:
                seen += 1
                name = f"{kver}: {script.stem}: {m.group(2)}"
                if m.group(4) is not None:
                    report(True, name, m.group(4), skip=True)
                else:
                    report(m.group(1) == "ok", name, out if m.group(1) != "ok" else "")
            elif line.startswith("# ") and "took" in line:
                figure(kver, script.stem, line[2:])
        if not seen or rc not in (0, 1, 4):
            report(False, f"{kver}: {script.stem}: ran", f"rc={rc}\n{out}")


# ---------------------------------------------------------------- guest A: plain device

def t_owned_by_intree(g, ko):
    g.run("modprobe virtio_balloon")
    rc, out = g.run(f"insmod {ko}", check=False)
    assert rc != 0, "loaded although virtio_balloon holds the device"
    dmesg = g.run("dmesg")[1]
    assert "owned by driver 'virtio_balloon'" in dmesg, dmesg[-2000:]
    g.run("rmmod virtio_balloon")
    return re.search(r".*owned by driver.*", dmesg).group(0)


def t_qmp_down_up(g, kver):
    total0 = g.meminfo()["MemTotal"]
    down = g.balloon_to(256 * MiB)
    assert g.sysb_int("host_target") == 256 * MiB
    total = g.meminfo()["MemTotal"]
    assert total0 - total == 256 * 1024, f"MemTotal {total0} -> {total} kB"
    up = g.balloon_to(0)
    assert g.meminfo()["MemTotal"] == total0
    figure(kver, "QMP inflate 256 MiB", f"{down:.2f} s")
    figure(kver, "QMP deflate 256 MiB", f"{up:.2f} s")
    return f"inflate 256 MiB {down:.2f} s, deflate {up:.2f} s"


def t_huge_blocks(g):
    """Inflation takes 2 MiB blocks with several requests in flight; a
    deflation by less than a block splits one rather than overshoot."""
    c0 = backend_counters(g)
    g.balloon_to(256 * MiB)
    huge, c1 = huge_ballooned_mib(g), backend_counters(g)
    assert huge >= 128, f"only {huge} of 256 MiB in 2 MiB blocks"
    # every 4 KiB page the balloon holds, in blocks or not, is PageOffline, so
    # that hibernation and dump tools skip it
    offline = offline_pages(g)
    assert offline == 256 * 256, f"{offline} PageOffline pages for a 256 MiB balloon"
    assert c1["max_requests_in_flight"] > 1, c1
    assert c1["frames_inflated"] - c0["frames_inflated"] == 256 * 256, (c0, c1)
    inflated = g.sysb_int("stats/inflated")
    g.balloon_to(255 * MiB)
    assert g.sysb_int("stats/inflated") == inflated, "deflated too far, then inflated again"
    # small pages go first; only a balloon of nothing but blocks splits one
    assert huge_ballooned_mib(g) == (huge - 2 if huge == 256 else huge), (huge, huge_ballooned_mib(g))
    g.balloon_to(0)
    return f"{huge} of 256 MiB in 2 MiB blocks, {c1['max_requests_in_flight']} requests in flight at most"


def offline_pages(g):
    """Pages with KPF_OFFLINE (bit 23) in /proc/kpageflags."""
    # reads must be whole 8-byte entries
    return int(g.run("python3 -c 'import struct\n"
                     "f, n = open(\"/proc/kpageflags\", \"rb\", buffering=0), 0\n"
                     "while d := f.read(1 << 20):\n"
                     "    n += sum(v >> 23 & 1 for v in struct.unpack(f\"{len(d) // 8}Q\", d))\n"
                     "print(n)'")[1])


def t_guest_override(g):
    g.run(f"echo 300M > {SYSB}/target")
    g.wait_for(lambda: g.actual() == (GUEST_MB - 300) * MiB, 60, what="host sees the override")
    assert g.sysb("target_source") == "user"
    assert g.sysb_int("host_target") == 0
    g.run(f"echo host > {SYSB}/target")
    g.wait_for(lambda: g.actual() == GUEST_MB * MiB, 60, what="host sees the balloon empty again")
    assert g.sysb("target_source") == "host"


def t_floor(g):
    avail = g.meminfo()["MemAvailable"] * 1024
    floor = avail - 128 * MiB           # leaves room for about 128 MiB of balloon
    holds0 = g.sysb_int("stats/floor_holds")
    g.run(f"echo {floor} > {SYSB}/floor")
    try:
        g.qmp("balloon", value=GUEST_MB * MiB - 512 * MiB)
        g.wait_for(lambda: g.sysb("target_source") == "floor", 60, what="floor holds the target")
        size = g.sysb_int("size")
        assert g.sysb_int("host_target") == 512 * MiB
        assert 0 < size < 512 * MiB, f"size {size}"
        assert g.sysb_int("stats/floor_holds") > holds0
        # the floor follows MemAvailable: wait for a moment both sides agree
        g.wait_for(lambda: g.sysb_int("target") == g.sysb_int("size") and
                   g.actual() == GUEST_MB * MiB - g.sysb_int("size"), 30,
                   what="target in force, size and the host's view agree")
        ma = g.meminfo()["MemAvailable"] * 1024
        # MemAvailable moves a little on its own; the balloon stopped where the floor was
        assert ma >= floor - 8 * MiB, f"MemAvailable {ma >> 20} MiB below floor {floor >> 20} MiB"
        g.run(f"echo 0 > {SYSB}/floor")
        g.wait_for(lambda: g.sysb_int("size") == 512 * MiB, 60, what="inflation resumes without floor")
        return f"held at {size >> 20} MiB of 512 MiB asked, floor {floor >> 20} MiB"
    finally:
        g.run(f"echo 0 > {SYSB}/floor")
        g.balloon_to(0)


def t_guest_stats(g):
    g.qmp("qom-set", path="/machine/peripheral/balloon0", property="guest-stats-polling-interval", value=1)

    def fresh():
        s = g.qmp("qom-get", path="/machine/peripheral/balloon0", property="guest-stats")
        return s if s["stats"].get("stat-total-memory", -1) > 0 and s["last-update"] > t0 else None
    t0 = g.qmp("qom-get", path="/machine/peripheral/balloon0", property="guest-stats")["last-update"]
    s = g.wait_for(fresh, 30, what="fresh guest-stats")["stats"]
    mi = g.meminfo()
    assert s["stat-total-memory"] == mi["MemTotal"] * 1024, (s, mi["MemTotal"])
    for key, field in (("stat-free-memory", "MemFree"), ("stat-available-memory", "MemAvailable")):
        assert abs(s[key] - mi[field] * 1024) < 32 * MiB, f"{key} {s[key]} vs {field} {mi[field]} kB"
    for key in ("stat-major-faults", "stat-minor-faults", "stat-disk-caches"):
        assert s.get(key, -1) >= 0, f"{key} missing: {s}"
    g.qmp("qom-set", path="/machine/peripheral/balloon0", property="guest-stats-polling-interval", value=0)


def t_oom_deflate_needs_host(g):
    assert g.sysb("oom_deflate") == "0"
    rc, out = g.run(f"echo 1 > {SYSB}/oom_deflate", check=False)
    assert rc != 0 and "not permitted" in out, out
    assert "oom_deflate" not in g.sysb("features").split()


def bpftrace_sum(g, expr, action):
    """Sum expr over tracepoint:balloon:inflate while action() runs, with the
    issue's one-liner; returns (sum, bpftrace's output)."""
    out = g.bpftrace_while(f"tracepoint:balloon:inflate {{ @ = sum({expr}); }}", ["@"], action)
    sums = re.findall(r"^@: (\d+)$", out, re.M)     # printed once a second: the last counts
    return (int(sums[-1]) if sums else None), out


def t_bpftrace_host_inflate(g):
    total, out = bpftrace_sum(g, "args->pages << args->order", lambda: g.balloon_to(200 * MiB))
    assert total == 200 * 256, out
    g.balloon_to(0)


def t_rmmod_full(g):
    g.balloon_to(400 * MiB)
    # with DEFLATE_ON_OOM ballooned pages stay in MemTotal (as in-tree)
    left_memtotal = "oom_deflate" not in g.sysb("features").split()
    total = g.meminfo()["MemTotal"]
    g.run("rmmod uniballoon", timeout=120)
    mi = g.meminfo()
    want = total + (400 * 1024 if left_memtotal else 0)
    assert mi["MemTotal"] == want, f"MemTotal {total} -> {mi['MemTotal']} kB, want {want}"
    assert g.actual() == GUEST_MB * MiB, f"host sees {g.actual()}"
    assert "all pages returned" in g.run("dmesg")[1]
    rc, _ = g.run(f"test -e {SYSB}", check=False)
    assert rc != 0, f"{SYSB} still there"


def t_freeze_restore(g, ko):
    """Suspend with pm_test=devices runs the drivers' freeze and restore.
    The guest agent's virtio-serial port does not survive the suspend, so this
    is the guest's last test and is judged from the host: QMP and the console."""
    g.run(f"insmod {ko}")
    if g.run("test -w /sys/power/pm_test", check=False)[0] != 0:
        return "SKIP: kernel without CONFIG_PM_DEBUG"
    g.balloon_to(200 * MiB)
    mark = len(g.console_log.read_text(errors="replace"))
    g.run("echo devices > /sys/power/pm_test")
    g._send("echo freeze > /sys/power/state", 120)     # no answer comes back
    console = lambda: g.console_log.read_text(errors="replace")[mark:]  # noqa: E731
    g.wait_for(lambda: "PM: suspend exit" in console(), 120, what="suspend and resume")
    assert "all pages returned" in console(), console()[-3000:]
    assert "backend virtio active" in console(), console()[-3000:]
    # after restore the balloon goes back to what the host asks
    g.wait_for(lambda: g.actual() == GUEST_MB * MiB - 200 * MiB, 60, what="balloon back after restore")


def t_failed_restore(g, ko):
    """A restore that fails (the test build's test_fail_attach makes the engine
    refuse the re-attach) leaves nothing running, and removing the device then
    touches nothing that is gone (before the fix: a NULL dereference in
    ub_detach and a second del_vqs). Judged from the host, as after any suspend."""
    if g.run("test -w /sys/power/pm_test", check=False)[0] != 0:
        return "SKIP: kernel without CONFIG_PM_DEBUG"
    load(g, ko)
    g.balloon_to(64 * MiB)
    g.run("echo 1 > /sys/module/uniballoon/parameters/test_fail_attach")
    mark = len(g.console())
    console = lambda: g.console()[mark:]  # noqa: E731
    g.run("echo devices > /sys/power/pm_test")
    g._send("echo freeze > /sys/power/state", 120)     # no answer comes back
    g.wait_for(lambda: "PM: suspend exit" in console(), 120, what="suspend and resume")
    assert "all pages returned" in console(), console()[-3000:]
    assert "backend virtio active" not in console(), "the restore was not refused"
    g.qmp("device_del", id="balloon0")
    gone = lambda: all(p["name"] != "balloon0"  # noqa: E731
                       for p in g.qmp("qom-list", path="/machine/peripheral"))
    g.wait_for(gone, 60, what="the balloon device unplugged")
    bad = [l for l in console().splitlines()
           if re.search(r"BUG:|Oops|general protection|Call Trace", l)]
    assert not bad, "\n".join(bad[:10]) + "\n" + console()[-3000:]
    return "restore refused; unplug afterwards clean"


def t_host_stops_answering(g, ko):
    """A host that stops answering the queues (the test build's test_mute_host):
    each exchange gives up after 5 s (host_timeouts), a writer gets the engine's
    lock within one timeout (before the fix the worker slept on the host for ever
    holding it, and this write hung), and once the host answers again the balloon
    moves with no further timeout."""
    load(g, ko)
    g.balloon_to(64 * MiB)
    timeouts = lambda: backend_counters(g)["host_timeouts"]  # noqa: E731
    t0 = timeouts()
    g.run(f"echo 1 > {MUTE}")
    try:
        g.run(f"echo 16M > {SYSB}/target")        # a deflation the host never sees
        g.wait_for(lambda: timeouts() > t0, 30, what="an exchange timed out")
        start = time.monotonic()
        g.run(f"echo 32M > {SYSB}/target", timeout=20)
        took = time.monotonic() - start
    finally:
        g.run(f"echo 0 > {MUTE}")
    g.run(f"echo 0 > {SYSB}/target")
    g.wait_for(lambda: g.sysb_int("size") == 0 and g.actual() == GUEST_MB * MiB, 60,
               what="an empty balloon once the host answers")
    n, t1 = timeouts() - t0, timeouts()
    g.run(f"echo host > {SYSB}/target")
    g.balloon_to(16 * MiB)
    assert timeouts() == t1, f"{timeouts() - t1} timeouts after the host answered again"
    g.run("rmmod uniballoon", timeout=120)
    return f"{n} exchanges timed out; a target write took {took:.1f} s meanwhile"


MUTE = "/sys/module/uniballoon/parameters/test_mute_host"


# In the guest: a process waits to take {hog} MiB; the host is muted, a deflation asked for
# and its request sent (the worker now waits for the answer, test_host_timeout long), then
# a sysfs write is timed and the process takes its memory, more than is free;
# host_timeouts is read once it has it.
OOM_IN_WAIT = r"""
set -e
n=/sys/kernel/debug/balloon/backend
req() {{ sed -n 's/^deflate_requests: //p' $n; }}
rm -f /tmp/hog.go /tmp/hog.log
python3 -c 'import os, time
while not os.path.exists("/tmp/hog.go"): time.sleep(0.02)
b = b"\x01" * ({hog} << 20); print("held", flush=True); time.sleep(600)' > /tmp/hog.log 2>&1 &
echo $! > /tmp/hog.pid
r0=$(req)
echo 1 > {mute}
echo {target} > /sys/kernel/balloon/target
end=$(( $(date +%s) + 30 ))
while [ "$(req)" -le "$r0" ]; do [ $(date +%s) -lt $end ] || {{ echo no-request; exit 1; }}; done
a=$(date +%s.%N)
echo {write} > /sys/kernel/balloon/target
b=$(date +%s.%N)
touch /tmp/hog.go
while ! grep -q held /tmp/hog.log; do
    kill -0 $(cat /tmp/hog.pid) 2>/dev/null || {{ echo hog-died; cat /tmp/hog.log; exit 1; }}
    [ $(date +%s) -lt $end ] || {{ echo hog-stuck; exit 1; }}
    sleep 0.05
done
c=$(date +%s.%N)
echo "write $(awk "BEGIN {{ print $b - $a }}") hog $(awk "BEGIN {{ print $c - $b }}")" \
     "timeouts $(sed -n 's/^host_timeouts: //p' $n)"
"""
HOST_TIMEOUT = "/sys/module/uniballoon/parameters/test_host_timeout"


def t_oom_while_host_stalls(g, ko):
    """OOM while a deflation waits for a host that has stopped answering: the worker
    holds only the exchange lock while it waits, so a sysfs write and the shrinker and
    OOM notifier get the engine's lock at once, and they give pages the host has
    answered for back untold (QEMU never asks to be told). A process that needs more
    than is free gets it and nobody is killed, all before the wait ends (20 s here,
    test_host_timeout). Before the fix the engine's lock was held across the wait:
    even the backend's debugfs file, read to see the request sent, answered only
    once the wait had ended (host_timeouts 0 -> 1), and the notifier, which gives
    up on the lock after 1 s, could not have helped within it. A kept pattern is
    unchanged, and every page comes back."""
    load(g, ko)
    try:
        return oom_while_host_stalls(g)
    except BaseException:
        # the guest's next test loads the module again, with the host asking for nothing
        g.run(f"echo 0 > {MUTE}; rmmod uniballoon", check=False, timeout=120)
        g.qmp("balloon", value=GUEST_MB * MiB)
        raise


def oom_while_host_stalls(g):
    assert "oom_deflate" in g.sysb("features").split(), g.sysb("features")
    g.balloon_to(384 * MiB)
    keep = (g.meminfo()["MemAvailable"] * 1024 - 48 * MiB) & ~4095
    keeper = lab.PatternKeeper(g, keep).start()
    timeouts = lambda: backend_counters(g)["host_timeouts"]  # noqa: E731
    t0 = timeouts()
    kills0, deflations0 = g.vmstat("oom_kill"), g.sysb_int("stats/oom_deflations")
    g.run(f"echo 20 > {HOST_TIMEOUT}")
    try:
        out = g.run("bash -c " + shlex.quote(OOM_IN_WAIT.format(
            mute=MUTE, target="128M", write="120M", hog=160)), timeout=120)[1]
    finally:
        g.run(f"echo 0 > {MUTE}; echo 0 > {HOST_TIMEOUT}; kill $(cat /tmp/hog.pid) || true")
    m = re.search(r"write ([\d.]+) hog ([\d.]+) timeouts (\d+)", out)
    assert m, out
    write, hog, t1 = float(m.group(1)), float(m.group(2)), int(m.group(3))
    kills = g.vmstat("oom_kill") - kills0
    deflations = g.sysb_int("stats/oom_deflations") - deflations0
    assert t1 == t0 and write < 1 and not kills and deflations, (
        f"host_timeouts {t0} -> {t1} (the wait ended first if they differ), a write took {write:.2f} s, "
        f"the process got 160 MiB in {hog:.2f} s, {kills} OOM kills, {deflations} emergency deflations\n"
        + g.run("dmesg")[1][-3000:])
    kept = keeper.check()
    keeper.stop()
    g.wait_for(lambda: g.sysb_int("size") <= 120 * MiB and g.actual() == GUEST_MB * MiB - g.sysb_int("size"),
               60, what=lambda: f"the deflation done once the host answers (size {g.sysb('size')}, "
               f"actual {g.actual()})")
    g.qmp("balloon", value=GUEST_MB * MiB)
    g.run("rmmod uniballoon", timeout=120)
    assert "all pages returned" in g.run("dmesg")[1], g.run("dmesg")[1][-3000:]
    return (f"a write took {write * 1000:.0f} ms and 160 MiB came back in {hog:.2f} s, "
            f"within the host's wait; {deflations} emergency deflations, no kill; {kept}")


def unanswered_pages(g):
    """Pages in inflate requests the host has not answered (debugfs status)."""
    status = g.run("cat /sys/kernel/debug/balloon/status")[1]
    return int(re.search(r"^pages unanswered: *(\d+)", status, re.M).group(1))


def rmmod_timed(g, limit):
    """rmmod, which must end within limit seconds; returns (seconds, dmesg)."""
    start = time.monotonic()
    g.run("rmmod uniballoon", timeout=limit + 600)
    took = time.monotonic() - start
    dmesg = g.run("dmesg")[1]
    assert took < limit, f"rmmod took {took:.0f} s (limit {limit} s)\n{dmesg[-2000:]}"
    return took, dmesg


# The stale-inflation test's stamping process is a lab.PatternKeeper over most of the
# guest's memory, all of it THP, which the OOM killer may pick as any process.
# The balloon's 2 MiB blocks are not movable: freed, they are the last free memory an
# anonymous mapping gets (6.12 keeps some on its per-CPU lists), so the mapping takes
# what it can: THP, MemAvailable - 32 MiB. That reached 20-24 MiB of the 64 stale on
# 6.12 and all of them on 6.1; 4 KiB pages and MemAvailable - 64 MiB once reached none.
CRASH = re.compile(r"segfault|BUG:|Oops|general protection|Out of memory")


def t_stale_inflate_keeps_data(g, ko):
    """The host stalls (test_mute_host) while inflate requests are queued, and then
    asks for the balloon back. The pages of a request it has not answered may still be
    discarded whenever it gets to it, so they must not go back to the guest (before the
    fix the deflation's exchange timed out too and they were freed; once the host
    answered again it discarded them, zeroing memory in use). A process stamps most of
    the guest's memory and a tmpfs file is hashed before the host answers again; both
    are unchanged after it did."""
    mark = len(g.console())
    load(g, ko)
    timeouts = lambda: backend_counters(g)["host_timeouts"]  # noqa: E731
    t0 = timeouts()
    g.run(f"echo 1 > {MUTE}")
    start = time.monotonic()
    g.qmp("balloon", value=GUEST_MB * MiB - 192 * MiB)
    # the first batch (64 MiB) is in requests the host has not answered; no more is
    # sent until it answers (before the fix: 192 MiB, the rest sent nowhere)
    g.wait_for(lambda: timeouts() > t0 and g.sysb_int("size") > 0 and
               g.sysb_int("size") == unanswered_pages(g) << 12 and g.sysb("blocked") == "host-silent",
               60, what=lambda: f"a balloon of unanswered pages, blocked host-silent (host_timeouts "
               f"{timeouts() - t0}, size {g.sysb('size')}, unanswered {unanswered_pages(g)} pages, "
               f"blocked {g.sysb('blocked')})")
    inflated, asked = g.sysb_int("size"), time.monotonic()
    g.qmp("balloon", value=GUEST_MB * MiB)
    # deflation gives back nothing the host may still discard: the whole balloon waits
    g.wait_for(lambda: g.sysb_int("host_target") == 0, 30, what="the host's request for none")
    g.wait_for(lambda: g.sysb("blocked") == "host-silent", 30,
               what=lambda: f"deflation blocked host-silent (is {g.sysb('blocked')})")
    kept = g.sysb_int("size")
    assert kept == inflated == unanswered_pages(g) << 12, (
        f"size {kept}, inflated {inflated}, unanswered {unanswered_pages(g)} pages")
    deflated = time.monotonic() - asked
    g.run("cp /usr/bin/python3 /dev/shm/ref")
    ref = g.run("sha256sum < /dev/shm/ref")[1].split()[0]
    nbytes = (g.meminfo()["MemAvailable"] * 1024 - 32 * MiB) & ~4095
    stamp = lab.PatternKeeper(g, nbytes, thp_percent=100, oom_score_adj=0).start()
    stamped = time.monotonic()
    g.run(f"echo 0 > {MUTE}")
    # one more exchange: the host reaches the requests it left in its queue
    g.qmp("balloon", value=GUEST_MB * MiB - 16 * MiB)
    g.wait_for(lambda: g.sysb_int("size") == 16 * MiB and g.actual() == GUEST_MB * MiB - 16 * MiB, 120,
               what=lambda: f"a 16 MiB balloon once the host answers (size {g.sysb('size')}, "
               f"actual {g.actual()})")
    n_timeouts = timeouts() - t0
    result = stamp.compare()
    stamp.stop()
    sha = g.run("sha256sum < /dev/shm/ref")[1].split()[0]
    crashes = [l for l in (g.run("dmesg")[1] + g.console()[mark:]).splitlines() if CRASH.search(l)]
    m = re.match(r"\d+ bad (\d+) zero (\d+)", result)
    assert m and m.group(1) == "0" and sha == ref and not crashes, (
        f"stamp of {nbytes >> 20} MiB: {result!r}; tmpfs file {'unchanged' if sha == ref else 'CHANGED'}; balloon "
        f"{inflated >> 20} MiB, {kept >> 20} MiB kept at deflation; "
        f"{n_timeouts} timeouts\n" + "\n".join(crashes[:10]))
    g.balloon_to(0)
    g.run("rmmod uniballoon", timeout=120)
    assert "all pages returned" in g.run("dmesg")[1], g.run("dmesg")[1][-3000:]
    return (f"{nbytes >> 20} MiB stamped, 0 bad pages; {n_timeouts} timeouts; "
            f"{kept >> 20} MiB kept; muted for {stamped - start:.0f} s (deflation {deflated:.0f} s)")


# The dead-host guest: room for a balloon of 1 GiB of 4 KiB pages beside the guest's own.
DEAD_HOST_MB = 2048


def balloon_4k_dead_host(g, ko):
    """Load with huge_blocks=N, take 1 GiB of 4 KiB pages, then mute the host.
    Returns MemTotal (kB) before."""
    g.run("dmesg -C")
    total = g.meminfo()["MemTotal"]
    g.run(f"insmod {ko} huge_blocks=0")
    g.balloon_to(1024 * MiB, timeout=300)
    status = g.run("cat /sys/kernel/debug/balloon/status")[1]
    assert re.search(r"^huge pages: *0 ", status, re.M), status
    g.run(f"echo 1 > {MUTE}")
    return total


def t_rmmod_dead_host(g, ko):
    """rmmod with 1 GiB of 4 KiB pages (huge_blocks=N) and a host that no longer
    answers: the wait for the host is bounded for the whole unload (one exchange
    times out, the rest go back untold, as QEMU, which never asks to be told,
    allows), not per 8 MiB batch (128 x 5 s before the fix). Every page comes back."""
    total = balloon_4k_dead_host(g, ko)
    took, dmesg = rmmod_timed(g, 30)
    assert "all pages returned" in dmesg, dmesg[-2000:]
    assert g.meminfo()["MemTotal"] == total, f"MemTotal {total} -> {g.meminfo()['MemTotal']} kB"
    g.qmp("balloon", value=g.mem_mb * MiB)
    return f"rmmod took {took:.1f} s"


def t_unplug_dead_host(g, ko):
    """Hot-unplug with 1 GiB of 4 KiB pages and a host that no longer answers: the
    device's removal (detach, as rmmod) ends within 30 s, every page back; a new
    device then works."""
    total = balloon_4k_dead_host(g, ko)
    took = unplug(g, timeout=120)
    dmesg = g.run("dmesg")[1]
    assert took < 30 and "all pages returned" in dmesg, f"unplug took {took:.0f} s\n{dmesg[-2000:]}"
    assert g.meminfo()["MemTotal"] == total, f"MemTotal {total} -> {g.meminfo()['MemTotal']} kB"
    g.run(f"echo 0 > {MUTE}")
    plug(g, "free-page-reporting=on")
    move_and_unload(g)
    return f"unplug took {took:.1f} s"


def move_and_unload(g):
    """The device works: a 16 MiB balloon and back to none, then rmmod."""
    g.balloon_to(16 * MiB)
    g.qmp("balloon", value=g.mem_mb * MiB)
    g.wait_for(lambda: g.sysb_int("size") == 0, 60, what="an empty balloon")
    g.run("rmmod uniballoon")


def t_freeze_dead_host(g, ko):
    """Freeze (suspend with pm_test=devices) with 1 GiB of 4 KiB pages and a host
    that no longer answers: the balloon's freeze (detach, as rmmod) gives every page
    back within 30 s of the suspend's start. The agent does not survive a suspend:
    the guest's last test, judged from the host."""
    if g.run("test -w /sys/power/pm_test", check=False)[0] != 0:
        return "SKIP: kernel without CONFIG_PM_DEBUG"
    balloon_4k_dead_host(g, ko)
    mark = len(g.console())
    console = lambda: g.console()[mark:]  # noqa: E731
    g.run("echo devices > /sys/power/pm_test")
    start = time.monotonic()
    g._send("echo freeze > /sys/power/state", 120)     # no answer comes back
    g.wait_for(lambda: "all pages returned" in console(), 120, what="the balloon's freeze")
    took = time.monotonic() - start
    g.wait_for(lambda: "PM: suspend exit" in console(), 120, what="suspend and resume")
    assert took < 30, f"the freeze gave the pages back {took:.0f} s after the suspend began\n{console()[-2000:]}"
    bad = [l for l in console().splitlines() if re.search(r"BUG:|Oops|general protection|Call Trace", l)]
    assert not bad, "\n".join(bad[:10]) + "\n" + console()[-3000:]
    return f"pages back {took:.1f} s after the suspend began"


def t_rmmod_unanswered(g, ko):
    """A host that stops answering in the middle of an inflation, then rmmod: the
    pages of the request it never answered stay allocated for good (it may still
    discard them), and one dmesg line counts them; every other page comes back, and
    the unload ends within 30 s."""
    g.run("dmesg -C")
    total = g.meminfo()["MemTotal"]
    g.qmp("balloon", value=g.mem_mb * MiB)     # start from an empty balloon
    load(g, ko)
    timeouts = lambda: backend_counters(g)["host_timeouts"]  # noqa: E731
    t0 = timeouts()
    g.run(f"echo 1 > {MUTE}")
    g.qmp("balloon", value=g.mem_mb * MiB - 128 * MiB)
    g.wait_for(lambda: timeouts() > t0 and unanswered_pages(g) > 0, 60,
               what=lambda: f"an inflation timed out (timeouts {timeouts() - t0}, "
                            f"unanswered {unanswered_pages(g)})")
    kept = unanswered_pages(g)
    took, dmesg = rmmod_timed(g, 30)
    m = re.search(r"detached, (\d+) pages \(\d+ KiB\) kept allocated for good", dmesg)
    assert m and int(m.group(1)) == kept, f"want {kept} pages kept:\n{dmesg[-2000:]}"
    lost = total - g.meminfo()["MemTotal"]
    assert lost == kept * 4, f"MemTotal {total} -> {g.meminfo()['MemTotal']} kB, {kept} pages kept"
    return f"{kept} pages kept ({kept >> 8} MiB), rmmod took {took:.1f} s"


def t_rmmod_report_held(g, ko):
    """A host that stops taking free page reports: rmmod waits 5 s for the report
    it holds, then resets the device, so that the host has forgotten the report
    before its blocks go back to the free lists, and ends within 30 s (before the
    fix it waited for ever). The device works again after a reload."""
    g.run("dmesg -C")
    g.qmp("balloon", value=g.mem_mb * MiB)
    load(g, ko)
    assert backend_counters(g).get("reporting_active") == 1, backend_counters(g)
    g.run(f"echo 1 > {MUTE}")
    held = lambda: backend_counters(g)["report_in_flight"] == 1  # noqa: E731
    g.run(HOLD)     # 300 MiB freed at once: the kernel reports it
    g.wait_for(lambda: "touched" in g.run("cat /tmp/hold.log")[1], 120, what="300 MiB touched")
    g.run("kill $(cat /tmp/hold.pid); while kill -0 $(cat /tmp/hold.pid) 2>/dev/null; do sleep 0.1; done")
    g.wait_for(held, 60, what=lambda: f"a report held by the host ({backend_counters(g)})")
    took, dmesg = rmmod_timed(g, 30)
    assert "not taken a free page report in 5 s: resetting the device" in dmesg, dmesg[-2000:]
    assert "all pages returned" in dmesg, dmesg[-2000:]
    load(g, ko)
    move_and_unload(g)
    return f"rmmod took {took:.1f} s"


def guest_restore_fail(kver, ko):
    # its own guest: where pages go back too early, the guest's memory is what breaks
    with Guest(kver, mem_mb=GUEST_MB, name=f"stale-{kver}") as g:
        test(f"{kver}: a host that stalls mid-inflation: no page it may still discard goes back "
             "to the guest (data unchanged)", t_stale_inflate_keeps_data, g, ko)
    with Guest(kver, mem_mb=GUEST_MB, balloon_opts="deflate-on-oom=on", name=f"restore-{kver}") as g:
        test(f"{kver}: a host that stops answering: exchanges time out, writers wait one timeout at most",
             t_host_stops_answering, g, ko)
        test(f"{kver}: OOM while the host stalls: memory back within the host's wait, no OOM kill",
             t_oom_while_host_stalls, g, ko)
        test(f"{kver}: a failed restore, then device removal: nothing touched twice",
             t_failed_restore, g, ko)
    with Guest(kver, mem_mb=DEAD_HOST_MB, balloon_opts="free-page-reporting=on",
               name=f"dead-host-{kver}") as g:
        keeper = lab.PatternKeeper(g).start()
        test(f"{kver}: rmmod with 1 GiB of 4 KiB pages and a dead host ends within 30 s, every page back",
             t_rmmod_dead_host, g, ko)
        test(f"{kver}: hot-unplug with 1 GiB of 4 KiB pages and a dead host ends within 30 s, every page back",
             t_unplug_dead_host, g, ko)
        test(f"{kver}: rmmod after an unanswered inflation keeps its pages allocated, says so, within 30 s",
             t_rmmod_unanswered, g, ko)
        test(f"{kver}: rmmod while the host holds a free page report ends within 30 s, device reset first",
             t_rmmod_report_held, g, ko)
        test(f"{kver}: a process's data is unchanged after rmmods with a dead host and a held report",
             keeper.check)
        # last: the agent does not survive a suspend
        test(f"{kver}: freeze with 1 GiB of 4 KiB pages and a dead host gives every page back within 30 s",
             t_freeze_dead_host, g, ko)


def t_device_removal(g, ko):
    """Hot-unplug of the device while the balloon holds pages."""
    g.run(f"insmod {ko}")
    g.balloon_to(300 * MiB)
    total = g.meminfo()["MemTotal"]
    g.qmp("device_del", id="balloon0")
    g.wait_for(lambda: g.sysb("backend") == "none", 60, what="backend gone after unplug")
    assert g.meminfo()["MemTotal"] == total + 300 * 1024
    assert "all pages returned" in g.run("dmesg")[1]
    g.run("rmmod uniballoon")


def t_version_1(g, want):
    out = g.run("cat /sys/kernel/debug/balloon/backend")[1]
    assert f"version_1: {want}" in out, out


def t_no_stalls(g):
    """The balloon never hogs a CPU: no soft lockup or RCU stall on the console with
    the module's code on its stack. Under TCG a vCPU the host did not run for many
    seconds also reads as a stall of whatever task it was running; such a report,
    without our code in it, is a failure only if the guest's clocksource watchdog
    did not also see the host stop it (Long readout interval of a second or more)."""
    console = g.console_log.read_text(errors="replace")
    reports = stall_reports(console)
    ours = [r for r in reports if any(OURS in l for l in r)]
    assert not ours, "\n".join(ours[0][:40])
    starved = readout_stall(console.splitlines())
    others = [r[0] for r in reports]
    assert not others or starved >= 1, "\n".join(others[:5])
    if others:
        return (f"{len(others)} stall report(s) without the module's code while the host starved "
                f"the guest (clocksource readout stalls up to {starved:.1f} s): " + "; ".join(others[:3]))
    return None


def takes_device(g, kver, ko):
    """A fresh guest's first steps: the in-tree driver's hold on the device is named,
    then the module binds it. False if it does not (the guest's other tests need it)."""
    figure(kver, "boot to agent", f"{g.boot_seconds:.1f} s")
    test(f"{kver}: dmesg says when virtio_balloon owns the device", t_owned_by_intree, g, ko)
    return test(f"{kver}: module loads and binds the virtio balloon", load, g, ko)


def guest_plain(kver, ko):
    with Guest(kver, mem_mb=GUEST_MB, name=f"plain-{kver}") as g:
        if not takes_device(g, kver, ko):
            return
        keeper = lab.PatternKeeper(g).start()
        test(f"{kver}: QMP balloon down and up, both sides and MemTotal agree", t_qmp_down_up, g, kver)
        test(f"{kver}: 2 MiB blocks, requests in flight, split only when needed", t_huge_blocks, g)
        test(f"{kver}: guest override via target is seen by the host, then 'host'", t_guest_override, g)
        test(f"{kver}: floor holds a host request, visibly", t_floor, g)
        test(f"{kver}: guest-stats read by the host match /proc/meminfo", t_guest_stats, g)
        test(f"{kver}: oom_deflate needs the host's DEFLATE_ON_OOM", t_oom_deflate_needs_host, g)
        test(f"{kver}: bpftrace one-liner sums host-driven inflation", t_bpftrace_host_inflate, g)
        test(f"{kver}: the modern (VERSION_1) device is driven as such", t_version_1, g, 1)
        run_selftests(g, kver)
        test(f"{kver}: rmmod with a full balloon returns every page", t_rmmod_full, g)
        test(f"{kver}: device removal with a full balloon returns every page", t_device_removal, g, ko)
        test(f"{kver}: a process's data is unchanged after every move above (inflate, deflate, 2 MiB "
             "blocks, overrides, rmmod and device removal with a full balloon)", keeper.check)
        test(f"{kver}: no soft lockup or RCU stall (plain guest)", t_no_stalls, g)


# ---------------------------------------------------------------- guest B: deflate-on-oom

# It says where its time went: its own CPU (user, system) and the guest's
# idle time (a vCPU with nothing to run while the process waits).
HOG = ("echo -1000 > /proc/$PPID/oom_score_adj; "
       "python3 -c 'import mmap, os, time\n"
       "open(\"/proc/self/oom_score_adj\", \"w\").write(\"1000\")\n"
       "idle = lambda: int(open(\"/proc/stat\").readline().split()[4]) / os.sysconf(\"SC_CLK_TCK\")\n"
       "n = 600 << 20\nm = mmap.mmap(-1, n)\nt, i0, c0 = time.monotonic(), idle(), os.times()\n"
       "for i in range(0, n, 4096): m[i] = 1\n"
       "c = os.times()\n"
       "print(\"touched\", n >> 20, \"MiB in\", round(time.monotonic() - t, 2), \"s (user\",\n"
       "      round(c.user - c0.user, 1), \"s, system\", round(c.system - c0.system, 1),\n"
       "      \"s, guest idle\", round(idle() - i0, 1), \"s)\")'")


def hog_gets_memory(g):
    """The 600 MiB process must finish, with no OOM kill, thanks to the balloon."""
    kills0, deflations0 = g.vmstat("oom_kill"), g.sysb_int("stats/oom_deflations")
    t0 = time.monotonic()
    rc, out = g.run(HOG, timeout=300, check=False)
    took = time.monotonic() - t0
    assert rc == 0, f"hog rc={rc}: {out}"
    assert g.vmstat("oom_kill") == kills0, "the OOM killer ran"
    assert g.sysb_int("stats/oom_deflations") > deflations0
    return out, took


def t_oom_deflate_on(g, kver):
    assert g.sysb("oom_deflate") == "1"
    assert "oom_deflate" in g.sysb("features").split()
    held = fill_for_oom(g, 800, lambda: g.qmp("balloon", value=GUEST_MB * MiB - 800 * MiB),
                        lambda size: g.actual() == GUEST_MB * MiB - size)
    out, took = hog_gets_memory(g)
    assert g.sysb("target_source") == "oom"
    assert g.actual() == GUEST_MB * MiB - g.sysb_int("size"), "host and guest disagree"
    figure(kver, "OOM: 600 MiB touched, balloon 800 MiB", f"{took:.1f} s")
    return (f"{out.strip()}; {took:.1f} s; balloon {held >> 20} MiB before, "
            f"{g.sysb_int('size') >> 20} MiB now")


def t_oom_deflate_off(g):
    g.run(f"echo 0 > {SYSB}/oom_deflate")
    g.balloon_to(800 * MiB)
    kills0, deflations0 = g.vmstat("oom_kill"), g.sysb_int("stats/oom_deflations")
    rc, out = g.run(HOG, timeout=300, check=False)
    assert rc != 0, f"hog survived: {out}"
    assert g.vmstat("oom_kill") > kills0, "no OOM kill recorded"
    assert g.sysb_int("stats/oom_deflations") == deflations0
    assert g.sysb_int("size") == 800 * MiB, "balloon gave memory back"
    g.run(f"echo 1 > {SYSB}/oom_deflate")
    g.balloon_to(0)
    return f"hog rc={rc}, balloon kept 800 MiB"


def guest_oom(kver, ko):
    # a legacy-only device: the same protocol with guest-endian frame numbers
    with Guest(kver, mem_mb=GUEST_MB, balloon_opts="deflate-on-oom=on,disable-modern=on",
               name=f"oom-{kver}") as g:
        keeper = lab.PatternKeeper(g).start()
        if not test(f"{kver}: module loads on a legacy deflate-on-oom device", load, g, ko):
            return
        test(f"{kver}: the legacy device is driven as such", t_version_1, g, 0)
        test(f"{kver}: OOM with oom_deflate 1: the process gets the memory, nobody is killed",
             t_oom_deflate_on, g, kver)
        test(f"{kver}: OOM with oom_deflate 0: the balloon keeps its pages", t_oom_deflate_off, g)
        test(f"{kver}: rmmod after OOM returns every page", t_rmmod_full, g)
        # before the freeze: the agent's port does not survive it (t_freeze_restore)
        test(f"{kver}: a process's data is unchanged after OOM deflation and rmmod", keeper.check)
        test(f"{kver}: freeze and restore hand pages back and refill", t_freeze_restore, g, ko)


# ---------------------------------------------------------------- guest: module parameters, re-attach

PARAMS = {"floor": 300 * MiB, "inflate_rate": 64 * MiB, "deflate_rate": 32 * MiB,
          "oom_deflate": 0, "oom_deflate_size": 32 * MiB}


def module_loaded(g):
    return g.run("grep -q '^uniballoon ' /proc/modules", check=False)[0] == 0


def unloaded(g):
    """Each test of this guest starts without the module, whatever the last one left."""
    if module_loaded(g):
        g.run("rmmod uniballoon", timeout=120)


def t_params_load(g, ko):
    """Load-time parameters land in /sys/kernel/balloon (oom_deflate=0 on a deflate-on-oom
    device, whose default is 1) and read the same in /sys/module/.../parameters, 0444."""
    unloaded(g)
    g.run("dmesg -C")
    g.run(f"insmod {ko} floor=300M inflate_rate=64M deflate_rate=32m oom_deflate=0 oom_deflate_size=32M")
    assert g.sysb("backend") == "virtio", g.sysb("backend")
    assert "oom_deflate" in g.sysb("features").split()
    for name, want in PARAMS.items():
        assert g.sysb_int(name) == want, f"{name}: {g.sysb(name)}, want {want}"
        pfile = f"/sys/module/uniballoon/parameters/{name}"
        assert int(g.run(f"cat {pfile}")[1]) == want, f"{pfile}: {g.run(f'cat {pfile}')[1]}"
        assert g.run(f"stat -c %a {pfile}")[1].strip() == "444"
    # the parameters read the setting in force, not what was given at load
    g.run(f"echo 128M > {SYSB}/floor")
    assert int(g.run("cat /sys/module/uniballoon/parameters/floor")[1]) == 128 * MiB
    g.run("rmmod uniballoon", timeout=120)
    return ", ".join(f"{k}={v}" for k, v in PARAMS.items())


def t_params_bad(g, ko):
    """A bad value fails the load with EINVAL and one line naming it; nothing stays loaded."""
    cases = (("floor=12X", "floor=12X: invalid"), ("inflate_rate=100", "inflate_rate=100: out of range"),
             ("floor=1T", "floor=1T: out of range"), ("oom_deflate=2", "oom_deflate=2: invalid"),
             ("oom_deflate_size=-1", "oom_deflate_size=-1: invalid"))
    for arg, line in cases:
        unloaded(g)
        g.run("dmesg -C")
        rc, out = g.run(f"insmod {ko} floor=64M {arg}", check=False)
        # kmod's insmod says "Invalid parameters" for EINVAL
        assert rc != 0 and "Invalid param" in out, f"{arg}: rc {rc}: {out}"
        dmesg = [l for l in g.run("dmesg")[1].splitlines() if "uniballoon" in l]
        assert len(dmesg) == 1 and line in dmesg[0], f"{arg}: {dmesg}"
        assert not module_loaded(g), f"{arg}: module still loaded"
        assert g.run(f"test -e {SYSB}", check=False)[0] != 0, f"{arg}: {SYSB} still there"
    return f"{len(cases)} bad values refused, e.g. {dmesg[0].split('] ', 1)[-1]!r}"


def unplug(g, timeout=60):
    """Hot-unplug the balloon device; returns the seconds until the module let it go
    (backend "none"), then waits until QEMU has removed it."""
    start = time.monotonic()
    g.qmp("device_del", id="balloon0")
    g.wait_for(lambda: g.sysb("backend") == "none", timeout, what="backend gone after unplug")
    took = time.monotonic() - start
    gone = lambda: all(p["name"] != "balloon0"  # noqa: E731
                       for p in g.qmp("qom-list", path="/machine/peripheral"))
    g.wait_for(gone, 60, what="the balloon device unplugged")
    return took


def plug(g, opts=""):
    """Plug a new balloon device (with opts, "key=value,...") as balloon0; waits for
    the module to take it."""
    extra = dict(o.split("=") for o in opts.split(",") if o)
    g.qmp("device_add", driver="virtio-balloon-pci", id="balloon0", **extra)
    g.wait_for(lambda: g.sysb("backend") == "virtio", 60, what="backend back after replug")


def replug(g, opts=""):
    """Hot-unplug the balloon device, then plug a new one (with opts) under the same id."""
    unplug(g)
    plug(g, opts)


def t_settings_survive_replug(g, ko):
    """oom_deflate 0, a floor and a user override set through sysfs survive an unplug and a
    replug; oom_deflate reads 0 on a device without DEFLATE_ON_OOM, and the user's 1 comes
    back with a device that has it."""
    unloaded(g)
    g.run(f"insmod {ko}")
    assert g.sysb("oom_deflate") == "1", g.sysb("oom_deflate")
    g.run(f"echo 0 > {SYSB}/oom_deflate")
    g.run(f"echo 200M > {SYSB}/floor")
    g.run(f"echo 96M > {SYSB}/target")
    g.wait_for(lambda: g.actual() == GUEST_MB * MiB - 96 * MiB, 60, what="host sees the override")
    t0 = time.monotonic()
    replug(g, "deflate-on-oom=on")
    assert "oom_deflate" in g.sysb("features").split(), g.sysb("features")
    got = {k: g.sysb(k) for k in ("oom_deflate", "floor", "target", "target_source")}
    assert got == {"oom_deflate": "0", "floor": str(200 * MiB), "target": str(96 * MiB),
                   "target_source": "user"}, got
    g.wait_for(lambda: g.actual() == GUEST_MB * MiB - 96 * MiB and g.sysb_int("size") == 96 * MiB, 60,
               what="the override refills the new device")
    took = time.monotonic() - t0
    # the user's 1, on a device without the feature, then with it again
    g.run(f"echo 1 > {SYSB}/oom_deflate")
    replug(g)
    assert "oom_deflate" not in g.sysb("features").split(), g.sysb("features")
    assert g.sysb("oom_deflate") == "0"
    rc, out = g.run(f"echo 1 > {SYSB}/oom_deflate", check=False)
    assert rc != 0 and "not permitted" in out, out
    replug(g, "deflate-on-oom=on")
    assert g.sysb("oom_deflate") == "1", g.sysb("oom_deflate")
    # with oom_deflate at 1 the pressure reserve (4 x the 200M floor) may hold the override
    status = g.run("cat /sys/kernel/debug/balloon/status")[1]
    assert re.search(r"^user override: +yes", status, re.M), status
    assert g.sysb("target_source") in ("user", "floor"), g.sysb("target_source")
    assert g.sysb_int("floor") == 200 * MiB, g.sysb("floor")
    g.run(f"echo host > {SYSB}/target")
    g.wait_for(lambda: g.actual() == GUEST_MB * MiB, 60, what="the balloon empty again")
    g.run("rmmod uniballoon", timeout=120)
    return f"unplug, replug and refill to the override in {took:.1f} s; 3 replugs"


def guest_params(kver, ko):
    with Guest(kver, mem_mb=GUEST_MB, balloon_opts="deflate-on-oom=on", name=f"params-{kver}") as g:
        test(f"{kver}: module parameters set the settings at load, 0444, reading what is in force",
             t_params_load, g, ko)
        test(f"{kver}: a bad parameter fails the load with one dmesg line naming it", t_params_bad, g, ko)
        test(f"{kver}: oom_deflate, floor and override survive device unplug and replug",
             t_settings_survive_replug, g, ko)
# ---------------------------------------------------------------- guest C: free page reporting etc.

def backend_counters(g):
    """/sys/kernel/debug/balloon/backend as {name: int} (numeric lines only)."""
    out = g.run("cat /sys/kernel/debug/balloon/backend")[1]
    return {k.strip(): int(v) for k, v in (l.split(":", 1) for l in out.splitlines() if ":" in l)
            if v.strip().lstrip("-").isdigit()}


# touches 300 MiB, says so, then holds it until killed
HOLD = ("python3 -c 'import mmap, time\n"
        "n = 300 << 20\nm = mmap.mmap(-1, n)\n"
        "for i in range(0, n, 4096): m[i] = 1\n"
        "print(\"touched\", flush=True)\ntime.sleep(600)' > /tmp/hold.log 2>&1 & echo $! > /tmp/hold.pid")


def t_free_page_reporting(g, kver):
    assert "free_page_reporting" in g.sysb("features").split(), g.sysb("features")
    c0 = backend_counters(g)
    assert c0.get("reporting_active") == 1, c0
    g.run(HOLD)
    g.wait_for(lambda: "touched" in g.run("cat /tmp/hold.log")[1], 120, what="300 MiB touched")
    peak = g.qemu_rss_kb()
    t0 = time.monotonic()
    g.run("kill $(cat /tmp/hold.pid); while kill -0 $(cat /tmp/hold.pid) 2>/dev/null; do sleep 0.1; done")
    low = [peak]

    def dropped():
        low[0] = min(low[0], g.qemu_rss_kb())
        return peak - low[0] >= 200 * 1024
    g.wait_for(dropped, 60, interval=0.5, what=f"QEMU RSS to drop 200 MiB from {peak >> 10} MiB "
               f"(lowest {low[0] >> 10} MiB)")
    took = time.monotonic() - t0
    c1 = backend_counters(g)
    assert c1["reported_bytes"] - c0["reported_bytes"] >= 200 * MiB, (c0, c1)
    figure(kver, "free page reporting: RSS -200 MiB after exit", f"{took:.1f} s")
    return (f"QEMU RSS {peak >> 10} MiB -> {low[0] >> 10} MiB in {took:.1f} s; "
            f"guest reported {(c1['reported_bytes'] - c0['reported_bytes']) >> 20} MiB "
            f"in {c1['reports'] - c0['reports']} reports")


# Compaction moves pages into free pages of partly used pageblocks only (a
# wholly free pageblock is no migration target), and a fresh guest's free
# memory is all whole blocks. So: balloon first (it gets the low pages, where
# the migrate scanner starts), then a process fills 500 MiB and frees every
# other page of it (private and without THP, so that MADV_DONTNEED really frees
# the pages), leaving holes up there.
HOLES = ("python3 -c 'import mmap, time\n"
         "n = 500 << 20\nm = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)\n"
         "m.madvise(mmap.MADV_NOHUGEPAGE)\n"
         "for i in range(0, n, 4096): m[i] = 1\n"
         "for i in range(0, n, 8192): m.madvise(mmap.MADV_DONTNEED, i, 4096)\n"
         "print(\"holes\", flush=True)\ntime.sleep(600)' > /tmp/holes.log 2>&1 & echo $! > /tmp/holes.pid")


def huge_ballooned_mib(g):
    m = re.search(r"huge pages: +\d+ of order \d+ \((\d+) MiB\)", g.run("cat /sys/kernel/debug/balloon/status")[1])
    return int(m.group(1))


def t_compaction(g, kver):
    if "migration" not in g.sysb("features").split():
        return "SKIP: kernel without CONFIG_BALLOON_COMPACTION"
    # 4 KiB pages, all movable: the balloon takes no 2 MiB block meanwhile
    g.run("echo N > /sys/module/uniballoon/parameters/huge_blocks")
    try:
        g.balloon_to(200 * MiB)
    finally:
        g.run("echo Y > /sys/module/uniballoon/parameters/huge_blocks")
    assert huge_ballooned_mib(g) == 0, "huge_blocks=N, yet 2 MiB blocks were taken"
    g.run(HOLES)
    try:
        g.wait_for(lambda: "holes" in g.run("cat /tmp/holes.log")[1], 180, what="holes punched")
        mig0, ours0 = g.vmstat("balloon_migrate"), g.sysb_int("stats/migrations")
        runs = [0]

        def compact():
            runs[0] += 1
            g.run("echo 1 > /proc/sys/vm/compact_memory", timeout=120)
            return g.vmstat("balloon_migrate") > mig0
        try:
            g.wait_for(compact, 120, interval=1, what="balloon_migrate to grow after compaction")
        except TimeoutError as e:
            raise TimeoutError(f"{e}\n" + g.run("grep -E 'compact|balloon' /proc/vmstat")[1]) from None
    finally:
        g.run("kill $(cat /tmp/holes.pid); while kill -0 $(cat /tmp/holes.pid) 2>/dev/null; do sleep 0.1; done")
    mig, ours = g.vmstat("balloon_migrate") - mig0, g.sysb_int("stats/migrations") - ours0
    assert ours == mig, f"vmstat balloon_migrate +{mig}, stats/migrations +{ours}"
    # the balloon did not shrink on the way, and both sides still agree
    assert g.sysb_int("size") == 200 * MiB, g.sysb("size")
    assert g.actual() == GUEST_MB * MiB - 200 * MiB, f"host sees {g.actual()}"
    assert g.sysb_int("stats/host_errors") == 0, g.sysb("stats/host_errors")
    g.balloon_to(0)
    return f"{mig} balloon pages migrated after {runs[0]} compaction run(s)"


# The guest of the hinting test runs from its initramfs only: QEMU refuses to
# migrate while a 9p share is mounted, and the lab's guests live on 9p.
HINT_INIT = lab.BUSYBOX_INIT_HEAD + """for m in $(cat /mods/order); do insmod /mods/$m 2>/dev/null; done
insmod /uniballoon.ko || echo HINT-FAIL insmod
echo "HINT-FEATURES $(cat /sys/kernel/balloon/features)"
# free memory that is not zero, so that the migration has to send it unless hinted
dd if=/dev/urandom of=/fill bs=1M count=400 2>/dev/null
rm /fill
echo HINT-READY
# the host inflates the balloon once the migration is over and the guest runs again
i=0
while [ "$(cat /sys/kernel/balloon/size)" = 0 ] && [ $i -lt 3000 ]; do
  usleep 200000; i=$((i + 1))
done
# the host's DONE reaches the guest when it runs again, as a config change of
# its own: the hint work may still be on its way when the balloon has moved
i=0
while ! grep -q '^hinted_blocks_held: 0$' /sys/kernel/debug/balloon/backend && [ $i -lt 150 ]; do
  usleep 200000; i=$((i + 1))
done
sed 's/^/HINT-STAT /' /sys/kernel/debug/balloon/backend
echo HINT-DONE
sleep 1
poweroff -f
"""


# The same guest under memory pressure while a migration's hint round holds the free
# blocks: once the round has taken all it could, a process allocates 80% of what
# was available before it. The shrinker must give hinted blocks back (the round
# still on: no release in between) so that the process gets its memory without
# an OOM kill.
HINT_PRESSURE_INIT = lab.BUSYBOX_INIT_HEAD + """for m in $(cat /mods/order); do insmod /mods/$m 2>/dev/null; done
insmod /uniballoon.ko || echo HINTP-FAIL insmod
D=/sys/kernel/debug/balloon/backend
c() { sed -n "s/^$1: //p" $D; }
oom() { sed -n 's/^oom_kill //p' /proc/vmstat; }
want=$(( $(sed -n 's/^MemAvailable: *\\([0-9]*\\).*/\\1/p' /proc/meminfo) * 8 / 10 / 1024 ))
echo "HINTP-FEATURES $(cat /sys/kernel/balloon/features)"
echo HINTP-READY
# the host migrates slowly: wait until the round has taken every free block it could
i=0
while { [ "$(c hinted_blocks_held)" = 0 ] || [ "$(c hint_end_reason)" = 0 ]; } && [ $i -lt 1500 ]; do
  usleep 200000; i=$((i + 1))
done
echo "HINTP-BEFORE held=$(c hinted_blocks_held) releases=$(c hint_releases)" \\
  "shrunk=$(c hint_shrunk_blocks) end=$(c hint_end_reason) oom_kill=$(oom)" \\
  "memfree_kb=$(sed -n 's/^MemFree: *\\([0-9]*\\).*/\\1/p' /proc/meminfo) want_mib=$want"
# busybox dd touches a buffer of bs bytes: anonymous memory, freed at exit
dd if=/dev/zero of=/dev/null bs=${want}M count=1 2>/dev/null
echo "HINTP-DD rc=$?"
echo "HINTP-AFTER held=$(c hinted_blocks_held) releases=$(c hint_releases)" \\
  "shrunk=$(c hint_shrunk_blocks) end=$(c hint_end_reason) oom_kill=$(oom)"
echo HINTP-DONE
while :; do sleep 60; done
"""


def hint_initrd(kver, ko, init=HINT_INIT, name="hint"):
    """Uncompressed cpio with /hint-init (the script init) and /uniballoon.ko, for
    Guest(initrd_prefix=)."""
    d = BUILD / "lab" / f"{name}-root-{kver}"
    subprocess.run(["rm", "-rf", d], check=True)
    d.mkdir(parents=True)
    (d / "hint-init").write_text(init)
    (d / "hint-init").chmod(0o755)
    subprocess.run(["cp", ko, d / "uniballoon.ko"], check=True)
    out = BUILD / "lab" / f"{name}-{kver}.cpio"
    with open(out, "wb") as f:
        subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], input=b"hint-init\nuniballoon.ko\n",
                       cwd=d, stdout=f, check=True)
    return out


def t_free_page_hint(kver, ko):
    """A precopy migration (to a pipe that drops it) asks the guest for free page hints."""
    with Guest(kver, mem_mb=GUEST_MB, name=f"hint-{kver}",
               balloon_opts="free-page-hint=on,iothread=io0",
               extra_qemu_args=("-object", "iothread,id=io0"), append="rdinit=/hint-init",
               initrd_prefix=hint_initrd(kver, ko), ready_line="HINT-READY") as g:
        feats = re.search(r"HINT-FEATURES (.*)", g.console()).group(1).split()
        assert "free_page_hint" in feats, feats
        # slow enough that the guest answers the host's request before the first pass ends
        g.qmp("migrate-set-parameters", **{"max-bandwidth": 64 * MiB})
        t0 = time.monotonic()
        g.qmp("migrate", uri="exec:cat > /dev/null")
        st = g.wait_for(lambda: g.qmp("query-migrate").get("status") in ("completed", "failed", "cancelled")
                        and g.qmp("query-migrate"), 300, interval=0.5, what="migration to end")
        took = time.monotonic() - t0
        assert st["status"] == "completed", st
        status = g.qmp("query-status")["status"]
        g.qmp("cont")
        g.qmp("balloon", value=GUEST_MB * MiB - 16 * MiB)
        g.wait_for(lambda: "HINT-DONE" in g.console(), 120, what="the guest to run on after the migration")
        c = {k: int(v) for k, v in re.findall(r"HINT-STAT (\w+): (\d+)", g.console())}
        assert c["hint_commands"] >= 1 and c["hinted_blocks"] >= 1, c
        assert c["hint_releases"] >= 1 and c["hinted_blocks_held"] == 0, c
        ram = st.get("ram", {})
        hinted = c["hinted_blocks"] << (c["hint_order"] + 12)
        figure(kver, "migration with free page hints", f"{took:.1f} s")
        return (f"migration {took:.1f} s ({status} after it); {c['hint_commands']} hint command(s), "
                f"{hinted >> 20} MiB hinted, released {c['hint_releases']} time(s); RAM sent "
                f"{ram.get('transferred', 0) >> 20} MiB ({ram.get('normal', '?')} normal pages, "
                f"{ram.get('duplicate', '?')} zero pages)")


def t_free_page_hint_pressure(kver, ko):
    """Memory pressure while a hint round holds the free blocks: a process that
    allocates 80% of what was available gets it, with no OOM kill, because the
    "uniballoon-hint" shrinker gives hinted blocks back (hint_shrunk_blocks) while
    the round is still on (no release in between, the migration still active).
    The migration is slowed to 1 MiB/s so that its first pass, the hint round,
    outlasts the process; it is cancelled at the end."""
    with Guest(kver, mem_mb=GUEST_MB, name=f"hintp-{kver}",
               balloon_opts="free-page-hint=on,iothread=io0",
               extra_qemu_args=("-object", "iothread,id=io0"), append="rdinit=/hint-init",
               initrd_prefix=hint_initrd(kver, ko, HINT_PRESSURE_INIT, "hintp"),
               ready_line="HINTP-READY") as g:
        feats = re.search(r"HINTP-FEATURES (.*)", g.console()).group(1).split()
        assert "free_page_hint" in feats, feats
        g.qmp("migrate-set-parameters", **{"max-bandwidth": 1 * MiB})
        t0 = time.monotonic()
        g.qmp("migrate", uri="exec:cat > /dev/null")
        try:
            g.wait_for(lambda: "HINTP-DONE" in g.console(), 300, interval=0.5,
                       what="the guest's process under pressure to end")
            took = time.monotonic() - t0
            status = g.qmp("query-migrate")["status"]
        finally:
            g.qmp("migrate_cancel")
        con = g.console()
        state = {w: {k: int(v) for k, v in re.findall(r"(\w+)=(-?\d+)", re.search(f"HINTP-{w} (.*)", con).group(1))}
                 for w in ("BEFORE", "DD", "AFTER")}
        b, dd, a = state["BEFORE"], state["DD"], state["AFTER"]
        assert b["held"] > 0 and b["end"] == 3, f"the round did not hold the free blocks: {b}"
        assert status == "active" and a["releases"] == b["releases"], \
            f"the round ended during the pressure (migration {status}): {b} -> {a}"
        assert dd["rc"] == 0 and a["oom_kill"] == b["oom_kill"], \
            f"{b['want_mib']} MiB process: rc {dd['rc']}, OOM kills {b['oom_kill']} -> {a['oom_kill']}"
        assert a["shrunk"] > b["shrunk"], f"no hinted block given back: {b} -> {a}"
        figure(kver, "hint round under pressure", f"{took:.1f} s")
        return (f"{b['held']} blocks held, MemFree {b['memfree_kb'] >> 10} MiB; a {b['want_mib']} MiB process "
                f"got its memory, {a['shrunk'] - b['shrunk']} blocks given back by the shrinker, "
                f"{a['held']} still held, in {took:.1f} s")


def guest_features(kver, ko):
    with Guest(kver, mem_mb=GUEST_MB, name=f"features-{kver}",
               balloon_opts="free-page-reporting=on") as g:
        if not test(f"{kver}: module loads on a device with free page reporting", load, g, ko):
            return
        test(f"{kver}: free page reporting: QEMU's RSS drops after a 300 MiB process exits",
             t_free_page_reporting, g, kver)
        test(f"{kver}: compaction migrates ballooned pages, host and guest still agree",
             t_compaction, g, kver)


def poison_case(kver, ko, balloon_opts, append):
    """Boot a guest whose freed pages are poisoned/zeroed; return (features, debugfs counters)."""
    with Guest(kver, mem_mb=GUEST_MB, balloon_opts=balloon_opts, append=append,
               name=f"poison-{kver}") as g:
        load(g, ko)
        return g.sysb("features").split(), backend_counters(g), g.run("cat /sys/kernel/debug/balloon/backend")[1]


def t_poison_no_host_support(kver, ko):
    """page_poison=1 in the guest, a host without PAGE_POISON: no free page reporting."""
    feats, c, raw = poison_case(kver, ko, "free-page-reporting=on,page-poison=off", "page_poison=1")
    assert "free_page_reporting" not in feats, feats
    assert "page_poison: 0" in raw and "free_page_reporting: 0" in raw, raw
    return "reporting refused: " + " ".join(feats)


def t_poison_val(kver, ko):
    """page_poison=1 with a host that has PAGE_POISON: poison_val 0xaa.., reporting stays."""
    feats, c, raw = poison_case(kver, ko, "free-page-reporting=on", "page_poison=1")
    assert "free_page_reporting" in feats, feats
    assert "page_poison: 1" in raw and "poison_val: 0xaaaaaaaa" in raw, raw
    feats, c, raw = poison_case(kver, ko, "free-page-reporting=on", "init_on_free=1")
    assert "free_page_reporting" in feats, feats
    assert "page_poison: 1" in raw and "poison_val: 0x00000000" in raw, raw
    return "page_poison=1: poison_val 0xaaaaaaaa; init_on_free=1: poison_val 0"


def guest_poison(kver, ko):
    test(f"{kver}: poisoning guest, host without PAGE_POISON: free page reporting is off",
         t_poison_no_host_support, kver, ko)
    test(f"{kver}: poisoning or zeroing guest writes poison_val and keeps reporting",
         t_poison_val, kver, ko)


def guest_hint(kver, ko):
    test(f"{kver}: a migration gets free page hints, the guest runs on after it",
         t_free_page_hint, kver, ko)
    test(f"{kver}: memory pressure during a hint round: hinted blocks given back, no OOM kill",
         t_free_page_hint_pressure, kver, ko)


# ---------------------------------------------------------------- arm64

def t_arm64_modalias(g, ko):
    """The guest's balloon device has the modalias the module's alias matches."""
    devs = g.run("cat /sys/bus/virtio/devices/*/modalias")[1].split()
    assert any(d.startswith("virtio:d00000005v") for d in devs), devs


def guest_arm64(kver, ko):
    """The virtio tests of the plain and OOM guests on Debian's arm64 kernel, in
    qemu-system-aarch64 guests (arm64.py): same QMP host, same assertions."""
    with Arm64Guest(kver, mem_mb=GUEST_MB, name=f"arm64-{kver}") as g:
        test(f"{kver}: the balloon device's modalias is the module's virtio alias", t_arm64_modalias, g, ko)
        if not takes_device(g, kver, ko):
            return
        test(f"{kver}: QMP balloon down and up, both sides and MemTotal agree", t_qmp_down_up, g, kver)
        test(f"{kver}: guest override via target is seen by the host, then 'host'", t_guest_override, g)
        test(f"{kver}: floor holds a host request, visibly", t_floor, g)
        run_selftests(g, kver)
        test(f"{kver}: rmmod with a full balloon returns every page", t_rmmod_full, g)
        test(f"{kver}: no soft lockup or RCU stall (arm64 guest)", t_no_stalls, g)
    with Arm64Guest(kver, mem_mb=GUEST_MB, balloon_opts="deflate-on-oom=on", name=f"arm64-oom-{kver}") as g:
        if not test(f"{kver}: module loads on a deflate-on-oom device", load, g, ko):
            return
        test(f"{kver}: OOM with oom_deflate 1: the process gets the memory, nobody is killed",
             t_oom_deflate_on, g, kver)
        test(f"{kver}: rmmod after OOM returns every page", t_rmmod_full, g)
        test(f"{kver}: no soft lockup or RCU stall (arm64 OOM guest)", t_no_stalls, g)
