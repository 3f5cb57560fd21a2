"""make check, packages part: uniballoon-dkms as .deb and .rpm, autoload, user tools.

Host side, before the guests (host(kvers)):
  the version in dkms.conf agrees with debian/changelog and the spec, and the
  supported-kernel pattern accepts the lab's kernels; the .deb builds from a clean
  copy of the tree (dpkg-buildpackage -us -uc -b) and lintian is clean; the .rpm
  builds (rpmbuild) and rpmlint is clean; both payloads hold the same files; the
  rpm scriptlets call dkms as they should; the .deb installs on this machine and
  DKMS builds the module for every lab kernel (this is also the dkms.conf test);
  the modalias lookups udev does now give uniballoon; the selftests run the
  kselftest way from a kernel tree and SKIP on the host. Then Debian 13 in a cached
  debootstrap chroot (trixie-chroot.sh): apt installs the .deb and DKMS builds for
  trixie's 6.12 kernel, bpftrace 0.23 compiles the tools, lintian is clean, purge.
Guest, one per kernel (guest_pkg, in the parallel lanes): udev autoloads the
  packaged module, which takes the virtio balloon and follows QMP `balloon`; the
  bpftrace tools run and report the same movement; the kselftest run passes;
  get_abi.pl finds no undocumented file; `modprobe virtio_balloon` still works.
After the guests (purge()): the package is purged and the module is gone for
  every kernel. purge() also runs at exit, so the machine is never left with it.
"""
import atexit
import fcntl
import gzip
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import lab
import readme_blocks
from lab import GUEST_MB, MiB, SYSB, Guest
from ktap import figure, report, test

PROJECT = lab.PROJECT
PKG = PROJECT / "build" / "pkg"
NAME = "uniballoon"
DEB_NAME = "uniballoon-dkms"
KSELFTEST_TARGET = "drivers/uniballoon"
VIRTIO_ALIAS = "virtio:d00000005v00001AF4"
VMWARE_ALIAS = "dmi:bvnPhoenixTechnologiesLTD:svnVMware,Inc.:pnVMwareVirtualPlatform:"
# Xen: a PV domain's cpu modalias carries feature 0110 (X86_FEATURE_XENPV);
# an HVM/PVH domain's DMI vendor is Xen. A KVM guest's cpu modalias has no 0110.
XEN_ALIASES = ("cpu:type:x86,ven0000fam0006mod0055:feature:,0000,0001,00E5,0110",
               "dmi:bvnXen:bvr4.17:svnXen:pnHVMdomU:")
NOT_XEN_ALIAS = "cpu:type:x86,ven0000fam0006mod0055:feature:,0000,0001,00E5,0111"
BT_TOOLS = ("balloonsnoop", "balloonrate", "balloonlat")
# bpftrace takes 30-60 s to start in a TCG guest: each tool runs on one of the lab's kernels
# (balloonlat with balloonsnoop, which counts the batches it must agree with); all three on
# any other kernel.
BT_SPLIT = {"6.1.": ("balloonsnoop", "balloonlat"), "6.12.": ("balloonrate",)}
# LAB_BT_TOOLS="balloonsnoop balloonrate balloonlat": these on every kernel instead (to
# capture all three example files, tools/bpftrace/*_example.txt, from one run).
BT_ONLY = os.environ.get("LAB_BT_TOOLS", "").split()
# The control run of get_abi.pl (without the documentation it must report every file) on
# one kernel only: it walks all of /sys again.
ABI_CONTROL = "6.12."


def tools_for(kver):
    if BT_ONLY:
        return tuple(BT_ONLY)
    return next((v for k, v in BT_SPLIT.items() if kver.startswith(k)), BT_TOOLS)
BT_DIR = "/usr/share/uniballoon/bpftrace"

state = {"deb": None, "rpm": None, "installed": False, "kvers": [], "ktree": None, "lock": None}
# /usr/src/uniballoon-<version>, the dkms tree and /lib/modules are the machine's, not the
# checkout's: two make check runs (two worktrees) would remove each other's package. The
# package's life, from install to purge, holds this lock.
LOCK = Path("/run/lock/uniballoon-pkg-test.lock")


def _lock():
    if state["lock"] is None:
        f = open(LOCK, "w")
        t0 = time.monotonic()
        fcntl.flock(f, fcntl.LOCK_EX)
        if time.monotonic() - t0 > 1:
            figure("host", "waited for another run's package test", f"{time.monotonic() - t0:.0f} s")
        state["lock"] = f


def _unlock():
    if state["lock"] is not None:
        state["lock"].close()
        state["lock"] = None


def sh(cmd, check=True, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))}: exit {r.returncode}\n"
                             f"{r.stdout[-3000:]}{r.stderr[-3000:]}")
    return r


# ---------------------------------------------------------------- versions

def dkms_conf():
    return (PROJECT / "dkms.conf").read_text()


def version():
    return re.search(r'^PACKAGE_VERSION="([^"]+)"', dkms_conf(), re.M).group(1)


def t_versions_agree(kvers):
    ver = version()
    deb = re.match(r"\S+ \(([^)]+)\)", (PROJECT / "debian/changelog").read_text()).group(1)
    spec = (PROJECT / "rpm/uniballoon-dkms.spec").read_text()
    rpm_ver = re.search(r"^Version:\s*(\S+)", spec, re.M).group(1)
    rpm_log = re.search(r"^%changelog\n\*.* - (\S+)-\S+$", spec, re.M).group(1)
    assert deb.split("-")[0] == ver, f"debian/changelog {deb} vs dkms.conf {ver}"
    assert rpm_ver == ver and rpm_log == ver, f"spec Version {rpm_ver}, %changelog {rpm_log}, dkms.conf {ver}"
    assert "$(UB_DIR)/dkms.conf" in (PROJECT / "Kbuild").read_text(), "Kbuild no longer reads dkms.conf"
    pattern = re.search(r'^BUILD_EXCLUSIVE_KERNEL="([^"]+)"', dkms_conf(), re.M).group(1)
    for k in kvers:   # dkms matches with bash =~; the pattern is plain ERE, as Python reads it
        assert re.search(pattern, k), f"BUILD_EXCLUSIVE_KERNEL rejects lab kernel {k}"
    for k in ("5.10.0-30-amd64", "6.0.12-1-amd64", "4.19.0"):
        assert not re.search(pattern, k), f"BUILD_EXCLUSIVE_KERNEL accepts {k}"
    return f"{ver} everywhere; kernels 6.1 and later"


# ---------------------------------------------------------------- building

def clean_copy(dst):
    """The tracked (and new, not ignored) files of the tree: what a clean checkout has."""
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    files = sh(["git", "-C", PROJECT, "ls-files", "-co", "--exclude-standard", "-z"]).stdout
    names = [f for f in files.split("\0") if f and (PROJECT / f).exists()]
    subprocess.run(["tar", "-cf", "-", "--null", "-T", "-"], cwd=PROJECT, input="\0".join(names).encode(),
                   stdout=open(dst / ".tar", "wb"), check=True)
    subprocess.run(["tar", "-xf", ".tar"], cwd=dst, check=True)
    (dst / ".tar").unlink()
    return dst


def t_deb_builds():
    ver = version()
    shutil.rmtree(PKG / "deb", ignore_errors=True)
    src = clean_copy(PKG / "deb" / f"{NAME}-{ver}")
    t0 = time.monotonic()
    # README's "deb-build" block, as written, in the source tree (a copy of it)
    block = readme_blocks.named()["deb-build"]
    for line in block.commands():
        sh(["bash", "-c", line], cwd=src)
    deb = PKG / "deb" / f"{DEB_NAME}_{ver}_all.deb"
    assert deb.exists(), f"{deb.name} missing"
    said = re.search(r"# writes (\S+)", block.text).group(1)
    assert (src / said).resolve() == deb.resolve(), f"README says it writes {said}, the .deb is {deb}"
    state["deb"] = deb
    return f"{deb.name} in {time.monotonic() - t0:.1f} s"


def t_lintian():
    changes = sorted((PKG / "deb").glob("*.changes"))[-1]
    r = sh(["lintian", "-I", "-E", "--pedantic", "--tag-display-limit", "0", changes], check=False)
    tags = [l for l in r.stdout.splitlines() if re.match(r"[EWIPX]: ", l)]
    assert not tags and r.returncode == 0, "\n".join(tags) or r.stderr
    overrides = (PROJECT / "debian/uniballoon-dkms.lintian-overrides").read_text()
    n = sum(1 for l in overrides.splitlines() if l.startswith(DEB_NAME + ":"))
    return f"no tag at --pedantic; {n} justified overrides"


