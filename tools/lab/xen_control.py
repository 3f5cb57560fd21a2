#!/usr/bin/env python3
"""Control run for dom0 userspace crashes under Xen (xl aborting on a corrupted
mutex, python segfaults): the same dom0 memory moves, OOM and xl traffic, either
through uniballoon (`module`) or through the kernel's own Xen balloon
(`control`: xl mem-set 0 and target_kb), repeated; every failed xl command
and every userspace fault the dom0 kernel logs is counted.

    tools/lab/xen_control.py [KERNEL] [ROUNDS] [module|control ...]

Prints one line per round and a total per variant.
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lab  # noqa: E402
import xen  # noqa: E402

KB = "/sys/devices/system/xen_memory/xen_memory0/target_kb"
SLEEPER = "echo DOMU-UP; while :; do sleep 1; done"


def xl(g, args, tally):
    rc, out = g.run(f"{xen.XL} {args}", check=False, timeout=120)
    if rc != 0:
        tally.append(f"xl {args.split()[0]} rc {rc}: {out.strip()[-160:]}")
    return out


def dom0_to(g, mb, variant, tally):
    """Move dom0 to mb MiB, by our module's target or by the kernel's target_kb."""
    if variant == "module":
        g.run(f"echo {512 - mb}M > {lab.SYSB}/target")
    else:
        g.run(f"echo {mb * 1024} > {KB}")
    for _ in range(60):
        out = xl(g, "list 0", tally)
        lines = out.splitlines()
        if len(lines) > 1 and abs(int(lines[1].split()[2]) - mb) <= 1:
            return
        time.sleep(1)
    tally.append(f"dom0 never reached {mb} MiB")


def dom0_oom(g, variant, tally):
    """make check's dom0 OOM step: an OOM (sysrq f) kills a sleep made the likeliest
    victim; with the module, oom_deflate is on, so the OOM notifier lowers the balloon's
    target first and the Xen driver repopulates dom0. The control has only the kernel's
    own balloon, which has no OOM notifier: the kill alone. Both end at 448 MiB."""
    if variant == "module":
        deflations0 = int(g.run(f"cat {lab.SYSB}/stats/oom_deflations")[1])
        g.run(f"echo 1 > {lab.SYSB}/oom_deflate")
    killed = xen.sysrq_oom(g)
    for _ in range(60):
        if killed():
            break
        time.sleep(1)
    else:
        tally.append("the OOM victim was never killed")
    if variant == "module":
        if int(g.run(f"cat {lab.SYSB}/stats/oom_deflations")[1]) == deflations0:
            tally.append("the OOM notifier did not deflate")
        g.run(f"echo 0 > {lab.SYSB}/oom_deflate")
        # the OOM cap holds until asked again: a request of the user's, then the host's
        g.run(f"cat {lab.SYSB}/size > {lab.SYSB}/target; echo host > {lab.SYSB}/target")
    dom0_to(g, 448, variant, tally)


def one_round(kver, ko, variant, initrd):
    tally = []
    with xen.XenGuest(kver, name=f"xenctl-{variant}") as g:
        g.start_toolstack()
        xl(g, "mem-set 0 512m", tally)
        if variant == "module":
            g.run(f"insmod {ko}")
        for mb in (448, 384, 448, 384, 448):
            dom0_to(g, mb, variant, tally)
        dom0_oom(g, variant, tally)
        if variant == "module":
            # as in make check: the module has run in dom0 and is gone
            g.run("rmmod uniballoon", check=False)
        cfg = (f'name="ctl"\ntype="pv"\nkernel="/boot/vmlinuz-{kver}"\nramdisk="{initrd}"\n'
               'extra="console=hvc0 loglevel=4"\nmemory=256\nmaxmem=256\nvcpus=1\n'
               'on_poweroff="destroy"\non_crash="destroy"\n')
        g.run(f"cat > /tmp/ctl.cfg <<'EOF'\n{cfg}EOF")
        xl(g, "create /tmp/ctl.cfg", tally)
        for mb in (160, 192, 200, 160, 200):
            xl(g, f"mem-set ctl {mb}m", tally)
            for _ in range(10):
                xl(g, "list", tally)
        xl(g, "destroy ctl", tally)
        faults = g.run("dmesg | grep -E 'segfault|trap |general protection|error 7' || true")[1]
        tally += [f"dom0 kernel: {l.strip()}" for l in faults.splitlines() if l.strip()]
    return tally


def main():
    kver = sys.argv[1] if len(sys.argv) > 1 else lab.kernels()[0]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    variants = sys.argv[3:] or ["control", "module"]
    ko = lab.build_module(kver, tree="mod-xenctl")
    initrd = lab._build_dir() / f"domu-ctl-{kver}.cpio.gz"
    xen.domu_initrd(kver, ko, SLEEPER, initrd)
    bad = {v: 0 for v in variants}
    for r in range(rounds):
        for v in variants:   # interleaved, so both see the same machine load
            t0 = time.monotonic()
            try:
                tally = one_round(kver, ko, v, initrd)
            except Exception as e:  # noqa: BLE001
                tally = [f"round failed: {e}"[:300]]
            bad[v] += bool(tally)
            print(f"round {r + 1} {v}: {time.monotonic() - t0:.0f} s, "
                  f"{'; '.join(tally) if tally else 'clean'}", flush=True)
    for v in variants:
        print(f"{v}: {bad[v]} of {rounds} rounds with a failure")


if __name__ == "__main__":
    main()
