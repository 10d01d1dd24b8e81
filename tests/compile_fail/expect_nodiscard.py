#!/usr/bin/env python3
"""Compile-fail check for [[nodiscard]]: usage: expect_nodiscard.py SOURCE CASE [CASE ...] -- COMPILER [ARGS...]

The source must compile cleanly with no DISCARD_* macro defined, and must fail
with a discarded-nodiscard diagnostic for each -DDISCARD_<CASE>. Any other
error (a typo, a missing header) fails the test instead of passing it."""
import subprocess
import sys

def compile_(cmd, source, define):
    args = cmd + ["-fsyntax-only", "-Werror=unused-result", source]  # -fsyntax-only: no output files
    if define:
        args.insert(len(cmd), "-D" + define)
    done = subprocess.run(args, capture_output=True, text=True)
    return done.returncode, done.stderr

def main():
    sep = sys.argv.index("--")
    source, cases, cmd = sys.argv[1], sys.argv[2:sep], sys.argv[sep + 1:]
    code, err = compile_(cmd, source, None)
    if code != 0:
        print("FAIL: the control build (no discard) does not compile:\n" + err)
        return 1
    print("ok: control build compiles")
    failed = 0
    for case in cases:
        code, err = compile_(cmd, source, "DISCARD_" + case)
        nodiscard = "nodiscard" in err or "unused-result" in err or "warn_unused_result" in err
        if code == 0 or not nodiscard:
            print(f"FAIL: discarding {case} was not reported as a discarded [[nodiscard]] value:\n{err}")
            failed += 1
        else:
            print(f"ok: discarding {case} fails to compile")
    print(f"{len(cases) - failed} passed, {failed} failed")
    return 1 if failed else 0

sys.exit(main())