def t_rpm_builds():
    ver = version()
    top = PKG / "rpm"
    shutil.rmtree(top, ignore_errors=True)
    (top / "SOURCES").mkdir(parents=True)
    clean_copy(top / f"{NAME}-{ver}")
    sh(["tar", "-czf", top / "SOURCES" / f"{NAME}-{ver}.tar.gz", "-C", top, f"{NAME}-{ver}"])
    shutil.rmtree(top / f"{NAME}-{ver}")
    # --nodeps: this Debian host's rpm database is empty, so BuildRequires cannot be met
    sh(["rpmbuild", "--nodeps", "--define", f"_topdir {top}", "-bb", PROJECT / "rpm/uniballoon-dkms.spec"])
    rpms = sorted(top.glob(f"RPMS/noarch/{DEB_NAME}-{ver}-*.noarch.rpm"))
    assert rpms, "no noarch rpm"
    state["rpm"] = rpms[-1]
    return rpms[-1].name


def t_rpm_bpftrace_optional():
    """bpftrace is suggested, as in the .deb, never required (the tools' shebang)."""
    req = sh(["rpm", "-qp", "--requires", state["rpm"]]).stdout.split("\n")
    sug = sh(["rpm", "-qp", "--suggests", state["rpm"]]).stdout.split("\n")
    assert not [r for r in req if "bpftrace" in r], req
    assert "bpftrace" in sug, sug
    return "requires: " + ", ".join(r for r in req if r and not r.startswith("rpmlib("))


def t_rpmlint():
    r = sh(["rpmlint", "-r", PROJECT / "rpm/uniballoon-dkms.rpmlintrc", state["rpm"],
            PROJECT / "rpm/uniballoon-dkms.spec"], check=False)
    last = [l for l in r.stdout.splitlines() if "checked;" in l]
    assert r.returncode == 0 and last and " 0 errors, 0 warnings" in last[-1], r.stdout[-3000:]
    return last[-1].strip()


def _tree(root):
    """{path: (sha256, executable)} for the regular files under root. A compressed
    file counts by its content, under its name without .gz: the two distributions'
    tools compress man pages each their own way."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            data, name = p.read_bytes(), "/" + str(p.relative_to(root))
            if name.endswith(".gz"):
                data, name = gzip.decompress(data), name[:-3]
            out[name] = (hashlib.sha256(data).hexdigest(), bool(p.stat().st_mode & 0o111))
    return out


def _links(root):
    """{path: target} for the symbolic links under root."""
    return {"/" + str(p.relative_to(root)): os.readlink(p) for p in sorted(root.rglob("*")) if p.is_symlink()}


def t_payloads_match():
    """The same files in both packages, byte for byte and with the same modes; only the
    distributions' places differ: /lib (Debian, merged /usr) vs /usr/lib, and the docs."""
    ver = version()
    d, r = PKG / "payload-deb", PKG / "payload-rpm"
    for x in (d, r):
        shutil.rmtree(x, ignore_errors=True)
        x.mkdir(parents=True)
    sh(["dpkg-deb", "-x", state["deb"], d])
    cpio = subprocess.run(["rpm2cpio", state["rpm"]], capture_output=True, check=True).stdout
    subprocess.run(["cpio", "-idm", "--quiet"], cwd=r, input=cpio, check=True)

    def norm(tree, doc_prefix, lic_prefix=None):
        files, docs = {}, set()
        for path, v in tree.items():
            if path.startswith(doc_prefix):
                docs.add(path[len(doc_prefix):])
            elif (lic_prefix and path.startswith(lic_prefix)) or path.startswith("/usr/share/lintian/"):
                continue   # the distributions' own metadata: licence file, lintian overrides
            else:
                files[re.sub(r"^/lib/", "/usr/lib/", path)] = v
        return files, docs

    # the tools on the PATH: the same links in both, to the files in BT_DIR
    dlinks, rlinks = _links(d), _links(r)
    assert dlinks == rlinks, f"links: deb {dlinks} rpm {rlinks}"
    for t in BT_TOOLS:
        assert dlinks.get(f"/usr/sbin/{t}.bt") == f"../share/uniballoon/bpftrace/{t}.bt", dlinks
    dfiles, ddocs = norm(_tree(d), f"/usr/share/doc/{DEB_NAME}/")
    rfiles, rdocs = norm(_tree(r), f"/usr/share/doc/{DEB_NAME}-{ver}/", f"/usr/share/licenses/{DEB_NAME}-{ver}/")
    ddocs -= {"copyright", "changelog"}          # Debian's own metadata files
    diff = sorted(set(dfiles) ^ set(rfiles))
    assert not diff, "only in one package: " + ", ".join(diff)
    differ = [p for p in dfiles if dfiles[p] != rfiles[p]]
    assert not differ, "content or mode differs: " + ", ".join(differ)
    assert ddocs == rdocs, f"docs: deb {sorted(ddocs)} rpm {sorted(rdocs)}"
    for t in BT_TOOLS:
        assert f"examples/{t}_example.txt" in ddocs, f"examples/{t}_example.txt not in the docs"
    for must in (f"/usr/src/{NAME}-{ver}/dkms.conf", f"/usr/src/{NAME}-{ver}/Kbuild",
                 "/usr/lib/modprobe.d/uniballoon.conf", "/usr/share/man/man4/uniballoon.4",
                 *(f"{BT_DIR}/{t}.bt" for t in BT_TOOLS),
                 *(f"/usr/share/man/man8/{t}.bt.8" for t in BT_TOOLS)):
        assert must in dfiles, f"{must} missing"
    assert not any(p.endswith("compat_config.h") for p in dfiles), "generated compat_config.h shipped"
    # the lab's stand-in for vmw_balloon (tools/lab/vmw-standin) is for test builds only
    assert not any("standin" in p for p in dfiles), "the lab's vmw_balloon stand-in shipped"
    # and so is its VMware host model (tools/lab/vmware-model)
    assert not any("vmware_model" in p for p in dfiles), "the lab's VMware host model shipped"
    return f"{len(dfiles)} files, {len(dlinks)} links and {len(ddocs)} docs alike"


def t_rpm_scriptlets():
    """%post adds the version (--rpm_safe_upgrade) and installs it for every kernel with headers,
    %preun removes it for all kernels (cancelled by dkms on a same-version upgrade); nothing in
    %postun. Run with a dkms that only records its arguments."""
    ver = version()
    qf = ("%{POSTIN}\n--preun--\n%{PREUN}\n--postun--\n%{POSTUN}\n--deps--\n"
          "[%{REQUIREFLAGS:deptype} %{REQUIRENAME}\n]")
    out = sh(["rpm", "-qp", "--qf", qf, state["rpm"]]).stdout
    post, rest = out.split("\n--preun--\n")
    preun, rest = rest.split("\n--postun--\n")
    postun, deps = rest.split("\n--deps--\n")
    assert postun.strip() == "(none)", f"%postun: {postun}"
    for kind in ("post", "preun"):
        assert re.search(rf"^{kind} dkms$", deps, re.M), f"no Requires({kind}): dkms\n{deps}"
    fake = PKG / "fakebin"
    fake.mkdir(parents=True, exist_ok=True)
    log = PKG / "fakebin.log"
    (fake / "dkms").write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    (fake / "dkms").chmod(0o755)
    env = dict(os.environ, PATH=f"{fake}:{os.environ['PATH']}")
    calls = {}
    for name, script in (("post", post), ("preun", preun)):
        log.write_text("")
        sh(["sh", "-e", "-c", script], env=env)
        calls[name] = log.read_text().splitlines()
    with_headers = sorted(k.name for k in Path("/lib/modules").iterdir() if (k / "build/include").is_dir())
    want_post = [f"add -m {NAME} -v {ver} -q --rpm_safe_upgrade"] + \
        [f"install -m {NAME} -v {ver} -k {k} -q --force" for k in with_headers]
    assert sorted(calls["post"]) == sorted(want_post), f"%post calls {calls['post']}, want {want_post}"
    assert calls["preun"] == [f"remove -m {NAME} -v {ver} -q --all --rpm_safe_upgrade"], calls["preun"]
    return f"%post: add + install for {len(with_headers)} kernels; %preun: remove --all"


# ---------------------------------------------------------------- install, purge

def dpkg_status():
    r = sh(["dpkg-query", "-W", "-f=${Status}", DEB_NAME], check=False)
    return r.stdout.strip() if r.returncode == 0 else "not known"


def _leftovers(kvers):
    """The installed module and the modprobe file. /usr/src/uniballoon-<version> and the dkms
    tree are left out: another checkout's make check may use them for its own dkms test."""
    bad = []
    for k in kvers:
        bad += [str(p) for p in Path(f"/lib/modules/{k}").rglob("uniballoon.ko*")]
    for p in (Path("/lib/modprobe.d/uniballoon.conf"), Path("/usr/lib/modprobe.d/uniballoon.conf"),
              Path("/etc/modprobe.d/uniballoon.conf")):
        if p.exists():
            bad.append(str(p))
    return bad


