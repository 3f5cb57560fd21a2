"""make check, VMware part: the VMware backend against the lab's host model.

guest_vmware(kver, ko) takes the test build, which links tools/lab/vmware-model/ in place of
the backdoor (knobs in MODEL, debugfs): vmw_balloon's stand-in refused, then per capability
set (CAPSETS) inflation and deflation, refusals, BUSY, RESETs, the doorbell, 64-bit
targets, OOM deflation, compaction and rmmod, each with the model's audit. The OOM, stall
and compaction helpers are the virtio suite's (check_virtio.py).
"""
import math
import re
import time

import lab
from lab import GUEST_MB, MiB, SYSB, Guest
from ktap import figure, test
from check_virtio import HOLES, bpftrace_sum, fill_for_oom, hog_gets_memory, pressure_reserve, t_no_stalls


# ---------------------------------------------------------------- the host model's knobs and audit

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
    free0 = g.free_after_drop()
    resets = g.sysb_int("stats/host_resets")
    model_set(g, "reset_after", 3000)    # inside the 6th batch
    vm_balloon(g, 64)
    assert g.sysb_int("stats/host_resets") > resets, "no reset seen"
    model_clean(g)
    no_page_lost(g)
    vm_balloon(g, 0)
    no_page_lost(g)
    free = g.free_after_drop()
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
    free0 = g.free_after_drop()
    vm_balloon(g, 128)
    g.run("rmmod uniballoon", timeout=120)
    assert g.run("test -e /sys/kernel/debug/vmmemctl", check=False)[0] != 0, "vmmemctl left behind"
    assert g.vmstat("balloon_inflate") == g.vmstat("balloon_deflate")
    free = g.free_after_drop()
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
