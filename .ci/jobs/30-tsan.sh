#!/usr/bin/env bash
# ThreadSanitizer over the concurrency tests: token_bucket's CAS loop,
# keyed_limiter's shard locks, connection_limiter's permits, accept_gate and the penalty box, the replay
# store's shards, a shared HMAC key object and a shared handshake_guard (which finds a ticket's
# replay slot without the store's lock, to prefetch it), each driven from two threads. Built directly (no meson) so
# only these run; the single-threaded floods are too slow under TSan.
set -euo pipefail
read -ra warnings < tests/strict-warnings.txt  # the one list of warning flags
out=build-ci/tsan
mkdir -p "$out"
for cxx in clang++ g++; do
  for component in limits tickets crypto admission handshake; do
    echo "-- $cxx -fsanitize=thread: $component"
    $cxx -std=c++17 -O1 -g -fsanitize=thread -fno-omit-frame-pointer -pthread \
      "${warnings[@]}" -Werror \
      -DWSGUARD_TEST_VECTORS_DIR="\"$PWD/tests/vectors\"" -DWSGUARD_SOURCE_DIR="\"$PWD\"" \
      -Iinclude -Itests tests/catch_main.cpp "tests/test_$component.cpp" -o "$out/test_$component-$cxx"
    TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 timeout 600 "$out/test_$component-$cxx" '[concurrency]'
  done
done
