"""Host side of the uniballoon test lab (python3 stdlib only).

A Guest is a TCG QEMU VM that boots an installed Debian kernel on the host's own root
filesystem (read-only 9p) with the project directory shared read-write at the same path.
Commands run inside through a virtio-serial agent (agent.py); the balloon is driven over QMP.

    with Guest("6.1.0-56-amd64") as g:
        g.run("modprobe virtio_balloon")
        g.qmp("balloon", value=768 << 20)
        g.wait_for(lambda: g.qmp("query-balloon")["actual"] == 768 << 20, 30, what="inflate")
"""
import atexit
import json
import lzma
import os
import select
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import zlib
from pathlib import Path

LAB_DIR = Path(__file__).resolve().parent
PROJECT = LAB_DIR.parent.parent                     # tools/lab -> project root
BUILD_DIR = Path(os.environ.get("LAB_BUILD", PROJECT / "build" / "lab"))
# The guests' CPU: everything TCG offers except ERMS. With ERMS the guest kernel
# zeroes pages with `rep stosb`, one byte per store; QEMU 7.2 sends every store to
# a frame that still holds stale translated code (a freed page of an executable,
# a page compaction moved) through its self-modifying-code check, so zeroing such
# frames costs 7 to 20 times more per page than usual, with or without a balloon.
# `rep stosq` makes 8 times fewer stores. Real CPUs have no such cost.
QEMU_CPU = "max,-erms"
MiB = 1 << 20
SYSB = "/sys/kernel/balloon"    # the module's sysfs directory in a guest
GUEST_MB = 1024                 # the test guests' memory (Guest's mem_mb default)


# First lines of /init in the lab's busybox-only initramfs guests (the
# hinting guest, Xen domUs): the guest runs from its initramfs alone.
BUSYBOX_INIT_HEAD = """#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t debugfs debugfs /sys/kernel/debug
"""


class GuestError(RuntimeError):
    """A guest command failed, or the guest/QEMU died."""


class QMPError(RuntimeError):
    """QMP answered with an error object."""


class Crashed(RuntimeError):
    """A program in the guest died of a signal (abort, segfault): a failure in itself,
    never a reason to look again."""


def kernels():
    """Kernel releases to test (see kernels.sh)."""
    out = subprocess.run([LAB_DIR / "kernels.sh"], check=True, capture_output=True, text=True).stdout
    return out.split()


SID_CHROOT = LAB_DIR / "sid-chroot.sh"
SID_KERNELS = PROJECT / "build" / "sid-kernel"


def sid_kernel():
    """The release of Debian sid's newest 7.2 kernel, unpacked under build/sid-kernel
    (sid-chroot.sh kernel: makes the sid chroot and downloads the image unless cached).
    The host does not have it installed: see kernel_moddir()."""
    moddir = subprocess.run([SID_CHROOT, "kernel"], check=True, capture_output=True, text=True).stdout
    return Path(moddir.strip()).name


def kernel_moddir(kver):
    """Module directory of a kernel the lab unpacked (sid-chroot.sh kernel), or None for
    a kernel installed on the host (/boot, /lib/modules). An unpacked kernel's directory
    holds its vmlinuz and config too; guests get its modules over a 9p share."""
    if Path(f"/boot/vmlinuz-{kver}").exists():
        return None
    moddir = SID_KERNELS / kver / "usr/lib/modules" / kver
    return moddir if (moddir / "modules.dep").exists() else None


def _kernel_file(kver, what):
    """/boot's vmlinuz or config of kver, or that of a kernel the lab unpacked."""
    moddir = kernel_moddir(kver)
    return moddir / what if moddir else Path(f"/boot/{what}-{kver}")


