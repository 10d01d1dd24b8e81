#!/usr/bin/env bash
# The test suite under AddressSanitizer + UndefinedBehaviorSanitizer (clang).
set -euo pipefail
dir=build-ci/asan-ubsan
opts=(-Dbenchmarks=disabled -Dexamples=disabled -Db_sanitize=address,undefined -Db_lundef=false -Dcpp_args=-fno-sanitize-recover=all)
CXX=clang++ meson setup "$dir" --wipe "${opts[@]}" >/dev/null 2>&1 || CXX=clang++ meson setup "$dir" "${opts[@]}"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  meson test -C "$dir" --print-errorlogs -q
