#!/usr/bin/env python3
"""The fenced blocks of README.md, with the check markers that say how `make check` runs them.

A marker is an HTML comment on the line just before a fence (invisible once rendered):

    <!-- check: NAME -->              make check runs this block (check_pkg.py, README_RUNS)
    <!-- check: exempt: REASON -->    not run, for the reason given

Every block of the sections in CHECKED carries one of them (t_readme_blocks_marked), so a
new command there cannot escape the suite unnoticed.

    python3 tools/lab/readme_blocks.py            list the blocks: line, section, marker
    python3 tools/lab/readme_blocks.py NAME       print the block NAME as it is run
"""
import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent.parent / "README.md"
# The README's sections ("## " headings) whose every block is run or exempt.
CHECKED = ("Install from the package", "Verify", "Use", "Trace", "Uninstall")
MARKER = re.compile(r"<!--\s*check:\s*(.*?)\s*-->$")
FENCE = re.compile(r"^(```+)(\S*)\s*$")


class Block:
    def __init__(self, line, section, subsection, lang, text, marker):
        self.line, self.section, self.subsection = line, section, subsection
        self.lang, self.text, self.marker = lang, text, marker

    @property
    def exempt(self):
        """The reason given in an exempt marker, or None."""
        m = re.fullmatch(r"exempt:\s*(.*)", self.marker or "")
        return m.group(1) if m else None

    @property
    def name(self):
        return None if self.marker is None or self.exempt is not None else self.marker

    def commands(self):
        """The block's command lines, each as written (a trailing comment included);
        blank and comment-only lines are left out."""
        return [l for l in self.text.splitlines() if l.strip() and not l.lstrip().startswith("#")]

    def __repr__(self):
        return f"README.md:{self.line} [{self.section} / {self.subsection or '-'}] {self.marker}"


def blocks(path=README):
    """Every fenced block of the file, in order."""
    out, section, subsection = [], None, None
    lines = Path(path).read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        m = FENCE.match(line)
        if m:
            start, fence = i, m.group(1)
            j = i + 1
            while j < len(lines) and lines[j].rstrip() != fence:
                j += 1
            if j == len(lines):
                raise ValueError(f"README.md:{start + 1}: fence not closed")
            prev = MARKER.fullmatch(lines[start - 1].strip()) if start else None
            out.append(Block(start + 1, section, subsection, m.group(2),
                             "\n".join(lines[start + 1:j]) + "\n", prev.group(1) if prev else None))
            i = j + 1
            continue
        if line.startswith("## "):
            section, subsection = line[3:].strip(), None
        elif line.startswith("### "):
            subsection = line[4:].strip()
        i += 1
    return out


def named(path=README):
    """{name: Block} of the blocks marked to run; a name used twice is an error."""
    out = {}
    for b in blocks(path):
        if b.name:
            if b.name in out:
                raise ValueError(f"check marker {b.name!r} used twice: {out[b.name]!r}, {b!r}")
            out[b.name] = b
    return out


def problems(path=README):
    """Blocks of the CHECKED sections without a marker or with an exemption that gives
    no reason, and markers outside them or on no fence."""
    bad = []
    for b in blocks(path):
        if b.section in CHECKED:
            if b.marker is None:
                bad.append(f"{b!r}: no check marker (run it, or exempt it with a reason)")
            elif b.exempt is not None and not b.exempt:
                bad.append(f"{b!r}: exempt without a reason")
    lines = Path(path).read_text().splitlines()
    for n, line in enumerate(lines):
        if MARKER.fullmatch(line.strip()) and not (n + 1 < len(lines) and FENCE.match(lines[n + 1])):
            bad.append(f"README.md:{n + 1}: check marker not just before a fence")
    return bad


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.stdout.write(named()[sys.argv[1]].text)
    else:
        for b in blocks():
            print(repr(b))
        for p in problems():
            print("PROBLEM:", p)
