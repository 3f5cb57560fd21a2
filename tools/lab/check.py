#!/usr/bin/env python3
"""make check: every test of uniballoon, on every kernel the lab has.

Host-side checks (build with -Werror, checkpatch, kernel-doc, ABI documentation), then
per kernel guests under QEMU: a plain virtio-balloon device, a legacy one
with deflate-on-oom=on, one with free page reporting (and compaction), short
ones for page poisoning, and one without 9p for free page hinting during a
migration (LAB_GUESTS="guest_hint ..." picks some), and the debug-kernel
tier (check_debug.py: stress under lockdep, KASAN, kmemleak). The host drives QMP;
the guest runs the kselftests in selftests/ (KTAP), whose results are
counted one by one.
Ends with the line 'N passed, N failed, N skipped'.
"""
import dataclasses
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lab  # noqa: E402
from lab import GUEST_MB, MiB, SYSB, Guest, build_module, kernels  # noqa: E402
from ktap import figure, report, run_jobs, summary, test  # noqa: E402
from check_xen import guest_xen  # noqa: E402
import check_pkg  # noqa: E402  (packages, autoload, bpftrace tools, kselftest layout)
import check_debug  # noqa: E402  (the debug-kernel tier)
from check_libvirt import guest_libvirt  # noqa: E402  (virsh setmem/dommemstat)
import arm64  # noqa: E402  (the arm64 guest and cross build)
from arm64 import Arm64Guest  # noqa: E402

PROJECT = lab.PROJECT
BUILD = PROJECT / "build"

# ---------------------------------------------------------------- host-side checks

def kernel_source():
    """scripts/ from Debian's linux-source package (checkpatch.pl, kernel-doc, get_abi.pl), and the
    kselftest framework (tools/testing/selftests: Makefile, lib.mk, kselftest/)."""
    dst = BUILD / "linux-source"
    if not (dst / "tools/testing/selftests/lib.mk").exists():
        tarball = sorted(Path("/usr/src").glob("linux-source-*.tar.xz"))[-1]
        dst.mkdir(parents=True, exist_ok=True)
        top = tarball.name[:-len(".tar.xz")]
        kst = f"{top}/tools/testing/selftests"
        subprocess.run(["tar", "-xJf", tarball, "-C", dst, "--strip-components=1",
                        "--wildcards", "--no-wildcards-match-slash",
                        f"{top}/scripts", f"{top}/Documentation/ABI/README", f"{kst}/Makefile",
                        f"{kst}/lib.mk", f"{kst}/kselftest*", f"{kst}/run_kselftest.sh"], check=True)
    return dst


def checkpatch():
    src = kernel_source()
    files = sorted(str(p) for p in (PROJECT / "src").rglob("*.[ch]") if p.name != "compat_config.h")
    files += sorted(str(p) for p in (lab.LAB_DIR / "vmw-standin").glob("*.c"))
    files += sorted(str(p) for p in (lab.LAB_DIR / "vmware-model").glob("*.c"))
    r = subprocess.run(["perl", src / "scripts/checkpatch.pl", "--no-tree", "--terse", "--show-types",
                        "-f", *files], capture_output=True, text=True)
    bad = [l for l in r.stdout.splitlines() if ": ERROR:" in l or ": WARNING:" in l]
    assert not bad, "\n".join(bad)
    return f"{len(files)} files, 0 errors, 0 warnings"


def abi_validate():
    src = kernel_source()
    r = subprocess.run(["perl", src / "scripts/get_abi.pl", "--dir", PROJECT / "sysfs-abi", "validate"],
                       capture_output=True, text=True)
    out = (r.stdout + r.stderr).strip()
    assert r.returncode == 0 and not out, out or f"exit {r.returncode}"
    r = subprocess.run(["perl", src / "scripts/get_abi.pl", "--dir", PROJECT / "sysfs-abi", "search",
                        "/sys/kernel/balloon/"], capture_output=True, text=True)
    for f in ("backend", "features", "size", "host_target", "target", "target_source", "blocked",
              "pressure_reserve", "floor", "inflate_rate", "deflate_rate", "oom_deflate", "oom_deflate_size", "stats/inflated"):
        assert f"/sys/kernel/balloon/{f}" in r.stdout, f"{f} undocumented"


def kernel_doc():
    """Every function, struct and enum the backends and the sysfs layer use (src/uniballoon.h,
    src/engine.h) has a kernel-doc comment, and scripts/kernel-doc finds nothing wrong in them
    (-Wall: a Return: section where one is due, a short description; -Werror: exit status)."""
    src = kernel_source()
    headers = ["src/uniballoon.h", "src/engine.h"]
    cmd = ["perl", src / "scripts/kernel-doc", "-Wall", "-Werror"]
    r = subprocess.run([*cmd, "-none", *headers], cwd=PROJECT, capture_output=True, text=True)
    out = (r.stdout + r.stderr).strip()
    assert r.returncode == 0 and not out, out or f"exit {r.returncode}"
    r = subprocess.run([*cmd, "-rst", *headers], cwd=PROJECT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    documented = set(re.findall(r"^\.\. c:function:: .*?(\w+) \(", r.stdout, re.M))
    documented |= set(re.findall(r"^\.\. c:(?:type|struct|enum):: ((?:struct|enum) \w+)", r.stdout, re.M))
    declared = set()
    for h in headers:
        text = re.sub(r"/\*.*?\*/", "", (PROJECT / h).read_text(), flags=re.S)
        declared |= set(re.findall(r"^(?!#)(?:static inline )?[a-z][\w \*]*?\b(\w+)\(", text, re.M))
        declared |= set(re.findall(r"^((?:struct|enum) \w+) \{", text, re.M))
    missing = sorted(declared - documented)
    assert not missing, "no kernel-doc for: " + ", ".join(missing)
    return f"{len(declared)} declarations, all documented, 0 warnings"


def _make(kver, tree, *args):
    """make in tree (a copy of the sources) for kver: on the host, or in the sid chroot
    for a kernel the lab unpacked (tree then lies in the chroot); returns the run."""
    if lab.kernel_moddir(kver):
        inside = "/" + str(Path(tree).relative_to(SID_ROOT))
        return subprocess.run([lab.SID_CHROOT, "run", "make", "-C", inside, *args], capture_output=True, text=True)
    return subprocess.run(["make", *args], cwd=tree, capture_output=True, text=True)


SID_ROOT = BUILD / "sid-chroot"


def t_compat_header(kver):
    """src/compat/configure.sh answers each probe in tests/ once, with a valid macro
    (a kernel that leaves NAME.mod.c files beside the probes once produced
    '#define UB_HAVE_LINUX_BALLOON_H.MOD 1')."""
    if lab.kernel_moddir(kver):   # its headers need the sid chroot's compiler
        # a fresh copy per run: the chroot is shared by every clone, and a copy
        # over an old one keeps the probes this tree has removed
        (SID_ROOT / "build").mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="compat-", dir=SID_ROOT / "build"))
        try:
            subprocess.run(["cp", "-r", PROJECT / "src/compat", work], check=True)
            subprocess.run([lab.SID_CHROOT, "run", "sh", f"/build/{work.name}/compat/configure.sh",
                            f"/lib/modules/{kver}/build", f"/build/{work.name}/compat-{kver}.h"],
                           check=True, capture_output=True)
            text = (work / f"compat-{kver}.h").read_text()
        finally:
            shutil.rmtree(work)
    else:
        out = BUILD / f"compat-{kver}.h"
        subprocess.run(["sh", PROJECT / "src/compat/configure.sh", f"/lib/modules/{kver}/build", out],
                       check=True)
        text = out.read_text()
    probes = sorted(p.stem.upper() for p in (PROJECT / "src/compat/tests").glob("*.c"))
    lines = text.splitlines()[1:]
    answer = re.compile(r"#define UB_HAVE_([A-Z0-9_]+) 1|/\* #undef UB_HAVE_([A-Z0-9_]+) \*/")
    bad = [l for l in lines if not answer.fullmatch(l)]
    assert not bad, "\n".join(bad)
    got = sorted(m.group(1) or m.group(2) for m in map(answer.fullmatch, lines))
    assert got == probes, f"{got} != {probes}"
    return ", ".join(l for l in lines if l.startswith("#define"))


