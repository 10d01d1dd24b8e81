#!/usr/bin/env python3
"""Compile-fail check: usage:
  expect_compile_fail.py SOURCE PREFIX CASE[=REGEX] [CASE[=REGEX] ...] -- COMPILER [ARGS...]

The source must compile cleanly with no PREFIX* macro defined, and must fail
with a diagnostic matching REGEX (case-insensitive) for each -D<PREFIX><CASE>.
Any other error (a typo, a missing header) fails the test instead of passing it.
Without =REGEX a case expects a discarded-[[nodiscard]] diagnostic."""
import re
import subprocess
import sys

NODISCARD = r"nodiscard|unused-result|warn_unused_result"

def compile_(cmd, source, define):
    args = cmd + ["-fsyntax-only", "-Werror=unused-result", source]  # -fsyntax-only: no output files
    if define:
        args.insert(len(cmd), "-D" + define)
    done = subprocess.run(args, capture_output=True, text=True)
    return done.returncode, done.stderr

def main():
    sep = sys.argv.index("--")
    source, prefix, cases, cmd = sys.argv[1], sys.argv[2], sys.argv[3:sep], sys.argv[sep + 1:]
    code, err = compile_(cmd, source, None)
    if code != 0:
        print("FAIL: the control build (no case defined) does not compile:\n" + err)
        return 1
    print("ok: control build compiles")
    failed = 0
    for case in cases:
        name, _, expected = case.partition("=")
        code, err = compile_(cmd, source, prefix + name)
        if code == 0 or not re.search(expected or NODISCARD, err, re.IGNORECASE):
            print(f"FAIL: {name} did not fail to compile with a diagnostic matching /{expected or NODISCARD}/:\n{err}")
            failed += 1
        else:
            print(f"ok: {name} fails to compile")
    print(f"{len(cases) - failed} passed, {failed} failed")
    return 1 if failed else 0

sys.exit(main())
