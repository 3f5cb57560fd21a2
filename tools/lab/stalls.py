"""Soft lockup and RCU stall reports on a guest's console, and what says the host
stopped running the guest meanwhile.

Under TCG a vCPU that the host does not run for seconds reads, once it runs again,
as a stall of whatever task it was running. The guest's clocksource watchdog sees
that too: its timer ran late, by as much as TSC and HPET agree ("Long readout
interval"). The stall tests judge a report by two marks: the module's code on its
stack, and such a readout stall."""
import re

STALL_START = re.compile(r"soft lockup|rcu_sched self-detected stall|rcu: INFO:")
# the guest's clocksource watchdog saw its timer run this late (ns)
STARVED = re.compile(r"clocksource: Long readout interval.* wd_nsec: (\d+)")
OURS = "[uniballoon]"


def stall_block(lines, i):
    """The stall report starting at lines[i]: its lines up to the end of its stack."""
    last = min(i + 120, len(lines)) - 1
    end = next((j for j in range(i, last + 1)
                if "</TASK>" in lines[j] or "end trace" in lines[j]), last)
    return lines[i:end + 1]


def stall_reports(console):
    """Each soft lockup or RCU stall report: its first line and the lines that
    follow it, up to the end of its stack trace."""
    lines = console.splitlines()
    return [stall_block(lines, i) for i, line in enumerate(lines) if STALL_START.search(line)]


def readout_stall(lines):
    """The longest clocksource readout stall in lines, in seconds (0: none)."""
    return max((int(m.group(1)) / 1e9 for line in lines for m in STARVED.finditer(line)),
               default=0)