def t_werror_lab_only(kver):
    """A warning fails the lab's build (UB_WERROR=y) but not a user's DKMS build."""
    out = (SID_ROOT / "build" if lab.kernel_moddir(kver) else BUILD) / "werror" / kver
    subprocess.run(["rm", "-rf", out], check=True)
    out.mkdir(parents=True)
    for item in ("Kbuild", "Makefile", "dkms.conf", "src"):
        subprocess.run(["cp", "-r", PROJECT / item, out], check=True)
    with open(out / "src/core.c", "a") as f:   # what a newer compiler might warn about
        f.write("\nstatic void __maybe_unused ub_warn_probe(void)\n{\n\tint unused_here;\n}\n")
    user = _make(kver, out, f"KERNELRELEASE={kver}")
    assert user.returncode == 0 and "unused_here" in user.stderr, user.stdout[-2000:] + user.stderr[-2000:]
    assert _make(kver, out, f"KERNELRELEASE={kver}", "clean").returncode == 0
    lab_build = _make(kver, out, f"KERNELRELEASE={kver}", "UB_WERROR=y")
    assert lab_build.returncode != 0 and "unused_here" in lab_build.stderr, lab_build.stderr[-2000:]
    return "user build: a warning; lab build: an error"


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


def t_rmmod_dead_host(g, ko):
    """rmmod with 512 MiB of 4 KiB pages (huge_blocks=N) and a host that no longer
    answers: the wait for the host is bounded for the whole unload (one exchange
    times out, the rest go back untold, as QEMU, which never asks to be told,
    allows), not per 8 MiB batch (64 x 5 s before the fix). Every page comes back."""
    g.run("dmesg -C")
    total = g.meminfo()["MemTotal"]
    g.run(f"insmod {ko} huge_blocks=0")
    g.balloon_to(512 * MiB)
    status = g.run("cat /sys/kernel/debug/balloon/status")[1]
    assert re.search(r"^huge pages: *0 ", status, re.M), status
    g.run(f"echo 1 > {MUTE}")
    took, dmesg = rmmod_timed(g, 30)
    assert "all pages returned" in dmesg, dmesg[-2000:]
    assert g.meminfo()["MemTotal"] == total, f"MemTotal {total} -> {g.meminfo()['MemTotal']} kB"
    g.qmp("balloon", value=GUEST_MB * MiB)
    return f"rmmod took {took:.1f} s"


def t_rmmod_unanswered(g, ko):
    """A host that stops answering in the middle of an inflation, then rmmod: the
    pages of the request it never answered stay allocated for good (it may still
    discard them), and one dmesg line counts them; every other page comes back, and
    the unload ends within 30 s."""
    g.run("dmesg -C")
    total = g.meminfo()["MemTotal"]
    g.qmp("balloon", value=GUEST_MB * MiB)     # start from an empty balloon
    load(g, ko)
    timeouts = lambda: backend_counters(g)["host_timeouts"]  # noqa: E731
    t0 = timeouts()
    g.run(f"echo 1 > {MUTE}")
    g.qmp("balloon", value=GUEST_MB * MiB - 128 * MiB)
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
    g.qmp("balloon", value=GUEST_MB * MiB)
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
    g.balloon_to(16 * MiB)
    g.qmp("balloon", value=GUEST_MB * MiB)
    g.wait_for(lambda: g.sysb_int("size") == 0, 60, what="an empty balloon")
    g.run("rmmod uniballoon")
    return f"rmmod took {took:.1f} s"


def guest_restore_fail(kver, ko):
    # its own guest: where pages go back too early, the guest's memory is what breaks
    with Guest(kver, mem_mb=GUEST_MB, name=f"stale-{kver}") as g:
        test(f"{kver}: a host that stalls mid-inflation: no page it may still discard goes back "
             "to the guest (data unchanged)", t_stale_inflate_keeps_data, g, ko)
    with Guest(kver, mem_mb=GUEST_MB, name=f"restore-{kver}") as g:
        test(f"{kver}: a host that stops answering: exchanges time out, writers wait one timeout at most",
             t_host_stops_answering, g, ko)
        test(f"{kver}: a failed restore, then device removal: nothing touched twice",
             t_failed_restore, g, ko)
    with Guest(kver, mem_mb=GUEST_MB, balloon_opts="free-page-reporting=on",
               name=f"dead-host-{kver}") as g:
        keeper = lab.PatternKeeper(g).start()
        test(f"{kver}: rmmod with 512 MiB of 4 KiB pages and a dead host ends within 30 s, every page back",
             t_rmmod_dead_host, g, ko)
        test(f"{kver}: rmmod after an unanswered inflation keeps its pages allocated, says so, within 30 s",
             t_rmmod_unanswered, g, ko)
        test(f"{kver}: rmmod while the host holds a free page report ends within 30 s, device reset first",
             t_rmmod_report_held, g, ko)
        test(f"{kver}: a process's data is unchanged after rmmods with a dead host and a held report",
             keeper.check)


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


