#!/usr/bin/env python3
"""Write tools/bpftrace/NAME_example.txt from what the tools printed in a make check run.

guest_pkg (check_pkg.py) runs the tools by their names on the PATH while QMP moves the
balloon, and keeps their output in build/pkg/bpftrace-out/KVER/NAME.txt. To refresh all
three from one run:

    LAB_KERNELS=<kver> LAB_GUESTS=guest_pkg LAB_BT_TOOLS="balloonsnoop balloonrate balloonlat" make check
    python3 tools/lab/mk_examples.py <kver>

make check checks the files (t_examples_real): its checks of the live output pass on them.
"""
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent.parent
ABOUT = {
    "balloonsnoop": "one line per balloon event",
    "balloonrate": "the memory moved each second",
    "balloonlat": "histograms of batch latency and size, printed at Ctrl-C",
}


def main(kver):
    for tool, about in ABOUT.items():
        out = (PROJECT / "build/pkg/bpftrace-out" / kver / f"{tool}.txt").read_text()
        out = "".join(l.rstrip() + "\n" for l in out.splitlines()).rstrip("\n") + "\n"
        (PROJECT / "tools/bpftrace" / f"{tool}_example.txt").write_text(
            f"Demonstration of {tool}.bt: {about}.\n\n"
            "Captured by make check in the project's lab (guest_pkg): a QEMU TCG guest with\n"
            f"1 GiB, a virtio-balloon device and Debian's kernel {kver}. QMP\n"
            "asked for a 256 MiB balloon with inflate_rate at 64M, then for none\n"
            "(deflation is not rate limited). The tool ran until SIGINT (Ctrl-C).\n\n"
            f"# {tool}.bt\n{out}")


if __name__ == "__main__":
    main(sys.argv[1])
