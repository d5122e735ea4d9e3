#!/usr/bin/env python3
"""Fails when a production file of src/ is longer than the house limit.

Production lines are the lines before a file's first `#[cfg(test)]`: unit
tests may follow in the same file or sit in a sibling `tests.rs`, which is
not counted. A file past the limit holds more than one concern; split it by
concern rather than raising the limit. Prints the longest files either way.
"""
import os
import sys

LIMIT = 600
SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


def production_lines(path):
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for i, line in enumerate(lines):
        if line.startswith("#[cfg(test)]"):
            return i
    return len(lines) - (lines[-1] == "")


def main():
    counts = []
    for root, _, names in os.walk(SRC):
        for name in names:
            if name.endswith(".rs") and name not in ("tests.rs", "testkit.rs"):
                path = os.path.join(root, name)
                counts.append((production_lines(path), os.path.relpath(path, os.path.join(SRC, ".."))))
    counts.sort(reverse=True)
    over = [(n, p) for n, p in counts if n > LIMIT]
    for n, p in over:
        print("%s: %d production lines, over the limit of %d" % (p, n, LIMIT))
    if over:
        return 1
    longest = ", ".join("%s %d" % (p, n) for n, p in counts[:3])
    print("no production file over %d lines (%d files; longest: %s)" % (LIMIT, len(counts), longest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