STALL_START = re.compile(r"soft lockup|rcu_sched self-detected stall|rcu: INFO:")
# the guest's clocksource watchdog saw its vCPU stopped for this long (ns)
STARVED = re.compile(r"clocksource: Long readout interval.* wd_nsec: (\d+)")


def stall_reports(console):
    """Each soft lockup or RCU stall report: its first line and the lines that
    follow it, up to the end of its stack trace."""
    lines, reports = console.splitlines(), []
    for i, line in enumerate(lines):
        if STALL_START.search(line):
            end = next((j for j in range(i, min(i + 120, len(lines)))
                        if "</TASK>" in lines[j] or "end trace" in lines[j]), min(i + 120, len(lines)))
            reports.append(lines[i:end + 1])
    return reports


def t_no_stalls(g):
    """The balloon never hogs a CPU: no soft lockup or RCU stall on the console with
    the module's code on its stack. Under TCG a vCPU the host did not run for many
    seconds also reads as a stall of whatever task it was running; such a report,
    without our code in it, is a failure only if the guest's clocksource watchdog
    did not also see the host stop it (Long readout interval of a second or more)."""
    console = g.console_log.read_text(errors="replace")
    reports = stall_reports(console)
    ours = [r for r in reports if any("[uniballoon]" in l for l in r)]
    assert not ours, "\n".join(ours[0][:40])
    starved = max((int(m.group(1)) for m in STARVED.finditer(console)), default=0) / 1e9
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


def replug(g, opts=""):
    """Hot-unplug the balloon device, then plug a new one (with opts) under the same id."""
    g.qmp("device_del", id="balloon0")
    g.wait_for(lambda: g.sysb("backend") == "none", 60, what="backend gone after unplug")
    gone = lambda: all(p["name"] != "balloon0"  # noqa: E731
                       for p in g.qmp("qom-list", path="/machine/peripheral"))
    g.wait_for(gone, 60, what="the balloon device unplugged")
    extra = dict(o.split("=") for o in opts.split(",") if o)
    g.qmp("device_add", driver="virtio-balloon-pci", id="balloon0", **extra)
    g.wait_for(lambda: g.sysb("backend") == "virtio", 60, what="backend back after replug")


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


# ---------------------------------------------------------------- guest C: VMware host model

MODEL = "/sys/kernel/debug/uniballoon_vmware_model"
CAPSETS = (("basic", 0x2), ("basic+batched", 0x6), ("basic+batched+2m", 0xe),
           ("basic+batched+2m+64bit", 0x2e))


def model_set(g, knob, value):
    g.run(f"echo {value} > {MODEL}/{knob}")


def model_audit(g):
    out = g.run(f"cat {MODEL}/audit")[1]
    return {k: int(v, 0) for k, v in (l.split(": ") for l in out.splitlines())}


def model_clean(g):
    a = model_audit(g)
    assert a["not_set_aside"] == 0 and a["bad_locks"] == 0 and a["bad_unlocks"] == 0, a
    return a


def vm_balloon(g, mib, timeout=120):
    """The model host asks for mib MiB; wait until guest and model agree."""
    model_set(g, "target", mib * 256)
    g.wait_for(lambda: g.sysb_int("size") == mib * MiB and
               model_audit(g)["locked_frames"] == mib * 256, timeout,
               what=lambda: f"{mib} MiB ballooned (size {g.sysb('size')}, "
                            f"model {model_audit(g)['locked_frames']})")


def vm_round_trip(g, mib, timeout=300):
    """Inflate mib MiB from an empty balloon, then deflate it; returns the commands
    of the inflation (polls included), its LOCK and the deflation's UNLOCK commands,
    and the inflation's time."""
    a0 = model_audit(g)
    t0 = time.monotonic()
    vm_balloon(g, mib, timeout)
    took = time.monotonic() - t0
    a1 = model_audit(g)
    vm_balloon(g, 0, timeout)
    a2 = model_audit(g)
    return (a1["commands"] - a0["commands"], a1["lock_commands"] - a0["lock_commands"],
            a2["unlock_commands"] - a1["unlock_commands"], took)


def no_page_lost(g):
    """balloon_inflate - balloon_deflate (4 KiB units) is what the balloon holds."""
    held = g.vmstat("balloon_inflate") - g.vmstat("balloon_deflate")
    assert held * 4096 == g.sysb_int("size"), f"vmstat says {held} pages, size {g.sysb('size')}"


def free_after_drop(g):
    """Free memory in kB that two readings can compare: page cache dropped, and
    the pages kept on the per-CPU free lists (which 6.12 grows after large
    frees, outside MemFree) counted in."""
    g.run("sync; echo 3 > /proc/sys/vm/drop_caches")
    pcp = g.run("awk '$1 == \"count:\" { n += $2 } END { print n + 0 }' /proc/zoneinfo")[1]
    return g.meminfo()["MemFree"] + int(pcp) * 4


def vm_reset_to(g, caps):
    resets = g.sysb_int("stats/host_resets")
    model_set(g, "caps", caps)
    model_set(g, "reset_now", 1)
    g.wait_for(lambda: g.sysb_int("stats/host_resets") > resets and
               model_audit(g)["granted"] == caps, 30, what=f"restart with caps {caps:#x}")


def t_vm_attach_fails_doorbell(g, ko):
    """A load whose attach fails after START handed the host a doorbell destroys
    the doorbell (the test build's test_fail_attach; the model offers the doorbell
    from the start). Before the fix the model warned at exit that it outlived us."""
    g.run("dmesg -C")
    rc, out = g.run(f"insmod {ko} backend=vmware test_fail_attach=1 test_model_caps=0x3e", check=False)
    assert rc != 0, "loaded although the attach was to fail"
    dmesg = g.run("dmesg")[1]
    assert "TEST BUILD" in dmesg, dmesg
    assert "outlived the backend" not in dmesg and "WARNING:" not in dmesg, dmesg
    return out.strip().splitlines()[-1]


