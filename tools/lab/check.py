#!/usr/bin/env python3
"""make check: every test of uniballoon, on every kernel the lab has (the runner).

Host-side checks (build with -Werror, checkpatch, kernel-doc, ABI documentation, the
packages: check_pkg.py), then per kernel the guest jobs of JOBS under QEMU, two at a
time: one file per suite, check_virtio.py (the virtio-balloon guests, arm64 included),
check_vmware.py (the VMware host model), check_xen.py, check_libvirt.py, check_pkg.py
(the installed package) and the debug-kernel tier (check_debug.py: stress under lockdep,
KASAN, kmemleak). LAB_GUESTS="guest_hint ..." picks some jobs, LAB_KERNELS some kernels.
Ends with the line 'N passed, N failed, N skipped'.
"""
import dataclasses
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
from lab import build_module, kernels  # noqa: E402
from ktap import report, run_jobs, summary, test  # noqa: E402
from check_xen import guest_xen  # noqa: E402
import check_pkg  # noqa: E402  (packages, autoload, bpftrace tools, kselftest layout)
import check_debug  # noqa: E402  (the debug-kernel tier)
from check_libvirt import guest_libvirt  # noqa: E402  (virsh setmem/dommemstat)
import arm64  # noqa: E402  (the arm64 cross build)
from check_virtio import guest_arm64, guest_features, guest_hint, guest_oom, guest_params, guest_plain, \
    guest_poison, guest_restore_fail  # noqa: E402  (the virtio-balloon guests)
from check_vmware import guest_vmware  # noqa: E402  (the VMware host model)

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


def no_test_hook(ko):
    r = subprocess.run(["nm", ko], capture_output=True, text=True, check=True)
    assert "ubw_model" not in r.stdout, "production build contains the host model"
    assert b"TEST BUILD" not in Path(ko).read_bytes()
    assert b"test_fail_attach" not in Path(ko).read_bytes(), "production build takes fault injection"
    assert b"test_mute_host" not in Path(ko).read_bytes(), "production build can mute the host"


# ---------------------------------------------------------------- jobs that run elsewhere (newest kernel)

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


# ---------------------------------------------------------------- the runner

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
