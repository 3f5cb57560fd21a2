"""arm64 guests in the lab: Debian 12's arm64 kernel under qemu-system-aarch64 (TCG, virt).

An arm64 guest cannot run on the host's amd64 root filesystem, so it boots on an arm64
one that arm64.sh unpacks (bookworm's minbase userland with python3 and kmod, and the
kernel's modules) and otherwise works as every lab guest: the lab's initramfs (with
arm64's busybox) mounts that root over virtio-9p, the project share at its host path,
and guest-init.sh starts the agent on virtio-serial; QMP drives the balloon.

    kver = arm64.release("6.12.117+deb12-amd64")       # 6.12.117+deb12-arm64
    ko = arm64.build_module(kver)
    with Arm64Guest(kver) as g:
        g.run(f"insmod {ko}")
"""
import os
import subprocess
from pathlib import Path

from lab import LAB_DIR, PROJECT, Guest, _build_dir

SCRIPT = LAB_DIR / "arm64.sh"


def is_arm64(kver):
    return kver.endswith("-arm64")


def release(amd64_kver):
    """The arm64 release of the same Debian kernel."""
    return subprocess.run([SCRIPT, "release", amd64_kver], check=True, capture_output=True,
                          text=True).stdout.strip()


def root(kver):
    """The guest's root directory (made by arm64.sh root unless cached)."""
    r = subprocess.run([SCRIPT, "root", kver], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"arm64 root for {kver} failed:\n{r.stderr[-3000:]}")
    return Path(r.stdout.strip())


def build_module(kver, test_build=False, tree=None):
    """Cross build uniballoon.ko for kver (arm64.sh build); returns its path."""
    env = dict(os.environ, **({"UB_BUILD_TREE": tree} if tree else {}))
    r = subprocess.run([SCRIPT, "build", kver, *(["test"] if test_build else [])], env=env,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"cross build for {kver} failed:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
    return r.stdout.split()[-1]


class Arm64Guest(Guest):
    # -cpu max with QEMU's own pointer-authentication algorithm: the architected one
    # (QARMA) costs TCG several times more on every function return.
    QEMU_MACHINE = ("qemu-system-aarch64", "-machine", "virt", "-accel", "tcg",
                    "-cpu", "max,pauth-impdef=on")
    CONSOLE = "ttyAMA0"

    def __init__(self, kver, **kw):
        super().__init__(kver, **kw)
        self.ROOT = root(kver)
        # the project share is mounted at its host path; below /tmp (CI's clones) the
        # guest's tmpfs takes the mount point, elsewhere the read-only root must have it
        (self.ROOT / str(PROJECT).lstrip("/")).mkdir(parents=True, exist_ok=True)

    def _initramfs(self):
        initrd = _build_dir() / f"initramfs-{self.kver}.cpio.gz"
        subprocess.run([LAB_DIR / "initramfs.sh", self.kver, initrd, self.ROOT / "lib/modules" / self.kver],
                       env=dict(os.environ, LAB_BUSYBOX=str(self.ROOT / "bin/busybox")), check=True)
        return initrd, None

    def _kernel_image(self):
        return self.ROOT / "boot" / f"vmlinuz-{self.kver}"
