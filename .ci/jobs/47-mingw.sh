#!/usr/bin/env bash
# Windows, cross-compiled with Debian's MinGW-w64 in both thread models:
# posix (std::thread, std::mutex) and win32 (Debian's default
# x86_64-w64-mingw32-g++: no std::mutex, so the replay store takes a spin
# lock). Each build compiles the unit tests that need no POSIX, linked with
# -lbcrypt as every package form carries it, plus a smoke program with both
# include orders of <bcrypt.h> and wsguard.hpp; then runs them under wine.
# The win32 model has no std::thread either, so the test files that start
# threads (crypto, tickets, limits) are built with the posix model only.
# Without wine (not installable) everything is still compiled and the job
# says that nothing ran.
set -euo pipefail
read -ra warnings < tests/strict-warnings.txt  # the one list of warning flags
bash .ci/ensure-packages g++-mingw-w64-x86-64
bash .ci/ensure-packages wine64 || echo "note: could not install wine64"

out=build-ci/mingw
mkdir -p "$out/catch"
# Catch2 v2 is header-only: expose just its headers to the cross compiler.
ln -sfn /usr/include/catch2 "$out/catch/catch2"
defs=(-DWSGUARD_TEST_VECTORS_DIR="\"$PWD/tests/vectors\"" -DWSGUARD_SOURCE_DIR="\"$PWD\"")
strict=(-std=c++17 -O1 -Iinclude "${warnings[@]}" -Werror)
# Static runtime: the .exe needs no MinGW DLL beside it under wine.
link=(-static -lbcrypt)

# wine: Debian's wine64 package installs /usr/lib/wine/wine64 (the `wine`
# wrapper comes with the `wine` package). A fresh prefix takes a while to
# create: bounded, and a failure means "compiled only".
wine=$(command -v wine64 || command -v wine || { [ -x /usr/lib/wine/wine64 ] && echo /usr/lib/wine/wine64; } || true)
export WINEPREFIX="$PWD/$out/wineprefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
if [ -n "$wine" ]; then
  echo "-- wine: $wine ($("$wine" --version 2>/dev/null || echo '?')), creating the prefix"
  timeout 300 "$wine" cmd /c exit >/dev/null 2>&1 || { echo "note: wine could not create its prefix"; wine=""; }
fi
[ -n "$wine" ] || echo "NOTE: wine is not available: the Windows builds below are compiled and linked, NOT run"

run() {  # exe
  if [ -z "$wine" ]; then echo "   (not run: no wine) $1"; return 0; fi
  local log="$1.log"
  timeout 600 "$wine" "$1" >"$log" 2>&1 || { cat "$log"; echo "FAIL: $1 under wine"; exit 1; }
  tail -n 2 "$log" | tr -d '\r'
}

for model in posix win32; do
  cxx=x86_64-w64-mingw32-g++-$model
  echo "== MinGW-w64, $model thread model ($($cxx -dumpversion))"
  "$cxx" -std=c++17 -O1 -I"$out/catch" -c tests/catch_main.cpp -o "$out/catch_main-$model.o"
  "$cxx" "${strict[@]}" tests/mingw/smoke.cpp tests/mingw/windows_after.cpp -o "$out/smoke-$model.exe" "${link[@]}"
  run "$out/smoke-$model.exe"
  components=(vocabulary two_tu origin frames handshake)
  [ "$model" = posix ] && components+=(crypto tickets limits)
  for component in "${components[@]}"; do
    sources=(tests/test_"$component".cpp)
    [ "$component" = two_tu ] && sources=(tests/test_two_tu_a.cpp tests/test_two_tu_b.cpp)
    exe="$out/test_$component-$model.exe"
    echo "-- $component"
    "$cxx" "${strict[@]}" -I"$out/catch" "${defs[@]}" "${sources[@]}" "$out/catch_main-$model.o" -o "$exe" "${link[@]}"
    run "$exe"
  done
done
# bcrypt travels with the package forms: the CMake target (add_subdirectory
# with the MinGW toolchain, no -lbcrypt of the program's own) and the .pc file
# a Meson cross install writes for Windows.
echo "== package forms on Windows: bcrypt comes with them"
echo "-- CMake: wsguard::wsguard links bcrypt"
cmake -S tests/mingw -B "$out/cmake" -DCMAKE_SYSTEM_NAME=Windows \
  -DCMAKE_CXX_COMPILER=x86_64-w64-mingw32-g++-posix -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$out/cmake" >/dev/null
run "$out/cmake/smoke.exe"
echo "-- Meson cross install: wsguard.pc has Libs: -lbcrypt"
rm -rf "$out/meson-cross" "$out/meson-prefix"
meson setup "$out/meson-cross" --cross-file tests/mingw/cross-x86_64-w64-mingw32.ini --prefix="$PWD/$out/meson-prefix" \
  -Dtests=disabled -Dbenchmarks=disabled -Dexamples=disabled -Dfuzzing=disabled -Dredis=disabled >/dev/null
meson install -C "$out/meson-cross" >/dev/null
pc_libs=$(PKG_CONFIG_PATH="$PWD/$out/meson-prefix/share/pkgconfig" pkg-config --libs wsguard)
echo "pkg-config --libs wsguard: $pc_libs"
case " $pc_libs " in *" -lbcrypt "*) ;; *) echo "FAIL: the Windows wsguard.pc does not link bcrypt"; exit 1 ;; esac
x86_64-w64-mingw32-g++-posix "${strict[@]}" $(PKG_CONFIG_PATH="$PWD/$out/meson-prefix/share/pkgconfig" pkg-config --cflags wsguard) \
  tests/mingw/smoke.cpp tests/mingw/windows_after.cpp -o "$out/smoke-pkgconfig.exe" -static $pc_libs
run "$out/smoke-pkgconfig.exe"

if [ -n "$wine" ]; then echo "MinGW-w64 (posix and win32 thread models): tests passed under wine"
else echo "MinGW-w64 (posix and win32 thread models): compiled and linked; NOT run (no wine)"; fi
