#!/usr/bin/env python3
"""make demo: build uniballoon, boot a guest, and show the balloon from both sides."""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lab import MiB, SYSB, Guest, build_module, kernels  # noqa: E402

MEM = 1024


def say(text):
    print(f"\n=== {text}", flush=True)


def host_view(g):
    actual = g.actual()
    print(f"host  (QMP query-balloon): guest has {actual >> 20} MiB of {MEM} MiB")


def guest_view(g):
    _, out = g.run(f"cd {SYSB} && for f in backend size host_target target target_source; do "
                   "printf '%-14s %s\\n' $f \"$(cat $f)\"; done; grep -E 'MemTotal|MemAvailable' /proc/meminfo")
    print("guest (/sys/kernel/balloon):")
    print("  " + out.rstrip().replace("\n", "\n  "))


def wait_size(g, want):
    g.wait_for(lambda: g.sysb_int("size") == want, 120, what=f"size {want >> 20} MiB")


def wait_settled(g, ask):
    """The host asked for a balloon of ask bytes, most of the guest: wait until the
    balloon holds it, or stops short of it (the pressure reserve keeps MemAvailable
    for the guest while deflate-on-oom lets the balloon give memory back), with the
    host seeing the same size."""
    seen = []

    def settled():
        now = g.sysb_int("size")
        seen.append(now)
        agree = g.actual() == MEM * MiB - now
        return agree and (now == ask or (len(seen) >= 3 and seen[-1] == seen[-3]))
    g.wait_for(settled, 120, interval=2, what=f"the balloon to settle at or below {ask >> 20} MiB")
    return seen[-1]


def main():
    kver = kernels()[-1]
    say(f"building uniballoon for {kver}")
    ko = build_module(kver, tree="mod-demo")
    print(ko)
    say(f"booting a {MEM} MiB guest under QEMU (TCG) with a virtio-balloon device")
    with Guest(kver, mem_mb=MEM, balloon_opts="deflate-on-oom=on", name="demo") as g:
        print(f"booted in {g.boot_seconds:.1f} s")
        g.run(f"insmod {ko}")
        print(g.run("dmesg | grep uniballoon")[1].rstrip())
        guest_view(g)
        host_view(g)

        say("host: QMP balloon value=768M (the host wants 256 MiB back)")
        t0 = time.monotonic()
        g.qmp("balloon", value=768 * MiB)
        wait_size(g, 256 * MiB)
        print(f"done in {time.monotonic() - t0:.2f} s")
        guest_view(g)
        host_view(g)

        say("guest: echo 512M > /sys/kernel/balloon/target (the guest gives more on its own)")
        g.run(f"echo 512M > {SYSB}/target")
        wait_size(g, 512 * MiB)
        guest_view(g)
        host_view(g)

        say("guest: echo host > /sys/kernel/balloon/target (the host is in charge again)")
        g.run(f"echo host > {SYSB}/target")
        wait_size(g, 256 * MiB)
        guest_view(g)
        host_view(g)

        say("guest: a process needs 600 MiB; the balloon gives memory back on OOM")
        g.qmp("balloon", value=256 * MiB)
        held = wait_settled(g, 768 * MiB)
        if held < 768 * MiB:
            _, why = g.run(f"cat {SYSB}/target_source; grep 'pressure reserve' /sys/kernel/debug/balloon/status")
            print(f"the balloon stopped at {held >> 20} MiB: " + "; ".join(why.split("\n")).strip("; "))
        _, out = g.run("python3 -c 'import mmap\nn = 600 << 20\nm = mmap.mmap(-1, n)\n"
                       "for i in range(0, n, 4096): m[i] = 1\nprint(\"got 600 MiB\")'", timeout=300)
        print(out.rstrip())
        assert "got 600 MiB" in out, out
        _, deflations = g.run(f"cat {SYSB}/stats/oom_deflations")
        print(f"oom_deflations: {deflations.strip()}")
        assert int(deflations) > 0
        guest_view(g)
        host_view(g)

        say("guest: rmmod uniballoon (every page goes back, the host is told first)")
        g.run("rmmod uniballoon", timeout=120)
        host_view(g)
        print(g.run("grep MemTotal /proc/meminfo")[1].rstrip())
        assert g.actual() == MEM * MiB
    say("demo finished")


if __name__ == "__main__":
    main()