def t_vm_intree_refused(g, ko):
    """While vmw_balloon is loaded (a stand-in of another name, as the real one does not
    load without a VMware host; test builds look for both names) the VMware backend
    refuses to start: EBUSY, one line saying why, and nothing made (no sysfs, no
    debugfs, the host model untouched). Without the stand-in it loads, its own vmmemctl
    does not count, and while it holds the balloon the stand-in cannot load."""
    standin = lab.standin_ko(ko)
    g.run("dmesg -C")
    g.run(f"insmod {standin}")
    try:
        g.run("test -e /sys/kernel/debug/vmmemctl")
        rc, out = g.run(f"insmod {ko} backend=vmware", check=False)
        assert rc != 0, "loaded although vmw_balloon's vmmemctl is there"
        assert "Device or resource busy" in out, out
        dmesg = g.run("dmesg")[1]
        owned = [l for l in dmesg.splitlines() if "owned by vmw_balloon" in l]
        assert len(owned) == 1, dmesg
        assert "TEST BUILD" not in dmesg, f"the host model was started:\n{dmesg}"
        for path in (SYSB, "/sys/kernel/debug/balloon", MODEL, "/sys/module/uniballoon"):
            assert g.run(f"test -e {path}", check=False)[0] != 0, f"{path} made"
        assert "stand-in" in g.run("cat /sys/kernel/debug/vmmemctl")[1], "vmmemctl replaced"
    finally:
        g.run("rmmod vmw_standin")
    g.run(f"insmod {ko} backend=vmware")
    try:
        assert g.sysb("backend") == "vmware", g.sysb("backend")
        vm_balloon(g, 8)
        f = vmmemctl(g)
        assert f["current"] == str(8 * 256), f
        rc, out = g.run(f"insmod {standin}", check=False)
        assert rc != 0 and "Device or resource busy" in out, f"stand-in loaded beside us: {rc} {out}"
        assert "vmw_standin refused: the balloon is owned by uniballoon" in g.run("dmesg")[1]
        vm_balloon(g, 0)
    finally:
        g.run("rmmod uniballoon", timeout=120)
    g.run(f"insmod {standin}")    # and once we are gone, it loads
    g.run("rmmod vmw_standin")
    return owned[0].split("] ", 1)[-1]


def t_vm_load(g, ko):
    g.run("dmesg -C")
    g.run(f"insmod {ko} backend=vmware")
    assert g.sysb("backend") == "vmware"
    assert "TEST BUILD" in g.run("dmesg")[1]
    assert "oom_deflate" in g.sysb("features").split()


def t_vm_capset(g, kver, name, caps):
    vm_reset_to(g, caps)
    c0 = model_audit(g)["commands"]
    vm_balloon(g, 64)
    calls = model_audit(g)["commands"] - c0
    model_clean(g)
    no_page_lost(g)
    backend = g.run("cat /sys/kernel/debug/balloon/backend")[1]
    if caps & 0x8:
        assert re.search(r"cmd_batched_2m_lock: [1-9]", backend), backend
    vm_balloon(g, 0)
    assert model_audit(g)["locked_pages"] == 0
    no_page_lost(g)
    figure(kver, f"vmware {name}: commands for 64 MiB inflate", f"{calls} ({calls * 16} per GiB)")
    if not caps & 0x8:
        return f"{calls} commands for 64 MiB"
    # 2 MiB pages: a batch is the protocol's whole batch page (512 pages,
    # 1 GiB), so 256 MiB goes in one LOCK and comes back in one UNLOCK (a
    # second one each is allowed, should the allocator run out of free
    # 2 MiB blocks); with 64 MiB batches it took four of each
    _, locks, unlocks, _ = vm_round_trip(g, 256)
    model_clean(g)
    no_page_lost(g)
    assert locks <= 2 and unlocks <= 2, (locks, unlocks)
    figure(kver, f"vmware {name}: LOCK, UNLOCK commands for 256 MiB", f"{locks}, {unlocks}")
    return f"{calls} commands for 64 MiB; 256 MiB in {locks} LOCK, back in {unlocks} UNLOCK"


def t_vm_refusals(g):
    refusals = g.sysb_int("stats/host_refusals")
    model_set(g, "refuse_every", 7)
    try:
        vm_balloon(g, 32)
    finally:
        model_set(g, "refuse_every", 0)
    assert g.sysb_int("stats/host_refusals") > refusals
    model_clean(g)
    no_page_lost(g)
    vm_balloon(g, 0)


def t_vm_refuse_all(g):
    """A host that refuses every page while it keeps asking: the pages set aside
    are given back every 4 MiB (and the worker pauses), so the guest keeps its
    memory while size reads 0."""
    refusals = g.sysb_int("stats/host_refusals")
    avail0 = g.meminfo()["MemAvailable"]
    model_set(g, "refuse_every", 1)
    try:
        model_set(g, "target", 256 * 256)
        # a few cycles of refusals, each at most one batch
        g.wait_for(lambda: g.sysb_int("stats/host_refusals") >= refusals + 4096, 60,
                   what=lambda: f"4096 refusals (have {g.sysb_int('stats/host_refusals') - refusals})")
        low = min(g.meminfo()["MemAvailable"] for _ in range(5))
        assert g.sysb_int("size") == 0, g.sysb("size")
        # one batch (8 MiB of 4 KiB pages, 64 MiB of 2 MiB ones) and 4 MiB aside at most
        assert avail0 - low <= 80 * 1024, f"MemAvailable {avail0 >> 10} -> {low >> 10} MiB"
    finally:
        model_set(g, "target", 0)
        model_set(g, "refuse_every", 0)
    model_clean(g)
    no_page_lost(g)
    return f"MemAvailable {avail0 >> 10} -> {low >> 10} MiB at the lowest, size 0"


def guest_cpu(g):
    """(busy, total) jiffies of the guest's CPUs from /proc/stat."""
    f = [int(x) for x in g.run("head -1 /proc/stat")[1].split()[1:]]
    return sum(f) - f[3] - f[4], sum(f)


def busy_share(g, seconds):
    """The guest's CPU time share (of one CPU) over the next `seconds`."""
    b0, t0 = guest_cpu(g)
    end = time.monotonic() + seconds
    while time.monotonic() < end:     # one look a second, the same on both sides
        time.sleep(1)
    b1, t1 = guest_cpu(g)
    return (b1 - b0) / (t1 - t0)


