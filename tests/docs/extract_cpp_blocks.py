#!/usr/bin/env python3
"""Compile every ```cpp block of README.md and docs/*.md (python3, stdlib only).

    python3 tests/docs/extract_cpp_blocks.py [FILE.md ...] [--compiler CXX ...] [--verbose]

Without FILE arguments: README.md and every docs/**/*.md, so a new page is
checked without touching this script. Each block is one of:

- a whole translation unit: compiled as is (-c); linked too when it defines main;
- a fragment, first line exactly `// fragment`: wrapped in a harness that
  includes tests/docs/prelude.hpp (<wsguard.hpp>, common std headers, a few
  documented stand-ins for "your application") and puts the block in the body
  of `int fragment_body()`; #include lines of the block are hoisted above it.
  Unused-variable warnings are off for fragments only (a fragment shows setup
  that the rest of a program would use); every other warning is an error;
- an excerpt, first line `// excerpt: examples/<dir>/<file>`: code from a
  stack CI cannot always compile (Crow, uWebSockets, ...), checked instead to
  appear line by line, in order, in that file, which the example build compiles
  (a line `// ...` marks lines left out; each part between such lines must
  appear in order, the parts themselves anywhere).

Flags: -std=c++17, the warnings in tests/strict-warnings.txt, -Werror
-fno-exceptions -fno-rtti -Iinclude, plus `pkg-config --cflags hiredis` for a
block that includes <wsguard/redis.hpp>. Exit status 1 if any block fails.
The conventions are documented in docs/maintaining.md.
"""
import argparse
import concurrent.futures
import glob
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
# The one list of warning flags (tests/strict-warnings.txt), as every CI job uses it.
with open(os.path.join(ROOT, "tests", "strict-warnings.txt")) as warnings:
    STRICT = ["-std=c++17"] + warnings.read().split() + ["-Werror", "-fno-exceptions", "-fno-rtti"]
