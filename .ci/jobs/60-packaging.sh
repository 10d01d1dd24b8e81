#!/usr/bin/env bash
# Packaging: `meson install` and `cmake --install` into temporary prefixes give
# exactly the promised arch-independent layout, byte for byte the same files;
# consumers outside the tree build and run against each install (CMake
# find_package, a Makefile using pkg-config for wsguard and wsguard-redis, a
# Meson project through pkg-config); CMake's add_subdirectory and FetchContent
# (SOURCE_DIR, no network) and a Meson subproject consume the checkout itself
# and install nothing of wsguard into the consumer's prefix; then the install
# runs again with the flags vcpkg's vcpkg_configure_meson passes and
# ports/wsguard promises (core, and with the "redis" feature), and the layout is
# checked against the port's usage file.
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
# With redis=yes the Redis backend's files must be there, with no they must not.
core_files=(include/wsguard.hpp include/wsguard/detail/public_suffix_data.hpp share/pkgconfig/wsguard.pc
            share/wsguard/wsguardConfig.cmake share/wsguard/wsguardConfigVersion.cmake)
redis_files=(include/wsguard/redis.hpp share/pkgconfig/wsguard-redis.pc share/wsguard/wsguardHiredis.cmake)
check_layout() {
  local prefix=$1 redis=$2 f
  for f in "${core_files[@]}"; do
    [ -f "$prefix/$f" ] || fail "$f missing under $prefix"
  done
  for f in "${redis_files[@]}"; do
    if [ "$redis" = yes ]; then
      [ -f "$prefix/$f" ] || fail "$f missing under $prefix"
    else
      [ ! -e "$prefix/$f" ] || fail "$f installed under $prefix without the Redis backend"
    fi
  done
  local arch
  arch=$(cd "$prefix" && find . -type f ! -path './include/*' ! -path './share/*' | sort)
  [ -z "$arch" ] || fail "arch-specific or unexpected files installed: $arch"
  ! grep -rIl "$work/build" "$prefix" >/dev/null 2>&1 || fail "a build path leaked into the install tree"
}

# Builds and runs the consumers against an installed prefix. The trees are
# copied out of the repo first so nothing can reach the source by accident.
run_consumers() {
  local prefix=$1 tag=$2 redis=$3 c="$work/consumers-$2"
  rm -rf "$c"; cp -r "$root/tests/packaging" "$c"
  [ "$(PKG_CONFIG_PATH="$prefix/share/pkgconfig" pkg-config --modversion wsguard)" = "$version" ] ||
    fail "pkg-config --modversion is not $version"
  local expect_redis=OFF; [ "$redis" = yes ] && expect_redis=ON
  echo "-- [$tag] CMake consumer: find_package(wsguard CONFIG REQUIRED) (wsguard::redis: $redis)"
  cmake -S "$c/cmake" -B "$c/cmake/build" -DCMAKE_PREFIX_PATH="$prefix" -DWSGUARD_EXPECT_REDIS=$expect_redis >/dev/null
  cmake --build "$c/cmake/build" >/dev/null
  "$c/cmake/build/consumer"
  [ "$redis" = no ] || "$c/cmake/build/consumer_redis"
  local modules=wsguard; [ "$redis" = yes ] && modules="wsguard and wsguard-redis"
  echo "-- [$tag] Makefile consumer: pkg-config $modules"
  PKG_CONFIG_PATH="$prefix/share/pkgconfig" make -s -C "$c/pkgconfig" consumer >/dev/null
  "$c/pkgconfig/consumer"
  if [ "$redis" = yes ]; then
    PKG_CONFIG_PATH="$prefix/share/pkgconfig" make -s -C "$c/pkgconfig" consumer_redis >/dev/null
    "$c/pkgconfig/consumer_redis"
  fi
  echo "-- [$tag] Meson consumer: dependency('wsguard') found through pkg-config"
  meson setup "$c/meson/build" "$c/meson" --pkg-config-path="$prefix/share/pkgconfig" --wrap-mode=nofallback >/dev/null
  meson test -C "$c/meson/build" -q >/dev/null || fail "[$tag] meson consumer"
  check_meson_tests "$c/meson/build" "$redis" "$tag"
}