def t_vm_refusal_storm(g):
    """A host that refuses every page for 60 s while it keeps asking: the worker
    backs off (200 ms doubling to 10 s) instead of allocating and zeroing a batch
    every 200 ms, so the guest's CPU time (the worker's and everything else's) stays
    under 2% of its CPU; blocked says host-refusing. Measured beside 15 s of the
    same guest idle."""
    idle = busy_share(g, 15)
    refusals = g.sysb_int("stats/host_refusals")
    model_set(g, "refuse_every", 1)
    try:
        model_set(g, "target", 256 * 256)
        g.wait_for(lambda: g.sysb("blocked") == "host-refusing", 30,
                   what=lambda: f"blocked host-refusing (is {g.sysb('blocked')})")
        storm = busy_share(g, 60)
        seen = g.sysb("blocked")
        n = g.sysb_int("stats/host_refusals") - refusals
    finally:
        model_set(g, "target", 0)
        model_set(g, "refuse_every", 0)
    assert seen == "host-refusing", seen
    assert storm < 0.02, f"guest CPU {storm:.1%} during the storm (idle {idle:.1%})"
    g.wait_for(lambda: g.sysb("blocked") == "none" and g.sysb_int("size") == 0, 60,
               what=lambda: f"blocked none (is {g.sysb('blocked')}), size 0")
    model_clean(g)
    no_page_lost(g)
    return f"guest CPU {storm:.2%} in the storm, {idle:.2%} idle; {n} pages refused"


def t_vm_busy(g):
    errors = g.sysb_int("stats/host_errors")
    model_set(g, "busy_next", 3)
    vm_balloon(g, 16)
    assert g.sysb_int("stats/host_errors") > errors
    model_clean(g)
    vm_balloon(g, 0)


def t_vm_reset_mid_batch(g):
    vm_reset_to(g, 0x6)                  # 4 KiB batches of 512 entries
    free0 = free_after_drop(g)
    resets = g.sysb_int("stats/host_resets")
    model_set(g, "reset_after", 3000)    # inside the 6th batch
    vm_balloon(g, 64)
    assert g.sysb_int("stats/host_resets") > resets, "no reset seen"
    model_clean(g)
    no_page_lost(g)
    vm_balloon(g, 0)
    no_page_lost(g)
    free = free_after_drop(g)
    # a leaked page would be missing from MemFree; other memory may have been freed
    assert free > free0 - 16 * 1024, f"MemFree {free0} -> {free} kB"
    vm_reset_to(g, 0x2e)


def t_vm_reset_backoff(g):
    """A host that answers RESET to every lock: resets in a row back off (200 ms
    doubling to 30 s) instead of allocating, zeroing and freeing a batch in a loop
    (without the backoff: a reset every few hundred ms, as fast as a batch is made)."""
    resets = lambda: g.sysb_int("stats/host_resets")  # noqa: E731
    r0 = resets()
    model_set(g, "reset_locks", 1)
    try:
        model_set(g, "target", 64 * 256)
        g.wait_for(lambda: resets() >= r0 + 4, 60, what="four resets in a row")
        # the backoff is now 1.6 s or more: in the next 10 s, at most 1.6 + 3.2 + 6.4
        r1, t1 = resets(), time.monotonic()
        while time.monotonic() < t1 + 10:
            assert resets() - r1 <= 3, f"{resets() - r1} resets in {time.monotonic() - t1:.1f} s"
            time.sleep(0.5)
        in_window = resets() - r1
    finally:
        model_set(g, "reset_locks", 0)
        model_set(g, "target", 0)
    # and once the host takes pages again, the balloon moves at once
    vm_balloon(g, 16)
    model_clean(g)
    no_page_lost(g)
    vm_balloon(g, 0)
    return f"{in_window} resets in 10 s after the 4th"


def vmmemctl(g):
    out = g.run("cat /sys/kernel/debug/vmmemctl")[1]
    return {k.strip(): v.strip() for k, v in (l.split(":", 1) for l in out.splitlines())}


def t_vm_vmmemctl(g):
    """vmw_balloon's /sys/kernel/debug/vmmemctl, as monitoring tools read it:
    target and current in 4 KiB pages, capabilities."""
    vm_balloon(g, 24)
    f = vmmemctl(g)
    assert f["target"] == f["current"] == str(24 * 256), f
    assert int(f["used capabilities"], 16) == model_audit(g)["granted"], f
    vm_balloon(g, 0)
    f = vmmemctl(g)
    assert f["target"] == f["current"] == "0", f
    return ", ".join(f"{k}: {v}" for k, v in f.items())


def t_vm_64bit(g):
    avail = g.meminfo()["MemAvailable"] * 1024
    g.run(f"echo {avail - 32 * MiB} > {SYSB}/floor")     # keep the guest alive
    try:
        huge = (1 << 32) + 4096
        model_set(g, "target", huge)
        g.wait_for(lambda: g.sysb_int("host_target") == huge * 4096, 30, what="64-bit target")
        vm_reset_to(g, 0xe)                              # no 64-bit targets
        g.wait_for(lambda: g.sysb_int("host_target") == 4096 * 4096, 30, what="32-bit target")
    finally:
        vm_reset_to(g, 0x2e)
        g.run(f"echo 0 > {SYSB}/floor")
        vm_balloon(g, 0)


def t_vm_trace(g):
    total, out = bpftrace_sum(g, "args->pages << args->order", lambda: vm_balloon(g, 40))
    assert total == 40 * 256, out
    vm_balloon(g, 0)


def pressure_reserve(g):
    """(pressure reserve in bytes, met) from debugfs status."""
    status = g.run("cat /sys/kernel/debug/balloon/status")[1]
    m = re.search(r"pressure reserve: (\d+) bytes \(met: (yes|no)\)", status)
    assert m, status
    return int(m.group(1)), m.group(2) == "yes"