def build_module(kver, test_build=False, tree=None, kdir=None):
    """Build uniballoon.ko for kver in a copy of the tree (as dkms would), so that
    builds for several kernels never share generated files; returns its path.
    test_build: with the VMware host model (UB_TEST_HOST_MODEL=y). tree: the copy's
    name under build/ (a caller that runs beside `make check` uses its own).
    kdir: a kernel build tree other than /lib/modules/KVER/build (the debug kernel)."""
    if kernel_moddir(kver) and not kdir:
        # sid's 7.2 headers need sid's compiler: build in the sid chroot (same tree copy,
        # same UB_WERROR=y, the stand-in beside a test build); it prints the .ko's path
        env = dict(os.environ, **({"UB_BUILD_TREE": tree} if tree else {}))
        r = subprocess.run([SID_CHROOT, "build", *(["test"] if test_build else [])], env=env,
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"build for {kver} (sid chroot) failed:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
        return r.stdout.split()[-1]
    out = PROJECT / "build" / (tree or ("mod-test" if test_build else "mod")) / kver
    subprocess.run(["rm", "-rf", out], check=True)
    out.mkdir(parents=True)
    for item in ("Kbuild", "Makefile", "dkms.conf", "src"):
        subprocess.run(["cp", "-r", PROJECT / item, out], check=True)
    if test_build:
        # the VMware host model, at the path Kbuild expects (tools/ is not in the packages)
        (out / "tools/lab").mkdir(parents=True)
        subprocess.run(["cp", "-r", LAB_DIR / "vmware-model", out / "tools/lab"], check=True)
    extra = ["UB_WERROR=y"] + (["UB_TEST_HOST_MODEL=y"] if test_build else [])
    extra += [f"KDIR={kdir}"] if kdir else []
    r = subprocess.run(["make", f"KERNELRELEASE={kver}", *extra], cwd=out, capture_output=True, text=True)
    if r.returncode != 0 or not (out / "uniballoon.ko").exists():
        raise RuntimeError(f"build for {kver} failed:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
    if test_build:
        # beside the test build only (tools/lab is not in the packages): see standin_ko()
        subprocess.run(["cp", "-r", LAB_DIR / "vmw-standin", out], check=True)
        r = subprocess.run(["make", "-C", kdir or f"/lib/modules/{kver}/build", f"M={out / 'vmw-standin'}",
                            "modules"], capture_output=True, text=True)
        if r.returncode != 0 or not Path(standin_ko(out / "uniballoon.ko")).exists():
            raise RuntimeError(f"stand-in build for {kver} failed:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
    return str(out / "uniballoon.ko")


def standin_ko(test_ko):
    """vmw_standin.ko built beside the test build test_ko: it makes
    /sys/kernel/debug/vmmemctl as vmw_balloon does, which does not load without
    a VMware host (tools/lab/vmw-standin)."""
    return str(Path(test_ko).parent / "vmw-standin" / "vmw_standin.ko")


def wait_for(predicate, timeout, interval=0.2, what="condition"):
    """Poll predicate() until it returns something truthy; return that value.
    Raises TimeoutError naming `what` and the last value (or exception) seen;
    `what` may be a callable, asked at the timeout, so that the message shows
    the state the wait ended in rather than the one it began in."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = predicate()
            if last:
                return last
        except (GuestError, QMPError, Crashed):
            raise  # the guest is gone, the request is wrong or a program crashed: polling won't help
        except Exception as e:  # e.g. a file that does not exist yet
            last = e
        if time.monotonic() >= deadline:
            if callable(what):
                try:
                    what = what()
                except Exception as e:  # noqa: BLE001 (the guest may be what failed)
                    what = f"(its description failed: {e!r})"
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")
        time.sleep(interval)


def pvh_vmlinux(kver):
    """Uncompressed vmlinux of /boot/vmlinuz-KVER, cached in the build dir, or None.

    Why: Debian's 6.1 bzImage is xz-compressed and TCG needs several seconds to decompress it
    at every boot. With CONFIG_PVH=y QEMU's -kernel boots the ELF vmlinux directly (PVH entry),
    which saves that time. The payload is located via the x86 boot-protocol header fields
    payload_offset/payload_length (0x248/0x24c), so no magic-number scanning is needed."""
    src = _kernel_file(kver, "vmlinuz")
    dst = _build_dir() / f"vmlinux-{kver}"
    if dst.exists() and dst.stat().st_mtime >= src.stat().st_mtime:
        return dst
    try:
        if "CONFIG_PVH=y" not in _kernel_file(kver, "config").read_text().splitlines():
            return None
        data = src.read_bytes()
        setup_sects = data[0x1f1] or 4
        off, length = struct.unpack_from("<II", data, 0x248)
        start = (setup_sects + 1) * 512 + off
        payload = data[start:start + length]
        if payload.startswith(b"\xfd7zXZ\x00"):
            elf = lzma.LZMADecompressor().decompress(payload)
        elif payload.startswith(b"\x1f\x8b"):
            elf = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(payload)
        elif payload.startswith(b"\x28\xb5\x2f\xfd") and shutil.which("zstd"):
            elf = subprocess.run(["zstd", "-dc"], input=payload, capture_output=True).stdout
        else:
            return None
        if not elf.startswith(b"\x7fELF"):
            return None
    except (OSError, lzma.LZMAError, zlib.error, struct.error, IndexError):
        return None
    # atomic publish, safe with concurrent runs and with guests of one run starting
    # side by side (oom_loop.py's lanes), hence a name per process and thread
    tmp = dst.with_name(f"{dst.name}.tmp{os.getpid()}-{threading.get_ident()}")
    tmp.write_bytes(elf)
    tmp.replace(dst)
    return dst


def _build_dir():
    # Self-ignoring build directory, so nothing generated here ever shows up in git status.
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    gi = BUILD_DIR / ".gitignore"
    if not gi.exists():
        gi.write_text("*\n")
    return BUILD_DIR


class _LineSocket:
    """Unix-socket JSON-lines reader with deadlines that notices QEMU dying."""

    def __init__(self, path, alive):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self.buf = b""
        self.alive = alive

    def send(self, obj):
        self.sock.sendall((json.dumps(obj) + "\n").encode())

    def recv(self, deadline):
        """Next JSON object, or None if the deadline passes first."""
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(min(left, 0.5))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                self.alive()  # raises GuestError if QEMU exited
                continue
            if not chunk:
                self.alive(grace=5)  # QEMU closes its sockets while exiting: report the exit
                raise GuestError("socket closed by QEMU")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def close(self):
        self.sock.close()


class Guest:
    def __init__(self, kver, mem_mb=GUEST_MB, smp=1, balloon_opts="", extra_qemu_args=(),
                 name=None, append="", boot_timeout=120, initrd_prefix=None, ready_line=None,
                 udev=False, kernel=None):
        """initrd_prefix: an uncompressed cpio placed before the lab's initramfs (its files
        are added to it). ready_line: a guest without the agent (e.g. one booted with
        rdinit= that never mounts the 9p shares, which block migration): start() returns
        once this text appears on the serial console, and run() is unavailable.
        udev: the guest's init runs the host's systemd-udevd (trigger, settle) before the
        agent starts, so modules load by modalias as at a real boot.
        kernel: a kernel image to boot instead of /boot's image of kver (the debug
        kernel, which has every driver the lab needs built in)."""
        self.kver, self.mem_mb, self.smp = kver, mem_mb, smp
        self.balloon_opts = balloon_opts.strip(",")
        self.extra_qemu_args = list(extra_qemu_args)
        self.name = name or f"guest-{kver}"
        self.append, self.boot_timeout = append + (" labudev=1" if udev else ""), boot_timeout
        self.initrd_prefix, self.ready_line = initrd_prefix, ready_line
        self.kernel = kernel
        self.rundir = _build_dir() / "runs" / self.name      # logs survive the run
        self.console_log = self.rundir / "console.log"
        self.qemu_log = self.rundir / "qemu.log"
        self.proc = self._qmp = self._agent = self._sockdir = None
        self._next_id = 0
        self.boot_seconds = None

    # ---------------------------------------------------------------- lifecycle
    # The machine QEMU emulates, the guest's serial console and the directory the guest
    # boots on (the host's own root): a subclass for another architecture changes them.
    QEMU_MACHINE = ("qemu-system-x86_64", "-accel", "tcg", "-cpu", QEMU_CPU)
    CONSOLE = "ttyS0"
    ROOT = "/"

    def _initramfs(self):
        """The lab's initramfs for this kernel (made once, cached), and the module
        directory of a kernel the lab unpacked (shared with the guest), or None."""
        initrd = _build_dir() / f"initramfs-{self.kver}.cpio.gz"
        moddir = kernel_moddir(self.kver) if not self.kernel else None
        subprocess.run([LAB_DIR / "initramfs.sh", self.kver, initrd, *([moddir] if moddir else [])],
                       check=True)  # no-op if cached
        return initrd, moddir

    def start(self):
        initrd, moddir = self._initramfs()
        self.rundir.mkdir(parents=True, exist_ok=True)
        if self.initrd_prefix:
            combined = self.rundir / "initrd.img"
            combined.write_bytes(Path(self.initrd_prefix).read_bytes() + initrd.read_bytes())
            initrd = combined
        # Sockets live in a short /tmp path: unix socket paths are limited to 108 bytes.
        self._sockdir = Path(tempfile.mkdtemp(prefix="lab-"))
        qmp_sock, agent_sock = self._sockdir / "qmp", self._sockdir / "agent"
        balloon = "virtio-balloon-pci,id=balloon0" + (f",{self.balloon_opts}" if self.balloon_opts else "")
        append = (f"console={self.CONSOLE} panic=-1 labwork={PROJECT} "
                  f"labinit={LAB_DIR / 'guest-init.sh'} {self.append}").strip()
        mods = []
        if moddir:   # a kernel the lab unpacked: its modules over the guest's /lib/modules
            append += " labmods=1"
            mods = ["-fsdev", f"local,id=fsmods,path={moddir.parent},security_model=none,readonly=on,"
                    "multidevs=remap", "-device", "virtio-9p-pci,fsdev=fsmods,mount_tag=mods"]
        cmd = [
            *self.QEMU_MACHINE, "-smp", str(self.smp),
            "-m", str(self.mem_mb), "-nographic", "-no-reboot", "-monitor", "none",
            "-serial", f"file:{self.console_log}",
            *self._boot_args(initrd, append),
            "-device", balloon,
            # host root, read-only; multidevs=remap keeps inode numbers of /proc etc. distinct
            "-fsdev", f"local,id=fsroot,path={self.ROOT},security_model=none,readonly=on,multidevs=remap",
            "-device", "virtio-9p-pci,fsdev=fsroot,mount_tag=hostroot",
            "-fsdev", f"local,id=fswork,path={PROJECT},security_model=none,multidevs=remap",
            "-device", "virtio-9p-pci,fsdev=fswork,mount_tag=work",
            *mods,
            "-qmp", f"unix:{qmp_sock},server=on,wait=off",
            "-device", "virtio-serial-pci",
            "-chardev", f"socket,id=agent,path={agent_sock},server=on,wait=off",
            "-device", "virtserialport,chardev=agent,name=lab.agent",
            *self.extra_qemu_args,
        ]
        t0 = time.monotonic()
        with open(self.qemu_log, "w") as log:
            log.write(" ".join(map(str, cmd)) + "\n\n")
            log.flush()
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        atexit.register(self._kill)  # never leave a QEMU behind, even on an uncaught exception
        try:
            wait_for(lambda: self._alive() and qmp_sock.exists() and agent_sock.exists(), 20,
                     what="QEMU sockets")
            self._qmp = _LineSocket(qmp_sock, self._alive)
            self._qmp_handshake()
            if self.ready_line:
                wait_for(lambda: self._alive() and self.ready_line in self.console(), self.boot_timeout,
                         what=f"{self.ready_line!r} on the console")
            else:
                self._agent = _LineSocket(agent_sock, self._alive)
                self._wait_agent(t0 + self.boot_timeout)
        except BaseException:
            self.stop()
            raise
        self.boot_seconds = time.monotonic() - t0
        return self

    def _boot_args(self, initrd, append):
        """QEMU arguments that boot the kernel (a subclass may boot a hypervisor first)."""
        return ["-kernel", str(self._kernel_image()), "-initrd", str(initrd), "-append", append]

    def _kernel_image(self):
        """Kernel QEMU boots: the uncompressed ELF vmlinux if we can make one (see pvh_vmlinux)."""
        return self.kernel or pvh_vmlinux(self.kver) or _kernel_file(self.kver, "vmlinuz")

    def _wait_agent(self, deadline):
        # Bytes sent before the guest opens its port wait in QEMU's socket buffer, so one ping
        # would do; re-pinging every 0.5 s is cheap (the agent answers pings without a process)
        # and does not depend on that detail. A slow boot (udev loading modules under TCG) can fill
        # that buffer with pings: then skip the ping rather than block in sendall and time out.
        while time.monotonic() < deadline:
            if select.select([], [self._agent.sock], [], 0)[1]:
                self._next_id += 1
                try:
                    self._agent.send({"id": f"ping-{self._next_id}", "ping": True})
                except TimeoutError:
                    # a ping is one small write: a timed-out one sent nothing
                    pass
            reply = self._agent.recv(min(deadline, time.monotonic() + 0.5))
            if reply is not None:
                return
        raise GuestError(f"agent did not answer within {self.boot_timeout}s\n{self.console_tail()}")

    def stop(self):
        """Power the guest off (via the agent, else kill QEMU) and clean up. Safe to call twice."""
        if self.proc and self.proc.poll() is None and self._agent:
            try:  # no reply will come: the guest powers off and QEMU exits (-no-reboot)
                self._send("sync; busybox poweroff -f", 10)
                self.proc.wait(timeout=15)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self._kill()
        for s in (self._qmp, self._agent):
            if s:
                s.close()
        self._qmp = self._agent = None
        if self._sockdir:
            shutil.rmtree(self._sockdir, ignore_errors=True)
            self._sockdir = None

    def _kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _alive(self, grace=0):
        """True while QEMU runs; else GuestError with the console tail (panic messages etc.).
        grace: seconds to give a QEMU that is probably exiting to finish doing so."""
        if self.proc is not None and grace:
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        if self.proc is None or self.proc.poll() is not None:
            rc = None if self.proc is None else self.proc.returncode
            raise GuestError(f"QEMU is not running (exit code {rc})\n{self.console_tail()}")
        return True

    # ---------------------------------------------------------------- agent
    def _send(self, cmd, timeout):
        self._next_id += 1
        rid = f"req-{self._next_id}"
        self._agent.send({"id": rid, "cmd": cmd, "timeout": timeout})
        return rid

    def run(self, cmd, timeout=60, check=True):
        """Run a bash command in the guest; return (rc, combined output).
        With check=True a non-zero rc raises GuestError carrying the output.
        The command runs in the project directory. The agent returns when stdout/stderr close,
        so a background job must redirect them: run("hog >/tmp/hog.log 2>&1 &").
        On timeout its process group is killed and rc is 124."""
        rid = self._send(cmd, timeout)
        deadline = time.monotonic() + timeout + 15   # the agent enforces `timeout` itself
        while True:
            reply = self._agent.recv(deadline)
            if reply is None:
                raise GuestError(f"no reply from agent for {cmd!r} within {timeout + 15}s")
            if reply.get("id") == rid:
                break        # other ids are stale answers (e.g. extra boot pings): skip them
        rc, out = reply["rc"], reply["out"]
        if check and rc != 0:
            why = "timed out" if reply.get("timed_out") else f"rc={rc}"
            raise GuestError(f"guest command {why}: {cmd}\n{out}")
        return rc, out

    def guest_clock(self):
        """(host time.time() before, the guest's time.time(), host time.time() after)
        from one agent ping, which the agent answers without starting a process."""
        self._next_id += 1
        rid = f"clock-{self._next_id}"
        h0 = time.time()
        self._agent.send({"id": rid, "ping": True})
        deadline = time.monotonic() + 10
        while True:
            reply = self._agent.recv(deadline)
            if reply is None:
                raise GuestError("no answer to a ping within 10 s")
            if reply.get("id") == rid:
                break
        h1 = time.time()
        if "time" not in reply:
            raise GuestError("the guest's agent does not tell its clock")
        return h0, reply["time"], h1

    def meminfo(self):
        """/proc/meminfo of the guest as {field: kB}."""
        _, out = self.run("cat /proc/meminfo")
        return {k: int(v.split()[0]) for k, v in (l.split(":", 1) for l in out.splitlines())}

    def free_after_drop(self):
        """Free memory in kB that two readings can compare: page cache dropped, and
        the pages kept on the per-CPU free lists (which 6.12 grows after large
        frees, outside MemFree) counted in."""
        self.run("sync; echo 3 > /proc/sys/vm/drop_caches")
        pcp = self.run("awk '$1 == \"count:\" { n += $2 } END { print n + 0 }' /proc/zoneinfo")[1]
        return self.meminfo()["MemFree"] + int(pcp) * 4

    def sysb(self, name):
        """The module's sysfs file SYSB/name, stripped (an error if it cannot be read)."""
        return self.run(f"cat {SYSB}/{name}")[1].strip()

    def sysb_int(self, name):
        return int(self.sysb(name))

    def vmstat(self, field=None):
        """/proc/vmstat's field as an int (0 if the kernel has no such field); without a
        field, all of /proc/vmstat as {field: int}."""
        if field is None:
            return {k: int(v) for k, v in (l.split() for l in self.run("cat /proc/vmstat")[1].splitlines())}
        return int(self.run(f"awk '$1 == \"{field}\" {{ print $2 }}' /proc/vmstat")[1].strip() or 0)

    def actual(self):
        """The guest's memory as QEMU sees it: QMP query-balloon's actual, in bytes."""
        return self.qmp("query-balloon")["actual"]

    def balloon_to(self, balloon_bytes, timeout=120):
        """The host asks for a balloon of balloon_bytes (QMP balloon); waits until both
        sides agree (query-balloon and the module's size). Returns the seconds it took."""
        t0 = time.monotonic()
        want = self.mem_mb * MiB - balloon_bytes
        self.qmp("balloon", value=want)
        self.wait_for(lambda: self.actual() == want and self.sysb_int("size") == balloon_bytes, timeout,
                      what=lambda: f"balloon of {balloon_bytes >> 20} MiB (size {self.sysb('size')})")
        return time.monotonic() - t0

    # ---------------------------------------------------------------- QMP
    def _qmp_handshake(self):
        greeting = self._qmp.recv(time.monotonic() + 10)
        if not greeting or "QMP" not in greeting:
            raise GuestError(f"bad QMP greeting: {greeting!r}")
        self.qmp("qmp_capabilities")

    def qmp(self, cmd, **args):
        """Execute a QMP command and return its 'return' value (events are skipped).
        Arguments with '-' in their names: qmp("x", **{"a-b": 1})."""
        req = {"execute": cmd}
        if args:
            req["arguments"] = args
        self._qmp.send(req)
        deadline = time.monotonic() + 30
        while True:
            msg = self._qmp.recv(deadline)
            if msg is None:
                raise GuestError(f"QMP {cmd}: no answer within 30s")
            if "return" in msg:
                return msg["return"]
            if "error" in msg:
                raise QMPError(f"QMP {cmd} {args}: {msg['error']}")
            # anything else is an asynchronous event (BALLOON_CHANGE, ...): ignore

    # ---------------------------------------------------------------- helpers
    def wait_for(self, predicate, timeout, interval=0.2, what="condition"):
        """Module-level wait_for that also fails fast if QEMU dies."""
        return wait_for(lambda: self._alive() and predicate(), timeout, interval, what)

    def bpftrace_while(self, probes, maps, action, attach_timeout=180):
        """Run bpftrace with `probes` (a program without BEGIN) in the
        background while action() runs; returns what it printed. The maps
        named in `maps` are printed once a second, and the caller reads the
        last value printed: bpftrace prints its maps on exit only after it
        has detached its probes, which took over 3 minutes after SIGINT in a
        Xen dom0 under TCG (CI25). Loading bpftrace in a TCG guest takes
        20-140 s."""
        # BEGIN fires once every probe is attached ("Attaching" comes before)
        dump = " ".join(f"print({m});" for m in maps)
        prog = ('BEGIN { printf("READY\\n"); } ' + probes +
                f' interval:s:1 {{ {dump} printf("TICK\\n"); }}')
        self.run(f"bpftrace -e '{prog}' > /tmp/bt.out 2>&1 & echo $! > /tmp/bt.pid")
        ticks = lambda: self.run("cat /tmp/bt.out")[1].count("TICK")  # noqa: E731
        try:
            self.wait_for(lambda: "READY" in self.run("cat /tmp/bt.out")[1], attach_timeout,
                          what="bpftrace attached")
            action()
            # the maps as printed by a tick that began after the action ended
            after = ticks() + 2
            self.wait_for(lambda: ticks() >= after, 60, what="bpftrace printed its maps")
            return self.run("cat /tmp/bt.out")[1]
        finally:
            # the module stays in use until bpftrace has detached
            self.run("p=$(cat /tmp/bt.pid); kill -KILL $p; "
                     "while kill -0 $p 2>/dev/null; do sleep 0.2; done", timeout=180)

    @property
    def qemu_pid(self):
        return self.proc.pid if self.proc else None

    def qemu_rss_kb(self):
        """Resident set size of the QEMU process in kB (VmRSS), i.e. host memory the VM costs."""
        with open(f"/proc/{self.qemu_pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise GuestError("VmRSS not found")

    def console(self):
        """The serial console so far."""
        return self.console_log.read_text(errors="replace")

    def console_tail(self, lines=40):
        try:
            text = self.console_log.read_text(errors="replace").splitlines()
        except OSError:
            return "(no console log)"
        return "--- console tail ---\n" + "\n".join(text[-lines:])


# The keeper: a process that holds @NBYTES@ bytes of anonymous memory, the first
# @THP_PERCENT@% of it asked to be THP (MADV_HUGEPAGE) and the rest not, every 4 KiB page stamped with its index, the
# keeper's pid and a nonzero fill. Each time /tmp/keep.req holds a new number N it
# compares every page and writes "N bad B zero Z first I ..." (pages changed, of them all
# zeros) to /tmp/keep.out. A chunk of pages is built and compared in one slice: no
# per-byte loop under TCG. oom_score_adj @OOM_ADJ@ (-1000: the OOM killer never picks it,
# so a missing keeper is a kill the test did not expect).
KEEPER = r"""
cat > /tmp/keep.py <<'PY'
import mmap, os, sys, time
open("/proc/self/oom_score_adj", "w").write("@OOM_ADJ@")
n, CH = int(sys.argv[1]) >> 12, 256
TMPL = bytearray((bytes(8) + os.getpid().to_bytes(4, "little") + b"\xa5" * 4084) * CH)
def pages(first, count):
    for k in range(count):
        TMPL[k << 12:(k << 12) + 8] = (first + k).to_bytes(8, "little")
    return memoryview(TMPL)[:count << 12]
thp = (n * @THP_PERCENT@ // 100) << 12
maps = []
for size, advice in ((thp, mmap.MADV_HUGEPAGE), ((n << 12) - thp, mmap.MADV_NOHUGEPAGE)):
    if size:
        maps.append(mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS))
        maps[-1].madvise(advice)
def spans():
    base = 0
    for m in maps:
        count = len(m) >> 12
        for p in range(0, count, CH):
            yield m, p, base + p, min(CH, count - p)
        base += count
for m, p, i, c in spans():
    m[p << 12:(p + c) << 12] = pages(i, c)
open("/tmp/keep.out", "w").write("0 bad 0 zero 0\n")
done = "0"
while True:
    try:
        req = open("/tmp/keep.req").read().strip()
    except OSError:
        req = done
    if req == done:
        time.sleep(0.2)
        continue
    bad = []
    for m, p, i, c in spans():
        if m[p << 12:(p + c) << 12] != pages(i, c):
            bad += [(m, p + k, i + k) for k in range(c)
                    if m[(p + k) << 12:(p + k + 1) << 12] != pages(i + k, 1)]
    zero = sum(m[p << 12:(p + 1) << 12] == bytes(4096) for m, p, _ in bad)
    open("/tmp/keep.tmp", "w").write(f"{req} bad {len(bad)} zero {zero} first "
                                     + " ".join(str(i) for _, _, i in bad[:8]) + "\n")
    os.rename("/tmp/keep.tmp", "/tmp/keep.out")
    done = req
PY
rm -f /tmp/keep.req /tmp/keep.out /tmp/keep.tmp
python3 /tmp/keep.py @NBYTES@ > /tmp/keep.log 2>&1 & echo $! > /tmp/keep.pid
"""


class PatternKeeper:
    """A process holding a known pattern in guest memory (KEEPER) while a test moves the
    balloon: inflation, deflation, OOM deflation, host stalls, resets, reloads. check()
    asks it to compare every page and fails if any changed or if it is gone.
    thp_percent: the share of its memory asked to be THP; oom_score_adj: -1000 keeps the
    OOM killer off it."""

    def __init__(self, g, nbytes=32 * MiB, thp_percent=50, oom_score_adj=-1000):
        self.g, self.nbytes, self.checks = g, nbytes, 0
        self.script = (KEEPER.replace("@NBYTES@", str(nbytes)).replace("@THP_PERCENT@", str(thp_percent))
                       .replace("@OOM_ADJ@", str(oom_score_adj)))

    def start(self):
        self.g.run(self.script)
        self.g.wait_for(lambda: self.g.run("cat /tmp/keep.out", check=False)[1].startswith("0 bad"),
                        300, what=lambda: f"the keeper stamped its pages "
                        f"({self.g.run('cat /tmp/keep.log', check=False)[1]!r})")
        return self

    def compare(self):
        """Have the keeper compare every page; returns its answer, "N bad B zero Z first I
        ...", whatever it found."""
        g = self.g
        if g.run("kill -0 $(cat /tmp/keep.pid)", check=False)[0] != 0:
            raise AssertionError("the keeper is gone: " + g.run(
                "cat /tmp/keep.log; dmesg | grep -iE 'killed process|segfault|out of memory' | tail -5",
                check=False)[1])
        self.checks += 1
        n = self.checks
        g.run(f"echo {n} > /tmp/keep.req")
        return g.wait_for(lambda: (lambda o: o.startswith(f"{n} bad") and o)(
            g.run("cat /tmp/keep.out")[1].strip()), 300, what=f"the keeper's check {n}")

    def check(self):
        """Every page as stamped; returns a short description."""
        out = self.compare()
        n = self.checks
        assert out.startswith(f"{n} bad 0 "), (
            f"the keeper's {self.nbytes >> 20} MiB changed under it: {out}")
        return f"{self.nbytes >> 20} MiB pattern unchanged ({n} checks)"

    def stop(self):
        self.g.run("kill $(cat /tmp/keep.pid) 2>/dev/null; true", check=False)
