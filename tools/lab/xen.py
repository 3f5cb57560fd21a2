"""A real Xen host in the lab: Debian's Xen 4.17 hypervisor under QEMU TCG.

XenGuest boots xen-4.17 with a Debian kernel as PV dom0. Dom0 owns QEMU's
PCI devices, so it runs the lab's usual initramfs: the host's root over
virtio-9p and the virtio-serial agent, as any Guest. start_toolstack() then
brings up xenstored, xen-init-dom0 and xenconsoled so that xl works, and
pv_domu() starts a small PV domU from an initramfs (a PV domU has no virtio:
its script runs alone and reports on its console, which xenconsoled logs).
tools/lab/README.md says how the lab runs it (smap=0, dom0_mem, toolstack state).

    with XenGuest("6.1.0-56-amd64") as g:
        g.start_toolstack()
        g.run("xl mem-set 0 384m")
"""
import gzip
import os
import subprocess
import tempfile
from pathlib import Path

import lab
from lab import Guest

XEN_GZ = Path("/boot/xen-4.17-amd64.gz")
XEN_BIN = Path("/usr/lib/xen-4.17/bin")
XL = XEN_BIN / "xl"
DOM0_MB = 512
# Xen needs smap=0 under TCG, or dom0 dies at its first exception.
XEN_ARGS = (f"smap=0 console=com1 com1=115200,8n1 dom0_mem={DOM0_MB}M,max:{DOM0_MB}M "
            "dom0_max_vcpus=1 loglvl=warning guest_loglvl=warning")


def available():
    """None if this host can run the Xen lab, else why not."""
    if not XEN_GZ.exists() or not XL.exists():
        return "Xen 4.17 is not installed (tools/lab/setup.sh installs it)"
    return None


def xen_elf():
    """The hypervisor as a multiboot ELF that QEMU -kernel boots, cached in the build dir."""
    dst = lab._build_dir() / "xen-4.17.elf"
    if not dst.exists() or dst.stat().st_mtime < XEN_GZ.stat().st_mtime:
        tmp = dst.with_name(f"{dst.name}.tmp{os.getpid()}")
        tmp.write_bytes(gzip.decompress(XEN_GZ.read_bytes()))
        tmp.replace(dst)
    return dst


class XenGuest(Guest):
    """Xen with a PV dom0 that is an ordinary lab guest (agent, 9p root)."""

    def __init__(self, kver, mem_mb=1024, smp=1, **kw):
        kw.setdefault("name", f"xen-{kver}")
        kw.setdefault("boot_timeout", 180)
        super().__init__(kver, mem_mb=mem_mb, smp=smp, **kw)

    def _boot_args(self, initrd, append):
        # Multiboot modules: the dom0 kernel with its command line, then its initramfs.
        # QEMU separates modules with commas, so a comma inside arguments is doubled.
        dom0 = f"/boot/vmlinuz-{self.kver} {append.replace('console=ttyS0', 'console=hvc0')}"
        return ["-kernel", str(xen_elf()), "-append", XEN_ARGS,
                "-initrd", f"{dom0.replace(',', ',,')},{initrd}"]

    def start_toolstack(self):
        """xenfs, xenstored, xen-init-dom0 and xenconsoled (which logs domU consoles)."""
        self.run("for m in xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xenfs; do"
                 " modprobe $m || exit 1; done; mount -t xenfs xenfs /proc/xen;"
                 # the host root is read-only: the toolstack's state lives in tmpfs
                 " mount -t tmpfs tmpfs /var/lib/xen && mkdir -p /run/xen /var/log/xen/console &&"
                 f" {XEN_BIN}/xenstored --pid-file /run/xen/xenstored.pid &&"
                 f" {XEN_BIN}/xen-init-dom0 >/var/log/xen/init-dom0.log 2>&1 &&"
                 f" {XEN_BIN}/xenconsoled --pid-file=/run/xen/xenconsoled.pid"
                 " --log=guest --log-dir=/var/log/xen/console", timeout=120)

    def xl(self, args, timeout=120):
        return self.run(f"{XL} {args}", timeout=timeout)[1]

    def xl_mem_mb(self, dom):
        """Memory of domain `dom` (name) as `xl list` reports it, in MiB."""
        out = self.xl(f"list {dom} 2>/dev/null")
        return int(out.splitlines()[1].split()[2])

    def domu_console(self, name):
        """The domU's console log as xenconsoled wrote it so far ("" before it exists).
        A cat, or its shell, that dies of a signal raises lab.Crashed: dom0's userspace
        faulted, which must fail the test as itself, not as an empty log."""
        rc, out = self.run(f"cat /var/log/xen/console/guest-{name}.log", check=False)
        if rc > 128 or rc < 0:
            traps = self.run("dmesg | grep -E 'segfault|traps:' | tail -3", check=False)[1]
            raise lab.Crashed(f"cat of domU {name}'s console died of signal "
                              f"{rc - 128 if rc > 0 else -rc}: {traps.strip()[-400:]}")
        return out if rc == 0 else ""




def sysrq_oom(g):
    """An OOM in dom0 (sysrq f: the OOM notifiers, then a kill) with a sleep made the
    likeliest victim. Returns a predicate, true once that sleep is killed."""
    pid = g.run("sleep 600 >/dev/null 2>&1 & echo $!; echo 1000 > /proc/$!/oom_score_adj")[1].split()[0]
    g.run("echo f > /proc/sysrq-trigger")
    return lambda: f"Killed process {pid} " in g.run("dmesg")[1]


def domu_initrd(kver, ko, script, out):
    """A busybox initramfs for a PV domU that runs `script` (sh) with uniballoon.ko at /ub.ko."""
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        for d in ("bin", "dev", "proc", "sys"):
            (t / d).mkdir()
        subprocess.run(["cp", "/bin/busybox", t / "bin/busybox"], check=True)
        subprocess.run(["cp", ko, t / "ub.ko"], check=True)
        # the modules uniballoon.ko needs (6.1: virtio, virtio_ring), unpacked for busybox
        deps = subprocess.run(["modinfo", "-F", "depends", ko], check=True, capture_output=True,
                              text=True).stdout.strip()
        load = ""
        if deps:
            r = subprocess.run(["modprobe", "-S", kver, "-a", "--show-depends", *deps.split(",")],
                               check=True, capture_output=True, text=True).stdout
            seen = []
            for line in r.splitlines():
                f = line.split()
                if f[0] == "insmod" and f[1] not in seen:
                    seen.append(f[1])
            for i, path in enumerate(seen):
                dst = t / f"dep{i}.ko"
                unpack = {"xz": ["xz", "-dc"], "zst": ["zstd", "-qdc"]}.get(path.rsplit(".", 1)[-1], ["cat"])
                with open(dst, "wb") as f:
                    subprocess.run([*unpack, path], stdout=f, check=True)
                load += f"insmod /{dst.name}\n"
        init = t / "init"
        init.write_text(lab.BUSYBOX_INIT_HEAD + load + script + "\nsync; poweroff -f\n")
        init.chmod(0o755)
        with open(out, "wb") as f:
            find = subprocess.Popen(["find", "."], cwd=t, stdout=subprocess.PIPE)
            cpio = subprocess.Popen(["cpio", "-o", "-H", "newc", "--quiet"], cwd=t,
                                    stdin=find.stdout, stdout=subprocess.PIPE)
            subprocess.run(["gzip", "-1"], stdin=cpio.stdout, stdout=f, check=True)
            cpio.wait()
            find.wait()
    return out
