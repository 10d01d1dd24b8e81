#!/usr/bin/env python3
"""Counts the 4 KiB pages one handshake_guard::check touches (docs/performance.md).

usage: bench/check_pages.py <build dir's bench/check_pages>

Runs the program under valgrind's lackey (every instruction fetch, load and
store traced) and, for the last of its 20 checks, counts the distinct pages
between the marker loads: code pages in the binary and in shared libraries,
then data pages. Needs valgrind; takes about a minute.
"""
import os
import subprocess
import sys
import tempfile


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    binary = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "lackey.log")
        run = subprocess.run(["valgrind", "--tool=lackey", "--trace-mem=yes", "--log-file=" + log, binary],
                             capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit("check_pages failed: " + run.stdout + run.stderr)
        # The program prints the markers' addresses as it ran them (under valgrind).
        words = run.stdout.split()
        begin, end = int(words[words.index("markers") + 1], 16), int(words[words.index("markers") + 2], 16)
        checks, current, inside = [], None, False
        with open(log) as trace:
            for line in trace:
                if line.startswith("=="):
                    continue
                kind, _, rest = line.strip().partition(" ")
                try:
                    address = int(rest.strip().split(",")[0], 16)
                except ValueError:
                    continue
                if kind == "L" and address == begin and not inside:
                    inside, current = True, {"code": set(), "data": set()}
                elif kind == "L" and address == end and inside:
                    inside = False
                    checks.append(current)
                elif inside:
                    current["code" if kind == "I" else "data"].add(address >> 12)
    if not checks:
        sys.exit("no check found between the markers")
    last = checks[-1]
    # Code in the executable lies below the libraries valgrind maps high up:
    # the markers (in its data) bound its pages from above.
    in_binary = sum(1 for page in last["code"] if page <= begin >> 12)
    print(f"checks traced: {len(checks)}")
    print(f"code pages: {len(last['code'])} ({in_binary} in the binary, {len(last['code']) - in_binary} in libraries)")
    print(f"data pages: {len(last['data'])}")


if __name__ == "__main__":
    main()
