#!/usr/bin/env python3
"""libvirt drives uniballoon: `virsh setmem` and `virsh dommemstat` (issue 12 item 7).

A lab guest (same kernel, initramfs, 9p shares and agent as lab.Guest) is defined
from domain XML and started with `virsh create` on qemu:///system (Debian 12's
libvirt 9.0, TCG). libvirt owns QEMU's monitor, so the host side here is virsh
only; commands run in the guest through the lab's agent as usual.
Run alone: python3 tools/lab/check_libvirt.py [KVER]
(or LAB_GUESTS=guest_libvirt make check).

PID 1 need not be systemd: if no libvirtd runs, this starts virtlogd and libvirtd
itself (QEMU's console goes through virtlogd) and stops them, by PID, at the end.
"""
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lab  # noqa: E402
from lab import GUEST_MB, MiB, SYSB, Guest, GuestError, wait_for  # noqa: E402
from ktap import figure, report, test  # noqa: E402

URI = "qemu:///system"
STATS_PERIOD = 2        # seconds, `virsh dommemstat --period`
TOLERANCE = 32 * MiB    # free/available/caches move on their own between two samples


def virsh(*args, check=True, timeout=60):
    r = subprocess.run(["virsh", "-c", URI, *map(str, args)], capture_output=True, text=True,
                       timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"virsh {' '.join(map(str, args))}: {r.stderr.strip() or r.stdout.strip()}")
    return r.stdout


class Daemons:
    """virtlogd + libvirtd, started here unless a libvirtd already answers."""

    def __init__(self):
        self.started = []     # PIDs we started, stopped in reverse order

    def __enter__(self):
        if subprocess.run(["virsh", "-c", URI, "version"], capture_output=True).returncode == 0:
            return self
        for daemon, pidfile in (("virtlogd", "/run/virtlogd.pid"), ("libvirtd", "/run/libvirtd.pid")):
            subprocess.run([daemon, "-d"], check=True)
            pid = wait_for(lambda: int(Path(pidfile).read_text().split()[0]), 10, what=f"{pidfile}")
            self.started.append(pid)
        wait_for(lambda: subprocess.run(["virsh", "-c", URI, "version"], capture_output=True).returncode == 0,
                 30, what="libvirtd answers")
        return self

    def __exit__(self, *exc):
        for pid in reversed(self.started):
            try:
                os.kill(pid, 15)
                wait_for(lambda: not Path(f"/proc/{pid}").exists(), 20, what=f"PID {pid} exits")
            except ProcessLookupError:
                pass