def t_vm_overask(g):
    """The host asks for more than the guest can spare (its page cache full of
    bpftrace): inflation, by free pages or by reclaim, stops at the pressure reserve,
    visibly, and the guest keeps answering; without oom_deflate there is no reserve.
    (If the guest's own allocations then take MemAvailable under the pressure
    threshold, the shrinker gives back up to the reserve, source "oom".)"""
    g.run("b=$(command -v bpftrace); cat $b $(ldd $b | awk '/libLLVM/ { print $3 }') > /dev/null")
    reserve, met = pressure_reserve(g)
    guest = g.meminfo()["MemTotal"] * 1024   # ballooned pages stay in it (oom_deflate)
    curve = 1024 * math.isqrt(guest) // 4096 * 4096
    assert reserve == 4 * max(16 * MiB, curve) and not met, (reserve, met, guest)
    assert g.sysb_int("pressure_reserve") == reserve
    holds0 = g.sysb_int("stats/floor_holds")
    ask = g.meminfo()["MemAvailable"] // 1024 + 64
    model_set(g, "target", ask * 256)
    try:
        # stopped below the ask: held by the reserve (floor), given back by the
        # shrinker (oom), or, seen on 6.1 under load, refused by the allocator's
        # light reclaim (host, stats/alloc_failures) while MemAvailable was above it
        seen = []

        def stopped():
            seen.append(g.sysb_int("size"))
            return len(seen) >= 3 and seen[-1] == seen[-3] and seen[-1] < ask * MiB
        g.wait_for(stopped, 240, interval=5, what=f"the balloon stops below {ask} MiB")
        source = g.sysb("target_source")
        if source == "floor":
            assert pressure_reserve(g) == (reserve, True)
            assert g.sysb_int("stats/floor_holds") > holds0
        # every command answered in time while the balloon was held
        worst = 0.0
        for _ in range(5):
            t0 = time.monotonic()
            g.run("cat /sys/kernel/balloon/size", timeout=30)
            worst = max(worst, time.monotonic() - t0)
            time.sleep(1)
        avail = g.meminfo()["MemAvailable"] * 1024
        size = g.sysb_int("size")
        assert size < ask * MiB
        # MemAvailable moves on its own; it stayed near or above the reserve
        assert avail >= reserve - 16 * MiB, f"MemAvailable {avail >> 20} MiB, reserve {reserve >> 20} MiB"
    finally:
        vm_balloon(g, 0)
    # without oom_deflate there is no reserve (checked with the balloon empty: the
    # host's ask above, unprotected, would make the guest thrash; CI25)
    g.run(f"echo 0 > {SYSB}/oom_deflate")
    try:
        assert pressure_reserve(g)[0] == 0
    finally:
        g.run(f"echo 1 > {SYSB}/oom_deflate")
    return (f"asked {ask} MiB, held at {size >> 20} MiB by {source}, MemAvailable {avail >> 20} MiB "
            f"(reserve {reserve >> 20} MiB); slowest command {worst:.1f} s")