FRAGMENT_RELAXED = ["-Wno-unused-variable", "-Wno-unused-but-set-variable"]
CPP_LANGS = {"cpp", "c++", "cxx", "cc"}
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([^\s`]*)")


class Block:
    def __init__(self, path, line, text):
        self.path, self.line, self.text = path, line, text  # line: 1-based, first code line
        lines = text.splitlines()
        first = lines[0].strip() if lines else ""
        if first == "// fragment":
            self.kind = "fragment"
        elif first.startswith("// excerpt:"):
            self.kind = "excerpt"
            self.source = first[len("// excerpt:"):].strip()
        else:
            self.kind = "unit"

    @property
    def where(self):
        return "%s:%d" % (os.path.relpath(self.path, ROOT), self.line)


def blocks_of(path):
    """Yields the ```cpp blocks of a Markdown file (indented fences included)."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = len(m.group(1)), m.group(2), m.group(3).lower()
        body, j = [], i + 1
        while j < len(lines):
            close = lines[j].strip()
            if close.startswith(fence[0] * len(fence)) and close.strip(fence[0]) == "":
                break
            line = lines[j]
            # strip the fence's own indentation (a block inside a list item)
            strip = min(indent, len(line) - len(line.lstrip(" ")))
            body.append(line[strip:])
            j += 1
        if lang in CPP_LANGS:
            yield Block(path, i + 2, "\n".join(body) + "\n")
        i = j + 1


def harness(block):
    """The translation unit that compiles a fragment."""
    hoisted, body = [], []
    for n, line in enumerate(block.text.splitlines()):
        if n == 0:
            body.append("")  # the `// fragment` marker; keeps line numbers aligned
        elif line.lstrip().startswith("#include"):
            hoisted.append(line.strip())
            body.append("")
        else:
            body.append(line)
    rel = os.path.relpath(block.path, ROOT)
    return "\n".join(
        ['// generated from %s by tests/docs/extract_cpp_blocks.py' % block.where,
         '#include "prelude.hpp"']
        + hoisted
        + ["int fragment_body();", "int fragment_body() {", '#line %d "%s"' % (block.line, rel)]
        + body
        + ["    return 0;", "}", ""])


def pkg_config(*args):
    try:
        out = subprocess.run(["pkg-config"] + list(args), capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit("pkg-config %s failed (%s): install libhiredis-dev (.ci/setup)" % (" ".join(args), e))
    return out.stdout.split()


def compile_block(block, cxx, workdir, verbose):
    uses_redis = "wsguard/redis.hpp" in block.text
    flags = STRICT + ["-I" + os.path.join(ROOT, "include"), "-I" + HERE]
    link_flags = ["-pthread"]
    if uses_redis:
        flags += pkg_config("--cflags", "hiredis")
        link_flags += pkg_config("--libs", "hiredis")
    if block.kind == "fragment":
        source = harness(block)
        flags += FRAGMENT_RELAXED
    else:
        rel = os.path.relpath(block.path, ROOT)
        source = '#line %d "%s"\n' % (block.line, rel) + block.text
    name = re.sub(r"[^A-Za-z0-9]+", "_", block.where)
    src = os.path.join(workdir, name + ".cpp")
    with open(src, "w", encoding="utf-8") as f:
        f.write(source)
    obj = os.path.join(workdir, name + "." + cxx.replace("+", "x") + ".o")
    cmd = [cxx] + flags + ["-c", src, "-o", obj]
    if verbose:
        print("   " + " ".join(cmd))
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if r.returncode == 0 and block.kind == "unit" and re.search(r"\bint\s+main\s*\(", block.text):
        cmd = [cxx, obj, "-o", obj + ".exe"] + link_flags
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    return r.returncode == 0, (r.stdout + r.stderr).strip(), source


def normalize(line):
    return " ".join(line.strip().split())


def check_excerpt(block):
    """Each part of the block (parts are separated by `// ...` lines) appears in
    block.source with its code lines in order (whitespace runs folded)."""
    path = os.path.join(ROOT, block.source)
    if not os.path.isfile(path):
        return False, "excerpt source %s does not exist" % block.source
    with open(path, encoding="utf-8") as f:
        haystack = [normalize(l) for l in f.read().splitlines()]
    pos = 0
    for line in block.text.splitlines()[1:]:
        needle = normalize(line)
        if needle == "// ...":  # lines left out: the next part may be anywhere in the file
            pos = 0
            continue
        if not needle:
            continue
        while pos < len(haystack) and haystack[pos] != needle:
            pos += 1
        if pos == len(haystack):
            return False, "line not found (in order) in %s:\n    %s" % (block.source, needle)
        pos += 1
    return True, ""


def main():
    ap = argparse.ArgumentParser(description="compile the C++ blocks of the docs")
    ap.add_argument("files", nargs="*", help="Markdown files (default: README.md docs/**/*.md)")
    ap.add_argument("--compiler", action="append", help="g++ and clang++ unless given")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--jobs", type=int, default=2, help="compilers run at once (default 2)")
    args = ap.parse_args()
    compilers = args.compiler or ["g++", "clang++"]
    files = args.files or ([os.path.join(ROOT, "README.md")]
                           + sorted(glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True)))
    files = [os.path.abspath(f) for f in files]

    failures, counts = [], {"fragment": 0, "unit": 0, "excerpt": 0}
    blocks = [block for path in files for block in blocks_of(path)]
    with tempfile.TemporaryDirectory(prefix="wsguard-docs-") as workdir, \
            concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        jobs = {(id(b), cxx): pool.submit(compile_block, b, cxx, workdir, args.verbose)
                for b in blocks if b.kind != "excerpt" for cxx in compilers}
        for block in blocks:
            counts[block.kind] += 1
            if block.kind == "excerpt":
                ok, message = check_excerpt(block)
                print("%s %s (excerpt of %s)" % ("ok  " if ok else "FAIL", block.where, block.source))
                if not ok:
                    failures.append((block, "excerpt", message, block.text))
                continue
            status = []
            for cxx in compilers:
                ok, message, source = jobs[(id(block), cxx)].result()
                status.append(cxx + (" ok" if ok else " FAILED"))
                if not ok:
                    failures.append((block, cxx, message, source))
            print("%s %s (%s): %s" % ("ok  " if all(s.endswith(" ok") for s in status) else "FAIL",
                                      block.where, block.kind, ", ".join(status)), flush=True)
    total = sum(counts.values())
    for block, cxx, message, source in failures:
        print("\n==== %s (%s) with %s" % (block.where, block.kind, cxx))
        print(message[:6000])
    print("\n%d C++ blocks in %d files: %d fragments, %d whole units, %d excerpts; %d failures"
          % (total, len(files), counts["fragment"], counts["unit"], counts["excerpt"], len(failures)))
    if total == 0:
        print("no C++ block found: is the glob right?")
        return 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