class LibvirtGuest(Guest):
    """lab.Guest started by libvirt from domain XML instead of a QEMU command line."""

    def __init__(self, kver, **kw):
        super().__init__(kver, **kw)
        self.domain = f"lab-{self.name}"   # one log file in /var/log/libvirt/qemu, not one per run
        self.xml_path = self.rundir / "domain.xml"
        self._qemu_pid = None

    def xml(self, initrd, append, agent_sock):
        def share(src, tag, ro):
            # squash = QEMU's security_model=none; multidevs=remap as in lab.Guest
            return (f"<filesystem type='mount' accessmode='squash' multidevs='remap'>"
                    f"<driver type='path'/><source dir={quoteattr(str(src))}/>"
                    f"<target dir='{tag}'/>{'<readonly/>' if ro else ''}</filesystem>")
        return f"""<domain type='qemu'>
  <name>{self.domain}</name>
  <memory unit='MiB'>{self.mem_mb}</memory>
  <currentMemory unit='MiB'>{self.mem_mb}</currentMemory>
  <vcpu>{self.smp}</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{escape(str(self._kernel_image()))}</kernel>
    <initrd>{escape(str(initrd))}</initrd>
    <cmdline>{escape(append)}</cmdline>
  </os>
  <cpu mode='maximum' check='none'><feature policy='disable' name='erms'/></cpu>
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
  <seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='file'><source path={quoteattr(str(self.console_log))}/><target port='0'/></serial>
    {share('/', 'hostroot', True)}
    {share(lab.PROJECT, 'work', False)}
    <controller type='virtio-serial' index='0'/>
    <channel type='unix'><source mode='bind' path={quoteattr(str(agent_sock))}/>
      <target type='virtio' name='lab.agent'/></channel>
    <memballoon model='virtio'/>
  </devices>
</domain>
"""

    def start(self):
        initrd = lab.BUILD_DIR / f"initramfs-{self.kver}.cpio.gz"
        subprocess.run([lab.LAB_DIR / "initramfs.sh", self.kver, initrd], check=True)
        self.rundir.mkdir(parents=True, exist_ok=True)
        self.console_log.unlink(missing_ok=True)
        self._sockdir = Path(tempfile.mkdtemp(prefix="lab-"))
        agent_sock = self._sockdir / "agent"
        append = (f"console=ttyS0 panic=-1 labwork={lab.PROJECT} "
                  f"labinit={lab.LAB_DIR / 'guest-init.sh'} {self.append}").strip()
        self.xml_path.write_text(self.xml(initrd, append, agent_sock))
        t0 = time.monotonic()
        try:
            virsh("create", self.xml_path)
            self._qemu_pid = int(Path(f"/run/libvirt/qemu/{self.domain}.pid").read_text())
            wait_for(lambda: self._alive() and agent_sock.exists(), 20, what="agent socket")
            self._agent = lab._LineSocket(agent_sock, self._alive)
            self._wait_agent(t0 + self.boot_timeout)
        except BaseException:
            self.stop()
            raise
        self.boot_seconds = time.monotonic() - t0
        return self

    def _alive(self, grace=0):
        if self._qemu_pid and grace:
            try:
                wait_for(lambda: not Path(f"/proc/{self._qemu_pid}").exists(), grace, what="QEMU exits")
            except TimeoutError:
                pass
        if not self._qemu_pid or not Path(f"/proc/{self._qemu_pid}").exists():
            raise GuestError(f"QEMU (domain {self.domain}) is not running\n{self.console_tail()}")
        return True

    def stop(self):
        if self._agent and self._qemu_pid and Path(f"/proc/{self._qemu_pid}").exists():
            try:   # the guest powers off; libvirt then forgets the transient domain
                self._send("sync; busybox poweroff -f", 10)
                wait_for(lambda: not Path(f"/proc/{self._qemu_pid}").exists(), 15, what="poweroff")
            except (OSError, TimeoutError):
                pass
        self._kill()
        if self._agent:
            self._agent.close()
            self._agent = None
        if self._sockdir:
            subprocess.run(["rm", "-rf", self._sockdir])
            self._sockdir = None

    def _kill(self):
        if self.domain in virsh("list", "--all", "--name", check=False).split():
            virsh("destroy", self.domain, check=False)
            virsh("undefine", self.domain, check=False)   # only if something made it persistent


# ---------------------------------------------------------------- tests

def memstat(g):
    """`virsh dommemstat` as {key: int} (KiB, fault counts, seconds)."""
    out = virsh("dommemstat", g.domain)
    return {k: int(v) for k, v in re.findall(r"^(\w+) (\d+)$", out, re.M)}


def t_takes_device(g, ko):
    g.run(f"insmod {ko}")
    assert g.sysb("backend") == "virtio", g.sysb("backend")
    assert g.sysb_int("size") == 0
    return g.run("basename $(readlink /sys/bus/virtio/drivers/uniballoon/virtio*)", check=False)[1].strip()


def t_setmem(g, mb):
    """virsh setmem to mb MiB: the balloon that uniballoon holds is GUEST_MB - mb MiB,
    and libvirt's `actual` says the same."""
    t0 = time.monotonic()
    virsh("setmem", g.domain, f"{mb}M", "--live")
    want = (GUEST_MB - mb) * MiB
    g.wait_for(lambda: g.sysb_int("size") == want, 120, interval=0.5,
               what=f"{SYSB}/size == {want >> 20} MiB")
    took = time.monotonic() - t0
    g.wait_for(lambda: memstat(g).get("actual") == mb * 1024, 30, interval=0.5,
               what=f"dommemstat actual == {mb} MiB")
    assert g.sysb_int("host_target") == want
    return f"{SYSB}/size {want >> 20} MiB after {took:.1f} s"


def t_stats_period(g):
    """A domain defined without <stats period>, as most are: `virsh dommemstat` shows the
    statistics the guest sent once when the driver bound, and they stay as they were,
    until `dommemstat --period N --live` has QEMU ask the guest every N seconds (the
    route the virsh manual gives); then they are fresh."""
    t0 = memstat(g).get("last_update", 0)
    # the control: over three periods with nobody asking, no new sample arrives
    time.sleep(3 * STATS_PERIOD)
    t1 = memstat(g).get("last_update", 0)
    assert t1 == t0, f"statistics refreshed without --period: last_update {t0} -> {t1}"
    virsh("dommemstat", g.domain, "--period", STATS_PERIOD, "--live")
    g.wait_for(lambda: memstat(g).get("last_update", 0) > t1, 6 * STATS_PERIOD + 10,
               interval=0.5, what="a fresh sample after dommemstat --period")
    return f"last_update {t0} before --period, {memstat(g)['last_update']} after"


