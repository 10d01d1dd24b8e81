#!/usr/bin/env bash
# Packaging: `meson install` into a temporary prefix gives exactly the promised
# arch-independent layout; three consumers outside the tree (CMake
# find_package, a Makefile using pkg-config, a Meson project using wsguard as a
# subproject) build and run against it; then the install runs again with the
# flags vcpkg's vcpkg_configure_meson passes and ports/wsguard promises, and the
# layout is checked against the port's usage file.
set -euo pipefail
root=$(pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/wsguard-packaging.XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
version=$(meson introspect --projectinfo meson.build 2>/dev/null |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')
[ -n "$version" ] || fail "cannot read the project version"
no_extras=(-Dtests=disabled -Dbenchmarks=disabled -Dexamples=disabled -Dfuzzing=disabled)

# Files under <prefix> that the install promises (the header-only toolkit has
# nothing arch-specific: no lib/, no bin/, pkg-config and CMake under share/).
check_layout() {
  local prefix=$1
  for f in include/wsguard.hpp include/wsguard/detail/public_suffix_data.hpp share/pkgconfig/wsguard.pc \
           share/wsguard/wsguardConfig.cmake share/wsguard/wsguardConfigVersion.cmake; do
    [ -f "$prefix/$f" ] || fail "$f missing under $prefix"
  done
  local arch
  arch=$(cd "$prefix" && find . -type f ! -path './include/*' ! -path './share/*' | sort)
  [ -z "$arch" ] || fail "arch-specific or unexpected files installed: $arch"
  ! grep -rIl "$work/build" "$prefix" >/dev/null 2>&1 || fail "a build path leaked into the install tree"
}

# Builds and runs the three consumers against an installed prefix. The trees
# are copied out of the repo first so nothing can reach the source by accident.
run_consumers() {
  local prefix=$1 tag=$2 c="$work/consumers-$2"
  rm -rf "$c"; cp -r "$root/tests/packaging" "$c"
  [ "$(PKG_CONFIG_PATH="$prefix/share/pkgconfig" pkg-config --modversion wsguard)" = "$version" ] ||
    fail "pkg-config --modversion is not $version"
  echo "-- [$tag] CMake consumer: find_package(wsguard CONFIG REQUIRED)"
  cmake -S "$c/cmake" -B "$c/cmake/build" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
  cmake --build "$c/cmake/build" >/dev/null
  "$c/cmake/build/consumer"
  echo "-- [$tag] Makefile consumer: pkg-config --cflags wsguard"
  PKG_CONFIG_PATH="$prefix/share/pkgconfig" make -s -C "$c/pkgconfig" >/dev/null
  "$c/pkgconfig/consumer"
  echo "-- [$tag] Meson consumer: dependency('wsguard') found through pkg-config"
  meson setup "$c/meson/build" "$c/meson" --pkg-config-path="$prefix/share/pkgconfig" --wrap-mode=nofallback >/dev/null
  meson test -C "$c/meson/build" -q >/dev/null || fail "[$tag] meson consumer"
  echo "wsguard $version consumer (meson): ok"
}

echo "-- meson install into a temporary prefix"
prefix="$work/prefix"
meson setup "$work/build" --prefix="$prefix" "${no_extras[@]}" >/dev/null
meson install -C "$work/build" >/dev/null
check_layout "$prefix"
run_consumers "$prefix" plain

echo "-- moved install tree: the CMake config finds the header relative to itself"
mv "$prefix" "$work/moved"
cmake -S "$root/tests/packaging/cmake" -B "$work/moved-cmake" -DCMAKE_PREFIX_PATH="$work/moved" >/dev/null
cmake --build "$work/moved-cmake" >/dev/null
"$work/moved-cmake/consumer"

echo "-- Meson consumer: wsguard as a subproject through dependency('wsguard')"
m="$work/consumers-subproject/meson"
mkdir -p "$work/consumers-subproject"
cp -r "$root/tests/packaging/." "$work/consumers-subproject/"  # the consumer's source is ../consumer.cpp
mkdir -p "$m/subprojects"
ln -s "$root" "$m/subprojects/wsguard"
meson setup "$m/build" "$m" --force-fallback-for=wsguard >/dev/null
meson test -C "$m/build" -q >/dev/null || fail "subproject consumer (see $m/build/meson-logs)"
echo "wsguard $version consumer (meson subproject): ok"

# vcpkg: ports/wsguard/portfile.cmake sets VCPKG_BUILD_TYPE release, so only
# vcpkg_configure_meson's RELEASE configuration runs. These are the arguments it
# passes (vcpkg-tool-meson/vcpkg_configure_meson.cmake) plus the port's OPTIONS;
# the native file carries what its meson.template.in sets.
echo "-- install with the flags vcpkg passes (release, static and dynamic triplets)"
for linkage in static shared; do
  pkgdir="$work/vcpkg-$linkage/packages/wsguard_x64-linux"
  installed="$work/vcpkg-$linkage/installed/x64-linux"
  mkdir -p "$installed"
  cat > "$work/native-$linkage.ini" <<EOF
[built-in options]
default_library = '$linkage'
werror = false
cpp_args = ['-fPIC', '-I$installed/include']
cpp_link_args = ['-L$installed/lib']
EOF
  # Like vcpkg: run from the (empty) build directory, the source as the only positional.
  mkdir -p "$work/build-vcpkg-$linkage"
  (cd "$work/build-vcpkg-$linkage" && meson setup \
     --backend ninja --wrap-mode nodownload -Doptimization=plain \
     --native "$work/native-$linkage.ini" \
     --libdir lib --pkgconfig.relocatable \
     -Ddebug=false --prefix "$pkgdir" \
     --pkg-config-path "['$installed/lib/pkgconfig','$installed/share/pkgconfig']" \
     -Dcmake_prefix_path="['$installed','$installed/debug']" \
     "${no_extras[@]}" "$root" >/dev/null)
  (cd "$work/build-vcpkg-$linkage" && ninja install -v >/dev/null)
  # What the portfile does after vcpkg_install_meson: usage and copyright.
  cp "$root/ports/wsguard/usage" "$pkgdir/share/wsguard/usage"
  cp "$root/LICENSE" "$pkgdir/share/wsguard/copyright"
  check_layout "$pkgdir"
  grep -q '^prefix=${pcfiledir}/../..$' "$pkgdir/share/pkgconfig/wsguard.pc" ||
    fail "vcpkg build: wsguard.pc is not relocatable"
  ! grep -rIl "$pkgdir" "$pkgdir" >/dev/null || fail "vcpkg build: absolute package path in installed files"
  # vcpkg installs the package tree into installed/<triplet>: consumers see it there.
  cp -r "$pkgdir/." "$installed/"
  # The usage file's promises, verbatim.
  grep -q 'find_package(wsguard CONFIG REQUIRED)' "$root/ports/wsguard/usage" || fail "usage: find_package line"
  grep -q 'wsguard::wsguard' "$root/ports/wsguard/usage" || fail "usage: target name"
  grep -q '^  wsguard$' "$root/ports/wsguard/usage" || fail "usage: pkg-config module"
  run_consumers "$installed" "vcpkg-$linkage"
done
echo "packaging: ok"