def t_install(kvers):
    """apt installs the .deb: dh_dkms's postinst has DKMS build and install for every
    kernel with headers (autoinstall_all_kernels), compressed like the kernel's modules."""
    ver = version()
    _lock()
    if dpkg_status() != "not known" and "not-installed" not in dpkg_status():
        sh(["apt-get", "purge", "-y", "-q", DEB_NAME], check=False)
    # a dkms add of the same version by hand (the old dkms test) would be in the way
    sh(["dkms", "remove", f"{NAME}/{ver}", "--all"], check=False)
    shutil.rmtree(f"/usr/src/{NAME}-{ver}", ignore_errors=True)
    state["installed"] = True
    atexit.register(purge_quietly)
    t0 = time.monotonic()
    r = sh(["apt-get", "install", "-y", "-q", "--no-install-recommends", state["deb"]],
           env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    took = time.monotonic() - t0
    figure("host", "apt install of the .deb (DKMS builds for each kernel)", f"{took:.0f} s")
    status = sh(["dkms", "status", NAME]).stdout
    for k in kvers:
        assert re.search(rf"^{NAME}/{ver}, {re.escape(k)}, \S+: installed", status, re.M), \
            f"{k} not installed:\n{status}\n{r.stdout[-3000:]}"
        kos = list(Path(f"/lib/modules/{k}/updates/dkms").glob("uniballoon.ko*"))
        assert len(kos) == 1, f"{k}: {kos}"
        info = sh(["modinfo", "-F", "version", kos[0]]).stdout.strip()
        assert info == ver, f"{kos[0]}: version {info}"
    state["install_ok"] = True
    return f"installed for {', '.join(kvers)} in {took:.0f} s"


def t_aliases_pick_uniballoon(kvers):
    """What udev does for the virtio balloon device and a VMware DMI: look the modalias up
    with the blacklist applied (modprobe -b). uniballoon only; virtio_balloon by name still."""
    for k in kvers:
        for alias in (VIRTIO_ALIAS, VMWARE_ALIAS, *XEN_ALIASES):
            out = sh(["modprobe", "-n", "-v", "-b", "-S", k, alias]).stdout
            mods = [Path(l.split()[1]).name for l in out.splitlines() if l.startswith("insmod")]
            assert mods and mods[-1].startswith("uniballoon.ko"), f"{k} {alias}: {out}"
            assert not any(m.startswith(("virtio_balloon", "vmw_balloon")) for m in mods), out
        out = subprocess.run(["modprobe", "-n", "-v", "-b", "-S", k, NOT_XEN_ALIAS],
                             capture_output=True, text=True).stdout
        assert "uniballoon" not in out, f"{k}: a cpu without XENPV loads uniballoon: {out}"
        out = sh(["modprobe", "-n", "-v", "-S", k, "virtio_balloon"]).stdout
        assert "virtio_balloon.ko" in out, f"{k}: modprobe virtio_balloon by name: {out}"
    return "virtio, VMware and Xen aliases -> uniballoon; virtio_balloon by name still loads"


def t_kselftest_host(ktree):
    """The selftests dropped into a kernel tree run with make TARGETS=... run_tests, and SKIP
    (KTAP) on the host, where uniballoon has no device."""
    ks = ktree / "tools/testing/selftests"
    dst = ks / KSELFTEST_TARGET
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(PROJECT / "selftests", dst)
    state["ktree"] = ks
    r = sh(["make", "-C", ks, f"TARGETS={KSELFTEST_TARGET}", "run_tests"])
    res = re.findall(rf"^(ok|not ok) \d+ selftests: {KSELFTEST_TARGET}: (\S+)( # SKIP)?", r.stdout, re.M)
    progs = re.findall(r"^TEST_PROGS := (.*)$", (PROJECT / "selftests/Makefile").read_text(), re.M)[0].split()
    assert sorted(p for _, p, _ in res) == sorted(progs), r.stdout[-3000:]
    assert all(ok == "ok" and skip for ok, _, skip in res), r.stdout[-3000:]
    inst = PKG / "kselftest-install"
    shutil.rmtree(inst, ignore_errors=True)
    sh(["make", "-C", ks, f"TARGETS={KSELFTEST_TARGET}", "install", f"INSTALL_PATH={inst}"])
    listed = (inst / "kselftest-list.txt").read_text().split()
    assert len(listed) == len(progs), listed
    return f"{len(progs)} programs SKIP on the host; make install lists them"


def purge(kvers):
    """Purge the package; the module must be gone from every kernel, the aliases back."""
    if not state["installed"]:
        _unlock()
        return "SKIP: the package was not installed"
    t0 = time.monotonic()
    try:
        sh(["apt-get", "purge", "-y", "-q", DEB_NAME], env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    finally:
        state["installed"] = False
        _unlock()
    figure("host", "apt purge of the package", f"{time.monotonic() - t0:.0f} s")
    assert "not-installed" in dpkg_status() or dpkg_status() == "not known", dpkg_status()
    bad = _leftovers(kvers)
    assert not bad, "left behind: " + ", ".join(bad)
    status = sh(["dkms", "status", NAME]).stdout
    assert ": installed" not in status, f"dkms still has it installed:\n{status}"
    for k in kvers:
        out = sh(["modprobe", "-n", "-v", "-b", "-S", k, VIRTIO_ALIAS]).stdout
        assert "uniballoon" not in out and "virtio_balloon" in out, f"{k}: {out}"
    return f"module gone for {', '.join(kvers)}; the virtio alias gives virtio_balloon again"


def purge_quietly():
    if state["installed"]:
        subprocess.run(["apt-get", "purge", "-y", "-q", DEB_NAME], capture_output=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        state["installed"] = False
    _unlock()


def host(kvers, kernel_source):
    """Host steps; leaves the package installed for the guests when all went well."""
    state["kvers"] = list(kvers)
    trixie_start()   # debootstrap and apt (cold: 75-90 s) beside the tests below
    test("README: every command block of the checked sections is run by make check or exempt with a reason",
         t_readme_blocks_marked)
    test("packages: tools/bpftrace/*_example.txt are the tools' real output (the live checks pass on them)",
         t_examples_real)
    test("packages: dkms.conf's version and kernel range agree with debian/ and the spec",
         t_versions_agree, kvers)
    deb = test("packages: the .deb builds from a clean copy (README's deb-build: dpkg-buildpackage -us -uc -b)",
               t_deb_builds)
    if deb:
        test("packages: lintian is clean (pedantic; overrides justified)", t_lintian)
    rpm = test("packages: the .rpm builds (rpmbuild, noarch)", t_rpm_builds)
    if rpm:
        test("packages: rpmlint is clean (filters justified in rpm/uniballoon-dkms.rpmlintrc)", t_rpmlint)
        test("packages: the .rpm suggests bpftrace and does not require it", t_rpm_bpftrace_optional)
        test("packages: the rpm scriptlets call dkms add/install and remove as they should", t_rpm_scriptlets)
    if deb and rpm:
        test("packages: the .deb and the .rpm carry the same files", t_payloads_match)
    if deb and test(f"packages: the .deb installs; dkms ({dkms_version_str()}) builds from dkms.conf "
                    "for every kernel", t_install, kvers):
        test("packages: udev's alias lookups give uniballoon, not the in-tree drivers", t_aliases_pick_uniballoon,
             kvers)
    test("selftests: run the kselftest way from a kernel tree, SKIP on the host", t_kselftest_host,
         kernel_source())
    if deb:
        trixie_tests()
    else:
        trixie["proc"].wait()


# ---------------------------------------------------------------- Debian 13 (trixie)

TRIXIE = PROJECT / "tools/lab/trixie-chroot.sh"
TRIXIE_ROOT = PROJECT / "build/trixie-chroot"
TRIXIE_WORK = "/tmp/uniballoon-test"          # inside the chroot
trixie = {"proc": None, "out": None, "rel": None}


def trixie_start():
    """Make (or find) the cached chroot in the background, beside the host's package tests."""
    out = PKG.parent / "trixie-chroot.out"
    out.parent.mkdir(parents=True, exist_ok=True)
    trixie["out"] = out
    trixie["t0"] = time.monotonic()
    trixie["proc"] = subprocess.Popen(["nice", "-n", "10", TRIXIE], stdout=open(out, "w"),
                                      stderr=subprocess.STDOUT)


def trixie_run(*cmd, check=True, env=None):
    e = dict(os.environ, **(env or {}))
    return sh([TRIXIE, "run", *cmd], check=check, env=e)


def trixie_pkg_versions(*names):
    out = trixie_run("dpkg-query", "-W", "-f=${Package} ${Version}\n", *names).stdout
    return dict(l.split() for l in out.splitlines())


def t_trixie_chroot():
    """debootstrap's trixie with trixie's dkms, gcc-14, 6.12 headers, bpftrace and lintian."""
    if trixie["proc"] is None:
        trixie_start()
    rc = trixie["proc"].wait()
    took = time.monotonic() - trixie["t0"]
    out = trixie["out"].read_text()
    assert rc == 0, f"{TRIXIE} failed (exit {rc}):\n{out[-3000:]}"
    made = re.search(r"made .* in (\d+) s, downloaded (\d+) MiB", out)
    figure("host", "trixie chroot " + ("made (debootstrap and apt, cold)" if made else "found in the cache"),
           f"{made.group(1)} s, {made.group(2)} MiB downloaded" if made else f"{took:.0f} s")
    rel = sh([TRIXIE, "release"]).stdout.strip()
    assert re.fullmatch(r"6\.12\.\d+\+deb13-amd64", rel), f"trixie's headers are for {rel!r}, not 6.12.*+deb13"
    v = trixie_pkg_versions("dkms", "gcc-14", "bpftrace", "lintian", f"linux-headers-{rel}")
    assert v["dkms"].startswith("3.2"), f"trixie's dkms is {v['dkms']}, not 3.2"
    trixie.update(rel=rel, versions=v)
    return (f"{'made' if made else 'cached'} in {took:.0f} s: linux-headers-{rel}, dkms {v['dkms']}, "
            f"gcc-14 {v['gcc-14']}, bpftrace {v['bpftrace']}, lintian {v['lintian']}")


def _trixie_purge():
    if "not-installed" not in trixie_run("dpkg-query", "-W", "-f=${Status}", DEB_NAME, check=False).stdout:
        trixie_run("apt-get", "purge", "-y", "-q", DEB_NAME, check=False)


def t_trixie_install():
    """apt installs the bookworm-built .deb in trixie: dh_dkms's postinst has trixie's DKMS build
    the module for trixie's kernel from its headers (the chroot runs the host's kernel, so
    this is the autoinstall_all_kernels path, as for a kernel installed beside the running one);
    modinfo on the built .ko shows the version, the device aliases and trixie's vermagic.
    Then the package purges and the module is gone."""
    ver, rel = version(), trixie["rel"]
    _trixie_purge()                # left over by a run that died
    work = TRIXIE_ROOT / TRIXIE_WORK.lstrip("/")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copy(state["deb"], work)
    t0 = time.monotonic()
    r = trixie_run("apt-get", "install", "-y", "-q", "--no-install-recommends", f"{TRIXIE_WORK}/{state['deb'].name}",
                   check=False)
    took = time.monotonic() - t0
    figure("host", "trixie: apt install of the .deb (DKMS builds for 6.12)", f"{took:.0f} s")
    status = trixie_run("dkms", "status", "-m", NAME, "-v", ver, "-k", rel, check=False).stdout
    # dkms 3.2 keeps the log of a build in <kernel>/<arch>/log, of a failed one in build/
    logs = [p for p in (*(TRIXIE_ROOT / f"var/lib/dkms/{NAME}/{ver}/{rel}").glob("*/log/make.log"),
                        TRIXIE_ROOT / f"var/lib/dkms/{NAME}/{ver}/build/make.log") if p.exists()]
    if r.returncode != 0 or not re.search(rf"^{NAME}/{ver}, {re.escape(rel)}, \S+: installed", status, re.M):
        raise AssertionError(f"apt install exit {r.returncode}; dkms status for {rel}: {status.strip() or 'nothing'}\n"
                             f"{r.stdout[-2500:]}{r.stderr[-1000:]}" +
                             (f"\n{logs[0]}:\n{logs[0].read_text()[-2500:]}" if logs else ""))
    # the lab builds with warnings as errors (UB_WERROR=y); DKMS does not, so read its log
    assert logs, f"dkms kept no make.log under /var/lib/dkms/{NAME}/{ver}"
    log = logs[0].read_text()
    warnings = [l for l in log.splitlines() if re.search(r"\bwarning:", l)]
    assert not warnings, f"gcc-14 warns building for {rel} (make.log):\n" + "\n".join(warnings[:20])
    kos = sorted((TRIXIE_ROOT / f"lib/modules/{rel}/updates/dkms").glob(f"{NAME}.ko*"))
    assert len(kos) == 1, f"{rel}: updates/dkms holds {[k.name for k in kos]}"
    ko = "/" + str(kos[0].relative_to(TRIXIE_ROOT))
    info = trixie_run("modinfo", ko).stdout
    fields = {}
    for line in info.splitlines():
        m = re.match(r"(\w+):\s+(.*)", line)
        if m:
            fields.setdefault(m.group(1), []).append(m.group(2).strip())
    assert fields.get("version") == [ver], f"modinfo {ko}: version {fields.get('version')}, want {ver}\n{info}"
    assert fields.get("vermagic", [""])[0].startswith(rel + " "), f"modinfo {ko}: vermagic {fields.get('vermagic')}"
    aliases = fields.get("alias", [])
    for want in ("virtio:d00000005v*", "dmi:*:svnVMware*:*", "dmi:*:svnXen:*"):
        assert want in aliases, f"modinfo {ko}: no alias {want}; aliases: {aliases}"
    # what udev looks up for the virtio balloon: modprobe resolves it to uniballoon in trixie too
    mp = trixie_run("modprobe", "-n", "-v", "-b", "-S", rel, VIRTIO_ALIAS, check=False).stdout
    assert NAME in mp and "virtio_balloon" not in mp, f"modprobe -S {rel} {VIRTIO_ALIAS}: {mp}"
    return (f"{os.path.basename(ko)} {ver} for {rel} in {took:.0f} s, no warning ({len(aliases)} aliases, "
            f"signed by {fields.get('signer', ['no one'])[0]})")


def t_trixie_purge():
    """apt purge in trixie: dkms removes the module, the modprobe file goes; the cached chroot
    is as it was made."""
    rel = trixie["rel"]
    t0 = time.monotonic()
    trixie_run("apt-get", "purge", "-y", "-q", DEB_NAME)
    figure("host", "trixie: apt purge of the package", f"{time.monotonic() - t0:.0f} s")
    left = [str(p) for p in (TRIXIE_ROOT / f"lib/modules/{rel}").rglob(f"{NAME}.ko*")]
    for d in ("usr/lib/modprobe.d", "etc/modprobe.d", "usr/src"):
        left += [str(p) for p in (TRIXIE_ROOT / d).glob(f"{NAME}*")]
    assert not left, "left behind in trixie by apt purge: " + ", ".join(left)
    shutil.rmtree(TRIXIE_ROOT / TRIXIE_WORK.lstrip("/"), ignore_errors=True)
    return f"module gone for {rel}"


def trace_formats():
    """The tracepoint format files the kernel makes from src/ub_trace.h (the module cannot be
    loaded on this host to read them): each event's fields after the 8-byte common header,
    naturally aligned, as the kernel lays out its trace entry struct."""
    text = (PROJECT / "src/ub_trace.h").read_text()
    sizes = {"u8": 1, "u16": 2, "u32": 4, "u64": 8, "s8": 1, "s16": 2, "s32": 4, "s64": 8, "char": 1, "int": 4}
    classes, events = {}, {}
    for kind, name, body in re.findall(r"^(DECLARE_EVENT_CLASS|TRACE_EVENT)\((\w+),(.*?)^\);", text, re.M | re.S):
        entry = re.search(r"TP_STRUCT__entry\((.*?)\n\t\)", body, re.S).group(1)
        fields = re.findall(r"__(field|array)\((\w+), (\w+)(?:, (\d+))?\)", entry)
        (classes if kind == "DECLARE_EVENT_CLASS" else events)[name] = fields
    for cls, name in re.findall(r"^DEFINE_EVENT\((\w+), (\w+),", text, re.M):
        events[name] = classes[cls]
    assert events, "no TRACE_EVENT or DEFINE_EVENT in src/ub_trace.h"
    out = {}
    for i, (name, fields) in enumerate(sorted(events.items())):
        lines = ["\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;",
                 "\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;",
                 "\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;",
                 "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;", ""]
        off = 8
        for kind, typ, fname, n in fields:
            assert typ in sizes, f"src/ub_trace.h: field type {typ} of {name}.{fname} unknown to the test"
            size, align = sizes[typ] * (int(n) if kind == "array" else 1), sizes[typ]
            off = (off + align - 1) // align * align
            decl = f"{typ} {fname}[{n}]" if kind == "array" else f"{typ} {fname}"
            signed = int(typ.startswith("s") or typ in ("char", "int"))
            lines.append(f"\tfield:{decl};\toffset:{off};\tsize:{size};\tsigned:{signed};")
            off += size
        out[name] = f"name: {name}\nID: {1500 + i}\nformat:\n" + "\n".join(lines) + "\n\nprint fmt: \"\"\n"
    return out


def t_trixie_bpftrace():
    """trixie's bpftrace compiles the packaged tools to BPF without attaching (--emit-elf is
    its dry run: parse, semantic analysis against the tracepoint formats, codegen). bpftrace
    0.23 has no parse-only flag (-d STAGE prints stages and runs on; --dry-run attaches), and
    the host cannot load the 6.12 module, so the balloon:* formats come from src/ub_trace.h
    on a tracefs stand-in. Control: a misspelt field must be refused."""
    rel = trixie["rel"]
    work = TRIXIE_ROOT / TRIXIE_WORK.lstrip("/")
    tfs = work / "tracefs"
    shutil.rmtree(tfs, ignore_errors=True)
    formats = trace_formats()
    for name, text in formats.items():
        (tfs / "events/balloon" / name).mkdir(parents=True)
        (tfs / "events/balloon" / name / "format").write_text(text)
        (tfs / "events/balloon" / name / "id").write_text(text.split("\n")[1].split()[1] + "\n")
    (tfs / "available_events").write_text("".join(f"balloon:{n}\n" for n in formats))
    env = {"UB_CHROOT_TRACEFS": f"{TRIXIE_WORK}/tracefs"}
    kenv = [f"BPFTRACE_KERNEL_SOURCE=/lib/modules/{rel}/source", f"BPFTRACE_KERNEL_BUILD=/lib/modules/{rel}/build"]

    def compile_(path):
        elf = f"{TRIXIE_WORK}/{Path(path).stem}.elf"
        (TRIXIE_ROOT / elf.lstrip("/")).unlink(missing_ok=True)
        r = trixie_run("env", *kenv, "bpftrace", "--emit-elf", elf, path, check=False, env=env)
        out = r.stdout + r.stderr
        errs = [l for l in out.splitlines() if "ERROR" in l or "error:" in l]
        return r.returncode == 0 and not errs and (TRIXIE_ROOT / elf.lstrip("/")).exists(), out

    sizes = []
    for t in BT_TOOLS:
        path = f"{BT_DIR}/{t}.bt"
        if not (TRIXIE_ROOT / path.lstrip("/")).exists():   # the package was purged: its files
            sh(["dpkg-deb", "-x", state["deb"], TRIXIE_ROOT / TRIXIE_WORK.lstrip("/") / "deb"])
            path = f"{TRIXIE_WORK}/deb{BT_DIR}/{t}.bt"
        ok, out = compile_(path)
        warns = [l for l in out.splitlines() if "WARNING" in l and "RLIMIT_MEMLOCK" not in l]
        assert ok, f"bpftrace {trixie['versions']['bpftrace']} refuses {t}.bt:\n{out[-3000:]}"
        assert not warns, f"bpftrace {trixie['versions']['bpftrace']} warns on {t}.bt:\n" + "\n".join(warns)
        sizes.append((TRIXIE_ROOT / f"{TRIXIE_WORK}/{t}.elf".lstrip("/")).stat().st_size)
    bad = (TRIXIE_ROOT / path.lstrip("/")).read_text().replace("args->pages", "args->pagez")
    (work / "control.bt").write_text(bad)
    ok, out = compile_(f"{TRIXIE_WORK}/control.bt")
    assert not ok and "pagez" in out, \
        f"control: bpftrace did not refuse args->pagez for its name (the formats are not read?):\n{out[-2000:]}"
    return (f"{', '.join(BT_TOOLS)}: BPF ELF of {', '.join(str(s) for s in sizes)} bytes; "
            f"a misspelt field is refused")


def t_trixie_lintian():
    """trixie's lintian on the bookworm-built package, with t_lintian's flags and assertion."""
    work = TRIXIE_ROOT / TRIXIE_WORK.lstrip("/") / "changes"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    changes = sorted((PKG / "deb").glob("*.changes"))[-1]
    for f in (PKG / "deb").iterdir():
        if f.is_file():
            shutil.copy(f, work)
    r = trixie_run("lintian", "-I", "-E", "--pedantic", "--tag-display-limit", "0",
                   f"{TRIXIE_WORK}/changes/{changes.name}", check=False)
    tags = [l for l in r.stdout.splitlines() if re.match(r"[EWIPX]: ", l)]
    assert not tags and r.returncode == 0, "\n".join(tags) or r.stderr
    return f"no tag at --pedantic from lintian {trixie['versions']['lintian']}"


def trixie_tests():
    if not test("trixie: a debootstrap chroot (cached in build/trixie-chroot) with trixie's dkms 3.2, "
                "gcc-14, 6.12 headers, bpftrace and lintian", t_trixie_chroot):
        return
    rel, v = trixie["rel"], trixie["versions"]
    test(f"trixie: the .deb installs with apt, DKMS {v['dkms']} builds for {rel}, modinfo shows it",
         t_trixie_install)
    test(f"trixie: bpftrace {v['bpftrace']} compiles the three bpftrace tools (--emit-elf, no attach)",
         t_trixie_bpftrace)
    test(f"trixie: lintian {v['lintian']} is clean (pedantic; overrides justified)", t_trixie_lintian)
    test("trixie: apt purge removes the package and the module", t_trixie_purge)


def dkms_version_str():
    return sh(["dkms", "--version"], check=False).stdout.strip() or "dkms"


# ---------------------------------------------------------------- the guest

def t_udev_settles(g, kver):
    t0 = time.monotonic()
    g.run("udevadm settle --timeout=150", timeout=170)
    figure(kver, "udev coldplug settled (after the agent answered)", f"{time.monotonic() - t0:.1f} s")


def t_autoload(g, kver):
    mods = g.run("cut -d' ' -f1 /proc/modules")[1].split()
    assert NAME in mods, f"uniballoon not loaded by udev; modules: {' '.join(mods)}"
    assert "virtio_balloon" not in mods, "virtio_balloon was loaded too"
    path = g.run(f"modinfo -n {NAME}")[1].strip()
    assert path.startswith(f"/lib/modules/{kver}/updates/dkms/"), path
    src = g.run(f"modinfo -F srcversion {path}")[1].strip()
    loaded = g.run(f"cat /sys/module/{NAME}/srcversion")[1].strip()
    assert src == loaded, f"loaded srcversion {loaded}, {path} has {src}"
    return path


# Given at boot on the kernel command line, which kmod reads as it reads
# /etc/modprobe.d (the guest's /etc is the host's, read-only): the same path
# into the module's parameters when udev loads it.
BOOT_OPTIONS = {"deflate_rate": 2 << 30}


def t_boot_options(g):
    for name, want in BOOT_OPTIONS.items():
        live = int(g.run(f"cat /sys/kernel/balloon/{name}")[1])
        param = int(g.run(f"cat /sys/module/{NAME}/parameters/{name}")[1])
        assert live == param == want, f"{name}: sysfs {live}, parameter {param}, want {want}"
    return ", ".join(f"{NAME}.{k}={v}" for k, v in BOOT_OPTIONS.items())


def t_took_device(g):
    assert g.sysb("backend") == "virtio", g.sysb("backend")
    drv = g.run("basename $(readlink /sys/bus/virtio/devices/virtio0/driver 2>/dev/null) 2>/dev/null; "
                "for d in /sys/bus/virtio/devices/*; do [ $(cat $d/device) = 0x0005 ] && "
                "basename $(readlink $d/driver); done", check=False)[1].split()
    assert NAME in drv, f"balloon device driver: {drv}"
    dmesg = g.run("dmesg")[1]
    for line in ("uniballoon: backend virtio active", "uniballoon: using the virtio backend"):
        assert line in dmesg, f"no '{line}' in dmesg"


def _tool_line(t):
    """The line of README's "trace-tools" block that runs tool t by its name on the PATH."""
    lines = [l for l in readme_blocks.named()["trace-tools"].commands() if re.search(rf"(^|\s){t}\.bt(\s|$)", l)]
    assert len(lines) == 1, f"README's trace-tools block runs {t}.bt {len(lines)} times"
    return lines[0]


def _tool_out(g, t):
    """What the tool printed: script's typescript without its own lines, and with \n."""
    out = g.run(f"cat /tmp/{t}.out")[1].replace("\r", "")
    return "".join(l for l in out.splitlines(True) if not l.startswith(("Script started", "Script done")))


def _start_tools(g, tools):
    """Each tool by README's command line, as typed: on a terminal (script(1); bpftrace
    buffers all its output into a file), with the lab's sudo (README_BIN). The tool must
    run from /usr/sbin, found on the PATH. Returns {tool: (bpftrace pid, session id)}."""
    sessions, pids = {}, {}
    for t in tools:
        cmd = f"export PATH={README_BIN}:$PATH; cd /; sleep 100000 | script -qfec {shlex.quote(_tool_line(t))} /tmp/{t}.out"
        # setsid: one process group to end afterwards (sleep and script)
        sessions[t] = int(g.run(f"setsid bash -c {shlex.quote(cmd)} >/dev/null 2>&1 & echo $!")[1].split()[-1])

    def attached():
        for t in tools:
            if t not in pids:
                rc, out = g.run(f"pgrep -f -x '/usr/bin/bpftrace /usr/sbin/{t}.bt'", check=False)
                if rc != 0:
                    if g.run(f"kill -0 {sessions[t]} 2>/dev/null", check=False)[0] != 0:
                        raise AssertionError(f"{t}.bt did not start from /usr/sbin:\n{_tool_out(g, t)[-2000:]}")
                    return False
                pids[t] = int(out.split()[0])
            out = _tool_out(g, t)
            if g.run(f"kill -0 {pids[t]} 2>/dev/null", check=False)[0] != 0:
                raise AssertionError(f"{t}.bt exited:\n{out[-2000:]}")
            if "Hit Ctrl-C" not in out:
                return False
        return True
    try:
        g.wait_for(attached, 180, interval=1, what="the bpftrace tools to attach")
    except BaseException:
        _stop_tools(g, {t: (pids.get(t), sessions[t]) for t in tools})
        raise
    return {t: (pids[t], sessions[t]) for t in tools}


def _stop_tools(g, procs):
    pids = {t: p for t, (p, _) in procs.items() if p}
    try:
        _stop_bpftrace(g, pids)
    finally:
        g.run("kill -TERM -- " + " ".join(f"-{s}" for _, s in procs.values()) + " 2>/dev/null", check=False)
    return {t: _tool_out(g, t) for t in procs}


def _stop_bpftrace(g, pids):
    if not pids:
        return
    g.run("kill -INT " + " ".join(map(str, pids.values())) + " 2>/dev/null", check=False)
    # printing maps and detaching took over 60 s under load (6.1, CI19)
    try:
        g.wait_for(lambda: all(g.run(f"kill -0 {p} 2>/dev/null", check=False)[0] != 0
                               for p in pids.values()),
                   150, interval=0.5, what="the bpftrace tools to exit")
    except TimeoutError:
        # they hold the module through its tracepoints: do not leave them behind
        g.run("kill -KILL " + " ".join(map(str, pids.values())) + " 2>/dev/null", check=False)
        raise


def t_balloon_and_tools(g, kver):
    """QMP moves the packaged module's balloon by 256 MiB (inflate at 64 MiB/s, deflate
    unlimited) while bpftrace tools run; each tool's output must account for it."""
    t0 = time.monotonic()
    tools = tools_for(kver)
    pids = _start_tools(g, tools)
    figure(kver, f"bpftrace tools attached ({', '.join(tools)})", f"{time.monotonic() - t0:.1f} s")
    outs = {}
    try:
        g.run(f"echo 64M > {SYSB}/inflate_rate")
        g.balloon_to(256 * MiB)
        g.run(f"echo 0 > {SYSB}/inflate_rate")
        g.balloon_to(0)
        time.sleep(1.5)   # one more interval line from balloonrate
    finally:
        outs = _stop_tools(g, pids)
    state.setdefault("tool_out", {})[kver] = outs
    # kept for tools/bpftrace/*_example.txt (mk_examples.py)
    keep = PKG / "bpftrace-out" / kver
    keep.mkdir(parents=True, exist_ok=True)
    for t, out in outs.items():
        (keep / f"{t}.txt").write_text(out)
    return f"256 MiB in and out under {', '.join(tools)}"


def t_tool_snoop(kver):
    detail, batches = check_snoop(state["tool_out"][kver]["balloonsnoop"])
    state.setdefault("batches", {})[kver] = batches
    return detail


def check_snoop(out):
    """balloonsnoop.bt's output of the 256 MiB run; returns (detail, inflate batches)."""
    rows = [l.split() for l in out.splitlines() if re.match(r"\d\d:\d\d:\d\d (inflate|deflate|target) ", l)]
    kib = {e: sum(int(r[2]) for r in rows if r[1] == e) for e in ("inflate", "deflate")}
    assert kib["inflate"] == 256 * 1024 and kib["deflate"] == 256 * 1024, f"{kib}\n{out[-2000:]}"
    targets = [r for r in rows if r[1] == "target"]
    assert any(r[2] == str(256 * 1024) and "reason=host" in r for r in targets), out[-2000:]
    assert any(r[2] == "0" and "reason=host" in r for r in targets), out[-2000:]
    return (f"{len(rows)} events: inflate and deflate 256 MiB each, host targets",
            sum(1 for r in rows if r[1] == "inflate"))


def t_tool_rate(kver):
    return check_rate(state["tool_out"][kver]["balloonrate"])


def check_rate(out):
    rows = [l.split() for l in out.splitlines() if re.match(r"\d\d:\d\d:\d\d +\d", l)]
    assert rows, out[-2000:]
    tin = sum(float(r[1]) for r in rows)
    tout = sum(float(r[2]) for r in rows)
    peak = max((float(r[1]) for r in rows), default=0)
    # one decimal per line: each line may round down by up to 0.1 MiB
    assert 256 - 0.1 * len(rows) <= tin <= 256 and 256 - 0.1 * len(rows) <= tout <= 256, \
        f"in {tin} out {tout}\n{out[-2000:]}"
    assert peak <= 64 * 1.5 + 2, f"inflate_rate 64M, yet {peak} MiB in one second\n{out[-2000:]}"
    return f"{len(rows)} lines: {tin:.1f} MiB in (peak {peak:.1f}/s), {tout:.1f} MiB out"


def t_tool_lat(kver):
    return check_lat(state["tool_out"][kver]["balloonlat"], state.get("batches", {}).get(kver))


def check_lat(out, batches=None):
    counts = {}
    cur = None
    for line in out.splitlines():
        m = re.match(r"@(\w+)\[(\w+)\]:", line)
        if m:
            cur = (m.group(1), m.group(2))
            continue
        m = re.match(r"[\[(].*?[\])]\s+(\d+) \|", line)
        if m and cur:
            counts[cur] = counts.get(cur, 0) + int(m.group(1))
    for key in (("latency_us", "inflate"), ("latency_us", "deflate"), ("batch_kib", "inflate")):
        assert counts.get(key), f"no @{key[0]}[{key[1]}] histogram\n{out[-2000:]}"
    assert batches is None or counts[("latency_us", "inflate")] == batches, \
        f"{counts[('latency_us', 'inflate')]} inflate latencies, balloonsnoop saw {batches} batches"
    return (f"{counts[('latency_us', 'inflate')]} inflate and {counts[('latency_us', 'deflate')]} "
            "deflate batches in the histograms")


def t_kselftest_guest(g):
    """The kselftest framework runs our tests with the module loaded: they pass, not SKIP.
    Only balloon_abi.sh (TEST_PROGS on make's command line): the plain guest runs them all."""
    ks = state["ktree"]
    assert ks, "kselftest tree not prepared"
    t0 = time.monotonic()
    rc, out = g.run(f"make -C {ks} TARGETS={KSELFTEST_TARGET} TEST_PROGS=balloon_abi.sh run_tests",
                    timeout=600, check=False)
    res = re.findall(rf"^(ok|not ok) \d+ selftests: {KSELFTEST_TARGET}: (\S+)(.*)$", out, re.M)
    inner = re.findall(r"^# (ok|not ok) \d+ ", out, re.M)
    assert res and all(ok == "ok" and "SKIP" not in rest for ok, _, rest in res) and rc == 0, out[-3000:]
    assert "not ok" not in inner, out[-3000:]
    return f"{len(res)} program, {len(inner)} tests passed in {time.monotonic() - t0:.0f} s"


def t_abi_undefined(g):
    """get_abi.pl undefined: every file under /sys/kernel/balloon is documented in sysfs-abi/;
    and it does name one when its documentation is taken away."""
    tool = PROJECT / "build/linux-source/scripts/get_abi.pl"
    cmd = f"perl {tool} --dir %s --search-string /sys/kernel/balloon undefined 2>/dev/null"
    t0 = time.monotonic()
    out = g.run(cmd % (PROJECT / "sysfs-abi"), timeout=300)[1].strip()
    figure(g.kver, "get_abi.pl undefined (walks /sys)", f"{time.monotonic() - t0:.1f} s")
    assert not out, out
    files = int(g.run(f"find {SYSB} -type f | wc -l")[1])
    if not g.kver.startswith(ABI_CONTROL):
        return f"{files} files, all documented"
    # control: without sysfs-kernel-balloon every file must be reported
    g.run(f"rm -rf /tmp/abi && mkdir /tmp/abi && cp {PROJECT}/sysfs-abi/* /tmp/abi/ && "
          "rm /tmp/abi/sysfs-kernel-balloon")
    out = g.run(cmd % "/tmp/abi", timeout=300)[1]
    assert f"{SYSB}/size" in out, f"control run found nothing: {out[-1000:]}"
    return f"{files} files, all documented; without sysfs-kernel-balloon they are reported"


def t_explicit_intree(g):
    """The blacklist is by alias only: modprobe virtio_balloon by name still binds the device."""
    g.run(f"rmmod {NAME}")
    g.run("modprobe virtio_balloon")
    drv = g.run("for d in /sys/bus/virtio/devices/*; do [ $(cat $d/device) = 0x0005 ] && "
                "basename $(readlink $d/driver); done", check=False)[1].split()
    assert "virtio_balloon" in drv, drv
    g.run("rmmod virtio_balloon")


# ---------------------------------------------------------------- README's commands
#
# The README's command blocks in the sections of readme_blocks.CHECKED carry a marker
# (<!-- check: NAME -->) and run here as written, each line as one bash command, so that
# a README that stops working fails make check. The lab's adaptations, the same for all:
#   - sudo: the lab runs as root and has no sudo; README_BIN/sudo runs its arguments.
#   - the package's apt commands (deb-build-deps, deb-install, uninstall-deb) run in a
#     chroot on a throwaway overlay of the guest's root (ro_chroot): the guest's root is
#     the host's, read-only; what apt and dpkg change there is gone with the overlay.
#   - deb-build runs on the host, in t_deb_builds: building under TCG would take minutes.
#   - the bpftrace tools (trace-tools) run on a terminal (script(1)), as typed by a user.
#   - apt's "Do you want to continue? [Y/n]" (uninstall-deb) is answered Y, as by a user.
# Blocks exempt from the run say why in their marker.

README_BIN = PKG / "readme-bin"
# name: where it runs
README_RUNS = {
    "deb-build-deps": "guest, ro_chroot", "deb-build": "host, t_deb_builds",
    "deb-install": "guest, ro_chroot", "verify": "guest", "verify-dmesg": "guest (expected output)",
    "use-target": "guest", "use-floor": "guest", "use-rates": "guest", "use-oom": "guest",
    "use-reserve": "guest", "use-stats": "guest", "modprobe-conf": "guest (file content)",
    "trace-tools": "guest, t_balloon_and_tools", "uninstall-deb": "guest, ro_chroot",
}
SIZE = re.compile(r"(\d+)([KMGTkmgt]?)")
OV = "/tmp/readme-ov"     # on the guest's tmpfs /tmp


def parse_size(text):
    n, unit = SIZE.fullmatch(text).groups()
    return int(n) << (10 * " KMGT".index(unit.upper() or " "))


def t_readme_blocks_marked():
    """Every block of README's checked sections runs or is exempt with a reason; every
    marker names a block this file runs, and each it runs is marked. Also writes the
    lab's sudo (README_BIN/sudo), first, so that the guest's runs have it in any case."""
    README_BIN.mkdir(parents=True, exist_ok=True)
    (README_BIN / "sudo").write_text('#!/bin/sh\n# make check runs as root, without sudo: '
                                     'README\'s "sudo CMD" runs CMD\nexec "$@"\n')
    (README_BIN / "sudo").chmod(0o755)
    bad = readme_blocks.problems()
    assert not bad, "\n".join(bad)
    names = set(readme_blocks.named())
    assert names == set(README_RUNS), (f"marked, not run: {sorted(names - set(README_RUNS))}; "
                                       f"run, not marked: {sorted(set(README_RUNS) - names)}")
    exempt = [b for b in readme_blocks.blocks() if b.exempt]
    return f"{len(names)} blocks run, {len(exempt)} exempt with a reason, in {', '.join(readme_blocks.CHECKED)}"


def t_examples_real():
    """tools/bpftrace/*_example.txt are output of the tools in the guest_pkg scenario
    (256 MiB in at 64 MiB/s, out unlimited): the live tests' checks pass on them."""
    d = PROJECT / "tools/bpftrace"
    snoop, batches = check_snoop((d / "balloonsnoop_example.txt").read_text())
    check_rate((d / "balloonrate_example.txt").read_text())
    check_lat((d / "balloonlat_example.txt").read_text())
    return f"all three; balloonsnoop's shows {batches} inflate batches"


def readme_run(g, name, cwd="/", timeout=120, chroot=False, answer=None):
    """Run README block `name`, each command line as written, in order; each must exit 0.
    answer: the standard input, what a user types at a prompt. Returns [(line, output)]."""
    res = []
    for line in readme_blocks.named()[name].commands():
        cmd = f"export PATH={README_BIN}:$PATH; cd {cwd} && {line}"
        if chroot:
            cmd = f"chroot {OV}/root /bin/bash -c {shlex.quote(cmd)}"
        # a newline ends the line's own comment
        cmd = f"printf {shlex.quote(answer)} | {{ {cmd}\n}}" if answer else f"{{ {cmd}\n}} < /dev/null"
        rc, out = g.run(cmd, timeout=timeout, check=False)
        assert rc == 0, f"README block {name}: `{line}` exited {rc}\n{out[-3000:]}"
        res.append((line, out))
    return res


def ro_chroot(g):
    """A writable overlay of the guest's read-only root at OV/root, with the guest's /proc,
    /sys, /dev, /run and the project share bound in."""
    binds = " && ".join(f"mount --rbind /{d} {OV}/root/{d}" for d in ("proc", "sys", "dev", "run"))
    g.run(f"mkdir -p {OV} && mount -t tmpfs tmpfs {OV} && mkdir {OV}/up {OV}/wk {OV}/root && "
          f"mount -t overlay overlay -o lowerdir=/,upperdir={OV}/up,workdir={OV}/wk {OV}/root && "
          f"{binds} && mount --bind {PROJECT} {OV}/root{PROJECT}")


def ro_chroot_gone(g):
    g.run(f"umount -R {OV}/root; umount {OV}", check=False)
    rc, out = g.run(f"grep ' {OV}' /proc/mounts", check=False)
    assert rc != 0, f"overlay still mounted:\n{out}"


def uniballoon_back(g):
    """After a test that failed half-way: uniballoon drives the device again."""
    if balloon_driver(g) != [NAME]:
        g.run("rmmod virtio_balloon", check=False)
        g.run(f"modprobe {NAME}", check=False)


def balloon_driver(g):
    return g.run("for d in /sys/bus/virtio/devices/*; do [ $(cat $d/device) = 0x0005 ] && "
                 "basename $(readlink $d/driver); done", check=False)[1].split()


def loaded(g):
    return g.run("cut -d' ' -f1 /proc/modules")[1].split()


def t_readme_verify(g, kver):
    """Verify and its kernel log: the values the comments give, the dmesg lines in order."""
    out = dict(readme_run(g, "verify"))
    lines = list(out)
    val = lambda i: out[lines[i]].strip()  # noqa: E731
    ver = version()
    assert re.search(r"#\s*virtio, vmware or xen", lines[0]) and val(0) == "virtio", (lines[0], val(0))
    assert val(1).startswith("target floor inflate_rate deflate_rate"), val(1)
    assert re.fullmatch(r"\d+\n\d+", val(2)), val(2)
    assert lines[3].endswith(f"# {ver}") and val(3) == ver, (lines[3], val(3))
    assert re.search(rf"^{NAME}/{ver}, {re.escape(kver)}, \S+: installed", val(4), re.M), val(4)
    dmesg = [re.sub(r"^\[[ \d.]+\] ", "", l) for l in val(5).splitlines()]
    want = [l for l in readme_blocks.named()["verify-dmesg"].text.splitlines() if l.strip()]
    at = 0
    for w in want:
        assert w in dmesg[at:], f"README's kernel log line {w!r} not in dmesg (in order):\n" + "\n".join(dmesg)
        at = dmesg.index(w, at) + 1
    return f"{len(lines)} commands; {len(want)} kernel log lines as the README shows them"


def t_readme_install(g, kver):
    """Build dependencies and install: apt finds everything the README names (already
    installed: the host installed the .deb); with virtio_balloon loaded, the block's
    modprobe lines hand the device over to uniballoon."""
    g.run(f"rmmod {NAME} && modprobe virtio_balloon")
    assert balloon_driver(g) == ["virtio_balloon"], balloon_driver(g)
    try:
        ro_chroot(g)
        deps = readme_run(g, "deb-build-deps", timeout=300, chroot=True)
        for pkg in re.findall(r"install (?:--\S+ )*(.*)", deps[0][0])[0].split():
            assert f"{pkg} is already the newest version" in deps[0][1], deps[0][1][-2000:]
        src = PKG / "deb" / f"{NAME}-{version()}"    # where README's deb-build ran
        res = readme_run(g, "deb-install", cwd=src, timeout=300, chroot=True)
    finally:
        ro_chroot_gone(g)
        uniballoon_back(g)
    for pkg in (f"linux-headers-{kver}", DEB_NAME):
        assert f"{pkg} is already the newest version" in res[0][1], res[0][1][-2000:]
    assert balloon_driver(g) == [NAME] and "virtio_balloon" not in loaded(g), (balloon_driver(g), loaded(g))
    g.wait_for(lambda: g.sysb("backend") == "virtio" and g.sysb("size") == g.sysb("host_target"), 30,
               what="uniballoon at the host's target")
    return "apt: all already installed; modprobe lines: uniballoon took the device from virtio_balloon"


RW = ("floor", "inflate_rate", "deflate_rate", "oom_deflate", "oom_deflate_size")


def writes(res):
    """{file: value} of the `echo VALUE > FILE` lines, the last write of each."""
    return {m.group(2): m.group(1) for m in (re.match(r"echo (\S+) > (\S+)", l) for l, _ in res) if m}


def assert_written(g, res):
    for f, v in writes(res).items():
        if v == "host":
            assert g.sysb("target_source") != "user", g.sysb("target_source")
        else:
            assert int(g.sysb(f)) == parse_size(v), f"echo {v} > {f}: reads {g.sysb(f)}"


def t_readme_use(g):
    """Use's blocks, in /sys/kernel/balloon: each write reads back as written, outputs as
    the comments say; the settings are restored after."""
    saved = {f: g.sysb(f) for f in RW}
    feats = g.sysb("features").split()
    try:
        res = readme_run(g, "use-target", cwd=SYSB)
        line, out = res[1]
        assert out.split() == line.split("#")[1].strip().split(", "), (line, out)
        assert_written(g, res)
        g.wait_for(lambda: g.sysb("size") == g.sysb("host_target"), 60, what="the balloon back at the host's target")
        for name in ("use-floor", "use-rates", "use-oom"):
            assert_written(g, readme_run(g, name, cwd=SYSB))
        (line, out), = readme_run(g, "use-reserve", cwd=SYSB)
        reserve = int(out)
        # "about 128 MiB in a 1 GiB guest with the defaults"; "It is 0 while oom_deflate is 0"
        if g.sysb("oom_deflate") == "1":
            assert 96 * MiB <= reserve <= 160 * MiB, reserve
        else:
            assert reserve == 0, reserve
        (line, out), = readme_run(g, "use-stats", cwd=SYSB)
        got = dict(l.split(":", 1) for l in out.split())
        text = (PROJECT / "README.md").read_text()
        para = text[text.index("**stats/.**"):text.index("<!-- check: use-stats -->")]
        named = {f"stats/{n}" for n in re.findall(r"`(\w+)`", para)}
        assert set(got) == named, f"stats/ has {sorted(got)}, the README names {sorted(named)}"
        assert all(v.isdigit() for v in got.values()), got
    finally:
        g.run(f"echo host > {SYSB}/target")
        for f in RW:
            if f != "oom_deflate" or "oom_deflate" in feats:
                g.run(f"echo {saved[f]} > {SYSB}/{f}")
    return f"target, floor, rates, OOM settings, pressure_reserve ({reserve}), {len(got)} counters"


VIRTIO_MODALIAS = "$(cat /sys/bus/virtio/devices/*/modalias | grep d00000005)"


def t_readme_modprobe_conf(g):
    """The modprobe.d example, written where it says: the device's alias (as udev loads it,
    blacklist applied) loads uniballoon with its options in force, and the in-tree drivers
    stay blacklisted. The guest's /etc is the host's: a copy of /etc/modprobe.d is bound over it."""
    text = readme_blocks.named()["modprobe-conf"].text
    path = re.match(r"# (/etc/modprobe\.d/\S+):", text).group(1)
    assert path == "/etc/modprobe.d/uniballoon.conf", path
    opts = dict(o.split("=") for o in re.search(rf"^options {NAME} (.*)$", text, re.M).group(1).split())
    feats = g.sysb("features").split()
    g.run("mkdir -p /tmp/modprobe.d && cp -a /etc/modprobe.d/. /tmp/modprobe.d/ && "
          "mount --bind /tmp/modprobe.d /etc/modprobe.d")
    try:
        g.run(f"cat > {path} <<'README_EOF'\n{text}README_EOF")
        g.run(f"rmmod {NAME}")
        g.run(f'modprobe -b "{VIRTIO_MODALIAS}"')
        assert balloon_driver(g) == [NAME] and "virtio_balloon" not in loaded(g), (balloon_driver(g), loaded(g))
        for k, v in opts.items():
            want = str(int(v == "1" and "oom_deflate" in feats)) if k == "oom_deflate" else str(parse_size(v))
            param = g.run(f"cat /sys/module/{NAME}/parameters/{k}")[1].strip()
            assert g.sysb(k) == param == want, f"{k}={v}: sysfs {g.sysb(k)}, parameter {param}, want {want}"
        bl = g.run(r"modprobe -c | grep -E '^blacklist (virtio|vmw)_balloon'")[1].split("\n")
        assert sorted(filter(None, bl)) == ["blacklist virtio_balloon", "blacklist vmw_balloon"], bl
    finally:
        g.run(f"rmmod {NAME}", check=False)
        g.run("umount /etc/modprobe.d", check=False)
        g.run(f'modprobe -b "{VIRTIO_MODALIAS}"', check=False)
        uniballoon_back(g)
    assert balloon_driver(g) == [NAME] and g.sysb("floor") == "0", (balloon_driver(g), g.sysb("floor"))
    return ", ".join(f"{k}={v}" for k, v in opts.items()) + " in force; the blacklist kept"


def t_readme_uninstall(g):
    """Uninstall with a 64 MiB balloon: the host gets every page back, and the package is
    gone (in the throwaway overlay): module files, modprobe.d file, the tools; the virtio
    alias gives virtio_balloon again."""
    if NAME not in loaded(g):
        g.run(f"modprobe {NAME}")
    g.wait_for(lambda: g.sysb("backend") == "virtio", 30, what="uniballoon bound")
    g.balloon_to(64 * MiB)
    try:
        ro_chroot(g)
        out = readme_run(g, "uninstall-deb", timeout=900, chroot=True, answer="Y\n")[-1][1]
        assert re.search(rf"^Removing {DEB_NAME} ", out, re.M), out[-3000:]
        assert NAME not in loaded(g), loaded(g)
        assert g.actual() == GUEST_MB * MiB, g.qmp("query-balloon")
        ch = lambda cmd: g.run(f"chroot {OV}/root /bin/bash -c {shlex.quote(cmd)}", check=False)  # noqa: E731
        status = ch(f"dpkg-query -W -f='${{Status}}' {DEB_NAME}")[1]
        assert "not-installed" in status or "no packages found" in status, status
        left = ch("ls /lib/modules/*/updates/dkms/uniballoon.ko* /lib/modprobe.d/uniballoon.conf "
                  + " ".join(f"/usr/sbin/{t}.bt" for t in BT_TOOLS) + " 2>/dev/null")[1].split()
        assert not left, f"left behind: {left}"
        out = ch(f"modprobe -n -v -b {VIRTIO_ALIAS}")[1]
        assert "virtio_balloon" in out and NAME not in out, out
    finally:
        ro_chroot_gone(g)
    return "the balloon emptied, the module unloaded; the package purged in the overlay"


def guest_pkg(kver, ko):
    if not state.get("install_ok"):
        report(True, f"{kver}: packaged module in a guest with udev", "the package did not install", skip=True)
        return
    options = " ".join(f"{NAME}.{k}={v}" for k, v in BOOT_OPTIONS.items())
    with Guest(kver, mem_mb=GUEST_MB, name=f"pkg-{kver}", udev=True, append=options) as g:
        figure(kver, "boot with udev to agent", f"{g.boot_seconds:.1f} s")
        test(f"{kver}: udev (systemd-udevd from the host root) settles after coldplug", t_udev_settles, g, kver)
        if not test(f"{kver}: udev autoloads the packaged uniballoon (updates/dkms), not virtio_balloon",
                    t_autoload, g, kver):
            return
        test(f"{kver}: the packaged module took the virtio balloon (backend, driver, dmesg)", t_took_device, g)
        test(f"{kver}: module options given at boot (kmod, as from modprobe.d) are in force",
             t_boot_options, g)
        test(f"{kver}: README's Verify commands and kernel log", t_readme_verify, g, kver)
        test(f"{kver}: README's build dependencies and install commands (apt in an overlay, modprobe)",
             t_readme_install, g, kver)
        test(f"{kver}: README's Use commands in /sys/kernel/balloon", t_readme_use, g)
        test(f"{kver}: README's /etc/modprobe.d/uniballoon.conf example", t_readme_modprobe_conf, g)
        if test(f"{kver}: QMP balloon moves the packaged module while README's trace-tools commands run",
                t_balloon_and_tools, g, kver):
            tools = tools_for(kver)
            if "balloonsnoop" in tools:
                test(f"{kver}: balloonsnoop.bt shows every batch and the host's targets", t_tool_snoop, kver)
            if "balloonrate" in tools:
                test(f"{kver}: balloonrate.bt adds up to what moved, at the rate limit", t_tool_rate, kver)
            if "balloonlat" in tools:
                test(f"{kver}: balloonlat.bt histograms count every batch", t_tool_lat, kver)
        test(f"{kver}: make -C <kernel>/tools/testing/selftests TARGETS={KSELFTEST_TARGET} run_tests passes",
             t_kselftest_guest, g)
        test(f"{kver}: get_abi.pl undefined finds no undocumented file under {SYSB}", t_abi_undefined, g)
        test(f"{kver}: modprobe virtio_balloon by name still takes the device", t_explicit_intree, g)
        # last: it purges the package (in an overlay) and unloads the module
        test(f"{kver}: README's Uninstall commands (apt purge in an overlay)", t_readme_uninstall, g)