def t_dommemstat(g):
    """dommemstat shows our stats queue's numbers: exact for MemTotal, within TOLERANCE
    of /proc/meminfo for free/available/caches, and the event counters between
    /proc/vmstat read before the sample and after it."""
    before = g.vmstat()
    t0 = memstat(g).get("last_update", 0)
    # two updates after t0: the second one was sampled after `before` was read
    g.wait_for(lambda: memstat(g).get("last_update", 0) > t0 + STATS_PERIOD, 6 * STATS_PERIOD + 10,
               interval=0.5, what="two fresh dommemstat updates")
    s = memstat(g)
    mi, after = g.meminfo(), g.vmstat()
    keys = ("actual", "swap_in", "swap_out", "major_fault", "minor_fault", "unused", "available",
            "usable", "disk_caches", "hugetlb_pgalloc", "hugetlb_pgfail", "last_update")
    missing = [k for k in keys if k not in s]
    assert not missing, f"dommemstat lacks {missing}: {s}"
    assert s["available"] == mi["MemTotal"], (s["available"], mi["MemTotal"])
    tol = TOLERANCE >> 10
    caches = mi["Cached"] + mi["Buffers"] + mi["SwapCached"]   # NR_FILE_PAGES
    for key, val, field in (("unused", mi["MemFree"], "MemFree"), ("usable", mi["MemAvailable"], "MemAvailable"),
                            ("disk_caches", caches, "Cached+Buffers+SwapCached")):
        assert abs(s[key] - val) <= tol, f"{key} {s[key]} KiB vs {field} {val} KiB"
    page_kb = 4
    for key, lo, hi in (
            ("swap_in", before["pswpin"] * page_kb, after["pswpin"] * page_kb),
            ("swap_out", before["pswpout"] * page_kb, after["pswpout"] * page_kb),
            ("major_fault", before["pgmajfault"], after["pgmajfault"]),
            ("minor_fault", before["pgfault"] - before["pgmajfault"], after["pgfault"] - after["pgmajfault"]),
            ("hugetlb_pgalloc", before["htlb_buddy_alloc_success"], after["htlb_buddy_alloc_success"]),
            ("hugetlb_pgfail", before["htlb_buddy_alloc_fail"], after["htlb_buddy_alloc_fail"])):
        assert lo <= s[key] <= hi, f"{key} {s[key]} not within /proc/vmstat's [{lo}, {hi}]"
    assert s["minor_fault"] > 0
    return (f"usable {s['usable'] >> 10} MiB (MemAvailable {mi['MemAvailable'] >> 10}), unused "
            f"{s['unused'] >> 10} MiB (MemFree {mi['MemFree'] >> 10}), tolerance {TOLERANCE >> 20} MiB")


def t_domain_gone(g):
    left = virsh("list", "--all", "--name").split()
    assert g.domain not in left, f"{g.domain} still listed: {left}"


def guest_libvirt(kver, ko):
    """One kernel is enough (the newest): libvirt's side does not depend on the guest kernel."""
    if kver != lab.kernels()[-1]:
        return
    if not lab.shutil.which("virsh"):
        report(True, f"{kver}: libvirt drives uniballoon", "libvirt is not installed (setup.sh)", skip=True)
        return
    t0 = time.monotonic()
    with Daemons():
        g = LibvirtGuest(kver, mem_mb=GUEST_MB, name=f"libvirt-{kver}")
        with g:
            figure(kver, "libvirt: virsh create to agent", f"{g.boot_seconds:.1f} s")
            if test(f"{kver}: libvirt: uniballoon takes the domain's <memballoon model='virtio'>",
                    t_takes_device, g, ko) and \
                    test(f"{kver}: libvirt: virsh dommemstat --period turns the guest's statistics on",
                         t_stats_period, g):
                test(f"{kver}: libvirt: virsh dommemstat shows our stats, as /proc/meminfo and /proc/vmstat",
                     t_dommemstat, g)
                if test(f"{kver}: libvirt: virsh setmem 512M inflates the balloon by 512 MiB", t_setmem, g, 512):
                    test(f"{kver}: libvirt: virsh dommemstat with the balloon inflated", t_dommemstat, g)
                test(f"{kver}: libvirt: virsh setmem back to {GUEST_MB}M returns it all (size 0)",
                     t_setmem, g, GUEST_MB)
        test(f"{kver}: libvirt: the domain is gone after poweroff (none left defined)",
             t_domain_gone, g)
    figure(kver, "libvirt: whole job (daemons, boot, tests, poweroff)", f"{time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    from ktap import summary
    k = sys.argv[1] if len(sys.argv) > 1 else lab.kernels()[-1]
    guest_libvirt(k, lab.build_module(k, tree="libvirt"))
    sys.exit(summary())
