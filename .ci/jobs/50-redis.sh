#!/usr/bin/env bash
# The Redis backend: its tests must not be skipped silently on a machine where
# .ci/setup installed redis-server and libhiredis-dev, and they must be clean
# under valgrind (leaks, invalid reads) as well as ASan (20-sanitizers).
set -euo pipefail
dir=build-ci/redis
command -v redis-server >/dev/null || { echo "redis-server missing: .ci/setup should install it" >&2; exit 1; }
pkg-config --exists hiredis || { echo "hiredis missing: .ci/setup should install libhiredis-dev" >&2; exit 1; }
meson setup "$dir" --wipe -Dbenchmarks=disabled -Dexamples=disabled --werror >/dev/null 2>&1 ||
  meson setup "$dir" -Dbenchmarks=disabled -Dexamples=disabled --werror
ninja -C "$dir" tests/test_redis
[ -x "$dir/tests/test_redis" ] || { echo "tests/test_redis was not built" >&2; exit 1; }
echo "-- test_redis under valgrind"
timeout 900 valgrind -q --error-exitcode=9 --leak-check=full --errors-for-leak-kinds=definite \
  --trace-children=no "$dir/tests/test_redis"