def t_vm_oom(g, kver):
    """OOM deflation on VMware, and no refill at the next poll of an unchanged target."""
    # as fresh a guest as the virtio OOM test's (see guest_vmware for why it runs early)
    g.run("sync; echo 3 > /proc/sys/vm/drop_caches")
    held = fill_for_oom(g, 800, lambda: model_set(g, "target", 800 * 256),
                        lambda size: model_audit(g)["locked_frames"] == size // 4096)
    keys = ("balloon_migrate", "compact_stall", "compact_migrate_scanned", "thp_fault_alloc",
            "allocstall_movable", "pgmajfault")
    kswapd = "awk '{ print ($14 + $15) / 100 }' /proc/$(pgrep -x kswapd0)/stat"
    v0, k0 = {k: g.vmstat(k) for k in keys}, float(g.run(kswapd)[1])
    out, took = hog_gets_memory(g)
    moved = ", ".join(f"{k} +{g.vmstat(k) - v0[k]}" for k in keys)
    moved += f", kswapd CPU {float(g.run(kswapd)[1]) - k0:.1f} s"
    size = g.sysb_int("size")
    polls = lambda: int(re.search(r"cmd_get_target: (\d+)",  # noqa: E731
                                  g.run("cat /sys/kernel/debug/balloon/backend")[1]).group(1))
    p0 = polls()
    g.wait_for(lambda: polls() >= p0 + 2, 30, what="two more polls")
    assert g.sysb_int("size") <= size and g.sysb("target_source") == "oom", \
        f"refilled after OOM: {g.sysb('size')} > {size}"
    model_clean(g)
    no_page_lost(g)
    figure(kver, "vmware OOM: 600 MiB touched, balloon 800 MiB", f"{took:.1f} s")
    vm_balloon(g, 0)
    return (f"{out.strip()}; {took:.1f} s; balloon {held >> 20} MiB before, {size >> 20} MiB after; "
            f"during the process: {moved}")


def t_vm_doorbell(g):
    """With SIGNALLED_WAKEUP the guest hands the host a doorbell; a ring polls at once."""
    vm_reset_to(g, 0x3e)
    backend = lambda: g.run("cat /sys/kernel/debug/balloon/backend")[1]  # noqa: E731
    assert "target_notification: doorbell" in backend(), backend()
    assert model_audit(g)["doorbell_set"] == 1
    rings = lambda: int(re.search(r"doorbell_rings: (\d+)", backend()).group(1))  # noqa: E731
    r0 = rings()
    model_set(g, "target", 24 * 256)
    model_set(g, "ring", 1)
    g.wait_for(lambda: rings() > r0 and g.sysb_int("size") == 24 * MiB, 30,
               what="doorbell rung and target reached")
    model_clean(g)
    vm_balloon(g, 0)
    vm_reset_to(g, 0x2e)                 # doorbell-less again
    assert "target_notification: poll" in backend(), backend()


def t_vm_compaction(g):
    """Compaction moves 4 KiB balloon pages on VMware: unlock old, then lock new."""
    vm_reset_to(g, 0x6)
    vm_balloon(g, 200)
    g.run(HOLES)
    try:
        g.wait_for(lambda: "holes" in g.run("cat /tmp/holes.log")[1], 180, what="holes punched")
        mig0, ours0 = g.vmstat("balloon_migrate"), g.sysb_int("stats/migrations")

        def compact():
            g.run("echo 1 > /proc/sys/vm/compact_memory", timeout=120)
            return g.vmstat("balloon_migrate") > mig0
        g.wait_for(compact, 120, interval=1, what="balloon_migrate to grow after compaction")
    finally:
        g.run("kill $(cat /tmp/holes.pid); while kill -0 $(cat /tmp/holes.pid) 2>/dev/null; do sleep 0.1; done")
    moved = g.vmstat("balloon_migrate") - mig0
    assert g.sysb_int("stats/migrations") - ours0 >= moved
    # a host at its target takes the new page once the old one is back
    g.wait_for(lambda: g.sysb_int("size") == 200 * MiB and
               model_audit(g)["locked_frames"] == 200 * 256, 30, what="guest and model agree")
    model_clean(g)
    no_page_lost(g)
    vm_balloon(g, 0)
    vm_reset_to(g, 0x2e)
    return f"{moved} pages migrated"


def t_vm_rmmod(g):
    vm_balloon(g, 0)
    free0 = free_after_drop(g)
    vm_balloon(g, 128)
    g.run("rmmod uniballoon", timeout=120)
    assert g.run("test -e /sys/kernel/debug/vmmemctl", check=False)[0] != 0, "vmmemctl left behind"
    assert g.vmstat("balloon_inflate") == g.vmstat("balloon_deflate")
    free = free_after_drop(g)
    # a leaked page would be missing from MemFree; other memory may have been freed
    assert free > free0 - 16 * 1024, f"MemFree {free0} -> {free} kB"


def guest_vmware(kver, ko):
    with Guest(kver, mem_mb=GUEST_MB, name=f"vmware-{kver}") as g:
        keeper = lab.PatternKeeper(g).start()
        test(f"{kver}: vmware: a failed attach destroys the doorbell START made",
             t_vm_attach_fails_doorbell, g, ko)
        test(f"{kver}: vmware: refused while vmw_balloon (a stand-in) is loaded, keeps it out while loaded",
             t_vm_intree_refused, g, ko)
        if not test(f"{kver}: vmware: loads against the host model (test build)", t_vm_load, g, ko):
            return
        for name, caps in CAPSETS:
            test(f"{kver}: vmware {name}: inflate and deflate to the host's targets",
                 t_vm_capset, g, kver, name, caps)
        test(f"{kver}: vmware: the VMCI doorbell, where granted, triggers a poll", t_vm_doorbell, g)
        # early, before bpftrace runs and before the over-ask evicts executables: frames
        # freed with stale TCG translations make the guest's page zeroing several times
        # slower under QEMU 7.2, with or without a balloon (BENCHMARKS.md)
        test(f"{kver}: vmware: OOM: the process gets the memory, the balloon stays down",
             t_vm_oom, g, kver)
        test(f"{kver}: vmware: refused pages are set aside, none lost", t_vm_refusals, g)
        test(f"{kver}: vmware: a host refusing every page does not drain the guest",
             t_vm_refuse_all, g)
        test(f"{kver}: vmware: a 60 s refusal storm costs the guest under 2% of its CPU, blocked says why",
             t_vm_refusal_storm, g)
        test(f"{kver}: vmware: BUSY is retried", t_vm_busy, g)
        test(f"{kver}: vmware: RESET mid-batch: no page leaked or unlocked twice", t_vm_reset_mid_batch, g)
        test(f"{kver}: vmware: a host resetting at every lock gets resets backed off",
             t_vm_reset_backoff, g)
        test(f"{kver}: vmware: 64-bit targets only when granted", t_vm_64bit, g)
        test(f"{kver}: vmware: /sys/kernel/debug/vmmemctl shows target and current as vmw_balloon's",
             t_vm_vmmemctl, g)
        test(f"{kver}: vmware: bpftrace sums inflated 4 KiB and 2 MiB pages", t_vm_trace, g)
        test(f"{kver}: vmware: a host asking too much: held at the pressure reserve, guest answers",
             t_vm_overask, g)
        test(f"{kver}: vmware: compaction migrates 4 KiB balloon pages, none lost", t_vm_compaction, g)
        test(f"{kver}: vmware: rmmod with a full balloon frees every page", t_vm_rmmod, g)
        test(f"{kver}: vmware: a process's data is unchanged after every move above (RESETs, refusals, "
             "BUSY, OOM, compaction, reloads)", keeper.check)
        test(f"{kver}: no soft lockup or RCU stall (vmware guest)", t_no_stalls, g)


def no_test_hook(ko):
    r = subprocess.run(["nm", ko], capture_output=True, text=True, check=True)
    assert "ubw_model" not in r.stdout, "production build contains the host model"
    assert b"TEST BUILD" not in Path(ko).read_bytes()
    assert b"test_fail_attach" not in Path(ko).read_bytes(), "production build takes fault injection"
    assert b"test_mute_host" not in Path(ko).read_bytes(), "production build can mute the host"
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


def t_make_demo():
    """`make demo`, the README's main command, runs to the end as a user runs it."""
    t0 = time.monotonic()
    r = subprocess.run(["make", "-s", "demo"], cwd=PROJECT, capture_output=True, text=True, timeout=900)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "=== demo finished" in out, out[-3000:]
    held = re.search(r"the balloon stopped at .*", out)
    return f"{time.monotonic() - t0:.0f} s" + (f"; {held.group(0)}" if held else "")


def guest_demo(kver, ko):
    if kver == kernels()[-1]:   # the demo boots the newest kernel
        test("make demo runs to the end", t_make_demo)


def guest_debug_virtio(kver, ko):
    if kver == kernels()[-1]:   # one debug kernel, whatever the distribution kernels
        check_debug.guest_debug_virtio(kver, ko)


def guest_debug_vmware(kver, ko):
    if kver == kernels()[-1]:
        check_debug.guest_debug_vmware(kver, ko)


# ---------------------------------------------------------------- arm64

def t_arm64_aliases(ko):
    """The arm64 module autoloads on the virtio balloon and on Xen (DMI), and has
    neither the x86 CPU alias nor the VMware backend, which Kbuild leaves out."""
    aliases = subprocess.run(["modinfo", "-F", "alias", ko], check=True, capture_output=True,
                             text=True).stdout.split()
    assert "virtio:d00000005v*" in aliases, aliases
    assert not [a for a in aliases if a.startswith("x86cpu") or "VMware" in a or "vmmemctl" in a], aliases
    syms = subprocess.run(["nm", ko], check=True, capture_output=True, text=True).stdout
    assert " ubw_" not in syms, "the VMware backend is in the arm64 build"
    return " ".join(aliases)


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


@dataclasses.dataclass(frozen=True)
class GuestJob:
    """A guest job of make check: fn(kver, ko) boots its guests and runs their tests.

    cost: rough relative run time; the longest jobs start first, so the lanes end together.
    test_build: fn gets the test build (the VMware host model, the test hooks), else the
    production build. unpacked: it also runs on a kernel the lab unpacked rather than
    installed (Debian sid's 7.2); a job that needs the host's packages built for the kernel
    (the .deb's DKMS build, Xen, libvirt) or boots a kernel of its own (the debug tier, the
    newest installed one) does not. heavy: two vCPUs; such jobs run on their own, before
    the others. arch: the guests' architecture (arm64 jobs get the arm64 cross build)."""
    fn: object
    cost: int = 1
    test_build: bool = False
    unpacked: bool = False
    heavy: bool = False
    arch: str = "amd64"


# Every guest job, in the order jobs of equal cost start: one line each.
JOBS = {j.fn.__name__: j for j in (
    GuestJob(guest_demo, cost=2),
    GuestJob(guest_restore_fail, cost=3, test_build=True, unpacked=True),
    GuestJob(guest_plain, cost=5, unpacked=True),
    GuestJob(guest_oom, cost=3, unpacked=True),
    GuestJob(guest_params, cost=2, unpacked=True),
    GuestJob(guest_features, cost=3, unpacked=True),
    GuestJob(guest_poison, cost=3, unpacked=True),
    GuestJob(guest_hint, cost=2, unpacked=True),
    GuestJob(guest_vmware, cost=5, test_build=True, unpacked=True),
    GuestJob(guest_xen, cost=4),
    GuestJob(check_pkg.guest_pkg, cost=4),
    GuestJob(guest_libvirt, cost=1),
    GuestJob(guest_debug_virtio, cost=12, heavy=True),
    GuestJob(guest_debug_vmware, cost=12, heavy=True),
    GuestJob(guest_arm64, cost=3, arch="arm64"),
)}


def lab_kernels():
    """LAB_KERNELS, else kernels(), sid's newest 7.2 and the arm64 build of kernels()'
    newest. In LAB_KERNELS the word sid stands for sid's newest 7.2 (sid-chroot.sh
    kernel), arm64 for the arm64 build of kernels()' newest (arm64.sh). A kernel the
    lab cannot fetch is a failed test, not the end of the run."""
    word = {"sid": lab.sid_kernel, "arm64": lambda: arm64.release(kernels()[-1])}
    only = os.environ.get("LAB_KERNELS")
    kvers = []
    for k in only.split() if only else kernels() + ["sid", "arm64"]:
        if k not in word:
            kvers.append(k)
            continue
        try:
            kvers.append(word[k]())
        except subprocess.CalledProcessError as e:
            report(False, f"the lab fetches the {k} kernel", f"{e}\n{e.stderr}")
    return kvers


def arm64_jobs(kver, only_guests):
    """Cross build for an arm64 kernel, its host-side checks, and its guest job."""
    try:
        ko = arm64.build_module(kver)
        report(True, f"{kver}: module cross-builds with warnings as errors")
    except Exception as e:  # noqa: BLE001
        report(False, f"{kver}: module cross-builds with warnings as errors", str(e))
        return []
    test(f"{kver}: the production build contains no test hook", no_test_hook, ko)
    test(f"{kver}: autoload aliases: virtio and Xen, no x86 CPU or VMware alias", t_arm64_aliases, ko)
    if only_guests and "guest_arm64" not in only_guests:
        return []
    return [(f"{kver}: guest_arm64 guest", guest_job, (guest_arm64, kver, ko, ko))]


def guest_job(guest, kver, ko, test_ko):
    guest(kver, test_ko if JOBS[guest.__name__].test_build else ko)


def main():
    t_start = time.monotonic()
    test("checkpatch: src/ and the lab's vmw_balloon stand-in are clean", checkpatch)
    test("sysfs-abi/ passes get_abi.pl validate and documents every file", abi_validate)
    test("kernel-doc: src/uniballoon.h and src/engine.h are documented and clean", kernel_doc)
    kvers = lab_kernels()
    # the package is installed on the host, hence for the host's kernels only
    host_kvers = [k for k in kvers if not lab.kernel_moddir(k) and not arm64.is_arm64(k)]
    check_pkg.host(host_kvers, kernel_source)   # dkms.conf is tested by the package's install
    only_guests = os.environ.get("LAB_GUESTS", "").split()
    jobs = []
    for kver in kvers:
        if arm64.is_arm64(kver):
            jobs += arm64_jobs(kver, only_guests)
            continue
        try:
            ko = build_module(kver)
            test_ko = build_module(kver, test_build=True)
            report(True, f"{kver}: module builds with warnings as errors")
        except Exception as e:  # noqa: BLE001
            report(False, f"{kver}: module builds with warnings as errors", str(e))
            continue
        test(f"{kver}: the production build contains no test hook", no_test_hook, ko)
        test(f"{kver}: warnings are errors in the lab's build only", t_werror_lab_only, kver)
        test(f"{kver}: the compat probes give one valid macro each", t_compat_header, kver)
        unpacked = lab.kernel_moddir(kver) is not None
        for name, job in JOBS.items():
            if job.arch != "amd64" or (unpacked and not job.unpacked):
                continue
            if not only_guests or name in only_guests:
                jobs.append((f"{kver}: {name} guest", guest_job, (job.fn, kver, ko, test_ko)))
    for kver in (k for k in kvers if not arm64.is_arm64(k)):   # shared boot files, made once
        moddir = lab.kernel_moddir(kver)
        subprocess.run([lab.LAB_DIR / "initramfs.sh", kver, lab.BUILD_DIR / f"initramfs-{kver}.cpio.gz",
                        *([moddir] if moddir else [])], check=True)
        lab.pvh_vmlinux(kver)
    debug_jobs = [j.fn for j in JOBS.values() if j.heavy]
    if any(j[2][0] in debug_jobs for j in jobs):
        # built once (minutes on 2 cores; cached in build/) before its guests run side by side
        if not test("the debug kernel builds (lockdep, KASAN, KFENCE, kmemleak, debug objects)",
                    check_debug.build_debug_kernel):
            jobs = [j for j in jobs if j[2][0] not in debug_jobs]
    # longest guests first, so the two lanes end together
    jobs.sort(key=lambda j: -JOBS[j[2][0].__name__].cost)
    # The debug guests have two vCPUs each: side by side they take both
    # cores, so they run on their own, before the others: a -smp 1 guest
    # beside one of them would share a core, and its timings (the OOM
    # scenario) and stall detectors would measure the machine, not us.
    heavy = [j for j in jobs if j[2][0] in debug_jobs]
    try:
        run_jobs(heavy)
        run_jobs([j for j in jobs if j not in heavy])
    finally:
        test("packages: purged, the module is gone for every kernel", check_pkg.purge, host_kvers)
    print(f"# total time {time.monotonic() - t_start:.0f} s")
    return summary()


if __name__ == "__main__":
    sys.exit(main())
