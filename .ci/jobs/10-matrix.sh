#!/usr/bin/env bash
# The test suite under g++ and clang++, C++17 and C++20, every warning an error;
# then once with -fno-exceptions -fno-rtti.
set -euo pipefail
read -ra warnings < tests/strict-warnings.txt  # the one list of warning flags
common=(-Dbenchmarks=disabled -Dexamples=disabled --werror)
for cxx in g++ clang++; do
  for std in c++17 c++20; do
    dir=build-ci/$cxx-$std
    echo "-- $cxx -std=$std"
    CXX=$cxx meson setup "$dir" --wipe "${common[@]}" -Dcpp_std=$std >/dev/null 2>&1 ||
      CXX=$cxx meson setup "$dir" "${common[@]}" -Dcpp_std=$std
    meson test -C "$dir" --print-errorlogs -q
  done
done
echo "-- g++ -fno-exceptions -fno-rtti"
dir=build-ci/noexcept
CXX=g++ meson setup "$dir" --wipe "${common[@]}" -Dcpp_args='-fno-exceptions -fno-rtti -DCATCH_CONFIG_DISABLE_EXCEPTIONS' >/dev/null 2>&1 ||
  CXX=g++ meson setup "$dir" "${common[@]}" -Dcpp_args='-fno-exceptions -fno-rtti -DCATCH_CONFIG_DISABLE_EXCEPTIONS'
meson test -C "$dir" --print-errorlogs -q
echo "-- header alone, strict, both compilers"
tu=$(mktemp --suffix=.cpp); echo '#include <wsguard.hpp>' > "$tu"
for cxx in g++ clang++; do
  $cxx -std=c++17 -fsyntax-only -Iinclude "${warnings[@]}" -Werror -fno-exceptions -fno-rtti "$tu"
  $cxx -std=c++17 -fsyntax-only -Iinclude -DWSGUARD_NO_SIMD=1 "${warnings[@]}" -Werror -fno-exceptions -fno-rtti "$tu"
done
rm -f "$tu"