# The Meson consumer registers consumer_redis only when it found wsguard-redis.
check_meson_tests() {
  local build=$1 redis=$2 tag=$3 tests
  tests=$(meson test -C "$build" --list 2>/dev/null | grep -v '^ninja:' | tr '\n' ' ')
  case "$redis:$tests" in
    yes:*consumer_redis*|no:*) echo "wsguard $version consumer (meson, $tag): ok ($tests)" ;;
    *) fail "[$tag] meson consumer did not build consumer_redis ($tests)" ;;
  esac
}

# A consumer's own install (into DESTDIR) holds its programs and no wsguard file.
check_no_wsguard_installed() {
  local dest=$1 what=$2 leaked
  leaked=$(cd "$dest" && find . -path '*wsguard*' | sort)
  [ -z "$leaked" ] || fail "$what installed wsguard into the consumer's prefix: $leaked"
  [ -n "$(cd "$dest" && find . -type f -name 'consumer*')" ] || fail "$what: the consumer's own install is empty"
  echo "$what: the consumer's install holds no wsguard file"
}

echo "-- meson install into a temporary prefix (with the Redis backend)"
prefix="$work/prefix"
meson setup "$work/build" --prefix="$prefix" --pkgconfig.relocatable -Dredis=enabled "${no_extras[@]}" >/dev/null
meson install -C "$work/build" >/dev/null
check_layout "$prefix" yes
run_consumers "$prefix" meson-install yes

echo "-- cmake --install into a second prefix: the same files as meson's"
cmake -S "$root" -B "$work/build-cmake" -DCMAKE_INSTALL_PREFIX="$work/prefix-cmake" -DWSGUARD_REDIS=ON >/dev/null
cmake --install "$work/build-cmake" >/dev/null
check_layout "$work/prefix-cmake" yes
# Meson's copy of CMake's version-file template writes Python's True for TRUE.
diff -r <(cd "$prefix" && find . -type f | sort) <(cd "$work/prefix-cmake" && find . -type f | sort) ||
  fail "meson and cmake install different file lists"
for f in $(cd "$prefix" && find . -type f | sort); do
  diff <(sed 's/^if("True")$/if("TRUE")/' "$prefix/$f") "$work/prefix-cmake/$f" >/dev/null ||
    { diff -u "$prefix/$f" "$work/prefix-cmake/$f" || true; fail "meson and cmake install different $f"; }
done
echo "meson and cmake installs: identical"
run_consumers "$work/prefix-cmake" cmake-install yes

echo "-- moved install tree: the CMake config finds the header relative to itself"
mv "$prefix" "$work/moved"
cmake -S "$root/tests/packaging/cmake" -B "$work/moved-cmake" -DCMAKE_PREFIX_PATH="$work/moved" -DWSGUARD_EXPECT_REDIS=ON >/dev/null
cmake --build "$work/moved-cmake" >/dev/null
"$work/moved-cmake/consumer"
"$work/moved-cmake/consumer_redis"

for mode in add_subdirectory FetchContent; do
  echo "-- CMake consumer: $mode on the checkout (no install, no download)"
  c="$work/consumers-$mode"
  rm -rf "$c"; cp -r "$root/tests/packaging" "$c"
  # FetchContent with SOURCE_DIR downloads nothing; fully disconnected proves it.
  offline=(); [ "$mode" = FetchContent ] && offline=(-DFETCHCONTENT_FULLY_DISCONNECTED=ON)
  cmake -S "$c/cmake" -B "$c/build" -DWSGUARD_CONSUME=$mode -DWSGUARD_SOURCE="$root" \
    -DWSGUARD_EXPECT_REDIS=ON "${offline[@]}" >/dev/null
  cmake --build "$c/build" >/dev/null
  "$c/build/consumer"
  "$c/build/consumer_redis"
  DESTDIR="$c/dest" cmake --install "$c/build" >/dev/null
  check_no_wsguard_installed "$c/dest" "$mode"
