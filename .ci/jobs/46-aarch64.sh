#!/usr/bin/env bash
# The crypto tests cross-compiled for aarch64 and run under qemu-user, so the
# ARMv8 SHA2 compression is tested against every vector (and the dispatch and
# the portable fallback on ARM): GCC with the run-time target attribute, Clang
# with the compile-time +crypto target, and a WSGUARD_NO_SIMD=1 build.
set -euo pipefail
source .ci/cross-setup aarch64  # cxx, out, strict, defs, "$out/catch_main.o"
run=(qemu-aarch64 -cpu max -L /usr/aarch64-linux-gnu)

check() {  # name, expected backend list, compiler and flags...
  local name=$1 expected=$2; shift 2
  echo "-- $name"
  "$@" "${strict[@]}" "${defs[@]}" -c tests/test_crypto.cpp -o "$out/$name.o"
  "$cxx" "$out/$name.o" "$out/catch_main.o" -o "$out/$name"
  "${run[@]}" "$out/$name" >"$out/$name.log" 2>&1 || { cat "$out/$name.log"; exit 1; }
  grep -F "tested on this machine: $expected" "$out/$name.log" || { echo "FAIL: expected backends '$expected'"; cat "$out/$name.log"; exit 1; }
  tail -n 2 "$out/$name.log"
}
check gcc-runtime-dispatch "portable armv8_sha2 (active: armv8_sha2)" "$cxx"
check gcc-no-simd "portable (active: portable)" "$cxx" -DWSGUARD_NO_SIMD=1
check clang-march-crypto "portable armv8_sha2 (active: armv8_sha2)" clang++ --target=aarch64-linux-gnu -march=armv8-a+crypto
echo "aarch64 crypto tests passed"
