#!/usr/bin/env bash
# Every libFuzzer target under tests/fuzz/ (clang, ASan + UBSan), each for a
# bounded time; any crash, leak, timeout or sanitizer report fails the job.
set -euo pipefail
seconds=${FUZZ_SECONDS:-30}  # 9 targets: about 6 minutes with their builds
out=build-ci/fuzz
mkdir -p "$out"
for src in tests/fuzz/fuzz_*.cpp; do
  [ -f "$src" ] || continue
  name=$(basename "$src" .cpp)
  echo "-- $name (${seconds}s)"
  clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -Iinclude "$src" -o "$out/$name"
  corpus="$out/corpus-$name"; mkdir -p "$corpus"
  seeds=()
  [ -d "tests/fuzz/seeds/$name" ] && seeds=("$PWD/tests/fuzz/seeds/$name")
  # Crash artifacts land in $out; the pipeline fails if the fuzzer does.
  (cd "$out" && ./"$name" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
     -print_final_stats=1 "corpus-$name" "${seeds[@]}" 2>&1 | tail -12)
done