done

echo "-- Meson consumer: wsguard as a subproject through dependency('wsguard') and dependency('wsguard-redis')"
m="$work/consumers-subproject/meson"
mkdir -p "$work/consumers-subproject"
cp -r "$root/tests/packaging/." "$work/consumers-subproject/"  # the consumer's sources are ../consumer*.cpp
mkdir -p "$m/subprojects"
ln -s "$root" "$m/subprojects/wsguard"
meson setup "$m/build" "$m" --force-fallback-for=wsguard,wsguard-redis >/dev/null
meson test -C "$m/build" -q >/dev/null || fail "subproject consumer (see $m/build/meson-logs)"
check_meson_tests "$m/build" yes subproject
meson install -C "$m/build" --destdir "$work/consumers-subproject/dest" >/dev/null
check_no_wsguard_installed "$work/consumers-subproject/dest" "meson subproject"

# vcpkg: ports/wsguard/portfile.cmake sets VCPKG_BUILD_TYPE release, so only
# vcpkg_configure_meson's RELEASE configuration runs. These are the arguments it
# passes (vcpkg-tool-meson/vcpkg_configure_meson.cmake) plus the port's OPTIONS;
# the native file carries what its meson.template.in sets.
# The port's features: the core installs only wsguard.hpp; "redis" adds
# wsguard/redis.hpp, wsguard-redis and wsguard::redis (-Dredis=enabled).
grep -q '"redis" IN_LIST FEATURES' "$root/ports/wsguard/portfile.cmake" || fail "portfile: no redis feature switch"
echo "-- install with the flags vcpkg passes (release; static triplet with the core, dynamic with the redis feature)"
for variant in static:no shared:yes; do
  linkage=${variant%:*} redis=${variant#*:}
  redis_option=-Dredis=disabled; [ "$redis" = yes ] && redis_option=-Dredis=enabled
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
     "${no_extras[@]}" "$redis_option" "$root" >/dev/null)
  (cd "$work/build-vcpkg-$linkage" && ninja install -v >/dev/null)
  # What the portfile does after vcpkg_install_meson: usage and copyright.
  cp "$root/ports/wsguard/usage" "$pkgdir/share/wsguard/usage"
  cp "$root/LICENSE" "$pkgdir/share/wsguard/copyright"
  check_layout "$pkgdir" "$redis"
  grep -q '^prefix=${pcfiledir}/../..$' "$pkgdir/share/pkgconfig/wsguard.pc" ||
    fail "vcpkg build: wsguard.pc is not relocatable"
  ! grep -rIl "$pkgdir" "$pkgdir" >/dev/null || fail "vcpkg build: absolute package path in installed files"
  # vcpkg installs the package tree into installed/<triplet>: consumers see it there.
  cp -r "$pkgdir/." "$installed/"
  # The usage file's promises, verbatim.
  grep -q 'find_package(wsguard CONFIG REQUIRED)' "$root/ports/wsguard/usage" || fail "usage: find_package line"
  grep -q 'wsguard::wsguard' "$root/ports/wsguard/usage" || fail "usage: target name"
  grep -q '^  wsguard$' "$root/ports/wsguard/usage" || fail "usage: pkg-config module"
  grep -q 'wsguard::redis' "$root/ports/wsguard/usage" || fail "usage: the redis feature's target"
  grep -q '^  wsguard-redis$' "$root/ports/wsguard/usage" || fail "usage: the redis feature's pkg-config module"
  run_consumers "$installed" "vcpkg-$linkage" "$redis"
done
echo "packaging: ok"
